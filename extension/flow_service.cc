#include "extension/flow_service.h"

#include <google/protobuf/util/time_util.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_server.h"
#include "common/log.h"

namespace nehost::filter {
namespace {

// The names calls are counted under, in StatusResponse, StatsResponse and across generations.
constexpr char kEvaluateFlowMethod[] = "evaluate_flow";
constexpr char kEvaluateFlowsMethod[] = "evaluate_flows";
constexpr char kWatchDecisionsMethod[] = "watch_decisions";
constexpr char kListFlowRulesMethod[] = "list_flow_rules";
constexpr char kAddFlowRuleMethod[] = "add_flow_rule";
constexpr char kRemoveFlowRuleMethod[] = "remove_flow_rule";
constexpr char kSetDefaultFlowActionMethod[] = "set_default_flow_action";

// How often a watcher's handler looks up from its queue to see whether its caller has gone.
constexpr absl::Duration kWatchPoll = absl::Milliseconds(100);

google::protobuf::Timestamp Now() {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now()));
}

}  // namespace

FlowFilterService::FlowFilterService(FlowRuleStore* store, DecisionHub* decisions,
                                     CounterSet* counters, const Authorizer* authorizer)
    : store_(store),
      decisions_(decisions),
      calls_(counters),
      authorizer_(authorizer),
      evaluated_(counters->counter("flows/evaluated")),
      allowed_(counters->counter("flows/allowed")),
      denied_(counters->counter("flows/denied")),
      invalid_(counters->counter("flows/invalid")),
      batch_sizes_(counters->histogram("flows/batch_size", kBatchSizeBuckets)) {}

grpc::Status FlowFilterService::Allow(const grpc::ServerContext& context, Access access,
                                      const char* call) const {
  absl::Status allowed = authorizer_->Check(context, access, call);
  if (!allowed.ok()) spdlog::info("refused call={}: {}", call, allowed.message());
  return ToGrpcStatus(allowed);
}

void FlowFilterService::Evaluate(const FlowRules& rules, const v1::Flow& flow, ParsedFlow& parsed,
                                 v1::Verdict* verdict, Tally& tally) const {
  verdict->set_flow_id(flow.id());
  if (absl::Status status = ParseFlow(flow, &parsed); !status.ok()) {
    verdict->set_error(std::string(status.message()));
    ++tally.invalid;
    return;
  }

  FlowDecision decision = rules.Evaluate(parsed);
  verdict->set_action(decision.action);
  if (decision.rule != nullptr) verdict->set_rule(decision.rule->name());
  ++(decision.action == FlowRule::ALLOW ? tally.allowed : tally.denied);
}

void FlowFilterService::Count(const Tally& tally, size_t flows) {
  evaluated_->Add(flows - tally.invalid);
  if (tally.allowed != 0) allowed_->Add(tally.allowed);
  if (tally.denied != 0) denied_->Add(tally.denied);
  if (tally.invalid != 0) invalid_->Add(tally.invalid);
}

void FlowFilterService::PublishBatch(const v1::FlowBatch& batch, const v1::VerdictBatch& verdicts) {
  // Decisions that no watcher has room for are counted as dropped, never built.
  const size_t built = std::min<size_t>(batch.flows_size(), decisions_->Room());
  std::vector<Decision> published(built);
  const google::protobuf::Timestamp at = Now();
  for (size_t i = 0; i < built; ++i) {
    *published[i].mutable_at() = at;
    *published[i].mutable_flow() = batch.flows(i);
    *published[i].mutable_verdict() = verdicts.verdicts(i);
  }
  decisions_->Publish(published, batch.flows_size());
}

grpc::Status FlowFilterService::EvaluateFlow(grpc::ServerContext* context, const v1::Flow* flow,
                                             v1::Verdict* verdict) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "EvaluateFlow"); !allowed.ok()) {
    return allowed;
  }
  calls_.Increment(kEvaluateFlowMethod);

  ParsedFlow parsed;
  Tally tally;
  Evaluate(*store_->Current(), *flow, parsed, verdict, tally);
  Count(tally, 1);
  if (tally.invalid != 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, verdict->error());
  }

  if (decisions_->HasWatchers()) {
    v1::FlowBatch batch;
    *batch.add_flows() = *flow;
    v1::VerdictBatch verdicts;
    *verdicts.add_verdicts() = *verdict;
    PublishBatch(batch, verdicts);
  }
  return grpc::Status::OK;
}

grpc::Status FlowFilterService::EvaluateFlows(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::VerdictBatch, v1::FlowBatch>* stream) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "EvaluateFlows"); !allowed.ok()) {
    return allowed;
  }
  calls_.Increment(kEvaluateFlowsMethod);

  // Reused from batch to batch: protobuf keeps cleared elements and their strings, so after
  // the first batch, reading flows and writing verdicts allocate nothing.
  v1::FlowBatch batch;
  v1::VerdictBatch verdicts;
  ParsedFlow parsed;
  bool ended = false;
  for (uint64_t number = 1;; ++number) {
    if (!Waiting(context)) {
      ended = true;
      break;
    }
    if (!stream->Read(&batch) || !Busy(context)) break;
    if (batch.flows_size() > kMaxFlowsPerBatch) {
      invalid_->Add(batch.flows_size());
      Closed(context);
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("evaluate flows: batch ", number, " holds ",
                                       batch.flows_size(), " flows; at most ", kMaxFlowsPerBatch));
    }

    const std::shared_ptr<const FlowRules> rules = store_->Current();
    verdicts.Clear();
    Tally tally;
    for (const v1::Flow& flow : batch.flows()) {
      Evaluate(*rules, flow, parsed, verdicts.add_verdicts(), tally);
    }
    Count(tally, batch.flows_size());
    batch_sizes_->Record(batch.flows_size());
    if (decisions_->HasWatchers()) PublishBatch(batch, verdicts);

    if (!stream->Write(verdicts)) break;
  }

  constexpr char kEnded[] =
      "evaluate flows: this generation of nehost-filter stopped serving; send the batches that "
      "got no verdicts again, on a new stream";
  if (Closed(context)) return grpc::Status(grpc::StatusCode::CANCELLED, kEnded);
  if (ended) return grpc::Status(grpc::StatusCode::UNAVAILABLE, kEnded);
  return grpc::Status::OK;
}

