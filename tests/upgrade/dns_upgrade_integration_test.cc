// No DNS query is lost while nehost-filter is upgraded: nehostd owns the DNS sockets, the new
// generation reads them before the old one stops, and the old one answers what it has read
// before it exits. A client asks all the time, one query after another, during upgrades
// between the packaged v1 and v2, with dnsmasq from Debian as the upstream.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"
#include "tests/support/dns_peers.h"
#include "tests/upgrade/harness.h"

namespace nehost::testing {
namespace {

// Asks one query at a time over UDP, a name the filter blocks and a fresh forwarded one in
// turn, and counts the answers that came back with the right id and those that never did.
class DnsClient {
 public:
  explicit DnsClient(uint16_t port) : port_(port), thread_([this] { Run(); }) {}
  ~DnsClient() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t answered() const { return answered_; }
  int64_t lost() const { return lost_; }

 private:
  static constexpr int64_t kMaxQueries = 200'000;
  static constexpr int kTimeoutMs = 3000;

  static std::vector<uint8_t> Query(const std::string& name, uint16_t id) {
    std::vector<uint8_t> packet = {
        static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    size_t start = 0;
    while (start <= name.size()) {
      size_t dot = std::min(name.find('.', start), name.size());
      packet.push_back(static_cast<uint8_t>(dot - start));
      packet.insert(packet.end(), name.begin() + start, name.begin() + dot);
      start = dot + 1;
    }
    packet.insert(packet.end(), {0, 0, 1, 0, 1});
    return packet;
  }

  void Run() {
    UniqueFd socket(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port_);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::connect(socket.get(), reinterpret_cast<sockaddr*>(&to), sizeof to);

    for (int64_t i = 0; !stop_ && i < kMaxQueries; ++i) {
      uint16_t id = static_cast<uint16_t>(i);
      std::string name = i % 2 == 0 ? "ads.example" : absl::StrCat("n", i, ".up.example");
      std::vector<uint8_t> query = Query(name, id);
      ::send(socket.get(), query.data(), query.size(), 0);
      if (AwaitAnswer(socket.get(), id)) {
        ++answered_;
      } else {
        ++lost_;
      }
    }
  }

  // Answers to earlier, lost queries may still arrive: only this id counts.
  static bool AwaitAnswer(int socket, uint16_t id) {
    pollfd readable{socket, POLLIN, 0};
    while (::poll(&readable, 1, kTimeoutMs) == 1) {
      uint8_t answer[4096];
      ssize_t got = ::recv(socket, answer, sizeof answer, 0);
      if (got >= 12 && (answer[0] << 8 | answer[1]) == id) return true;
    }
    return false;
  }

  const uint16_t port_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> answered_{0};
  std::atomic<int64_t> lost_{0};
  std::thread thread_;
};

TEST(DnsUpgradeTest, NoQueryIsLostAcrossUpgrades) {
  TempDir root;
  const std::string prefix = root / "opt";
  ASSERT_TRUE(InstallFilterPackage(root, prefix, "1.0.0"));
  ASSERT_TRUE(InstallFilterPackage(root, prefix, "2.0.0"));
  Dnsmasq upstream(root, {"--address=/up.example/192.0.2.1", "--address=/ads.example/192.0.2.6"});

  uint16_t port = ReservePort();
  std::string address = absl::StrCat("127.0.0.1:", port);
  Nehostd nehostd(root);
  nehostd.WriteDefinition(
      "filter.textproto",
      PackagedFilterDefinition(
          prefix, absl::StrCat("args: \"--upstream\"\nargs: \"", upstream.address(), "\"\n",
                               "listeners { name: \"dns-udp\" udp: \"", address, "\" }\n",
                               "listeners { name: \"dns-tcp\" tcp: \"", address, "\" }\n")));
  ASSERT_TRUE(nehostd.Start());
  ASSERT_TRUE(WaitForDns(port, absl::Seconds(20))) << nehostd.Log();
  CommandResult added = nehostd.Ctl({"rules", "add", kFilter, "ads.example"});
  ASSERT_EQ(added.status.code, 0) << added.err;

  DnsClient client(port);
  for (const char* version : {"2.0.0", "1.0.0", "2.0.0"}) {
    int64_t before = client.answered();
    ASSERT_TRUE(WaitUntil([&] { return client.answered() > before + 50; }, absl::Seconds(20)));
    CommandResult upgraded = nehostd.Ctl({"upgrade", kFilter, "--to", version});
    ASSERT_EQ(upgraded.status.code, 0) << upgraded.out << upgraded.err << nehostd.Log();
  }
  int64_t before = client.answered();
  ASSERT_TRUE(WaitUntil([&] { return client.answered() > before + 50; }, absl::Seconds(20)));
  client.Stop();

  EXPECT_EQ(client.lost(), 0) << "of " << client.answered() + client.lost();
  EXPECT_GT(client.answered(), 200);
  absl::StatusOr<Registration> serving = nehostd.Lookup(kFilter);
  ASSERT_TRUE(serving.ok());
  EXPECT_EQ(serving->version(), "2.0.0");
  EXPECT_EQ(Dig(port, "ads.example").status, "NXDOMAIN");

  // The counters came along through every handoff: the last generation counts the queries
  // all four answered (and the Dig above).
  std::unique_ptr<nehost::filter::v1::Filter::Stub> filter =
      nehostd.FilterStub(serving->endpoint());
  grpc::ClientContext context;
  nehost::filter::v1::StatusResponse status;
  ASSERT_TRUE(filter->Status(&context, {}, &status).ok());
  EXPECT_GE(status.counters().at("dns.queries"), static_cast<uint64_t>(client.answered()));
  EXPECT_GE(status.counters().at("dns.blocked"), static_cast<uint64_t>(client.answered() / 2));
}

}  // namespace
}  // namespace nehost::testing
