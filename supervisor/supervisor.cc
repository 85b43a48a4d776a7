#include "supervisor/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/failpoint.h"
#include "common/files.h"
#include "common/log.h"
#include "common/process_info.h"
#include "common/unix_socket.h"
#include "installer/signature.h"
#include "supervisor/control_client.h"
#include "supervisor/service_state.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::ExitRecord;
using nehost::supervisor::v1::GenerationRecord;

namespace {

constexpr int kMaxRecentExits = 10;

bool PidfdExited(int pidfd) {
  pollfd polled{pidfd, POLLIN, 0};
  return ::poll(&polled, 1, 0) > 0;
}

// "killed by signal 9 (Killed)" or "exited with code 3".
void DescribeExit(const siginfo_t& info, ExitRecord* record) {
  if (info.si_code == CLD_EXITED) {
    record->set_exit_code(info.si_status);
    record->set_description(absl::StrCat("exited with code ", info.si_status));
  } else {
    record->set_signal(info.si_status);
    record->set_description(
        absl::StrCat("killed by signal ", info.si_status, " (", strsignal(info.si_status), ")"));
  }
}

std::string ExitKeyValue(const ExitRecord& record) {
  if (record.signal() != 0) return absl::StrCat("signal:", record.signal());
  if (record.exit_code() < 0) return "unknown";
  return absl::StrCat("code:", record.exit_code());
}

}  // namespace

google::protobuf::Timestamp ToProtoTime(absl::Time time) {
  google::protobuf::Timestamp proto;
  timespec ts = absl::ToTimespec(time);
  proto.set_seconds(ts.tv_sec);
  proto.set_nanos(static_cast<int32_t>(ts.tv_nsec));
  return proto;
}

std::string TimeText(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

int PidfdSendSignal(int pidfd, int signal) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

std::string StateName(ServiceState state) {
  if (state == nehost::supervisor::v1::SERVICE_STATE_UNSPECIFIED) return "unknown";
  return absl::AsciiStrToLower(nehost::supervisor::v1::ServiceState_Name(state));
}

std::string StopReasonName(StopReason reason) {
  switch (reason) {
    case nehost::supervisor::v1::REQUESTED:
      return "stopped by request";
    case nehost::supervisor::v1::SUPERSEDED:
      return "superseded by a newer generation";
    case nehost::supervisor::v1::CRASHED:
      return "crashed";
    case nehost::supervisor::v1::NEVER_READY:
      return "never became ready";
    case nehost::supervisor::v1::HOST_SHUTDOWN:
      return "host shutdown";
    default:
      return "unknown";
  }
}

Supervisor::Supervisor(SupervisorOptions options, std::unique_ptr<Launcher> launcher)
    : options_(std::move(options)),
      launcher_(std::move(launcher)),
      registry_(options_.state_dir + "/registry.json"),
      registry_writer_(options_.state_dir + "/registry.json") {}

Supervisor::~Supervisor() { Shutdown(); }

std::string Supervisor::control_socket_path() const {
  return options_.runtime_dir + "/nehostd.sock";
}

absl::Status Supervisor::PrepareFolders() {
  for (const std::string& folder :
       {options_.runtime_dir, options_.runtime_dir + "/services", options_.runtime_dir + "/gen",
        options_.state_dir, options_.state_dir + "/services"}) {
    if (absl::Status made = MakeDirs(folder, 0755); !made.ok()) return made;
    if (::access(folder.c_str(), W_OK) != 0) {
      return ErrnoStatus(errno, "write to folder", folder);
    }
  }
  return absl::OkStatus();
}

absl::Status Supervisor::Start() {
  if (absl::Status folders = PrepareFolders(); !folders.ok()) return folders;

  absl::StatusOr<NotifySocket> notify = NotifySocket::Bind(options_.runtime_dir + "/notify.sock");
  if (!notify.ok()) return notify.status();
  notify_ = std::make_unique<NotifySocket>(std::move(*notify));

  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!epoll_ || !wake_) return ErrnoStatus(errno, "create", "supervisor event loop");
  for (int fd : {wake_.get(), notify_->fd()}) {
    epoll_event event{EPOLLIN, {.fd = fd}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      return ErrnoStatus(errno, "watch", "supervisor event sources");
    }
  }

  LoadedDefinitions loaded =
      LoadServiceDefinitions(options_.config_dir, options_.self_dir, options_.default_dns_address);
  for (const absl::Status& error : loaded.errors) {
    spdlog::error("skipping service definition: {}", error.message());
  }
  if (loaded.embedded_default) {
    spdlog::info(
        "no service definitions in {}/services.d; hosting the embedded default "
        "service={} executable={}",
        options_.config_dir, loaded.definitions[0].name(), loaded.definitions[0].executable());
  }
  if (!options_.reconcile) {
    spdlog::warn(
        "reconciliation is off: trusting the registry as recorded, without verifying "
        "or replacing what it names");
  }

  absl::MutexLock lock(&mu_);
  LoadRegistry();
  for (ServiceDefinition& definition : loaded.definitions) AddService(std::move(definition));
  for (const Registration& stale : registry_.All()) {
    if (services_.count(stale.name()) != 0) continue;
    spdlog::info("forgetting service={}: it is no longer defined", stale.name());
    StopLeftoverProcess(stale.name(), stale.generation(), stale.pid(), stale.start_time_ticks());
    StopLeftoverGenerations(stale);
    registry_.Remove(stale.name());
  }
  Persist();

  loop_ = std::thread([this] { RunLoop(); });
  for (auto& [name, service] : services_) UpgradeIfOutdated(*service);
  return absl::OkStatus();
}

