#include "extension/method_counters.h"

#include <limits>

namespace nehost::filter {
namespace {

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  uint64_t sum = a + b;
  return sum < a ? std::numeric_limits<uint64_t>::max() : sum;
}

}  // namespace

void MethodCounters::Increment(absl::string_view method) {
  absl::MutexLock lock(&mu_);
  uint64_t& count = counts_[method];
  count = SaturatingAdd(count, 1);
}

void MethodCounters::Add(const CounterMap& counts) {
  absl::MutexLock lock(&mu_);
  for (const auto& [method, count] : counts) {
    uint64_t& total = counts_[method];
    total = SaturatingAdd(total, count);
  }
}

void MethodCounters::CopyTo(CounterMap* counts) const {
  counts->clear();
  absl::MutexLock lock(&mu_);
  for (const auto& [method, count] : counts_) (*counts)[method] = count;
}

uint64_t MethodCounters::Get(absl::string_view method) const {
  absl::MutexLock lock(&mu_);
  auto found = counts_.find(method);
  return found == counts_.end() ? 0 : found->second;
}

}  // namespace nehost::filter
