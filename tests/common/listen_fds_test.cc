#include "common/listen_fds.h"

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

}  // namespace
}  // namespace nehost
