// DnsServer in-process, against upstreams the test plays itself on loopback sockets, so that it
// can answer late, wrongly or not at all.
#include "extension/dns_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <filesystem>
#include <future>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/unix_socket.h"
#include "extension/rule_store.h"
#include "tests/extension/dns_wire.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::filter::testing::Answer;
using ::nehost::filter::testing::Bytes;
using ::nehost::filter::testing::Query;
using ::nehost::testing::TempDir;
using ::nehost::testing::WaitUntil;

uint16_t PortOf(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

UniqueFd BindOrDie(InetProtocol protocol) {
  absl::StatusOr<UniqueFd> fd = BindInet("127.0.0.1:0", protocol);
  EXPECT_TRUE(fd.ok()) << fd.status();
  return fd.ok() ? *std::move(fd) : UniqueFd();
}

void SendTo(int fd, const Bytes& packet, uint16_t port) {
  sockaddr_in to = Loopback(port);
  ASSERT_EQ(
      ::sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
      static_cast<ssize_t>(packet.size()));
}

struct Datagram {
  Bytes bytes;
  uint16_t from_port = 0;
};

std::optional<Datagram> Receive(int fd, int timeout_ms = 5000) {
  pollfd readable{fd, POLLIN, 0};
  if (::poll(&readable, 1, timeout_ms) != 1) return std::nullopt;
  Datagram datagram;
  datagram.bytes.resize(65536);
  sockaddr_in from{};
  socklen_t length = sizeof from;
  ssize_t got = ::recvfrom(fd, datagram.bytes.data(), datagram.bytes.size(), 0,
                           reinterpret_cast<sockaddr*>(&from), &length);
  if (got < 0) return std::nullopt;
  datagram.bytes.resize(static_cast<size_t>(got));
  datagram.from_port = ntohs(from.sin_port);
  return datagram;
}

// What an upstream saw: the id the server chose and where to answer.
struct Asked {
  uint16_t id = 0;
  uint16_t port = 0;
  std::string name;
};

std::optional<Asked> ReceiveQuery(int upstream, int timeout_ms = 5000) {
  std::optional<Datagram> datagram = Receive(upstream, timeout_ms);
  if (!datagram.has_value()) return std::nullopt;
  dns::Query query;
  if (dns::ParseQuery(datagram->bytes, &query) != dns::ParseError::kNone) return std::nullopt;
  return Asked{query.id, datagram->from_port, std::string(query.question.Name())};
}

dns::Rcode RcodeOf(const Bytes& answer) { return static_cast<dns::Rcode>(answer[3] & 0xf); }

class DnsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directory(root_ / "state");
    absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(root_ / "state");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    listener_ = BindOrDie(InetProtocol::kUdp);
    tcp_listener_ = BindOrDie(InetProtocol::kTcp);
    client_ = BindOrDie(InetProtocol::kUdp);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Drain(absl::ZeroDuration());
  }

  // Starts the server forwarding to the given upstream sockets, in order.
  void StartServer(const std::vector<int>& upstreams, int timeout_ms = 2000, size_t cache = 100,
                   int threads = 1) {
    DnsServer::Options options;
    options.threads = threads;
    options.udp_listeners = {listener_.get()};
    options.tcp_listeners = {tcp_listener_.get()};
    for (int upstream : upstreams) {
      absl::StatusOr<InetAddress> address =
          ParseInetAddress(absl::StrCat("127.0.0.1:", PortOf(upstream)), 53);
      ASSERT_TRUE(address.ok());
      options.forwarding.upstreams.push_back(*address);
    }
    options.forwarding.timeout = std::chrono::milliseconds(timeout_ms);
    options.cache_entries = cache;
    options.on_query = [this](const QueryEvent& event) {
      absl::MutexLock lock(&events_mu_);
      events_.push_back(absl::StrCat(event.name, " ", static_cast<int>(event.outcome), " ",
                                     static_cast<int>(event.rcode), " ", event.rule));
    };
    absl::StatusOr<std::unique_ptr<DnsServer>> server =
        DnsServer::Start(std::move(options), store_.get(), &counters_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  void Ask(const Bytes& query) { SendTo(client_.get(), query, PortOf(listener_.get())); }

  std::optional<Bytes> AnswerToClient(int timeout_ms = 5000) {
    std::optional<Datagram> datagram = Receive(client_.get(), timeout_ms);
    if (!datagram.has_value()) return std::nullopt;
    return datagram->bytes;
  }

  void Deny(const std::string& domain, Rule::Match match = Rule::EXACT) {
    Rule rule;
    rule.set_domain(domain);
    rule.set_match(match);
    ASSERT_TRUE(store_->Add(rule).ok());
  }

  std::vector<std::string> Events() {
    absl::MutexLock lock(&events_mu_);
    return events_;
  }

  TempDir root_;
  std::unique_ptr<RuleStore> store_;
  CounterSet counter_set_;
  DnsCounters counters_{&counter_set_};
  UniqueFd listener_;
  UniqueFd tcp_listener_;
  UniqueFd client_;
  std::unique_ptr<DnsServer> server_;
  absl::Mutex events_mu_;
  std::vector<std::string> events_;
};

TEST_F(DnsServerTest, ForwardsUnderARandomIdAndAnswersWithTheClientsOwn) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});

  Ask(Query("www.example.com", 1, 0x1111));
  std::optional<Asked> asked = ReceiveQuery(upstream.get());
  ASSERT_TRUE(asked.has_value());
  EXPECT_EQ(asked->name, "www.example.com");
  SendTo(upstream.get(), Answer("www.example.com", asked->id, 60), asked->port);

  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(dns::ReadU16(answer->data()), 0x1111);
  EXPECT_EQ(dns::ReadU16(&(*answer)[6]), 1);
  EXPECT_EQ(counters_.Get(DnsCounters::kForwarded), 1u);
  EXPECT_TRUE(WaitUntil([&] { return Events().size() == 1; }, absl::Seconds(5)));
  EXPECT_EQ(Events()[0], "www.example.com 2 0 ");
}

