// status_latency_bench: how long one unary nehost.filter.v1.Filter/Status call takes through the
// service socket that nehostd owns, next to the same call on a bare gRPC C++ server and a raw
// Unix-socket ping-pong of the same bytes, all in one run.
//
//   nehost  this build's nehostd, in a temporary folder, hosts the embedded nehost-filter; calls
//           go to RUNTIME/services/org.nehost.filter.sock, which nehostd created and the
//           extension accepts on through AcceptLoop and grpc::AddInsecureChannelFromFd.
//   bare    this program, re-executed as a plain gRPC server that binds its own Unix socket
//           (ServerBuilder::AddListeningPort) and fills the same Status fields, so the message
//           on the wire has the same size.
//   floor   a forked child that answers each request-sized write with a response-sized one, as
//           many bytes as the call's gRPC message frames hold: what any call must cost at least.
//
// Every call is sequential, on one connection per path. After a warm-up, rounds alternate
// between the paths in a rotating order, so that drift in the machine (clock frequency, other
// load) falls on all of them alike. It prints p50 and p99 per path in microseconds, and the
// nehost/bare ratios, whose goal is at most 1.10.
//
//   cmake --build build --target status_latency_bench
//   build/bin/status_latency_bench --calls 20000 --rounds 5
#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/abseil.h"
#include "common/files.h"
#include "common/grpc_server.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "common/version.h"
#include "nehost/filter/v1/filter.grpc.pb.h"

extern char** environ;

namespace nehost::bench {
namespace {

namespace v1 = nehost::filter::v1;
using Clock = std::chrono::steady_clock;

constexpr char kProgram[] = "status_latency_bench";
constexpr char kServeBareFlag[] = "--serve-bare";
constexpr char kServiceName[] = "org.nehost.filter";

constexpr int kDefaultCalls = 20000;
constexpr int kDefaultRounds = 5;
// Unmeasured calls before the first round: connections set up, code paged in, gRPC's thread
// pools grown.
constexpr int kWarmupCalls = 1000;
// Unmeasured calls at the start of every round: threads that slept while another path ran
// wake up here, not in the figures.
constexpr int kRoundWarmupCalls = 100;

constexpr auto kCallDeadline = std::chrono::seconds(5);
constexpr auto kStartDeadline = std::chrono::seconds(20);
// nehostd gives its services 5 s to stop before it exits itself.
constexpr auto kStopGrace = std::chrono::seconds(15);

// gRPC frames each message with a compression flag byte and a 4-byte length; without it an
// empty StatusRequest would be no bytes at all.
constexpr size_t kGrpcFrameHeaderBytes = 5;
constexpr size_t kMaxEchoBytes = 4096;

constexpr char kHelp[] = R"(usage: status_latency_bench [--calls N] [--rounds R]

Measures unary nehost.filter.v1.Filter/Status latency through nehostd's service socket,
against a bare gRPC C++ server with the same message and a raw Unix-socket ping-pong of the
same bytes, and prints p50 and p99 in microseconds for each, with the nehost/bare ratios.

