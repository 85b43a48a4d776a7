// nehost-filter's DNS data plane between real peers from Debian, all on 127.0.0.1: dig as the
// client and dnsmasq as the upstream, each on ports reserved for the test. The filter runs
// standalone (binding its own DNS sockets) or under a real nehostd (which creates them from a
// service definition and passes them down), and is driven by nehostctl.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_client.h"
#include "common/unique_fd.h"
#include "nehost/filter/v1/filter.grpc.pb.h"
#include "nehost/filter/v1/flow.grpc.pb.h"
#include "tests/support/dns_peers.h"
#include "tests/support/nehostd.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::testing::CommandResult;
using ::nehost::testing::Dig;
using ::nehost::testing::DigResult;
using ::nehost::testing::Dnsmasq;
using ::nehost::testing::FilterBinary;
using ::nehost::testing::Nehostd;
using ::nehost::testing::ReadFileOrEmpty;
using ::nehost::testing::ReservePort;
using ::nehost::testing::Subprocess;
using ::nehost::testing::TempDir;
using ::nehost::testing::WaitForDns;
using ::nehost::testing::WaitUntil;
using ::nehost::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kService[] = "org.nehost.filter";

// 8 strings of 250 bytes: about 2 KB, more than dnsmasq sends over UDP (1232 bytes).
std::string BigTxtRecord() {
  std::string record = "--txt-record=big.example";
  for (int i = 0; i < 8; ++i) absl::StrAppend(&record, ",", std::string(250, 'a' + i));
  return record;
}

std::vector<std::string> UpstreamRecords() {
  return {"--address=/up.example/192.0.2.1", "--address=/ads.example/192.0.2.66",
          "--address=/tracker.example/192.0.2.77", "--address=/sink.example/192.0.2.88",
          BigTxtRecord()};
}

// Rules as an operator would have them: written by an earlier run, in schema 2.
constexpr char kRules[] = R"({
 "schema_version": 2,
 "rules": [
  {"domain": "ads.example", "action": "DENY", "match": "EXACT"},
  {"domain": "tracker.example", "action": "DENY", "match": "SUFFIX"},
  {"domain": "ok.tracker.example", "action": "ALLOW", "match": "EXACT"},
  {"domain": "sink.example", "action": "DENY", "match": "EXACT", "response": "SINKHOLE"}
 ]
})";

// A UDP socket that takes queries and never answers: a dead upstream.
struct SilentUpstream {
  SilentUpstream() {
    socket.Reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    ::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port); }

  UniqueFd socket;
  uint16_t port = 0;
};

class StandaloneDnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directory(root_ / "state");
    WriteFileOrDie(root_ / "state/rules.json", kRules);
  }

  // Starts nehost-filter on a free port, forwarding to upstreams in order; again on another
  // port if it lost the port to someone else meanwhile.
  void StartFilter(const std::vector<std::string>& upstreams, int timeout_ms = 1500) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = ReservePort();
      std::vector<std::string> argv = {FilterBinary(),
                                       "--listen",
                                       root_ / "filter.sock",
                                       "--state-dir",
                                       root_ / "state",
                                       "--dns-listen",
                                       absl::StrCat("127.0.0.1:", port_),
                                       "--upstream-timeout-ms",
                                       std::to_string(timeout_ms)};
      for (const std::string& upstream : upstreams)
        argv.insert(argv.end(), {"--upstream", upstream});
      filter_ =
          std::make_unique<Subprocess>(argv, std::vector<std::string>{}, root_ / "filter.log");
      bool up =
          WaitUntil([&] { return !filter_->running() || WaitForDns(port_, absl::ZeroDuration()); },
                    absl::Seconds(20));
      if (up && filter_->running()) return;
    }
    FAIL() << "nehost-filter did not serve DNS: " << ReadFileOrEmpty(root_ / "filter.log");
  }

  DigResult Ask(const std::string& name, const std::string& type = "A",
                const std::vector<std::string>& extra = {}) {
    return Dig(port_, name, type, extra);
  }

  v1::StatusResponse Status() {
    std::unique_ptr<v1::Filter::Stub> stub = v1::Filter::NewStub(DialUnix(root_ / "filter.sock"));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::StatusResponse status;
    grpc::Status called = stub->Status(&context, v1::StatusRequest(), &status);
    EXPECT_TRUE(called.ok()) << called.error_message();
    return status;
  }

  TempDir root_;
  uint16_t port_ = 0;
  std::unique_ptr<Subprocess> filter_;
};

TEST_F(StandaloneDnsTest, AllowedNameResolvesThroughTheUpstream) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});

  DigResult answer = Ask("www.up.example");
  EXPECT_EQ(answer.status, "NOERROR") << answer.output;
  EXPECT_THAT(answer.answers, ElementsAre("192.0.2.1"));
  EXPECT_THAT(Ask("up.example", "A", {"+tcp"}).answers, ElementsAre("192.0.2.1"));
}

