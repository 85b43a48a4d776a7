#include "extension/flow_rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::testing::ReadFileOrEmpty;
using ::nehost::testing::TempDir;
using ::nehost::testing::WriteFileOrDie;
using ::testing::HasSubstr;

FlowRule Rule(const std::string& name, FlowRule::Action action) {
  FlowRule rule;
  rule.set_name(name);
  rule.set_action(action);
  return rule;
}

Flow TcpOut(const std::string& address, uint32_t port) {
  Flow flow;
  flow.set_protocol(Flow::TCP);
  flow.set_direction(Flow::OUTBOUND);
  flow.set_remote_address(address);
  flow.set_remote_port(port);
  return flow;
}

std::vector<FlowRule> Normalized(const std::vector<FlowRule>& rules) {
  std::vector<FlowRule> normalized;
  for (const FlowRule& rule : rules) {
    absl::StatusOr<FlowRule> checked = NormalizeFlowRule(rule);
    EXPECT_TRUE(checked.ok()) << checked.status();
    if (checked.ok()) normalized.push_back(*checked);
  }
  return normalized;
}

// The name of the deciding rule, "default:allow" or "default:deny" when none matched.
std::string Decide(const FlowRules& rules, const Flow& flow) {
  ParsedFlow parsed;
  absl::Status status = ParseFlow(flow, &parsed);
  if (!status.ok()) return absl::StrCat("error: ", status.message());
  FlowDecision decision = rules.Evaluate(parsed);
  if (decision.rule == nullptr) {
    return decision.action == FlowRule::ALLOW ? "default:allow" : "default:deny";
  }
  return decision.rule->name();
}

std::string Problem(const FlowRule& rule) {
  absl::StatusOr<FlowRule> checked = NormalizeFlowRule(rule);
  return checked.ok() ? "" : std::string(checked.status().message());
}

TEST(ParseFlow, RefusesAnAddressThatIsNotOne) {
  ParsedFlow parsed;
  absl::Status status = ParseFlow(TcpOut("300.1.2.3", 443), &parsed);

  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_THAT(status.message(), HasSubstr("remote_address \"300.1.2.3\" is not an IPv4 or IPv6"));
}

TEST(ParseFlow, RefusesPortsPast65535) {
  ParsedFlow parsed;
  EXPECT_THAT(ParseFlow(TcpOut("10.0.0.1", 65536), &parsed).message(),
              HasSubstr("remote_port 65536 is past 65535"));

  Flow flow = TcpOut("10.0.0.1", 80);
  flow.set_local_port(70000);
  EXPECT_THAT(ParseFlow(flow, &parsed).message(), HasSubstr("local_port 70000 is past 65535"));
}

TEST(ParseFlow, RefusesAnUnknownProtocol) {
  Flow flow = TcpOut("10.0.0.1", 80);
  flow.set_protocol(static_cast<Flow::Protocol>(99));
  ParsedFlow parsed;

  EXPECT_TRUE(absl::IsInvalidArgument(ParseFlow(flow, &parsed)));
}

TEST(ParseFlow, CanonicalisesTheHostname) {
  Flow flow = TcpOut("10.0.0.1", 80);
  flow.set_hostname("WWW.Example.COM.");
  ParsedFlow parsed;

  ASSERT_TRUE(ParseFlow(flow, &parsed).ok());
  EXPECT_EQ(parsed.hostname, "www.example.com");
}

TEST(NormalizeFlowRule, FillsInDefaults) {
  FlowRule rule = Rule("web", FlowRule::ACTION_UNSPECIFIED);
  rule.set_port_min(443);
  rule.set_domain("Example.COM.");

  absl::StatusOr<FlowRule> normalized = NormalizeFlowRule(rule);

  ASSERT_TRUE(normalized.ok()) << normalized.status();
  EXPECT_EQ(normalized->action(), FlowRule::DENY);
  EXPECT_EQ(normalized->port_max(), 443u);
  EXPECT_EQ(normalized->domain(), "example.com");
  EXPECT_EQ(normalized->domain_match(), FlowRule::EXACT);
}

