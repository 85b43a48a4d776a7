#include "common/listen_fds.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace nehost {
namespace {

TEST(ParseListenFds, NamesEachSocketFromFdThree) {
  absl::StatusOr<std::vector<InheritedSocket>> sockets =
      ParseListenFds("42", "3", "grpc:dns-udp:dns-tcp", 42);
  ASSERT_TRUE(sockets.ok()) << sockets.status();
  ASSERT_EQ(sockets->size(), 3u);
  EXPECT_EQ((*sockets)[0].name, "grpc");
  EXPECT_EQ((*sockets)[0].fd, 3);
  EXPECT_EQ((*sockets)[2].name, "dns-tcp");
  EXPECT_EQ((*sockets)[2].fd, 5);
  EXPECT_EQ(FindInheritedSocket(*sockets, "dns-udp"), 4);
  EXPECT_EQ(FindInheritedSocket(*sockets, "missing"), -1);
}

TEST(ParseListenFds, IgnoresSocketsMeantForAnotherProcess) {
  absl::StatusOr<std::vector<InheritedSocket>> sockets = ParseListenFds("41", "1", "grpc", 42);
  ASSERT_TRUE(sockets.ok());
  EXPECT_TRUE(sockets->empty());
}

TEST(ParseListenFds, NoVariablesMeansNoSockets) {
  absl::StatusOr<std::vector<InheritedSocket>> sockets =
      ParseListenFds(nullptr, nullptr, nullptr, 42);
  ASSERT_TRUE(sockets.ok());
  EXPECT_TRUE(sockets->empty());
}

TEST(ParseListenFds, UnnamedSocketsAreUnknown) {
  absl::StatusOr<std::vector<InheritedSocket>> sockets = ParseListenFds("7", "2", nullptr, 7);
  ASSERT_TRUE(sockets.ok());
  ASSERT_EQ(sockets->size(), 2u);
  EXPECT_EQ((*sockets)[1].name, "unknown");
}

TEST(ParseListenFds, RejectsMalformedValues) {
  EXPECT_FALSE(ParseListenFds("abc", "1", nullptr, 7).ok());
  EXPECT_FALSE(ParseListenFds("7", "-1", nullptr, 7).ok());
  EXPECT_FALSE(ParseListenFds("7", "two", nullptr, 7).ok());
  absl::StatusOr<std::vector<InheritedSocket>> mismatch = ParseListenFds("7", "2", "grpc", 7);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("LISTEN_FDNAMES names 1"), std::string::npos);
}

TEST(IsValidFdName, RejectsColonsSpacesAndEmpty) {
  EXPECT_TRUE(IsValidFdName("dns-udp"));
  EXPECT_FALSE(IsValidFdName(""));
  EXPECT_FALSE(IsValidFdName("a:b"));
  EXPECT_FALSE(IsValidFdName("a b"));
  EXPECT_FALSE(IsValidFdName(std::string(256, 'x')));
}

// Puts fd at 3 for the test's length, as a parent would pass it, and puts back what was there.
class FdThree {
 public:
  explicit FdThree(int fd) : saved_(::fcntl(3, F_DUPFD_CLOEXEC, 10)) {
    EXPECT_EQ(::dup2(fd, 3), 3);
    ::close(fd);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("LISTEN_FDS", "1", 1);
    ::setenv("LISTEN_FDNAMES", "grpc", 1);
  }
  ~FdThree() {
    if (saved_ >= 0) {
      ::dup2(saved_, 3);
      ::close(saved_);
    } else {
      ::close(3);
    }
  }

 private:
  int saved_;
};

TEST(TakeListenFds, TakesASocketAndUnsetsTheVariables) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  ::close(pair[1]);
  FdThree three(pair[0]);

  absl::StatusOr<std::vector<InheritedSocket>> taken = TakeListenFds();
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_EQ(taken->size(), 1u);
  EXPECT_EQ((*taken)[0].fd, 3);
  EXPECT_EQ(std::getenv("LISTEN_FDS"), nullptr);
  EXPECT_NE(::fcntl(3, F_GETFD) & FD_CLOEXEC, 0) << "the next exec must not pass it on";
}

// A parent whose fd 3 closed on exec leaves the number to whatever this process opened first.
TEST(TakeListenFds, RefusesAnFdThatIsNotASocket) {
  FdThree three(::open("/dev/null", O_RDONLY | O_CLOEXEC));

  absl::StatusOr<std::vector<InheritedSocket>> taken = TakeListenFds();
  ASSERT_FALSE(taken.ok());
  EXPECT_TRUE(absl::StrContains(taken.status().message(), "grpc (fd 3) is not a socket"))
      << taken.status();
}

}  // namespace
}  // namespace nehost
