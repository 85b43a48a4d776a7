#include "agent/commands.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"

namespace nehost::agent {
namespace {

TEST(ExitCodeFor, NotFoundFromNehostdIsAnUnknownName) {
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kNotFound, Server::kSupervisor), ExitCode::kUnknownName);
}

TEST(ExitCodeFor, NotFoundFromAServiceIsAPlainFailure) {
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kNotFound, Server::kService), ExitCode::kFailure);
}

TEST(ExitCodeFor, CodesThatMeanTryLaterAreUnavailable) {
  for (Server server : {Server::kSupervisor, Server::kService}) {
    EXPECT_EQ(ExitCodeFor(absl::StatusCode::kUnavailable, server), ExitCode::kUnavailable);
    EXPECT_EQ(ExitCodeFor(absl::StatusCode::kDeadlineExceeded, server), ExitCode::kUnavailable);
    EXPECT_EQ(ExitCodeFor(absl::StatusCode::kFailedPrecondition, server), ExitCode::kUnavailable);
  }
}

TEST(ExitCodeFor, OkAndOtherCodes) {
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kOk, Server::kSupervisor), ExitCode::kOk);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kInvalidArgument, Server::kService), ExitCode::kFailure);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kInternal, Server::kSupervisor), ExitCode::kFailure);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kUnimplemented, Server::kService), ExitCode::kFailure);
}

TEST(ExitCode, ValuesAreTheDocumentedOnes) {
  EXPECT_EQ(static_cast<int>(ExitCode::kOk), 0);
  EXPECT_EQ(static_cast<int>(ExitCode::kFailure), 1);
  EXPECT_EQ(static_cast<int>(ExitCode::kUsage), 2);
  EXPECT_EQ(static_cast<int>(ExitCode::kUnknownName), 3);
  EXPECT_EQ(static_cast<int>(ExitCode::kUnavailable), 4);
}

TEST(LookupWaitMs, EndsBeforeTheDeadline) {
  EXPECT_EQ(LookupWaitMs(absl::Seconds(10)), 9000u);
  EXPECT_EQ(LookupWaitMs(absl::Seconds(1)), 500u);
  EXPECT_EQ(LookupWaitMs(absl::Milliseconds(300)), 150u);
}

// 0 asks for nehostd's default wait, which could outlast a short deadline.
TEST(LookupWaitMs, IsNeverZero) { EXPECT_EQ(LookupWaitMs(absl::Milliseconds(1)), 1u); }

TEST(SupervisorSocketPath, IsInTheRuntimeFolder) {
  EXPECT_EQ(SupervisorSocketPath("/run/nehost"), "/run/nehost/nehostd.sock");
  EXPECT_EQ(SupervisorSocketPath("/run/nehost/"), "/run/nehost/nehostd.sock");
  EXPECT_EQ(SupervisorSocketPath("relative"), "relative/nehostd.sock");
}

}  // namespace
}  // namespace nehost::agent

namespace nehost::agent {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

using supervisor::v1::Supervisor;

// nehostd as far as nehostctl can tell: it answers with whatever a test sets up.
// The test sets the fields before any call and reads them after the command returns.
class FakeNehostd final : public Supervisor::Service {
 public:
  Registration serving;  // what Lookup answers
  std::vector<UpgradeProgress> progress;
  grpc::Status upgrade_ends = grpc::Status::OK;
  bool upgrade_hangs = false;  // until the caller gives up
  supervisor::v1::UpgradeRequest upgrade_request;
  DoctorResponse doctor;
  grpc::Status doctor_ends = grpc::Status::OK;
  absl::Notification reexec_asked;

  grpc::Status Lookup(grpc::ServerContext*, const supervisor::v1::LookupRequest*,
                      supervisor::v1::LookupResponse* response) override {
    *response->mutable_registration() = serving;
    return grpc::Status::OK;
  }

  grpc::Status List(grpc::ServerContext*, const supervisor::v1::ListRequest*,
                    ListResponse* response) override {
    *response->add_registrations() = serving;
    return grpc::Status::OK;
  }

