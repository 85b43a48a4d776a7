// recovery_bench: how fast nehost recovers from a crash, against how fast it starts cold.
//
//   cold start  the stopped service started by request (Supervisor.Start) to its READY, in
//               the same nehostd and measured the same way as a crash (the Watch "ready"
//               event's time); and, for scale, a fresh nehostd in fresh folders from its spawn
//               to org.nehost.filter READY (the registration's state_since).
//   crash       kill -9 of the extension's pid (from Lookup) to the next generation's READY
//               (the Watch "ready" event's time), against the cold start above (goal at most
//               1.2x); right after each kill a raw connect() to the service socket must not be
//               refused (goal 0).
//   adoption    kill -9 of nehostd and a new nehostd at once, to its "adopted service=" log
//               line and to a Lookup that returns the same pid (goal at most 100 ms), while
//               agents call Filter.Status through the service socket (goal: no failed call).
//
// The service is org.nehost.filter, the nehost-filter beside nehostd, defined with a restart
// policy that never declares a crash loop and starts each backoff afresh, so that every round
// is the first crash after a healthy run: restarted at once by nehostd's default policy, or
// after --backoff-ms with --delay-first-restart.
//
//   cmake --build build --target recovery_bench
//   build/bin/recovery_bench --rounds 10
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_support.h"
#include "common/files.h"
#include "common/grpc_client.h"
#include "nehost/filter/v1/filter.grpc.pb.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"

namespace nehost::bench {
namespace {

namespace sv = nehost::supervisor::v1;
namespace fv = nehost::filter::v1;

constexpr char kProgram[] = "recovery_bench";
constexpr int kMaxRounds = 100;
constexpr int kAgents = 4;
constexpr auto kEventTimeout = std::chrono::seconds(15);
constexpr auto kCallDeadline = std::chrono::seconds(10);
constexpr auto kAgentMaxTime = std::chrono::minutes(5);
// Lets a restarted generation settle before the next kill, so that rounds do not overlap.
constexpr auto kSettle = std::chrono::milliseconds(200);

constexpr char kHelp[] =
    R"(usage: recovery_bench [--rounds N] [--backoff-ms MS] [--delay-first-restart]

Measures nehost's recovery against its cold start, for org.nehost.filter:
  cold start  Supervisor.Start of the stopped service to its READY event; and nehostd's own
              spawn to READY in fresh folders
  crash       kill -9 of the extension to the next generation's READY event (goal <= 1.2x
              the cold start), with no connect() to the service socket refused (goal 0)
  adoption    kill -9 of nehostd, new nehostd at once, to "adopted service=" in its log and to
              a Lookup returning the same pid (goal <= 100 ms), with 4 agents calling
              Filter.Status through the service socket (goal: 0 failed calls)

  --rounds N       rounds of each (default 10, at most 100)
  --backoff-ms MS  restart.initial_backoff_ms for the service (default: nehostd's own, 100)
  --delay-first-restart
                   restart.delay_first_restart: wait the backoff after the first crash too
  --help           print this help and exit

Every process it starts is stopped, and its temporary folders removed, before it exits.
)";

struct Options {
  int rounds = 10;
  int backoff_ms = 0;
  bool delay_first_restart = false;
  bool help = false;
};

absl::Status WriteDefinition(const Host& host, const Options& options) {
  std::string folder = host.config_dir() + "/services.d";
  if (absl::Status made = MakeDirs(folder); !made.ok()) return made;
  std::ofstream out(absl::StrCat(folder, "/", kFilterName, ".textproto"));
  out << "name: \"" << kFilterName << "\"\nexecutable: \"" << NEHOST_FILTER_PATH << "\"\n"
      << "restart { reset_after_ms: 1 crash_loop_exits: 100000";
  if (options.backoff_ms > 0) out << " initial_backoff_ms: " << options.backoff_ms;
  if (options.delay_first_restart) out << " delay_first_restart: true";
  out << " }\n";
  out.close();
  if (!out) return absl::InternalError("write the service definition in " + folder);
  return absl::OkStatus();
}

// A Watch stream of the service's events, read on a thread of its own until it ends.
class EventLog {
 public:
  explicit EventLog(sv::Supervisor::Stub* supervisor) {
    context_.set_wait_for_ready(true);
    sv::WatchRequest request;
    request.set_name(kFilterName);
    reader_ = supervisor->Watch(&context_, request);
    thread_ = std::thread([this] {
      sv::Event event;
      while (reader_->Read(&event)) {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(event);
      }
    });
  }
  ~EventLog() {
    context_.TryCancel();
    thread_.join();
    reader_->Finish();
  }

