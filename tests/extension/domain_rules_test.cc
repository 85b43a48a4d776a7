#include "extension/domain_rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace nehost::filter {
namespace {

using ::testing::HasSubstr;

v1::Rule MakeRule(const std::string& domain, v1::Rule::Action action, v1::Rule::Match match,
                  v1::Rule::Response response = v1::Rule::NXDOMAIN) {
  v1::Rule rule;
  rule.set_domain(domain);
  rule.set_action(action);
  rule.set_match(match);
  if (action == v1::Rule::DENY) rule.set_response(response);
  return rule;
}

// "deny rule:deny:suffix:example.com", "allow ...", or "none": what decided, and how.
std::string Decide(const DomainRules& rules, const std::string& name) {
  Verdict verdict = rules.Check(name);
  switch (verdict.kind) {
    case Verdict::Kind::kNone:
      return "none";
    case Verdict::Kind::kAllow:
      return "allow " + rules.RuleName(verdict.rule);
    case Verdict::Kind::kDeny:
      return "deny " + rules.RuleName(verdict.rule);
  }
  return "?";
}

TEST(DomainRules, ExactRuleMatchesTheNameOnly) {
  auto rules =
      DomainRules::Compile({MakeRule("ads.example.com", v1::Rule::DENY, v1::Rule::EXACT)}, {});
  EXPECT_EQ(Decide(*rules, "ads.example.com"), "deny rule:deny:exact:ads.example.com");
  EXPECT_EQ(Decide(*rules, "x.ads.example.com"), "none");
  EXPECT_EQ(Decide(*rules, "example.com"), "none");
  EXPECT_EQ(Decide(*rules, ""), "none");
}

TEST(DomainRules, SuffixRuleMatchesTheNameAndEveryNameBelowIt) {
  auto rules =
      DomainRules::Compile({MakeRule("example.com", v1::Rule::DENY, v1::Rule::SUFFIX)}, {});
  EXPECT_EQ(Decide(*rules, "example.com"), "deny rule:deny:suffix:example.com");
  EXPECT_EQ(Decide(*rules, "a.b.example.com"), "deny rule:deny:suffix:example.com");
  EXPECT_EQ(Decide(*rules, "notexample.com"), "none");
  EXPECT_EQ(Decide(*rules, "com"), "none");
}

TEST(DomainRules, AllowOverridesDenyAtAnyLevel) {
  auto rules = DomainRules::Compile({MakeRule("cdn.example.com", v1::Rule::DENY, v1::Rule::EXACT),
                                     MakeRule("example.com", v1::Rule::ALLOW, v1::Rule::SUFFIX),
                                     MakeRule("tracker.net", v1::Rule::DENY, v1::Rule::SUFFIX),
                                     MakeRule("ok.tracker.net", v1::Rule::ALLOW, v1::Rule::EXACT)},
                                    {});
  EXPECT_EQ(Decide(*rules, "cdn.example.com"), "allow rule:allow:suffix:example.com");
  EXPECT_EQ(Decide(*rules, "ok.tracker.net"), "allow rule:allow:exact:ok.tracker.net");
  EXPECT_EQ(Decide(*rules, "x.ok.tracker.net"), "deny rule:deny:suffix:tracker.net");
}

TEST(DomainRules, MostSpecificDenyDecidesTheAnswer) {
  auto rules = DomainRules::Compile(
      {MakeRule("example.com", v1::Rule::DENY, v1::Rule::SUFFIX, v1::Rule::NXDOMAIN),
       MakeRule("ads.example.com", v1::Rule::DENY, v1::Rule::SUFFIX, v1::Rule::SINKHOLE)},
      {});
  EXPECT_EQ(rules->Check("x.ads.example.com").answer, dns::BlockedAnswer::kSinkhole);
  EXPECT_EQ(rules->Check("www.example.com").answer, dns::BlockedAnswer::kNxDomain);
}

std::shared_ptr<const DomainList> Build(const std::vector<std::pair<std::string, bool>>& names) {
  DomainList::Builder builder;
  for (const auto& [name, suffix] : names) builder.Add(name, suffix);
  return builder.Finish();
}

TEST(DomainRules, ListsMatchTheirExactAndSuffixEntries) {
  std::vector<DomainRules::List> lists;
  lists.push_back({"ads", v1::Rule::DENY, v1::Rule::NXDOMAIN,
                   Build({{"ads.example.com", false}, {"tracker.net", true}})});
  lists.push_back({"mine", v1::Rule::ALLOW, v1::Rule::RESPONSE_UNSPECIFIED,
                   Build({{"good.tracker.net", false}})});
  auto rules = DomainRules::Compile({}, std::move(lists));

  EXPECT_EQ(Decide(*rules, "ads.example.com"), "deny list:ads");
  EXPECT_EQ(Decide(*rules, "x.ads.example.com"), "none");
  EXPECT_EQ(Decide(*rules, "a.tracker.net"), "deny list:ads");
  EXPECT_EQ(Decide(*rules, "good.tracker.net"), "allow list:mine");
}

TEST(DomainList, BuilderRefusesRepeatsAndLetsASuffixEntryCoverAnExactOne) {
  DomainList::Builder builder;
  EXPECT_TRUE(builder.Add("example.com", false));
  EXPECT_FALSE(builder.Add("example.com", false));
  EXPECT_TRUE(builder.Add("example.com", true));
  EXPECT_FALSE(builder.Add("example.com", false));
  EXPECT_EQ(builder.size(), 1u);

  auto list = builder.Finish();
  EXPECT_TRUE(list->Matches("example.com", HashName("example.com"), /*ancestor=*/true));
}

TEST(DomainList, ItsFileFormReadsBackToTheSameList) {
  DomainList::Builder builder;
  for (int i = 0; i < 5000; ++i) builder.Add(absl::StrCat("host", i, ".example"), i % 2 == 0);
  auto built = builder.Finish();

  absl::StatusOr<std::shared_ptr<const DomainList>> read =
      DomainList::FromContents(built->contents(), "test");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ((*read)->size(), 5000u);
  for (int i = 0; i < 5000; ++i) {
    std::string name = absl::StrCat("host", i, ".example");
    EXPECT_TRUE((*read)->Matches(name, HashName(name), false)) << name;
    EXPECT_EQ((*read)->Matches(name, HashName(name), true), i % 2 == 0) << name;
  }
  EXPECT_FALSE((*read)->Matches("host5000.example", HashName("host5000.example"), false));
}

TEST(DomainList, FromContentsRefusesALineThatIsNotANormalisedNameNamingIt) {
  absl::StatusOr<std::shared_ptr<const DomainList>> read =
      DomainList::FromContents("good.example\nBad.Example\n", "lists/x.list");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("lists/x.list: line 2"));

  EXPECT_FALSE(DomainList::FromContents("a.example\n\nb.example\n", "x").ok());
}

TEST(IsNormalizedName, AcceptsWhatNormalizeDomainProducesOnly) {
  EXPECT_TRUE(IsNormalizedName("a-b.example_1.com"));
  EXPECT_FALSE(IsNormalizedName("A.com"));
  EXPECT_FALSE(IsNormalizedName("a..com"));
  EXPECT_FALSE(IsNormalizedName("-a.com"));
  EXPECT_FALSE(IsNormalizedName("a.com."));
  EXPECT_FALSE(IsNormalizedName(std::string(64, 'a') + ".com"));
  EXPECT_FALSE(IsNormalizedName(""));
}

}  // namespace
}  // namespace nehost::filter
