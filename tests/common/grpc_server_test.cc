// FdServer's drain, with a real gRPC server on a real Unix socket: a call that runs when the
// server stops finishes on its connection before that connection closes.
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

}  // namespace
}  // namespace nehost
