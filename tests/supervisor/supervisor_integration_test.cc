// nehostd as a user meets it: a real process in temporary folders, hosting real extensions,
// asked through its gRPC socket and through nehostctl.
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/unix_socket.h"
#include "gtest/gtest.h"
#include "tests/support/nehostd.h"

namespace nehost::testing {
namespace {

using nehost::supervisor::v1::ServiceState;
namespace v1 = nehost::supervisor::v1;
namespace filter = nehost::filter::v1;

constexpr char kFilter[] = "org.nehost.filter";

std::chrono::system_clock::time_point In(absl::Duration duration) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(duration));
}

grpc::Status CallStatus(filter::Filter::Stub& stub, filter::StatusResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(10)));
  return stub.Status(&context, {}, response);
}

// A definition of the built nehost-filter under another name, with extra settings.
std::string FilterDefinition(const std::string& name, const std::string& extra = "") {
  return absl::StrCat("name: \"", name, "\"\nexecutable: \"", FilterBinary(), "\"\n", extra);
}

class SupervisorTest : public ::testing::Test {
 protected:
  TempDir root_;
  Nehostd nehostd_{root_};
};

TEST_F(SupervisorTest, LookupReturnsTheVerifiedEmbeddedFilter) {
  ASSERT_TRUE(nehostd_.Start());

  absl::StatusOr<Registration> registration = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(registration.ok()) << registration.status() << nehostd_.Log();
  EXPECT_EQ(registration->state(), v1::READY);
  EXPECT_EQ(registration->generation(), 1u);
  EXPECT_EQ(registration->endpoint(),
            "unix:" + nehostd_.runtime_dir + "/services/org.nehost.filter.sock");
  EXPECT_EQ(registration->executable(), FilterBinary());
  EXPECT_EQ(registration->executable_sha256().size(), 64u);
  EXPECT_TRUE(ProcessAlive(registration->pid()));

  filter::StatusResponse status;
  ASSERT_TRUE(CallStatus(*nehostd_.FilterStub(registration->endpoint()), &status).ok());
  EXPECT_EQ(status.pid(), registration->pid());
  EXPECT_EQ(status.generation(), 1u);
  EXPECT_EQ(status.service(), kFilter);
}

