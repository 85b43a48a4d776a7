// MethodCounters counts the calls a service has served, by method name, for as long as the
// service has run: a generation starts from zero, adds its predecessor's counts when it takes
// over, and hands the sum to its successor when it drains.
//
// Thread safe: handlers on gRPC's threads increment while the control channel reads or adds.
// No call blocks beyond a short lock.
#pragma once

#include <google/protobuf/map.h>

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace nehost::filter {

// The form counters take in StatusResponse and in HandoffState.
using CounterMap = google::protobuf::Map<std::string, uint64_t>;

class MethodCounters {
 public:
  void Increment(absl::string_view method);

  // Adds counts from another generation. They come from outside this process, so a sum that
  // would overflow stays at the largest value instead of wrapping to a small one.
  void Add(const CounterMap& counts);

  // Replaces *counts with a snapshot.
  void CopyTo(CounterMap* counts) const;

  uint64_t Get(absl::string_view method) const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, uint64_t> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nehost::filter
