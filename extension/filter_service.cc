#include "extension/filter_service.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_server.h"
#include "common/log.h"
#include "common/version.h"
#include "extension/rule_import.h"

namespace nehost::filter {

namespace {

// The names counters carry, in StatusResponse and across generations.
constexpr char kStatusMethod[] = "status";
constexpr char kListRulesMethod[] = "list_rules";
constexpr char kAddRuleMethod[] = "add_rule";
constexpr char kRemoveRuleMethod[] = "remove_rule";
constexpr char kImportRulesMethod[] = "import_rules";
constexpr char kRemoveListMethod[] = "remove_list";

// The first message of an import must be its header.
absl::StatusOr<v1::ImportRulesHeader> ReadImportHeader(
    grpc::ServerReader<v1::ImportRulesRequest>* reader) {
  v1::ImportRulesRequest first;
  if (!reader->Read(&first) || !first.has_header()) {
    return absl::InvalidArgumentError("import rules: the first message must be the header");
  }
  if (absl::Status name = CheckListName(first.header().name()); !name.ok()) {
    return absl::Status(name.code(), absl::StrCat("import rules: ", name.message()));
  }
  if (!v1::ImportFormat_IsValid(first.header().format())) {
    return absl::InvalidArgumentError(
        absl::StrCat("import rules: unknown format ", static_cast<int>(first.header().format())));
  }
  return first.header();
}

// Reads the chunks that follow the header through importer.
absl::Status ReadImportChunks(grpc::ServerReader<v1::ImportRulesRequest>* reader,
                              ListImporter* importer) {
  v1::ImportRulesRequest request;
  while (reader->Read(&request)) {
    if (!request.has_chunk()) {
      return absl::InvalidArgumentError("import rules: a second header after the first");
    }
    importer->Feed(request.chunk());
  }
  importer->Finish();
  return absl::OkStatus();
}

}  // namespace

FilterService::FilterService(RuleStore* store, MethodCounters* counters,
                             const DnsCounters* dns_counters, const Authorizer* authorizer,
                             InstanceInfo instance)
    : store_(store),
      counters_(counters),
      dns_counters_(dns_counters),
      authorizer_(authorizer),
      instance_(std::move(instance)) {}

grpc::Status FilterService::Allow(const grpc::ServerContext& context, Access access,
                                  const char* call) const {
  absl::Status allowed = authorizer_->Check(context, access, call);
  if (!allowed.ok()) spdlog::info("refused call={}: {}", call, allowed.message());
  return ToGrpcStatus(allowed);
}

grpc::Status FilterService::Status(grpc::ServerContext* context, const v1::StatusRequest*,
                                   v1::StatusResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "Status"); !allowed.ok())
    return allowed;
  counters_->Increment(kStatusMethod);
  auto uptime = std::chrono::steady_clock::now() - instance_.started;

  response->set_version(kVersion);
  response->set_pid(::getpid());
  response->set_generation(instance_.generation);
  response->set_service(instance_.service);
  response->set_uptime_ms(std::chrono::duration_cast<std::chrono::milliseconds>(uptime).count());
  response->set_rule_count(store_->size());
  counters_->CopyTo(response->mutable_counters());
  if (dns_counters_ != nullptr) dns_counters_->CopyTo(response->mutable_counters());
  return grpc::Status::OK;
}

grpc::Status FilterService::ListRules(grpc::ServerContext* context, const v1::ListRulesRequest*,
                                      v1::ListRulesResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "ListRules"); !allowed.ok())
    return allowed;
  counters_->Increment(kListRulesMethod);
  for (Rule& rule : store_->List()) *response->add_rules() = std::move(rule);
  for (RuleList& list : store_->Lists()) *response->add_lists() = std::move(list);
  return grpc::Status::OK;
}

grpc::Status FilterService::AddRule(grpc::ServerContext* context, const v1::AddRuleRequest* request,
                                    v1::AddRuleResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "AddRule"); !allowed.ok())
    return allowed;
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

grpc::Status FilterService::RemoveRule(grpc::ServerContext* context,
                                       const v1::RemoveRuleRequest* request,
                                       v1::RemoveRuleResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "RemoveRule"); !allowed.ok())
    return allowed;
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

namespace nehost::filter {

grpc::Status FilterService::ImportRules(grpc::ServerContext* context,
                                        grpc::ServerReader<v1::ImportRulesRequest>* reader,
                                        v1::ImportRulesResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "ImportRules"); !allowed.ok()) {
    return allowed;
  }
  counters_->Increment(kImportRulesMethod);
  absl::StatusOr<v1::ImportRulesHeader> header = ReadImportHeader(reader);
  if (!header.ok()) return ToGrpcStatus(header.status());

  ListImporter importer(header->format(), header->suffix());
  if (absl::Status read = ReadImportChunks(reader, &importer); !read.ok()) {
    return ToGrpcStatus(read);
  }
  response->set_skipped_lines(importer.skipped_lines());
  response->set_invalid_lines(importer.invalid_lines());
  for (const v1::ImportLineError& error : importer.errors()) *response->add_errors() = error;

  RuleList list;
  list.set_name(header->name());
  list.set_action(header->action());
  list.set_response(header->response());
  list.set_count(importer.names());
  bool refused =
      (header->all_or_nothing() && importer.invalid_lines() > 0) || importer.names() == 0;
  if (refused) {
    spdlog::info("list not imported name={} lines={} invalid={} names={} all_or_nothing={}",
                 list.name(), importer.lines(), importer.invalid_lines(), importer.names(),
                 header->all_or_nothing());
    *response->mutable_list() = std::move(list);
    return grpc::Status::OK;
  }

  absl::StatusOr<RuleStore::ImportResult> imported = store_->ImportList(list, importer.TakeList());
  if (!imported.ok()) return ToGrpcStatus(imported.status());
  response->set_committed(true);
  response->set_replaced(imported->replaced);
  *response->mutable_list() = std::move(imported->list);
  return grpc::Status::OK;
}

grpc::Status FilterService::RemoveList(grpc::ServerContext* context,
                                       const v1::RemoveListRequest* request,
                                       v1::RemoveListResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "RemoveList"); !allowed.ok()) {
    return allowed;
  }
  counters_->Increment(kRemoveListMethod);
  absl::StatusOr<bool> removed = store_->RemoveList(request->name());
  if (!removed.ok()) return ToGrpcStatus(removed.status());
  response->set_removed(*removed);
  return grpc::Status::OK;
}

}  // namespace nehost::filter
