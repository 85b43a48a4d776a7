// Taking services back after nehostd restarts (kill -9, re-execution): verify each
// registered owner, reconnect to its control channel, take back its listening sockets and
// supervise it again, without a restart. DESIGN.md, "Supervisor restart and adoption".
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/failpoint.h"
#include "common/files.h"
#include "common/log.h"
#include "common/process_info.h"
#include "supervisor/control_client.h"
#include "supervisor/service_state.h"

namespace nehost::supervisor {

namespace {

constexpr absl::Duration kControlTimeout = absl::Seconds(2);

// Whether pid is still the process that was registered: alive, same start time, same binary.
absl::Status VerifyRecorded(pid_t pid, uint64_t start_time_ticks, const std::string& executable) {
  absl::StatusOr<uint64_t> start = ReadProcessStartTime(pid);
  if (!start.ok()) return start.status();
  if (*start != start_time_ticks) {
    return absl::NotFoundError(absl::StrCat("pid ", pid, " now belongs to another process"));
  }
  absl::StatusOr<std::string> running = ReadProcessExecutable(pid);
  if (!running.ok()) return running.status();
  if (*running != executable) {
    return absl::FailedPreconditionError(
        absl::StrCat("pid ", pid, " runs ", *running, ", not ", executable));
  }
  return absl::OkStatus();
}

}  // namespace

void Supervisor::TrustRecord(Service& service) {
  const Registration& registration = *service.registration;
  if (registration.pid() == 0 || registration.state() != nehost::supervisor::v1::READY) return;

  // The naive supervisor: the record says a process serves, so one does.
  auto generation = std::make_shared<Generation>();
  generation->number = registration.generation();
  generation->pid = registration.pid();
  generation->start_time_ticks = registration.start_time_ticks();
  generation->executable = registration.executable();
  generation->version = registration.version();
  generation->ready = true;
  generation->trusted_only = true;
  service.current = std::move(generation);
  spdlog::info("trusting record service={} generation={} pid={}", service.name(),
               registration.generation(), registration.pid());
}

void Supervisor::StopLeftoverGenerations(const Registration& registration) {
  for (const auto& other : registration.other_generations()) {
    StopLeftoverProcess(registration.name(), other.generation(), other.pid(),
                        other.start_time_ticks());
  }
}

void Supervisor::RecoverRecordFromRuntime(Service& service) {
  // The registry holds no live owner (first start, or a registry that was lost or corrupt),
  // but a generation may still serve: it listens on its control socket under RUNTIME/gen.
  // The newest one that answers, as itself, is taken as the record; older ones are strays.
  std::string prefix = service.name() + ".";
  std::vector<std::pair<uint64_t, std::string>> sockets;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(options_.runtime_dir + "/gen", error)) {
    std::string file = entry.path().filename().string();
    absl::string_view middle(file);
    uint64_t generation = 0;
    if (!absl::ConsumePrefix(&middle, prefix) || !absl::ConsumeSuffix(&middle, ".ctl") ||
        !absl::SimpleAtoi(middle, &generation)) {
      continue;
    }
    sockets.emplace_back(generation, entry.path().string());
  }
  std::sort(sockets.rbegin(), sockets.rend());

  Registration& registration = *service.registration;
  for (const auto& [generation, path] : sockets) {
    absl::StatusOr<ControlClient> control = ControlClient::ConnectAny(path);
    if (!control.ok()) {
      ::unlink(path.c_str());  // a generation that is gone left its socket file
      continue;
    }
    ControlRequest request;
    request.mutable_health();
    absl::StatusOr<ControlResponse> health = control->Call(request, kControlTimeout);
    pid_t pid = control->peer_pid();
    if (!health.ok() || health->pid() != pid || health->generation() != generation) continue;
    absl::StatusOr<uint64_t> start = ReadProcessStartTime(pid);
    absl::StatusOr<std::string> executable = ReadProcessExecutable(pid);
    if (!start.ok() || !executable.ok()) continue;

    if (registration.pid() != 0) {
      StopLeftoverProcess(service.name(), generation, pid, *start);
      continue;
    }
    spdlog::warn(
        "registry has no owner for service={}; found generation={} pid={} serving "
        "on its control channel, adopting it",
        service.name(), generation, pid);
    registration.set_pid(pid);
    registration.set_generation(generation);
    registration.set_last_generation(std::max(registration.last_generation(), generation));
    registration.set_start_time_ticks(*start);
    registration.set_executable(*executable);
    registration.set_executable_sha256(executables_.Digest(*executable));
    registration.set_verified_by("adopted without a record: sha256 recorded only");
    registration.set_version(health->version());
  }
}

