// FlowFilterService answers nehost.filter.v1.FlowFilter: verdicts on flows, one at a time or
// in batches over a stream, the stream of decisions for agents that watch, and the flow rules.
//
// It owns none of what it is given, which must outlive it. Evaluations, watching and listing
// need read access, rule changes admin access. Handlers run on gRPC's threads, any number at
// once: evaluation reads the compiled rules once per batch without a lock, counts in atomic
// counters, and publishes decisions only when someone watches. AddFlowRule, RemoveFlowRule and
// SetDefaultFlowAction block until the rule file is on disk; WatchDecisions blocks for as long
// as the watcher stays, until the hub is closed; EvaluateFlows for as long as its stream
// stays open, until EndStreams.
//
// Counters, in the CounterSet: flows/evaluated, flows/allowed, flows/denied, flows/invalid
// (flows that could not be evaluated), the histogram flows/batch_size, the per-rule hits the
// rules count, and calls by method through MethodCounters.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/access_policy.h"
#include "extension/counters.h"
#include "extension/decisions.h"
#include "extension/flow_rules.h"
#include "extension/method_counters.h"
#include "nehost/filter/v1/flow.grpc.pb.h"

namespace nehost::filter {

inline constexpr int kMaxFlowsPerBatch = 10000;
inline constexpr uint64_t kBatchSizeBuckets[] = {1, 10, 100, 1000, 10000};

class FlowFilterService final : public v1::FlowFilter::Service {
 public:
  FlowFilterService(FlowRuleStore* store, DecisionHub* decisions, CounterSet* counters,
                    const Authorizer* authorizer);

  grpc::Status EvaluateFlow(grpc::ServerContext* context, const v1::Flow* flow,
                            v1::Verdict* verdict) override;
  grpc::Status EvaluateFlows(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::VerdictBatch, v1::FlowBatch>* stream) override;
  grpc::Status WatchDecisions(grpc::ServerContext* context,
                              const v1::WatchDecisionsRequest* request,
                              grpc::ServerWriter<v1::Decision>* writer) override;
  grpc::Status ListFlowRules(grpc::ServerContext* context, const v1::ListFlowRulesRequest* request,
                             v1::ListFlowRulesResponse* response) override;
  grpc::Status AddFlowRule(grpc::ServerContext* context, const v1::AddFlowRuleRequest* request,
                           v1::AddFlowRuleResponse* response) override;
  grpc::Status RemoveFlowRule(grpc::ServerContext* context,
                              const v1::RemoveFlowRuleRequest* request,
                              v1::RemoveFlowRuleResponse* response) override;
  grpc::Status SetDefaultFlowAction(grpc::ServerContext* context,
                                    const v1::SetDefaultFlowActionRequest* request,
                                    v1::SetDefaultFlowActionResponse* response) override;

  // Ends every EvaluateFlows stream between two batches, now and to come: one that waits for
  // its next batch at once (CANCELLED), one evaluating a batch once its verdicts are written
  // (UNAVAILABLE). A generation that stops calls it, so that open streams do not hold its
  // drain to the end of the grace; their clients send the batches that got no verdicts again,
  // on a new stream, which reaches the successor.
  void EndStreams();

 private:
  // An EvaluateFlows stream, as EndStreams sees it.
  struct OpenStream {
    // Evaluating a batch, rather than waiting for the next.
    bool busy = false;
    // EndStreams cancelled it while it waited.
    bool cancelled = false;
  };
  // Whether the stream may wait for another batch; false once EndStreams was called.
  bool Waiting(grpc::ServerContext* context);
  // Marks the stream busy with the batch it has just read; false when EndStreams cancelled it
  // first, and the batch must go uncounted: its client sends it again, to the successor.
  bool Busy(grpc::ServerContext* context);
  // Forgets the stream; whether EndStreams cancelled it.
  bool Closed(grpc::ServerContext* context);

  // Tallies of one batch, added to the shared counters once per batch.
  struct Tally {
    uint64_t allowed = 0;
    uint64_t denied = 0;
    uint64_t invalid = 0;
  };

  grpc::Status Allow(const grpc::ServerContext& context, Access access, const char* call) const;
  // Fills *verdict for flow, reusing parsed.
  void Evaluate(const FlowRules& rules, const v1::Flow& flow, ParsedFlow& parsed,
                v1::Verdict* verdict, Tally& tally) const;
  void Count(const Tally& tally, size_t flows);
  void PublishBatch(const v1::FlowBatch& batch, const v1::VerdictBatch& verdicts);

  FlowRuleStore* const store_;
  DecisionHub* const decisions_;
  MethodCounters calls_;
  const Authorizer* const authorizer_;
  Counter* const evaluated_;
  Counter* const allowed_;
  Counter* const denied_;
  Counter* const invalid_;
  Histogram* const batch_sizes_;

  absl::Mutex streams_mu_;
  absl::flat_hash_map<grpc::ServerContext*, OpenStream> streams_ ABSL_GUARDED_BY(streams_mu_);
  bool ending_ ABSL_GUARDED_BY(streams_mu_) = false;
};

}  // namespace nehost::filter