bool FlowFilterService::Waiting(grpc::ServerContext* context) {
  absl::MutexLock lock(&streams_mu_);
  if (ending_) return false;
  streams_[context].busy = false;
  return true;
}

bool FlowFilterService::Busy(grpc::ServerContext* context) {
  absl::MutexLock lock(&streams_mu_);
  OpenStream& stream = streams_[context];
  if (stream.cancelled) return false;
  stream.busy = true;
  return true;
}

bool FlowFilterService::Closed(grpc::ServerContext* context) {
  absl::MutexLock lock(&streams_mu_);
  auto found = streams_.find(context);
  if (found == streams_.end()) return false;
  const bool cancelled = found->second.cancelled;
  streams_.erase(found);
  return cancelled;
}

void FlowFilterService::EndStreams() {
  absl::MutexLock lock(&streams_mu_);
  ending_ = true;
  // A stream blocked reading its next batch is ended by cancelling it; the context stays
  // alive until its handler has called Closed, which waits for this lock.
  for (auto& [context, stream] : streams_) {
    if (stream.busy || stream.cancelled) continue;
    stream.cancelled = true;
    context->TryCancel();
  }
}

grpc::Status FlowFilterService::WatchDecisions(grpc::ServerContext* context,
                                               const v1::WatchDecisionsRequest* request,
                                               grpc::ServerWriter<v1::Decision>* writer) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "WatchDecisions"); !allowed.ok()) {
    return allowed;
  }
  calls_.Increment(kWatchDecisionsMethod);
  if (request->buffer() > kMaxDecisionBuffer) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("watch decisions: buffer ", request->buffer(),
                                     " is more than ", kMaxDecisionBuffer));
  }

  const uint32_t buffer = request->buffer() == 0 ? kDefaultDecisionBuffer : request->buffer();
  std::shared_ptr<DecisionWatcher> watcher = decisions_->Watch(buffer);
  // The hub closes its watchers when the generation stops. The context is alive until this
  // handler returns, and the hub lets go of the watcher before then (Unwatch).
  watcher->OnClose([context] { context->TryCancel(); });
  spdlog::debug("decision watcher started buffer={}", buffer);
  std::vector<Decision> batch;
  bool open = true;
  while (open && !context->IsCancelled()) {
    if (watcher->Next(&batch, kWatchPoll) == DecisionWatcher::kClosed) break;
    for (size_t i = 0; open && i < batch.size(); ++i) {
      grpc::WriteOptions options;
      if (i + 1 < batch.size()) options.set_buffer_hint();
      open = writer->Write(batch[i], options);
    }
  }

  decisions_->Unwatch(watcher);
  spdlog::debug("decision watcher ended dropped={}", watcher->dropped());
  if (watcher->closed()) {
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        "watch decisions: this generation of nehost-filter stopped serving; "
                        "watch again to follow the next");
  }
  return grpc::Status::OK;
}

grpc::Status FlowFilterService::ListFlowRules(grpc::ServerContext* context,
                                              const v1::ListFlowRulesRequest*,
                                              v1::ListFlowRulesResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "ListFlowRules"); !allowed.ok()) {
    return allowed;
  }
  calls_.Increment(kListFlowRulesMethod);
  for (FlowRule& rule : store_->List()) *response->add_rules() = std::move(rule);
  response->set_default_action(store_->default_action());
  return grpc::Status::OK;
}

grpc::Status FlowFilterService::AddFlowRule(grpc::ServerContext* context,
                                            const v1::AddFlowRuleRequest* request,
                                            v1::AddFlowRuleResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "AddFlowRule"); !allowed.ok()) {
    return allowed;
  }
  calls_.Increment(kAddFlowRuleMethod);
  absl::StatusOr<FlowRuleStore::AddResult> result = store_->Add(request->rule());
  if (!result.ok()) {
    spdlog::debug("add flow rule refused error=\"{}\"", result.status().message());
    return ToGrpcStatus(result.status());
  }

  response->set_added(result->added);
  *response->mutable_rule() = std::move(result->rule);
  return grpc::Status::OK;
}

grpc::Status FlowFilterService::RemoveFlowRule(grpc::ServerContext* context,
                                               const v1::RemoveFlowRuleRequest* request,
                                               v1::RemoveFlowRuleResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "RemoveFlowRule"); !allowed.ok()) {
    return allowed;
  }
  calls_.Increment(kRemoveFlowRuleMethod);
  absl::StatusOr<bool> removed = store_->Remove(request->name());
  if (!removed.ok()) return ToGrpcStatus(removed.status());

  response->set_removed(*removed);
  return grpc::Status::OK;
}

grpc::Status FlowFilterService::SetDefaultFlowAction(grpc::ServerContext* context,
                                                     const v1::SetDefaultFlowActionRequest* request,
                                                     v1::SetDefaultFlowActionResponse*) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "SetDefaultFlowAction");
      !allowed.ok()) {
    return allowed;
  }
  calls_.Increment(kSetDefaultFlowActionMethod);
  return ToGrpcStatus(store_->SetDefault(request->action()));
}

}  // namespace nehost::filter
