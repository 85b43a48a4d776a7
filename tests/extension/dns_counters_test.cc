#include "extension/dns_counters.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nehost::filter {
namespace {

using ::testing::Contains;
using ::testing::Pair;

TEST(DnsCounters, CopiesDnsEntriesBesideTheOthers) {
  CounterSet set;
  DnsCounters counters(&set);
  counters.Increment(DnsCounters::kQueries, 3);
  counters.Increment(DnsCounters::kBlocked);
  counters.AddRuleHits("list:ads", 2);
  counters.RecordUpstreamLatency(absl::Microseconds(700));
  counters.RecordUpstreamLatency(absl::Seconds(3));

  CounterMap map;
  map["status"] = 5;
  counters.CopyTo(&map);

  EXPECT_THAT(map, Contains(Pair("status", 5u)));
  EXPECT_THAT(map, Contains(Pair("dns.queries", 3u)));
  EXPECT_THAT(map, Contains(Pair("dns.blocked", 1u)));
  EXPECT_THAT(map, Contains(Pair("dns.hits.list:ads", 2u)));
  EXPECT_THAT(map, Contains(Pair("dns.upstream_latency_us.le_1000", 1u)));
  EXPECT_THAT(map, Contains(Pair("dns.upstream_latency_us.le_inf", 1u)));
}

TEST(DnsCounters, LiveInTheSetSoThatAHandoffCarriesThem) {
  CounterSet previous_set;
  DnsCounters previous(&previous_set);
  previous.Increment(DnsCounters::kForwarded, 10);
  previous.AddRuleHits("rule:deny:exact:a.example", 4);
  previous.RecordUpstreamLatency(absl::Microseconds(100));
  HandoffState handed_over;
  previous_set.CopyTo(&handed_over);

  CounterSet next_set;
  DnsCounters next(&next_set);
  next.Increment(DnsCounters::kForwarded, 1);
  next_set.Add(handed_over);

  EXPECT_EQ(next.Get(DnsCounters::kForwarded), 11u);
  EXPECT_EQ(next.RuleHits("rule:deny:exact:a.example"), 4u);
  EXPECT_EQ(next_set.Get("dns/forwarded"), 11u);
  CounterMap copied;
  next.CopyTo(&copied);
  EXPECT_THAT(copied, Contains(Pair("dns.upstream_latency_us.le_250", 1u)));
}

}  // namespace
}  // namespace nehost::filter
