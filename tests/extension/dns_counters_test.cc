#include "extension/dns_counters.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

namespace nehost::filter {
namespace {

using ::testing::Contains;
using ::testing::Pair;

TEST(DnsCounters, CopiesDnsEntriesBesideTheOthers) {
  DnsCounters counters;
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

TEST(DnsCounters, AddsAnotherGenerationsTotalsAndIgnoresOtherEntries) {
  DnsCounters previous;
  previous.Increment(DnsCounters::kForwarded, 10);
  previous.AddRuleHits("rule:deny:exact:a.example", 4);
  previous.RecordUpstreamLatency(absl::Microseconds(100));
  CounterMap handed_over;
  handed_over["status"] = 7;
  previous.CopyTo(&handed_over);

  DnsCounters next;
  next.Increment(DnsCounters::kForwarded, 1);
  next.Add(handed_over);

  EXPECT_EQ(next.Get(DnsCounters::kForwarded), 11u);
  EXPECT_EQ(next.RuleHits("rule:deny:exact:a.example"), 4u);
  CounterMap copied;
  next.CopyTo(&copied);
  EXPECT_EQ(copied.count("status"), 0u);
  EXPECT_THAT(copied, Contains(Pair("dns.upstream_latency_us.le_250", 1u)));
}

TEST(DnsCounters, SumsFromOutsideSaturateInsteadOfWrapping) {
  DnsCounters counters;
  counters.Increment(DnsCounters::kQueries, 2);
  CounterMap huge;
  huge["dns.queries"] = std::numeric_limits<uint64_t>::max();
  counters.Add(huge);
  EXPECT_EQ(counters.Get(DnsCounters::kQueries), std::numeric_limits<uint64_t>::max());
}

}  // namespace
}  // namespace nehost::filter