void Supervisor::LoadRegistry() {
  absl::Status loaded = registry_.Load();
  if (loaded.ok() || absl::IsNotFound(loaded)) return;

  // A registry nehostd cannot read must not stop it from supervising: the definitions say
  // what should run. The bad file is kept for an operator to inspect.
  std::string aside = absl::StrCat(registry_.path(), ".bad.", absl::ToUnixSeconds(absl::Now()));
  ::rename(registry_.path().c_str(), aside.c_str());
  spdlog::error("registry unreadable, starting from the definitions alone: {}; kept as {}",
                loaded.message(), aside);
}

void Supervisor::AddService(ServiceDefinition definition) {
  std::string name = definition.name();
  bool known = registry_.Find(name) != nullptr;
  Registration& registration = registry_.FindOrAdd(name);
  if (!known) registration.set_enabled(true);
  if (definition.version().empty()) definition.set_version(options_.version);

  registration.set_endpoint(
      absl::StrCat("unix:", options_.runtime_dir, "/services/", name, ".sock"));
  auto owned = std::make_unique<Service>(std::move(definition), &registration);
  Service& service = *owned;
  services_[name] = std::move(owned);

  if (!options_.reconcile) {
    TrustRecord(service);
    if (service.current != nullptr) return;
  } else {
    StopLeftoverGenerations(registration);
    if (TryAdopt(service)) return;
  }

  registration.set_pid(0);
  registration.set_start_time_ticks(0);
  registration.clear_other_generations();
  registration.clear_upgrading_to();
  if (absl::Status listeners = CreateListeners(service); !listeners.ok()) {
    service.setup_error = std::string(listeners.message());
    spdlog::error("cannot host service={}: {}", name, listeners.message());
    SetState(service, nehost::supervisor::v1::FAILED, service.setup_error);
    return;
  }
  if (!registration.enabled()) {
    SetState(service, nehost::supervisor::v1::STOPPED, "stopped by request");
    return;
  }
  Launch(service);
}

absl::Status Supervisor::CreateListeners(Service& service) {
  std::string path = absl::StrCat(options_.runtime_dir, "/services/", service.name(), ".sock");
  service.registration->set_endpoint("unix:" + path);
  service.listeners.clear();
  service.listener_names.clear();

  gid_t group = options_.access.socket_group().value_or(kKeepGroup);
  absl::StatusOr<UniqueFd> grpc_socket = ListenUnix(path, 0660, group);
  if (!grpc_socket.ok()) return grpc_socket.status();
  service.listeners.push_back(std::move(*grpc_socket));
  service.listener_names.push_back("grpc");

  for (const auto& listener : service.definition.listeners()) {
    absl::StatusOr<UniqueFd> fd = absl::InternalError("no address");
    if (listener.has_unix_path()) fd = ListenUnix(listener.unix_path(), 0660, group);
    if (!listener.tcp().empty()) fd = BindInet(listener.tcp(), InetProtocol::kTcp);
    if (!listener.udp().empty()) fd = BindInet(listener.udp(), InetProtocol::kUdp);
    if (!fd.ok() && listener.optional()) {
      spdlog::warn("optional listener unavailable service={} listener={}: {}; running without it",
                   service.name(), listener.name(), std::string(fd.status().message()));
      continue;
    }
    if (!fd.ok()) {
      return absl::Status(fd.status().code(),
                          absl::StrCat("listener ", listener.name(), ": ", fd.status().message()));
    }
    service.listeners.push_back(std::move(*fd));
    service.listener_names.push_back(listener.name());
  }
  RecordEndpointListener(service);
  return absl::OkStatus();
}

void Supervisor::RecordEndpointListener(Service& service) {
  // On a listening Unix socket, SO_PEERCRED names the process that called listen(): what a
  // client connecting to the endpoint will see, even after that nehostd is gone.
  absl::StatusOr<PeerCredentials> listener =
      service.listeners.empty() ? absl::NotFoundError("no listener")
                                : GetPeerCredentials(service.listeners.front().get());
  service.registration->set_endpoint_listener_pid(listener.ok() ? listener->pid : 0);
  service.registration->set_endpoint_listener_uid(listener.ok() ? listener->uid : 0);
}

void Supervisor::StopLeftoverProcess(const std::string& name, uint64_t generation, pid_t pid,
                                     uint64_t start_time_ticks) {
  if (pid <= 0) return;

  // Only the registered process, not whatever reuses its pid: same start time, or leave it.
  UniqueFd pidfd(PidfdOpen(pid));
  absl::StatusOr<uint64_t> start = ReadProcessStartTime(pid);
  if (!pidfd || !start.ok() || *start != start_time_ticks) return;

  spdlog::warn(
      "stopping unsupervised process service={} generation={} pid={}: left by an "
      "earlier nehostd and not adoptable",
      name, generation, pid);
  PidfdSendSignal(pidfd.get(), SIGTERM);
  pollfd polled{pidfd.get(), POLLIN, 0};
  int grace_ms = static_cast<int>(absl::ToInt64Milliseconds(options_.default_stop_grace));
  if (::poll(&polled, 1, grace_ms) <= 0) {
    spdlog::warn("killing unsupervised process service={} pid={}: no exit within the grace", name,
                 pid);
    PidfdSendSignal(pidfd.get(), SIGKILL);
    ::poll(&polled, 1, 1000);
  }
}

