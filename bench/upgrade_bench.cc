// upgrade_bench: what a blue/green upgrade costs the clients of a service under load.
//
// It installs nehost-filter v1 and v2 with nehost-pkg into a temporary prefix, defines
// org.nehost.filter from that prefix, starts this build's nehostd and runs closed-loop agents
// (each: Supervisor.Lookup, then Filter.Status at the endpoint it names, again and again).
// After a steady phase it calls Supervisor.Upgrade directly, alternating 2.0.0 and 1.0.0, with
// steady load between upgrades, and records each UpgradeProgress step's time.
//
// It prints failed calls (goal 0); p50/p99 call latency in the steady phase and during the
// upgrades, from each 'launch' step to its 'exit' step (goal: p99 at most 3x); and the upgrade
// time from request to the old generation gone, minus the new generation's own start-up
// (launch to ready), per upgrade and median (goal at most 50 ms). With gnuplot it draws the
// timeline as a PNG.
//
//   cmake --build build --target upgrade_bench
//   build/bin/upgrade_bench --agents 8 --upgrades 5 --png upgrade_timeline.png
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
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

constexpr char kProgram[] = "upgrade_bench";
constexpr char kDefaultPng[] = "upgrade_timeline.png";

constexpr auto kSteadyPhase = std::chrono::seconds(2);
constexpr auto kBetweenUpgrades = std::chrono::seconds(1);
constexpr auto kCallDeadline = std::chrono::seconds(10);
constexpr auto kUpgradeDeadline = std::chrono::seconds(60);
// Bounds on the agents, whatever happens to the rest of the run.
constexpr int64_t kMaxCallsPerAgent = 2'000'000;
constexpr auto kMaxAgentTime = std::chrono::minutes(5);
constexpr int kMaxAgents = 256;
constexpr int kMaxUpgrades = 200;

constexpr char kHelp[] = R"(usage: upgrade_bench [--agents N] [--upgrades U] [--png PATH]

Measures what blue/green upgrades of org.nehost.filter cost its clients. Installs the stamped
v1 and v2 packages with nehost-pkg in a temporary prefix, starts this build's nehostd, runs N
closed-loop agents (Lookup, then Filter.Status) for a 2 s steady phase, then U upgrades
alternating --to 2.0.0 and 1.0.0 (Supervisor.Upgrade over gRPC) with 1 s of load between them.

Prints failed calls (goal 0), p50/p99 latency steady vs during upgrades (goal p99 <= 3x),
and upgrade time from request to old generation gone minus the new generation's launch to
ready (goal <= 50 ms).

  --agents N    closed-loop agents (default 8, at most 256)
  --upgrades U  upgrades (default 5, at most 200)
  --png PATH    draw the timeline with gnuplot (default upgrade_timeline.png when gnuplot
                is installed); PATH.dat and PATH.gp are written beside it
  --no-png      draw nothing
  --help        print this help and exit

Every process it starts is stopped, and its temporary folder removed, before it exits.
)";

struct Options {
  int agents = 8;
  int upgrades = 5;
  std::string png;
  bool png_set = false;
  bool no_png = false;
  bool help = false;
};

enum class CallKind { kLookup, kStatus };

struct Sample {
  int64_t start_ns;
  int64_t latency_ns;
  CallKind kind;
};

struct Step {
  std::string name;
  int64_t at_ns;
  std::string message;
};

struct UpgradeRecord {
  std::string to_version;
  int64_t requested_ns = 0;
  std::vector<Step> steps;
  bool succeeded = false;
  std::string error;

  int64_t StepNs(const std::string& name) const {
    for (const Step& step : steps) {
      if (step.name == name) return step.at_ns;
    }
    return -1;
  }
};

// Closed-loop agents, as the field's clients: look the name up, call the service there.
class Agents {
 public:
  Agents(std::string nehostd_socket, int count) : nehostd_socket_(std::move(nehostd_socket)) {
    samples_.resize(count);  // before any thread, which writes its own element
    for (int i = 0; i < count; ++i) threads_.emplace_back([this, i] { Run(i); });
  }
  ~Agents() { Stop(); }

