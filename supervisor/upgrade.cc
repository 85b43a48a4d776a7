// Blue/green upgrades: a new generation on the same listening sockets, a switch of the
// registry once it serves, and a drain of its predecessor. DESIGN.md, "Upgrade".
#include <signal.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/failpoint.h"
#include "common/files.h"
#include "common/log.h"
#include "installer/package.h"
#include "supervisor/control_client.h"
#include "supervisor/service_state.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::UpgradeProgress;

namespace {

constexpr absl::Duration kControlTimeout = absl::Seconds(2);

absl::Status FailpointError(const char* name) {
  return absl::InternalError(absl::StrCat("failpoint ", name));
}

}  // namespace

struct Supervisor::UpgradeRun {
  Service* service = nullptr;
  std::string name;
  UpgradeProgressSink sink;
  absl::Time started;
  Target target;
  GenerationPtr predecessor;
  GenerationPtr candidate;
  std::optional<ControlClient> candidate_control;

  void Report(const std::string& step, const std::string& message, bool done = false,
              bool succeeded = false, bool rolled_back = false) {
    UpgradeProgress progress;
    *progress.mutable_at() = ToProtoTime(absl::Now());
    progress.set_step(step);
    progress.set_message(message);
    if (candidate != nullptr) {
      progress.set_generation(candidate->number);
      progress.set_pid(candidate->pid);
    }
    progress.set_done(done);
    progress.set_succeeded(succeeded);
    progress.set_rolled_back(rolled_back);
    last = progress;
    spdlog::info("upgrade service={} step={} {}", name, step, message);
    if (sink) sink(progress);
  }

  UpgradeProgress last;
};

absl::StatusOr<UpgradeProgress> Supervisor::Upgrade(const std::string& name,
                                                    const std::string& to_version,
                                                    const UpgradeProgressSink& sink) {
  return RunUpgrade(name, to_version, sink, UpgradeSlot::kTake);
}

absl::StatusOr<UpgradeProgress> Supervisor::RunUpgrade(const std::string& name,
                                                       const std::string& to_version,
                                                       const UpgradeProgressSink& sink,
                                                       UpgradeSlot slot) {
  UpgradeRun run;
  run.name = name;
  run.sink = sink;
  run.started = absl::Now();
  absl::StatusOr<std::pair<Target, absl::Status>> checked = CheckUpgradeTarget(name, to_version);
  PreparedLaunch launch;
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Service*> found = Find(name);
    if (!found.ok()) return found.status();
    Service& service = **found;
    run.service = &service;
    if (slot == UpgradeSlot::kTake && service.upgrading) {
      return absl::FailedPreconditionError(absl::StrCat("an upgrade of ", name, " to version ",
                                                        service.registration->upgrading_to(),
                                                        " is already under way"));
    }
    absl::StatusOr<PreparedLaunch> prepared =
        !checked.ok()           ? checked.status()
        : !checked->second.ok() ? checked->second
                                : PrepareCandidate(service, to_version, checked->first, run);
    if (!prepared.ok()) {
      ReleaseUpgradeSlot(service);
      if (!IsVerificationFailure(prepared.status())) return prepared.status();
      refused = prepared.status();
    } else {
      launch = *std::move(prepared);
      service.upgrading = true;
      service.registration->set_upgrading_to(run.target.version);
      ++unlocked_launches_;
    }
  }
  // Only a target that resolved can fail verification.
  if (!refused.ok()) return RefuseUpgrade(run, checked->first.version, refused);
  if (absl::Status launched = LaunchCandidate(run, launch); !launched.ok()) {
    if (IsVerificationFailure(launched)) return RefuseUpgrade(run, run.target.version, launched);
    return launched;
  }
  // The candidate must be on record before anything else happens to it: a nehostd killed
  // from here on leaves a process that the next one has to find. The wait overlaps the
  // candidate's own start-up.
  AwaitPersisted();
  run.Report("launch",
             absl::StrCat("generation ", run.candidate->number, " pid ", run.candidate->pid,
                          " version ", run.target.version, " launched on the same sockets"));

  absl::Status upgraded = UpgradeSteps(run);
  if (!upgraded.ok()) {
    RollBack(run, upgraded);
    return run.last;
  }
  {
    absl::MutexLock lock(&mu_);
    run.service->upgrading = false;
  }
  run.Report("done",
             absl::StrCat("upgraded ", name, " to generation ", run.candidate->number, " (version ",
                          run.target.version, ") in ",
                          absl::ToInt64Milliseconds(absl::Now() - run.started), "ms"),
             /*done=*/true, /*succeeded=*/true);
  return run.last;
}