TEST_F(DnsServerTest, UpstreamIdsAreNotTheClientsAndVary) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});

  std::set<uint16_t> ids;
  for (int i = 0; i < 20; ++i) {
    Ask(Query(absl::StrCat("n", i, ".example"), 1, 0x1111));
    std::optional<Asked> asked = ReceiveQuery(upstream.get());
    ASSERT_TRUE(asked.has_value());
    ids.insert(asked->id);
  }
  EXPECT_GE(ids.size(), 18u);  // 20 random 16-bit ids: a repeat or two is possible
}

TEST_F(DnsServerTest, EachQueryGoesOutFromAPortOfItsOwn) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});

  std::set<uint16_t> ports;
  for (int i = 0; i < 10; ++i) Ask(Query(absl::StrCat("n", i, ".example"), 1, 0x1111));
  for (int i = 0; i < 10; ++i) {
    std::optional<Asked> asked = ReceiveQuery(upstream.get());
    ASSERT_TRUE(asked.has_value());
    ports.insert(asked->port);
  }
  EXPECT_GE(ports.size(), 9u);  // ten random ports from Linux's ephemeral range
}

TEST_F(DnsServerTest, AnswerOnAnotherQuerysPortIsDropped) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});

  Ask(Query("a.example", 1, 1));
  std::optional<Asked> a = ReceiveQuery(upstream.get());
  Ask(Query("b.example", 1, 2));
  std::optional<Asked> b = ReceiveQuery(upstream.get());
  ASSERT_TRUE(a.has_value() && b.has_value());
  ASSERT_NE(a->port, b->port);
  SendTo(upstream.get(), Answer(b->name, b->id, 60), a->port);

  EXPECT_FALSE(AnswerToClient(200).has_value());
  EXPECT_EQ(counters_.Get(DnsCounters::kUpstreamBadAnswers), 1u);
  SendTo(upstream.get(), Answer(b->name, b->id, 60), b->port);
  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(dns::ReadU16(answer->data()), 2);
}

