// Generation is one run of nehost-filter as nehostd sees it: the gRPC server on its listening
// socket, the calls it has counted, and its side of the control channel (health, the
// inherited listening sockets, drain, and the state one generation hands to the next).
//
// It owns the server and the counters. The RuleStore and the inherited sockets belong to the
// caller and must outlive it; the sockets are handed out, never closed. Control requests come
// on the control server's thread while gRPC's threads serve calls and main may Stop after a
// signal: every call is thread safe. Drain and Stop block while calls in flight finish, up to
// their grace.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/access_policy.h"
#include "common/grpc_server.h"
#include "common/listen_fds.h"
#include "extension/control_server.h"
#include "extension/dns_counters.h"
#include "extension/filter_service.h"
#include "extension/method_counters.h"
#include "extension/rule_store.h"

namespace nehost::filter {

class Generation final : public ControlHandler {
 public:
  struct Options {
    InstanceInfo instance;
    // The socket the gRPC server accepts on.
    int serving_fd = -1;
    // What LISTEN_FDS passed, in its order; empty when the process bound its own socket.
    std::vector<InheritedSocket> inherited;
    // Runs on the control thread once the reply to a drain is written: time to exit.
    std::function<void()> on_drained;
    // Who may call what on the service socket.
    AccessPolicy access = AccessPolicy::RootOnly();
    // The DNS data plane's counters, reported by Status; may be null.
    const DnsCounters* dns_counters = nullptr;
    // Stops the DNS data plane, answering what it has read, within the grace; may be empty.
    std::function<void(absl::Duration grace)> drain_data_plane;
  };

  // Starts serving on options.serving_fd.
  static absl::StatusOr<std::unique_ptr<Generation>> Start(RuleStore* store, Options options);

  // Stops serving, as a drain does, but hands nothing over. Idempotent.
  void Stop(absl::Duration grace);

  // SERVING until a drain or Stop begins.
  ControlResponse Health() override;
  ControlResponse TakeListeners(std::vector<int>* fds) override;
  // Sends STOPPING=1, stops serving, and answers with the counters to hand over.
  ControlResponse Drain(absl::Duration grace) override;
  // Adds the predecessor's counters, and reloads the rules it may have changed on disk.
  ControlResponse ImportState(const HandoffState& state) override;
  void Drained() override;

  const MethodCounters& counters() const { return counters_; }

 private:
  Generation(RuleStore* store, Options options);

  // A response that says who answers: generation, pid, version, serving state.
  ControlResponse Identified() const;

  RuleStore* const store_;
  const Options options_;
  MethodCounters counters_;
  // Filled by the server's accept loop; the authorizer finds each call's caller there.
  ConnectionTable connections_;
  Authorizer authorizer_;
  FilterService service_;
  std::atomic<bool> stopping_{false};

  // Serialises stops: a drain on the control thread and a stop signal on main's.
  absl::Mutex stop_mu_;
  std::unique_ptr<FdServer> server_;
};

}  // namespace nehost::filter
