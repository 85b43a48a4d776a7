#include "extension/rule_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/files.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Rule MakeRule(const std::string& domain, Rule::Action action = Rule::ACTION_UNSPECIFIED,
              Rule::Match match = Rule::MATCH_UNSPECIFIED) {
  Rule rule;
  rule.set_domain(domain);
  rule.set_action(action);
  rule.set_match(match);
  return rule;
}

// "domain action match", lower case, so that expectations read like the rules they check.
std::vector<std::string> Describe(const std::vector<Rule>& rules) {
  std::vector<std::string> described;
  for (const Rule& rule : rules) {
    described.push_back(rule.domain() + " " + Rule::Action_Name(rule.action()) + " " +
                        Rule::Match_Name(rule.match()));
  }
  return described;
}

class RuleStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directory(state_dir_); }

  std::unique_ptr<RuleStore> OpenStore() {
    absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(state_dir_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::string RuleFilePath() const { return state_dir_ + "/rules.json"; }

  const nehost::testing::TempDir root_;
  const std::string state_dir_ = root_ / "state";
};

TEST_F(RuleStoreTest, AddsListsAndRemovesRules) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(store->Add(MakeRule("ads.example.com")).ok());
  ASSERT_TRUE(store->Add(MakeRule("example.org", Rule::ALLOW, Rule::SUFFIX)).ok());
  EXPECT_THAT(Describe(store->List()),
              ElementsAre("ads.example.com DENY EXACT", "example.org ALLOW SUFFIX"));
  EXPECT_EQ(store->size(), 2u);

  absl::StatusOr<size_t> removed = store->Remove("ads.example.com", Rule::EXACT);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 1u);
  EXPECT_THAT(Describe(store->List()), ElementsAre("example.org ALLOW SUFFIX"));
}

TEST_F(RuleStoreTest, NormalisesDomainAndDefaultsToDenyExact) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);

  absl::StatusOr<RuleStore::AddResult> result = store->Add(MakeRule("Ads.Example.COM."));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->added);
  EXPECT_EQ(result->rule.domain(), "ads.example.com");
  EXPECT_EQ(result->rule.action(), Rule::DENY);
  EXPECT_EQ(result->rule.match(), Rule::EXACT);
}

TEST_F(RuleStoreTest, ReaddingTheSameRuleReportsNotAdded) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Add(MakeRule("example.com", Rule::DENY, Rule::EXACT)).ok());

  absl::StatusOr<RuleStore::AddResult> again = store->Add(MakeRule("EXAMPLE.com."));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->added);
  EXPECT_EQ(store->size(), 1u);
}

TEST_F(RuleStoreTest, AddingAnotherActionForTheSameDomainAndMatchReplacesTheRule) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Add(MakeRule("example.com", Rule::DENY, Rule::SUFFIX)).ok());
  ASSERT_TRUE(store->Add(MakeRule("example.com", Rule::DENY, Rule::EXACT)).ok());

  absl::StatusOr<RuleStore::AddResult> replaced =
      store->Add(MakeRule("example.com", Rule::ALLOW, Rule::SUFFIX));
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_TRUE(replaced->added);
  EXPECT_THAT(Describe(store->List()),
              ElementsAre("example.com ALLOW SUFFIX", "example.com DENY EXACT"));
}

TEST_F(RuleStoreTest, RemoveWithoutMatchRemovesEveryRuleOfTheDomain) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Add(MakeRule("example.com", Rule::DENY, Rule::EXACT)).ok());
  ASSERT_TRUE(store->Add(MakeRule("example.com", Rule::DENY, Rule::SUFFIX)).ok());
  ASSERT_TRUE(store->Add(MakeRule("example.org")).ok());

  absl::StatusOr<size_t> removed = store->Remove("Example.com.", Rule::MATCH_UNSPECIFIED);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 2u);
  EXPECT_THAT(Describe(store->List()), ElementsAre("example.org DENY EXACT"));
}

TEST_F(RuleStoreTest, RemovingAnAbsentRuleRemovesNothing) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Add(MakeRule("example.com", Rule::DENY, Rule::EXACT)).ok());

  absl::StatusOr<size_t> removed = store->Remove("example.com", Rule::SUFFIX);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 0u);
  EXPECT_EQ(store->size(), 1u);
}

