#include "supervisor/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/process_info.h"
#include "common/unix_socket.h"
#include "common/log.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::ExitRecord;

namespace {

constexpr int kMaxRecentExits = 10;

google::protobuf::Timestamp ToProto(absl::Time time) {
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

bool PidfdExited(int pidfd) {
  pollfd polled{pidfd, POLLIN, 0};
  return ::poll(&polled, 1, 0) > 0;
}

// "killed by signal 9 (Killed)" or "exited with code 3", and the matching key=value.
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
  return absl::StrCat("code:", record.exit_code());
}

}  // namespace

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

// Everything nehostd keeps for one service; the persisted part lives in the registry.
struct Supervisor::Service {
  Service(ServiceDefinition definition_in, Registration* registration_in)
      : definition(std::move(definition_in)),
        registration(registration_in),
        backoff(BackoffPolicy::FromProto(definition.restart())) {}

  ServiceDefinition definition;
  Registration* registration;
  BackoffSchedule backoff;

  // The gRPC socket first, then the definition's listeners, in LISTEN_FDS order.
  std::vector<UniqueFd> listeners;
  std::vector<std::string> listener_names;
  // Why the listeners could not be created; such a service cannot start.
  std::string setup_error;

  UniqueFd pidfd;
  absl::Time ready_at = absl::InfinitePast();
  // When the current state times out: ready timeout, stop grace or next attempt.
  absl::Time deadline = absl::InfiniteFuture();
  // Set when nehostd asked the process to stop; an exit without it is a crash.
  StopReason stop_reason = nehost::supervisor::v1::STOP_REASON_UNSPECIFIED;
  bool relaunch_after_stop = false;
  bool kill_sent = false;

  pid_t pid() const { return registration->pid(); }
  const std::string& name() const { return definition.name(); }

  absl::Duration ready_timeout(const SupervisorOptions& options) const {
    return definition.ready_timeout_ms() > 0 ? absl::Milliseconds(definition.ready_timeout_ms())
                                             : options.default_ready_timeout;
  }
  absl::Duration stop_grace(const SupervisorOptions& options) const {
    return definition.stop_grace_ms() > 0 ? absl::Milliseconds(definition.stop_grace_ms())
                                          : options.default_stop_grace;
  }
};

Supervisor::Supervisor(SupervisorOptions options, std::unique_ptr<Launcher> launcher)
    : options_(std::move(options)),
      launcher_(std::move(launcher)),
      registry_(options_.state_dir + "/registry.json") {}

Supervisor::~Supervisor() { Shutdown(); }

std::string Supervisor::control_socket_path() const {
  return options_.runtime_dir + "/nehostd.sock";
}