  // The time of the first event of kind for a generation above after_generation.
  std::optional<int64_t> WaitFor(const std::string& kind, uint64_t after_generation) {
    std::optional<int64_t> at;
    WaitUntil(
        [&] {
          std::lock_guard<std::mutex> lock(mu_);
          for (const sv::Event& event : events_) {
            if (event.kind() == kind && event.generation() > after_generation) {
              at = ToNs(event.at());
              return true;
            }
          }
          return false;
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(kEventTimeout));
    return at;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<sv::Event>> reader_;
  std::mutex mu_;
  std::vector<sv::Event> events_;
  std::thread thread_;
};

// Agents calling Status through the service socket, bypassing nehostd.
class StatusAgents {
 public:
  StatusAgents(const std::string& socket, int count) {
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, socket] {
        auto filter = fv::Filter::NewStub(DialUnix(socket));
        auto give_up = std::chrono::steady_clock::now() + kAgentMaxTime;
        while (!stop_ && !Interrupted() && std::chrono::steady_clock::now() < give_up) {
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
          context.set_wait_for_ready(true);
          fv::StatusResponse response;
          grpc::Status status = filter->Status(&context, {}, &response);
          ++calls_;
          if (!status.ok()) {
            std::lock_guard<std::mutex> lock(mu_);
            ++failures_[status.error_message()];
          }
        }
      });
    }
  }
  ~StatusAgents() { Stop(); }

  void Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  int64_t calls() const { return calls_; }
  std::map<std::string, int64_t> failures() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> calls_{0};
  mutable std::mutex mu_;
  std::map<std::string, int64_t> failures_;
  std::vector<std::thread> threads_;
};

// connect() of a fresh stream socket; the errno when it fails.
int ConnectOnce(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  int result = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  int error = result == 0 ? 0 : errno;
  ::close(fd);
  return error;
}