absl::StatusOr<Supervisor::Target> Supervisor::ResolveTarget(const Service& service,
                                                             const std::string& version) const {
  const ServiceDefinition& definition = service.definition;
  if (definition.package_prefix().empty()) {
    if (!version.empty() && version != definition.version()) {
      return absl::FailedPreconditionError(
          absl::StrCat("service ", service.name(), " has no package prefix: only its own version ",
                       definition.version(), " can run, not ", version));
    }
    return Target{definition.executable(), definition.version(), {}};
  }

  std::string prefix = definition.package_prefix();
  std::string chosen = version;
  if (chosen.empty()) {
    std::error_code error;
    std::filesystem::path current = std::filesystem::read_symlink(prefix + "/current", error);
    if (error) {
      return absl::FailedPreconditionError(absl::StrCat("no version of ", service.name(),
                                                        " is installed: ", prefix,
                                                        "/current: ", error.message()));
    }
    chosen = current.filename().string();
  }
  std::string folder = absl::StrCat(prefix, "/versions/", chosen);
  if (!std::filesystem::is_directory(folder)) {
    return absl::NotFoundError(absl::StrCat("version ", chosen, " of ", service.name(),
                                            " is not installed: ", folder, " does not exist"));
  }
  return Target{absl::StrCat(folder, "/", definition.executable()), chosen, {}};
}

LaunchSpec Supervisor::BuildLaunchSpec(const Service& service, const Target& target,
                                       uint64_t generation) const {
  LaunchSpec spec;
  spec.executable = target.executable;
  spec.args.assign(service.definition.args().begin(), service.definition.args().end());
  for (const auto& [name, value] : service.definition.environment()) {
    spec.environment.emplace_back(name, value);
  }

  std::string state_directory = absl::StrCat(options_.state_dir, "/services/", service.name());
  spec.environment.emplace_back("NOTIFY_SOCKET", notify_->path());
  spec.environment.emplace_back("NEHOST_SERVICE", service.name());
  spec.environment.emplace_back("NEHOST_GENERATION", std::to_string(generation));
  spec.environment.emplace_back("NEHOST_VERSION", target.version);
  spec.environment.emplace_back(
      "NEHOST_CONTROL_SOCKET", ControlSocketPath(options_.runtime_dir, service.name(), generation));
  spec.environment.emplace_back("STATE_DIRECTORY", state_directory);
  if (const std::optional<Group>& admin = options_.access.admin_group()) {
    spec.environment.emplace_back("NEHOST_ADMIN_GROUP", std::to_string(admin->gid));
  }
  if (const std::optional<Group>& reader = options_.access.reader_group()) {
    spec.environment.emplace_back("NEHOST_READER_GROUP", std::to_string(reader->gid));
  }

  for (const UniqueFd& fd : service.listeners) spec.listen_fds.push_back(fd.get());
  spec.listen_fd_names = service.listener_names;
  return spec;
}

absl::Status Supervisor::ExpectTarget(const ServiceDefinition& definition, Target& target) const {
  if (definition.package_prefix().empty()) {
    target.expected = {.sha256 = "",
                       .verified_by = "no manifest: plain definition, sha256 recorded only"};
    return absl::OkStatus();
  }
  absl::StatusOr<ExpectedExecutable> expected =
      ExpectSignedExecutable(definition.package_prefix(), target.version, definition.executable(),
                             installer::KeysDir(options_.config_dir));
  if (!expected.ok()) return AsVerificationFailure(expected.status());
  target.expected = *std::move(expected);
  return absl::OkStatus();
}

void Supervisor::WatchPidfd(const GenerationPtr& generation) {
  epoll_event event{EPOLLIN, {.fd = generation->pidfd.get()}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, generation->pidfd.get(), &event);
}

absl::StatusOr<Supervisor::PreparedLaunch> Supervisor::PrepareLaunch(Service& service,
                                                                     const Target& target) {
  Registration& registration = *service.registration;
  uint64_t number = std::max(registration.generation(), registration.last_generation()) + 1;
  std::string state_dir = absl::StrCat(options_.state_dir, "/services/", service.name());
  if (absl::Status made = MakeDirs(state_dir, 0750); !made.ok()) return made;

  // Generation numbers are never reused, even for a launch that fails or is rolled back.
  registration.set_last_generation(number);
  return PreparedLaunch{number, target, BuildLaunchSpec(service, target, number)};
}

