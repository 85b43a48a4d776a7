// flow_bench: how many flow verdicts per second nehost-filter gives over its service socket,
// through EvaluateFlows, as nehostd hosts it.
//
// This build's nehostd runs in a temporary folder and hosts the embedded nehost-filter; its
// flow rule file holds --rules rules of mixed kinds (bench/flow_rules_corpus.h), written
// before nehostd starts. --streams clients each open one EvaluateFlows stream on a connection
// of their own to RUNTIME/services/org.nehost.filter.sock and keep --in-flight batches of
// --batch flows in flight: a writer thread sends, a reader thread takes the verdicts. After a
// warm-up, verdicts are counted for --seconds. Rounds alternate between a filter nobody
// watches and, with --watcher, one with a WatchDecisions stream that never reads (the filter
// must drop its decisions, not slow down).
//
//   cmake --build --preset default --target flow_bench
//   build/bin/flow_bench --rules 1000 --streams 2 --seconds 5 --rounds 3 --watcher
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/bench_support.h"
#include "bench/flow_rules_corpus.h"
#include "common/files.h"
#include "common/grpc_client.h"
#include "nehost/filter/v1/flow.grpc.pb.h"
#include "nehost/filter/v1/stats.grpc.pb.h"

namespace nehost::bench {
namespace {

namespace fv = nehost::filter::v1;
using Clock = std::chrono::steady_clock;

constexpr char kHelp[] = R"(usage: flow_bench [--rules N] [--streams N] [--batch N] [--in-flight N]
                  [--seconds S] [--rounds N] [--watcher]

Measures EvaluateFlows verdicts per second over the service socket of the nehost-filter that
this build's nehostd hosts, in a temporary folder. Defaults: 1000 rules, 2 streams, batches of
10000 flows, 4 batches in flight per stream, 5 s per round, 3 rounds.
)";

constexpr auto kWarmup = std::chrono::seconds(1);
constexpr int kDistinctBatches = 8;

struct Options {
  int rules = 1000;
  int streams = 2;
  int batch = 10000;
  int in_flight = 4;
  int seconds = 5;
  int rounds = 3;
  bool watcher = false;
  bool help = false;
};

bool ParseOptions(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help") {
      options->help = true;
      continue;
    }
    if (flag == "--watcher") {
      options->watcher = true;
      continue;
    }
    int* target = flag == "--rules"       ? &options->rules
                  : flag == "--streams"   ? &options->streams
                  : flag == "--batch"     ? &options->batch
                  : flag == "--in-flight" ? &options->in_flight
                  : flag == "--seconds"   ? &options->seconds
                  : flag == "--rounds"    ? &options->rounds
                                          : nullptr;
    if (target == nullptr || i + 1 >= argc || !absl::SimpleAtoi(argv[++i], target) || *target < 1) {
      std::fprintf(stderr, "flow_bench: bad flag %s\n%s", flag.c_str(), kHelp);
      return false;
    }
  }
  return true;
}

absl::Status WriteRules(const std::string& state_dir, int count) {
  const std::string folder = absl::StrCat(state_dir, "/services/", kFilterName);
  if (absl::Status made = MakeDirs(folder); !made.ok()) return made;
  fv::FlowRuleFile file;
  file.set_schema_version(1);
  file.set_default_action(fv::FlowRule::ALLOW);
  for (fv::FlowRule& rule : MixedRules(count)) *file.add_rules() = std::move(rule);
  return WriteJsonProto(folder + "/flow_rules.json", file);
}

std::vector<fv::FlowBatch> Batches(const Options& options) {
  std::vector<fv::Flow> flows = MixedFlows(options.batch * kDistinctBatches, options.rules);
  std::vector<fv::FlowBatch> batches(kDistinctBatches);
  for (size_t i = 0; i < flows.size(); ++i) {
    *batches[i / options.batch].add_flows() = std::move(flows[i]);
  }
  return batches;
}

// One EvaluateFlows stream: a writer keeps in_flight batches ahead of the verdicts read.
class Stream {
 public:
  Stream(const std::string& socket, const std::vector<fv::FlowBatch>& batches, int in_flight)
      : stub_(fv::FlowFilter::NewStub(DialUnix(socket))), batches_(batches), in_flight_(in_flight) {
    context_.set_wait_for_ready(true);
    stream_ = stub_->EvaluateFlows(&context_);
    writer_ = std::thread([this] { Write(); });
    reader_ = std::thread([this] { Read(); });
  }

  ~Stream() {
    stop_ = true;
    writer_.join();
    reader_.join();
    stream_->Finish();
  }

  int64_t verdicts() const { return verdicts_; }
  bool failed() const { return failed_; }