absl::Status Supervisor::PrepareFolders() {
  for (const std::string& folder :
       {options_.runtime_dir, options_.runtime_dir + "/services", options_.state_dir,
        options_.state_dir + "/services"}) {
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

  LoadedDefinitions loaded = LoadServiceDefinitions(options_.config_dir, options_.self_dir);
  for (const absl::Status& error : loaded.errors) {
    spdlog::error("skipping service definition: {}", error.message());
  }
  if (loaded.embedded_default) {
    spdlog::info("no service definitions in {}/services.d; hosting the embedded default "
                 "service={} executable={}",
                 options_.config_dir, loaded.definitions[0].name(),
                 loaded.definitions[0].executable());
  }

  absl::MutexLock lock(&mu_);
  LoadRegistry();
  for (ServiceDefinition& definition : loaded.definitions) AddService(std::move(definition));
  for (const Registration& stale : registry_.All()) {
    if (services_.count(stale.name()) != 0) continue;
    spdlog::info("forgetting service={}: it is no longer defined", stale.name());
    StopLeftoverProcess(stale);
    registry_.Remove(stale.name());
  }
  Persist();

  loop_ = std::thread([this] { RunLoop(); });
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

  // A process recorded by an earlier nehostd that still runs is supervised by nobody.
  if (registration.pid() != 0) StopLeftoverProcess(registration);
  registration.set_pid(0);
  registration.set_start_time_ticks(0);
  if (definition.version().empty()) definition.set_version(options_.version);

  auto service = std::make_unique<Service>(std::move(definition), &registration);
  Service& added = *service;
  services_[name] = std::move(service);

  if (absl::Status listeners = CreateListeners(added); !listeners.ok()) {
    added.setup_error = std::string(listeners.message());
    spdlog::error("cannot host service={}: {}", name, listeners.message());
    SetState(added, nehost::supervisor::v1::FAILED, added.setup_error);
    return;
  }
  if (!registration.enabled()) {
    SetState(added, nehost::supervisor::v1::STOPPED, "stopped by request");
    return;
  }
  Launch(added);
}

absl::Status Supervisor::CreateListeners(Service& service) {
  std::string path = absl::StrCat(options_.runtime_dir, "/services/", service.name(), ".sock");
  service.registration->set_endpoint("unix:" + path);

  absl::StatusOr<UniqueFd> grpc_socket = ListenUnix(path, 0660);
  if (!grpc_socket.ok()) return grpc_socket.status();
  service.listeners.push_back(std::move(*grpc_socket));
  service.listener_names.push_back("grpc");

  for (const auto& listener : service.definition.listeners()) {
    absl::StatusOr<UniqueFd> fd = absl::InternalError("no address");
    if (listener.has_unix_path()) fd = ListenUnix(listener.unix_path(), 0660);
    if (!listener.tcp().empty()) fd = BindInet(listener.tcp(), InetProtocol::kTcp);
    if (!listener.udp().empty()) fd = BindInet(listener.udp(), InetProtocol::kUdp);
    if (!fd.ok()) {
      return absl::Status(fd.status().code(), absl::StrCat("listener ", listener.name(), ": ",
                                                           fd.status().message()));
    }
    service.listeners.push_back(std::move(*fd));
    service.listener_names.push_back(listener.name());
  }
  return absl::OkStatus();
}

void Supervisor::StopLeftoverProcess(const Registration& registration) {
  pid_t pid = registration.pid();
  if (pid <= 0) return;

  // Only the registered process, not whatever reuses its pid: same start time, or leave it.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  absl::StatusOr<uint64_t> start = ReadProcessStartTime(pid);
  if (!pidfd || !start.ok() || *start != registration.start_time_ticks()) return;

  // TODO: adopt such a process instead of stopping it, once generations expose a control
  // channel; until then a restart of nehostd after kill -9 restarts its services.
  spdlog::warn("stopping unsupervised process service={} generation={} pid={}: left by an "
               "earlier nehostd; a new generation replaces it",
               registration.name(), registration.generation(), pid);
  PidfdSendSignal(pidfd.get(), SIGTERM);
  pollfd polled{pidfd.get(), POLLIN, 0};
  if (::poll(&polled, 1, static_cast<int>(absl::ToInt64Milliseconds(options_.default_stop_grace))) <= 0) {
    spdlog::warn("killing unsupervised process service={} pid={}: no exit within the grace",
                 registration.name(), pid);
    PidfdSendSignal(pidfd.get(), SIGKILL);
    ::poll(&polled, 1, 1000);
  }
}

LaunchSpec Supervisor::BuildLaunchSpec(const Service& service, uint64_t generation) const {
  LaunchSpec spec;
  spec.executable = service.definition.executable();
  spec.args.assign(service.definition.args().begin(), service.definition.args().end());
  for (const auto& [name, value] : service.definition.environment()) {
    spec.environment.emplace_back(name, value);
  }

  std::string state_directory = absl::StrCat(options_.state_dir, "/services/", service.name());
  spec.environment.emplace_back("NOTIFY_SOCKET", notify_->path());
  spec.environment.emplace_back("NEHOST_SERVICE", service.name());
  spec.environment.emplace_back("NEHOST_GENERATION", std::to_string(generation));
  spec.environment.emplace_back("STATE_DIRECTORY", state_directory);

  for (const UniqueFd& fd : service.listeners) spec.listen_fds.push_back(fd.get());
  spec.listen_fd_names = service.listener_names;
  return spec;
}

void Supervisor::Launch(Service& service) {
  Registration& registration = *service.registration;
  uint64_t generation = registration.generation() + 1;
  absl::Time now = absl::Now();

  absl::Status launched = MakeDirs(absl::StrCat(options_.state_dir, "/services/", service.name()), 0750);
  absl::StatusOr<LaunchedProcess> process = absl::InternalError("not launched");
  if (launched.ok()) {
    process = launcher_->Launch(BuildLaunchSpec(service, generation));
    launched = process.status();
  }
  if (!launched.ok()) {
    // A missing or broken executable will not mend itself in a few milliseconds: wait the
    // longest delay rather than spin, and say so.
    registration.set_pid(0);
    service.deadline = now + service.backoff.policy().max;
    *registration.mutable_next_attempt_at() = ToProto(service.deadline);
    SetState(service, nehost::supervisor::v1::FAILED,
             absl::StrCat("launch failed: ", launched.message(), "; next attempt at ",
                          TimeText(service.deadline)));
    spdlog::error("launch failed service={} generation={}: {}; retrying at {}", service.name(),
                  generation, launched.message(), TimeText(service.deadline));
    Persist();
    return;
  }

  registration.set_generation(generation);
  registration.set_pid(process->pid);
  registration.set_version(service.definition.version());
  registration.clear_next_attempt_at();
  registration.clear_status_text();
  service.pidfd = std::move(process->pidfd);
  service.stop_reason = nehost::supervisor::v1::STOP_REASON_UNSPECIFIED;
  service.relaunch_after_stop = false;
  service.kill_sent = false;
  service.ready_at = absl::InfinitePast();
  service.deadline = now + service.ready_timeout(options_);

  absl::StatusOr<uint64_t> start = ReadProcessStartTime(process->pid);
  registration.set_start_time_ticks(start.ok() ? *start : 0);
  absl::StatusOr<std::string> executable = ReadProcessExecutable(process->pid);
  registration.set_executable(executable.ok() ? *executable : service.definition.executable());
  registration.set_executable_sha256(ExecutableDigest(registration.executable()));

  epoll_event event{EPOLLIN, {.fd = service.pidfd.get()}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, service.pidfd.get(), &event);

  spdlog::info("launched service={} generation={} pid={} executable={}", service.name(),
               generation, process->pid, registration.executable());
  SetState(service, nehost::supervisor::v1::STARTING, "waiting for READY=1");
  Persist();
}

std::string Supervisor::ExecutableDigest(const std::string& path) {
  // Hashing a large binary takes tens of milliseconds, on every restart: hash a file once
  // per identity (device, inode, size, modification time) instead.
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return "";
  std::string identity = absl::StrCat(info.st_dev, ":", info.st_ino, ":", info.st_size, ":",
                                      info.st_mtim.tv_sec, ".", info.st_mtim.tv_nsec);
  auto cached = digests_.find(path);
  if (cached != digests_.end() && cached->second.first == identity) return cached->second.second;

  absl::StatusOr<std::string> digest = Sha256File(path);
  if (!digest.ok()) {
    spdlog::warn("cannot hash executable {}: {}", path, digest.status().message());
    return "";
  }
  digests_[path] = {identity, *digest};
  return *digest;
}

void Supervisor::SendStop(Service& service, StopReason reason) {
  service.stop_reason = reason;
  service.deadline = absl::Now() + service.stop_grace(options_);
  PidfdSendSignal(service.pidfd.get(), SIGTERM);

  spdlog::info("stopping service={} generation={} pid={} reason=\"{}\" grace_ms={}",
               service.name(), service.registration->generation(), service.pid(),
               StopReasonName(reason), absl::ToInt64Milliseconds(service.stop_grace(options_)));
  SetState(service, nehost::supervisor::v1::STOPPING, StopReasonName(reason));
}

void Supervisor::OnExit(Service& service) {
  // WNOWAIT leaves the process a zombie, so its pid still names its process group (each
  // generation leads one, from setsid): whatever it left running there goes too, and cannot
  // hold on to the service's sockets or state.
  siginfo_t info{};
  id_t pid = static_cast<id_t>(service.pid());
  if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
    return;  // Not exited after all; the pidfd stays watched.
  }
  ::kill(-service.pid(), SIGKILL);
  ::waitid(P_PID, pid, &info, WEXITED);

  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, service.pidfd.get(), nullptr);
  service.pidfd.Reset();

  Registration& registration = *service.registration;
  ExitRecord record;
  record.set_generation(registration.generation());
  record.set_pid(registration.pid());
  record.set_reason(service.stop_reason == nehost::supervisor::v1::STOP_REASON_UNSPECIFIED
                        ? nehost::supervisor::v1::CRASHED
                        : service.stop_reason);
  if (shutting_down_) record.set_reason(nehost::supervisor::v1::HOST_SHUTDOWN);
  *record.mutable_at() = ToProto(absl::Now());
  DescribeExit(info, &record);

  auto* exits = registration.mutable_recent_exits();
  exits->Add()->CopyFrom(record);
  std::rotate(exits->rbegin(), exits->rbegin() + 1, exits->rend());
  while (exits->size() > kMaxRecentExits) exits->RemoveLast();
  registration.set_pid(0);
  registration.set_start_time_ticks(0);

  std::string summary = absl::StrCat(StopReasonName(record.reason()), ": ", record.description());
  auto log = record.reason() == nehost::supervisor::v1::CRASHED ? spdlog::level::warn
                                                                 : spdlog::level::info;
  spdlog::log(log, "exited service={} generation={} pid={} exit={} reason=\"{}\"",
              service.name(), record.generation(), record.pid(), ExitKeyValue(record),
              StopReasonName(record.reason()));
  Publish(service, "exited", summary);

  if (shutting_down_) {
    SetState(service, nehost::supervisor::v1::STOPPED, "nehostd stopped");
  } else if (record.reason() == nehost::supervisor::v1::REQUESTED && service.relaunch_after_stop) {
    service.backoff.Reset();
    Launch(service);
  } else if (record.reason() == nehost::supervisor::v1::REQUESTED) {
    SetState(service, nehost::supervisor::v1::STOPPED, "stopped by request");
  } else {
    AfterUnrequestedExit(service, summary);
  }
  Persist();
}