absl::StatusOr<Supervisor::PreparedLaunch> Supervisor::PrepareCandidate(
    Service& service, const std::string& to_version, const Target& checked, UpgradeRun& run) {
  const std::string& name = service.name();
  if (shutting_down_) return absl::UnavailableError("nehostd is shutting down");
  if (service.current != nullptr && service.current->trusted_only) {
    if (::kill(service.current->pid, 0) != 0) {
      return absl::UnavailableError(
          absl::StrCat("upgrade ", name, ": pid ", service.current->pid, ": ", ErrnoText(errno)));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "upgrade ", name, ": nehostd runs with --no-reconcile and does not supervise pid ",
        service.current->pid));
  }
  if (!service.running() || !service.current->ready) {
    return absl::FailedPreconditionError(
        absl::StrCat("service ", name, " has no ready generation to upgrade (state ",
                     StateName(service.registration->state()), "); start it first"));
  }

  absl::StatusOr<Target> target = ResolveTarget(service, to_version);
  if (!target.ok()) return target.status();
  if (target->executable == checked.executable && target->version == checked.version) {
    target->expected = checked.expected;
  } else if (absl::Status expected = ExpectTarget(service.definition, *target); !expected.ok()) {
    // The current version moved while the lock was not held; rare, so checked here.
    return expected;
  }
  run.target = *target;
  run.predecessor = service.current;
  return PrepareLaunch(service, run.target);
}

absl::Status Supervisor::LaunchCandidate(UpgradeRun& run, const PreparedLaunch& launch) {
  // The fork and exec run without the lock: lookups and status calls go on meanwhile. The
  // upgrade slot keeps every other change of the service out until the lock is back.
  absl::StatusOr<GenerationPtr> candidate = StartProcess(launch);
  Failpoint("upgrade.after_exec");

  absl::MutexLock lock(&mu_);
  Service& service = *run.service;
  --unlocked_launches_;
  if (!candidate.ok()) {
    if (unlocked_launches_ == 0) early_notifies_.clear();
    ReleaseUpgradeSlot(service);
    absl::Status failed(candidate.status().code(),
                        absl::StrCat("upgrade ", run.name, ": launch of the new generation: ",
                                     candidate.status().message()));
    return IsVerificationFailure(candidate.status()) ? AsVerificationFailure(failed) : failed;
  }

  run.candidate = *candidate;
  // Registered before the early messages go: its READY=1 may be among them, sent while this
  // thread waited for the lock.
  RegisterGeneration(service, run.candidate);
  if (unlocked_launches_ == 0) early_notifies_.clear();
  service.candidate = run.candidate;
  if (shutting_down_) {
    // Shutdown went through the generations while this one was being launched.
    SendStop(service, *run.candidate, nehost::supervisor::v1::HOST_SHUTDOWN);
    Wake();
    service.candidate.reset();
    ReleaseUpgradeSlot(service);
    return absl::UnavailableError("nehostd is shutting down");
  }

  SyncOtherGenerations(service);
  Publish(service, "upgrading",
          absl::StrCat("generation ", run.candidate->number, " version ", run.target.version,
                       " launched beside generation ", run.predecessor->number));
  Persist();
  return absl::OkStatus();
}

void Supervisor::ReleaseUpgradeSlot(Service& service) {
  service.upgrading = false;
  service.registration->clear_upgrading_to();
}

absl::StatusOr<std::pair<Supervisor::Target, absl::Status>> Supervisor::CheckUpgradeTarget(
    const std::string& name, const std::string& to_version) {
  absl::StatusOr<Target> target;
  ServiceDefinition definition;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Service*> found = Find(name);
    if (!found.ok()) return found.status();
    target = ResolveTarget(**found, to_version);
    if (!target.ok()) return target.status();
    definition = (*found)->definition;
  }
  // Reading and checking the signed manifest, and hashing a new binary, take milliseconds:
  // done here, without the lock, lookups go on meanwhile and the launch finds the digest
  // cached.
  absl::Status expected = ExpectTarget(definition, *target);
  if (expected.ok()) executables_.Digest(target->executable);
  return std::pair<Target, absl::Status>(*std::move(target), expected);
}

