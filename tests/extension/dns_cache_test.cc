#include "extension/dns_cache.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "tests/extension/dns_wire.h"

namespace nehost::filter {
namespace {

using ::nehost::filter::testing::Answer;
using ::nehost::filter::testing::Bytes;
using ::nehost::filter::testing::NegativeAnswer;
using ::nehost::filter::testing::Query;
using std::chrono::seconds;

class DnsCacheTest : public ::testing::Test {
 protected:
  // Parses a query the way the server does; the packet must outlive the query's use.
  dns::Query Parse(const Bytes& packet) {
    dns::Query query;
    EXPECT_EQ(dns::ParseQuery(packet, &query), dns::ParseError::kNone);
    return query;
  }

  void Store(const Bytes& query_packet, const Bytes& answer) {
    dns::Response parsed;
    ASSERT_EQ(dns::ParseResponse(answer, &parsed), dns::ParseError::kNone);
    cache_.Insert(Parse(query_packet), answer, parsed, start_);
  }

  // The cached answer to query_packet at start + elapsed, or empty.
  Bytes Lookup(const Bytes& query_packet, seconds elapsed) {
    size_t length = cache_.Lookup(Parse(query_packet), query_packet, start_ + elapsed, out_);
    return Bytes(out_.begin(), out_.begin() + length);
  }

  DnsCache cache_{4};
  DnsCache::Clock::time_point start_ = DnsCache::Clock::now();
  std::vector<uint8_t> out_ = std::vector<uint8_t>(dns::kMaxMessage);
};

TEST_F(DnsCacheTest, ServesTheAnswerWithTheClientsIdAndTtlsCountedDown) {
  Store(Query("example.com", 1, 1), Answer("example.com", 1, 300, 2));

  Bytes hit = Lookup(Query("example.com", 1, 0x7777), seconds(100));
  ASSERT_FALSE(hit.empty());
  dns::Response response;
  ASSERT_EQ(dns::ParseResponse(hit, &response), dns::ParseError::kNone);
  EXPECT_EQ(response.id, 0x7777);
  EXPECT_EQ(response.cache_ttl, 200);
  EXPECT_EQ(dns::ReadU32(&hit[response.ttl_offsets[1]]), 200u);
}

TEST_F(DnsCacheTest, RepeatsTheQuestionAsThisClientSpelledIt) {
  Store(Query("example.com", 1, 1), Answer("example.com", 1, 300));
  Bytes hit = Lookup(Query("EXAMPLE.com", 1, 2), seconds(0));
  ASSERT_FALSE(hit.empty());
  EXPECT_EQ(hit[13], 'E');
}

TEST_F(DnsCacheTest, ExpiresWhenTheTtlRunsOut) {
  Store(Query("example.com"), Answer("example.com", 0x1234, 30));
  EXPECT_FALSE(Lookup(Query("example.com"), seconds(29)).empty());
  EXPECT_TRUE(Lookup(Query("example.com"), seconds(30)).empty());
  EXPECT_EQ(cache_.size(), 0u);
}

TEST_F(DnsCacheTest, KeepsNegativeAnswersForTheSoaMinimum) {
  Store(Query("gone.example"), NegativeAnswer("gone.example", 0x1234, 3600, 60));
  EXPECT_FALSE(Lookup(Query("gone.example"), seconds(59)).empty());
  EXPECT_TRUE(Lookup(Query("gone.example"), seconds(60)).empty());
}

TEST_F(DnsCacheTest, NeverStoresTruncatedOrFailedAnswers) {
  Store(Query("big.example"), Answer("big.example", 0x1234, 300, 1, 0, true));
  Store(Query("fail.example"), Answer("fail.example", 0x1234, 300, 0, 2));
  EXPECT_EQ(cache_.size(), 0u);
}

TEST_F(DnsCacheTest, KeysOnTypeAndEdns) {
  Store(Query("example.com", 1), Answer("example.com", 0x1234, 300));
  EXPECT_TRUE(Lookup(Query("example.com", 28), seconds(0)).empty());
  EXPECT_TRUE(Lookup(Query("example.com", 1, 0x1234, 1232), seconds(0)).empty());
}

TEST_F(DnsCacheTest, DropsTheOldestEntryWhenFull) {
  for (int i = 0; i < 5; ++i) {
    std::string name = "host" + std::to_string(i) + ".example";
    Store(Query(name), Answer(name, 0x1234, 300));
  }
  EXPECT_EQ(cache_.size(), 4u);
  EXPECT_TRUE(Lookup(Query("host0.example"), seconds(0)).empty());
  EXPECT_FALSE(Lookup(Query("host4.example"), seconds(0)).empty());
}

TEST(DnsCache, CapacityZeroStoresNothing) {
  DnsCache cache(0);
  Bytes query_packet = Query("example.com");
  Bytes answer = Answer("example.com", 0x1234, 300);
  dns::Query query;
  ASSERT_EQ(dns::ParseQuery(query_packet, &query), dns::ParseError::kNone);
  dns::Response parsed;
  ASSERT_EQ(dns::ParseResponse(answer, &parsed), dns::ParseError::kNone);
  cache.Insert(query, answer, parsed, DnsCache::Clock::now());
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace nehost::filter