TEST_F(DnsServerTest, UnreachableUpstreamIsLeftAtOnceWithoutWaitingForTheTimeout) {
  uint16_t closed_port;
  {
    UniqueFd closed = BindOrDie(InetProtocol::kUdp);
    closed_port = PortOf(closed.get());
  }  // nothing listens there now: the kernel answers port unreachable
  UniqueFd live = BindOrDie(InetProtocol::kUdp);
  DnsServer::Options options;
  options.udp_listeners = {listener_.get()};
  for (uint16_t port : {closed_port, PortOf(live.get())}) {
    options.forwarding.upstreams.push_back(*ParseInetAddress(absl::StrCat("127.0.0.1:", port), 53));
  }
  options.forwarding.timeout = std::chrono::seconds(30);
  absl::StatusOr<std::unique_ptr<DnsServer>> server =
      DnsServer::Start(std::move(options), store_.get(), &counters_);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);

  Ask(Query("www.example.com", 1, 3));
  std::optional<Asked> asked = ReceiveQuery(live.get(), 10000);
  ASSERT_TRUE(asked.has_value());
  SendTo(live.get(), Answer("www.example.com", asked->id, 60), asked->port);
  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(RcodeOf(*answer), dns::Rcode::kNoError);
  EXPECT_EQ(counters_.Get(DnsCounters::kUpstreamTimeouts), 0u);
}

TEST_F(DnsServerTest, DropsAnswersWithAWrongIdOrQuestionAndGarbageAndKeepsWaiting) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});

  Ask(Query("www.example.com", 1, 0x2222));
  std::optional<Asked> asked = ReceiveQuery(upstream.get());
  ASSERT_TRUE(asked.has_value());
  SendTo(upstream.get(), Bytes{1, 2, 3}, asked->port);
  SendTo(upstream.get(), Answer("www.example.com", asked->id ^ 1, 60), asked->port);
  SendTo(upstream.get(), Answer("other.example.com", asked->id, 60), asked->port);
  SendTo(upstream.get(), Answer("www.example.com", asked->id, 60, 2), asked->port);

  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(dns::ReadU16(&(*answer)[6]), 2);
  EXPECT_EQ(counters_.Get(DnsCounters::kUpstreamBadAnswers), 3u);
  EXPECT_FALSE(AnswerToClient(200).has_value());
}

TEST_F(DnsServerTest, AnswersServfailWhenTheOnlyUpstreamTimesOut) {
  UniqueFd silent = BindOrDie(InetProtocol::kUdp);
  StartServer({silent.get()}, /*timeout_ms=*/150);

  absl::Time asked = absl::Now();
  Ask(Query("www.example.com", 1, 0x3333));
  std::optional<Bytes> answer = AnswerToClient();

  ASSERT_TRUE(answer.has_value());
  EXPECT_GE(absl::Now() - asked, absl::Milliseconds(150));
  EXPECT_EQ(RcodeOf(*answer), dns::Rcode::kServFail);
  EXPECT_EQ(dns::ReadU16(answer->data()), 0x3333);
  EXPECT_EQ(counters_.Get(DnsCounters::kFailed), 1u);
  EXPECT_EQ(counters_.Get(DnsCounters::kUpstreamTimeouts), 1u);
}