absl::StatusOr<Supervisor::GenerationPtr> Supervisor::StartProcess(const PreparedLaunch& launch) {
  // Right before the launch, whatever came before: the file that runs is the one checked.
  const std::string& path = launch.target.executable;
  absl::StatusOr<OpenedExecutable> opened = executables_.Open(path, launch.target.expected);
  if (!opened.ok()) return opened.status();
  LaunchSpec spec = launch.spec;
  spec.executable_fd = opened->fd.get();
  absl::StatusOr<LaunchedProcess> process = launcher_->Launch(spec);
  if (!process.ok()) return process.status();
  if (absl::Status same = ExecutableCache::Recheck(*opened, path); !same.ok()) {
    // It leads a process group of its own (setsid): whatever it started goes with it.
    PidfdSendSignal(process->pidfd.get(), SIGKILL);
    ::kill(-process->pid, SIGKILL);
    ::waitpid(process->pid, nullptr, 0);
    return same;
  }

  auto generation = std::make_shared<Generation>();
  generation->number = launch.number;
  generation->pid = process->pid;
  generation->pidfd = std::move(process->pidfd);
  generation->version = launch.target.version;
  absl::StatusOr<uint64_t> start = ReadProcessStartTime(process->pid);
  generation->start_time_ticks = start.ok() ? *start : 0;
  absl::StatusOr<std::string> executable = ReadProcessExecutable(process->pid);
  generation->executable = executable.ok() ? *executable : launch.target.executable;
  generation->executable_sha256 = opened->sha256;
  generation->verified_by = launch.target.expected.verified_by;
  return generation;
}

void Supervisor::RegisterGeneration(Service& service, const GenerationPtr& generation) {
  WatchPidfd(generation);
  pidfds_[generation->pidfd.get()] = {&service, generation};
  spdlog::info(
      "launched service={} generation={} pid={} version={} executable={} sha256={} "
      "verified_by=\"{}\"",
      service.name(), generation->number, generation->pid, generation->version,
      generation->executable, generation->executable_sha256, generation->verified_by);

  std::vector<ReceivedNotify> early;
  std::erase_if(early_notifies_, [&](const ReceivedNotify& notify) {
    if (notify.sender != generation->pid) return false;
    early.push_back(notify);
    return true;
  });
  for (const ReceivedNotify& notify : early) OnNotify(notify);
}

absl::StatusOr<Supervisor::GenerationPtr> Supervisor::LaunchGeneration(Service& service,
                                                                       const Target& target) {
  absl::StatusOr<PreparedLaunch> prepared = PrepareLaunch(service, target);
  if (!prepared.ok()) return prepared.status();
  absl::StatusOr<GenerationPtr> generation = StartProcess(*prepared);
  if (!generation.ok()) return generation.status();
  RegisterGeneration(service, *generation);
  return generation;
}

void Supervisor::MakeCurrent(Service& service, GenerationPtr generation) {
  Registration& registration = *service.registration;
  registration.set_generation(generation->number);
  registration.set_pid(generation->pid);
  registration.set_start_time_ticks(generation->start_time_ticks);
  registration.set_executable(generation->executable);
  registration.set_executable_sha256(generation->executable_sha256);
  registration.set_verified_by(generation->verified_by);
  registration.set_version(generation->version);
  registration.set_status_text(generation->status_text);
  service.current = std::move(generation);
  service.owner_unrecorded = true;
}

void Supervisor::Launch(Service& service) {
  Registration& registration = *service.registration;
  absl::Time now = absl::Now();

  absl::StatusOr<Target> target = ResolveTarget(service, "");
  if (target.ok()) {
    absl::Status expected = ExpectTarget(service.definition, *target);
    if (!expected.ok()) target = expected;
  }
  absl::StatusOr<GenerationPtr> generation =
      target.ok() ? LaunchGeneration(service, *target) : target.status();
  if (!generation.ok()) {
    // A missing, broken or unverified executable will not mend itself in a few milliseconds:
    // wait the longest delay rather than spin, and say so.
    const char* what =
        IsVerificationFailure(generation.status()) ? "launch refused" : "launch failed";
    registration.set_pid(0);
    service.current.reset();
    service.deadline = now + service.backoff.policy().max;
    *registration.mutable_next_attempt_at() = ToProtoTime(service.deadline);
    SetState(service, nehost::supervisor::v1::FAILED,
             absl::StrCat(what, ": ", generation.status().message(), "; next attempt at ",
                          TimeText(service.deadline)));
    spdlog::error("{} service={}: {}; retrying at {}", what, service.name(),
                  generation.status().message(), TimeText(service.deadline));
    Persist();
    return;
  }

  MakeCurrent(service, *generation);
  registration.clear_next_attempt_at();
  service.relaunch_after_stop = false;
  service.deadline = now + service.ready_timeout(options_);
  SetState(service, nehost::supervisor::v1::STARTING, "waiting for READY=1");
  Persist();
}

void Supervisor::SendStop(Service& service, Generation& generation, StopReason reason) {
  generation.stop_reason = reason;
  generation.kill_at = absl::Now() + service.stop_grace(options_);
  if (generation.pidfd) PidfdSendSignal(generation.pidfd.get(), SIGTERM);

  spdlog::info("stopping service={} generation={} pid={} reason=\"{}\" grace_ms={}", service.name(),
               generation.number, generation.pid, StopReasonName(reason),
               absl::ToInt64Milliseconds(service.stop_grace(options_)));
  if (&generation == service.current.get()) {
    SetState(service, nehost::supervisor::v1::STOPPING, StopReasonName(reason));
  }
}