TEST_F(SupervisorTest, RulesSurviveKillNineOfTheExtension) {
  ASSERT_TRUE(nehostd_.Start());
  absl::StatusOr<Registration> first = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(first.ok()) << first.status();
  auto stub = nehostd_.FilterStub(first->endpoint());

  grpc::ClientContext add_context;
  filter::AddRuleRequest add;
  add.mutable_rule()->set_domain("ads.example.com");
  filter::AddRuleResponse added;
  ASSERT_TRUE(stub->AddRule(&add_context, add, &added).ok());

  ASSERT_EQ(::kill(first->pid(), SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([&] { return !ProcessAlive(first->pid()); }, absl::Seconds(10)));

  absl::StatusOr<Registration> second = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(second.ok()) << second.status() << nehostd_.Log();
  EXPECT_EQ(second->generation(), 2u);
  EXPECT_NE(second->pid(), first->pid());
  ASSERT_GE(second->recent_exits_size(), 1);
  EXPECT_EQ(second->recent_exits(0).reason(), v1::CRASHED);
  EXPECT_EQ(second->recent_exits(0).signal(), SIGKILL);

  grpc::ClientContext list_context;
  filter::ListRulesResponse rules;
  ASSERT_TRUE(stub->ListRules(&list_context, {}, &rules).ok());
  ASSERT_EQ(rules.rules_size(), 1);
  EXPECT_EQ(rules.rules(0).domain(), "ads.example.com");
}

TEST_F(SupervisorTest, ClientConnectingDuringARestartIsServedByTheNextGeneration) {
  // A long first delay holds the service with no process for a second: the window in
  // which the connection below arrives.
  nehostd_.WriteDefinition(
      "filter.textproto",
      FilterDefinition(kFilter, "restart { initial_backoff_ms: 1000 delay_first_restart: true }"));
  ASSERT_TRUE(nehostd_.Start());
  absl::StatusOr<Registration> first = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(first.ok()) << first.status();

  ASSERT_EQ(::kill(first->pid(), SIGKILL), 0);
  ASSERT_TRUE(nehostd_.WaitForState(kFilter, v1::BACKOFF));

  std::string path = first->endpoint().substr(sizeof "unix:" - 1);
  absl::StatusOr<UniqueFd> connection = ConnectUnix(path);
  ASSERT_TRUE(connection.ok()) << "refused while no generation accepts: " << connection.status();
  absl::StatusOr<Registration> during = nehostd_.Find(kFilter);
  ASSERT_TRUE(during.ok());
  EXPECT_EQ(during->pid(), 0) << "the connection was meant to arrive between generations";

  auto channel = grpc::CreateInsecureChannelFromFd("between-generations", connection->Release());
  auto stub = filter::Filter::NewStub(channel);
  filter::StatusResponse status;
  grpc::Status called = CallStatus(*stub, &status);
  ASSERT_TRUE(called.ok()) << called.error_message();
  EXPECT_EQ(status.generation(), 2u);
}

TEST_F(SupervisorTest, CrashLoopMakesLookupReportFailedWithTheReason) {
  nehostd_.WriteDefinition("crasher.textproto",
                           "name: \"org.example.crasher\"\nexecutable: \"/bin/false\"\n"
                           "restart { initial_backoff_ms: 10 crash_loop_exits: 3 }\n");
  ASSERT_TRUE(nehostd_.Start());
  ASSERT_TRUE(nehostd_.WaitForState("org.example.crasher", v1::FAILED)) << nehostd_.Log();

  absl::StatusOr<Registration> registration = nehostd_.Lookup("org.example.crasher");
  ASSERT_FALSE(registration.ok());
  EXPECT_TRUE(absl::IsUnavailable(registration.status()));
  EXPECT_NE(registration.status().message().find("crash loop: 3 exits"), std::string::npos)
      << registration.status();
  EXPECT_NE(registration.status().message().find("exited with code 1"), std::string::npos)
      << registration.status();
  EXPECT_NE(registration.status().message().find("next attempt at"), std::string::npos);
}

TEST_F(SupervisorTest, NeverReadyIsStoppedAndRecordedAsSuch) {
  nehostd_.WriteDefinition("sleeper.textproto",
                           "name: \"org.example.sleeper\"\nexecutable: \"/bin/sleep\"\n"
                           "args: \"600\"\nready_timeout_ms: 300\n"
                           "restart { initial_backoff_ms: 60000 delay_first_restart: true }\n");
  ASSERT_TRUE(nehostd_.Start());
  ASSERT_TRUE(nehostd_.WaitForState("org.example.sleeper", v1::BACKOFF)) << nehostd_.Log();

  absl::StatusOr<Registration> registration = nehostd_.Find("org.example.sleeper");
  ASSERT_TRUE(registration.ok());
  ASSERT_GE(registration->recent_exits_size(), 1);
  EXPECT_EQ(registration->recent_exits(0).reason(), v1::NEVER_READY);
  EXPECT_EQ(registration->recent_exits(0).signal(), SIGTERM);
}

TEST_F(SupervisorTest, SigtermStopsEveryServiceAndLeavesNoProcessBehind) {
  // One service ignores SIGTERM and has a child of its own: the grace ends in SIGKILL for
  // the whole process group.
  nehostd_.WriteDefinition("filter.textproto", FilterDefinition(kFilter));
  nehostd_.WriteDefinition("stubborn.textproto",
                           "name: \"org.example.stubborn\"\nexecutable: \"/bin/sh\"\n"
                           "args: \"-c\" args: \"trap '' TERM; /bin/sleep 600 & wait\"\n"
                           "ready_timeout_ms: 600000\nstop_grace_ms: 300\n");
  ASSERT_TRUE(nehostd_.Start());
  absl::StatusOr<Registration> filter = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(filter.ok()) << filter.status();
  absl::StatusOr<Registration> stubborn = nehostd_.Find("org.example.stubborn");
  ASSERT_TRUE(stubborn.ok());
  ASSERT_GT(stubborn->pid(), 0);

  std::optional<ExitStatus> exit = nehostd_.Stop();
  ASSERT_TRUE(exit.has_value()) << "nehostd did not exit after SIGTERM";
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 0);

  EXPECT_FALSE(ProcessAlive(filter->pid()));
  EXPECT_FALSE(ProcessAlive(stubborn->pid()));
  // Nothing is left in the stubborn service's process group, its sleep included.
  EXPECT_TRUE(LiveProcessesInGroup(stubborn->pid()).empty());
  EXPECT_NE(nehostd_.Log().find("host shutdown"), std::string::npos) << nehostd_.Log();
}

