// DnsCounters counts what the DNS data plane did, for as long as the service has run: queries
// by outcome, malformed packets dropped, bad upstream answers, hits of each rule and list, and
// a histogram of upstream latency.
//
// The counts live in the filter's CounterSet, under "dns/NAME", "dns/upstream_latency_us" and
// "rule_hits/dns/RULE", so that they travel with every other counter: handed to the next
// generation on an upgrade, checkpointed against a crash, and listed by Stats. DnsCounters
// only keeps the pointers, so that a packet costs an atomic add and no lookup by name.
// CopyTo writes them into Status's map in the flat "dns." form.
//
// Thread safe. The scalar counters and the histogram are relaxed atomics, so that the
// data-plane threads never take a lock per packet; rule hits are added in batches, each
// taking the set's short lock once.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "extension/counters.h"
#include "extension/method_counters.h"

namespace nehost::filter {

class DnsCounters {
 public:
  // set must outlive this object.
  explicit DnsCounters(CounterSet* set);

  enum Counter : size_t {
    // Queries read and parsed, whatever became of them.
    kQueries,
    // Answered NXDOMAIN or sinkholed by a rule.
    kBlocked,
    // Answered by an upstream.
    kForwarded,
    // Answered from the cache.
    kCached,
    // Answered SERVFAIL: every upstream failed or timed out, or too many queries were in flight.
    kFailed,
    // Packets from clients that did not parse, dropped unanswered.
    kDroppedMalformed,
    // Upstream packets dropped: unparseable, an id not in flight, or another question.
    kUpstreamBadAnswers,
    kUpstreamTimeouts,
    // Answers truncated over UDP that were asked again over TCP.
    kTcpRetries,
    // Answers too big for a UDP client, sent to it truncated so that it asks over TCP.
    kTruncatedToClient,
    // Queries answered NOTIMP: an opcode other than QUERY.
    kNotImplemented,
    kCounterCount,
  };

  // The upper bounds of the latency buckets, in microseconds; the last bucket is unbounded.
  static constexpr std::array<uint64_t, 12> kLatencyBoundsUs = {
      250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 250000, 500000, 1000000};

  void Increment(Counter counter, uint64_t by = 1) { counts_[counter]->Add(by); }
  uint64_t Get(Counter counter) const { return counts_[counter]->value(); }

  void RecordUpstreamLatency(absl::Duration latency);

  // rule: DomainRules::RuleName.
  void AddRuleHits(const std::string& rule, uint64_t hits);
  uint64_t RuleHits(const std::string& rule) const;

  // Sets the "dns." entries of *counts to the service's totals, keeping the others:
  // "dns.queries", "dns.hits.RULE", "dns.upstream_latency_us.le_BOUND" and so on.
  void CopyTo(CounterMap* counts) const;

 private:
  CounterSet* const set_;
  std::array<nehost::filter::Counter*, kCounterCount> counts_{};
  Histogram* latency_;
};

}  // namespace nehost::filter