TEST(NormalizeFlowRule, RefusesBadRulesNamingTheCause) {
  FlowRule cidr = Rule("bad-cidr", FlowRule::DENY);
  cidr.add_cidrs("10.0.0.0/33");
  EXPECT_THAT(Problem(cidr), HasSubstr("the prefix length must be 0 to 32"));

  FlowRule not_an_address = Rule("not-an-address", FlowRule::DENY);
  not_an_address.add_cidrs("example.com/8");
  EXPECT_THAT(Problem(not_an_address), HasSubstr("is not an IPv4 or IPv6 address or CIDR"));

  FlowRule signed_length = Rule("signed-length", FlowRule::DENY);
  signed_length.add_cidrs("10.0.0.0/+8");
  EXPECT_THAT(Problem(signed_length), HasSubstr("the prefix length must be"));

  FlowRule host_bits = Rule("host-bits", FlowRule::DENY);
  host_bits.add_cidrs("10.0.0.1/8");
  EXPECT_THAT(Problem(host_bits), HasSubstr("has host bits set past /8"));

  FlowRule v6_host_bits = Rule("v6-host-bits", FlowRule::DENY);
  v6_host_bits.add_cidrs("2001:db8::1/32");
  EXPECT_THAT(Problem(v6_host_bits), HasSubstr("has host bits set"));

  EXPECT_THAT(Problem(Rule("Upper", FlowRule::DENY)), HasSubstr("the name must be 1 to 64"));
  EXPECT_THAT(Problem(Rule("", FlowRule::DENY)), HasSubstr("the name must be"));
  EXPECT_THAT(Problem(Rule(std::string(65, 'a'), FlowRule::DENY)), HasSubstr("the name must be"));

  FlowRule relative = Rule("relative", FlowRule::DENY);
  relative.set_executable("bin/curl");
  EXPECT_THAT(Problem(relative), HasSubstr("executable \"bin/curl\" is not an absolute path"));

  FlowRule ports = Rule("ports", FlowRule::DENY);
  ports.set_port_min(70000);
  EXPECT_THAT(Problem(ports), HasSubstr("ports go up to 65535"));
  ports.set_port_min(100);
  ports.set_port_max(10);
  EXPECT_THAT(Problem(ports), HasSubstr("port range 100-10 ends before it starts"));

  FlowRule domain = Rule("domain", FlowRule::DENY);
  domain.set_domain("bad..example.com");
  EXPECT_THAT(Problem(domain), HasSubstr("label 2 is empty"));

  FlowRule action = Rule("action", static_cast<FlowRule::Action>(7));
  EXPECT_THAT(Problem(action), HasSubstr("out of range"));
}

TEST(FlowRules, AllowOverridesDenyWhateverTheOrder) {
  FlowRule deny = Rule("deny-all-https", FlowRule::DENY);
  deny.set_port_min(443);
  FlowRule allow = Rule("allow-internal", FlowRule::ALLOW);
  allow.add_cidrs("10.0.0.0/8");
  CounterSet hits;
  auto rules = FlowRules::Compile(Normalized({deny, allow}), FlowRule::ALLOW, &hits);

  EXPECT_EQ(Decide(*rules, TcpOut("10.1.2.3", 443)), "allow-internal");
  EXPECT_EQ(Decide(*rules, TcpOut("192.0.2.1", 443)), "deny-all-https");
  EXPECT_EQ(Decide(*rules, TcpOut("192.0.2.1", 80)), "default:allow");
}

TEST(FlowRules, DefaultActionDecidesWhenNoRuleMatches) {
  CounterSet hits;
  auto rules = FlowRules::Compile({}, FlowRule::DENY, &hits);

  EXPECT_EQ(Decide(*rules, TcpOut("192.0.2.1", 80)), "default:deny");
}

