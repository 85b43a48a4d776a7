// nehost-filter as a real process: standalone on a socket it binds, and under Debian's
// systemd-socket-activate, a peer we did not write. Each test runs in a temporary folder of its
// own, and every process it starts is killed and reaped when the test ends.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/files.h"
#include "common/grpc_client.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "common/version.h"
#include "nehost/filter/v1/filter.grpc.pb.h"
#include "tests/support/nehostd.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::testing::CommandResult;
using ::nehost::testing::ExitStatus;
using ::nehost::testing::FilterBinary;
using ::nehost::testing::RunCommand;
using ::nehost::testing::Subprocess;
using ::nehost::testing::TempDir;
using ::testing::HasSubstr;

constexpr char kSocketActivateBinary[] = SYSTEMD_SOCKET_ACTIVATE_BINARY;

// Generous: a loaded CI machine may take a while to start a process; nothing waits this long
// when things work.
constexpr absl::Duration kDeadline = absl::Seconds(20);

// "exit 0", "signal 9": what a failed expectation should show.
std::string DescribeExit(std::optional<ExitStatus> status) {
  if (!status.has_value()) return "still running";
  return absl::StrCat(status->exited ? "exit " : "signal ", status->code);
}

// Waits for an sd_notify datagram that contains wanted, and returns it.
std::optional<std::string> WaitForNotification(int socket, absl::string_view wanted) {
  absl::Time deadline = absl::Now() + kDeadline;
  for (;;) {
    int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) return std::nullopt;

    pollfd readable{socket, POLLIN, 0};
    if (::poll(&readable, 1, static_cast<int>(left_ms)) != 1) continue;
    char buffer[4096];
    ssize_t n = ::recv(socket, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0 && absl::StrContains(absl::string_view(buffer, n), wanted)) {
      return std::string(buffer, n);
    }
  }
}

// A call that waits, up to the deadline, for the server to accept the connection.
template <typename Request, typename Response, typename Method>
grpc::Status Call(v1::Filter::Stub* stub, Method method, const Request& request,
                  Response* response) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
  context.set_wait_for_ready(true);
  return (stub->*method)(&context, request, response);
}

v1::AddRuleRequest AddRuleRequest(const std::string& domain) {
  v1::AddRuleRequest request;
  request.mutable_rule()->set_domain(domain);
  return request;
}

// Debian ships no generated grpc.health.v1 stubs, so Check goes through the generic stub with
// raw bytes: the request is empty, and HealthCheckResponse{status: SERVING} is 0x08 0x01.
grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, std::string* response) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kDeadline));
  context.set_wait_for_ready(true);

  grpc::Slice empty_slice("");
  grpc::ByteBuffer request(&empty_slice, 1);
  grpc::ByteBuffer reply;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &reply,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  grpc::Status status = done.get_future().get();

  std::vector<grpc::Slice> slices;
  if (status.ok()) (void)reply.Dump(&slices);
  for (const grpc::Slice& slice : slices) {
    response->append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return status;
}

class FilterProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directory(state_dir_);
    absl::StatusOr<UniqueFd> notify = BindUnixDatagram(root_ / "notify.sock");
    ASSERT_TRUE(notify.ok()) << notify.status();
    notify_ = *std::move(notify);
  }

  // nehost-filter on a socket it binds itself; ready_ holds its READY=1 message, if it sent one.
  std::unique_ptr<Subprocess> StartStandalone(std::vector<std::string> env = {}) {
    env.push_back("NOTIFY_SOCKET=" + (root_ / "notify.sock"));
    auto filter = std::make_unique<Subprocess>(
        std::vector<std::string>{FilterBinary(), "--listen", socket_path_, "--state-dir",
                                 state_dir_},
        env, "");
    ready_ = WaitForNotification(notify_.get(), "READY=1");
    return filter;
  }

  // nehost-filter as systemd-socket-activate runs it: started on the first connection, with
  // the socket as fd 3 named "grpc", exec'd in place of the activator.
  std::unique_ptr<Subprocess> StartSocketActivated(const std::string& socket_path) {
    return std::make_unique<Subprocess>(
        std::vector<std::string>{kSocketActivateBinary, "-l", socket_path, "--fdname=grpc", "-E",
                                 "STATE_DIRECTORY=" + state_dir_, FilterBinary()},
        std::vector<std::string>{}, "");
  }

  const TempDir root_;
  const std::string state_dir_ = root_ / "state";
  const std::string socket_path_ = root_ / "filter.sock";
  UniqueFd notify_;
  std::optional<std::string> ready_;
};

TEST_F(FilterProcessTest, StandaloneNotifiesReadyAndReportsStatus) {
  std::unique_ptr<Subprocess> filter =
      StartStandalone({"NEHOST_GENERATION=7", "NEHOST_SERVICE=org.nehost.filter"});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";
  EXPECT_THAT(*ready_, HasSubstr(absl::StrCat("STATUS=serving version=", kVersion, " rules=0")));

  struct stat socket_info;
  ASSERT_EQ(::stat(socket_path_.c_str(), &socket_info), 0);
  EXPECT_EQ(socket_info.st_mode & 07777, 0660u);

  std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(DialUnix(socket_path_));
  v1::StatusResponse status;
  grpc::Status called = Call(stub.get(), &v1::Filter::Stub::Status, v1::StatusRequest(), &status);
  ASSERT_TRUE(called.ok()) << called.error_message();
  EXPECT_EQ(status.version(), kVersion);
  EXPECT_EQ(status.pid(), filter->pid());
  EXPECT_EQ(status.generation(), 7u);
  EXPECT_EQ(status.service(), "org.nehost.filter");
  EXPECT_EQ(status.rule_count(), 0u);
}