void Supervisor::AfterUnrequestedExit(Service& service, const std::string& description) {
  absl::Time now = absl::Now();
  absl::Duration served = service.ready_at == absl::InfinitePast() ? absl::ZeroDuration()
                                                                   : now - service.ready_at;
  BackoffSchedule::Decision decision = service.backoff.OnExit(now, served);
  service.deadline = now + decision.delay;
  *service.registration->mutable_next_attempt_at() = ToProto(service.deadline);
  int64_t delay_ms = absl::ToInt64Milliseconds(decision.delay);

  if (decision.crash_loop) {
    spdlog::error("crash loop service={} exits={} window_s={}: marking failed; next attempt at {}",
                  service.name(), decision.exits_in_window,
                  absl::ToInt64Seconds(service.backoff.policy().crash_loop_window),
                  TimeText(service.deadline));
    SetState(service, nehost::supervisor::v1::FAILED,
             absl::StrCat("crash loop: ", decision.exits_in_window, " exits within ",
                          absl::FormatDuration(service.backoff.policy().crash_loop_window),
                          "; last: ", description, "; next attempt at ",
                          TimeText(service.deadline)));
    return;
  }
  service.registration->set_restart_count(service.registration->restart_count() + 1);
  spdlog::info("restarting service={} generation={} backoff_ms={}", service.name(),
               service.registration->generation() + 1, delay_ms);
  SetState(service, nehost::supervisor::v1::BACKOFF,
           absl::StrCat(description, "; restarting in ", delay_ms, "ms"));
}