TEST_F(StandaloneDnsTest, BlockedNameGetsNxdomainAndTheNameBelowItDoesNot) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});

  EXPECT_EQ(Ask("ads.example").status, "NXDOMAIN");
  EXPECT_EQ(Ask("ADS.Example", "AAAA").status, "NXDOMAIN");
  EXPECT_EQ(Ask("ads.example", "A", {"+tcp"}).status, "NXDOMAIN");
  EXPECT_THAT(Ask("sub.ads.example").answers, ElementsAre("192.0.2.66"));
  // Hits reach the shared counters in batches, every 100 ms.
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto counters = Status().counters();
        auto hits = counters.find("dns.hits.rule:deny:exact:ads.example");
        return hits != counters.end() && hits->second == 3;
      },
      absl::Seconds(10)));
}

TEST_F(StandaloneDnsTest, DecisionWatcherSeesBlockedAndForwardedQueries) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});
  std::unique_ptr<v1::FlowFilter::Stub> flows =
      v1::FlowFilter::NewStub(DialUnix(root_ / "filter.sock"));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  std::unique_ptr<grpc::ClientReader<v1::Decision>> watch =
      flows->WatchDecisions(&context, v1::WatchDecisionsRequest());

  // The stream says nothing when it is subscribed: ask until the watcher has seen both.
  std::atomic<bool> seen_both{false};
  std::thread asker([&] {
    for (int i = 0; i < 200 && !seen_both; ++i) {
      Ask("ads.example");
      Ask(absl::StrCat("q", i, ".up.example"));  // a name of its own: not from the cache
    }
  });
  bool blocked = false;
  bool forwarded = false;
  for (v1::Decision decision; !(blocked && forwarded) && watch->Read(&decision);) {
    if (!decision.has_dns()) continue;
    const v1::DnsQuery& query = decision.dns();
    EXPECT_THAT(query.client(), HasSubstr("127.0.0.1:"));
    if (query.name() == "ads.example") {
      blocked = true;
      EXPECT_EQ(query.outcome(), "blocked");
      EXPECT_EQ(query.rcode(), "NXDOMAIN");
      EXPECT_EQ(query.type(), "A");
      EXPECT_EQ(decision.verdict().action(), v1::FlowRule::DENY);
      EXPECT_EQ(decision.verdict().rule(), "rule:deny:exact:ads.example");
    }
    if (absl::EndsWith(query.name(), ".up.example")) {
      EXPECT_EQ(query.outcome(), "forwarded");
      forwarded = true;
      EXPECT_EQ(query.rcode(), "NOERROR");
      EXPECT_EQ(decision.verdict().action(), v1::FlowRule::ALLOW);
    }
  }
  seen_both = true;
  asker.join();
  context.TryCancel();
  watch->Finish();
  EXPECT_TRUE(blocked);
  EXPECT_TRUE(forwarded);
}

TEST_F(StandaloneDnsTest, SuffixRuleBlocksTheNameAndEveryNameBelowIt) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});

  EXPECT_EQ(Ask("tracker.example").status, "NXDOMAIN");
  EXPECT_EQ(Ask("a.b.tracker.example").status, "NXDOMAIN");
}

TEST_F(StandaloneDnsTest, AllowRuleOverridesTheDenyAboveIt) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});

  DigResult answer = Ask("ok.tracker.example");
  EXPECT_EQ(answer.status, "NOERROR") << answer.output;
  EXPECT_THAT(answer.answers, ElementsAre("192.0.2.77"));
}

TEST_F(StandaloneDnsTest, SinkholeRuleAnswersZeroAddresses) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});

  EXPECT_THAT(Ask("sink.example").answers, ElementsAre("0.0.0.0"));
  EXPECT_THAT(Ask("sink.example", "AAAA").answers, ElementsAre("::"));
}

TEST_F(StandaloneDnsTest, TruncatedUpstreamAnswerIsAskedAgainOverTcp) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});
  // The test means something only if dnsmasq truncates this answer over UDP.
  DigResult direct = Dig(upstream.port(), "big.example", "TXT", {"+bufsize=4096", "+ignore"});
  ASSERT_TRUE(direct.truncated) << direct.output;

  DigResult answer = Ask("big.example", "TXT", {"+bufsize=4096", "+ignore"});

  EXPECT_EQ(answer.status, "NOERROR") << answer.output;
  EXPECT_FALSE(answer.truncated) << answer.output;
  EXPECT_EQ(answer.answers.size(), 1u) << answer.output;
  EXPECT_GE(Status().counters().at("dns.tcp_retries"), 1u);
}

