// nehost-filter as a real process: standalone on a socket it binds, under Debian's
// systemd-socket-activate, a peer we did not write, and as nehostd runs a generation, with
// inherited sockets and a control channel. Each test runs in a temporary folder of its own,
// and every process it starts is killed and reaped when the test ends.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/files.h"
#include "common/grpc_client.h"
#include "common/listen_fds.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "common/version.h"
#include "nehost/filter/v1/filter.grpc.pb.h"
#include "tests/extension/control_client.h"
#include "tests/support/nehostd.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::filter::testing::ControlCall;
using ::nehost::filter::testing::ControlRequest;
using ::nehost::filter::testing::ControlResponse;
using ::nehost::filter::testing::DrainRequest;
using ::nehost::filter::testing::HealthRequest;
using ::nehost::filter::testing::ImportStateRequest;
using ::nehost::filter::testing::IsListening;
using ::nehost::filter::testing::PeerCloses;
using ::nehost::filter::testing::PeerPid;
using ::nehost::filter::testing::SendRaw;
using ::nehost::filter::testing::TakeListenersRequest;
using ::nehost::testing::CommandResult;
using ::nehost::testing::ExitStatus;
using ::nehost::testing::FilterBinary;
using ::nehost::testing::RunCommand;
using ::nehost::testing::Subprocess;
using ::nehost::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr char kSocketActivateBinary[] = SYSTEMD_SOCKET_ACTIVATE_BINARY;
constexpr char kBashBinary[] = BASH_BINARY;
constexpr char kFilterV1Binary[] = FILTER_V1_BINARY;
constexpr char kFilterV3BadBinary[] = FILTER_V3BAD_BINARY;

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

v1::StatusResponse StatusOf(v1::Filter::Stub* stub) {
  v1::StatusResponse status;
  grpc::Status called = Call(stub, &v1::Filter::Stub::Status, v1::StatusRequest(), &status);
  EXPECT_TRUE(called.ok()) << called.error_message();
  return status;
}

// The path a Unix socket is bound to.
std::string SocketPathOf(int fd) {
  sockaddr_un address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "";
  return address.sun_path;
}