bool Supervisor::TryAdopt(Service& service) {
  Registration& registration = *service.registration;
  if (registration.pid() == 0) RecoverRecordFromRuntime(service);
  pid_t pid = registration.pid();
  if (pid == 0) return false;

  absl::Status verified =
      VerifyRecorded(pid, registration.start_time_ticks(), registration.executable());
  if (!verified.ok()) {
    spdlog::info("not adopting service={} generation={} pid={}: {}; launching a new generation",
                 service.name(), registration.generation(), pid, verified.message());
    return false;
  }

  UniqueFd pidfd(PidfdOpen(pid));
  std::string path =
      ControlSocketPath(options_.runtime_dir, service.name(), registration.generation());
  absl::StatusOr<ControlClient> control = ControlClient::Connect(path, pid);
  std::vector<UniqueFd> listeners;
  absl::StatusOr<ControlResponse> taken =
      control.ok() ? absl::UnavailableError("listening sockets not taken") : control.status();
  if (control.ok() && !Failpoint("adopt.before_take_listeners")) {
    ControlRequest request;
    request.mutable_take_listeners();
    taken = control->Call(request, kControlTimeout, &listeners);
  }
  if (!pidfd || !taken.ok() ||
      listeners.size() != static_cast<size_t>(taken->listener_names_size())) {
    spdlog::warn("cannot adopt service={} generation={} pid={}: {}", service.name(),
                 registration.generation(), pid,
                 taken.ok() ? "listening sockets missing" : taken.status().message());
    StopLeftoverProcess(service.name(), registration.generation(), pid,
                        registration.start_time_ticks());
    return false;
  }

  Failpoint("adopt.after_take_listeners");
  service.listeners = std::move(listeners);
  service.listener_names.assign(taken->listener_names().begin(), taken->listener_names().end());
  RecordEndpointListener(service);
  auto generation = std::make_shared<Generation>();
  generation->number = registration.generation();
  generation->pid = pid;
  generation->pidfd = std::move(pidfd);
  generation->start_time_ticks = registration.start_time_ticks();
  generation->executable = registration.executable();
  generation->executable_sha256 = registration.executable_sha256();
  generation->verified_by = registration.verified_by();
  generation->version = registration.version();
  generation->ready = true;
  generation->ready_at = absl::Now();
  generation->adopted = true;
  WatchPidfd(generation);
  pidfds_[generation->pidfd.get()] = {&service, generation};
  service.current = std::move(generation);
  service.owner_unrecorded = true;

  registration.clear_other_generations();
  registration.clear_upgrading_to();
  spdlog::info("adopted service={} generation={} pid={} version={} listeners={}", service.name(),
               registration.generation(), pid, registration.version(), service.listeners.size());
  Publish(service, "adopted",
          absl::StrCat("generation ", registration.generation(), " pid ", pid,
                       " adopted without a restart"));
  SetState(service, nehost::supervisor::v1::READY, "adopted");
  return true;
}

void Supervisor::UpgradeIfOutdated(Service& service) {
  if (!options_.reconcile || !service.running() || service.definition.package_prefix().empty()) {
    return;
  }
  absl::StatusOr<Target> target = ResolveTarget(service, "");
  if (!target.ok() || target->version == service.current->version) return;

  // The field case: a live owner of another version. It keeps serving until its
  // successor is ready, through the same steps as an upgrade asked for by an operator.
  std::string name = service.name();
  spdlog::info("replacing service={} generation={} version={} with the installed version={}", name,
               service.current->number, service.current->version, target->version);
  // The slot is taken now, under the lock, so that nobody sees the outdated owner as
  // settled, and no operator's upgrade or restart slips in before this one launches.
  service.upgrading = true;
  service.registration->set_upgrading_to(target->version);
  background_upgrades_.emplace_back([this, name] {
    absl::StatusOr<nehost::supervisor::v1::UpgradeProgress> done =
        RunUpgrade(name, "", nullptr, UpgradeSlot::kReserved);
    if (!done.ok()) {
      spdlog::error("replacing outdated service={} failed: {}", name, done.status().message());
    }
  });
}

}  // namespace nehost::supervisor
