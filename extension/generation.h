// Generation is one run of nehost-filter as nehostd sees it: the gRPC server on its listening
// socket (Filter, FlowFilter and FilterStats), the decisions it streams to watchers, the
// checkpoint of its counters, and its side of the control channel (health, the inherited
// listening sockets, drain, and the counters one generation hands to the next).
//
// It owns the server, the decision hub and the checkpoint. The stores, the CounterSet and the
// inherited sockets belong to the caller and must outlive it; the sockets are handed out,
// never closed. Control requests come on the control server's thread while gRPC's threads
// serve calls and main may Stop after a signal: every call is thread safe. Drain and Stop
// block while calls in flight finish, up to their grace, and while the last checkpoint is
// written.
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
#include "extension/checkpoint.h"
#include "extension/control_server.h"
#include "extension/counters.h"
#include "extension/decisions.h"
#include "extension/dns_counters.h"
#include "extension/filter_service.h"
#include "extension/flow_rules.h"
#include "extension/flow_service.h"
#include "extension/method_counters.h"
#include "extension/rule_store.h"
#include "extension/stats_service.h"

namespace nehost::filter {

// What a generation serves from: owned by the caller, kept from one generation to the next.
struct FilterState {
  RuleStore* rules = nullptr;
  FlowRuleStore* flow_rules = nullptr;
  CounterSet* counters = nullptr;
  // Where flow verdicts and DNS queries go for WatchDecisions; the DNS data plane publishes
  // to it from before the generation starts.
  DecisionHub* decisions = nullptr;
  // Where STATE/counters.json goes; empty to keep no checkpoint.
  std::string state_dir;
  // What the counters took from the checkpoint at start (LoadCheckpoint). A predecessor's
  // handoff replaces it, since the predecessor's exact counts include it.
  HandoffState checkpointed;
};

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

  // Starts serving on options.serving_fd, and checkpointing when state.state_dir is set.
  static absl::StatusOr<std::unique_ptr<Generation>> Start(FilterState state, Options options);

  // Stops serving, as a drain does, but hands nothing over; writes the last checkpoint.
  // Idempotent.
  void Stop(absl::Duration grace);

  // SERVING until a drain or Stop begins.
  ControlResponse Health() override;
  ControlResponse TakeListeners(std::vector<int>* fds) override;
  // Sends STOPPING=1, stops serving, and answers with the counters to hand over.
  ControlResponse Drain(absl::Duration grace) override;
  // Takes the predecessor's counters in place of the checkpoint this generation started
  // from, and reloads the rules it may have changed on disk.
  ControlResponse ImportState(const HandoffState& state) override;
  void Drained() override;

 private:
  Generation(FilterState state, Options options);

  // A response that says who answers: generation, pid, version, serving state.
  ControlResponse Identified() const;
  // What Stop and Drain share; last says whether the checkpoint is written once more.
  void StopServing(absl::Duration grace, CounterCheckpoint::LastWrite last);

  FilterState state_;
  const Options options_;
  MethodCounters calls_;
  // Filled by the server's accept loop; the authorizer finds each call's caller there.
  ConnectionTable connections_;
  Authorizer authorizer_;
  std::unique_ptr<CounterCheckpoint> checkpoint_;
  FilterService service_;
  FlowFilterService flow_service_;
  StatsService stats_service_;
  std::atomic<bool> stopping_{false};

  // Serialises imports: the checkpoint is replaced once.
  absl::Mutex import_mu_;

  // Serialises stops: a drain on the control thread and a stop signal on main's.
  absl::Mutex stop_mu_;
  std::unique_ptr<FdServer> server_;
};

}  // namespace nehost::filter