TEST(FlowRules, MatchesEachCriterion) {
  FlowRule udp = Rule("udp", FlowRule::DENY);
  udp.set_protocol(Flow::UDP);
  FlowRule inbound = Rule("inbound", FlowRule::DENY);
  inbound.set_direction(Flow::INBOUND);
  FlowRule range = Rule("high-ports", FlowRule::DENY);
  range.set_port_min(6000);
  range.set_port_max(6999);
  FlowRule v6 = Rule("doc-v6", FlowRule::DENY);
  v6.add_cidrs("2001:db8::/32");
  FlowRule exact = Rule("exact", FlowRule::DENY);
  exact.set_domain("tracker.example");
  FlowRule suffix = Rule("suffix", FlowRule::DENY);
  suffix.set_domain("ads.example");
  suffix.set_domain_match(FlowRule::SUFFIX);
  FlowRule curl = Rule("curl", FlowRule::DENY);
  curl.set_executable("/usr/bin/curl");
  FlowRule games = Rule("games", FlowRule::DENY);
  games.set_executable("/usr/games/");
  CounterSet hits;
  auto rules = FlowRules::Compile(Normalized({udp, inbound, range, v6, exact, suffix, curl, games}),
                                  FlowRule::ALLOW, &hits);

  Flow flow = TcpOut("192.0.2.1", 80);
  EXPECT_EQ(Decide(*rules, flow), "default:allow");
  flow.set_protocol(Flow::UDP);
  EXPECT_EQ(Decide(*rules, flow), "udp");
  flow = TcpOut("192.0.2.1", 80);
  flow.set_direction(Flow::INBOUND);
  EXPECT_EQ(Decide(*rules, flow), "inbound");
  EXPECT_EQ(Decide(*rules, TcpOut("192.0.2.1", 6500)), "high-ports");
  EXPECT_EQ(Decide(*rules, TcpOut("2001:db8:1::5", 80)), "doc-v6");
  EXPECT_EQ(Decide(*rules, TcpOut("2001:db9::5", 80)), "default:allow");

  flow = TcpOut("192.0.2.1", 80);
  flow.set_hostname("tracker.example");
  EXPECT_EQ(Decide(*rules, flow), "exact");
  flow.set_hostname("sub.tracker.example");
  EXPECT_EQ(Decide(*rules, flow), "default:allow");
  flow.set_hostname("x.y.ADS.example");
  EXPECT_EQ(Decide(*rules, flow), "suffix");
  flow.set_hostname("notads.example");
  EXPECT_EQ(Decide(*rules, flow), "default:allow");

  flow = TcpOut("192.0.2.1", 80);
  flow.set_executable("/usr/bin/curl");
  EXPECT_EQ(Decide(*rules, flow), "curl");
  flow.set_executable("/usr/bin/curlish");
  EXPECT_EQ(Decide(*rules, flow), "default:allow");
  flow.set_executable("/usr/games/nethack");
  EXPECT_EQ(Decide(*rules, flow), "games");
}

TEST(FlowRules, EveryCriterionOfARuleMustHold) {
  FlowRule rule = Rule("curl-to-dns-over-https", FlowRule::DENY);
  rule.add_cidrs("198.51.100.0/24");
  rule.set_port_min(443);
  rule.set_protocol(Flow::TCP);
  rule.set_executable("/usr/bin/curl");
  CounterSet hits;
  auto rules = FlowRules::Compile(Normalized({rule}), FlowRule::ALLOW, &hits);

  Flow flow = TcpOut("198.51.100.7", 443);
  flow.set_executable("/usr/bin/curl");
  EXPECT_EQ(Decide(*rules, flow), "curl-to-dns-over-https");
  flow.set_remote_port(80);
  EXPECT_EQ(Decide(*rules, flow), "default:allow");
  flow.set_remote_port(443);
  flow.set_executable("/usr/bin/wget");
  EXPECT_EQ(Decide(*rules, flow), "default:allow");
  flow.set_executable("/usr/bin/curl");
  flow.set_remote_address("");
  EXPECT_EQ(Decide(*rules, flow), "default:allow") << "a flow with no address is in no CIDR";
}