UniqueFd ListenOrDie(const std::string& path) {
  absl::StatusOr<UniqueFd> socket = ListenUnix(path);
  EXPECT_TRUE(socket.ok()) << socket.status();
  return socket.ok() ? *std::move(socket) : UniqueFd();
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
  std::unique_ptr<Subprocess> StartStandalone(std::vector<std::string> env = {},
                                              const std::string& socket_path = "",
                                              const std::string& binary = FilterBinary()) {
    env.push_back("NOTIFY_SOCKET=" + (root_ / "notify.sock"));
    auto filter = std::make_unique<Subprocess>(
        std::vector<std::string>{binary, "--listen",
                                 socket_path.empty() ? socket_path_ : socket_path, "--state-dir",
                                 state_dir_},
        env, "");
    ready_ = WaitForNotification(notify_.get(), "READY=1");
    return filter;
  }

  // nehost-filter as nehostd starts a generation: the sockets as fds 3, 4, ... in order, named
  // by LISTEN_FDNAMES, with LISTEN_FDS and LISTEN_PID. Only the child knows its pid, so bash
  // exports its own and execs the filter in its place, moving the sockets into place on the way
  // from duplicates the test made without close-on-exec. ready_ holds the READY=1 message.
  std::unique_ptr<Subprocess> StartWithListeners(const std::vector<InheritedSocket>& sockets,
                                                 std::vector<std::string> env) {
    std::vector<UniqueFd> passed;
    std::vector<std::string> names;
    std::string moves;
    for (size_t i = 0; i < sockets.size(); ++i) {
      // Numbered 10 and up, out of the way of the targets 3, 4, ...
      passed.emplace_back(::fcntl(sockets[i].fd, F_DUPFD, 10));
      int from = passed.back().get();
      absl::StrAppend(&moves, " ", kListenFdsStart + i, "<&", from, " ", from, "<&-");
      names.push_back(sockets[i].name);
    }

    env.push_back(absl::StrCat("LISTEN_FDS=", sockets.size()));
    env.push_back("LISTEN_FDNAMES=" + absl::StrJoin(names, ":"));
    env.push_back("NOTIFY_SOCKET=" + (root_ / "notify.sock"));
    auto filter = std::make_unique<Subprocess>(
        std::vector<std::string>{kBashBinary, "-c",
                                 "export LISTEN_PID=$$; exec \"$0\" \"$@\"" + moves, FilterBinary(),
                                 "--state-dir", state_dir_},
        env, "");
    ready_ = WaitForNotification(notify_.get(), "READY=1");
    return filter;
  }

  std::string ControlEnv(const std::string& path = "") const {
    return "NEHOST_CONTROL_SOCKET=" + (path.empty() ? control_path_ : path);
  }

  UniqueFd ConnectControl(const std::string& path = "") {
    absl::StatusOr<UniqueFd> connection = ConnectUnix(path.empty() ? control_path_ : path);
    EXPECT_TRUE(connection.ok()) << connection.status();
    return connection.ok() ? *std::move(connection) : UniqueFd();
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
  const std::string control_path_ = root_ / "filter.ctl";
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
  std::unique_ptr<Subprocess> filter = StartStandalone({ControlEnv()});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";
  UniqueFd idle_control = ConnectControl();

  filter->Signal(SIGTERM);

  EXPECT_TRUE(WaitForNotification(notify_.get(), "STOPPING=1").has_value());
  EXPECT_EQ(DescribeExit(filter->Wait(kDeadline)), "exit 0");
  EXPECT_FALSE(std::filesystem::exists(control_path_)) << "the control socket file stays behind";
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

TEST_F(FilterProcessTest, ControlSocketListensBeforeReadyAndNamesTheFilter) {
  std::unique_ptr<Subprocess> filter = StartStandalone({ControlEnv(), "NEHOST_GENERATION=7"});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";

  struct stat socket_info;
  ASSERT_EQ(::stat(control_path_.c_str(), &socket_info), 0) << "no control socket at READY=1";
  EXPECT_EQ(socket_info.st_mode & 07777, 0600u);
  UniqueFd control = ConnectControl();
  EXPECT_EQ(PeerPid(control.get()), filter->pid());

  absl::StatusOr<ControlResponse> health = ControlCall(control.get(), HealthRequest());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->error(), "");
  EXPECT_EQ(health->serving(), ControlResponse::SERVING);
  EXPECT_EQ(health->generation(), 7u);
  EXPECT_EQ(health->pid(), filter->pid());
  EXPECT_EQ(health->version(), kVersion);
}

// nehostd restarts: its connection closes, and the next nehostd connects anew.
TEST_F(FilterProcessTest, ControlChannelServesANewConnectionAfterThePreviousCloses) {
  std::unique_ptr<Subprocess> filter = StartStandalone({ControlEnv()});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";

  for (int connection = 0; connection < 3; ++connection) {
    UniqueFd control = ConnectControl();
    absl::StatusOr<ControlResponse> health = ControlCall(control.get(), HealthRequest());
    ASSERT_TRUE(health.ok()) << "connection " << connection << ": " << health.status();
    EXPECT_EQ(health->serving(), ControlResponse::SERVING);
  }
}

TEST_F(FilterProcessTest, GarbageOnTheControlChannelClosesOnlyThatConnection) {
  std::unique_ptr<Subprocess> filter = StartStandalone({ControlEnv()});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";

  UniqueFd garbage = ConnectControl();
  ASSERT_TRUE(SendRaw(garbage.get(), std::string("\0\0\0\4\xff\xff\xff\xff", 8)));
  EXPECT_TRUE(PeerCloses(garbage.get()));
  UniqueFd oversized = ConnectControl();
  ASSERT_TRUE(SendRaw(oversized.get(), "\x7f\xff\xff\xff"));
  EXPECT_TRUE(PeerCloses(oversized.get()));

  UniqueFd control = ConnectControl();
  absl::StatusOr<ControlResponse> empty = ControlCall(control.get(), ControlRequest());
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_THAT(empty->error(), HasSubstr("empty, or of a kind this nehost-filter does not know"));
  absl::StatusOr<ControlResponse> health = ControlCall(control.get(), HealthRequest());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->serving(), ControlResponse::SERVING);
  EXPECT_TRUE(filter->running());
}

TEST_F(FilterProcessTest, TakeListenersHandsOverTheInheritedSocketsInOrder) {
  UniqueFd grpc_socket = ListenOrDie(root_ / "grpc.sock");
  UniqueFd extra_socket = ListenOrDie(root_ / "extra.sock");
  std::unique_ptr<Subprocess> filter = StartWithListeners(
      {{"grpc", grpc_socket.get()}, {"extra", extra_socket.get()}}, {ControlEnv()});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";
  UniqueFd control = ConnectControl();

  std::vector<UniqueFd> fds;
  absl::StatusOr<ControlResponse> taken = ControlCall(control.get(), TakeListenersRequest(), &fds);

  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->error(), "");
  EXPECT_THAT(taken->listener_names(), ElementsAre("grpc", "extra"));
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_TRUE(IsListening(fds[0].get()));
  EXPECT_TRUE(IsListening(fds[1].get()));
  EXPECT_EQ(SocketPathOf(fds[0].get()), root_ / "grpc.sock");
  EXPECT_EQ(SocketPathOf(fds[1].get()), root_ / "extra.sock");

  absl::StatusOr<ControlResponse> again = ControlCall(control.get(), TakeListenersRequest(), &fds);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(fds.size(), 2u) << "the filter keeps its sockets open after handing them over";
}

