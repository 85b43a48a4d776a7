// FdServer's drain and call counting, with real gRPC servers on real Unix sockets: a call that
// runs when the server stops finishes on its connection before that connection closes, and
// two servers in one process each count their own calls.
#include "common/grpc_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/grpc_client.h"
#include "common/unix_socket.h"
#include "nehost/filter/v1/stats.grpc.pb.h"
#include "tests/support/process.h"

namespace nehost {
namespace {

namespace v1 = nehost::filter::v1;
using ::nehost::testing::TempDir;

// Stats that waits until the test lets it answer.
class HeldStats final : public v1::FilterStats::Service {
 public:
  grpc::Status Stats(grpc::ServerContext*, const v1::StatsRequest*,
                     v1::StatsResponse* response) override {
    started_.Notify();
    release_.WaitForNotification();
    (*response->mutable_counters())["answered"] = 1;
    return grpc::Status::OK;
  }

  absl::Notification started_;
  absl::Notification release_;
};

TEST(FdServer, StopLetsACallInFlightFinishBeforeItsConnectionCloses) {
  TempDir root;
  const std::string path = root / "server.sock";
  absl::StatusOr<UniqueFd> listener = ListenUnix(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  HeldStats service;
  ConnectionTable connections;
  absl::StatusOr<std::unique_ptr<FdServer>> server =
      FdServer::Start({&service}, {listener->get()}, &connections);
  ASSERT_TRUE(server.ok()) << server.status();

  auto stub = v1::FilterStats::NewStub(DialUnix(path));
  std::future<grpc::Status> call = std::async(std::launch::async, [&] {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    v1::StatsResponse response;
    return stub->Stats(&context, v1::StatsRequest(), &response);
  });
  ASSERT_TRUE(service.started_.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(connections.calls_in_flight(), 1);

  std::atomic<bool> stopped = false;
  std::thread stopper([&] {
    (*server)->Stop(absl::Seconds(20));
    stopped = true;
  });
  // Stop must not return while the call runs: give one that would the time to do it.
  const bool stopped_under_the_call =
      ::nehost::testing::WaitUntil([&] { return stopped.load(); }, absl::Milliseconds(300));
  service.release_.Notify();
  stopper.join();

  EXPECT_FALSE(stopped_under_the_call) << "the connection was closed under a running call";
  grpc::Status status = call.get();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

// gRPC's hooks that count calls are process-wide; each call must still land in the table of
// the server whose accept loop took its connection.
TEST(FdServer, TwoServersInOneProcessEachCountTheirOwnCalls) {
  TempDir root;
  const std::string first_path = root / "first.sock";
  const std::string second_path = root / "second.sock";
  absl::StatusOr<UniqueFd> first_listener = ListenUnix(first_path);
  absl::StatusOr<UniqueFd> second_listener = ListenUnix(second_path);
  ASSERT_TRUE(first_listener.ok()) << first_listener.status();
  ASSERT_TRUE(second_listener.ok()) << second_listener.status();
  HeldStats first_service;
  HeldStats second_service;
  ConnectionTable first_connections;
  ConnectionTable second_connections;
  absl::StatusOr<std::unique_ptr<FdServer>> first =
      FdServer::Start({&first_service}, {first_listener->get()}, &first_connections);
  absl::StatusOr<std::unique_ptr<FdServer>> second =
      FdServer::Start({&second_service}, {second_listener->get()}, &second_connections);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();

  auto call = [](const std::string& path) {
    auto stub = v1::FilterStats::NewStub(DialUnix(path));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    v1::StatsResponse response;
    return stub->Stats(&context, v1::StatsRequest(), &response);
  };
  std::future<grpc::Status> on_second = std::async(std::launch::async, call, second_path);
  ASSERT_TRUE(second_service.started_.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(second_connections.calls_in_flight(), 1);
  EXPECT_EQ(first_connections.calls_in_flight(), 0);

  std::future<grpc::Status> on_first = std::async(std::launch::async, call, first_path);
  ASSERT_TRUE(first_service.started_.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(first_connections.calls_in_flight(), 1);
  EXPECT_EQ(second_connections.calls_in_flight(), 1);

  second_service.release_.Notify();
  first_service.release_.Notify();
  EXPECT_TRUE(on_second.get().ok());
  EXPECT_TRUE(on_first.get().ok());
  // The client has its answer a moment before the server's hook counts the call as ended.
  EXPECT_TRUE(::nehost::testing::WaitUntil(
      [&] {
        return first_connections.calls_in_flight() == 0 &&
               second_connections.calls_in_flight() == 0;
      },
      absl::Seconds(20)));
}

}  // namespace
}  // namespace nehost