TEST_F(StandaloneDnsTest, ClientThatCannotTakeTheAnswerOverUdpGetsItOverTcp) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});

  DigResult answer = Ask("big.example", "TXT");  // dig's default 1232-byte buffer

  EXPECT_THAT(answer.output, HasSubstr("Truncated, retrying in TCP mode"));
  EXPECT_EQ(answer.status, "NOERROR") << answer.output;
  EXPECT_EQ(answer.answers.size(), 1u) << answer.output;
}

TEST_F(StandaloneDnsTest, DeadUpstreamGivesServfailAfterTheTimeout) {
  SilentUpstream dead;
  StartFilter({dead.address()}, /*timeout_ms=*/400);

  uint64_t failed_before = Status().counters().at("dns.failed");  // the readiness probes
  absl::Time asked = absl::Now();
  DigResult answer = Ask("www.up.example");

  EXPECT_EQ(answer.status, "SERVFAIL") << answer.output;
  EXPECT_GE(absl::Now() - asked, absl::Milliseconds(400));
  EXPECT_EQ(Status().counters().at("dns.failed"), failed_before + 1);
}

// What the dead upstream has received since the last call.
int Drain(const SilentUpstream& upstream) {
  char datagram[512];
  int received = 0;
  while (::recv(upstream.socket.get(), datagram, sizeof datagram, MSG_DONTWAIT) > 0) ++received;
  return received;
}

TEST_F(StandaloneDnsTest, FailsOverToTheSecondUpstreamWhenTheFirstIsDead) {
  SilentUpstream dead;
  Dnsmasq upstream(root_, UpstreamRecords());
  // StartFilter's first readiness probe meets the dead upstream first, waits out the timeout
  // and is answered by the second; from then on the second goes first.
  StartFilter({dead.address(), upstream.address()}, /*timeout_ms=*/1000);

  DigResult first = Ask("www.up.example");
  int asked_dead = Drain(dead);
  DigResult second = Ask("other.up.example");

  EXPECT_EQ(first.status, "NOERROR") << first.output;
  EXPECT_THAT(first.answers, ElementsAre("192.0.2.1"));
  EXPECT_THAT(second.answers, ElementsAre("192.0.2.1"));
  EXPECT_GE(asked_dead, 1);
  EXPECT_GE(Status().counters().at("dns.upstream_timeouts"), 1u);
  EXPECT_EQ(Drain(dead), 0) << "the live upstream answers, so it stays first";
}

TEST_F(StandaloneDnsTest, MalformedPacketsAreDroppedAndCountedWithoutHarm) {
  Dnsmasq upstream(root_, UpstreamRecords());
  StartFilter({upstream.address()});

  UniqueFd client(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port_);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::vector<std::string> garbage = {
      std::string("\x12", 1), std::string(12, '\0'), std::string(4000, '\xc0'),
      std::string("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", 18)};
  for (const std::string& packet : garbage) {
    ::sendto(client.get(), packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&to),
             sizeof to);
  }

  EXPECT_THAT(Ask("up.example").answers, ElementsAre("192.0.2.1"));
  EXPECT_EQ(Status().counters().at("dns.dropped_malformed"), garbage.size());
  EXPECT_TRUE(filter_->running());
}

// nehost-filter under nehostd, which creates the DNS sockets from the definition.
class HostedDnsTest : public ::testing::Test {
 protected:
  void StartHosted(const std::string& upstream) {
    port_ = ReservePort();
    std::string address = absl::StrCat("127.0.0.1:", port_);
    nehostd_.WriteDefinition(
        "filter.textproto",
        absl::StrCat("name: \"", kService, "\"\nexecutable: \"", FilterBinary(), "\"\n",
                     "args: \"--upstream\"\nargs: \"", upstream, "\"\n",
                     "listeners { name: \"dns-udp\" udp: \"", address, "\" }\n",
                     "listeners { name: \"dns-tcp\" tcp: \"", address, "\" }\n"));
    ASSERT_TRUE(nehostd_.Start());
    ASSERT_TRUE(nehostd_.Lookup(kService, 5000).ok()) << nehostd_.Log();
    ASSERT_TRUE(WaitForDns(port_, absl::Seconds(20))) << nehostd_.Log();
  }

  // A hosts file of count names, h0.block.example and on.
  std::string WriteHostsFile(int count, const std::string& extra_lines = "") {
    std::string path = root_ / "blocklist.txt";
    std::ofstream out(path);
    out << "# generated for the test\n127.0.0.1 localhost\n";
    for (int i = 0; i < count; ++i) out << "0.0.0.0 h" << i << ".block.example\n";
    out << extra_lines;
    return path;
  }

