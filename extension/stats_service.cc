#include "extension/stats_service.h"

#include <google/protobuf/util/time_util.h>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "common/grpc_server.h"
#include "common/log.h"

namespace nehost::filter {
namespace {

constexpr char kStatsMethod[] = "stats";

}  // namespace

void FillStats(const CounterSet& counters, v1::StatsResponse* response) {
  for (const auto& [name, value] : counters.Counters()) {
    absl::string_view rule = name;
    if (MethodCounters::IsMethod(name)) {
      (*response->mutable_calls())[name] = value;
    } else if (absl::ConsumePrefix(&rule, kRuleHitsPrefix)) {
      (*response->mutable_rule_hits())[std::string(rule)] = value;
    } else {
      (*response->mutable_counters())[name] = value;
    }
  }

  for (const auto& [name, state] : counters.Histograms()) {
    v1::Histogram* histogram = response->add_histograms();
    histogram->set_name(name);
    *histogram->mutable_upper_bounds() = state.upper_bounds();
    *histogram->mutable_counts() = state.counts();
    uint64_t count = 0;
    for (uint64_t bucket : state.counts()) count += bucket;
    histogram->set_count(count);
    histogram->set_sum(state.sum());
  }
}

StatsService::StatsService(CounterSet* counters, const CounterCheckpoint* checkpoint,
                           const Authorizer* authorizer)
    : counters_(counters), calls_(counters), checkpoint_(checkpoint), authorizer_(authorizer) {}

grpc::Status StatsService::Stats(grpc::ServerContext* context, const v1::StatsRequest*,
                                 v1::StatsResponse* response) {
  if (absl::Status allowed = authorizer_->Check(*context, Access::kRead, "Stats"); !allowed.ok()) {
    spdlog::info("refused call=Stats: {}", allowed.message());
    return ToGrpcStatus(allowed);
  }
  calls_.Increment(kStatsMethod);

  FillStats(*counters_, response);
  if (checkpoint_ != nullptr) {
    if (std::optional<absl::Time> written = checkpoint_->last_written()) {
      *response->mutable_last_checkpoint() =
          google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(*written));
    }
  }
  return grpc::Status::OK;
}

}  // namespace nehost::filter
