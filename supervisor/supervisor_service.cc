#include "supervisor/supervisor_service.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_server.h"
#include "common/log.h"

namespace nehost::supervisor {
namespace {

// Lookups wait at most this long, whatever the caller asks.
constexpr uint32_t kMaxLookupWaitMs = 60'000;

grpc::Status CheckName(const std::string& name) {
  if (name.empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "service name is empty");
  return grpc::Status::OK;
}

// Copies a registration into a response, or converts the failure.
template <typename Response>
grpc::Status Answer(const absl::StatusOr<Registration>& registration, Response* response) {
  if (!registration.ok()) return ToGrpcStatus(registration.status());
  *response->mutable_registration() = *registration;
  return grpc::Status::OK;
}

}  // namespace

grpc::Status SupervisorService::Allow(const grpc::ServerContext& context, Access access,
                                      const char* call) const {
  absl::Status allowed = authorizer_->Check(context, access, call);
  if (!allowed.ok()) spdlog::info("refused call={}: {}", call, allowed.message());
  return ToGrpcStatus(allowed);
}

grpc::Status SupervisorService::Lookup(grpc::ServerContext* context,
                                       const v1::LookupRequest* request,
                                       v1::LookupResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "Lookup"); !allowed.ok())
    return allowed;
  if (grpc::Status valid = CheckName(request->name()); !valid.ok()) return valid;
  uint32_t wait_ms = std::min(request->wait_ms(), kMaxLookupWaitMs);
  return Answer(supervisor_->Lookup(request->name(), absl::Milliseconds(wait_ms)), response);
}

grpc::Status SupervisorService::List(grpc::ServerContext* context, const v1::ListRequest*,
                                     v1::ListResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "List"); !allowed.ok()) return allowed;
  for (Registration& registration : supervisor_->List()) {
    *response->add_registrations() = std::move(registration);
  }
  return grpc::Status::OK;
}

grpc::Status SupervisorService::Start(grpc::ServerContext* context, const v1::StartRequest* request,
                                      v1::StartResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "Start"); !allowed.ok())
    return allowed;
  if (grpc::Status valid = CheckName(request->name()); !valid.ok()) return valid;
  return Answer(supervisor_->StartService(request->name()), response);
}

grpc::Status SupervisorService::Stop(grpc::ServerContext* context, const v1::StopRequest* request,
                                     v1::StopResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "Stop"); !allowed.ok()) return allowed;
  if (grpc::Status valid = CheckName(request->name()); !valid.ok()) return valid;
  return Answer(supervisor_->StopService(request->name()), response);
}

grpc::Status SupervisorService::Restart(grpc::ServerContext* context,
                                        const v1::RestartRequest* request,
                                        v1::RestartResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "Restart"); !allowed.ok())
    return allowed;
  if (grpc::Status valid = CheckName(request->name()); !valid.ok()) return valid;
  return Answer(supervisor_->RestartService(request->name()), response);
}

grpc::Status SupervisorService::Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                                      grpc::ServerWriter<v1::Event>* writer) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "Watch"); !allowed.ok()) return allowed;
  if (!request->name().empty()) {
    bool known = false;
    for (const Registration& registration : supervisor_->List()) {
      known = known || registration.name() == request->name();
    }
    if (!known) {
      return grpc::Status(grpc::NOT_FOUND, absl::StrCat("unknown service name ", request->name()));
    }
  }

  std::shared_ptr<EventHub::Subscription> subscription =
      supervisor_->events().Subscribe(request->name());
  // The sync API has no cancellation callback: check for a gone caller between events.
  while (!context->IsCancelled() && !subscription->closed()) {
    std::optional<v1::Event> event = subscription->Next(absl::Milliseconds(250));
    if (event.has_value() && !writer->Write(*event)) break;
  }
  supervisor_->events().Unsubscribe(subscription);
  if (subscription->dropped() > 0) {
    spdlog::warn("watch stream fell behind and lost events={}", subscription->dropped());
  }
  return grpc::Status::OK;
}

grpc::Status SupervisorService::Upgrade(grpc::ServerContext* context,
                                        const v1::UpgradeRequest* request,
                                        grpc::ServerWriter<v1::UpgradeProgress>* writer) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "Upgrade"); !allowed.ok())
    return allowed;
  if (grpc::Status valid = CheckName(request->name()); !valid.ok()) return valid;

  // A caller that goes away does not stop the upgrade: it runs to its end either way.
  bool caller_gone = false;
  absl::StatusOr<v1::UpgradeProgress> done = supervisor_->Upgrade(
      request->name(), request->to_version(), [&](const v1::UpgradeProgress& progress) {
        if (!caller_gone && !context->IsCancelled()) caller_gone = !writer->Write(progress);
      });
  return ToGrpcStatus(done.status());
}

grpc::Status SupervisorService::Doctor(grpc::ServerContext* context,
                                       const v1::DoctorRequest* request,
                                       v1::DoctorResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kRead, "Doctor"); !allowed.ok())
    return allowed;
  if (grpc::Status valid = CheckName(request->name()); !valid.ok()) return valid;
  absl::StatusOr<v1::DoctorResponse> report = supervisor_->Doctor(request->name());
  if (!report.ok()) return ToGrpcStatus(report.status());
  *response = std::move(*report);
  return grpc::Status::OK;
}

grpc::Status SupervisorService::Reexec(grpc::ServerContext* context, const v1::ReexecRequest*,
                                       v1::ReexecResponse* response) {
  if (grpc::Status allowed = Allow(*context, Access::kAdmin, "Reexec"); !allowed.ok())
    return allowed;
  spdlog::info("re-execution requested");
  if (absl::Status accepted = on_reexec_(); !accepted.ok()) {
    return ToGrpcStatus(
        absl::Status(accepted.code(), absl::StrCat("reexec refused: ", accepted.message())));
  }
  response->set_pid(::getpid());
  return grpc::Status::OK;
}

}  // namespace nehost::supervisor