TEST(FlowRules, Ipv4MappedIpv6AddressesMatchIpv4Cidrs) {
  FlowRule rule = Rule("private", FlowRule::DENY);
  rule.add_cidrs("10.0.0.0/8");
  CounterSet hits;
  auto rules = FlowRules::Compile(Normalized({rule}), FlowRule::ALLOW, &hits);

  EXPECT_EQ(Decide(*rules, TcpOut("::ffff:10.9.8.7", 22)), "private");
}

// "Deny ::/0" is meant as "deny IPv6"; IPv4 addresses, kept IPv4-mapped, must not fall in it.
TEST(FlowRules, Ipv6CidrsDoNotCoverIpv4Addresses) {
  FlowRule every_v6 = Rule("every-v6", FlowRule::DENY);
  every_v6.add_cidrs("::/0");
  FlowRule mapped = Rule("mapped-10", FlowRule::DENY);
  mapped.add_cidrs("::ffff:10.0.0.0/104");
  CounterSet hits;
  for (FlowRules::Matching matching : {FlowRules::Matching::kIndexed, FlowRules::Matching::kScan}) {
    auto rules =
        FlowRules::Compile(Normalized({every_v6, mapped}), FlowRule::ALLOW, &hits, matching);

    EXPECT_EQ(Decide(*rules, TcpOut("2001:db8::1", 443)), "every-v6");
    EXPECT_EQ(Decide(*rules, TcpOut("::1", 443)), "every-v6");
    EXPECT_EQ(Decide(*rules, TcpOut("192.0.2.1", 443)), "default:allow");
    EXPECT_EQ(Decide(*rules, TcpOut("::ffff:192.0.2.1", 443)), "default:allow");
    EXPECT_EQ(Decide(*rules, TcpOut("10.1.2.3", 443)), "mapped-10")
        << "a CIDR written in the mapped block covers IPv4";
  }
}

TEST(FlowRules, CountsDecisionsByRule) {
  FlowRule rule = Rule("ssh", FlowRule::DENY);
  rule.set_port_min(22);
  CounterSet hits;
  auto rules = FlowRules::Compile(Normalized({rule}), FlowRule::ALLOW, &hits);

  Decide(*rules, TcpOut("192.0.2.1", 22));
  Decide(*rules, TcpOut("192.0.2.2", 22));
  Decide(*rules, TcpOut("192.0.2.2", 80));

  EXPECT_EQ(hits.Get("rule_hits/flow/ssh"), 2u);
}