void Supervisor::OnExit(Service& service, const GenerationPtr& generation) {
  // WNOWAIT leaves a child a zombie, so its pid still names its process group (each
  // generation leads one, from setsid): whatever it left running there goes too, and cannot
  // hold on to the service's sockets or state. A process adopted from an earlier nehostd
  // that died is nobody's child here: its exit status is not ours to read.
  siginfo_t info{};
  id_t pid = static_cast<id_t>(generation->pid);
  int waited = ::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT);
  if (waited == 0 && info.si_pid == 0) return;  // Not exited after all.

  ExitRecord& record = generation->exit;
  if (waited == 0) {
    ::kill(-generation->pid, SIGKILL);
    ::waitid(P_PID, pid, &info, WEXITED);
    DescribeExit(info, &record);
  } else {
    record.set_exit_code(-1);
    record.set_description("exited; status unknown (adopted from an earlier nehostd)");
  }
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, generation->pidfd.get(), nullptr);
  pidfds_.erase(generation->pidfd.get());
  generation->pidfd.Reset();
  generation->exited = true;

  record.set_generation(generation->number);
  record.set_pid(generation->pid);
  StopReason reason = generation->stop_reason;
  if (reason == nehost::supervisor::v1::STOP_REASON_UNSPECIFIED) {
    bool unready_candidate = generation == service.candidate && !generation->ready;
    reason =
        unready_candidate ? nehost::supervisor::v1::NEVER_READY : nehost::supervisor::v1::CRASHED;
  }
  if (shutting_down_) reason = nehost::supervisor::v1::HOST_SHUTDOWN;
  record.set_reason(reason);
  *record.mutable_at() = ToProtoTime(absl::Now());

  auto* exits = service.registration->mutable_recent_exits();
  exits->Add()->CopyFrom(record);
  std::rotate(exits->rbegin(), exits->rbegin() + 1, exits->rend());
  while (exits->size() > kMaxRecentExits) exits->RemoveLast();

  auto level =
      reason == nehost::supervisor::v1::CRASHED ? spdlog::level::warn : spdlog::level::info;
  spdlog::log(level, "exited service={} generation={} pid={} exit={} reason=\"{}\"", service.name(),
              record.generation(), record.pid(), ExitKeyValue(record), StopReasonName(reason));
  Publish(service, "exited",
          absl::StrCat("generation ", record.generation(), " ", StopReasonName(reason), ": ",
                       record.description()));

  if (generation == service.current) {
    AfterCurrentExit(service, record);
  } else {
    std::erase(service.draining, generation);
    SyncOtherGenerations(service);
  }
  state_changed_.SignalAll();
  Persist();
}

void Supervisor::AfterCurrentExit(Service& service, const ExitRecord& record) {
  Registration& registration = *service.registration;
  registration.set_pid(0);
  registration.set_start_time_ticks(0);
  std::string summary = absl::StrCat(StopReasonName(record.reason()), ": ", record.description());

  if (shutting_down_) {
    SetState(service, nehost::supervisor::v1::STOPPED, "nehostd stopped");
  } else if (service.candidate != nullptr && !service.candidate->exited) {
    // The upgrade under way either switches to its candidate or, failing, starts afresh.
    SetState(service, nehost::supervisor::v1::STARTING,
             absl::StrCat(summary, "; the upgrade's new generation takes over"));
  } else if (record.reason() == nehost::supervisor::v1::REQUESTED && service.relaunch_after_stop) {
    service.backoff.Reset();
    Launch(service);
  } else if (record.reason() == nehost::supervisor::v1::REQUESTED) {
    SetState(service, nehost::supervisor::v1::STOPPED, "stopped by request");
  } else {
    AfterUnrequestedExit(service, summary);
  }
}

void Supervisor::AfterUnrequestedExit(Service& service, const std::string& description) {
  absl::Time now = absl::Now();
  absl::Duration served =
      service.current == nullptr || service.current->ready_at == absl::InfinitePast()
          ? absl::ZeroDuration()
          : now - service.current->ready_at;
  BackoffSchedule::Decision decision = service.backoff.OnExit(now, served);
  service.deadline = now + decision.delay;
  *service.registration->mutable_next_attempt_at() = ToProtoTime(service.deadline);
  int64_t delay_ms = absl::ToInt64Milliseconds(decision.delay);

  if (decision.crash_loop) {
    spdlog::error("crash loop service={} exits={} window_s={}: marking failed; next attempt at {}",
                  service.name(), decision.exits_in_window,
                  absl::ToInt64Seconds(service.backoff.policy().crash_loop_window),
                  TimeText(service.deadline));
    SetState(
        service, nehost::supervisor::v1::FAILED,
        absl::StrCat("crash loop: ", decision.exits_in_window, " exits within ",
                     absl::FormatDuration(service.backoff.policy().crash_loop_window),
                     "; last: ", description, "; next attempt at ", TimeText(service.deadline)));
    return;
  }
  service.registration->set_restart_count(service.registration->restart_count() + 1);
  spdlog::info("restarting service={} generation={} backoff_ms={}", service.name(),
               service.registration->generation() + 1, delay_ms);
  SetState(service, nehost::supervisor::v1::BACKOFF,
           absl::StrCat(description, "; restarting in ", delay_ms, "ms"));
}

