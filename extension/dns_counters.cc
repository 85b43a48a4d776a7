#include "extension/dns_counters.h"

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace nehost::filter {
namespace {

constexpr char kPrefix[] = "dns.";
constexpr char kHitsPrefix[] = "dns.hits.";
constexpr char kLatencyPrefix[] = "dns.upstream_latency_us.le_";

constexpr std::array<const char*, DnsCounters::kCounterCount> kNames = {
    "dns.queries",
    "dns.blocked",
    "dns.forwarded",
    "dns.cached",
    "dns.failed",
    "dns.dropped_malformed",
    "dns.upstream_bad_answers",
    "dns.upstream_timeouts",
    "dns.tcp_retries",
    "dns.truncated_to_client",
    "dns.not_implemented",
};

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  uint64_t sum = a + b;
  return sum < a ? std::numeric_limits<uint64_t>::max() : sum;
}

void AtomicSaturatingAdd(std::atomic<uint64_t>& counter, uint64_t by) {
  uint64_t seen = counter.load(std::memory_order_relaxed);
  while (!counter.compare_exchange_weak(seen, SaturatingAdd(seen, by), std::memory_order_relaxed)) {
  }
}

std::string LatencyName(size_t bucket) {
  if (bucket == DnsCounters::kLatencyBoundsUs.size()) return absl::StrCat(kLatencyPrefix, "inf");
  return absl::StrCat(kLatencyPrefix, DnsCounters::kLatencyBoundsUs[bucket]);
}

}  // namespace

void DnsCounters::RecordUpstreamLatency(absl::Duration latency) {
  int64_t us = absl::ToInt64Microseconds(latency);
  auto bound = std::lower_bound(kLatencyBoundsUs.begin(), kLatencyBoundsUs.end(), us);
  latency_[bound - kLatencyBoundsUs.begin()].fetch_add(1, std::memory_order_relaxed);
}

void DnsCounters::AddRuleHits(const std::string& rule, uint64_t hits) {
  absl::MutexLock lock(&mu_);
  uint64_t& total = rule_hits_[rule];
  total = SaturatingAdd(total, hits);
}

uint64_t DnsCounters::RuleHits(const std::string& rule) const {
  absl::MutexLock lock(&mu_);
  auto found = rule_hits_.find(rule);
  return found == rule_hits_.end() ? 0 : found->second;
}

void DnsCounters::CopyTo(CounterMap* counts) const {
  for (size_t i = 0; i < kCounterCount; ++i) (*counts)[kNames[i]] = Get(static_cast<Counter>(i));
  for (size_t i = 0; i < latency_.size(); ++i) {
    (*counts)[LatencyName(i)] = latency_[i].load(std::memory_order_relaxed);
  }

  absl::MutexLock lock(&mu_);
  for (const auto& [rule, hits] : rule_hits_) (*counts)[absl::StrCat(kHitsPrefix, rule)] = hits;
}

void DnsCounters::Add(const CounterMap& counts) {
  for (const auto& [name, count] : counts) {
    if (!absl::StartsWith(name, kPrefix)) continue;

    if (absl::StartsWith(name, kHitsPrefix)) {
      AddRuleHits(name.substr(sizeof kHitsPrefix - 1), count);
      continue;
    }
    auto scalar = std::find(kNames.begin(), kNames.end(), name);
    if (scalar != kNames.end()) {
      AtomicSaturatingAdd(counts_[scalar - kNames.begin()], count);
      continue;
    }
    for (size_t i = 0; i < latency_.size(); ++i) {
      if (name == LatencyName(i)) AtomicSaturatingAdd(latency_[i], count);
    }
  }
}

}  // namespace nehost::filter
