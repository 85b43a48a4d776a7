// StatsService answers nehost.filter.v1.FilterStats: every counter of the filter by name, the
// per-rule hits and the histograms, as they stand since the service was first started.
//
// It owns nothing: the CounterSet, the checkpoint (which may be null, when nothing is
// checkpointed) and the Authorizer must outlive it. Stats needs read access. Thread safe; a
// call takes the set's short lock while it copies.
#pragma once

#include <grpcpp/grpcpp.h>

#include "common/access_policy.h"
#include "extension/checkpoint.h"
#include "extension/counters.h"
#include "extension/method_counters.h"
#include "nehost/filter/v1/stats.grpc.pb.h"

namespace nehost::filter {

// Counters under this prefix are per-rule hits: "rule_hits/flow/NAME".
inline constexpr char kRuleHitsPrefix[] = "rule_hits/";

class StatsService final : public v1::FilterStats::Service {
 public:
  StatsService(CounterSet* counters, const CounterCheckpoint* checkpoint,
               const Authorizer* authorizer);

  grpc::Status Stats(grpc::ServerContext* context, const v1::StatsRequest* request,
                     v1::StatsResponse* response) override;

 private:
  CounterSet* const counters_;
  MethodCounters calls_;
  const CounterCheckpoint* const checkpoint_;
  const Authorizer* const authorizer_;
};

// Sorts the set into the response: calls, counters, rule hits and histograms.
void FillStats(const CounterSet& counters, v1::StatsResponse* response);

}  // namespace nehost::filter