TEST_F(FilterProcessTest, TakeListenersOfAStandaloneFilterSaysItHasNone) {
  std::unique_ptr<Subprocess> filter = StartStandalone({ControlEnv()});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";
  UniqueFd control = ConnectControl();

  std::vector<UniqueFd> fds;
  absl::StatusOr<ControlResponse> taken = ControlCall(control.get(), TakeListenersRequest(), &fds);

  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_THAT(taken->error(), HasSubstr("inherited no listening sockets"));
  EXPECT_TRUE(fds.empty());
}

// The adoption path: a new nehostd takes the sockets back from a live generation; that
// generation dies; the next one serves on the very sockets taken, with no file rebound.
TEST_F(FilterProcessTest, NextGenerationServesOnListenersTakenFromAKilledOne) {
  UniqueFd grpc_socket = ListenOrDie(root_ / "grpc.sock");
  std::unique_ptr<Subprocess> first =
      StartWithListeners({{"grpc", grpc_socket.get()}}, {ControlEnv(), "NEHOST_GENERATION=1"});
  ASSERT_TRUE(ready_.has_value()) << "generation 1 did not send READY=1";
  UniqueFd control = ConnectControl();
  std::vector<UniqueFd> taken;
  ASSERT_TRUE(ControlCall(control.get(), TakeListenersRequest(), &taken).ok());
  ASSERT_EQ(taken.size(), 1u);

  grpc_socket.Reset();
  first->Signal(SIGKILL);
  ASSERT_EQ(DescribeExit(first->Wait(kDeadline)), "signal 9");

  std::unique_ptr<Subprocess> second =
      StartWithListeners({{"grpc", taken[0].get()}}, {"NEHOST_GENERATION=2"});
  ASSERT_TRUE(ready_.has_value()) << "generation 2 did not send READY=1";
  std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(DialUnix(root_ / "grpc.sock"));
  v1::StatusResponse status = StatusOf(stub.get());
  EXPECT_EQ(status.pid(), second->pid());
  EXPECT_EQ(status.generation(), 2u);
}

TEST_F(FilterProcessTest, ImportStateAddsThePredecessorsCounters) {
  std::unique_ptr<Subprocess> filter = StartStandalone({ControlEnv()});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";
  std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(DialUnix(socket_path_));
  StatusOf(stub.get());
  StatusOf(stub.get());
  UniqueFd control = ConnectControl();

  absl::StatusOr<ControlResponse> imported =
      ControlCall(control.get(), ImportStateRequest({{"status", 40}, {"add_rule", 2}}));

  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->error(), "");
  EXPECT_THAT(StatusOf(stub.get()).counters(),
              UnorderedElementsAre(Pair("status", 43u), Pair("add_rule", 2u)));
}

TEST_F(FilterProcessTest, DrainHandsOverCountersAndExitsZero) {
  std::unique_ptr<Subprocess> filter = StartStandalone({ControlEnv(), "NEHOST_GENERATION=3"});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";
  std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(DialUnix(socket_path_));
  StatusOf(stub.get());
  v1::AddRuleResponse added;
  ASSERT_TRUE(
      Call(stub.get(), &v1::Filter::Stub::AddRule, AddRuleRequest("ads.example.com"), &added).ok());
  stub.reset();
  UniqueFd control = ConnectControl();

  absl::StatusOr<ControlResponse> drained = ControlCall(control.get(), DrainRequest(5000));

  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->error(), "");
  EXPECT_EQ(drained->serving(), ControlResponse::NOT_SERVING);
  EXPECT_EQ(drained->generation(), 3u);
  EXPECT_THAT(drained->state().counters(),
              UnorderedElementsAre(Pair("status", 1u), Pair("add_rule", 1u)));
  EXPECT_TRUE(WaitForNotification(notify_.get(), "STOPPING=1").has_value());
  EXPECT_EQ(DescribeExit(filter->Wait(kDeadline)), "exit 0");
  EXPECT_FALSE(std::filesystem::exists(control_path_)) << "the control socket file stays behind";
}