// The index must decide exactly as a scan of every rule would, rule for rule.
TEST(FlowRules, IndexDecidesAsAScanOfEveryRule) {
  std::mt19937 random(42);
  auto pick = [&](int n) { return static_cast<int>(random() % n); };
  const std::vector<std::string> domains = {"a.example", "b.example", "example", "c.a.example"};
  const std::vector<std::string> executables = {"/usr/bin/curl", "/usr/bin/", "/opt/x/y", "/"};

  std::vector<FlowRule> rules;
  for (int i = 0; i < 400; ++i) {
    FlowRule rule = Rule(absl::StrCat("rule-", i), pick(3) == 0 ? FlowRule::ALLOW : FlowRule::DENY);
    if (pick(4) == 0) rule.set_protocol(pick(2) == 0 ? Flow::TCP : Flow::UDP);
    if (pick(4) == 0) rule.set_direction(pick(2) == 0 ? Flow::OUTBOUND : Flow::INBOUND);
    if (pick(3) == 0) {
      rule.set_port_min(pick(20));
      if (pick(2) == 0) rule.set_port_max(rule.port_min() + pick(5));
    }
    if (pick(3) == 0) {
      for (int c = 0, n = 1 + pick(2); c < n; ++c) {
        const int length = 8 * (1 + pick(4));
        const uint32_t network = (10u << 24 | pick(4) << 16 | pick(4) << 8 | pick(4)) &
                                 (length == 32 ? ~0u : ~(~0u >> length));
        rule.add_cidrs(absl::StrCat(network >> 24, ".", network >> 16 & 255, ".",
                                    network >> 8 & 255, ".", network & 255, "/", length));
      }
    }
    if (pick(3) == 0) {
      rule.set_domain(domains[pick(domains.size())]);
      rule.set_domain_match(pick(2) == 0 ? FlowRule::EXACT : FlowRule::SUFFIX);
    }
    if (pick(4) == 0) rule.set_executable(executables[pick(executables.size())]);
    rules.push_back(rule);
  }
  rules = Normalized(rules);
  CounterSet hits;
  auto indexed = FlowRules::Compile(rules, FlowRule::ALLOW, &hits, FlowRules::Matching::kIndexed);
  auto scanned = FlowRules::Compile(rules, FlowRule::ALLOW, &hits, FlowRules::Matching::kScan);

  const std::vector<std::string> hostnames = {"",        "a.example", "x.a.example", "c.a.example",
                                              "example", "b.example", "other"};
  const std::vector<std::string> binaries = {"", "/usr/bin/curl", "/usr/bin/wget", "/opt/x/y"};
  for (int i = 0; i < 20000; ++i) {
    Flow flow = TcpOut(absl::StrCat("10.", pick(4), ".", pick(4), ".", pick(4)), pick(25));
    flow.set_protocol(pick(2) == 0 ? Flow::TCP : Flow::UDP);
    flow.set_direction(pick(2) == 0 ? Flow::OUTBOUND : Flow::INBOUND);
    flow.set_hostname(hostnames[pick(hostnames.size())]);
    flow.set_executable(binaries[pick(binaries.size())]);
    ASSERT_EQ(Decide(*indexed, flow), Decide(*scanned, flow)) << flow.ShortDebugString();
  }
}

class FlowRuleStoreTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<FlowRuleStore>> Open() {
    return FlowRuleStore::Open(dir_.path(), &hits_);
  }

  std::string FilePath() const { return dir_ / kFlowRuleFileName; }

  TempDir dir_;
  CounterSet hits_;
};

TEST_F(FlowRuleStoreTest, RulesAndTheDefaultSurviveAReopen) {
  {
    auto store = Open();
    ASSERT_TRUE(store.ok()) << store.status();
    FlowRule rule = Rule("ssh", FlowRule::DENY);
    rule.set_port_min(22);
    ASSERT_TRUE((*store)->Add(rule).ok());
    ASSERT_TRUE((*store)->SetDefault(FlowRule::DENY).ok());
  }

  auto reopened = Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ASSERT_EQ((*reopened)->List().size(), 1u);
  EXPECT_EQ((*reopened)->List()[0].name(), "ssh");
  EXPECT_EQ((*reopened)->default_action(), FlowRule::DENY);
  EXPECT_THAT(ReadFileOrEmpty(FilePath()), HasSubstr("\"schema_version\": 1"));
}

TEST_F(FlowRuleStoreTest, AddingTheSameRuleAgainChangesNothingAndANewOneOfTheNameReplacesIt) {
  auto store = Open();
  ASSERT_TRUE(store.ok());
  FlowRule rule = Rule("ssh", FlowRule::DENY);
  rule.set_port_min(22);
  ASSERT_TRUE((*store)->Add(rule)->added);

  EXPECT_FALSE((*store)->Add(rule)->added);
  rule.set_action(FlowRule::ALLOW);
  EXPECT_TRUE((*store)->Add(rule)->added);

  ASSERT_EQ((*store)->List().size(), 1u);
  EXPECT_EQ((*store)->List()[0].action(), FlowRule::ALLOW);
}

TEST_F(FlowRuleStoreTest, RemoveSaysWhetherTheRuleWasThere) {
  auto store = Open();
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Add(Rule("a", FlowRule::DENY)).ok());

  EXPECT_TRUE(*(*store)->Remove("a"));
  EXPECT_FALSE(*(*store)->Remove("a"));
  EXPECT_EQ((*store)->Current()->size(), 0u);
}