void Supervisor::OnNotify(const ReceivedNotify& notify) {
  for (auto& [fd, owner] : pidfds_) {
    auto& [service, generation] = owner;
    if (generation->pid != notify.sender) continue;

    if (notify.message.status.has_value()) {
      generation->status_text = *notify.message.status;
      if (generation == service->current) {
        service->registration->set_status_text(*notify.message.status);
      }
    }
    if (!notify.message.ready || generation->ready) return;

    generation->ready = true;
    generation->ready_at = absl::Now();
    spdlog::info("ready service={} generation={} pid={} status=\"{}\"", service->name(),
                 generation->number, generation->pid, notify.message.status.value_or(""));
    if (generation == service->current &&
        service->registration->state() == nehost::supervisor::v1::STARTING) {
      service->deadline = absl::InfiniteFuture();
      SetState(*service, nehost::supervisor::v1::READY, notify.message.status.value_or("ready"));
      // What a lookup hands out from now on; a naive nehostd trusts only a READY record.
      service->owner_unrecorded = true;
      Persist();
    }
    state_changed_.SignalAll();
    return;
  }
  // A generation launched without the lock may speak before it is registered.
  if (unlocked_launches_ > 0 && early_notifies_.size() < kMaxEarlyNotifies) {
    early_notifies_.push_back(notify);
    return;
  }
  spdlog::debug("ignoring notify message from pid={}: not a supervised generation", notify.sender);
}

void Supervisor::OnDeadline(Service& service, absl::Time now) {
  std::vector<GenerationPtr> all = service.draining;
  if (service.current) all.push_back(service.current);
  if (service.candidate) all.push_back(service.candidate);
  for (const GenerationPtr& generation : all) {
    if (now < generation->kill_at || generation->kill_sent || !generation->pidfd) continue;
    spdlog::warn("killing service={} generation={} pid={}: still running after the stop grace",
                 service.name(), generation->number, generation->pid);
    PidfdSendSignal(generation->pidfd.get(), SIGKILL);
    if (!generation->adopted) ::kill(-generation->pid, SIGKILL);
    generation->kill_sent = true;
  }

  if (now < service.deadline) return;
  service.deadline = absl::InfiniteFuture();
  switch (service.registration->state()) {
    case nehost::supervisor::v1::STARTING:
      if (service.running() && !service.current->ready) {
        spdlog::warn("not ready service={} generation={} timeout_ms={}: stopping it",
                     service.name(), service.current->number,
                     absl::ToInt64Milliseconds(service.ready_timeout(options_)));
        SendStop(service, *service.current, nehost::supervisor::v1::NEVER_READY);
      }
      break;
    case nehost::supervisor::v1::BACKOFF:
    case nehost::supervisor::v1::FAILED:
      if (service.registration->enabled() && service.setup_error.empty() && !shutting_down_ &&
          !service.running()) {
        Failpoint("restart.before_launch");
        Launch(service);
      }
      break;
    default:
      break;
  }
}

void Supervisor::SyncOtherGenerations(Service& service) {
  Registration& registration = *service.registration;
  registration.clear_other_generations();
  auto add = [&](const GenerationPtr& generation, GenerationRecord::Role role) {
    if (generation == nullptr || generation->exited) return;
    GenerationRecord* record = registration.add_other_generations();
    record->set_role(role);
    record->set_generation(generation->number);
    record->set_pid(generation->pid);
    record->set_start_time_ticks(generation->start_time_ticks);
    record->set_executable(generation->executable);
    record->set_version(generation->version);
  };
  add(service.candidate, GenerationRecord::CANDIDATE);
  for (const GenerationPtr& generation : service.draining) {
    add(generation, GenerationRecord::DRAINING);
  }
}

void Supervisor::SetState(Service& service, ServiceState state, const std::string& reason) {
  Registration& registration = *service.registration;
  registration.set_state(state);
  registration.set_state_reason(reason);
  *registration.mutable_state_since() = ToProtoTime(absl::Now());
  Publish(service, StateName(state), reason);
  state_changed_.SignalAll();
}

void Supervisor::Publish(const Service& service, const std::string& kind,
                         const std::string& message) {
  const Registration& registration = *service.registration;
  Event event;
  *event.mutable_at() = ToProtoTime(absl::Now());
  event.set_name(service.name());
  event.set_generation(registration.generation());
  event.set_pid(registration.pid());
  event.set_state(registration.state());
  event.set_kind(kind);
  event.set_message(message);
  if (kind == "exited" && registration.recent_exits_size() > 0) {
    *event.mutable_exit() = registration.recent_exits(0);
    event.set_generation(event.exit().generation());
    event.set_pid(event.exit().pid());
  }
  events_.Publish(event);
}

void Supervisor::Persist() {
  uint64_t sequence = registry_writer_.Submit(registry_.Snapshot());
  for (auto& [name, service] : services_) {
    if (!service->owner_unrecorded) continue;
    service->owner_unrecorded = false;
    service->owner_recorded_in = sequence;
  }
}

// A failed write is logged by the writer and keeps the state in memory; the next snapshot
// tries again, so the caller goes on either way.
void Supervisor::AwaitPersisted() { registry_writer_.Flush().IgnoreError(); }