TEST_F(RuleStoreTest, RefusesInvalidDomainsNamingTheDomainAndTheCause) {
  struct Case {
    std::string domain;
    std::string cause;
  };
  const Case kCases[] = {
      {"", "invalid domain \"\": is empty"},
      {".", "invalid domain \".\": is empty"},
      {"a..example.com", "invalid domain \"a..example.com\": label 2 is empty"},
      {"example.com..", "label 3 is empty"},
      {"-ads.example.com", "label 1 starts with '-'"},
      {"ads-.example.com", "label 1 ends with '-'"},
      {"ads example.com", "label 1 holds ' '"},
      {"ads/example.com", "label 1 holds '/'"},
      {"b\xc3\xbc"
       "cher.de",
       "holds non-ASCII characters"},
      {std::string(64, 'a') + ".com", "label 1 is 64 characters; at most 63"},
      {std::string(250, 'a') + ".com", "is 254 characters; at most 253"},
      {"192.168.1.1", "is an IP address or range (CIDR), not a domain name"},
      {"10.0.0.0/8", "is an IP address or range (CIDR), not a domain name"},
      {"2001:db8::/32", "is an IP address or range (CIDR), not a domain name"},
      {"caf\xe9.example", "holds non-ASCII characters"},  // Latin-1, not UTF-8
  };
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);

  for (const Case& test : kCases) {
    SCOPED_TRACE("domain: " + test.domain);
    absl::StatusOr<RuleStore::AddResult> result = store->Add(MakeRule(test.domain));
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(result.status().message(), HasSubstr(test.cause));
  }
  EXPECT_EQ(store->size(), 0u);
  EXPECT_FALSE(std::filesystem::exists(RuleFilePath()));
}

TEST_F(RuleStoreTest, AcceptsLongestLabelAndUnderscore) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);

  std::string domain = std::string(63, 'a') + "._dmarc.example-1.com";
  absl::StatusOr<RuleStore::AddResult> result = store->Add(MakeRule(domain));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->rule.domain(), domain);
}

TEST_F(RuleStoreTest, RefusesUnknownActionValue) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);

  absl::StatusOr<RuleStore::AddResult> result =
      store->Add(MakeRule("example.com", static_cast<Rule::Action>(7)));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("unknown action 7"));
}

TEST_F(RuleStoreTest, RulesSurviveReopening) {
  {
    std::unique_ptr<RuleStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Add(MakeRule("ads.example.com")).ok());
    ASSERT_TRUE(store->Add(MakeRule("example.org", Rule::ALLOW, Rule::SUFFIX)).ok());
    ASSERT_TRUE(store->Add(MakeRule("gone.example.net")).ok());
    ASSERT_TRUE(store->Remove("gone.example.net", Rule::EXACT).ok());
  }

  std::unique_ptr<RuleStore> reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(Describe(reopened->List()),
              ElementsAre("ads.example.com DENY EXACT", "example.org ALLOW SUFFIX"));
}

TEST_F(RuleStoreTest, WritesSchemaVersionTwo) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Add(MakeRule("example.com")).ok());

  v1::RuleFile file;
  ASSERT_TRUE(ReadJsonProto(RuleFilePath(), &file).ok());
  EXPECT_EQ(file.schema_version(), 2u);
  EXPECT_EQ(file.rules_size(), 1);
}

// What the previous release wrote: schema 1, rules without responses, no lists.
TEST_F(RuleStoreTest, MigratesASchemaOneFileWhenItOpens) {
  ASSERT_TRUE(WriteFileAtomically(RuleFilePath(), R"({
 "schema_version": 1,
 "rules": [
  {"domain": "ads.example.com", "action": "DENY", "match": "EXACT"},
  {"domain": "example.org", "action": "ALLOW", "match": "SUFFIX"}
 ]
})")
                  .ok());

  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);

  EXPECT_THAT(Describe(store->List()),
              ElementsAre("ads.example.com DENY EXACT", "example.org ALLOW SUFFIX"));
  EXPECT_EQ(store->List()[0].response(), Rule::NXDOMAIN);
  v1::RuleFile file;
  ASSERT_TRUE(ReadJsonProto(RuleFilePath(), &file).ok());
  EXPECT_EQ(file.schema_version(), 2u);
  EXPECT_EQ(file.rules_size(), 2);
  EXPECT_EQ(store->rules()->Check("ads.example.com").kind, Verdict::Kind::kDeny);
}

