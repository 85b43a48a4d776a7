#include "bench/bench_support.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/files.h"
#include "common/grpc_client.h"
#include "common/unix_socket.h"

extern char** environ;

namespace nehost::bench {
namespace {

namespace sv = nehost::supervisor::v1;

// nehostd gives its services 5 s to stop before it exits itself.
constexpr auto kStopGrace = std::chrono::seconds(15);
constexpr auto kLookupDeadline = std::chrono::seconds(10);

volatile sig_atomic_t g_interrupted = 0;

void OnInterrupt(int) { g_interrupted = 1; }

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& text : strings) pointers.push_back(text.data());
  pointers.push_back(nullptr);
  return pointers;
}

// This process's environment, without anything that would make a child think it was
// socket-activated or supervised by someone else.
std::vector<std::string> ChildEnvironment() {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string variable = *entry;
    if (absl::StartsWith(variable, "LISTEN_") || absl::StartsWith(variable, "NOTIFY_SOCKET=") ||
        absl::StartsWith(variable, "NEHOST_")) {
      continue;
    }
    environment.push_back(std::move(variable));
  }
  return environment;
}

bool EnvironmentHolds(pid_t pid, const std::string& entry) {
  absl::StatusOr<std::string> environment = ReadFile(absl::StrCat("/proc/", pid, "/environ"));
  if (!environment.ok()) return false;
  for (absl::string_view variable : absl::StrSplit(*environment, '\0')) {
    if (variable == entry) return true;
  }
  return false;
}

}  // namespace

int64_t WallNowNs() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

int64_t ToNs(const google::protobuf::Timestamp& at) {
  return at.seconds() * 1'000'000'000 + at.nanos();
}

double NsToMs(int64_t ns) { return static_cast<double>(ns) / 1e6; }