  --calls N   measured calls per path, spread over the rounds (default 20000)
  --rounds R  rounds; each runs every path in turn (default 5)
  --help      print this help and exit

It starts this build's nehostd in a temporary folder and stops it, and every other process
it starts, before it exits. Exit status: 0 after printing the figures, 1 on a failure.
)";

volatile sig_atomic_t g_interrupted = 0;

void OnInterrupt(int) { g_interrupted = 1; }

// The terminal sends Ctrl-C to the servers too, since they share the process group; the bench
// then stops at the next call and cleans up instead of dying with its children running.
void InstallInterruptHandler() {
  struct sigaction action {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

absl::Status CheckInterrupted() {
  if (g_interrupted != 0) return absl::CancelledError("interrupted");
  return absl::OkStatus();
}

// Status as nehost-filter fills it, for the bare server, so both put the same bytes on the
// wire.
void FillStatus(Clock::time_point started, uint64_t calls, v1::StatusResponse* response) {
  auto uptime = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  response->set_version(kVersion);
  response->set_pid(::getpid());
  response->set_generation(1);  // nehostd's first generation
  response->set_service(kServiceName);
  response->set_uptime_ms(uptime.count());
  response->set_rule_count(0);  // a fresh state folder holds no rules
  (*response->mutable_counters())["status"] = calls;
}

class BareFilterService final : public v1::Filter::Service {
 public:
  grpc::Status Status(grpc::ServerContext*, const v1::StatusRequest*,
                      v1::StatusResponse* response) override {
    // Counted under a lock, as nehost-filter counts its calls.
    uint64_t calls;
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls = ++calls_;
    }
    FillStatus(started_, calls, response);
    return grpc::Status::OK;
  }

 private:
  const Clock::time_point started_ = Clock::now();
  std::mutex mu_;
  uint64_t calls_ = 0;
};

// Blocked before gRPC starts a thread, so that every thread inherits the mask and only
// sigwaitinfo sees them.
sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

// Configured as StartFdServer configures nehost-filter's server, except that it binds its own
// socket.
std::unique_ptr<grpc::Server> StartBareServer(const std::string& path, grpc::Service* service) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

// The bare path's server, in a child process of its own like the extension. Runs until
// SIGTERM or SIGINT.
int ServeBare(const std::string& path) {
  sigset_t stop_signals = BlockStopSignals();
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a bench killed with SIGKILL leaves no server behind

  BareFilterService service;
  std::unique_ptr<grpc::Server> server = StartBareServer(path, &service);
  if (server == nullptr) {
    std::fprintf(stderr, "%s: bare server: cannot listen on unix:%s\n", kProgram, path.c_str());
    return 1;
  }

  sigwaitinfo(&stop_signals, nullptr);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

// A process this bench started, or a descendant it may have to stop, held by a pidfd so that
// a pid reused by somebody else is never signalled. Not thread safe.
class Child {
 public:
  Child() = default;
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  Child(Child&&) = default;
  Child& operator=(Child&&) = default;
  ~Child() { Stop(); }

  bool Exited() const { return WaitForExit(std::chrono::milliseconds(0)); }

  // SIGTERM, then SIGKILL after kStopGrace; reaps the process when it is this bench's child.
  void Stop() {
    if (!pidfd_) return;
    if (!Exited()) Signal(SIGTERM);
    if (!WaitForExit(kStopGrace)) Signal(SIGKILL);
    WaitForExit(kStopGrace);

    // ECHILD: a descendant that its own parent reaped.
    ::waitpid(pid_, nullptr, WNOHANG);
    pidfd_.Reset();
  }

 private:
  void Signal(int signal) const {
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), signal, nullptr, 0);
  }

  bool WaitForExit(std::chrono::milliseconds timeout) const {
    pollfd polled{pidfd_.get(), POLLIN, 0};
    return ::poll(&polled, 1, static_cast<int>(timeout.count())) > 0;
  }

  pid_t pid_ = 0;
  UniqueFd pidfd_;
};

absl::StatusOr<Child> WatchProcess(pid_t pid) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return ErrnoStatus(errno, "pidfd_open for", absl::StrCat("pid ", pid));
  return Child(pid, std::move(pidfd));
}

// Without a pidfd the child could not be stopped safely later, so it is stopped now.
absl::StatusOr<Child> WatchOwnChild(pid_t pid) {
  absl::StatusOr<Child> child = WatchProcess(pid);
  if (!child.ok()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  return child;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& text : strings) pointers.push_back(text.data());
  pointers.push_back(nullptr);
  return pointers;
}

// This process's environment, without anything that would make a server think it was
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

enum class Session { kShared, kOwn };

// posix_spawn, not fork: this process may already run gRPC's threads, and a forked copy of
// them could deadlock before it reaches exec. Output goes to log_path, out of the table's way.
//
// A server in a session of its own is scheduled as nehostd's extensions are: nehostd starts
// each in a new session, and Linux's autogroups then schedule it apart from the session that
// calls it, which on one core changes when a wakeup preempts (about 10% of a Status call).
absl::StatusOr<Child> Spawn(std::vector<std::string> argv, const std::string& log_path,
                            Session session = Session::kShared) {
  std::vector<std::string> environment = ChildEnvironment();
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_environment = CStrings(environment);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);

  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  if (session == Session::kOwn) posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID);

  pid_t pid = 0;
  int error =
      ::posix_spawn(&pid, c_argv[0], &actions, &attributes, c_argv.data(), c_environment.data());
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return ErrnoStatus(error, "start", argv[0]);
  return WatchOwnChild(pid);
}

