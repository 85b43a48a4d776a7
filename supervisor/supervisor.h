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

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/access_policy.h"
#include "common/unique_fd.h"
#include "nehost/supervisor/v1/supervisor.pb.h"
#include "supervisor/backoff.h"
#include "supervisor/events.h"
#include "supervisor/launcher.h"
#include "supervisor/notify.h"
#include "supervisor/registry.h"
#include "supervisor/registry_writer.h"
#include "supervisor/service_config.h"
#include "supervisor/verification.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::ServiceState;
using nehost::supervisor::v1::StopReason;

struct SupervisorOptions {
  std::string config_dir;
  std::string runtime_dir;
  std::string state_dir;
  // Where the embedded default's nehost-filter is looked for: nehostd's own folder.
  std::string self_dir;
  // Where the embedded default serves DNS ("ADDR:PORT"); empty for no DNS.
  std::string default_dns_address = kDefaultDnsAddress;
  std::string version;
  // How long a lookup waits for a starting service when the caller names no wait.
  absl::Duration lookup_wait = absl::Seconds(5);
  absl::Duration default_ready_timeout = absl::Seconds(10);
  absl::Duration default_stop_grace = absl::Seconds(5);
  // Off (--no-reconcile): trust the persisted registry as a naive supervisor would, without
  // verifying, adopting or replacing what it names. Exists to reproduce the field failure.
  bool reconcile = true;
  // Who may call what, on nehostd and on every service: the sockets get its group, and each
  // generation learns it through NEHOST_ADMIN_GROUP and NEHOST_READER_GROUP.
  AccessPolicy access = AccessPolicy::RootOnly();
};

