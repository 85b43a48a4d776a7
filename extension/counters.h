// CounterSet holds nehost-filter's counters and histograms by name, for as long as the service
// runs: across upgrades (a generation hands its set to the next through the control channel's
// HandoffState) and across crashes (CounterCheckpoint writes the set to STATE/counters.json
// every few seconds and the next generation starts from it).
//
// A name without '/' counts the calls of one method ("status", as MethodCounters keeps them);
// every other name is "family/name": "flows/evaluated", "decisions/dropped",
// "rule_hits/flow/NAME", and for the DNS data plane "dns/queries", "dns/upstream_latency_us".
//
// The set owns its Counters and Histograms; the pointers it hands out stay valid as long as the
// set, so a hot path looks a counter up once and then only adds to it: an atomic add, no lock.
// Finding or creating one by name takes a short lock. Every call is thread safe and none blocks
// on anything but that lock.
//
//   CounterSet counters;
//   Counter* evaluated = counters.counter("flows/evaluated");
//   Histogram* latency = counters.histogram("dns/upstream_latency_us", kLatencyBucketsUs);
//   evaluated->Add(batch_size);
//   latency->Record(elapsed_us);
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "nehost/supervisor/v1/control.pb.h"

namespace nehost::filter {

using HandoffState = nehost::supervisor::v1::HandoffState;
using HistogramState = nehost::supervisor::v1::HistogramState;

// Upper bounds in microseconds for latencies, from a cache hit on loopback to a slow upstream.
inline constexpr uint64_t kLatencyBucketsUs[] = {50,     100,    250,    500,     1000,
                                                 2500,   5000,   10000,  25000,   50000,
                                                 100000, 250000, 500000, 1000000, 2500000};

class Counter {
 public:
  // Only a count handed over from outside could bring a counter near the top, so a sum that
  // wraps is put back at the largest value rather than prevented at the cost of a loop.
  void Add(uint64_t n = 1) {
    uint64_t old = value_.fetch_add(n, std::memory_order_relaxed);
    if (old > std::numeric_limits<uint64_t>::max() - n) {
      value_.store(std::numeric_limits<uint64_t>::max(), std::memory_order_relaxed);
    }
  }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  friend class CounterSet;
  std::atomic<uint64_t> value_{0};
};

// Fixed buckets: a value v falls in the first bucket whose upper bound is >= v, or in the
// overflow bucket past the last bound.
class Histogram {
 public:
  // upper_bounds must be strictly increasing.
  explicit Histogram(absl::Span<const uint64_t> upper_bounds);

  void Record(uint64_t value);

  // Bounds, counts (one more than the bounds) and sum, as of now. A snapshot taken while
  // values are recorded may count a value in its bucket and not yet in the sum, or the other
  // way round.
  HistogramState Snapshot() const;
  // Adds another histogram's counts (sign +1) or takes them away (-1, never below zero). Its
  // buckets need not be these: each of its counts goes to the first bucket here whose bound
  // holds its own upper bound, so a value is never counted below where it was.
  void Merge(const HistogramState& other, int sign);

  const std::vector<uint64_t>& upper_bounds() const { return upper_bounds_; }

 private:
  const std::vector<uint64_t> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<uint64_t> sum_{0};
};

class CounterSet {
 public:
  // Finds the counter of that name, or creates it at zero.
  Counter* counter(absl::string_view name);
  // Finds the histogram of that name, or creates it empty with these bounds. An existing one
  // keeps the bounds it was created with.
  Histogram* histogram(absl::string_view name, absl::Span<const uint64_t> upper_bounds);

  // counter(name)->Add(n), for a caller that does not keep the pointer.
  void Add(absl::string_view name, uint64_t n = 1) { counter(name)->Add(n); }
  // 0 when there is no such counter.
  uint64_t Get(absl::string_view name) const;

  // Every counter and histogram that holds something; those at zero are left out, since
  // adding them would change nothing.
  void CopyTo(HandoffState* state) const;
  // Adds the state's counts to these, saturating instead of wrapping: they come from outside
  // this process. Names this version does not know are kept and handed on.
  void Add(const HandoffState& state);
  // Replaces counts taken from a checkpoint (was) by exact ones (now): adds now, takes was
  // away, never going below zero. A generation that started from its predecessor's checkpoint
  // does this when the predecessor hands over.
  void Replace(const HandoffState& was, const HandoffState& now);

  // Every counter, zeros included, by name.
  std::vector<std::pair<std::string, uint64_t>> Counters() const;
  // Every histogram, by name.
  std::vector<std::pair<std::string, HistogramState>> Histograms() const;

 private:
  Counter* Find(absl::string_view name) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Counter>> counters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Histogram>> histograms_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nehost::filter
