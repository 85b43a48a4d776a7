// Flow verdicts, decision watching and counters, end to end: nehost-filter as a real process
// on a real Unix socket, standalone or hosted by a real nehostd, called through gRPC as an
// agent would. Each test runs in a temporary folder of its own, and every process it starts
// is killed and reaped when the test ends.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/files.h"
#include "common/grpc_client.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "nehost/filter/v1/flow.grpc.pb.h"
#include "nehost/filter/v1/stats.grpc.pb.h"
#include "tests/extension/control_client.h"
#include "tests/support/nehostd.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::testing::CommandResult;
using ::nehost::testing::FilterBinary;
using ::nehost::testing::Nehostd;
using ::nehost::testing::ReadFileOrEmpty;
using ::nehost::testing::RunCommand;
using ::nehost::testing::Subprocess;
using ::nehost::testing::TempDir;
using ::nehost::testing::WaitUntil;
using ::nehost::testing::WriteFileOrDie;
using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(20);
constexpr char kFilterName[] = "org.nehost.filter";

grpc::ClientContext* WithDeadline(grpc::ClientContext* context) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
  context->set_wait_for_ready(true);
  return context;
}

v1::Flow TcpOut(uint64_t id, const std::string& address, uint32_t port) {
  v1::Flow flow;
  flow.set_id(id);
  flow.set_protocol(v1::Flow::TCP);
  flow.set_direction(v1::Flow::OUTBOUND);
  flow.set_remote_address(address);
  flow.set_remote_port(port);
  return flow;
}

v1::FlowRule DenyPort(const std::string& name, uint32_t port) {
  v1::FlowRule rule;
  rule.set_name(name);
  rule.set_action(v1::FlowRule::DENY);
  rule.set_port_min(port);
  return rule;
}

// The stubs of one filter's service socket.
struct Stubs {
  explicit Stubs(const std::string& socket)
      : channel(DialUnix(socket)),
        flows(v1::FlowFilter::NewStub(channel)),
        stats(v1::FilterStats::NewStub(channel)) {}

  grpc::Status AddRule(const v1::FlowRule& rule) {
    grpc::ClientContext context;
    v1::AddFlowRuleRequest request;
    *request.mutable_rule() = rule;
    v1::AddFlowRuleResponse response;
    return flows->AddFlowRule(WithDeadline(&context), request, &response);
  }

  grpc::Status Evaluate(const v1::Flow& flow, v1::Verdict* verdict) {
    grpc::ClientContext context;
    return flows->EvaluateFlow(WithDeadline(&context), flow, verdict);
  }

  // Sends each batch and reads its verdicts, one batch at a time.
  grpc::Status EvaluateBatches(const std::vector<v1::FlowBatch>& batches,
                               std::vector<v1::VerdictBatch>* verdicts) {
    grpc::ClientContext context;
    auto stream = flows->EvaluateFlows(WithDeadline(&context));
    for (const v1::FlowBatch& batch : batches) {
      if (!stream->Write(batch)) break;
      v1::VerdictBatch answer;
      if (!stream->Read(&answer)) break;
      if (verdicts != nullptr) verdicts->push_back(std::move(answer));
    }
    stream->WritesDone();
    return stream->Finish();
  }

  v1::StatsResponse Stats() {
    grpc::ClientContext context;
    v1::StatsResponse response;
    grpc::Status status = stats->Stats(WithDeadline(&context), v1::StatsRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::FlowFilter::Stub> flows;
  std::unique_ptr<v1::FilterStats::Stub> stats;
};

v1::FlowBatch Batch(uint64_t first_id, int size) {
  v1::FlowBatch batch;
  for (int i = 0; i < size; ++i) {
    *batch.add_flows() =
        TcpOut(first_id + i, absl::StrCat("10.0.", i / 250 % 250, ".", i % 250), 1 + i % 1000);
  }
  return batch;
}

std::map<std::string, uint64_t> Sorted(const google::protobuf::Map<std::string, uint64_t>& map) {
  return {map.begin(), map.end()};
}

// 200,000 flows in batches of 50, below a watcher's buffer of 64: a watcher that drops some
// of them has stopped keeping up, not merely been offered a burst larger than its buffer.
std::vector<v1::FlowBatch> SmallBatches() {
  std::vector<v1::FlowBatch> batches;
  for (int i = 0; i < 4000; ++i) batches.push_back(Batch(i * 50, 50));
  return batches;
}

uint64_t CounterOf(const v1::StatsResponse& stats, const std::string& name) {
  auto found = stats.counters().find(name);
  return found == stats.counters().end() ? 0 : found->second;
}

// The counters in STATE/counters.json, as a crash would leave them.
uint64_t CheckpointedCounter(const std::string& state_dir, const std::string& name) {
  v1::CounterFile file;
  if (!ReadJsonProto(state_dir + "/counters.json", &file).ok()) return 0;
  auto found = file.state().counters().find(name);
  return found == file.state().counters().end() ? 0 : found->second;
}

class FlowFilterTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directory(state_dir_); }