// Receives the steps of an upgrade as they happen; called without the supervisor's lock.
using UpgradeProgressSink = std::function<void(const nehost::supervisor::v1::UpgradeProgress&)>;

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

  // Blue/green upgrade (DESIGN.md, "Upgrade"): start generation N+1 on the same sockets,
  // wait for READY=1 and SERVING on its control channel, switch the registry, drain N and
  // hand its state over. A failure before the switch stops N+1 and keeps N. Blocks until
  // done; one upgrade per service at a time. Returns the final progress message.
  absl::StatusOr<nehost::supervisor::v1::UpgradeProgress> Upgrade(const std::string& name,
                                                                  const std::string& to_version,
                                                                  const UpgradeProgressSink& sink);

  absl::StatusOr<nehost::supervisor::v1::DoctorResponse> Doctor(const std::string& name);

  // Stops the loop and persists the registry, leaving every service running, for a
  // re-execution of nehostd that adopts them again.
  void Detach();

  EventHub& events() { return events_; }

  const SupervisorOptions& options() const { return options_; }
  std::string control_socket_path() const;

 private:
  struct Generation;
  struct Service;
  using GenerationPtr = std::shared_ptr<Generation>;

  absl::Status PrepareFolders();
  void LoadRegistry() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddService(ServiceDefinition definition) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CreateListeners(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordEndpointListener(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopLeftoverProcess(const std::string& name, uint64_t generation, pid_t pid,
                           uint64_t start_time_ticks);

  // adoption.cc
  bool TryAdopt(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecoverRecordFromRuntime(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TrustRecord(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopLeftoverGenerations(const Registration& registration);
  void UpgradeIfOutdated(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The executable and version a launch of service runs now: the package prefix's current
  // version, or the definition's own executable; and what it must be (verification.h).
  struct Target {
    std::string executable;
    std::string version;
    ExpectedExecutable expected;
  };
  // Finds the target; cheap, no verification.
  absl::StatusOr<Target> ResolveTarget(const Service& service, const std::string& version) const;
  // Fills target.expected from the signed manifest; reads files and checks a signature, so
  // callers that can do it without the lock do. Failures are verification failures.
  absl::Status ExpectTarget(const ServiceDefinition& definition, Target& target) const;

  // A launch in three steps, so that the fork and exec in the middle can run without the
  // lock: an upgrade's candidate starts while lookups go on.
  struct PreparedLaunch {
    uint64_t number = 0;
    Target target;
    LaunchSpec spec;
  };
  absl::StatusOr<PreparedLaunch> PrepareLaunch(Service& service, const Target& target)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<GenerationPtr> StartProcess(const PreparedLaunch& launch);
  void RegisterGeneration(Service& service, const GenerationPtr& generation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // All three under the lock.
  absl::StatusOr<GenerationPtr> LaunchGeneration(Service& service, const Target& target)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Launch(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LaunchSpec BuildLaunchSpec(const Service& service, const Target& target,
                             uint64_t generation) const;
  void MakeCurrent(Service& service, GenerationPtr generation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendStop(Service& service, Generation& generation, StopReason reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnExit(Service& service, const GenerationPtr& generation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AfterCurrentExit(Service& service, const nehost::supervisor::v1::ExitRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AfterUnrequestedExit(Service& service, const std::string& description)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnNotify(const ReceivedNotify& notify) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDeadline(Service& service, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WatchPidfd(const GenerationPtr& generation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SyncOtherGenerations(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // doctor.cc
  void AddSignatureCheck(const Service& service,
                         nehost::supervisor::v1::DoctorResponse* response) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // upgrade.cc
  struct UpgradeRun;
  // Whether an upgrade claims the service's one upgrade slot itself, or runs in one that
  // its caller reserved under the lock (a replacement decided during adoption).
  enum class UpgradeSlot { kTake, kReserved };
  absl::StatusOr<nehost::supervisor::v1::UpgradeProgress> RunUpgrade(
      const std::string& name, const std::string& to_version, const UpgradeProgressSink& sink,
      UpgradeSlot slot) ABSL_LOCKS_EXCLUDED(mu_);
  // The upgrade's target, resolved under the lock and verified without it, with the new
  // binary hashed into the cache. The outer status is a resolution error, the inner one a
  // verification failure.
  absl::StatusOr<std::pair<Target, absl::Status>> CheckUpgradeTarget(const std::string& name,
                                                                     const std::string& to_version)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<PreparedLaunch> PrepareCandidate(Service& service, const std::string& to_version,
                                                  const Target& checked, UpgradeRun& run)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An upgrade whose version did not verify: nothing from it served (a process whose file
  // changed under its launch is killed before it can), the current generation keeps serving,
  // and the refusal is reported like a rollback.
  nehost::supervisor::v1::UpgradeProgress RefuseUpgrade(UpgradeRun& run, const std::string& version,
                                                        const absl::Status& cause)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status LaunchCandidate(UpgradeRun& run, const PreparedLaunch& launch)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ReleaseUpgradeSlot(Service& service) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UpgradeSteps(UpgradeRun& run) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WaitForCandidateReady(UpgradeRun& run) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status CheckCandidateServing(UpgradeRun& run) ABSL_LOCKS_EXCLUDED(mu_);
  void SwitchToCandidate(UpgradeRun& run) ABSL_LOCKS_EXCLUDED(mu_);
  void DrainPredecessor(UpgradeRun& run) ABSL_LOCKS_EXCLUDED(mu_);
  void RollBack(UpgradeRun& run, const absl::Status& cause) ABSL_LOCKS_EXCLUDED(mu_);
  void CollectVersions(const Service& service) ABSL_LOCKS_EXCLUDED(mu_);

  void SetState(Service& service, ServiceState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(const Service& service, const std::string& kind, const std::string& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands a snapshot of the registry to the writer; never blocks on the disk.
  void Persist() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Blocks until every snapshot handed over so far is on disk (or failed to be written).
  void AwaitPersisted() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status VerifyOwner(const Service& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Service*> Find(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Lookup without waiting for the disk; says which registry snapshot names the owner.
  absl::StatusOr<Registration> LookupVerified(const std::string& name, absl::Duration wait,
                                              uint64_t* owner_recorded_in) ABSL_LOCKS_EXCLUDED(mu_);

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
  RegistryWriter registry_writer_;
  std::map<std::string, std::unique_ptr<Service>> services_ ABSL_GUARDED_BY(mu_);
  // Every watched pidfd, to the service and generation it belongs to.
  std::map<int, std::pair<Service*, GenerationPtr>> pidfds_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<NotifySocket> notify_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool loop_done_ ABSL_GUARDED_BY(mu_) = false;
  // Digests of executables by file identity; thread safe on its own.
  ExecutableCache executables_;
  // Upgrades that adoption started on its own, joined at shutdown.
  std::vector<std::thread> background_upgrades_ ABSL_GUARDED_BY(mu_);
  // Launches under way without the lock, and what their processes said before they were
  // registered (sd_notify can arrive first).
  static constexpr size_t kMaxEarlyNotifies = 64;
  int unlocked_launches_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<ReceivedNotify> early_notifies_ ABSL_GUARDED_BY(mu_);

  UniqueFd epoll_;
  UniqueFd wake_;
  std::thread loop_;
};

// "ready", "stopped", ...: the lower-case state names that logs, JSON and tables show.
std::string StateName(ServiceState state);
std::string StopReasonName(StopReason reason);

}  // namespace nehost::supervisor