// Async-signal-safe, so that a forked child may use it.
bool ReadExactly(int fd, char* buffer, size_t size) {
  while (size > 0) {
    ssize_t n = ::read(fd, buffer, size);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = ECONNRESET;  // end of file: the peer is gone
    if (n <= 0) return false;
    buffer += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Async-signal-safe; MSG_NOSIGNAL, since a peer gone must be an error, not a SIGPIPE.
bool WriteExactly(int fd, const char* buffer, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, buffer, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// The floor's server, in a forked child. Between fork and _exit it makes only system calls.
[[noreturn]] void EchoUntilClosed(int fd, size_t request_bytes, size_t response_bytes) {
  // The bench's interrupt handler would keep the child alive through SIGTERM and Ctrl-C.
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  char buffer[kMaxEchoBytes] = {};
  while (ReadExactly(fd, buffer, request_bytes) && WriteExactly(fd, buffer, response_bytes)) {
  }
  ::_exit(0);
}

// Forked before gRPC starts any thread; *client gets the bench's end of the socket pair.
absl::StatusOr<Child> StartEcho(size_t request_bytes, size_t response_bytes, UniqueFd* client) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return ErrnoStatus(errno, "create", "socket pair for the floor");
  }
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);

  pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus(errno, "fork", "floor echo child");
  if (pid == 0) {
    // Its copy of the bench's end would keep it from ever reading end-of-file.
    ::close(ours.get());
    EchoUntilClosed(theirs.get(), request_bytes, response_bytes);
  }

  *client = std::move(ours);
  return WatchOwnChild(pid);
}

// One round trip on one of the paths.
class Target {
 public:
  virtual ~Target() = default;
  virtual absl::Status RoundTrip() = 0;
};

class FloorTarget final : public Target {
 public:
  FloorTarget(UniqueFd fd, size_t request_bytes, size_t response_bytes)
      : fd_(std::move(fd)), request_(request_bytes, 'q'), response_(response_bytes, '\0') {}

  absl::Status RoundTrip() override {
    if (!WriteExactly(fd_.get(), request_.data(), request_.size()) ||
        !ReadExactly(fd_.get(), response_.data(), response_.size())) {
      return ErrnoStatus(errno, "ping-pong with", "the floor echo child");
    }
    return absl::OkStatus();
  }

 private:
  UniqueFd fd_;
  std::string request_;
  std::string response_;
};

enum class WaitForReady { kNo, kYes };

class GrpcTarget final : public Target {
 public:
  explicit GrpcTarget(const std::string& socket_path)
      : stub_(v1::Filter::NewStub(
            grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials()))) {}

  absl::Status RoundTrip() override { return Call(WaitForReady::kNo, kCallDeadline).status(); }

  absl::StatusOr<v1::StatusResponse> Call(WaitForReady wait, std::chrono::seconds deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    context.set_wait_for_ready(wait == WaitForReady::kYes);

    v1::StatusResponse response;
    grpc::Status status = stub_->Status(&context, v1::StatusRequest(), &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          absl::StrCat("Status call: ", status.error_message()));
    }
    return response;
  }

 private:
  std::unique_ptr<v1::Filter::Stub> stub_;
};

// Everything the bench starts. However Run returns, the destructor stops the servers, nehostd
// first so that it stops its own extension, and removes the temporary folder.
struct Fleet {
  ~Fleet() {
    nehostd.Stop();
    extension.Stop();
    bare.Stop();
    echo.Stop();
    std::error_code ignored;
    if (!dir.empty()) std::filesystem::remove_all(dir, ignored);
  }

  std::string dir;
  Child echo;
  Child bare;
  Child nehostd;
  // nehostd's child; stopped here only when nehostd had to be killed and left it behind.
  Child extension;
};