void Supervisor::OnNotify(const ReceivedNotify& notify) {
  Service* sender = nullptr;
  for (auto& [name, service] : services_) {
    if (service->pid() == notify.sender && service->pidfd) sender = service.get();
  }
  if (sender == nullptr) {
    spdlog::debug("ignoring notify message from pid={}: not a supervised generation",
                  notify.sender);
    return;
  }

  Registration& registration = *sender->registration;
  if (notify.message.status.has_value()) registration.set_status_text(*notify.message.status);
  if (notify.message.ready && registration.state() == nehost::supervisor::v1::STARTING) {
    sender->ready_at = absl::Now();
    sender->deadline = absl::InfiniteFuture();
    spdlog::info("ready service={} generation={} pid={} status=\"{}\"", sender->name(),
                 registration.generation(), registration.pid(), registration.status_text());
    SetState(*sender, nehost::supervisor::v1::READY, registration.status_text());
    Persist();
  }
  if (notify.message.stopping) {
    spdlog::debug("stopping announced service={} pid={}", sender->name(), notify.sender);
  }
}

void Supervisor::OnDeadline(Service& service, absl::Time now) {
  if (now < service.deadline) return;
  service.deadline = absl::InfiniteFuture();

  switch (service.registration->state()) {
    case nehost::supervisor::v1::STARTING:
      spdlog::warn("not ready service={} generation={} timeout_ms={}: stopping it",
                   service.name(), service.registration->generation(),
                   absl::ToInt64Milliseconds(service.ready_timeout(options_)));
      SendStop(service, nehost::supervisor::v1::NEVER_READY);
      break;
    case nehost::supervisor::v1::STOPPING:
      if (!service.kill_sent && service.pidfd) {
        spdlog::warn("killing service={} pid={}: still running after the stop grace",
                     service.name(), service.pid());
        PidfdSendSignal(service.pidfd.get(), SIGKILL);
        ::kill(-service.pid(), SIGKILL);
        service.kill_sent = true;
      }
      break;
    case nehost::supervisor::v1::BACKOFF:
    case nehost::supervisor::v1::FAILED:
      if (service.registration->enabled() && service.setup_error.empty() && !shutting_down_) {
        Launch(service);
      }
      break;
    default:
      break;
  }
}

