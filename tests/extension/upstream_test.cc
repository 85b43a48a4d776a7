#include "extension/upstream.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::testing::TempDir;
using ::nehost::testing::WriteFileOrDie;
using ::testing::HasSubstr;

// "192.0.2.1 53", "2001:db8::1 5353": the address as the socket API holds it.
std::string Describe(const InetAddress& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address.address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address.address);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return std::string(text) + " " + std::to_string(ntohs(v4->sin_port));
  }
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address.address);
  ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
  return std::string(text) + " " + std::to_string(ntohs(v6->sin6_port));
}

std::string Parsed(const std::string& text) {
  absl::StatusOr<InetAddress> address = ParseInetAddress(text, 53);
  return address.ok() ? Describe(*address) : std::string(address.status().message());
}

TEST(ParseInetAddress, ReadsAddressesWithAndWithoutPorts) {
  EXPECT_EQ(Parsed("192.0.2.1"), "192.0.2.1 53");
  EXPECT_EQ(Parsed("192.0.2.1:5353"), "192.0.2.1 5353");
  EXPECT_EQ(Parsed("2001:db8::1"), "2001:db8::1 53");
  EXPECT_EQ(Parsed("[2001:db8::1]"), "2001:db8::1 53");
  EXPECT_EQ(Parsed("[2001:db8::1]:5353"), "2001:db8::1 5353");
}

TEST(ParseInetAddress, RefusesWhatIsNotAnAddressNamingIt) {
  EXPECT_THAT(Parsed("dns.example"), HasSubstr("address \"dns.example\": not an IPv4 or IPv6"));
  EXPECT_THAT(Parsed("192.0.2.1:0"), HasSubstr("the port is not a number from 1 to 65535"));
  EXPECT_THAT(Parsed("192.0.2.1:99999"), HasSubstr("the port is not a number"));
  EXPECT_THAT(Parsed("[2001:db8::1"), HasSubstr("unbalanced '['"));
  EXPECT_THAT(Parsed(""), HasSubstr("not an IPv4 or IPv6 address"));
}

TEST(UpstreamsFromResolvConf, TakesEachNameserverInOrderAndSkipsTheRest) {
  TempDir dir;
  WriteFileOrDie(dir / "resolv.conf",
                 "# written by a test\nsearch example\nnameserver 192.0.2.53\n"
                 "nameserver\tfe80::1%eth0\nnameserver 2001:db8::53\noptions edns0\n");

  absl::StatusOr<std::vector<InetAddress>> upstreams = UpstreamsFromResolvConf(dir / "resolv.conf");

  ASSERT_TRUE(upstreams.ok()) << upstreams.status();
  ASSERT_EQ(upstreams->size(), 2u);
  EXPECT_EQ(Describe((*upstreams)[0]), "192.0.2.53 53");
  EXPECT_EQ(Describe((*upstreams)[1]), "2001:db8::53 53");
  EXPECT_FALSE(UpstreamsFromResolvConf(dir / "missing").ok());
}

}  // namespace
}  // namespace nehost::filter
