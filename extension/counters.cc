#include "extension/counters.h"

#include <algorithm>
#include <limits>

namespace nehost::filter {
namespace {

constexpr uint64_t kLargest = std::numeric_limits<uint64_t>::max();

// Adds delta (sign +1) or takes it away (-1) without wrapping: a sum that would overflow stays
// at the largest value, a difference that would go below zero stays at zero.
void AddClamped(std::atomic<uint64_t>& value, uint64_t delta, int sign) {
  uint64_t old = value.load(std::memory_order_relaxed);
  uint64_t updated;
  do {
    if (sign > 0) {
      updated = old > kLargest - delta ? kLargest : old + delta;
    } else {
      updated = old < delta ? 0 : old - delta;
    }
  } while (!value.compare_exchange_weak(old, updated, std::memory_order_relaxed));
}

}  // namespace

Histogram::Histogram(absl::Span<const uint64_t> upper_bounds)
    : upper_bounds_(upper_bounds.begin(), upper_bounds.end()),
      counts_(new std::atomic<uint64_t>[upper_bounds.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) counts_[i] = 0;
}

void Histogram::Record(uint64_t value) {
  size_t bucket =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

HistogramState Histogram::Snapshot() const {
  HistogramState state;
  for (uint64_t bound : upper_bounds_) state.add_upper_bounds(bound);
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    state.add_counts(counts_[i].load(std::memory_order_relaxed));
  }
  state.set_sum(sum_.load(std::memory_order_relaxed));
  return state;
}

void Histogram::Merge(const HistogramState& other, int sign) {
  for (int i = 0; i < other.counts_size(); ++i) {
    // The other's overflow bucket, and any count past its bounds, can only go to overflow.
    size_t bucket = upper_bounds_.size();
    if (i < other.upper_bounds_size()) {
      bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), other.upper_bounds(i)) -
               upper_bounds_.begin();
    }
    AddClamped(counts_[bucket], other.counts(i), sign);
  }
  AddClamped(sum_, other.sum(), sign);
}

Counter* CounterSet::Find(absl::string_view name) const {
  auto found = counters_.find(name);
  return found == counters_.end() ? nullptr : found->second.get();
}

Counter* CounterSet::counter(absl::string_view name) {
  {
    absl::ReaderMutexLock lock(&mu_);
    if (Counter* existing = Find(name)) return existing;
  }
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Counter>& slot = counters_[name];
  if (slot == nullptr) slot = std::make_unique<Counter>();
  return slot.get();
}

Histogram* CounterSet::histogram(absl::string_view name, absl::Span<const uint64_t> upper_bounds) {
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Histogram>& slot = histograms_[name];
  if (slot == nullptr) slot = std::make_unique<Histogram>(upper_bounds);
  return slot.get();
}

uint64_t CounterSet::Get(absl::string_view name) const {
  absl::ReaderMutexLock lock(&mu_);
  Counter* found = Find(name);
  return found == nullptr ? 0 : found->value();
}

void CounterSet::CopyTo(HandoffState* state) const {
  state->Clear();
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [name, counter] : counters_) {
    if (uint64_t value = counter->value(); value != 0) (*state->mutable_counters())[name] = value;
  }
  for (const auto& [name, histogram] : histograms_) {
    HistogramState snapshot = histogram->Snapshot();
    const bool empty = std::all_of(snapshot.counts().begin(), snapshot.counts().end(),
                                   [](uint64_t count) { return count == 0; });
    if (!empty) (*state->mutable_histograms())[name] = std::move(snapshot);
  }
}

void CounterSet::Add(const HandoffState& state) { Replace(HandoffState(), state); }

void CounterSet::Replace(const HandoffState& was, const HandoffState& now) {
  for (const auto& [name, value] : now.counters()) AddClamped(counter(name)->value_, value, +1);
  for (const auto& [name, value] : was.counters()) AddClamped(counter(name)->value_, value, -1);

  // A histogram this version does not know takes the bounds it came with.
  auto merge = [this](const std::string& name, const HistogramState& other, int sign) {
    std::vector<uint64_t> bounds(other.upper_bounds().begin(), other.upper_bounds().end());
    if (!std::is_sorted(bounds.begin(), bounds.end()) ||
        std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end()) {
      bounds.clear();  // bounds from outside that make no sense: keep the values in overflow
    }
    histogram(name, bounds)->Merge(other, sign);
  };
  for (const auto& [name, histogram] : now.histograms()) merge(name, histogram, +1);
  for (const auto& [name, histogram] : was.histograms()) merge(name, histogram, -1);
}

std::vector<std::pair<std::string, uint64_t>> CounterSet::Counters() const {
  std::vector<std::pair<std::string, uint64_t>> all;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, counter] : counters_) all.emplace_back(name, counter->value());
  }
  std::sort(all.begin(), all.end());
  return all;
}

std::vector<std::pair<std::string, HistogramState>> CounterSet::Histograms() const {
  std::vector<std::pair<std::string, HistogramState>> all;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, histogram] : histograms_) all.emplace_back(name, histogram->Snapshot());
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return all;
}

}  // namespace nehost::filter