void Supervisor::SetState(Service& service, ServiceState state, const std::string& reason) {
  Registration& registration = *service.registration;
  registration.set_state(state);
  registration.set_state_reason(reason);
  *registration.mutable_state_since() = ToProto(absl::Now());
  Publish(service, StateName(state), reason);
  state_changed_.SignalAll();
}

void Supervisor::Publish(const Service& service, const std::string& kind,
                         const std::string& message) {
  const Registration& registration = *service.registration;
  Event event;
  *event.mutable_at() = ToProto(absl::Now());
  event.set_name(service.name());
  event.set_generation(registration.generation());
  event.set_pid(registration.pid());
  event.set_state(registration.state());
  event.set_kind(kind);
  event.set_message(message);
  if (kind == "exited" && registration.recent_exits_size() > 0) {
    *event.mutable_exit() = registration.recent_exits(0);
  }
  events_.Publish(event);
}

void Supervisor::Persist() {
  absl::Status saved = registry_.Save();
  if (saved.ok()) {
    last_persist_error_.clear();
    return;
  }
  // Said once per distinct cause: a full disk would otherwise flood the log.
  if (last_persist_error_ != saved.message()) {
    last_persist_error_ = std::string(saved.message());
    spdlog::error("registry write failed, keeping the state in memory: {}", saved.message());
  }
}

