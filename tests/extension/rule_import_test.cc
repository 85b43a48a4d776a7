#include "extension/rule_import.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nehost::filter {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// "LINE: MESSAGE" for each reported error.
std::vector<std::string> Errors(const ListImporter& importer) {
  std::vector<std::string> errors;
  for (const v1::ImportLineError& error : importer.errors()) {
    errors.push_back(std::to_string(error.line()) + ": " + error.message());
  }
  return errors;
}

bool Blocks(const std::shared_ptr<const DomainList>& list, const std::string& name,
            bool ancestor = false) {
  return list->Matches(name, HashName(name), ancestor);
}

TEST(ListImporter, ReadsAPiHoleHostsFile) {
  ListImporter importer(v1::IMPORT_FORMAT_HOSTS, false);
  importer.Feed(
      "# a hosts list\n"
      "127.0.0.1 localhost\n"
      "::1 localhost ip6-localhost ip6-loopback\n"
      "0.0.0.0 ads.example.com\n"
      "0.0.0.0 Tracker.Example.NET  metrics.example.org # two on one line\r\n"
      "\n"
      "0.0.0.0 ads.example.com\n");
  importer.Finish();

  EXPECT_EQ(importer.invalid_lines(), 0u) << testing::PrintToString(Errors(importer));
  EXPECT_EQ(importer.names(), 3u);
  EXPECT_EQ(importer.lines(), 7u);
  auto list = importer.TakeList();
  EXPECT_TRUE(Blocks(list, "tracker.example.net"));
  EXPECT_TRUE(Blocks(list, "metrics.example.org"));
  EXPECT_FALSE(Blocks(list, "localhost"));
}

TEST(ListImporter, ReadsAdGuardAndPlainDomainLists) {
  ListImporter importer(v1::IMPORT_FORMAT_DOMAINS, false);
  importer.Feed("! AdGuard DNS filter\n||ads.example.com^\nplain.example.org\n# comment\n");
  importer.Finish();

  EXPECT_EQ(importer.invalid_lines(), 0u);
  auto list = importer.TakeList();
  EXPECT_TRUE(Blocks(list, "ads.example.com", /*ancestor=*/true));
  EXPECT_TRUE(Blocks(list, "plain.example.org"));
  EXPECT_FALSE(Blocks(list, "plain.example.org", /*ancestor=*/true));
}

TEST(ListImporter, SuffixOptionMakesPlainNamesCoverNamesBelowThem) {
  ListImporter importer(v1::IMPORT_FORMAT_DOMAINS, true);
  importer.Feed("example.org\n");
  importer.Finish();
  EXPECT_TRUE(Blocks(importer.TakeList(), "example.org", /*ancestor=*/true));
}

TEST(ListImporter, AutoTellsHostsLinesFromDomainLines) {
  ListImporter importer(v1::IMPORT_FORMAT_AUTO, false);
  importer.Feed("0.0.0.0 a.example\nb.example\n::  c.example\n");
  importer.Finish();
  EXPECT_EQ(importer.invalid_lines(), 0u) << testing::PrintToString(Errors(importer));
  EXPECT_EQ(importer.names(), 3u);
}

TEST(ListImporter, ReportsEachInvalidLineWithItsNumberAndImportsTheRest) {
  ListImporter importer(v1::IMPORT_FORMAT_AUTO, false);
  importer.Feed("good.example\nbad..example\n0.0.0.0\n");
  importer.Feed("two words\n||x.example^$third-party\n-bad.example\nalso.good\n");
  importer.Finish();

  EXPECT_EQ(importer.names(), 2u);
  EXPECT_EQ(importer.invalid_lines(), 5u);
  std::vector<std::string> errors = Errors(importer);
  ASSERT_EQ(errors.size(), 5u);
  EXPECT_THAT(errors[0], HasSubstr("2: invalid domain \"bad..example\": label 2 is empty"));
  EXPECT_THAT(errors[1], HasSubstr("3: a hosts line needs a name"));
  EXPECT_THAT(errors[2], HasSubstr("4: a domain line holds one name"));
  EXPECT_THAT(errors[3], HasSubstr("5: \"||x.example^$third-party\" is adblock syntax"));
  EXPECT_THAT(errors[4], HasSubstr("6: invalid domain \"-bad.example\""));
}

TEST(ListImporter, AnInvalidHostsLineImportsNoneOfItsNames) {
  ListImporter importer(v1::IMPORT_FORMAT_HOSTS, false);
  importer.Feed("0.0.0.0 good.example bad_-.\n");
  importer.Finish();
  EXPECT_EQ(importer.names(), 0u);
  EXPECT_EQ(importer.invalid_lines(), 1u);
}

TEST(ListImporter, LinesMaySpanChunksAndTheLastNeedsNoNewline) {
  ListImporter importer(v1::IMPORT_FORMAT_DOMAINS, false);
  importer.Feed("first.exa");
  importer.Feed("mple\nsecond.");
  importer.Feed("example");
  importer.Finish();
  EXPECT_EQ(importer.invalid_lines(), 0u) << testing::PrintToString(Errors(importer));
  auto list = importer.TakeList();
  EXPECT_TRUE(Blocks(list, "first.example"));
  EXPECT_TRUE(Blocks(list, "second.example"));
}

TEST(ListImporter, AnOverlongLineIsInvalidAndTheNextOneStillCounts) {
  ListImporter importer(v1::IMPORT_FORMAT_DOMAINS, false);
  importer.Feed(std::string(ListImporter::kMaxLine + 10, 'a'));
  importer.Feed(std::string(10, 'a') + "\nnext.example\n");
  importer.Finish();
  EXPECT_THAT(Errors(importer), ElementsAre(HasSubstr("1: longer than 4096 characters")));
  EXPECT_EQ(importer.names(), 1u);
}

TEST(ListImporter, ReportsTheFirstHundredErrorsAndCountsAll) {
  ListImporter importer(v1::IMPORT_FORMAT_DOMAINS, false);
  for (int i = 0; i < 250; ++i) importer.Feed("not valid\n");
  importer.Finish();
  EXPECT_EQ(importer.invalid_lines(), 250u);
  EXPECT_EQ(importer.errors().size(), ListImporter::kMaxReportedErrors);
}

}  // namespace
}  // namespace nehost::filter