  // nehost-filter on a socket it binds itself; returns once it answers.
  std::unique_ptr<Subprocess> Start(std::vector<std::string> environment = {}) {
    auto filter = std::make_unique<Subprocess>(
        std::vector<std::string>{FilterBinary(), "--listen", socket_, "--state-dir", state_dir_},
        environment, root_ / "filter.log");
    stubs_ = std::make_unique<Stubs>(socket_);
    stubs_->Stats();
    return filter;
  }

  const TempDir root_;
  const std::string state_dir_ = root_ / "state";
  const std::string socket_ = root_ / "filter.sock";
  std::unique_ptr<Stubs> stubs_;
};

TEST_F(FlowFilterTest, EvaluatesAFlowAndNamesTheRuleThatDecided) {
  std::unique_ptr<Subprocess> filter = Start();
  ASSERT_TRUE(stubs_->AddRule(DenyPort("no-telnet", 23)).ok());
  v1::FlowRule allow = DenyPort("lab-telnet", 23);
  allow.set_action(v1::FlowRule::ALLOW);
  allow.add_cidrs("192.168.7.0/24");
  ASSERT_TRUE(stubs_->AddRule(allow).ok());

  v1::Verdict denied, allowed, by_default;
  ASSERT_TRUE(stubs_->Evaluate(TcpOut(1, "198.51.100.1", 23), &denied).ok());
  ASSERT_TRUE(stubs_->Evaluate(TcpOut(2, "192.168.7.9", 23), &allowed).ok());
  ASSERT_TRUE(stubs_->Evaluate(TcpOut(3, "198.51.100.1", 22), &by_default).ok());

  EXPECT_EQ(denied.action(), v1::FlowRule::DENY);
  EXPECT_EQ(denied.rule(), "no-telnet");
  EXPECT_EQ(denied.flow_id(), 1u);
  EXPECT_EQ(allowed.action(), v1::FlowRule::ALLOW);
  EXPECT_EQ(allowed.rule(), "lab-telnet");
  EXPECT_EQ(by_default.action(), v1::FlowRule::ALLOW);
  EXPECT_EQ(by_default.rule(), "");

  v1::StatsResponse stats = stubs_->Stats();
  EXPECT_EQ(CounterOf(stats, "flows/evaluated"), 3u);
  EXPECT_EQ(CounterOf(stats, "flows/denied"), 1u);
  EXPECT_EQ(stats.rule_hits().at("flow/no-telnet"), 1u);
  EXPECT_EQ(stats.rule_hits().at("flow/lab-telnet"), 1u);
  EXPECT_EQ(stats.calls().at("evaluate_flow"), 3u);
}

TEST_F(FlowFilterTest, BatchesComeBackInTheSameSizesAndOrder) {
  std::unique_ptr<Subprocess> filter = Start();
  ASSERT_TRUE(stubs_->AddRule(DenyPort("port-7", 7)).ok());

  std::vector<v1::VerdictBatch> verdicts;
  grpc::Status status =
      stubs_->EvaluateBatches({Batch(0, 10000), Batch(10000, 1), Batch(10001, 2500)}, &verdicts);

  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(verdicts.size(), 3u);
  EXPECT_EQ(verdicts[0].verdicts_size(), 10000);
  EXPECT_EQ(verdicts[1].verdicts_size(), 1);
  EXPECT_EQ(verdicts[2].verdicts_size(), 2500);
  uint64_t denied = 0;
  for (int i = 0; i < verdicts[0].verdicts_size(); ++i) {
    const v1::Verdict& verdict = verdicts[0].verdicts(i);
    ASSERT_EQ(verdict.flow_id(), static_cast<uint64_t>(i));
    if (verdict.action() == v1::FlowRule::DENY) {
      ++denied;
      EXPECT_EQ(verdict.rule(), "port-7");
    }
  }
  EXPECT_EQ(denied, 10u);  // ports 1 to 1000 in turn: port 7 once in every 1000
  EXPECT_EQ(CounterOf(stubs_->Stats(), "flows/evaluated"), 12501u);
}

