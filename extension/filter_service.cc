#include "extension/filter_service.h"

#include <unistd.h>

#include <utility>

#include "common/grpc_server.h"
#include "common/log.h"
#include "common/version.h"

namespace nehost::filter {

namespace {

// The names counters carry, in StatusResponse and across generations.
constexpr char kStatusMethod[] = "status";
constexpr char kListRulesMethod[] = "list_rules";
constexpr char kAddRuleMethod[] = "add_rule";
constexpr char kRemoveRuleMethod[] = "remove_rule";

}  // namespace

FilterService::FilterService(RuleStore* store, MethodCounters* counters,
                             const Authorizer* authorizer, InstanceInfo instance)
    : store_(store), counters_(counters), authorizer_(authorizer), instance_(std::move(instance)) {}

grpc::Status FilterService::Allow(const grpc::ServerContext& context, Access access,
                                  const char* call) const {
  absl::Status allowed = authorizer_->Check(context, access, call);
  if (!allowed.ok()) spdlog::info("refused call={}: {}", call, allowed.message());
  return ToGrpcStatus(allowed);
}

grpc::Status FilterService::Status(grpc::ServerContext* context, const v1::StatusRequest*,
                                   v1::StatusResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "Status"); !allowed.ok()) return allowed;
  counters_->Increment(kStatusMethod);
  auto uptime = std::chrono::steady_clock::now() - instance_.started;

  response->set_version(kVersion);
  response->set_pid(::getpid());
  response->set_generation(instance_.generation);
  response->set_service(instance_.service);
  response->set_uptime_ms(std::chrono::duration_cast<std::chrono::milliseconds>(uptime).count());
  response->set_rule_count(store_->size());
  counters_->CopyTo(response->mutable_counters());
  return grpc::Status::OK;
}

grpc::Status FilterService::ListRules(grpc::ServerContext* context, const v1::ListRulesRequest*,
                                      v1::ListRulesResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "ListRules"); !allowed.ok()) return allowed;
  counters_->Increment(kListRulesMethod);
  for (Rule& rule : store_->List()) *response->add_rules() = std::move(rule);
  return grpc::Status::OK;
}

grpc::Status FilterService::AddRule(grpc::ServerContext* context, const v1::AddRuleRequest* request,
                                    v1::AddRuleResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "AddRule"); !allowed.ok()) return allowed;
  counters_->Increment(kAddRuleMethod);
  absl::StatusOr<RuleStore::AddResult> result = store_->Add(request->rule());
  if (!result.ok()) {
    spdlog::debug("add rule refused error=\"{}\"", std::string(result.status().message()));
    return ToGrpcStatus(result.status());
  }

  response->set_added(result->added);
  *response->mutable_rule() = std::move(result->rule);
  return grpc::Status::OK;
}

grpc::Status FilterService::RemoveRule(grpc::ServerContext* context, const v1::RemoveRuleRequest* request,
                                       v1::RemoveRuleResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "RemoveRule"); !allowed.ok()) return allowed;
  counters_->Increment(kRemoveRuleMethod);
  absl::StatusOr<size_t> removed = store_->Remove(request->domain(), request->match());
  if (!removed.ok()) {
    spdlog::debug("remove rule refused error=\"{}\"", std::string(removed.status().message()));
    return ToGrpcStatus(removed.status());
  }

  response->set_removed(*removed);
  return grpc::Status::OK;
}

}  // namespace nehost::filter