// Generation 1 drains and hands over to generation 2, which shares its state folder; a rule
// added through generation 1 while both ran is in force in generation 2 afterwards.
TEST_F(FilterProcessTest, HandoffCarriesCountersAndRulesToTheNextGeneration) {
  const std::string first_socket = root_ / "first.sock";
  const std::string second_socket = root_ / "second.sock";
  std::unique_ptr<Subprocess> first =
      StartStandalone({ControlEnv(root_ / "first.ctl"), "NEHOST_GENERATION=1"}, first_socket);
  ASSERT_TRUE(ready_.has_value()) << "generation 1 did not send READY=1";
  std::unique_ptr<Subprocess> second =
      StartStandalone({ControlEnv(root_ / "second.ctl"), "NEHOST_GENERATION=2"}, second_socket);
  ASSERT_TRUE(ready_.has_value()) << "generation 2 did not send READY=1";

  std::unique_ptr<v1::Filter::Stub> first_stub = v1::Filter::NewStub(DialUnix(first_socket));
  v1::AddRuleResponse added;
  ASSERT_TRUE(Call(first_stub.get(), &v1::Filter::Stub::AddRule,
                   AddRuleRequest("overlap.example.com"), &added)
                  .ok());
  first_stub.reset();
  UniqueFd first_control = ConnectControl(root_ / "first.ctl");
  absl::StatusOr<ControlResponse> drained = ControlCall(first_control.get(), DrainRequest(5000));
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(DescribeExit(first->Wait(kDeadline)), "exit 0");

  nehost::supervisor::v1::ControlRequest import;
  *import.mutable_import_state()->mutable_state() = drained->state();
  UniqueFd second_control = ConnectControl(root_ / "second.ctl");
  absl::StatusOr<ControlResponse> imported = ControlCall(second_control.get(), import);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->error(), "");

  std::unique_ptr<v1::Filter::Stub> second_stub = v1::Filter::NewStub(DialUnix(second_socket));
  v1::ListRulesResponse listed;
  ASSERT_TRUE(
      Call(second_stub.get(), &v1::Filter::Stub::ListRules, v1::ListRulesRequest(), &listed).ok());
  ASSERT_EQ(listed.rules_size(), 1);
  EXPECT_EQ(listed.rules(0).domain(), "overlap.example.com");
  EXPECT_THAT(
      StatusOf(second_stub.get()).counters(),
      UnorderedElementsAre(Pair("add_rule", 1u), Pair("list_rules", 1u), Pair("status", 1u)));
}

TEST_F(FilterProcessTest, DrainFailpointFailsTheReplyAndTheFilterStillExits) {
  std::unique_ptr<Subprocess> filter =
      StartStandalone({ControlEnv(), "NEHOST_FAILPOINTS=filter.drain.before_reply=error"});
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter did not send READY=1";
  UniqueFd control = ConnectControl();

  absl::StatusOr<ControlResponse> drained = ControlCall(control.get(), DrainRequest(5000));

  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_THAT(drained->error(), HasSubstr("failpoint filter.drain.before_reply"));
  EXPECT_FALSE(drained->has_state());
  EXPECT_EQ(DescribeExit(filter->Wait(kDeadline)), "exit 0");
}

TEST_F(FilterProcessTest, StartFailpointExitsBeforeServing) {
  CommandResult result =
      RunCommand({"/usr/bin/env", "NEHOST_FAILPOINTS=filter.start=exit", FilterBinary(), "--listen",
                  socket_path_, "--state-dir", state_dir_},
                 kDeadline);

  EXPECT_EQ(DescribeExit(result.status), "exit 3");
  EXPECT_THAT(result.err, HasSubstr("failpoint hit name=filter.start action=exit"));
  EXPECT_FALSE(std::filesystem::exists(socket_path_));
}

TEST_F(FilterProcessTest, BuildStampedBadExitsAtStart) {
  CommandResult result = RunCommand(
      {kFilterV3BadBinary, "--listen", socket_path_, "--state-dir", state_dir_}, kDeadline);

  EXPECT_EQ(DescribeExit(result.status), "exit 1");
  EXPECT_THAT(result.err,
              HasSubstr("this build is stamped bad and exits at start version=3.0.0-bad"));
  EXPECT_FALSE(std::filesystem::exists(socket_path_));
}

TEST_F(FilterProcessTest, VariantReportsItsOwnVersionStamp) {
  CommandResult version = RunCommand({kFilterV1Binary, "--version"}, kDeadline);
  EXPECT_EQ(version.out, "nehost-filter 1.0.0\n");

  std::unique_ptr<Subprocess> filter = StartStandalone({ControlEnv()}, "", kFilterV1Binary);
  ASSERT_TRUE(ready_.has_value()) << "nehost-filter-v1 did not send READY=1";
  std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(DialUnix(socket_path_));
  EXPECT_EQ(StatusOf(stub.get()).version(), "1.0.0");
  UniqueFd control = ConnectControl();
  absl::StatusOr<ControlResponse> health = ControlCall(control.get(), HealthRequest());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->version(), "1.0.0");
}

}  // namespace
}  // namespace nehost::filter
