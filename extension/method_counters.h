// MethodCounters counts the calls a service has served, by method name, for as long as the
// service has run. The counts live in a CounterSet under the method's own name ("status"), so
// they travel with every other counter: a generation starts from the last checkpoint or from
// what its predecessor hands over, and hands the sum to its successor when it drains.
//
// The CounterSet must outlive it. Thread safe: handlers on gRPC's threads increment while the
// control channel reads or adds. No call blocks beyond the set's short lock.
#pragma once

#include <google/protobuf/map.h>

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "extension/counters.h"

namespace nehost::filter {

// The form counters take in StatusResponse and in HandoffState.
using CounterMap = google::protobuf::Map<std::string, uint64_t>;

class MethodCounters {
 public:
  explicit MethodCounters(CounterSet* counters) : counters_(counters) {}

  // method must not contain '/', which marks the set's other counters.
  void Increment(absl::string_view method) { counters_->Add(method); }

  // Adds counts from another generation. They come from outside this process, so a sum that
  // would overflow stays at the largest value instead of wrapping to a small one.
  void Add(const CounterMap& counts);

  // Replaces *counts with a snapshot of the method counts, zeros left out.
  void CopyTo(CounterMap* counts) const;

  uint64_t Get(absl::string_view method) const { return counters_->Get(method); }

  // Whether a counter of the set counts a method's calls.
  static bool IsMethod(absl::string_view name);

 private:
  CounterSet* const counters_;
};

}  // namespace nehost::filter
