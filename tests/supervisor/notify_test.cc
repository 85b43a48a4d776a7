#include "supervisor/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdlib>

#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace nehost::supervisor {
namespace {

TEST(ParseNotifyMessage, ReadsEveryKnownAssignment) {
  absl::StatusOr<NotifyMessage> message =
      ParseNotifyMessage("READY=1\nSTATUS=serving 3 rules\nWATCHDOG=1\nX_CUSTOM=ignored\n");
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_TRUE(message->ready);
  EXPECT_TRUE(message->watchdog);
  EXPECT_FALSE(message->stopping);
  EXPECT_EQ(message->status, "serving 3 rules");
}

TEST(ParseNotifyMessage, StatusMayHoldEqualsSigns) {
  absl::StatusOr<NotifyMessage> message = ParseNotifyMessage("STATUS=a=b");
  ASSERT_TRUE(message.ok());
  EXPECT_EQ(message->status, "a=b");
}

TEST(ParseNotifyMessage, RejectsLinesThatAreNotAssignments) {
  EXPECT_FALSE(ParseNotifyMessage("READY=1\ngarbage").ok());
  EXPECT_FALSE(ParseNotifyMessage("=1").ok());
}

TEST(NotifySocket, AttributesLibsystemdMessagesToTheSendingPid) {
  nehost::testing::TempDir dir;
  absl::StatusOr<NotifySocket> socket = NotifySocket::Bind(dir / "notify.sock");
  ASSERT_TRUE(socket.ok()) << socket.status();

  ::setenv("NOTIFY_SOCKET", socket->path().c_str(), 1);
  ASSERT_GT(sd_notify(0, "READY=1\nSTATUS=up"), 0);
  ::unsetenv("NOTIFY_SOCKET");

  absl::StatusOr<std::optional<ReceivedNotify>> received = socket->Receive();
  ASSERT_TRUE(received.ok()) << received.status();
  ASSERT_TRUE(received->has_value());
  EXPECT_EQ((*received)->sender, ::getpid());
  EXPECT_TRUE((*received)->message.ready);
  EXPECT_EQ((*received)->message.status, "up");

  absl::StatusOr<std::optional<ReceivedNotify>> nothing = socket->Receive();
  ASSERT_TRUE(nothing.ok());
  EXPECT_FALSE(nothing->has_value());
}

}  // namespace
}  // namespace nehost::supervisor