  void Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  std::vector<Sample> TakeSamples() {
    std::vector<Sample> all;
    for (auto& own : samples_) all.insert(all.end(), own.begin(), own.end());
    return all;
  }
  int64_t failures() const {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t total = 0;
    for (const auto& [message, count] : failures_) total += count;
    return total;
  }
  std::map<std::string, int64_t> failure_messages() const {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }

 private:
  void Fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    ++failures_[message];
  }

  void Run(int index) {
    std::vector<Sample> own;
    own.reserve(200'000);
    auto supervisor = sv::Supervisor::NewStub(DialUnix(nehostd_socket_));
    std::string endpoint;
    std::unique_ptr<fv::Filter::Stub> filter;
    auto give_up = std::chrono::steady_clock::now() + kMaxAgentTime;

    for (int64_t i = 0; i < kMaxCallsPerAgent && !stop_ && !Interrupted() &&
                        std::chrono::steady_clock::now() < give_up;
         ++i) {
      grpc::ClientContext lookup_context;
      lookup_context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
      lookup_context.set_wait_for_ready(true);
      sv::LookupRequest request;
      request.set_name(kFilterName);
      sv::LookupResponse found;
      int64_t start = WallNowNs();
      grpc::Status looked_up = supervisor->Lookup(&lookup_context, request, &found);
      own.push_back({start, WallNowNs() - start, CallKind::kLookup});
      if (!looked_up.ok()) {
        Fail("lookup: " + looked_up.error_message());
        continue;
      }

      if (found.registration().endpoint() != endpoint || filter == nullptr) {
        endpoint = found.registration().endpoint();
        filter = fv::Filter::NewStub(DialUnix(endpoint));
      }
      grpc::ClientContext status_context;
      status_context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
      status_context.set_wait_for_ready(true);
      fv::StatusResponse status;
      start = WallNowNs();
      grpc::Status called = filter->Status(&status_context, {}, &status);
      own.push_back({start, WallNowNs() - start, CallKind::kStatus});
      if (!called.ok()) Fail("status: " + called.error_message());
    }
    samples_[index] = std::move(own);
  }

  const std::string nehostd_socket_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::map<std::string, int64_t> failures_;
  std::vector<std::vector<Sample>> samples_;
  std::vector<std::thread> threads_;
};

absl::Status WriteDefinition(const Host& host, const std::string& prefix) {
  std::string folder = host.config_dir() + "/services.d";
  if (absl::Status made = MakeDirs(folder); !made.ok()) return made;
  std::ofstream out(absl::StrCat(folder, "/", kFilterName, ".textproto"));
  out << "name: \"" << kFilterName << "\"\nexecutable: \"bin/nehost-filter\"\n"
      << "package_prefix: \"" << prefix << "\"\n";
  out.close();
  if (!out) return absl::InternalError("write the service definition in " + folder);
  return absl::OkStatus();
}

UpgradeRecord Upgrade(const Host& host, const std::string& to_version) {
  UpgradeRecord record;
  record.to_version = to_version;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kUpgradeDeadline);
  sv::UpgradeRequest request;
  request.set_name(kFilterName);
  request.set_to_version(to_version);

  record.requested_ns = WallNowNs();
  auto reader = host.supervisor()->Upgrade(&context, request);
  sv::UpgradeProgress progress;
  while (reader->Read(&progress)) {
    record.steps.push_back({progress.step(), ToNs(progress.at()), progress.message()});
    if (progress.done()) record.succeeded = progress.succeeded();
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) record.error = status.error_message();
  if (status.ok() && !record.succeeded) record.error = "not succeeded";
  return record;
}

struct Window {
  int64_t begin_ns;
  int64_t end_ns;
};

bool Overlaps(const Sample& sample, const Window& window) {
  return sample.start_ns <= window.end_ns && sample.start_ns + sample.latency_ns >= window.begin_ns;
}