std::shared_ptr<const DomainList> ListOf(const std::vector<std::string>& names) {
  DomainList::Builder builder;
  for (const std::string& name : names) builder.Add(name, false);
  return builder.Finish();
}

RuleList ListNamed(const std::string& name, Rule::Response response = Rule::RESPONSE_UNSPECIFIED) {
  RuleList list;
  list.set_name(name);
  list.set_response(response);
  return list;
}

TEST_F(RuleStoreTest, ImportedListIsInForceAndSurvivesReopening) {
  {
    std::unique_ptr<RuleStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    absl::StatusOr<RuleStore::ImportResult> imported =
        store->ImportList(ListNamed("ads", Rule::SINKHOLE), ListOf({"a.example", "b.example"}));
    ASSERT_TRUE(imported.ok()) << imported.status();
    EXPECT_FALSE(imported->replaced);
    EXPECT_EQ(imported->list.count(), 2u);
    EXPECT_EQ(imported->list.action(), Rule::DENY);
    Verdict verdict = store->rules()->Check("b.example");
    EXPECT_EQ(verdict.kind, Verdict::Kind::kDeny);
    EXPECT_EQ(store->rules()->RuleName(verdict.rule), "list:ads");
  }

  std::unique_ptr<RuleStore> reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  ASSERT_EQ(reopened->Lists().size(), 1u);
  EXPECT_EQ(reopened->Lists()[0].name(), "ads");
  EXPECT_EQ(reopened->Lists()[0].response(), Rule::SINKHOLE);
  EXPECT_EQ(reopened->rules()->Check("a.example").answer, dns::BlockedAnswer::kSinkhole);
  EXPECT_EQ(reopened->rules()->Check("c.example").kind, Verdict::Kind::kNone);
}

TEST_F(RuleStoreTest, ImportUnderTheSameNameReplacesTheListAndItsFile) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->ImportList(ListNamed("ads"), ListOf({"old.example"})).ok());
  uint64_t version = store->rules_version();

  absl::StatusOr<RuleStore::ImportResult> again =
      store->ImportList(ListNamed("ads"), ListOf({"new.example"}));

  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->replaced);
  EXPECT_NE(store->rules_version(), version);
  EXPECT_EQ(store->rules()->Check("old.example").kind, Verdict::Kind::kNone);
  EXPECT_EQ(store->rules()->Check("new.example").kind, Verdict::Kind::kDeny);
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(state_dir_ + "/lists")) {
    ++files;
    EXPECT_EQ(entry.path().filename().string(),
              std::filesystem::path(again->list.file()).filename());
  }
  EXPECT_EQ(files, 1u);
}

TEST_F(RuleStoreTest, RemovedListIsNoLongerInForce) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->ImportList(ListNamed("ads"), ListOf({"a.example"})).ok());

  absl::StatusOr<bool> removed = store->RemoveList("ads");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_TRUE(*removed);
  EXPECT_EQ(store->rules()->Check("a.example").kind, Verdict::Kind::kNone);
  EXPECT_TRUE(store->Lists().empty());
  EXPECT_FALSE(*store->RemoveList("ads"));
}

TEST_F(RuleStoreTest, RefusesBadListNamesAndEmptyLists) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);

  absl::StatusOr<RuleStore::ImportResult> bad_name =
      store->ImportList(ListNamed("../escape"), ListOf({"a.example"}));
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_name.status().message(), HasSubstr("invalid list name"));
  absl::StatusOr<RuleStore::ImportResult> empty = store->ImportList(ListNamed("ads"), ListOf({}));
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store->Lists().empty());
}

TEST_F(RuleStoreTest, ListFileThatDoesNotMatchTheRuleFileIsRefusedAndLeftAlone) {
  {
    std::unique_ptr<RuleStore> store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->ImportList(ListNamed("ads"), ListOf({"a.example", "b.example"})).ok());
  }
  std::string list_file = state_dir_ + "/" + OpenStore()->Lists()[0].file();
  ASSERT_TRUE(WriteFileAtomically(list_file, "a.example\nnot a name\n").ok());

  absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(state_dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(), HasSubstr("line 2"));
  EXPECT_EQ(*ReadFile(list_file), "a.example\nnot a name\n");
}