TEST_F(FlowFilterTest, BadFlowsGetClearErrorsAndTheRestOfTheBatchIsEvaluated) {
  std::unique_ptr<Subprocess> filter = Start();

  v1::Verdict verdict;
  grpc::Status not_an_address = stubs_->Evaluate(TcpOut(5, "10.0.0.300", 80), &verdict);
  grpc::Status port = stubs_->Evaluate(TcpOut(6, "10.0.0.3", 65536), &verdict);
  v1::FlowBatch batch = Batch(0, 3);
  batch.mutable_flows(1)->set_remote_address("not-an-address");
  std::vector<v1::VerdictBatch> verdicts;
  grpc::Status batched = stubs_->EvaluateBatches({batch}, &verdicts);

  EXPECT_EQ(not_an_address.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(not_an_address.error_message(),
              HasSubstr("flow 5: remote_address \"10.0.0.300\" is not an IPv4 or IPv6 address"));
  EXPECT_EQ(port.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(port.error_message(), HasSubstr("remote_port 65536 is past 65535"));
  ASSERT_TRUE(batched.ok()) << batched.error_message();
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].verdicts(0).error(), "");
  EXPECT_THAT(verdicts[0].verdicts(1).error(), HasSubstr("\"not-an-address\" is not an IPv4"));
  EXPECT_EQ(verdicts[0].verdicts(1).action(), v1::FlowRule::ACTION_UNSPECIFIED);
  EXPECT_EQ(verdicts[0].verdicts(2).error(), "");
  EXPECT_EQ(CounterOf(stubs_->Stats(), "flows/invalid"), 3u);
}

TEST_F(FlowFilterTest, ABatchOverTenThousandFlowsEndsTheStreamWithAClearError) {
  std::unique_ptr<Subprocess> filter = Start();

  std::vector<v1::VerdictBatch> verdicts;
  grpc::Status status = stubs_->EvaluateBatches({Batch(0, 5), Batch(5, 10001)}, &verdicts);

  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("batch 2 holds 10001 flows; at most 10000"));
  ASSERT_EQ(verdicts.size(), 1u) << "the batch before it was answered";
}

TEST_F(FlowFilterTest, AnOversizedBatchGetsResourceExhausted) {
  std::unique_ptr<Subprocess> filter = Start();
  grpc::ChannelArguments unlimited;
  unlimited.SetMaxSendMessageSize(-1);
  auto stub = v1::FlowFilter::NewStub(
      grpc::CreateCustomChannel("unix:" + socket_, grpc::InsecureChannelCredentials(), unlimited));
  v1::FlowBatch batch = Batch(0, 5000);
  for (v1::Flow& flow : *batch.mutable_flows()) flow.set_executable("/" + std::string(1000, 'x'));

  grpc::ClientContext context;
  auto stream = stub->EvaluateFlows(WithDeadline(&context));
  stream->Write(batch);
  stream->WritesDone();
  grpc::Status status = stream->Finish();

  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(CounterOf(stubs_->Stats(), "flows/evaluated"), 0u) << "the filter is still serving";
}

TEST_F(FlowFilterTest, BadRulesAreRefusedAndTheRulesInForceStay) {
  std::unique_ptr<Subprocess> filter = Start();
  ASSERT_TRUE(stubs_->AddRule(DenyPort("kept", 25)).ok());
  const std::string file = ReadFileOrEmpty(state_dir_ + "/flow_rules.json");

  v1::FlowRule cidr = DenyPort("bad-cidr", 1);
  cidr.add_cidrs("10.0.0.0/40");
  v1::FlowRule host_bits = DenyPort("host-bits", 1);
  host_bits.add_cidrs("10.1.2.3/16");
  v1::FlowRule relative = DenyPort("relative", 1);
  relative.set_executable("usr/bin/curl");
  v1::FlowRule name = DenyPort("Bad Name", 1);
  for (const v1::FlowRule& rule : {cidr, host_bits, relative, name}) {
    grpc::Status status = stubs_->AddRule(rule);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << rule.name();
    EXPECT_THAT(status.error_message(), HasSubstr("flow rule \"")) << rule.name();
  }

  grpc::ClientContext context;
  v1::ListFlowRulesResponse listed;
  ASSERT_TRUE(stubs_->flows->ListFlowRules(WithDeadline(&context), {}, &listed).ok());
  ASSERT_EQ(listed.rules_size(), 1);
  EXPECT_EQ(listed.rules(0).name(), "kept");
  EXPECT_EQ(ReadFileOrEmpty(state_dir_ + "/flow_rules.json"), file);
}