TEST_F(FilterProcessTest, StandaloneAddsAndListsRules) {
  std::unique_ptr<Subprocess> filter = StartStandalone();
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";
  std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(DialUnix(socket_path_));

  v1::AddRuleResponse added;
  grpc::Status called =
      Call(stub.get(), &v1::Filter::Stub::AddRule, AddRuleRequest("Ads.Example.COM."), &added);
  ASSERT_TRUE(called.ok()) << called.error_message();
  EXPECT_TRUE(added.added());
  EXPECT_EQ(added.rule().domain(), "ads.example.com");
  EXPECT_EQ(added.rule().action(), v1::Rule::DENY);
  EXPECT_EQ(added.rule().match(), v1::Rule::EXACT);

  v1::AddRuleResponse refused;
  called = Call(stub.get(), &v1::Filter::Stub::AddRule, AddRuleRequest("bad..domain"), &refused);
  EXPECT_EQ(called.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(called.error_message(), HasSubstr("\"bad..domain\": label 2 is empty"));

  v1::ListRulesResponse listed;
  called = Call(stub.get(), &v1::Filter::Stub::ListRules, v1::ListRulesRequest(), &listed);
  ASSERT_TRUE(called.ok()) << called.error_message();
  ASSERT_EQ(listed.rules_size(), 1);
  EXPECT_EQ(listed.rules(0).domain(), "ads.example.com");
}

TEST_F(FilterProcessTest, StandaloneStopsOnSigtermWithExitZero) {
  std::unique_ptr<Subprocess> filter = StartStandalone();
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";

  filter->Signal(SIGTERM);

  EXPECT_TRUE(WaitForNotification(notify_.get(), "STOPPING=1").has_value());
  EXPECT_EQ(DescribeExit(filter->Wait(kDeadline)), "exit 0");
}

TEST_F(FilterProcessTest, ServesUnderSystemdSocketActivate) {
  std::unique_ptr<Subprocess> activated = StartSocketActivated(socket_path_);
  std::shared_ptr<grpc::Channel> channel = DialUnix(socket_path_);
  std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(channel);

  v1::StatusResponse status;
  grpc::Status called = Call(stub.get(), &v1::Filter::Stub::Status, v1::StatusRequest(), &status);
  ASSERT_TRUE(called.ok()) << called.error_message();
  EXPECT_EQ(status.version(), kVersion);
  EXPECT_EQ(status.pid(), activated->pid()) << "the activator execs the filter in its place";
  EXPECT_EQ(status.generation(), 0u);

  std::string health;
  called = HealthCheck(channel, &health);
  ASSERT_TRUE(called.ok()) << called.error_message();
  EXPECT_EQ(health, "\x08\x01") << "grpc.health.v1 Check should answer SERVING";

  stub.reset();
  channel.reset();
  activated->Signal(SIGTERM);
  EXPECT_EQ(DescribeExit(activated->Wait(kDeadline)), "exit 0");
}

TEST_F(FilterProcessTest, RulesPersistAcrossSocketActivatedRuns) {
  std::unique_ptr<Subprocess> first = StartSocketActivated(socket_path_);
  std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(DialUnix(socket_path_));
  v1::AddRuleResponse added;
  grpc::Status called =
      Call(stub.get(), &v1::Filter::Stub::AddRule, AddRuleRequest("ads.example.com"), &added);
  ASSERT_TRUE(called.ok()) << called.error_message();

  // A client that is done closes its connection. An idle one left open delays the stop by the
  // whole grace: this process would answer the server's GOAWAY only from gRPC's backup poller.
  stub.reset();
  first->Signal(SIGTERM);
  ASSERT_EQ(DescribeExit(first->Wait(kDeadline)), "exit 0");

  std::string second_socket = root_ / "filter-2.sock";
  std::unique_ptr<Subprocess> second = StartSocketActivated(second_socket);
  stub = v1::Filter::NewStub(DialUnix(second_socket));
  v1::ListRulesResponse listed;
  called = Call(stub.get(), &v1::Filter::Stub::ListRules, v1::ListRulesRequest(), &listed);
  ASSERT_TRUE(called.ok()) << called.error_message();
  ASSERT_EQ(listed.rules_size(), 1);
  EXPECT_EQ(listed.rules(0).domain(), "ads.example.com");
}

TEST_F(FilterProcessTest, CorruptRuleFileStopsStartupAndIsLeftAlone) {
  const std::string corrupt = "{\"schema_version\": 1, \"rules\": [";
  ASSERT_TRUE(WriteFileAtomically(state_dir_ + "/rules.json", corrupt).ok());

  CommandResult result =
      RunCommand({FilterBinary(), "--listen", socket_path_, "--state-dir", state_dir_}, kDeadline);

  EXPECT_EQ(DescribeExit(result.status), "exit 1");
  EXPECT_THAT(result.err, HasSubstr("load rules: parse " + state_dir_ + "/rules.json"));
  EXPECT_EQ(ReadFile(state_dir_ + "/rules.json").value_or(""), corrupt);
}

TEST_F(FilterProcessTest, MissingStateFolderIsAUsageError) {
  CommandResult result = RunCommand(
      {"/usr/bin/env", "-u", "STATE_DIRECTORY", FilterBinary(), "--listen", socket_path_},
      kDeadline);

  EXPECT_EQ(DescribeExit(result.status), "exit 2");
  EXPECT_EQ(result.err,
            "nehost-filter: no state folder: pass --state-dir DIR or set STATE_DIRECTORY "
            "(see --help)\n");
}

}  // namespace
}  // namespace nehost::filter