  TempDir root_;
  Nehostd nehostd_{root_};
  uint16_t port_ = 0;
};

TEST_F(HostedDnsTest, ImportOfAHundredThousandNamesBlocksThemAllAndSurvivesARestart) {
  Dnsmasq upstream(root_,
                   {"--address=/block.example/192.0.2.9", "--address=/up.example/192.0.2.1"});
  StartHosted(upstream.address());
  std::string hosts = WriteHostsFile(100'000);

  CommandResult imported =
      nehostd_.Ctl({"--json", "--timeout-ms", "60000", "rules", "import", kService, hosts});

  ASSERT_EQ(imported.status.code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr(R"("count":100000,"name":"blocklist")"));
  EXPECT_THAT(imported.out, HasSubstr(R"("committed":true)"));
  for (const char* name : {"h0.block.example", "h54321.block.example", "h99999.block.example"}) {
    EXPECT_EQ(Dig(port_, name).status, "NXDOMAIN") << name;
  }
  EXPECT_THAT(Dig(port_, "h100000.block.example").answers, ElementsAre("192.0.2.9"));
  EXPECT_THAT(Dig(port_, "up.example").answers, ElementsAre("192.0.2.1"));

  CommandResult restarted = nehostd_.Ctl({"restart", kService});
  ASSERT_EQ(restarted.status.code, 0) << restarted.err;
  ASSERT_TRUE(WaitForDns(port_, absl::Seconds(20)));
  EXPECT_EQ(Dig(port_, "h77777.block.example").status, "NXDOMAIN");
  CommandResult listed = nehostd_.Ctl({"rules", "list", kService});
  EXPECT_THAT(listed.out, HasSubstr("list blocklist (100000 names)"));
}

TEST_F(HostedDnsTest, InvalidLinesAreReportedWithTheirNumbersAndTheCallerChoosesWhatHappens) {
  Dnsmasq upstream(root_, {"--address=/block.example/192.0.2.9"});
  StartHosted(upstream.address());
  std::string hosts = WriteHostsFile(3, "0.0.0.0 bad..example\nnot-an-address h9.block.example\n");

  CommandResult strict = nehostd_.Ctl({"rules", "import", kService, hosts, "--all-or-nothing"});
  EXPECT_EQ(strict.status.code, 1);
  EXPECT_THAT(strict.err, HasSubstr("blocklist.txt:6: invalid domain \"bad..example\""));
  EXPECT_THAT(strict.err, HasSubstr("blocklist.txt:7: "));
  EXPECT_THAT(strict.out, HasSubstr("not imported"));
  EXPECT_THAT(Dig(port_, "h1.block.example").answers, ElementsAre("192.0.2.9"));

  CommandResult lenient = nehostd_.Ctl({"rules", "import", kService, hosts, "--list", "mine"});
  EXPECT_EQ(lenient.status.code, 0) << lenient.err;
  EXPECT_THAT(lenient.out, HasSubstr("imported list mine: 3 names"));
  EXPECT_THAT(lenient.err, HasSubstr("blocklist.txt:6: "));
  EXPECT_EQ(Dig(port_, "h1.block.example").status, "NXDOMAIN");

  // A later strict import that fails leaves the list in force as it was.
  CommandResult again =
      nehostd_.Ctl({"rules", "import", kService, hosts, "--list", "mine", "--all-or-nothing"});
  EXPECT_EQ(again.status.code, 1);
  EXPECT_EQ(Dig(port_, "h2.block.example").status, "NXDOMAIN");
}

TEST_F(HostedDnsTest, RulesAddedThroughNehostctlTakeEffectAtOnceAndSurviveACrash) {
  Dnsmasq upstream(root_, {"--address=/up.example/192.0.2.1"});
  StartHosted(upstream.address());

  CommandResult added =
      nehostd_.Ctl({"rules", "add", kService, "up.example", "--suffix", "--sinkhole"});
  ASSERT_EQ(added.status.code, 0) << added.err;
  EXPECT_THAT(Dig(port_, "www.up.example").answers, ElementsAre("0.0.0.0"));

  absl::StatusOr<nehost::testing::Registration> before = nehostd_.Lookup(kService);
  ASSERT_TRUE(before.ok());
  ::kill(before->pid(), SIGKILL);
  ASSERT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<nehost::testing::Registration> after = nehostd_.Lookup(kService, 5000);
        return after.ok() && after->pid() != before->pid();
      },
      absl::Seconds(20)));
  ASSERT_TRUE(WaitForDns(port_, absl::Seconds(20)));
  EXPECT_THAT(Dig(port_, "www.up.example").answers, ElementsAre("0.0.0.0"));
}

}  // namespace
}  // namespace nehost::filter
