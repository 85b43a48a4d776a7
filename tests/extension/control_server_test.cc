// ControlServer in-process, against a fake handler: framing, one connection after another,
// bad frames, descriptors, the order of a drain's reply and the exit it allows.
#include "extension/control_server.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/unix_socket.h"
#include "tests/extension/control_client.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::filter::testing::ControlCall;
using ::nehost::filter::testing::DrainRequest;
using ::nehost::filter::testing::HealthRequest;
using ::nehost::filter::testing::IsListening;
using ::nehost::filter::testing::PeerCloses;
using ::nehost::filter::testing::PeerPid;
using ::nehost::filter::testing::SendRaw;
using ::nehost::filter::testing::TakeListenersRequest;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Answers with fixed values and records what it was asked.
class FakeHandler : public ControlHandler {
 public:
  ControlResponse Health() override {
    ControlResponse response;
    response.set_serving(ControlResponse::SERVING);
    response.set_generation(4);
    return response;
  }

  ControlResponse TakeListeners(std::vector<int>* fds) override {
    ControlResponse response;
    response.add_listener_names("grpc");
    fds->push_back(listener);
    return response;
  }

  ControlResponse Drain(absl::Duration grace) override {
    drain_grace = grace;
    ControlResponse response;
    (*response.mutable_state()->mutable_counters())["status"] = 12;
    return response;
  }

  ControlResponse ImportState(const HandoffState& state) override {
    imported = state;
    return ControlResponse();
  }

  // Checks that the reply is already there for the client to read: the process could exit
  // now and lose nothing.
  void Drained() override {
    pollfd readable{client_of_drain, POLLIN, 0};
    reply_readable_when_drained = ::poll(&readable, 1, 0) == 1;
    drained.Notify();
  }

  int listener = -1;
  int client_of_drain = -1;
  absl::Duration drain_grace;
  HandoffState imported;
  std::atomic<bool> reply_readable_when_drained{false};
  absl::Notification drained;
};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ControlServer>> server = ControlServer::Listen(path_, &handler_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  UniqueFd Connect() {
    absl::StatusOr<UniqueFd> connection = ConnectUnix(path_);
    EXPECT_TRUE(connection.ok()) << connection.status();
    return connection.ok() ? *std::move(connection) : UniqueFd();
  }

  const nehost::testing::TempDir root_;
  const std::string path_ = root_ / "service.1.ctl";
  FakeHandler handler_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, ListensWithModeSixHundredAndNamesThisProcess) {
  struct stat info;
  ASSERT_EQ(::stat(path_.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0600u);

  UniqueFd connection = Connect();
  EXPECT_EQ(PeerPid(connection.get()), ::getpid());
}

TEST_F(ControlServerTest, AnswersRequestsInOrderOnOneConnection) {
  UniqueFd connection = Connect();

  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ControlResponse> health = ControlCall(connection.get(), HealthRequest());
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(health->serving(), ControlResponse::SERVING);
    EXPECT_EQ(health->generation(), 4u);
  }
}

TEST_F(ControlServerTest, ServesASecondConnectionWhileTheFirstStaysOpen) {
  // An upgrade keeps its connection open for the handoff; doctor's check must not wait.
  UniqueFd first = Connect();
  ASSERT_TRUE(ControlCall(first.get(), HealthRequest()).ok());
  UniqueFd second = Connect();
  absl::StatusOr<ControlResponse> health = ControlCall(second.get(), HealthRequest());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->serving(), ControlResponse::SERVING);
  EXPECT_TRUE(ControlCall(first.get(), HealthRequest()).ok());
}

TEST_F(ControlServerTest, ConnectionsBeyondTheLimitWaitForAFreeSlot) {
  std::vector<UniqueFd> open;
  for (int i = 0; i < kMaxControlConnections; ++i) {
    open.push_back(Connect());
    ASSERT_TRUE(ControlCall(open.back().get(), HealthRequest()).ok());
  }
  // Queued in the backlog: the server reads it only once one of the others closes.
  UniqueFd waiting = Connect();
  ASSERT_TRUE(
      SendFrame(waiting.get(), HealthRequest(), {}, absl::Now() + testing::kControlDeadline).ok());
  pollfd answered{waiting.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&answered, 1, 100), 0) << "served beyond the limit";

  open.front().Reset();

  ControlResponse response;
  std::vector<UniqueFd> fds;
  absl::Status received =
      ReceiveFrame(waiting.get(), &response, &fds, absl::Now() + testing::kControlDeadline);
  ASSERT_TRUE(received.ok()) << received;
  EXPECT_EQ(response.serving(), ControlResponse::SERVING);
}