TEST_F(SupervisorTest, StopByRequestPersistsAcrossARestartOfNehostd) {
  ASSERT_TRUE(nehostd_.Start());
  ASSERT_TRUE(nehostd_.Lookup(kFilter).ok());
  CommandResult stopped = nehostd_.Ctl({"stop", kFilter});
  ASSERT_EQ(stopped.status.code, 0) << stopped.err;
  ASSERT_TRUE(nehostd_.WaitForState(kFilter, v1::STOPPED));
  absl::StatusOr<Registration> registration = nehostd_.Find(kFilter);
  ASSERT_TRUE(registration.ok());
  ASSERT_GE(registration->recent_exits_size(), 1);
  EXPECT_EQ(registration->recent_exits(0).reason(), v1::REQUESTED);
  ASSERT_TRUE(nehostd_.Stop().has_value());

  Nehostd again(root_);
  ASSERT_TRUE(again.Start());
  absl::StatusOr<Registration> looked_up = again.Lookup(kFilter);
  ASSERT_FALSE(looked_up.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(looked_up.status())) << looked_up.status();
  EXPECT_NE(looked_up.status().message().find("nehostctl start"), std::string::npos);

  CommandResult started = again.Ctl({"start", kFilter});
  ASSERT_EQ(started.status.code, 0) << started.err;
  absl::StatusOr<Registration> running = again.Lookup(kFilter);
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_GT(running->generation(), registration->generation());
}

TEST_F(SupervisorTest, MalformedDefinitionIsNamedAndTheOtherServicesRun) {
  nehostd_.WriteDefinition("broken.textproto", "name: \"org.example.broken\"\nexecutable: [\n");
  nehostd_.WriteDefinition("filter.textproto", FilterDefinition(kFilter));
  ASSERT_TRUE(nehostd_.Start());

  EXPECT_TRUE(nehostd_.Lookup(kFilter).ok());
  EXPECT_NE(nehostd_.Log().find("broken.textproto: line 2"), std::string::npos) << nehostd_.Log();
  absl::StatusOr<Registration> broken = nehostd_.Lookup("org.example.broken");
  EXPECT_TRUE(absl::IsNotFound(broken.status())) << broken.status();
}

TEST_F(SupervisorTest, MissingAndNonExecutableBinariesAreReportedByLookup) {
  std::string not_executable = root_ / "not-executable";
  WriteFileOrDie(not_executable, "#!/bin/sh\n");
  nehostd_.WriteDefinition("missing.textproto",
                           "name: \"org.example.missing\"\nexecutable: \"/nonexistent/bin/x\"\n");
  nehostd_.WriteDefinition(
      "plain.textproto",
      absl::StrCat("name: \"org.example.plain\"\n", "executable: \"", not_executable, "\"\n"));
  ASSERT_TRUE(nehostd_.Start());

  absl::StatusOr<Registration> missing = nehostd_.Lookup("org.example.missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/bin/x: No such file or directory"),
            std::string::npos)
      << missing.status();
  absl::StatusOr<Registration> plain = nehostd_.Lookup("org.example.plain");
  ASSERT_FALSE(plain.ok());
  EXPECT_NE(plain.status().message().find("is not executable"), std::string::npos)
      << plain.status();
}

TEST_F(SupervisorTest, TooLongSocketPathFailsThatServiceAlone) {
  std::string long_name = "org.example." + std::string(100, 'x');
  nehostd_.WriteDefinition("long.textproto", FilterDefinition(long_name));
  nehostd_.WriteDefinition("filter.textproto", FilterDefinition(kFilter));
  ASSERT_TRUE(nehostd_.Start());

  EXPECT_TRUE(nehostd_.Lookup(kFilter).ok());
  absl::StatusOr<Registration> too_long = nehostd_.Lookup(long_name);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("a Unix socket path holds at most 107"),
            std::string::npos)
      << too_long.status();
}

TEST(SupervisorStartup, UnwritableRuntimeFolderIsAClearError) {
  TempDir root;
  WriteFileOrDie(root / "file", "");
  CommandResult result = RunCommand({NehostdBinary(), "--config-dir", root / "etc", "--runtime-dir",
                                     root / "file/run", "--state-dir", root / "state"});
  EXPECT_EQ(result.status.code, 1);
  EXPECT_NE(result.err.find("cannot start"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(root / "file/run"), std::string::npos) << result.err;
}

TEST(SupervisorStartup, SecondNehostdOnOneRuntimeFolderIsRefused) {
  TempDir root;
  Nehostd first(root);
  ASSERT_TRUE(first.Start());
  CommandResult second =
      RunCommand({NehostdBinary(), "--config-dir", first.config_dir, "--runtime-dir",
                  first.runtime_dir, "--state-dir", first.state_dir});
  EXPECT_EQ(second.status.code, 1);
  EXPECT_NE(second.err.find("another nehostd already runs"), std::string::npos) << second.err;
  EXPECT_TRUE(first.Lookup(kFilter).ok());
}

TEST(SupervisorStartup, UsageErrorsExitTwo) {
  CommandResult result = RunCommand({NehostdBinary(), "--no-such-flag"});
  EXPECT_EQ(result.status.code, 2);
  EXPECT_NE(result.err.find("--help"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace nehost::testing