TEST_F(DnsServerTest, FailsOverToTheNextUpstreamAndPrefersItFromThenOn) {
  UniqueFd silent = BindOrDie(InetProtocol::kUdp);
  UniqueFd live = BindOrDie(InetProtocol::kUdp);
  // Long enough for this test to answer in time on a loaded machine.
  StartServer({silent.get(), live.get()}, /*timeout_ms=*/500);

  for (int i = 0; i < 2; ++i) {
    std::string name = absl::StrCat("n", i, ".example");
    Ask(Query(name, 1, 0x4444));
    std::optional<Asked> asked = ReceiveQuery(live.get());
    ASSERT_TRUE(asked.has_value());
    SendTo(live.get(), Answer(name, asked->id, 60), asked->port);
    std::optional<Bytes> answer = AnswerToClient();
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(RcodeOf(*answer), dns::Rcode::kNoError);
  }
  // The first query waited for the silent upstream; the second went to the live one at once.
  EXPECT_EQ(counters_.Get(DnsCounters::kUpstreamTimeouts), 1u);
  std::optional<Datagram> on_silent = Receive(silent.get(), 0);
  ASSERT_TRUE(on_silent.has_value());
  EXPECT_FALSE(Receive(silent.get(), 0).has_value());
}

TEST_F(DnsServerTest, ServfailFromAnUpstreamMovesOnToTheNext) {
  UniqueFd failing = BindOrDie(InetProtocol::kUdp);
  UniqueFd live = BindOrDie(InetProtocol::kUdp);
  StartServer({failing.get(), live.get()});

  Ask(Query("www.example.com", 1, 5));
  std::optional<Asked> first = ReceiveQuery(failing.get());
  ASSERT_TRUE(first.has_value());
  SendTo(failing.get(), Answer("www.example.com", first->id, 0, 0, 2), first->port);
  std::optional<Asked> second = ReceiveQuery(live.get());
  ASSERT_TRUE(second.has_value());
  SendTo(live.get(), Answer("www.example.com", second->id, 60), second->port);

  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(RcodeOf(*answer), dns::Rcode::kNoError);
}

TEST_F(DnsServerTest, MalformedQueriesAreDroppedAndCountedAndServingGoesOn) {
  StartServer({});
  Deny("blocked.example");

  Bytes truncated = Query("blocked.example");
  truncated.resize(truncated.size() - 3);
  Ask(Bytes{0x12});
  Ask(truncated);
  Ask(Answer("blocked.example", 1, 60));  // an answer sent as a query
  Ask(Query("blocked.example", 1, 9));

  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(dns::ReadU16(answer->data()), 9);
  EXPECT_EQ(counters_.Get(DnsCounters::kDroppedMalformed), 3u);
  EXPECT_EQ(counters_.Get(DnsCounters::kQueries), 1u);
}

TEST_F(DnsServerTest, BlockedNamesAreAnsweredWithoutAnUpstreamAndCountedByRule) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});
  Deny("ads.example", Rule::SUFFIX);

  Ask(Query("x.ads.example", 1, 10));
  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(RcodeOf(*answer), dns::Rcode::kNxDomain);
  EXPECT_FALSE(Receive(upstream.get(), 100).has_value());

  server_->Drain(absl::Seconds(1));
  EXPECT_EQ(counters_.Get(DnsCounters::kBlocked), 1u);
  EXPECT_EQ(counters_.RuleHits("rule:deny:suffix:ads.example"), 1u);
  EXPECT_EQ(Events(), std::vector<std::string>{"x.ads.example 0 3 rule:deny:suffix:ads.example"});
}

TEST_F(DnsServerTest, RepeatedQuestionIsAnsweredFromTheCache) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});

  Ask(Query("www.example.com", 1, 1));
  std::optional<Asked> asked = ReceiveQuery(upstream.get());
  ASSERT_TRUE(asked.has_value());
  SendTo(upstream.get(), Answer("www.example.com", asked->id, 60), asked->port);
  ASSERT_TRUE(AnswerToClient().has_value());

  Ask(Query("www.example.com", 1, 2));
  std::optional<Bytes> cached = AnswerToClient();
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(dns::ReadU16(cached->data()), 2);
  EXPECT_FALSE(Receive(upstream.get(), 100).has_value());
  EXPECT_EQ(counters_.Get(DnsCounters::kCached), 1u);
}