absl::Status Supervisor::VerifyOwner(const Service& service) const {
  const Registration& registration = *service.registration;
  pid_t pid = registration.pid();
  if (!service.running()) {
    return absl::UnavailableError(absl::StrCat("service ", service.name(), " has no process"));
  }
  if (service.current->trusted_only) {
    // What a supervisor that trusts its record does: ask the kernel about the pid, no more.
    if (::kill(pid, 0) != 0) {
      return absl::UnavailableError(
          absl::StrCat("lookup ", service.name(), ": pid ", pid, ": ", ErrnoText(errno)));
    }
    return absl::OkStatus();
  }
  if (PidfdExited(service.current->pidfd.get())) {
    return absl::UnavailableError(
        absl::StrCat("service ", service.name(), ": process ", pid, " has exited"));
  }

  absl::StatusOr<uint64_t> start = ReadProcessStartTime(pid);
  if (!start.ok() || *start != registration.start_time_ticks()) {
    return absl::UnavailableError(
        absl::StrCat("service ", service.name(), ": verification failed: pid ", pid,
                     " no longer has the registered start time ", registration.start_time_ticks()));
  }
  absl::StatusOr<std::string> executable = ReadProcessExecutable(pid);
  if (!executable.ok() || *executable != registration.executable()) {
    return absl::UnavailableError(
        absl::StrCat("service ", service.name(), ": verification failed: pid ", pid, " runs ",
                     executable.ok() ? *executable : std::string(executable.status().message()),
                     ", not the registered ", registration.executable()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Supervisor::Service*> Supervisor::Find(const std::string& name) {
  auto found = services_.find(name);
  if (found != services_.end()) return found->second.get();

  std::vector<std::string> known;
  for (const auto& [known_name, service] : services_) known.push_back(known_name);
  return absl::NotFoundError(absl::StrCat("unknown service name ", name, "; nehostd hosts: ",
                                          known.empty() ? "nothing" : absl::StrJoin(known, ", ")));
}

absl::StatusOr<Registration> Supervisor::Lookup(const std::string& name, absl::Duration wait) {
  uint64_t owner_recorded_in = 0;
  absl::StatusOr<Registration> found = LookupVerified(name, wait, &owner_recorded_in);
  // An owner goes out only once the registry's write that names it is done: a nehostd killed
  // right after this answer must leave a process that the next one can find. A write that
  // failed (a full disk; the writer logs it) does not hold lookups back: the process is live
  // and verified, and only a nehostd killed before the next good write would miss it. After
  // the first lookup of an owner, the snapshot is long written and this does not wait.
  if (found.ok()) registry_writer_.WaitWritten(owner_recorded_in).IgnoreError();
  return found;
}

absl::StatusOr<Registration> Supervisor::LookupVerified(const std::string& name,
                                                        absl::Duration wait,
                                                        uint64_t* owner_recorded_in) {
  if (wait <= absl::ZeroDuration()) wait = options_.lookup_wait;
  absl::Time deadline = absl::Now() + wait;

  absl::MutexLock lock(&mu_);
  for (;;) {
    absl::StatusOr<Service*> found = Find(name);
    if (!found.ok()) return found.status();
    Service& service = **found;
    const Registration& registration = *service.registration;

    absl::Status pending;
    switch (registration.state()) {
      case nehost::supervisor::v1::READY: {
        absl::Status verified = VerifyOwner(service);
        if (verified.ok()) {
          *owner_recorded_in = service.owner_recorded_in;
          return registration;
        }
        // A supervisor that trusts its record has nothing to wait for.
        if (service.current != nullptr && service.current->trusted_only) return verified;
        pending = verified;
        break;
      }
      case nehost::supervisor::v1::STOPPED:
        return absl::FailedPreconditionError(
            absl::StrCat("service ", name, " is stopped (", registration.state_reason(),
                         "); start it with: nehostctl start ", name));
      case nehost::supervisor::v1::FAILED:
        return absl::UnavailableError(
            absl::StrCat("service ", name, " failed: ", registration.state_reason()));
      default:
        pending = absl::UnavailableError(absl::StrCat("service ", name, " is ",
                                                      StateName(registration.state()), " (",
                                                      registration.state_reason(), ")"));
        break;
    }

    if (shutting_down_) return absl::UnavailableError("nehostd is shutting down");
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(
          absl::StrCat(pending.message(), "; not ready within ", absl::FormatDuration(wait)));
    }
    // Every state change wakes the waiters; the timeout bounds both the wait and the time
    // between re-checks of a dead owner the loop has not reaped yet.
    state_changed_.WaitWithDeadline(&mu_, std::min(deadline, absl::Now() + absl::Milliseconds(50)));
  }
}

std::vector<Registration> Supervisor::List() {
  absl::MutexLock lock(&mu_);
  std::vector<Registration> all;
  for (const auto& [name, service] : services_) all.push_back(*service->registration);
  return all;
}

absl::StatusOr<Registration> Supervisor::StartService(const std::string& name) {
  // Runs after the lock is released: the answer waits until the change is on disk, so that
  // a nehostd killed right after it still knows what was asked.
  absl::Cleanup persisted = [this] { AwaitPersisted(); };
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Service*> found = Find(name);
  if (!found.ok()) return found.status();
  Service& service = **found;
  if (!service.setup_error.empty()) return absl::FailedPreconditionError(service.setup_error);

  service.registration->set_enabled(true);
  if (!service.running()) {
    service.backoff.Reset();
    spdlog::info("starting service={} by request", name);
    Launch(service);
  } else if (service.registration->state() == nehost::supervisor::v1::STOPPING) {
    service.relaunch_after_stop = true;
  }
  Persist();
  Wake();
  return *service.registration;
}

absl::StatusOr<Registration> Supervisor::StopService(const std::string& name) {
  absl::Cleanup persisted = [this] { AwaitPersisted(); };  // as in StartService
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Service*> found = Find(name);
  if (!found.ok()) return found.status();
  Service& service = **found;

  service.registration->set_enabled(false);
  service.relaunch_after_stop = false;
  if (service.running() &&
      service.current->stop_reason == nehost::supervisor::v1::STOP_REASON_UNSPECIFIED) {
    SendStop(service, *service.current, nehost::supervisor::v1::REQUESTED);
  } else if (!service.running()) {
    service.deadline = absl::InfiniteFuture();
    service.registration->clear_next_attempt_at();
    SetState(service, nehost::supervisor::v1::STOPPED, "stopped by request");
  }
  Persist();
  Wake();
  return *service.registration;
}

absl::StatusOr<Registration> Supervisor::RestartService(const std::string& name) {
  absl::Cleanup persisted = [this] { AwaitPersisted(); };  // as in StartService
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Service*> found = Find(name);
  if (!found.ok()) return found.status();
  Service& service = **found;
  if (!service.setup_error.empty()) return absl::FailedPreconditionError(service.setup_error);
  if (service.upgrading) {
    return absl::FailedPreconditionError(
        absl::StrCat("service ", name, " is being upgraded; restart it when that is done"));
  }

  service.registration->set_enabled(true);
  if (service.running()) {
    if (service.current->stop_reason == nehost::supervisor::v1::STOP_REASON_UNSPECIFIED) {
      SendStop(service, *service.current, nehost::supervisor::v1::REQUESTED);
    }
    service.relaunch_after_stop = true;
  } else {
    service.backoff.Reset();
    Launch(service);
  }
  Persist();
  Wake();
  return *service.registration;
}

void Supervisor::Shutdown() {
  std::vector<std::thread> upgrades;
  {
    absl::MutexLock lock(&mu_);
    if (loop_done_ || !loop_.joinable()) return;
    shutting_down_ = true;
    upgrades = std::move(background_upgrades_);
    for (auto& [name, service] : services_) {
      std::vector<GenerationPtr> all = service->draining;
      if (service->candidate) all.push_back(service->candidate);
      if (service->current) all.push_back(service->current);
      for (const GenerationPtr& generation : all) {
        if (generation->pidfd && !generation->exited) {
          SendStop(*service, *generation, nehost::supervisor::v1::HOST_SHUTDOWN);
        }
      }
      if (!service->running() &&
          service->registration->state() != nehost::supervisor::v1::STOPPED) {
        service->deadline = absl::InfiniteFuture();
        SetState(*service, nehost::supervisor::v1::STOPPED, "nehostd stopped");
      }
    }
    Wake();
  }
  for (std::thread& upgrade : upgrades) upgrade.join();

  {
    absl::MutexLock lock(&mu_);
    // The loop reaps each exit and sends SIGKILL after each grace, so this ends. A launch
    // under way without the lock registers its process, and stops it, before it counts down.
    auto all_gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return pidfds_.empty() && unlocked_launches_ == 0;
    };
    mu_.Await(absl::Condition(&all_gone));
    Persist();
    loop_done_ = true;
    Wake();
  }
  loop_.join();
  AwaitPersisted();
  events_.Close();
  spdlog::info("stopped every service");
}

void Supervisor::Detach() {
  {
    absl::MutexLock lock(&mu_);
    if (loop_done_ || !loop_.joinable()) return;
    // A candidate being launched must be in the persisted record, for the next image to find.
    auto launched = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return unlocked_launches_ == 0; };
    mu_.Await(absl::Condition(&launched));
    loop_done_ = true;
    Persist();
    Wake();
  }
  loop_.join();
  // The next image reads the file as soon as this one execs.
  AwaitPersisted();
  events_.Close();
  spdlog::info("detached from every service; they keep running for the next nehostd");
}

void Supervisor::Wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

int Supervisor::MillisecondsToNextDeadline() {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [name, service] : services_) next = std::min(next, service->deadline);
  for (const auto& [fd, owner] : pidfds_) {
    if (!owner.second->kill_sent) next = std::min(next, owner.second->kill_at);
  }
  if (next == absl::InfiniteFuture()) return -1;
  absl::Duration left = next - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
}