  grpc::Status Upgrade(grpc::ServerContext* context, const supervisor::v1::UpgradeRequest* request,
                       grpc::ServerWriter<UpgradeProgress>* writer) override {
    upgrade_request = *request;
    for (const UpgradeProgress& step : progress) writer->Write(step);
    while (upgrade_hangs && !context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
    return upgrade_ends;
  }

  grpc::Status Doctor(grpc::ServerContext*, const supervisor::v1::DoctorRequest*,
                      DoctorResponse* response) override {
    *response = doctor;
    return doctor_ends;
  }

  grpc::Status Reexec(grpc::ServerContext*, const supervisor::v1::ReexecRequest*,
                      supervisor::v1::ReexecResponse* response) override {
    response->set_pid(4242);
    reexec_asked.Notify();
    return grpc::Status::OK;
  }
};

// What a command printed, and its exit status.
struct Ran {
  ExitCode code;
  std::string out;
  std::string err;
};

// Sends std::cout and std::cerr to strings while it lives.
class CapturedOutput {
 public:
  CapturedOutput()
      : old_out_(std::cout.rdbuf(out_.rdbuf())), old_err_(std::cerr.rdbuf(err_.rdbuf())) {}
  ~CapturedOutput() {
    std::cout.rdbuf(old_out_);
    std::cerr.rdbuf(old_err_);
  }

  std::string out() const { return out_.str(); }
  std::string err() const { return err_.str(); }

 private:
  std::ostringstream out_;
  std::ostringstream err_;
  std::streambuf* old_out_;
  std::streambuf* old_err_;
};

class CommandsWithFakeNehostd : public ::testing::Test {
 protected:
  void SetUp() override {
    // Plain progress lines even when the test runs on a terminal.
    setenv("TERM", "dumb", 1);
    char pattern[] = "/tmp/nehostctl-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    options_.runtime_dir = pattern;
    options_.timeout = absl::Seconds(5);
    serving_ = Serve();
  }

  void TearDown() override {
    if (serving_) serving_->Shutdown();
    std::filesystem::remove_all(options_.runtime_dir);
  }

  std::unique_ptr<grpc::Server> Serve() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + SupervisorSocketPath(options_.runtime_dir),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(&nehostd_);
    return builder.BuildAndStart();
  }

  Ran Run(const std::function<ExitCode()>& command) {
    CapturedOutput output;
    ExitCode code = command();
    return {code, output.out(), output.err()};
  }

  static UpgradeProgress Step(const std::string& step, const std::string& message,
                              uint64_t generation = 4) {
    UpgradeProgress progress;
    *progress.mutable_at() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(
        1714557600250);  // 2024-05-01T10:00:00.250Z
    progress.set_step(step);
    progress.set_message(message);
    progress.set_generation(generation);
    return progress;
  }

  static UpgradeProgress Last(bool succeeded, const std::string& message) {
    UpgradeProgress last = Step("done", message);
    last.set_done(true);
    last.set_succeeded(succeeded);
    last.set_rolled_back(!succeeded);
    return last;
  }

  void ServeGeneration(uint64_t generation, const std::string& version) {
    nehostd_.serving.set_name(kName);
    nehostd_.serving.set_generation(generation);
    nehostd_.serving.set_version(version);
    nehostd_.serving.set_state(supervisor::v1::READY);
  }