// A host in a fresh temporary folder, removed with it.
struct Site {
  explicit Site(std::string folder) : dir(std::move(folder)), host(NEHOSTD_PATH, dir) {}
  ~Site() {
    host.Stop();
    ReapExited();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::string dir;
  Host host;
};

absl::StatusOr<std::unique_ptr<Site>> NewSite(const Options& options) {
  absl::StatusOr<std::string> dir = MakeTempDir("nehost-recovery-bench");
  if (!dir.ok()) return dir.status();
  auto site = std::make_unique<Site>(*dir);
  if (absl::Status made = site->host.MakeFolders(); !made.ok()) return made;
  if (absl::Status written = WriteDefinition(site->host, options); !written.ok()) return written;
  return site;
}

// The extension's launch to ready, from the first "launched" and "ready" lines at or after
// from_line of nehostd's log; milliseconds, as the log has them.
std::optional<double> LaunchToReadyMs(const std::string& log, int from_line) {
  int64_t launched = LogLineTimeNs(log, "launched service=", from_line);
  int64_t ready = LogLineTimeNs(log, "ready service=", from_line);
  if (launched < 0 || ready < 0) return std::nullopt;
  return NsToMs(ready - launched);
}

struct Figures {
  std::vector<double> cold_total_ms;
  std::vector<double> cold_launch_ms;
  std::vector<double> cold_start_ms;
  std::vector<double> crash_ms;
  std::vector<double> crash_detect_ms;
  std::vector<double> crash_launch_ms;
  int refused = 0;
  std::map<std::string, int> refusals;
  std::vector<double> adopted_log_ms;
  std::vector<double> adopted_lookup_ms;
  int64_t agent_calls = 0;
  std::map<std::string, int64_t> agent_failures;
};

absl::Status ColdStarts(const Options& options, Figures* figures) {
  for (int round = 0; round < options.rounds && !Interrupted(); ++round) {
    absl::StatusOr<std::unique_ptr<Site>> site = NewSite(options);
    if (!site.ok()) return site.status();
    Host& host = (*site)->host;

    int64_t spawned = WallNowNs();
    if (absl::Status started = host.Spawn(); !started.ok()) return started;
    if (absl::Status up = host.WaitUntilConnectable(std::chrono::seconds(20)); !up.ok()) return up;
    absl::StatusOr<sv::Registration> found = host.Lookup(kFilterName);
    if (!found.ok()) return found.status();
    if (found->state() != sv::READY) return absl::InternalError("lookup returned a non-ready");
    figures->cold_total_ms.push_back(NsToMs(ToNs(found->state_since()) - spawned));

    std::optional<double> launch = LaunchToReadyMs(host.log_path(), 0);
    if (!launch.has_value()) return absl::InternalError("no launched/ready lines in the log");
    figures->cold_launch_ms.push_back(*launch);
  }
  return absl::OkStatus();
}

// Stops the service, then starts it by request and times the start to its READY event.
absl::Status ColdStartOnce(Host& host, EventLog& events, Figures* figures) {
  absl::StatusOr<sv::Registration> found = host.Lookup(kFilterName);
  if (!found.ok()) return found.status();

  grpc::ClientContext stop_context;
  sv::StopRequest stop;
  stop.set_name(kFilterName);
  sv::StopResponse stopped;
  grpc::Status called = host.supervisor()->Stop(&stop_context, stop, &stopped);
  if (!called.ok()) return absl::InternalError("stop: " + called.error_message());
  if (!events.WaitFor("exited", found->generation() - 1).has_value()) {
    return absl::DeadlineExceededError("no exited event after stop");
  }

  int64_t requested = WallNowNs();
  grpc::ClientContext start_context;
  sv::StartRequest start;
  start.set_name(kFilterName);
  sv::StartResponse started;
  called = host.supervisor()->Start(&start_context, start, &started);
  if (!called.ok()) return absl::InternalError("start: " + called.error_message());
  std::optional<int64_t> ready = events.WaitFor("ready", found->generation());
  if (!ready.has_value()) return absl::DeadlineExceededError("no ready event after start");
  figures->cold_start_ms.push_back(NsToMs(*ready - requested));
  return absl::OkStatus();
}

absl::Status CrashOnce(Host& host, EventLog& events, Figures* figures) {
  absl::StatusOr<sv::Registration> found = host.Lookup(kFilterName);
  if (!found.ok()) return found.status();
  int log_line = LogLineCount(host.log_path());

  int64_t killed = WallNowNs();
  if (::kill(found->pid(), SIGKILL) != 0) return ErrnoStatus(errno, "kill -9", "the extension");
  int error = ConnectOnce(host.ServiceSocket(kFilterName));
  if (error != 0) {
    ++figures->refused;
    ++figures->refusals[ErrnoText(error)];
  }

  std::optional<int64_t> exited = events.WaitFor("exited", found->generation() - 1);
  std::optional<int64_t> ready = events.WaitFor("ready", found->generation());
  if (!ready.has_value()) return absl::DeadlineExceededError("no ready event after the kill");
  figures->crash_ms.push_back(NsToMs(*ready - killed));
  if (exited.has_value()) figures->crash_detect_ms.push_back(NsToMs(*exited - killed));

  // The "launched" line may follow the kill's own lines; wait for the restart's.
  std::optional<double> launch;
  WaitUntil([&] { return (launch = LaunchToReadyMs(host.log_path(), log_line)).has_value(); },
            std::chrono::seconds(2));
  if (launch.has_value()) figures->crash_launch_ms.push_back(*launch);
  return absl::OkStatus();
}

absl::Status AdoptOnce(Host& host, Figures* figures) {
  absl::StatusOr<sv::Registration> before = host.Lookup(kFilterName);
  if (!before.ok()) return before.status();
  int log_line = LogLineCount(host.log_path());

  int64_t killed = WallNowNs();
  host.Kill();
  if (absl::Status spawned = host.Spawn(); !spawned.ok()) return spawned;

  bool same = WaitUntil(
      [&] {
        absl::StatusOr<sv::Registration> now = host.LookupOnce(kFilterName);
        return now.ok() && now->pid() == before->pid();
      },
      std::chrono::seconds(15));
  if (!same) return absl::InternalError("the new nehostd did not return the same pid");
  figures->adopted_lookup_ms.push_back(NsToMs(WallNowNs() - killed));

  int64_t adopted = -1;
  WaitUntil(
      [&] { return (adopted = LogLineTimeNs(host.log_path(), "adopted service=", log_line)) > 0; },
      std::chrono::seconds(2));
  if (adopted > 0) figures->adopted_log_ms.push_back(NsToMs(adopted - killed));
  return absl::OkStatus();
}

absl::Status Recoveries(const Options& options, Figures* figures) {
  absl::StatusOr<std::unique_ptr<Site>> site = NewSite(options);
  if (!site.ok()) return site.status();
  Host& host = (*site)->host;
  if (absl::Status started = host.Start(); !started.ok()) return started;
  if (absl::StatusOr<sv::Registration> up = host.Lookup(kFilterName); !up.ok()) return up.status();

  {
    EventLog events(host.supervisor());
    std::this_thread::sleep_for(kSettle);  // Watch has no first message to say it subscribed
    // Cold starts and crashes alternate, so that both meet the same machine.
    for (int round = 0; round < options.rounds && !Interrupted(); ++round) {
      if (absl::Status cold = ColdStartOnce(host, events, figures); !cold.ok()) return cold;
      std::this_thread::sleep_for(kSettle);
      if (absl::Status crashed = CrashOnce(host, events, figures); !crashed.ok()) return crashed;
      std::this_thread::sleep_for(kSettle);
    }
  }

  StatusAgents agents(host.ServiceSocket(kFilterName), kAgents);
  for (int round = 0; round < options.rounds && !Interrupted(); ++round) {
    if (absl::Status adopted = AdoptOnce(host, figures); !adopted.ok()) return adopted;
    std::this_thread::sleep_for(kSettle);
  }
  agents.Stop();
  figures->agent_calls = agents.calls();
  figures->agent_failures = agents.failures();
  return absl::OkStatus();
}

void Row(const char* figure, const std::vector<double>& values, const char* goal) {
  std::printf("%-44s %6zu %9.1f %9.1f   %s\n", figure, values.size(), Median(values), Max(values),
              goal);
}

void Print(const Options& options, const Figures& f) {
  std::string backoff = options.backoff_ms > 0 ? absl::StrCat(options.backoff_ms, " ms")
                                               : std::string("nehostd's default (100 ms)");
  std::printf("rounds: %d; restart policy: first restart %s, then initial backoff %s\n",
              options.rounds, options.delay_first_restart ? "delayed" : "at once", backoff.c_str());
  std::printf("\n%-44s %6s %9s %9s   %s\n", "figure (ms)", "n", "p50", "max", "goal");
  Row("cold: nehostd spawn -> READY", f.cold_total_ms, "");
  Row("cold: extension launch -> ready (log)", f.cold_launch_ms, "");
  Row("cold: Start request -> READY (watch)", f.cold_start_ms, "");
  Row("crash: kill -9 -> next READY (watch)", f.crash_ms, "<= 1.2x cold Start->READY");
  Row("crash:   kill -9 -> 'exited' event", f.crash_detect_ms, "");
  Row("crash:   restarted launch -> ready (log)", f.crash_launch_ms, "");
  Row("adopt: kill -9 nehostd -> 'adopted' log", f.adopted_log_ms, "<= 100 ms");
  Row("adopt: kill -9 nehostd -> Lookup same pid", f.adopted_lookup_ms, "<= 100 ms");

  double cold = Median(f.cold_start_ms);
  std::printf("\ncrash kill->READY / cold Start->READY: p50 %.2fx   (goal: <= 1.2x)\n",
              cold > 0 ? Median(f.crash_ms) / cold : 0);
  double cold_total = Median(f.cold_total_ms);
  std::printf("crash kill->READY / cold nehostd spawn->READY: p50 %.2fx\n",
              cold_total > 0 ? Median(f.crash_ms) / cold_total : 0);
  std::printf("refused connects right after kill -9: %d of %zu   (goal: 0)\n", f.refused,
              f.crash_ms.size());
  for (const auto& [message, count] : f.refusals) std::printf("  %dx %s\n", count, message.c_str());
  int64_t failed = 0;
  for (const auto& [message, count] : f.agent_failures) failed += count;
  std::printf("agents during nehostd kill -9 -> adopt: %lld calls, %lld failed   (goal: 0)\n",
              static_cast<long long>(f.agent_calls), static_cast<long long>(failed));
  for (const auto& [message, count] : f.agent_failures) {
    std::printf("  %lldx %s\n", static_cast<long long>(count), message.c_str());
  }
}

absl::Status Run(const Options& options) {
  InstallInterruptHandler();
  BecomeSubreaper();
  ::signal(SIGPIPE, SIG_IGN);

  Figures figures;
  std::fprintf(stderr, "%s: %d cold starts\n", kProgram, options.rounds);
  if (absl::Status cold = ColdStarts(options, &figures); !cold.ok()) return cold;
  std::fprintf(stderr, "%s: %d crashes, then %d nehostd kills\n", kProgram, options.rounds,
               options.rounds);
  if (absl::Status recovered = Recoveries(options, &figures); !recovered.ok()) return recovered;
  if (Interrupted()) return absl::CancelledError("interrupted");
  Print(options, figures);
  return absl::OkStatus();
}

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help") {
      options.help = true;
    } else if (flag == "--delay-first-restart") {
      options.delay_first_restart = true;
    } else if ((flag == "--rounds" || flag == "--backoff-ms") && i + 1 < argc) {
      int* value = flag == "--rounds" ? &options.rounds : &options.backoff_ms;
      int limit = flag == "--rounds" ? kMaxRounds : 60000;
      if (!absl::SimpleAtoi(argv[++i], value) || *value < 1 || *value > limit) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " needs a number from 1 to ", limit));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown or incomplete argument ", flag));
    }
  }
  return options;
}

int Main(int argc, char** argv) {
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

int main(int argc, char** argv) { return nehost::bench::Main(argc, argv); }