void InstallInterruptHandler() {
  struct sigaction action {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool Interrupted() { return g_interrupted != 0; }

void BecomeSubreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

void ReapExited() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline || Interrupted()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

bool Child::Exited() const { return WaitForExit(std::chrono::milliseconds(0)); }

void Child::Signal(int signal) const {
  ::syscall(SYS_pidfd_send_signal, pidfd_.get(), signal, nullptr, 0);
}

bool Child::WaitForExit(std::chrono::milliseconds timeout) const {
  pollfd polled{pidfd_.get(), POLLIN, 0};
  return ::poll(&polled, 1, static_cast<int>(timeout.count())) > 0;
}

void Child::Stop() {
  if (!pidfd_) return;
  if (!Exited()) Signal(SIGTERM);
  if (!WaitForExit(kStopGrace)) Signal(SIGKILL);
  WaitForExit(kStopGrace);
  ::waitpid(pid_, nullptr, WNOHANG);  // ECHILD: a descendant that its own parent reaped
  pidfd_.Reset();
}

void Child::Kill() {
  if (!pidfd_) return;
  Signal(SIGKILL);
  WaitForExit(kStopGrace);
  ::waitpid(pid_, nullptr, 0);
  pidfd_.Reset();
}

int Child::Wait() {
  if (!pidfd_) return -1;
  int status = 0;
  pid_t reaped = ::waitpid(pid_, &status, 0);
  pidfd_.Reset();
  if (reaped != pid_ || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

absl::StatusOr<Child> WatchProcess(pid_t pid) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return ErrnoStatus(errno, "pidfd_open for", absl::StrCat("pid ", pid));
  return Child(pid, std::move(pidfd));
}

// posix_spawn, not fork: this process runs gRPC's threads, and a forked copy of them could
// deadlock before it reaches exec.
absl::StatusOr<Child> Spawn(std::vector<std::string> argv, const std::string& log_path) {
  std::vector<std::string> environment = ChildEnvironment();
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_environment = CStrings(environment);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);

  pid_t pid = 0;
  int error =
      ::posix_spawn(&pid, c_argv[0], &actions, nullptr, c_argv.data(), c_environment.data());
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return ErrnoStatus(error, "start", argv[0]);

  absl::StatusOr<Child> child = WatchProcess(pid);
  if (!child.ok()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  return child;
}

absl::Status RunToEnd(std::vector<std::string> argv, const std::string& log_path) {
  std::string command = absl::StrJoin(argv, " ");
  absl::StatusOr<Child> child = Spawn(std::move(argv), log_path);
  if (!child.ok()) return child.status();
  int code = child->Wait();
  if (code != 0) {
    return absl::InternalError(
        absl::StrCat(command, " exited with ", code, "; its log ends:", LogTail(log_path)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MakeTempDir(const std::string& stem) {
  std::string pattern = (std::filesystem::temp_directory_path() / (stem + "-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) return ErrnoStatus(errno, "create", pattern);
  return pattern;
}

std::string LogTail(const std::string& log_path, int lines) {
  absl::StatusOr<std::string> log = ReadFile(log_path);
  if (!log.ok()) return std::string(log.status().message());
  std::vector<std::string> all = absl::StrSplit(*log, '\n', absl::SkipEmpty());
  size_t first = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  std::string tail;
  for (size_t i = first; i < all.size(); ++i) absl::StrAppend(&tail, "\n  ", all[i]);
  return tail;
}

int KillServiceProcesses(const std::string& runtime_dir) {
  std::string entry = absl::StrCat("NOTIFY_SOCKET=", runtime_dir, "/notify.sock");
  int killed = 0;
  std::error_code error;
  for (const auto& process : std::filesystem::directory_iterator("/proc", error)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(process.path().filename().string(), &pid) || pid == ::getpid()) {
      continue;
    }
    if (!EnvironmentHolds(pid, entry)) continue;
    absl::StatusOr<Child> child = WatchProcess(pid);
    if (!child.ok()) continue;
    child->Kill();
    ++killed;
  }
  ReapExited();
  return killed;
}

Host::Host(std::string nehostd_path, std::string dir)
    : nehostd_path_(std::move(nehostd_path)),
      config_dir_(dir + "/etc"),
      runtime_dir_(dir + "/run"),
      state_dir_(dir + "/state"),
      log_path_(dir + "/nehostd.log"),
      stub_(sv::Supervisor::NewStub(DialUnix(runtime_dir_ + "/nehostd.sock"))) {}

Host::~Host() { Stop(); }

absl::Status Host::MakeFolders() const {
  for (const std::string& folder : {config_dir_, runtime_dir_, state_dir_}) {
    if (absl::Status made = MakeDirs(folder); !made.ok()) return made;
  }
  return CheckUnixPath(ServiceSocket(kFilterName));
}

absl::Status InstallSignedFilterPackages(const FilterBuilds& builds, const std::string& dir,
                                         const std::string& prefix, const std::string& config_dir) {
  std::string log = dir + "/nehost-pkg.log";
  absl::Status made =
      RunToEnd({builds.nehost_pkg, "keygen", "bench", "--out", dir + "/signing"}, log);
  if (!made.ok()) return made;
  std::error_code error;
  std::filesystem::create_directories(config_dir + "/keys", error);
  std::filesystem::copy_file(dir + "/signing/bench.pub", config_dir + "/keys/bench.pub", error);
  if (error) return absl::InternalError("trust the bench key: " + error.message());
  std::string key = dir + "/signing/bench.secret";
  for (const auto& [version, binary] :
       {std::pair{"2.0.0", builds.v2}, std::pair{"1.0.0", builds.v1}}) {
    std::string package = absl::StrCat(dir, "/pkg-", version);
    absl::Status built =
        RunToEnd({builds.nehost_pkg, "build", "--version", version, "--out", package, "--file",
                  absl::StrCat("bin/nehost-filter=", binary), "--service",
                  absl::StrCat(kFilterName, "=bin/nehost-filter"), "--key", key},
                 log);
    if (!built.ok()) return built;
    absl::Status installed = RunToEnd(
        {builds.nehost_pkg, "--prefix", prefix, "--config-dir", config_dir, "install", package},
        log);
    if (!installed.ok()) return installed;
  }
  return absl::OkStatus();
}

absl::Status Host::Spawn() {
  absl::StatusOr<Child> process =
      bench::Spawn({nehostd_path_, "--config-dir", config_dir_, "--runtime-dir", runtime_dir_,
                    "--state-dir", state_dir_, "--default-dns-listen", "none"},
                   log_path_);
  if (!process.ok()) return process.status();
  process_ = *std::move(process);
  return absl::OkStatus();
}

absl::Status Host::Start() {
  if (absl::Status spawned = Spawn(); !spawned.ok()) return spawned;
  return WaitUntilConnectable(std::chrono::seconds(20));
}

absl::Status Host::WaitUntilConnectable(std::chrono::milliseconds timeout) const {
  std::string socket = runtime_dir_ + "/nehostd.sock";
  bool exited = false;
  bool connected = WaitUntil(
      [&] {
        exited = process_.Exited();
        return exited || ConnectUnix(socket).ok();
      },
      timeout);
  if (connected && !exited) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("nehostd ", exited ? "exited" : "did not listen on ",
                                             socket, "; its log ends:", LogTail(log_path_)));
}

void Host::Kill() { process_.Kill(); }

void Host::Stop() {
  process_.Stop();
  KillServiceProcesses(runtime_dir_);
}

absl::StatusOr<sv::Registration> Host::Lookup(const std::string& name) const {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLookupDeadline);
  context.set_wait_for_ready(true);
  sv::LookupRequest request;
  request.set_name(name);
  sv::LookupResponse response;
  grpc::Status status = stub_->Lookup(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("lookup ", name, ": ", status.error_message()));
  }
  return response.registration();
}

absl::StatusOr<sv::Registration> Host::LookupOnce(const std::string& name) const {
  auto stub = sv::Supervisor::NewStub(DialUnix(runtime_dir_ + "/nehostd.sock"));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLookupDeadline);
  sv::LookupRequest request;
  request.set_name(name);
  sv::LookupResponse response;
  grpc::Status status = stub->Lookup(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("lookup ", name, ": ", status.error_message()));
  }
  return response.registration();
}

std::string Host::ServiceSocket(const std::string& name) const {
  return absl::StrCat(runtime_dir_, "/services/", name, ".sock");
}

int64_t LogLineTimeNs(const std::string& log_path, const std::string& needle, int from_line) {
  std::ifstream log(log_path);
  std::string line;
  for (int number = 0; std::getline(log, line); ++number) {
    if (number < from_line || !absl::StrContains(line, needle)) continue;
    absl::Time at;
    std::string error;
    std::string stamp = line.substr(0, line.find(' '));
    if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", stamp, &at, &error)) return -1;
    return absl::ToUnixNanos(at);
  }
  return -1;
}

int LogLineCount(const std::string& log_path) {
  std::ifstream log(log_path);
  std::string line;
  int count = 0;
  while (std::getline(log, line)) ++count;
  return count;
}

double Percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<size_t>(std::ceil(fraction * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

double Median(std::vector<double> values) { return Percentile(std::move(values), 0.5); }

double Max(const std::vector<double>& values) {
  return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
}

}  // namespace nehost::bench