  static constexpr char kName[] = "org.nehost.filter";
  FakeNehostd nehostd_;
  GlobalOptions options_;
  std::unique_ptr<grpc::Server> serving_;
};

TEST_F(CommandsWithFakeNehostd, UpgradeShowsEachStepThenTheGenerationThatServes) {
  nehostd_.progress = {Step("verify", "0.2.0 is installed"), Step("launch", "started pid 99"),
                       Step("switch", "registry names generation 4"), Last(true, "")};
  ServeGeneration(4, "0.2.0");

  Ran ran = Run([&] { return Upgrade(options_, kName, "0.2.0"); });

  EXPECT_EQ(ran.code, ExitCode::kOk) << ran.err;
  EXPECT_EQ(nehostd_.upgrade_request.name(), kName);
  EXPECT_EQ(nehostd_.upgrade_request.to_version(), "0.2.0");
  std::vector<std::string> lines = absl::StrSplit(ran.out, '\n');
  ASSERT_EQ(lines.size(), 6u) << ran.out;
  EXPECT_EQ(lines[0], "10:00:00.250 verify   0.2.0 is installed");
  EXPECT_EQ(lines[2], "10:00:00.250 switch   registry names generation 4");
  EXPECT_EQ(lines[3], "10:00:00.250 done");
  EXPECT_THAT(lines[4],
              StartsWith("upgraded org.nehost.filter to generation 4 (version 0.2.0) in "));
  EXPECT_THAT(lines[4], EndsWith(" ms"));
  EXPECT_THAT(ran.err, IsEmpty());
}

TEST_F(CommandsWithFakeNehostd, RollbackExitsFourWithTheReasonAndTheGenerationThatStillServes) {
  nehostd_.progress = {Step("launch", "started pid 99"),
                       Step("rollback", "generation 4 exited at start: exit code 1"),
                       Last(false, "")};
  ServeGeneration(3, "0.1.0");

  Ran ran = Run([&] { return Upgrade(options_, kName, ""); });

  EXPECT_EQ(ran.code, ExitCode::kUnavailable);
  EXPECT_THAT(ran.out, EndsWith("\nrolled back org.nehost.filter: generation 4 exited at start: "
                                "exit code 1; generation 3 keeps serving\n"));
}

TEST_F(CommandsWithFakeNehostd, UpgradeJsonIsOneObjectPerMessageAndNothingElse) {
  nehostd_.progress = {Step("launch", "started pid 99"), Last(false, "never ready")};
  ServeGeneration(3, "0.1.0");
  options_.format = OutputFormat::kJson;

  Ran ran = Run([&] { return Upgrade(options_, kName, ""); });

  EXPECT_EQ(ran.code, ExitCode::kUnavailable);
  std::vector<std::string> lines = absl::StrSplit(ran.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << ran.out;
  EXPECT_THAT(lines[0], StartsWith("{\"at\":\"2024-05-01T10:00:00.250Z\""));
  EXPECT_THAT(lines[1], HasSubstr("\"rolled_back\":true"));
}

TEST_F(CommandsWithFakeNehostd, UpgradeAlreadyUnderWayExitsFourWithNehostdsMessage) {
  nehostd_.upgrade_ends = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                       "an upgrade of org.nehost.filter is already under way");

  Ran ran = Run([&] { return Upgrade(options_, kName, ""); });

  EXPECT_EQ(ran.code, ExitCode::kUnavailable);
  EXPECT_THAT(ran.out, IsEmpty());
  EXPECT_EQ(ran.err,
            "nehostctl: upgrade org.nehost.filter: an upgrade of org.nehost.filter is already "
            "under way\n");
}

TEST_F(CommandsWithFakeNehostd, UpgradeOfAnUnknownNameExitsThree) {
  nehostd_.upgrade_ends = grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service name");

  EXPECT_EQ(Run([&] { return Upgrade(options_, "org.example.nothing", ""); }).code,
            ExitCode::kUnknownName);
}

TEST_F(CommandsWithFakeNehostd, UpgradeThatEndsWithoutItsLastStepFails) {
  nehostd_.progress = {Step("launch", "started pid 99")};

  Ran ran = Run([&] { return Upgrade(options_, kName, ""); });

  EXPECT_EQ(ran.code, ExitCode::kFailure);
  EXPECT_THAT(ran.err, HasSubstr("stream before its last step"));
}

TEST_F(CommandsWithFakeNehostd, UpgradeFailedWithoutRollbackIsAFailure) {
  UpgradeProgress last = Last(false, "generation 3 did not drain");
  last.set_rolled_back(false);
  nehostd_.progress = {last};

  Ran ran = Run([&] { return Upgrade(options_, kName, ""); });

  EXPECT_EQ(ran.code, ExitCode::kFailure);
  EXPECT_EQ(ran.err, "nehostctl: upgrade org.nehost.filter: generation 3 did not drain\n");
}

TEST_F(CommandsWithFakeNehostd, UpgradeIsBoundedByATimeoutGivenExplicitly) {
  nehostd_.progress = {Step("ready", "waiting for READY=1")};
  nehostd_.upgrade_hangs = true;
  options_.timeout = absl::Milliseconds(300);
  options_.timeout_given = true;

  Ran ran = Run([&] { return Upgrade(options_, kName, ""); });

  EXPECT_EQ(ran.code, ExitCode::kUnavailable);
  EXPECT_THAT(ran.err, HasSubstr("no outcome within 300ms"));
  EXPECT_THAT(ran.err, HasSubstr("nehostctl doctor org.nehost.filter"));
}

TEST_F(CommandsWithFakeNehostd, NehostdWithoutTheCallSaysSo) {
  nehostd_.upgrade_ends = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "");

