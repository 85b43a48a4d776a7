// DnsCounters counts what the DNS data plane did, for as long as the service has run: queries
// by outcome, malformed packets dropped, bad upstream answers, hits of each rule and list, and
// a histogram of upstream latency.
//
// The counters travel as a map of name to count, "dns." names only, so that they can sit in
// the same map as the other counters of the service: CopyTo writes them, Add adds another
// generation's back (anything not named "dns." is left alone).
//
// Thread safe. The scalar counters are relaxed atomics, so that the data-plane threads never
// take a lock per packet; rule hits are added in batches under a short lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "extension/method_counters.h"

namespace nehost::filter {

class DnsCounters {
 public:
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
  static constexpr std::array<int64_t, 12> kLatencyBoundsUs = {
      250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 250000, 500000, 1000000};

  void Increment(Counter counter, uint64_t by = 1) {
    counts_[counter].fetch_add(by, std::memory_order_relaxed);
  }
  uint64_t Get(Counter counter) const { return counts_[counter].load(std::memory_order_relaxed); }

  void RecordUpstreamLatency(absl::Duration latency);

  // rule: DomainRules::RuleName.
  void AddRuleHits(const std::string& rule, uint64_t hits);
  uint64_t RuleHits(const std::string& rule) const;

  // Sets the "dns." entries of *counts to this process's totals, keeping the others.
  void CopyTo(CounterMap* counts) const;
  // Adds the "dns." entries of counts: another generation's totals. A sum that would overflow
  // stays at the largest value.
  void Add(const CounterMap& counts);

 private:
  std::array<std::atomic<uint64_t>, kCounterCount> counts_{};
  std::array<std::atomic<uint64_t>, kLatencyBoundsUs.size() + 1> latency_{};

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, uint64_t> rule_hits_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nehost::filter