TEST_F(DnsServerTest, AnswerTooBigForTheClientIsSentTruncated) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});

  Ask(Query("big.example", 1, 1));  // no EDNS0: at most 512 bytes
  std::optional<Asked> asked = ReceiveQuery(upstream.get());
  ASSERT_TRUE(asked.has_value());
  SendTo(upstream.get(), Answer("big.example", asked->id, 60, 40), asked->port);

  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_LE(answer->size(), 512u);
  EXPECT_NE((*answer)[2] & 0x02, 0);  // TC
  EXPECT_EQ(counters_.Get(DnsCounters::kTruncatedToClient), 1u);
}

TEST_F(DnsServerTest, SeveralThreadsShareTheSocketsAndAnswerEveryQuery) {
  StartServer({}, 2000, 100, /*threads=*/3);
  Deny("blocked.example");

  std::set<uint16_t> answered;
  for (uint16_t id = 1; id <= 200; ++id) Ask(Query("blocked.example", 1, id));
  while (answered.size() < 200) {
    std::optional<Bytes> answer = AnswerToClient();
    ASSERT_TRUE(answer.has_value()) << answered.size() << " answered";
    answered.insert(dns::ReadU16(answer->data()));
  }
  server_->Drain(absl::Seconds(1));
  EXPECT_EQ(counters_.RuleHits("rule:deny:exact:blocked.example"), 200u);
}

TEST_F(DnsServerTest, AnswersOverTcp) {
  StartServer({});
  Deny("blocked.example");

  UniqueFd connection(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in to = Loopback(PortOf(tcp_listener_.get()));
  ASSERT_EQ(::connect(connection.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  Bytes query = Query("blocked.example", 1, 0x5555);
  Bytes framed{static_cast<uint8_t>(query.size() >> 8), static_cast<uint8_t>(query.size())};
  framed.insert(framed.end(), query.begin(), query.end());
  ASSERT_EQ(::send(connection.get(), framed.data(), framed.size(), 0),
            static_cast<ssize_t>(framed.size()));

  uint8_t reply[512];
  size_t got = 0;
  pollfd readable{connection.get(), POLLIN, 0};
  while (got < 2 || got < 2u + dns::ReadU16(reply)) {
    ASSERT_EQ(::poll(&readable, 1, 5000), 1);
    ssize_t n = ::recv(connection.get(), reply + got, sizeof reply - got, 0);
    ASSERT_GT(n, 0);
    got += static_cast<size_t>(n);
  }
  EXPECT_EQ(dns::ReadU16(reply + 2), 0x5555);
  EXPECT_EQ(reply[5] & 0xf, 3);
}

TEST_F(DnsServerTest, DrainAnswersQueriesInFlightAndLeavesUnreadOnesInTheSocket) {
  UniqueFd upstream = BindOrDie(InetProtocol::kUdp);
  StartServer({upstream.get()});

  Ask(Query("www.example.com", 1, 7));
  std::optional<Asked> asked = ReceiveQuery(upstream.get());
  ASSERT_TRUE(asked.has_value());
  std::future<void> drained =
      std::async(std::launch::async, [&] { server_->Drain(absl::Seconds(10)); });
  SendTo(upstream.get(), Answer("www.example.com", asked->id, 60), asked->port);

  std::optional<Bytes> answer = AnswerToClient();
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(dns::ReadU16(answer->data()), 7);
  ASSERT_EQ(drained.wait_for(std::chrono::seconds(10)), std::future_status::ready);

  Ask(Query("after.example", 1, 8));
  std::optional<Datagram> waiting = Receive(listener_.get(), 1000);
  ASSERT_TRUE(waiting.has_value());
  EXPECT_EQ(dns::ReadU16(waiting->bytes.data()), 8);
}

}  // namespace
}  // namespace nehost::filter