void PrintLatencies(const std::vector<Sample>& samples, int64_t steady_begin, int64_t steady_end,
                    const std::vector<Window>& windows) {
  std::printf("\n%-8s %-9s %9s %10s %10s\n", "call", "phase", "calls", "p50_us", "p99_us");
  double steady_p99_all = 0;
  double during_p99_all = 0;
  for (int kind = -1; kind <= 1; ++kind) {
    std::vector<double> steady;
    std::vector<double> during;
    for (const Sample& sample : samples) {
      if (kind >= 0 && static_cast<int>(sample.kind) != kind) continue;
      double us = static_cast<double>(sample.latency_ns) / 1000.0;
      if (sample.start_ns >= steady_begin && sample.start_ns < steady_end) steady.push_back(us);
      if (std::any_of(windows.begin(), windows.end(),
                      [&](const Window& window) { return Overlaps(sample, window); })) {
        during.push_back(us);
      }
    }
    const char* name = kind < 0 ? "all" : kind == 0 ? "lookup" : "status";
    std::printf("%-8s %-9s %9zu %10.0f %10.0f\n", name, "steady", steady.size(),
                Percentile(steady, 0.5), Percentile(steady, 0.99));
    std::printf("%-8s %-9s %9zu %10.0f %10.0f\n", name, "upgrading", during.size(),
                Percentile(during, 0.5), Percentile(during, 0.99));
    if (kind < 0) {
      steady_p99_all = Percentile(steady, 0.99);
      during_p99_all = Percentile(during, 0.99);
      std::printf("%-8s p50 ratio %.2fx\n", name,
                  Percentile(during, 0.5) / std::max(1.0, Percentile(steady, 0.5)));
    }
  }
  std::printf("p99 upgrading / steady (all calls): %.2fx   (goal: at most 3x)\n",
              during_p99_all / std::max(1.0, steady_p99_all));
}

void PrintUpgrades(const std::vector<UpgradeRecord>& upgrades) {
  std::printf("\n%-3s %-7s %12s %12s %12s %12s %12s\n", "#", "to", "req->launch", "req->exit_ms",
              "launch->rdy", "overhead_ms", "req->done_ms");
  std::vector<double> overheads;
  for (size_t i = 0; i < upgrades.size(); ++i) {
    const UpgradeRecord& u = upgrades[i];
    if (!u.succeeded) {
      std::printf("%-3zu %-7s failed: %s\n", i + 1, u.to_version.c_str(), u.error.c_str());
      continue;
    }
    double to_exit = NsToMs(u.StepNs("exit") - u.requested_ns);
    double startup = NsToMs(u.StepNs("ready") - u.StepNs("launch"));
    double to_done = NsToMs(u.StepNs("done") - u.requested_ns);
    overheads.push_back(to_exit - startup);
    double to_launch = NsToMs(u.StepNs("launch") - u.requested_ns);
    std::printf("%-3zu %-7s %12.1f %12.1f %12.1f %12.1f %12.1f\n", i + 1, u.to_version.c_str(),
                to_launch, to_exit, startup, to_exit - startup, to_done);
  }
  std::printf(
      "median upgrade overhead (request->exit minus launch->ready): %.1f ms   "
      "(goal: at most 50 ms)\n",
      Median(overheads));
  for (size_t i = 0; i < upgrades.size(); ++i) {
    std::printf("steps of upgrade %zu (ms after the request):", i + 1);
    for (const Step& step : upgrades[i].steps) {
      std::printf(" %s=%.1f", step.name.c_str(), NsToMs(step.at_ns - upgrades[i].requested_ns));
    }
    std::printf("\n");
  }
}

bool GnuplotInstalled() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

