#include "extension/method_counters.h"

#include "absl/strings/match.h"

namespace nehost::filter {

bool MethodCounters::IsMethod(absl::string_view name) { return !absl::StrContains(name, '/'); }

void MethodCounters::Add(const CounterMap& counts) {
  HandoffState state;
  for (const auto& [method, count] : counts) {
    if (IsMethod(method)) (*state.mutable_counters())[method] = count;
  }
  counters_->Add(state);
}

void MethodCounters::CopyTo(CounterMap* counts) const {
  counts->clear();
  for (const auto& [name, count] : counters_->Counters()) {
    if (IsMethod(name) && count != 0) (*counts)[name] = count;
  }
}

}  // namespace nehost::filter
