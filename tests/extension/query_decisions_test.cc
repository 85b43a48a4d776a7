#include "extension/query_decisions.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

namespace nehost::filter {
namespace {

QueryEvent BlockedQuery(const sockaddr_in& client) {
  QueryEvent event;
  event.name = "ads.example";
  event.type = 28;
  event.client = reinterpret_cast<const sockaddr*>(&client);
  event.client_length = sizeof client;
  event.outcome = QueryEvent::Outcome::kBlocked;
  event.rcode = dns::Rcode::kNxDomain;
  event.rule = "rule:deny:exact:ads.example";
  return event;
}

TEST(QueryDecision, NamesTheQueryItsOutcomeAndTheRuleThatBlockedIt) {
  sockaddr_in client{};
  client.sin_family = AF_INET;
  client.sin_port = htons(53124);
  ::inet_pton(AF_INET, "127.0.0.1", &client.sin_addr);

  Decision decision = QueryDecision(BlockedQuery(client), absl::FromUnixSeconds(1'800'000'000));

  EXPECT_EQ(decision.at().seconds(), 1'800'000'000);
  EXPECT_EQ(decision.dns().client(), "127.0.0.1:53124");
  EXPECT_EQ(decision.dns().name(), "ads.example");
  EXPECT_EQ(decision.dns().type(), "AAAA");
  EXPECT_EQ(decision.dns().outcome(), "blocked");
  EXPECT_EQ(decision.dns().rcode(), "NXDOMAIN");
  EXPECT_EQ(decision.verdict().action(), FlowRule::DENY);
  EXPECT_EQ(decision.verdict().rule(), "rule:deny:exact:ads.example");
}

TEST(QueryDecision, ForwardedQueryIsAllowedWithItsLatencyAndAnUnknownTypeAsANumber) {
  sockaddr_in6 client{};
  client.sin6_family = AF_INET6;
  client.sin6_port = htons(40000);
  client.sin6_addr = in6addr_loopback;
  QueryEvent event;
  event.name = "www.example";
  event.type = 4242;
  event.client = reinterpret_cast<const sockaddr*>(&client);
  event.client_length = sizeof client;
  event.outcome = QueryEvent::Outcome::kForwarded;
  event.upstream_latency = std::chrono::microseconds(1234);

  Decision decision = QueryDecision(event, absl::Now());

  EXPECT_EQ(decision.dns().client(), "[::1]:40000");
  EXPECT_EQ(decision.dns().type(), "4242");
  EXPECT_EQ(decision.dns().outcome(), "forwarded");
  EXPECT_EQ(decision.dns().rcode(), "NOERROR");
  EXPECT_EQ(decision.dns().upstream_latency_us(), 1234u);
  EXPECT_EQ(decision.verdict().action(), FlowRule::ALLOW);
  EXPECT_TRUE(decision.verdict().rule().empty());
}

TEST(PublishQueriesTo, ReachesAWatcherAndCostsNothingWithout) {
  CounterSet counters;
  DecisionHub hub(&counters);
  std::function<void(const QueryEvent&)> publish = PublishQueriesTo(&hub);
  sockaddr_in client{};
  client.sin_family = AF_INET;

  publish(BlockedQuery(client));  // nobody watches: dropped on the floor, not queued
  std::shared_ptr<DecisionWatcher> watcher = hub.Watch(16);
  publish(BlockedQuery(client));

  EXPECT_EQ(counters.Get("decisions/published"), 1u);
  std::vector<Decision> delivered;
  watcher->Next(&delivered, absl::Seconds(5));
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0].dns().name(), "ads.example");
  hub.Unwatch(watcher);
}

}  // namespace
}  // namespace nehost::filter