// Top: the whole run, latency per call, every upgrade step a vertical line coloured by step.
// Bottom: the first upgrade close up, each step labelled.
absl::Status DrawTimeline(const std::string& png, const std::vector<Sample>& samples,
                          const std::vector<UpgradeRecord>& upgrades, int64_t origin_ns) {
  std::string data = png + ".dat";
  std::string steps = png + ".steps.dat";
  std::string script = png + ".gp";
  {
    std::ofstream out(data);
    out << std::fixed << std::setprecision(6);
    for (const Sample& s : samples) {
      out << NsToMs(s.start_ns - origin_ns) / 1000.0 << ' ' << NsToMs(s.latency_ns) << ' '
          << static_cast<int>(s.kind) << '\n';
    }
    std::ofstream step_out(steps);
    step_out << std::fixed << std::setprecision(6);
    for (size_t i = 0; i < upgrades.size(); ++i) {
      step_out << NsToMs(upgrades[i].requested_ns - origin_ns) / 1000.0 << " request " << i + 1
               << '\n';
      for (const Step& step : upgrades[i].steps) {
        step_out << NsToMs(step.at_ns - origin_ns) / 1000.0 << ' ' << step.name << ' ' << i + 1
                 << '\n';
      }
    }
  }
  double zoom_from = 0;
  double zoom_to = 1;
  if (!upgrades.empty() && !upgrades[0].steps.empty()) {
    zoom_from = NsToMs(upgrades[0].requested_ns - origin_ns) / 1000.0 - 0.01;
    zoom_to = NsToMs(upgrades[0].steps.back().at_ns - origin_ns) / 1000.0 + 0.01;
  }

  std::string plot = absl::StrCat(
      "plot '", data, "' using 1:($3==0?$2:NaN) with points pt 7 ps 0.2 lc rgb '#a0a0a0' ",
      "title 'lookup', \\\n  '", data,
      "' using 1:($3==1?$2:NaN) with points pt 7 ps 0.2 lc rgb '#1f77b4' title 'status', \\\n",
      "  for [i=1:words(steps)] '", steps,
      "' using (strcol(2) eq word(steps,i) ? $1 : NaN):(0):(0):(1) axes x1y2 ",
      "with vectors nohead lw 1.5 lc rgb word(colors,i) title word(steps,i)\n");
  std::ofstream out(script);
  out << std::fixed << std::setprecision(6);
  out << "set terminal pngcairo size 1400,1000 font 'sans,10' noenhanced\n"
      << "set output '" << png << "'\n"
      << "set multiplot layout 2,1 title 'upgrade_bench: call latency (Lookup, Filter.Status) "
         "with upgrade steps'\n"
      << "set logscale y\nset ylabel 'call latency (ms)'\nset grid ytics\n"
      << "set y2range [0:1]\nunset y2tics\nset key outside right top\n"
      << "steps = 'request launch ready serving switch drain handoff exit collect done'\n"
      << "colors = '#2ca02c #17becf #ff7f0e #bcbd22 #1f3fff #d62728 #000000 #9467bd #8c564b "
         "#e377c2'\n"
      << "set xlabel 'time since start (s)'\n"
      << plot;
  out << "set title 'upgrade 1 close up (--to " << (upgrades.empty() ? "" : upgrades[0].to_version)
      << ")'\n"
      << "set xrange [" << zoom_from << ":" << zoom_to << "]\n"
      << "set xlabel 'time since start (s)'\n";
  if (!upgrades.empty()) {
    int row = 0;
    auto label = [&](const std::string& name, int64_t at_ns) {
      out << "set label " << row + 1 << " '" << name << "' at "
          << NsToMs(at_ns - origin_ns) / 1000.0 << ", graph " << 0.95 - 0.07 * (row % 12)
          << " left offset 0.3,0\n";
      ++row;
    };
    label("request", upgrades[0].requested_ns);
    for (const Step& step : upgrades[0].steps) label(step.name, step.at_ns);
  }
  out << plot << "unset multiplot\n";
  out.close();

  std::string command = absl::StrCat("gnuplot '", script, "' 2>'", png, ".log'");
  if (std::system(command.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("gnuplot failed; see ", png, ".log"));
  }
  std::error_code ignored;
  std::filesystem::remove(png + ".log", ignored);
  return absl::OkStatus();
}

// Everything the bench starts; however Run returns, nehostd is stopped, its extensions too,
// and the temporary folder removed.
struct Fleet {
  ~Fleet() {
    if (host != nullptr) host->Stop();
    ReapExited();
    std::error_code ignored;
    if (!dir.empty()) std::filesystem::remove_all(dir, ignored);
  }
  std::string dir;
  std::unique_ptr<Host> host;
};

