// How nehostctl shows flow rules, verdicts, counters and decisions.
#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <string>

#include "agent/output.h"

namespace nehost::agent {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

ListFlowRulesResponse TwoFlowRules() {
  ListFlowRulesResponse rules;
  FlowRule* web = rules.add_rules();
  web->set_name("block-web");
  web->set_action(FlowRule::DENY);
  web->set_protocol(Flow::TCP);
  web->set_port_min(80);
  web->set_port_max(80);
  web->add_cidrs("10.0.0.0/8");
  web->add_cidrs("192.0.2.1");
  FlowRule* curl = rules.add_rules();
  curl->set_name("curl-ads");
  curl->set_action(FlowRule::ALLOW);
  curl->set_domain("ads.example");
  curl->set_domain_match(FlowRule::SUFFIX);
  curl->set_executable("/usr/bin/curl");
  rules.set_default_action(FlowRule::DENY);
  return rules;
}

TEST(FormatFlowRules, TableShowsEachRulesCriteriaAndTheDefault) {
  EXPECT_EQ(FormatFlowRules("org.nehost.filter", TwoFlowRules(), OutputFormat::kTable),
            "NAME       ACTION  CRITERIA\n"
            "block-web  deny    tcp port 80 cidr 10.0.0.0/8,192.0.2.1\n"
            "curl-ads   allow   domain *.ads.example executable /usr/bin/curl\n"
            "default: deny\n");
}

TEST(FormatFlowRules, JsonNamesOnlyTheCriteriaThatAreSet) {
  EXPECT_EQ(FormatFlowRules("org.nehost.filter", TwoFlowRules(), OutputFormat::kJson),
            R"({"default_action":"deny","rules":[)"
            R"({"action":"deny","cidrs":["10.0.0.0/8","192.0.2.1"],"name":"block-web",)"
            R"("port_max":80,"port_min":80,"protocol":"tcp"},)"
            R"({"action":"allow","domain":"ads.example","domain_match":"suffix",)"
            R"("executable":"/usr/bin/curl","name":"curl-ads"}],)"
            R"("service":"org.nehost.filter"})"
            "\n");
}

TEST(FormatFlowRules, ARuleWithoutCriteriaMatchesAnyFlow) {
  FlowRule rule;
  rule.set_name("all");
  EXPECT_EQ(FlowRuleCriteria(rule), "any flow");
  rule.set_port_min(6000);
  rule.set_port_max(6999);
  rule.set_direction(Flow::INBOUND);
  EXPECT_EQ(FlowRuleCriteria(rule), "inbound ports 6000-6999");
}

TEST(FormatAddedFlowRule, SaysWhetherTheRuleWasNew) {
  AddFlowRuleResponse added;
  added.set_added(true);
  *added.mutable_rule() = TwoFlowRules().rules(0);
  EXPECT_EQ(FormatAddedFlowRule("s", added, OutputFormat::kTable),
            "added flow rule block-web: deny tcp port 80 cidr 10.0.0.0/8,192.0.2.1\n");
  added.set_added(false);
  EXPECT_THAT(FormatAddedFlowRule("s", added, OutputFormat::kTable),
              HasSubstr("flow rule already in force: block-web"));
  EXPECT_THAT(FormatAddedFlowRule("s", added, OutputFormat::kJson),
              HasSubstr(R"("added":false,"rule":{"action":"deny")"));
}

TEST(FormatRemovedFlowRule, SaysWhetherARuleWasRemoved) {
  EXPECT_EQ(FormatRemovedFlowRule("s", "x", true, OutputFormat::kTable), "removed flow rule x\n");
  EXPECT_EQ(FormatRemovedFlowRule("s", "x", false, OutputFormat::kTable), "no flow rule named x\n");
  EXPECT_EQ(FormatRemovedFlowRule("s", "x", false, OutputFormat::kJson),
            "{\"removed\":false,\"rule\":\"x\",\"service\":\"s\"}\n");
}

TEST(FormatVerdict, NamesTheRuleOrTheDefault) {
  Verdict verdict;
  verdict.set_flow_id(0);
  verdict.set_action(FlowRule::DENY);
  verdict.set_rule("block-web");
  EXPECT_EQ(FormatVerdict("s", verdict, OutputFormat::kTable), "deny (rule block-web)\n");
  EXPECT_EQ(FormatVerdict("s", verdict, OutputFormat::kJson),
            R"({"action":"deny","flow_id":0,"rule":"block-web","service":"s"})"
            "\n");

  verdict.set_action(FlowRule::ALLOW);
  verdict.clear_rule();
  EXPECT_EQ(FormatVerdict("s", verdict, OutputFormat::kTable), "allow (default action)\n");
  EXPECT_EQ(FormatVerdict("s", verdict, OutputFormat::kJson),
            R"({"action":"allow","flow_id":0,"service":"s"})"
            "\n");
}

StatsResponse SomeStats() {
  StatsResponse stats;
  (*stats.mutable_calls())["evaluate_flows"] = 2;
  (*stats.mutable_counters())["flows/evaluated"] = 12500;
  (*stats.mutable_counters())["flows/denied"] = 10;
  (*stats.mutable_rule_hits())["flow/block-web"] = 10;
  filter::v1::Histogram* histogram = stats.add_histograms();
  histogram->set_name("flows/batch_size");
  for (uint64_t bound : {10, 10000}) histogram->add_upper_bounds(bound);
  for (uint64_t count : {0, 2, 0}) histogram->add_counts(count);
  histogram->set_count(2);
  histogram->set_sum(12500);
  return stats;
}

TEST(FormatStats, TableHasASectionForEachKindOfCounter) {
  EXPECT_EQ(FormatStats("org.nehost.filter", SomeStats(), OutputFormat::kTable),
            "service: org.nehost.filter\n"
            "\n"
            "calls:\n"
            "  evaluate_flows  2\n"
            "\n"
            "counters:\n"
            "  flows/denied     10\n"
            "  flows/evaluated  12500\n"
            "\n"
            "rule hits:\n"
            "  flow/block-web  10\n"
            "\n"
            "histograms:\n"
            "  flows/batch_size  count 2  sum 12500  <=10:0 <=10000:2 >10000:0\n");
}

// The server's histogram has one count more than bounds; one that sends more is shown, not
// read past its bounds.
TEST(FormatStats, HistogramWithMoreCountsThanBoundsIsShownAboveTheLastBound) {
  StatsResponse stats;
  filter::v1::Histogram* histogram = stats.add_histograms();
  histogram->set_name("odd");
  histogram->add_upper_bounds(10);
  for (uint64_t count : {1, 2, 3, 4}) histogram->add_counts(count);
  EXPECT_THAT(FormatStats("s", stats, OutputFormat::kTable),
              HasSubstr("<=10:1 >10:2 >10:3 >10:4\n"));
}

TEST(FormatStats, JsonHasMapsOfCountsAndAListOfHistograms) {
  StatsResponse stats = SomeStats();
  *stats.mutable_last_checkpoint() = TimeUtil::SecondsToTimestamp(1796000000);
  EXPECT_EQ(FormatStats("s", stats, OutputFormat::kJson),
            R"({"calls":{"evaluate_flows":2},)"
            R"("counters":{"flows/denied":10,"flows/evaluated":12500},)"
            R"("histograms":[{"count":2,"counts":[0,2,0],"name":"flows/batch_size","sum":12500,)"
            R"("upper_bounds":[10,10000]}],"last_checkpoint":"2026-11-30T00:53:20Z",)"
            R"("rule_hits":{"flow/block-web":10},"service":"s"})"
            "\n");
}

Decision FlowDecision() {
  Decision decision;
  *decision.mutable_at() = TimeUtil::MillisecondsToTimestamp(1796000000123);
  Flow* flow = decision.mutable_flow();
  flow->set_id(7);
  flow->set_protocol(Flow::TCP);
  flow->set_direction(Flow::OUTBOUND);
  flow->set_remote_address("2001:db8::1");
  flow->set_remote_port(443);
  flow->set_hostname("www.example.com");
  decision.mutable_verdict()->set_flow_id(7);
  decision.mutable_verdict()->set_action(FlowRule::DENY);
  decision.mutable_verdict()->set_rule("block-web");
  return decision;
}

TEST(FormatDecision, TableIsOneLineWithTheVerdictAndTheFlow) {
  Decision decision = FlowDecision();
  EXPECT_EQ(FormatDecision(decision, OutputFormat::kTable),
            "00:53:20.123  deny  flow 7 tcp outbound [2001:db8::1]:443 host www.example.com  "
            "rule block-web\n");

  decision.set_dropped_before(12);
  EXPECT_THAT(FormatDecision(decision, OutputFormat::kTable),
              HasSubstr("00:53:20.123  (12 decisions dropped)  deny"));
}

TEST(FormatDecision, JsonCarriesTheFlowAndWhatWasDropped) {
  Decision decision = FlowDecision();
  decision.set_dropped_before(12);
  EXPECT_EQ(FormatDecision(decision, OutputFormat::kJson),
            R"({"action":"deny","at":"2026-11-30T00:53:20.123Z","dropped_before":12,)"
            R"("flow":{"direction":"outbound","hostname":"www.example.com","id":7,)"
            R"("protocol":"tcp","remote_address":"2001:db8::1","remote_port":443},)"
            R"("kind":"flow","rule":"block-web"})"
            "\n");
}

TEST(FormatDecision, DnsQueriesShowTheirOutcome) {
  Decision decision;
  *decision.mutable_at() = TimeUtil::MillisecondsToTimestamp(1796000000123);
  decision.mutable_dns()->set_client("127.0.0.1:5300");
  decision.mutable_dns()->set_name("ads.example.com");
  decision.mutable_dns()->set_type("A");
  decision.mutable_dns()->set_outcome("blocked");
  decision.mutable_verdict()->set_action(FlowRule::DENY);

  EXPECT_EQ(FormatDecision(decision, OutputFormat::kTable),
            "00:53:20.123  deny  dns ads.example.com A blocked from 127.0.0.1:5300\n");
  EXPECT_THAT(FormatDecision(decision, OutputFormat::kJson), HasSubstr(R"("kind":"dns")"));
}

TEST(FormatDecision, ServerTextCannotBreakTheLine) {
  Decision decision = FlowDecision();
  decision.mutable_flow()->set_hostname("evil\n\x1b[2Jhost");
  std::string line = FormatDecision(decision, OutputFormat::kTable);
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
}

}  // namespace
}  // namespace nehost::agent