absl::StatusOr<std::string> MakeTempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "nehost-bench-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) return ErrnoStatus(errno, "create", pattern);
  return pattern;
}

std::string LogTail(const std::string& log_path) {
  absl::StatusOr<std::string> log = ReadFile(log_path);
  if (!log.ok()) return std::string(log.status().message());
  std::vector<std::string> lines = absl::StrSplit(*log, '\n', absl::SkipEmpty());
  size_t first = lines.size() > 10 ? lines.size() - 10 : 0;
  std::string tail;
  for (size_t i = first; i < lines.size(); ++i) absl::StrAppend(&tail, "\n  ", lines[i]);
  return tail;
}

// Polls: nothing tells the bench when the server binds its socket, or when nehostd creates it.
absl::Status WaitUntilConnectable(const std::string& socket_path, const std::string& server,
                                  const Child& process, const std::string& log_path) {
  Clock::time_point deadline = Clock::now() + kStartDeadline;
  while (!ConnectUnix(socket_path).ok()) {
    if (absl::Status status = CheckInterrupted(); !status.ok()) return status;
    if (process.Exited()) {
      return absl::UnavailableError(
          absl::StrCat(server, " exited before ", socket_path,
                       " took connections; its log ends:", LogTail(log_path)));
    }
    if (Clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("wait for ", socket_path, " of ", server,
                                                      "; its log ends:", LogTail(log_path)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::OkStatus();
}

// A connection to a socket that nehostd owns succeeds before the extension accepts it: the
// first call waits, bounded, for the extension to answer.
absl::StatusOr<v1::StatusResponse> WaitUntilServing(const std::string& socket_path,
                                                    const std::string& server, const Child& process,
                                                    const std::string& log_path,
                                                    GrpcTarget* target) {
  absl::Status connectable = WaitUntilConnectable(socket_path, server, process, log_path);
  if (!connectable.ok()) return connectable;

  absl::StatusOr<v1::StatusResponse> first = target->Call(WaitForReady::kYes, kStartDeadline);
  if (!first.ok()) {
    return absl::UnavailableError(absl::StrCat(server, " did not answer on ", socket_path, ": ",
                                               first.status().message(),
                                               "; its log ends:", LogTail(log_path)));
  }
  return first;
}

// Nanoseconds per call.
using Latencies = std::vector<int64_t>;

struct Path {
  std::string name;
  std::unique_ptr<Target> target;
  Latencies latencies;
};

absl::Status Repeat(Path& path, int calls, Latencies* latencies) {
  for (int i = 0; i < calls; ++i) {
    if (absl::Status status = CheckInterrupted(); !status.ok()) return status;
    Clock::time_point start = Clock::now();
    absl::Status status = path.target->RoundTrip();
    Clock::duration elapsed = Clock::now() - start;

    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat(path.name, ": ", status.message()));
    }
    if (latencies != nullptr) latencies->push_back(std::chrono::nanoseconds(elapsed).count());
  }
  return absl::OkStatus();
}

struct Options {
  int calls = kDefaultCalls;
  int rounds = kDefaultRounds;
  bool help = false;
};

// The remainder of calls / rounds goes to the first rounds.
int CallsInRound(const Options& options, int round) {
  return options.calls / options.rounds + (round < options.calls % options.rounds ? 1 : 0);
}

absl::Status RunRounds(const Options& options, std::vector<Path>& paths) {
  for (Path& path : paths) {
    if (absl::Status status = Repeat(path, kWarmupCalls, nullptr); !status.ok()) return status;
    path.latencies.reserve(options.calls);
  }

  for (int round = 0; round < options.rounds; ++round) {
    std::fprintf(stderr, "%s: round %d of %d\n", kProgram, round + 1, options.rounds);
    for (size_t k = 0; k < paths.size(); ++k) {
      // Rotating which path goes first spreads any effect of the order over all of them.
      Path& path = paths[(round + k) % paths.size()];
      absl::Status status = Repeat(path, kRoundWarmupCalls, nullptr);
      if (status.ok()) status = Repeat(path, CallsInRound(options, round), &path.latencies);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

// Nearest rank, in microseconds; sorted must not be empty.
double PercentileMicros(const Latencies& sorted, double fraction) {
  auto rank = static_cast<size_t>(std::ceil(fraction * static_cast<double>(sorted.size())));
  size_t index = std::clamp<size_t>(rank, 1, sorted.size()) - 1;
  return static_cast<double>(sorted[index]) / 1000.0;
}

struct Figures {
  double p50_us = 0;
  double p99_us = 0;
};

Figures Summarize(Latencies latencies) {
  std::sort(latencies.begin(), latencies.end());
  return {PercentileMicros(latencies, 0.50), PercentileMicros(latencies, 0.99)};
}

struct MessageSizes {
  size_t nehost_response = 0;
  size_t bare_response = 0;
  size_t floor_request = 0;
  size_t floor_response = 0;
};

// As nproc counts them: the processors this process may run on.
int UsableProcessors() {
  cpu_set_t processors;
  if (::sched_getaffinity(0, sizeof processors, &processors) != 0) return 0;
  return CPU_COUNT(&processors);
}

// Other work on the machine widens p99 most; the load average tells a reader how much there was.
double LoadAverage() {
  double one_minute = -1;
  ::getloadavg(&one_minute, 1);
  return one_minute;
}

void PrintSetup(const Options& options, const MessageSizes& sizes) {
  std::printf("machine: nproc=%d, load average %.2f (1 min, at the end)\n", UsableProcessors(),
              LoadAverage());
  std::printf("calls per path: %d, in %d rounds, after %d warm-up calls (+%d per round)\n",
              options.calls, options.rounds, kWarmupCalls, kRoundWarmupCalls);
  std::printf("StatusResponse bytes: nehost %zu, bare %zu; floor frames: %zu out, %zu back\n\n",
              sizes.nehost_response, sizes.bare_response, sizes.floor_request,
              sizes.floor_response);
}

// paths[0] is nehost and paths[1] the bare server.
void PrintFigures(const std::vector<Path>& paths) {
  std::printf("%-16s %10s %10s\n", "path", "p50_us", "p99_us");
  std::vector<Figures> figures;
  for (const Path& path : paths) {
    figures.push_back(Summarize(path.latencies));
    std::printf("%-16s %10.1f %10.1f\n", path.name.c_str(), figures.back().p50_us,
                figures.back().p99_us);
  }

  std::printf("%-16s %9.2fx %9.2fx   (goal: at most 1.10x)\n", "nehost / bare",
              figures[0].p50_us / figures[1].p50_us, figures[0].p99_us / figures[1].p99_us);
}

absl::StatusOr<Path> StartFloor(Fleet* fleet, MessageSizes* sizes) {
  v1::StatusResponse typical;
  FillStatus(Clock::now(), 20000, &typical);
  sizes->floor_request = kGrpcFrameHeaderBytes + v1::StatusRequest().ByteSizeLong();
  sizes->floor_response = kGrpcFrameHeaderBytes + typical.ByteSizeLong();

  UniqueFd client;
  absl::StatusOr<Child> echo = StartEcho(sizes->floor_request, sizes->floor_response, &client);
  if (!echo.ok()) return echo.status();
  fleet->echo = *std::move(echo);

  // Bounded like the gRPC calls, should the echo child stop answering.
  timeval timeout{std::chrono::seconds(kCallDeadline).count(), 0};
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  auto target =
      std::make_unique<FloorTarget>(std::move(client), sizes->floor_request, sizes->floor_response);
  return Path{"unix ping-pong", std::move(target), {}};
}

absl::StatusOr<Path> StartBare(Fleet* fleet, MessageSizes* sizes) {
  std::string socket_path = fleet->dir + "/bare.sock";
  std::string log_path = fleet->dir + "/bare.log";
  if (absl::Status fits = CheckUnixPath(socket_path); !fits.ok()) return fits;
  absl::StatusOr<Child> bare =
      Spawn({"/proc/self/exe", kServeBareFlag, socket_path}, log_path, Session::kOwn);
  if (!bare.ok()) return bare.status();
  fleet->bare = *std::move(bare);

  auto target = std::make_unique<GrpcTarget>(socket_path);
  absl::StatusOr<v1::StatusResponse> first =
      WaitUntilServing(socket_path, "bare server", fleet->bare, log_path, target.get());
  if (!first.ok()) return first.status();
  sizes->bare_response = first->ByteSizeLong();
  return Path{"bare gRPC", std::move(target), {}};
}

absl::StatusOr<Path> StartNehost(Fleet* fleet, MessageSizes* sizes) {
  std::string socket_path = absl::StrCat(fleet->dir, "/run/services/", kServiceName, ".sock");
  if (absl::Status fits = CheckUnixPath(socket_path); !fits.ok()) return fits;
  std::string log_path = fleet->dir + "/nehostd.log";
  for (const char* folder : {"/etc", "/run", "/state"}) {
    if (absl::Status made = MakeDirs(fleet->dir + folder); !made.ok()) return made;
  }
  absl::StatusOr<Child> nehostd = Spawn(
      {NEHOSTD_PATH, "--config-dir", fleet->dir + "/etc", "--runtime-dir", fleet->dir + "/run",
       "--state-dir", fleet->dir + "/state", "--default-dns-listen", "none"},
      log_path);
  if (!nehostd.ok()) return nehostd.status();
  fleet->nehostd = *std::move(nehostd);

  auto target = std::make_unique<GrpcTarget>(socket_path);
  absl::StatusOr<v1::StatusResponse> first =
      WaitUntilServing(socket_path, "nehostd", fleet->nehostd, log_path, target.get());
  if (!first.ok()) return first.status();
  sizes->nehost_response = first->ByteSizeLong();

  absl::StatusOr<Child> extension = WatchProcess(first->pid());
  if (!extension.ok()) return extension.status();
  fleet->extension = *std::move(extension);
  return Path{"nehost", std::move(target), {}};
}

absl::Status Run(const Options& options) {
  InstallInterruptHandler();
  // An extension orphaned by a nehostd that had to be killed is reparented here, to be reaped.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);

  Fleet fleet;
  absl::StatusOr<std::string> dir = MakeTempDir();
  if (!dir.ok()) return dir.status();
  fleet.dir = *dir;

  // The floor first: it forks, and gRPC has started no thread yet.
  MessageSizes sizes;
  absl::StatusOr<Path> floor = StartFloor(&fleet, &sizes);
  if (!floor.ok()) return floor.status();
  absl::StatusOr<Path> bare = StartBare(&fleet, &sizes);
  if (!bare.ok()) return bare.status();
  absl::StatusOr<Path> nehost = StartNehost(&fleet, &sizes);
  if (!nehost.ok()) return nehost.status();

  std::vector<Path> paths;
  paths.push_back(*std::move(nehost));
  paths.push_back(*std::move(bare));
  paths.push_back(*std::move(floor));
  if (absl::Status status = RunRounds(options, paths); !status.ok()) return status;
  PrintSetup(options, sizes);
  PrintFigures(paths);
  return absl::OkStatus();
}

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help") {
      options.help = true;
      continue;
    }
    if (flag != "--calls" && flag != "--rounds") {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument ", flag));
    }
    int* value = flag == "--calls" ? &options.calls : &options.rounds;
    if (i + 1 == argc || !absl::SimpleAtoi(argv[i + 1], value) || *value < 1) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " needs a positive number"));
    }
    ++i;
  }

  if (options.rounds > options.calls) {
    return absl::InvalidArgumentError("--rounds must not exceed --calls");
  }
  return options;
}

int Main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == kServeBareFlag) return ServeBare(argv[2]);

  absl::StatusOr<Options> options = ParseOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "%s: %s (see --help)\n", kProgram,
                 std::string(options.status().message()).c_str());
    return 1;
  }
  if (options->help) {
    std::fputs(kHelp, stdout);
    return 0;
  }

  absl::Status status = Run(*options);
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace nehost::bench

int main(int argc, char** argv) {
  // As in nehost's own programs, so that both servers and the client run alike.
  nehost::DisableMutexDeadlockDetection();
  return nehost::bench::Main(argc, argv);
}