TEST_F(FlowFilterTest, ACorruptFlowRuleFileStopsTheStartAndIsKept) {
  WriteFileOrDie(state_dir_ + "/flow_rules.json", "{\"schema_version\": 1, \"rules\": [{");

  CommandResult result =
      RunCommand({FilterBinary(), "--listen", socket_, "--state-dir", state_dir_});

  EXPECT_EQ(result.status.code, 1);
  EXPECT_THAT(result.err, HasSubstr("load flow rules"));
  EXPECT_THAT(result.err, HasSubstr("the file is left untouched"));
  EXPECT_EQ(ReadFileOrEmpty(state_dir_ + "/flow_rules.json"),
            "{\"schema_version\": 1, \"rules\": [{");
}

TEST_F(FlowFilterTest, ANewerFlowRuleFileIsRefusedWithTheVersion) {
  WriteFileOrDie(state_dir_ + "/flow_rules.json", "{\"schema_version\": 9}");

  CommandResult result =
      RunCommand({FilterBinary(), "--listen", socket_, "--state-dir", state_dir_});

  EXPECT_EQ(result.status.code, 1);
  EXPECT_THAT(result.err, HasSubstr("schema_version 9 is not one this nehost-filter reads (1)"));
}

// A watcher that stops reading loses decisions, every one of them counted, while evaluations
// go on at their rate.
TEST_F(FlowFilterTest, AWatcherThatDoesNotReadLosesDecisionsCountedAndSlowsNothing) {
  constexpr uint64_t kSyncIds = 1'000'000'000;
  constexpr uint64_t kFinalIds = 2'000'000'000;
  std::unique_ptr<Subprocess> filter = Start();
  const std::vector<v1::FlowBatch> batches = SmallBatches();
  auto timed = [&] {
    absl::Time started = absl::Now();
    EXPECT_TRUE(stubs_->EvaluateBatches(batches, nullptr).ok());
    return absl::Now() - started;
  };
  const absl::Duration before = timed();

  grpc::ClientContext watch_context;
  v1::WatchDecisionsRequest request;
  request.set_buffer(64);
  auto watch = stubs_->flows->WatchDecisions(&watch_context, request);
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  // Evaluates single flows numbered from first_id, one every 10 ms, until the watch brings
  // one of them back; counts what the watch delivers on the way. Returns the id that came
  // back, and how many were sent.
  auto read_until = [&](uint64_t first_id) -> std::pair<uint64_t, uint64_t> {
    std::atomic<bool> seen = false;
    std::atomic<uint64_t> sent = 0;
    std::thread sender([&] {
      for (uint64_t id = first_id; !seen && id < first_id + 2000; ++id) {
        v1::Verdict verdict;
        EXPECT_TRUE(stubs_->Evaluate(TcpOut(id, "10.9.9.9", 9), &verdict).ok());
        ++sent;
        absl::SleepFor(absl::Milliseconds(10));
      }
    });
    v1::Decision decision;
    uint64_t seen_id = 0;
    while (seen_id == 0 && watch->Read(&decision)) {
      delivered += 1;
      dropped += decision.dropped_before();
      if (decision.flow().id() >= first_id) seen_id = decision.flow().id();
    }
    seen = true;
    sender.join();
    return {seen_id, sent};
  };

  // From the first flow the watch brings back, everything evaluated reaches the watcher or
  // is counted as dropped for it: account from there.
  const auto [synced, sync_sent] = read_until(kSyncIds);
  ASSERT_NE(synced, 0u) << "the watch never delivered";
  uint64_t published = sync_sent - 1 - (synced - kSyncIds);
  delivered = 0;
  dropped = 0;

  const absl::Duration stalled = timed();  // the watch is not read meanwhile
  published += batches.size() * 50;
  const auto [final_id, final_sent] = read_until(kFinalIds);
  ASSERT_NE(final_id, 0u);
  published += final_id - kFinalIds + 1;
  watch_context.TryCancel();
  watch->Finish();
  const absl::Duration after = timed();

  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(delivered + dropped, published)
      << "every flow evaluated was delivered, or counted in a delivered one's dropped_before";
  EXPECT_GE(CounterOf(stubs_->Stats(), "decisions/dropped"), dropped);
  // Generous, for a busy machine: a publisher that waited for the watcher would not finish.
  EXPECT_LT(stalled, 3 * std::max(before, after) + absl::Seconds(1))
      << "before " << before << ", with a stalled watcher " << stalled << ", after " << after;
}