 private:
  void Write() {
    int64_t sent = 0;
    while (!stop_ && !Interrupted()) {
      {
        // Wakes at least every 100 ms to see whether to stop.
        absl::MutexLock lock(&mu_);
        auto room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return sent - answered_ < in_flight_ || done_reading_;
        };
        if (!mu_.AwaitWithTimeout(absl::Condition(&room), absl::Milliseconds(100))) continue;
        if (done_reading_) break;
      }
      if (!stream_->Write(batches_[sent % batches_.size()])) break;
      ++sent;
    }
    stream_->WritesDone();
  }

  void Read() {
    fv::VerdictBatch verdicts;
    while (stream_->Read(&verdicts)) {
      verdicts_ += verdicts.verdicts_size();
      absl::MutexLock lock(&mu_);
      ++answered_;
    }
    if (!stop_) failed_ = true;
    absl::MutexLock lock(&mu_);
    done_reading_ = true;
  }

  std::unique_ptr<fv::FlowFilter::Stub> stub_;
  const std::vector<fv::FlowBatch>& batches_;
  const int in_flight_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<fv::FlowBatch, fv::VerdictBatch>> stream_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::atomic<int64_t> verdicts_{0};
  absl::Mutex mu_;
  int64_t answered_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_reading_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
  std::thread reader_;
};

// A WatchDecisions stream that never reads.
class StalledWatcher {
 public:
  explicit StalledWatcher(const std::string& socket)
      : stub_(fv::FlowFilter::NewStub(DialUnix(socket))) {
    fv::WatchDecisionsRequest request;
    request.set_buffer(4096);
    reader_ = stub_->WatchDecisions(&context_, request);
  }
  ~StalledWatcher() {
    context_.TryCancel();
    reader_->Finish();
  }

 private:
  std::unique_ptr<fv::FlowFilter::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<fv::Decision>> reader_;
};

// Verdicts per second over one round.
double Round(const std::string& socket, const std::vector<fv::FlowBatch>& batches,
             const Options& options, bool* failed) {
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < options.streams; ++i) {
    streams.push_back(std::make_unique<Stream>(socket, batches, options.in_flight));
  }
  auto total = [&] {
    int64_t sum = 0;
    for (const auto& stream : streams) sum += stream->verdicts();
    return sum;
  };

  std::this_thread::sleep_for(kWarmup);
  const int64_t first = total();
  const Clock::time_point started = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(options.seconds));
  const int64_t last = total();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  for (const auto& stream : streams) *failed = *failed || stream->failed();
  return (last - first) / seconds;
}

uint64_t Counter(fv::FilterStats::Stub* stats, const std::string& name) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  fv::StatsResponse response;
  if (!stats->Stats(&context, {}, &response).ok()) return 0;
  auto found = response.counters().find(name);
  return found == response.counters().end() ? 0 : found->second;
}

int Run(const Options& options) {
  absl::StatusOr<std::string> dir = MakeTempDir("nehost-flow-bench");
  if (!dir.ok()) {
    std::fprintf(stderr, "flow_bench: %s\n", std::string(dir.status().message()).c_str());
    return 1;
  }
  Host host(NEHOSTD_PATH, *dir);
  absl::Status ready = host.MakeFolders();
  if (ready.ok()) ready = WriteRules(*dir + "/state", options.rules);
  if (ready.ok()) ready = host.Start();
  if (ready.ok()) ready = host.Lookup(kFilterName).status();
  if (!ready.ok()) {
    std::fprintf(stderr, "flow_bench: %s\n%s", std::string(ready.message()).c_str(),
                 LogTail(host.log_path()).c_str());
    return 1;
  }

  const std::string socket = host.ServiceSocket(kFilterName);
  const std::vector<fv::FlowBatch> batches = Batches(options);
  auto stats = fv::FilterStats::NewStub(DialUnix(socket));
  std::printf("flow_bench: %d rules, %d streams, batches of %d flows, %d in flight, %d s rounds\n",
              options.rules, options.streams, options.batch, options.in_flight, options.seconds);

  std::vector<double> plain, watched;
  bool failed = false;
  for (int round = 1; round <= options.rounds && !Interrupted(); ++round) {
    plain.push_back(Round(socket, batches, options, &failed));
    std::printf("round %d  no watcher:       %10.0f verdicts/s\n", round, plain.back());
    if (!options.watcher) continue;

    const uint64_t dropped_before = Counter(stats.get(), "decisions/dropped");
    {
      StalledWatcher watcher(socket);
      watched.push_back(Round(socket, batches, options, &failed));
    }
    const uint64_t dropped = Counter(stats.get(), "decisions/dropped") - dropped_before;
    std::printf("round %d  stalled watcher:  %10.0f verdicts/s  (%llu decisions dropped)\n", round,
                watched.back(), static_cast<unsigned long long>(dropped));
  }

  std::printf("median   no watcher:       %10.0f verdicts/s  (goal: at least 500000)\n",
              Median(plain));
  if (!watched.empty()) {
    std::printf("median   stalled watcher:  %10.0f verdicts/s\n", Median(watched));
  }
  if (failed) std::printf("some streams failed: see %s\n", host.log_path().c_str());
  host.Stop();
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace nehost::bench

int main(int argc, char** argv) {
  nehost::bench::Options options;
  if (!nehost::bench::ParseOptions(argc, argv, &options)) return 2;
  if (options.help) {
    std::fputs(nehost::bench::kHelp, stdout);
    return 0;
  }
  nehost::bench::InstallInterruptHandler();
  nehost::bench::BecomeSubreaper();
  return nehost::bench::Run(options);
}
