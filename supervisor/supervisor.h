// Supervisor is nehostd's core: it owns each service's listening sockets and registration,
// launches generations, watches them through pidfds, restarts them with backoff, and answers
// lookups only with owners it has just verified.
//
// One loop thread waits on the pidfds, the sd_notify socket and the state deadlines (ready
// timeout, stop grace, restart delay); gRPC handler threads call the public methods. Both
// sides work under one mutex, so every change of a service happens whole. Lookup blocks
// while a service starts, up to its wait; StopService and Shutdown return before or after
// the process is gone as each says; everything else returns promptly.
//
// Lifecycle of one service (s6 style; "exit" is seen through the pidfd):
//
//   state      event                 next state
//   STOPPED    start/restart         STARTING (launch)
//   STARTING   READY=1               READY
//   STARTING   ready timeout         STOPPING (reason never ready)
//   READY      stop, restart         STOPPING (reason requested)
//   STOPPING   grace elapsed         STOPPING (SIGKILL)
//   any        exit, unrequested     BACKOFF, or FAILED after a crash loop
//   STOPPING   exit, requested       STOPPED, or STARTING for a restart
//   BACKOFF    delay elapsed         STARTING
//   FAILED     next attempt due      STARTING
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "supervisor/backoff.h"
#include "supervisor/events.h"
#include "supervisor/launcher.h"
#include "supervisor/notify.h"
#include "supervisor/registry.h"
#include "supervisor/service_config.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::ServiceState;
using nehost::supervisor::v1::StopReason;

struct SupervisorOptions {
  std::string config_dir;
  std::string runtime_dir;
  std::string state_dir;
  // Where the embedded default's nehost-filter is looked for: nehostd's own folder.
  std::string self_dir;
  std::string version;
  // How long a lookup waits for a starting service when the caller names no wait.
  absl::Duration lookup_wait = absl::Seconds(5);
  absl::Duration default_ready_timeout = absl::Seconds(10);
  absl::Duration default_stop_grace = absl::Seconds(5);
};

class Supervisor {
 public:
  Supervisor(SupervisorOptions options, std::unique_ptr<Launcher> launcher);
  ~Supervisor();  // Shuts down.

  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Creates the runtime and state folders, reads the definitions and the registry, creates
  // every service's sockets, launches the enabled services and starts the loop. Fails only
  // when nehostd as a whole cannot run; a service that cannot start is marked FAILED with
  // the reason and the others go on.
  absl::Status Start();

  // Stops every service (SIGTERM, SIGKILL after its grace) and the loop. Blocks until every
  // process is gone. Services stay enabled: the next nehostd starts them again.
  void Shutdown();

  // The registration of `name`, after checking that its process is alive and is the one
  // registered. Waits up to `wait` (0: the default) while the service is starting.
  absl::StatusOr<Registration> Lookup(const std::string& name, absl::Duration wait);

  std::vector<Registration> List();

  absl::StatusOr<Registration> StartService(const std::string& name);
  // Returns once the stop is under way; the registration says STOPPING or STOPPED.
  absl::StatusOr<Registration> StopService(const std::string& name);
  absl::StatusOr<Registration> RestartService(const std::string& name);

  EventHub& events() { return events_; }

  const SupervisorOptions& options() const { return options_; }
  std::string control_socket_path() const;

 private:
  struct Service;

  absl::Status PrepareFolders();
  void LoadRegistry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddService(ServiceDefinition definition) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CreateListeners(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopLeftoverProcess(const Registration& registration);

  void Launch(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LaunchSpec BuildLaunchSpec(const Service& service, uint64_t generation) const;
  std::string ExecutableDigest(const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendStop(Service& service, StopReason reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnExit(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AfterUnrequestedExit(Service& service, const std::string& description)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnNotify(const ReceivedNotify& notify) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDeadline(Service& service, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void SetState(Service& service, ServiceState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(const Service& service, const std::string& kind, const std::string& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Persist() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status VerifyOwner(const Service& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Service*> Find(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void RunLoop();
  int MillisecondsToNextDeadline() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrainNotifySocket() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake();

  const SupervisorOptions options_;
  const std::unique_ptr<Launcher> launcher_;
  EventHub events_;

  absl::Mutex mu_;
  absl::CondVar state_changed_;
  Registry registry_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Service>> services_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<NotifySocket> notify_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool loop_done_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_persist_error_ ABSL_GUARDED_BY(mu_);
  // Executable path to (file identity, sha256).
  std::map<std::string, std::pair<std::string, std::string>> digests_ ABSL_GUARDED_BY(mu_);

  UniqueFd epoll_;
  UniqueFd wake_;
  std::thread loop_;
};

// "ready", "stopped", ...: the lower-case state names that logs, JSON and tables show.
std::string StateName(ServiceState state);
std::string StopReasonName(StopReason reason);

}  // namespace nehost::supervisor