// A watcher's handler blocked writing to a client that does not read must not hold a drain
// to the end of its grace.
TEST_F(FlowFilterTest, AStalledWatcherDoesNotHoldUpADrain) {
  const std::string control_path = root_ / "filter.ctl";
  std::unique_ptr<Subprocess> filter = Start({"NEHOST_CONTROL_SOCKET=" + control_path});
  grpc::ClientContext watch_context;
  v1::WatchDecisionsRequest request;
  request.set_buffer(64);
  auto watch = stubs_->flows->WatchDecisions(&watch_context, request);
  ASSERT_TRUE(stubs_->EvaluateBatches(SmallBatches(), nullptr).ok());
  ASSERT_GT(CounterOf(stubs_->Stats(), "decisions/dropped"), 0u) << "the watcher is not stalled";
  absl::StatusOr<UniqueFd> control = ConnectUnix(control_path);
  ASSERT_TRUE(control.ok()) << control.status();

  const absl::Time asked = absl::Now();
  absl::StatusOr<testing::ControlResponse> drained =
      testing::ControlCall(control->get(), testing::DrainRequest(10000));
  const absl::Duration took = absl::Now() - asked;

  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->error(), "");
  EXPECT_LT(took, absl::Seconds(5)) << "the drain waited for the stalled watcher";
  std::optional<nehost::testing::ExitStatus> exit = filter->Wait(kDeadline);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code, 0);
  watch_context.TryCancel();
  watch->Finish();
}

// An evaluation stream that stays open between batches must not hold up a drain either: it
// ends, and its client sends what got no verdicts again, to the successor.
TEST_F(FlowFilterTest, AnOpenEvaluationStreamDoesNotHoldUpADrain) {
  const std::string control_path = root_ / "filter.ctl";
  std::unique_ptr<Subprocess> filter = Start({"NEHOST_CONTROL_SOCKET=" + control_path});
  grpc::ClientContext context;
  auto stream = stubs_->flows->EvaluateFlows(WithDeadline(&context));
  v1::VerdictBatch verdicts;
  ASSERT_TRUE(stream->Write(Batch(0, 100)));
  ASSERT_TRUE(stream->Read(&verdicts));
  absl::StatusOr<UniqueFd> control = ConnectUnix(control_path);
  ASSERT_TRUE(control.ok()) << control.status();

  const absl::Time asked = absl::Now();
  absl::StatusOr<testing::ControlResponse> drained =
      testing::ControlCall(control->get(), testing::DrainRequest(10000));
  const absl::Duration took = absl::Now() - asked;

  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_LT(took, absl::Seconds(5)) << "the drain waited for the open stream";
  EXPECT_EQ(verdicts.verdicts_size(), 100);
  EXPECT_FALSE(stream->Read(&verdicts));
  grpc::Status ended = stream->Finish();
  EXPECT_THAT(ended.error_code(),
              ::testing::AnyOf(grpc::StatusCode::CANCELLED, grpc::StatusCode::UNAVAILABLE));
  std::optional<nehost::testing::ExitStatus> exit = filter->Wait(kDeadline);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code, 0);
}

// nehost-filter as nehostd hosts it: its counters live in the service's state folder.
class HostedFlowFilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(nehostd_.Start());
    absl::StatusOr<nehost::testing::Registration> registration =
        nehostd_.Lookup(kFilterName, 10000);
    ASSERT_TRUE(registration.ok()) << registration.status() << nehostd_.Log();
    first_ = *registration;
    stubs_ = std::make_unique<Stubs>(first_.endpoint());
    ASSERT_TRUE(stubs_->AddRule(DenyPort("port-7", 7)).ok());
    ASSERT_TRUE(stubs_->EvaluateBatches({Batch(0, 5000), Batch(5000, 300)}, nullptr).ok());
  }

  // The registration once another generation than the first serves.
  absl::StatusOr<nehost::testing::Registration> NextGeneration() {
    absl::StatusOr<nehost::testing::Registration> next;
    WaitUntil(
        [&] {
          next = nehostd_.Lookup(kFilterName, 5000);
          return next.ok() && next->generation() != first_.generation();
        },
        kDeadline);
    return next;
  }

  std::string ServiceStateDir() const { return nehostd_.state_dir + "/services/" + kFilterName; }

  TempDir root_;
  Nehostd nehostd_{root_};
  nehost::testing::Registration first_;
  std::unique_ptr<Stubs> stubs_;
};