UpgradeProgress Supervisor::RefuseUpgrade(UpgradeRun& run, const std::string& version,
                                          const absl::Status& cause) {
  uint64_t serving = 0;
  {
    absl::MutexLock lock(&mu_);
    Service& service = *run.service;
    if (service.running()) serving = service.current->number;
    const std::string why =
        absl::StrCat("upgrade to version ", version, " refused: ", cause.message());
    Publish(service, "rolled_back", why);
    // Shown by lookup and doctor until the state next changes; the state itself stays.
    service.registration->set_state_reason(
        absl::StrCat(StateName(service.registration->state()), "; ", why));
    Persist();
  }
  spdlog::error("upgrade refused service={} version={}: {}; generation {} keeps serving", run.name,
                version, cause.message(), serving);
  run.Report(
      "rollback",
      absl::StrCat("refused: ", cause.message(), "; the new version never served",
                   serving != 0 ? absl::StrCat(", generation ", serving, " keeps serving") : ""),
      /*done=*/true, /*succeeded=*/false, /*rolled_back=*/true);
  return run.last;
}

absl::Status Supervisor::UpgradeSteps(UpgradeRun& run) {
  if (Failpoint("upgrade.after_launch")) return FailpointError("upgrade.after_launch");
  if (absl::Status ready = WaitForCandidateReady(run); !ready.ok()) return ready;
  if (absl::Status serving = CheckCandidateServing(run); !serving.ok()) return serving;
  if (Failpoint("upgrade.before_switch")) return FailpointError("upgrade.before_switch");

  SwitchToCandidate(run);
  Failpoint("upgrade.after_switch");
  DrainPredecessor(run);
  CollectVersions(*run.service);
  return absl::OkStatus();
}

absl::Status Supervisor::WaitForCandidateReady(UpgradeRun& run) {
  absl::MutexLock lock(&mu_);
  absl::Time deadline = absl::Now() + run.service->ready_timeout(options_);
  auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return run.candidate->ready || run.candidate->exited || shutting_down_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);

  if (run.candidate->exited) {
    return absl::AbortedError(absl::StrCat("the new generation ", run.candidate->exit.description(),
                                           " before it was ready"));
  }
  if (shutting_down_) return absl::AbortedError("nehostd is shutting down");
  if (!run.candidate->ready) {
    return absl::DeadlineExceededError(
        absl::StrCat("the new generation sent no READY=1 within ",
                     absl::FormatDuration(run.service->ready_timeout(options_))));
  }
  run.Report("ready", absl::StrCat("generation ", run.candidate->number, " sent READY=1 after ",
                                   absl::ToInt64Milliseconds(absl::Now() - run.started), "ms"));
  return absl::OkStatus();
}

absl::Status Supervisor::CheckCandidateServing(UpgradeRun& run) {
  std::string path = ControlSocketPath(options_.runtime_dir, run.name, run.candidate->number);
  absl::StatusOr<ControlClient> control = ControlClient::Connect(path, run.candidate->pid);
  if (!control.ok()) return control.status();

  ControlRequest request;
  request.mutable_health();
  absl::StatusOr<ControlResponse> health = control->Call(request, kControlTimeout);
  if (!health.ok()) return health.status();
  if (health->serving() != ControlResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat("the new generation's health is ",
                                               ControlResponse::Serving_Name(health->serving())));
  }
  run.candidate_control = std::move(*control);
  run.Report("serving", absl::StrCat("generation ", run.candidate->number,
                                     " answers SERVING on its control channel"));
  return absl::OkStatus();
}

void Supervisor::SwitchToCandidate(UpgradeRun& run) {
  // The old generation drains only once the switch is on disk: a nehostd killed during the
  // drain must come back naming the new one.
  absl::Cleanup persisted = [this] { AwaitPersisted(); };
  absl::MutexLock lock(&mu_);
  Service& service = *run.service;
  MakeCurrent(service, run.candidate);
  // Lookups need not wait for this switch to reach the disk: the candidate is on record
  // already, and a nehostd killed before the write keeps the predecessor, which has not begun
  // to drain, on the same sockets.
  service.owner_unrecorded = false;
  service.candidate.reset();
  if (!run.predecessor->exited) service.draining.push_back(run.predecessor);
  service.deadline = absl::InfiniteFuture();
  service.registration->clear_upgrading_to();
  SyncOtherGenerations(service);
  SetState(service, nehost::supervisor::v1::READY,
           absl::StrCat("upgraded from generation ", run.predecessor->number));
  Persist();
  run.Report("switch", absl::StrCat("registry now names generation ", run.candidate->number,
                                    "; generation ", run.predecessor->number, " drains"));
}

