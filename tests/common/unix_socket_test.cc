#include "common/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace nehost {
namespace {

using nehost::testing::TempDir;

TEST(ListenUnix, ReplacesAStaleSocketFile) {
  TempDir dir;
  std::string path = dir / "stale.sock";
  { ASSERT_TRUE(ListenUnix(path).ok()); }  // closed: the file stays, nobody listens

  absl::StatusOr<UniqueFd> again = ListenUnix(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(ConnectUnix(path).ok());
}

TEST(ListenUnix, RefusesToTakeOverALiveSocket) {
  TempDir dir;
  std::string path = dir / "live.sock";
  absl::StatusOr<UniqueFd> first = ListenUnix(path);
  ASSERT_TRUE(first.ok());

  absl::StatusOr<UniqueFd> second = ListenUnix(path);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("another process is listening"), std::string::npos);
  EXPECT_TRUE(ConnectUnix(path).ok()) << "the first listener must keep its socket";
}

TEST(ListenUnix, RefusesToReplaceAFileThatIsNotASocket) {
  TempDir dir;
  std::string path = dir / "data";
  nehost::testing::WriteFileOrDie(path, "precious");
  EXPECT_FALSE(ListenUnix(path).ok());
  EXPECT_EQ(nehost::testing::ReadFileOrEmpty(path), "precious");
}

TEST(ListenUnix, NamesAPathTooLongForSunPath) {
  std::string path = "/tmp/" + std::string(120, 'x');
  absl::StatusOr<UniqueFd> fd = ListenUnix(path);
  ASSERT_FALSE(fd.ok());
  EXPECT_NE(fd.status().message().find("holds at most 107"), std::string::npos);
}

TEST(ListenUnix, AppliesTheRequestedMode) {
  TempDir dir;
  std::string path = dir / "mode.sock";
  ASSERT_TRUE(ListenUnix(path, 0660).ok());
  struct stat info;
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0660u);
}

TEST(PeerCredentials, NameTheProcessAtTheOtherEnd) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  absl::StatusOr<PeerCredentials> peer = GetPeerCredentials(a.get());
  ASSERT_TRUE(peer.ok());
  EXPECT_EQ(peer->pid, ::getpid());
  EXPECT_EQ(peer->uid, ::getuid());
}

}  // namespace
}  // namespace nehost
