// FilterService answers nehost.filter.v1.Filter: the extension's status, its rules and the
// lists imported into them.
//
// It owns neither the RuleStore, the MethodCounters nor the Authorizer, which must outlive it;
// every call it serves is counted there, by method. Status and ListRules need read access,
// AddRule, RemoveRule, ImportRules and RemoveList admin access. Handlers run on gRPC's threads and
// may run at once; they share nothing but the store and the counters, which are thread safe.
// Changes block until the rule file is on disk.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/access_policy.h"
#include "extension/dns_counters.h"
#include "extension/method_counters.h"
#include "extension/rule_store.h"
#include "nehost/filter/v1/filter.grpc.pb.h"

namespace nehost::filter {

// Who this process is, as Status reports it.
struct InstanceInfo {
  // The generation nehostd launched it as; 0 when standalone.
  uint64_t generation = 0;
  // The name nehostd hosts it under; empty when standalone.
  std::string service;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

class FilterService final : public v1::Filter::Service {
 public:
  // dns_counters may be null: no DNS data plane.
  FilterService(RuleStore* store, MethodCounters* counters, const DnsCounters* dns_counters,
                const Authorizer* authorizer, InstanceInfo instance);

  grpc::Status Status(grpc::ServerContext* context, const v1::StatusRequest* request,
                      v1::StatusResponse* response) override;
  grpc::Status ListRules(grpc::ServerContext* context, const v1::ListRulesRequest* request,
                         v1::ListRulesResponse* response) override;
  grpc::Status AddRule(grpc::ServerContext* context, const v1::AddRuleRequest* request,
                       v1::AddRuleResponse* response) override;
  grpc::Status RemoveRule(grpc::ServerContext* context, const v1::RemoveRuleRequest* request,
                          v1::RemoveRuleResponse* response) override;
  grpc::Status ImportRules(grpc::ServerContext* context,
                           grpc::ServerReader<v1::ImportRulesRequest>* reader,
                           v1::ImportRulesResponse* response) override;
  grpc::Status RemoveList(grpc::ServerContext* context, const v1::RemoveListRequest* request,
                          v1::RemoveListResponse* response) override;

 private:
  grpc::Status Allow(const grpc::ServerContext& context, Access access, const char* call) const;

  RuleStore* const store_;
  MethodCounters* const counters_;
  const DnsCounters* const dns_counters_;
  const Authorizer* const authorizer_;
  const InstanceInfo instance_;
};

}  // namespace nehost::filter