absl::Status Supervisor::VerifyOwner(const Service& service) const {
  const Registration& registration = *service.registration;
  pid_t pid = registration.pid();
  if (pid == 0 || !service.pidfd) {
    return absl::UnavailableError(absl::StrCat("service ", service.name(), " has no process"));
  }
  if (PidfdExited(service.pidfd.get())) {
    return absl::UnavailableError(
        absl::StrCat("service ", service.name(), ": process ", pid, " has exited"));
  }

  absl::StatusOr<uint64_t> start = ReadProcessStartTime(pid);
  if (!start.ok() || *start != registration.start_time_ticks()) {
    return absl::UnavailableError(absl::StrCat(
        "service ", service.name(), ": verification failed: pid ", pid,
        " no longer has the registered start time ", registration.start_time_ticks()));
  }
  absl::StatusOr<std::string> executable = ReadProcessExecutable(pid);
  if (!executable.ok() || *executable != registration.executable()) {
    return absl::UnavailableError(absl::StrCat(
        "service ", service.name(), ": verification failed: pid ", pid, " runs ",
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
        if (verified.ok()) return registration;
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
        pending = absl::UnavailableError(
            absl::StrCat("service ", name, " is ", StateName(registration.state()), " (",
                         registration.state_reason(), ")"));
        break;
    }

    if (shutting_down_) return absl::UnavailableError("nehostd is shutting down");
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat(
          pending.message(), "; not ready within ", absl::FormatDuration(wait)));
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
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Service*> found = Find(name);
  if (!found.ok()) return found.status();
  Service& service = **found;
  if (!service.setup_error.empty()) return absl::FailedPreconditionError(service.setup_error);

  service.registration->set_enabled(true);
  if (!service.pidfd) {
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
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Service*> found = Find(name);
  if (!found.ok()) return found.status();
  Service& service = **found;

  service.registration->set_enabled(false);
  service.relaunch_after_stop = false;
  if (service.pidfd && service.registration->state() != nehost::supervisor::v1::STOPPING) {
    SendStop(service, nehost::supervisor::v1::REQUESTED);
  } else if (!service.pidfd) {
    service.deadline = absl::InfiniteFuture();
    service.registration->clear_next_attempt_at();
    SetState(service, nehost::supervisor::v1::STOPPED, "stopped by request");
  }
  Persist();
  Wake();
  return *service.registration;
}

absl::StatusOr<Registration> Supervisor::RestartService(const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Service*> found = Find(name);
  if (!found.ok()) return found.status();
  Service& service = **found;
  if (!service.setup_error.empty()) return absl::FailedPreconditionError(service.setup_error);

  service.registration->set_enabled(true);
  if (service.pidfd) {
    if (service.registration->state() != nehost::supervisor::v1::STOPPING) {
      SendStop(service, nehost::supervisor::v1::REQUESTED);
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
  {
    absl::MutexLock lock(&mu_);
    if (loop_done_ || !loop_.joinable()) return;
    shutting_down_ = true;
    for (auto& [name, service] : services_) {
      if (service->pidfd) {
        SendStop(*service, nehost::supervisor::v1::HOST_SHUTDOWN);
      } else if (service->registration->state() != nehost::supervisor::v1::STOPPED) {
        service->deadline = absl::InfiniteFuture();
        SetState(*service, nehost::supervisor::v1::STOPPED, "nehostd stopped");
      }
    }
    Wake();

    // The loop reaps each exit and sends SIGKILL after each grace, so this ends.
    auto all_gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& [name, service] : services_) {
        if (service->pidfd) return false;
      }
      return true;
    };
    mu_.Await(absl::Condition(&all_gone));
    Persist();
    loop_done_ = true;
    Wake();
  }
  loop_.join();
  events_.Close();
  spdlog::info("stopped every service");
}

void Supervisor::Wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

int Supervisor::MillisecondsToNextDeadline() {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [name, service] : services_) next = std::min(next, service->deadline);
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
      } else {
        for (auto& [name, service] : services_) {
          if (service->pidfd.get() == fd) {
            OnExit(*service);
            break;
          }
        }
      }
    }
    absl::Time now = absl::Now();
    for (auto& [name, service] : services_) OnDeadline(*service, now);
  }
}

}  // namespace nehost::supervisor
