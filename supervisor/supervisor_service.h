// The gRPC face of the Supervisor: nehost.supervisor.v1.Supervisor on RUNTIME/nehostd.sock.
//
// Handlers only translate: requests into Supervisor calls, absl statuses into gRPC ones
// (once, here), after the authorizer has let the caller in: Lookup, List, Watch and Doctor
// need read access, the others admin access. Thread safe, as the Supervisor is; Lookup blocks
// while a service starts and Watch for as long as the caller keeps the stream.
#pragma once

#include <functional>

#include "common/access_policy.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"
#include "supervisor/supervisor.h"

namespace nehost::supervisor {

class SupervisorService final : public nehost::supervisor::v1::Supervisor::Service {
 public:
  // on_reexec is called from a handler thread when a client asks nehostd to re-execute; it
  // checks what would run and must only arrange for that to happen once the call has been
  // answered. Its error, when the new image is refused, is the call's answer.
  // The authorizer must outlive the service.
  SupervisorService(Supervisor* supervisor, const Authorizer* authorizer,
                    std::function<absl::Status()> on_reexec)
      : supervisor_(supervisor), authorizer_(authorizer), on_reexec_(std::move(on_reexec)) {}

  grpc::Status Lookup(grpc::ServerContext* context, const v1::LookupRequest* request,
                      v1::LookupResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const v1::ListRequest* request,
                    v1::ListResponse* response) override;
  grpc::Status Start(grpc::ServerContext* context, const v1::StartRequest* request,
                     v1::StartResponse* response) override;
  grpc::Status Stop(grpc::ServerContext* context, const v1::StopRequest* request,
                    v1::StopResponse* response) override;
  grpc::Status Restart(grpc::ServerContext* context, const v1::RestartRequest* request,
                       v1::RestartResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::Event>* writer) override;
  grpc::Status Upgrade(grpc::ServerContext* context, const v1::UpgradeRequest* request,
                       grpc::ServerWriter<v1::UpgradeProgress>* writer) override;
  grpc::Status Doctor(grpc::ServerContext* context, const v1::DoctorRequest* request,
                      v1::DoctorResponse* response) override;
  grpc::Status Reexec(grpc::ServerContext* context, const v1::ReexecRequest* request,
                      v1::ReexecResponse* response) override;

 private:
  grpc::Status Allow(const grpc::ServerContext& context, Access access, const char* call) const;

  Supervisor* supervisor_;
  const Authorizer* authorizer_;
  std::function<absl::Status()> on_reexec_;
};

}  // namespace nehost::supervisor