  Ran ran = Run([&] { return Upgrade(options_, kName, ""); });

  EXPECT_EQ(ran.code, ExitCode::kFailure);
  EXPECT_THAT(ran.err, HasSubstr("does not implement this call"));
}

TEST_F(CommandsWithFakeNehostd, DoctorExitsZeroOnlyWhenNothingIsWrong) {
  ServeGeneration(3, "0.1.0");
  *nehostd_.doctor.mutable_registration() = nehostd_.serving;
  supervisor::v1::DoctorCheck* check = nehostd_.doctor.add_checks();
  check->set_name("alive");
  check->set_ok(true);

  Ran healthy = Run([&] { return Doctor(options_, kName); });
  EXPECT_EQ(healthy.code, ExitCode::kOk);
  EXPECT_THAT(healthy.out, HasSubstr("\nchecks:\n  ok  alive\n"));

  check->set_ok(false);
  Ran failing = Run([&] { return Doctor(options_, kName); });
  EXPECT_EQ(failing.code, ExitCode::kUnavailable);
  EXPECT_THAT(failing.out, HasSubstr("  FAIL  alive\n"));

  check->set_ok(true);
  nehostd_.doctor.add_strays()->set_pid(99);
  EXPECT_EQ(Run([&] { return Doctor(options_, kName); }).code, ExitCode::kUnavailable);
}

TEST_F(CommandsWithFakeNehostd, DoctorOfAnUnknownNameExitsThree) {
  nehostd_.doctor_ends = grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service name");

  Ran ran = Run([&] { return Doctor(options_, "org.example.nothing"); });

  EXPECT_EQ(ran.code, ExitCode::kUnknownName);
  EXPECT_EQ(ran.err, "nehostctl: doctor org.example.nothing: unknown service name\n");
}

TEST_F(CommandsWithFakeNehostd, ReexecWaitsUntilTheNewNehostdAnswers) {
  std::future<Ran> reexec =
      std::async(std::launch::async, [&] { return Run([&] { return Reexec(options_); }); });

  // What a re-executing nehostd looks like from outside: its connections close, then a new
  // server answers on the same socket.
  ASSERT_TRUE(nehostd_.reexec_asked.WaitForNotificationWithTimeout(absl::Seconds(5)));
  serving_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  serving_ = Serve();
  Ran ran = reexec.get();

  EXPECT_EQ(ran.code, ExitCode::kOk) << ran.err;
  EXPECT_THAT(ran.out, ::testing::MatchesRegex("nehostd pid 4242 re-executing; services keep "
                                               "running\nnehostd is back after [0-9]+ ms\n"));
}

TEST_F(CommandsWithFakeNehostd, ReexecExitsFourWhenNehostdDoesNotComeBack) {
  options_.timeout = absl::Milliseconds(500);
  std::future<Ran> reexec =
      std::async(std::launch::async, [&] { return Run([&] { return Reexec(options_); }); });

  ASSERT_TRUE(nehostd_.reexec_asked.WaitForNotificationWithTimeout(absl::Seconds(5)));
  serving_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  serving_.reset();
  Ran ran = reexec.get();

  EXPECT_EQ(ran.code, ExitCode::kUnavailable);
  EXPECT_EQ(ran.out, "nehostd pid 4242 re-executing; services keep running\n");
  EXPECT_THAT(ran.err,
              StartsWith("nehostctl: reexec: nehostd did not answer again within 500ms: "));
}

}  // namespace
}  // namespace nehost::agent