void Supervisor::DrainPredecessor(UpgradeRun& run) {
  Service& service = *run.service;
  GenerationPtr old = run.predecessor;
  absl::Duration grace = service.stop_grace(options_);
  {
    absl::MutexLock lock(&mu_);
    old->stop_reason = nehost::supervisor::v1::SUPERSEDED;
    old->kill_at = absl::Now() + grace + kControlTimeout;
    Wake();
  }

  // Drain through the control channel: the old generation stops accepting, finishes its
  // calls and answers with its state. Without a channel, SIGTERM does the same, minus the
  // state.
  std::string path = ControlSocketPath(options_.runtime_dir, run.name, old->number);
  absl::StatusOr<ControlClient> control = ControlClient::Connect(path, old->pid);
  absl::StatusOr<ControlResponse> drained =
      control.ok() ? absl::UnavailableError("not drained") : control.status();
  if (control.ok()) {
    ControlRequest request;
    request.mutable_drain()->set_grace_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(grace)));
    drained = control->Call(request, grace + kControlTimeout);
  }
  if (!drained.ok()) {
    spdlog::warn(
        "drain over the control channel failed service={} generation={}: {}; "
        "sending SIGTERM",
        run.name, old->number, drained.status().message());
    absl::MutexLock lock(&mu_);
    if (old->pidfd) PidfdSendSignal(old->pidfd.get(), SIGTERM);
  }
  run.Report("drain", absl::StrCat("generation ", old->number,
                                   " stopped accepting and finished "
                                   "its calls"));
  if (Failpoint("upgrade.after_drain")) return;

  if (drained.ok() && run.candidate_control.has_value()) {
    ControlRequest request;
    *request.mutable_import_state()->mutable_state() = drained->state();
    absl::StatusOr<ControlResponse> imported =
        run.candidate_control->Call(request, kControlTimeout);
    if (!imported.ok()) {
      spdlog::warn("handoff failed service={} generation={}: {}; its counters are lost", run.name,
                   run.candidate->number, imported.status().message());
    } else {
      run.Report("handoff", absl::StrCat(drained->state().counters_size(),
                                         " counters handed to "
                                         "generation ",
                                         run.candidate->number));
    }
  }

  absl::MutexLock lock(&mu_);
  auto gone = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return old->exited || shutting_down_; };
  mu_.AwaitWithDeadline(absl::Condition(&gone), absl::Now() + grace + 2 * kControlTimeout);
  run.Report("exit", absl::StrCat("generation ", old->number, " ",
                                  old->exited ? old->exit.description() : "still exiting"));
}

void Supervisor::RollBack(UpgradeRun& run, const absl::Status& cause) {
  Service& service = *run.service;
  GenerationPtr candidate = run.candidate;
  {
    absl::MutexLock lock(&mu_);
    if (!candidate->exited) {
      SendStop(service, *candidate,
               candidate->ready ? nehost::supervisor::v1::REQUESTED
                                : nehost::supervisor::v1::NEVER_READY);
      Wake();
    }
    auto gone = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return candidate->exited; };
    mu_.AwaitWithDeadline(absl::Condition(&gone),
                          absl::Now() + service.stop_grace(options_) + kControlTimeout);

    service.candidate.reset();
    service.upgrading = false;
    service.registration->clear_upgrading_to();
    SyncOtherGenerations(service);
    Publish(
        service, "rolled_back",
        absl::StrCat("upgrade to version ", run.target.version, " rolled back: ", cause.message()));
    // The predecessor never stopped serving, unless it died on its own meanwhile.
    if (!service.running() && !shutting_down_ && service.registration->enabled()) Launch(service);
    Persist();
  }
  spdlog::warn("upgrade rolled back service={} generation={}: {}; generation {} keeps serving",
               run.name, candidate->number, cause.message(), run.predecessor->number);
  run.Report("rollback",
             absl::StrCat("rolled back: ", cause.message(), "; generation ",
                          run.predecessor->number, " keeps serving"),
             /*done=*/true, /*succeeded=*/false, /*rolled_back=*/true);
}

void Supervisor::CollectVersions(const Service& service) {
  // Step 6: versions that nothing runs from any more go, under the installer's own lock.
  if (service.definition.package_prefix().empty()) return;
  absl::StatusOr<std::vector<installer::CollectDecision>> collected =
      installer::CollectVersions(service.definition.package_prefix());
  if (!collected.ok()) {
    spdlog::warn(
        "collecting old versions failed service={}: {}; they stay until the next "
        "upgrade or nehost-pkg gc",
        service.name(), collected.status().message());
  }
}

}  // namespace nehost::supervisor