TEST_F(FlowRuleStoreTest, ABadRuleIsRefusedAndChangesNothing) {
  auto store = Open();
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Add(Rule("good", FlowRule::DENY)).ok());
  const std::string before = ReadFileOrEmpty(FilePath());

  FlowRule bad = Rule("bad", FlowRule::DENY);
  bad.add_cidrs("10.0.0.0/99");
  absl::StatusOr<FlowRuleStore::AddResult> added = (*store)->Add(bad);

  EXPECT_TRUE(absl::IsInvalidArgument(added.status()));
  EXPECT_EQ((*store)->List().size(), 1u);
  EXPECT_EQ(ReadFileOrEmpty(FilePath()), before);
}

TEST_F(FlowRuleStoreTest, ANewerSchemaVersionIsRefusedAndTheFileKept) {
  const std::string newer = R"({"schemaVersion": 2, "rules": [{"name": "x"}]})";
  WriteFileOrDie(FilePath(), newer);

  auto store = Open();

  EXPECT_TRUE(absl::IsFailedPrecondition(store.status()));
  EXPECT_THAT(store.status().message(),
              HasSubstr("schema_version 2 is not one this nehost-filter reads (1)"));
  EXPECT_EQ(ReadFileOrEmpty(FilePath()), newer);
}

TEST_F(FlowRuleStoreTest, ACorruptFileIsRefusedAndKept) {
  WriteFileOrDie(FilePath(), "{\"schemaVersion\": 1, \"rules\": [");

  auto store = Open();

  EXPECT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr("the file is left untouched"));
  EXPECT_EQ(ReadFileOrEmpty(FilePath()), "{\"schemaVersion\": 1, \"rules\": [");
}

TEST_F(FlowRuleStoreTest, AFileWithABadRuleIsRefusedNamingTheRule) {
  WriteFileOrDie(
      FilePath(),
      R"({"schemaVersion": 1, "rules": [{"name": "ok"}, {"name": "x", "cidrs": ["1.2.3.4/8"]}]})");

  auto store = Open();

  EXPECT_TRUE(absl::IsDataLoss(store.status()));
  EXPECT_THAT(store.status().message(), HasSubstr("rule 2: flow rule \"x\""));
}

TEST_F(FlowRuleStoreTest, ReloadOfACorruptFileKeepsTheRulesInForce) {
  auto store = Open();
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Add(Rule("kept", FlowRule::DENY)).ok());
  WriteFileOrDie(FilePath(), "not json");

  EXPECT_FALSE((*store)->Reload().ok());

  ASSERT_EQ((*store)->List().size(), 1u);
  EXPECT_EQ((*store)->Current()->size(), 1u);
}

TEST_F(FlowRuleStoreTest, AFailedWriteChangesNothing) {
  const std::string state = dir_ / "state";
  std::filesystem::create_directory(state);
  auto store = FlowRuleStore::Open(state, &hits_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Add(Rule("kept", FlowRule::DENY)).ok());
  // The folder goes, and a file takes its place: no write can succeed there.
  std::filesystem::rename(state, dir_ / "moved");
  WriteFileOrDie(state, "not a folder");

  absl::StatusOr<FlowRuleStore::AddResult> added = (*store)->Add(Rule("new", FlowRule::DENY));
  absl::Status defaulted = (*store)->SetDefault(FlowRule::DENY);
  absl::StatusOr<bool> removed = (*store)->Remove("kept");

  EXPECT_THAT(added.status().message(), HasSubstr("save flow rules"));
  EXPECT_FALSE(defaulted.ok());
  EXPECT_FALSE(removed.ok());
  ASSERT_EQ((*store)->List().size(), 1u);
  EXPECT_EQ((*store)->List()[0].name(), "kept");
  EXPECT_EQ((*store)->Current()->size(), 1u);
  EXPECT_EQ((*store)->default_action(), FlowRule::ALLOW);
}

}  // namespace
}  // namespace nehost::filter