absl::Status Run(const Options& options) {
  InstallInterruptHandler();
  BecomeSubreaper();
  Fleet fleet;
  absl::StatusOr<std::string> dir = MakeTempDir("nehost-upgrade-bench");
  if (!dir.ok()) return dir.status();
  fleet.dir = *dir;
  std::string prefix = fleet.dir + "/prefix";

  fleet.host = std::make_unique<Host>(NEHOSTD_PATH, fleet.dir);
  Host& host = *fleet.host;
  if (absl::Status made = host.MakeFolders(); !made.ok()) return made;
  if (absl::Status installed =
          InstallSignedFilterPackages({NEHOST_PKG_PATH, NEHOST_FILTER_V1, NEHOST_FILTER_V2},
                                      fleet.dir, prefix, host.config_dir());
      !installed.ok()) {
    return installed;
  }
  if (absl::Status written = WriteDefinition(host, prefix); !written.ok()) return written;
  if (absl::Status started = host.Start(); !started.ok()) return started;
  absl::StatusOr<sv::Registration> first = host.Lookup(kFilterName);
  if (!first.ok()) return first.status();
  std::fprintf(stderr, "%s: nehostd serves %s version %s; %d agents\n", kProgram, kFilterName,
               first->version().c_str(), options.agents);

  int64_t origin = WallNowNs();
  Agents agents(host.runtime_dir() + "/nehostd.sock", options.agents);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // connections set up, unmeasured
  int64_t steady_begin = WallNowNs();
  std::this_thread::sleep_for(kSteadyPhase);
  int64_t steady_end = WallNowNs();

  std::vector<UpgradeRecord> upgrades;
  for (int i = 0; i < options.upgrades && !Interrupted(); ++i) {
    std::string to = i % 2 == 0 ? "2.0.0" : "1.0.0";
    std::fprintf(stderr, "%s: upgrade %d of %d --to %s\n", kProgram, i + 1, options.upgrades,
                 to.c_str());
    upgrades.push_back(Upgrade(host, to));
    std::this_thread::sleep_for(kBetweenUpgrades);
  }
  agents.Stop();
  std::vector<Sample> samples = agents.TakeSamples();
  if (Interrupted()) return absl::CancelledError("interrupted");

  std::vector<Window> windows;
  for (const UpgradeRecord& u : upgrades) {
    if (u.StepNs("launch") > 0 && u.StepNs("exit") > 0) {
      windows.push_back({u.StepNs("launch"), u.StepNs("exit")});
    }
  }

  std::printf(
      "agents: %d closed-loop (Lookup, then Filter.Status); upgrades: %d; steady phase "
      "%.1f s\n",
      options.agents, options.upgrades, NsToMs(steady_end - steady_begin) / 1000.0);
  std::printf("total calls: %zu   failed calls: %lld   (goal: 0)\n", samples.size(),
              static_cast<long long>(agents.failures()));
  for (const auto& [message, count] : agents.failure_messages()) {
    std::printf("  %lldx %s\n", static_cast<long long>(count), message.c_str());
  }
  PrintLatencies(samples, steady_begin, steady_end, windows);
  PrintUpgrades(upgrades);

  bool draw = !options.no_png && (options.png_set || GnuplotInstalled());
  if (draw) {
    std::string png = options.png_set ? options.png : kDefaultPng;
    png = std::filesystem::absolute(png).string();
    absl::Status drawn = DrawTimeline(png, samples, upgrades, origin);
    if (!drawn.ok()) return drawn;
    std::printf("\ntimeline: %s\n", png.c_str());
  }
  return absl::OkStatus();
}

absl::StatusOr<Options> ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help") {
      options.help = true;
    } else if (flag == "--no-png") {
      options.no_png = true;
    } else if (flag == "--png" && i + 1 < argc) {
      options.png = argv[++i];
      options.png_set = true;
    } else if ((flag == "--agents" || flag == "--upgrades") && i + 1 < argc) {
      int* value = flag == "--agents" ? &options.agents : &options.upgrades;
      int limit = flag == "--agents" ? kMaxAgents : kMaxUpgrades;
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
