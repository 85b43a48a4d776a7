#include "extension/dns_counters.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace nehost::filter {
namespace {

constexpr char kHitsPrefix[] = "rule_hits/dns/";
constexpr char kLatencyName[] = "dns/upstream_latency_us";

// Names in the set, and in Status's map after "dns.".
constexpr std::array<const char*, DnsCounters::kCounterCount> kNames = {
    "queries",
    "blocked",
    "forwarded",
    "cached",
    "failed",
    "dropped_malformed",
    "upstream_bad_answers",
    "upstream_timeouts",
    "tcp_retries",
    "truncated_to_client",
    "not_implemented",
};

}  // namespace

DnsCounters::DnsCounters(CounterSet* set)
    : set_(set), latency_(set->histogram(kLatencyName, kLatencyBoundsUs)) {
  for (size_t i = 0; i < kCounterCount; ++i)
    counts_[i] = set->counter(absl::StrCat("dns/", kNames[i]));
}

void DnsCounters::RecordUpstreamLatency(absl::Duration latency) {
  latency_->Record(static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Microseconds(latency))));
}

void DnsCounters::AddRuleHits(const std::string& rule, uint64_t hits) {
  set_->Add(absl::StrCat(kHitsPrefix, rule), hits);
}

uint64_t DnsCounters::RuleHits(const std::string& rule) const {
  return set_->Get(absl::StrCat(kHitsPrefix, rule));
}

void DnsCounters::CopyTo(CounterMap* counts) const {
  for (size_t i = 0; i < kCounterCount; ++i) {
    (*counts)[absl::StrCat("dns.", kNames[i])] = counts_[i]->value();
  }

  HistogramState latency = latency_->Snapshot();
  for (int i = 0; i < latency.counts_size(); ++i) {
    std::string bound = i < latency.upper_bounds_size() ? absl::StrCat(latency.upper_bounds(i))
                                                        : std::string("inf");
    (*counts)[absl::StrCat("dns.upstream_latency_us.le_", bound)] = latency.counts(i);
  }

  for (const auto& [name, value] : set_->Counters()) {
    absl::string_view rule = name;
    if (absl::ConsumePrefix(&rule, kHitsPrefix)) (*counts)[absl::StrCat("dns.hits.", rule)] = value;
  }
}

}  // namespace nehost::filter