TEST_F(RuleStoreTest, ReloadKeepsListsAlreadyLoadedAndTakesInNewOnes) {
  std::unique_ptr<RuleStore> next = OpenStore();
  std::unique_ptr<RuleStore> previous = OpenStore();
  ASSERT_TRUE(previous->ImportList(ListNamed("ads"), ListOf({"a.example"})).ok());

  ASSERT_TRUE(next->Reload().ok());

  EXPECT_EQ(next->rules()->Check("a.example").kind, Verdict::Kind::kDeny);
}

TEST_F(RuleStoreTest, CorruptRuleFileIsAClearErrorAndIsLeftAlone) {
  const std::string corrupt = "{\"schema_version\": 1, \"rules\": [";
  ASSERT_TRUE(WriteFileAtomically(RuleFilePath(), corrupt).ok());

  absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(state_dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(), HasSubstr("load rules: parse " + RuleFilePath()));
  EXPECT_THAT(store.status().message(), HasSubstr("left untouched"));

  absl::StatusOr<std::string> contents = ReadFile(RuleFilePath());
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(*contents, corrupt);
}

TEST_F(RuleStoreTest, RuleFileWithAnInvalidRuleIsRefused) {
  ASSERT_TRUE(
      WriteFileAtomically(RuleFilePath(), R"({"schema_version": 1, "rules": [{"domain": "a..b"}]})")
          .ok());

  absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(state_dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(), HasSubstr("rule 1: invalid domain \"a..b\""));
}

TEST_F(RuleStoreTest, RuleFileOfAnotherSchemaVersionIsRefused) {
  ASSERT_TRUE(WriteFileAtomically(RuleFilePath(), R"({"schema_version": 3, "rules": []})").ok());

  absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(state_dir_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("schema_version 3"));
}

TEST_F(RuleStoreTest, MissingStateFolderIsAnError) {
  absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(state_dir_ + "/missing");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(store.status().message(), HasSubstr("open state folder " + state_dir_ + "/missing"));
}

TEST_F(RuleStoreTest, ReloadTakesInRulesAnotherGenerationWrote) {
  std::unique_ptr<RuleStore> next = OpenStore();
  std::unique_ptr<RuleStore> previous = OpenStore();
  ASSERT_NE(next, nullptr);
  ASSERT_NE(previous, nullptr);
  ASSERT_TRUE(previous->Add(MakeRule("added.during.overlap")).ok());
  EXPECT_EQ(next->size(), 0u);

  absl::Status reloaded = next->Reload();

  ASSERT_TRUE(reloaded.ok()) << reloaded;
  EXPECT_THAT(Describe(next->List()), ElementsAre("added.during.overlap DENY EXACT"));
}

TEST_F(RuleStoreTest, ReloadOfACorruptFileKeepsTheRulesInForce) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Add(MakeRule("example.com")).ok());
  ASSERT_TRUE(WriteFileAtomically(RuleFilePath(), "{\"schema_version\": 1, \"rules\": [").ok());

  absl::Status reloaded = store->Reload();

  EXPECT_EQ(reloaded.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reloaded.message(), HasSubstr("load rules: parse " + RuleFilePath()));
  EXPECT_THAT(Describe(store->List()), ElementsAre("example.com DENY EXACT"));
}

// Tests run as root, whom permission bits do not stop: the write is made to fail by putting a
// regular file where the state folder was, so that STATE/rules.json has no folder to go in.
TEST_F(RuleStoreTest, FailedWriteLeavesTheRulesAsTheyWere) {
  std::unique_ptr<RuleStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Add(MakeRule("example.com")).ok());

  std::string moved = root_ / "state.moved";
  std::filesystem::rename(state_dir_, moved);
  ASSERT_TRUE(WriteFileAtomically(state_dir_, "not a folder").ok());

  EXPECT_FALSE(store->Add(MakeRule("example.org")).ok());
  EXPECT_FALSE(store->Add(MakeRule("example.com", Rule::ALLOW)).ok());
  absl::StatusOr<size_t> removed = store->Remove("example.com", Rule::EXACT);
  ASSERT_FALSE(removed.ok());
  EXPECT_THAT(removed.status().message(), HasSubstr("save rules: "));
  EXPECT_THAT(Describe(store->List()), ElementsAre("example.com DENY EXACT"));

  std::filesystem::remove(state_dir_);
  std::filesystem::rename(moved, state_dir_);
  std::unique_ptr<RuleStore> reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(Describe(reopened->List()), ElementsAre("example.com DENY EXACT"));
}

}  // namespace
}  // namespace nehost::filter