TEST_F(HostedFlowFilterTest, CountersSurviveAKillUpToTheLastCheckpoint) {
  ASSERT_TRUE(WaitUntil(
      [&] { return CheckpointedCounter(ServiceStateDir(), "flows/evaluated") == 5300; }, kDeadline))
      << "no checkpoint of the counters";

  ASSERT_EQ(::kill(first_.pid(), SIGKILL), 0);
  absl::StatusOr<nehost::testing::Registration> next = NextGeneration();
  ASSERT_TRUE(next.ok()) << next.status() << nehostd_.Log();

  Stubs restarted(next->endpoint());
  v1::StatsResponse stats = restarted.Stats();
  EXPECT_EQ(CounterOf(stats, "flows/evaluated"), 5300u);
  // Ports 1 to 1000 in turn: port 7 five times in the first batch, once in the second.
  EXPECT_EQ(CounterOf(stats, "flows/denied"), 6u);
  EXPECT_EQ(stats.rule_hits().at("flow/port-7"), 6u);
  ASSERT_EQ(stats.histograms_size(), 1);
  EXPECT_EQ(stats.histograms(0).name(), "flows/batch_size");
  EXPECT_EQ(stats.histograms(0).count(), 2u);
  EXPECT_EQ(stats.histograms(0).sum(), 5300u);
}

TEST_F(HostedFlowFilterTest, CountersSurviveAnUpgradeExactly) {
  v1::Verdict verdict;
  ASSERT_TRUE(stubs_->Evaluate(TcpOut(1, "10.0.0.1", 7), &verdict).ok());
  v1::StatsResponse before = stubs_->Stats();

  CommandResult upgraded = nehostd_.Ctl({"upgrade", kFilterName});
  ASSERT_EQ(upgraded.status.code, 0) << upgraded.err << nehostd_.Log();
  absl::StatusOr<nehost::testing::Registration> next = NextGeneration();
  ASSERT_TRUE(next.ok()) << next.status();

  Stubs upgraded_stubs(next->endpoint());
  v1::StatsResponse after = upgraded_stubs.Stats();
  EXPECT_EQ(Sorted(after.counters()), Sorted(before.counters()));
  EXPECT_EQ(Sorted(after.rule_hits()), Sorted(before.rule_hits()));
  ASSERT_EQ(after.histograms_size(), before.histograms_size());
  for (int i = 0; i < after.histograms_size(); ++i) {
    EXPECT_EQ(after.histograms(i).SerializeAsString(), before.histograms(i).SerializeAsString())
        << after.histograms(i).name();
  }
  EXPECT_EQ(after.calls().at("evaluate_flows"), before.calls().at("evaluate_flows"));
  EXPECT_EQ(after.calls().at("evaluate_flow"), 1u);
  EXPECT_EQ(after.calls().at("stats"), before.calls().at("stats") + 1);
}

TEST_F(HostedFlowFilterTest, ACorruptCheckpointIsReportedAndTheRulesStayInForce) {
  ASSERT_TRUE(
      WaitUntil([&] { return CheckpointedCounter(ServiceStateDir(), "flows/evaluated") == 5300; },
                kDeadline));
  ASSERT_EQ(::kill(first_.pid(), SIGKILL), 0);
  WriteFileOrDie(ServiceStateDir() + "/counters.json", "{\"schema_version\": 1, \"state\": ");

  absl::StatusOr<nehost::testing::Registration> next = NextGeneration();
  ASSERT_TRUE(next.ok()) << next.status() << nehostd_.Log();
  Stubs restarted(next->endpoint());
  v1::StatsResponse stats = restarted.Stats();
  v1::Verdict verdict;
  ASSERT_TRUE(restarted.Evaluate(TcpOut(1, "10.0.0.1", 7), &verdict).ok());

  EXPECT_EQ(CounterOf(stats, "flows/evaluated"), 0u);
  EXPECT_EQ(CounterOf(stats, "checkpoint/load_failures"), 1u);
  EXPECT_EQ(verdict.rule(), "port-7");
  EXPECT_TRUE(std::filesystem::exists(ServiceStateDir() + "/counters.json.bad"));
  EXPECT_THAT(nehostd_.Log(), HasSubstr("counter checkpoint not loaded"));
}

}  // namespace
}  // namespace nehost::filter