void Supervisor::DrainNotifySocket() {
  for (;;) {
    absl::StatusOr<std::optional<ReceivedNotify>> received = notify_->Receive();
    if (!received.ok()) {
      spdlog::warn("dropping notify message: {}", received.status().message());
      continue;
    }
    if (!received->has_value()) return;
    OnNotify(**received);
  }
}

void Supervisor::RunLoop() {
  epoll_event ready[16];
  for (;;) {
    int timeout_ms;
    {
      absl::MutexLock lock(&mu_);
      if (loop_done_) return;
      timeout_ms = MillisecondsToNextDeadline();
    }

    int count = ::epoll_wait(epoll_.get(), ready, 16, timeout_ms);
    if (count < 0 && errno != EINTR) {
      spdlog::error("supervisor loop: epoll_wait failed: {}; retrying", ErrnoText(errno));
    }

    absl::MutexLock lock(&mu_);
    for (int i = 0; i < count; ++i) {
      int fd = ready[i].data.fd;
      if (fd == wake_.get()) {
        uint64_t value;
        [[maybe_unused]] ssize_t n = ::read(wake_.get(), &value, sizeof value);
      } else if (fd == notify_->fd()) {
        DrainNotifySocket();
      } else if (auto found = pidfds_.find(fd); found != pidfds_.end()) {
        auto [service, generation] = found->second;
        OnExit(*service, generation);
      }
    }
    absl::Time now = absl::Now();
    for (auto& [name, service] : services_) OnDeadline(*service, now);
  }
}

}  // namespace nehost::supervisor