TEST_F(ControlServerTest, FrameThatDoesNotParseClosesOnlyThatConnection) {
  UniqueFd bad = Connect();
  ASSERT_TRUE(SendRaw(bad.get(), std::string("\0\0\0\5\xff\xff\xff\xff\xff", 9)));
  EXPECT_TRUE(PeerCloses(bad.get()));

  UniqueFd good = Connect();
  absl::StatusOr<ControlResponse> health = ControlCall(good.get(), HealthRequest());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->serving(), ControlResponse::SERVING);
}

TEST_F(ControlServerTest, FrameLongerThanTheLimitClosesTheConnection) {
  UniqueFd bad = Connect();
  ASSERT_TRUE(SendRaw(bad.get(), "\xff\xff\xff\xff"));
  EXPECT_TRUE(PeerCloses(bad.get()));

  UniqueFd good = Connect();
  EXPECT_TRUE(ControlCall(good.get(), HealthRequest()).ok());
}

TEST_F(ControlServerTest, EmptyRequestGetsAnErrorAndTheConnectionStays) {
  UniqueFd connection = Connect();

  absl::StatusOr<ControlResponse> empty = ControlCall(connection.get(), ControlRequest());
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_THAT(empty->error(), HasSubstr("empty, or of a kind this nehost-filter does not know"));

  absl::StatusOr<ControlResponse> health = ControlCall(connection.get(), HealthRequest());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->error(), "");
}

TEST_F(ControlServerTest, TakeListenersAttachesTheHandlersDescriptors) {
  absl::StatusOr<UniqueFd> listener = ListenUnix(root_ / "grpc.sock");
  ASSERT_TRUE(listener.ok()) << listener.status();
  handler_.listener = listener->get();
  UniqueFd connection = Connect();

  std::vector<UniqueFd> fds;
  absl::StatusOr<ControlResponse> taken =
      ControlCall(connection.get(), TakeListenersRequest(), &fds);

  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_THAT(taken->listener_names(), ElementsAre("grpc"));
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_TRUE(IsListening(fds[0].get()));
  EXPECT_NE(::fcntl(handler_.listener, F_GETFD), -1) << "the handler's descriptor stays open";
}

TEST_F(ControlServerTest, DrainedRunsOnlyOnceTheReplyIsWritten) {
  UniqueFd connection = Connect();
  handler_.client_of_drain = connection.get();
  absl::Time deadline = absl::Now() + testing::kControlDeadline;

  // The reply is read only after Drained has looked for it.
  ASSERT_TRUE(SendFrame(connection.get(), DrainRequest(1500), {}, deadline).ok());
  ASSERT_TRUE(handler_.drained.WaitForNotificationWithTimeout(testing::kControlDeadline));
  EXPECT_TRUE(handler_.reply_readable_when_drained);

  ControlResponse drained;
  std::vector<UniqueFd> fds;
  ASSERT_TRUE(ReceiveFrame(connection.get(), &drained, &fds, deadline).ok());
  EXPECT_EQ(drained.state().counters().at("status"), 12u);
  EXPECT_EQ(handler_.drain_grace, absl::Milliseconds(1500));
}

TEST_F(ControlServerTest, ImportStatePassesTheCountersOn) {
  UniqueFd connection = Connect();

  absl::StatusOr<ControlResponse> imported =
      ControlCall(connection.get(), testing::ImportStateRequest({{"status", 7}}));

  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->error(), "");
  EXPECT_EQ(handler_.imported.counters().at("status"), 7u);
}

TEST_F(ControlServerTest, StopClosesAnIdleConnectionAndRemovesTheSocketFile) {
  UniqueFd connection = Connect();
  ASSERT_TRUE(ControlCall(connection.get(), HealthRequest()).ok());

  server_.reset();

  EXPECT_TRUE(PeerCloses(connection.get()));
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(ControlServerTest, LeavesASocketFileThatIsNotItsOwnInPlace) {
  std::filesystem::remove(path_);
  absl::StatusOr<UniqueFd> other = ListenUnix(path_);
  ASSERT_TRUE(other.ok()) << other.status();

  server_.reset();

  EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST(ControlServer, RefusesAPathWhereAnotherProcessListens) {
  const nehost::testing::TempDir root;
  absl::StatusOr<UniqueFd> other = ListenUnix(root / "service.1.ctl");
  ASSERT_TRUE(other.ok()) << other.status();
  FakeHandler handler;

  absl::StatusOr<std::unique_ptr<ControlServer>> server =
      ControlServer::Listen(root / "service.1.ctl", &handler);

  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("another process is listening on it"));
}

}  // namespace
}  // namespace nehost::filter
