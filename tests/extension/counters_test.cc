#include "extension/counters.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "extension/checkpoint.h"
#include "tests/support/process.h"

namespace nehost::filter {
namespace {

using ::nehost::testing::ReadFileOrEmpty;
using ::nehost::testing::TempDir;
using ::nehost::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr uint64_t kBounds[] = {10, 100, 1000};

std::vector<uint64_t> CountsOf(const HistogramState& state) {
  return {state.counts().begin(), state.counts().end()};
}

TEST(Histogram, PutsEachValueInTheFirstBucketThatHoldsIt) {
  Histogram histogram(kBounds);
  for (uint64_t value : {0, 10, 11, 100, 999, 1000, 1001, 50000}) histogram.Record(value);

  HistogramState state = histogram.Snapshot();

  EXPECT_THAT(CountsOf(state), ElementsAre(2u, 2u, 2u, 2u));
  EXPECT_EQ(state.sum(), 0u + 10 + 11 + 100 + 999 + 1000 + 1001 + 50000);
}

TEST(Histogram, MergesOtherBucketsWithoutCountingAValueBelowWhereItWas) {
  Histogram histogram(kBounds);
  HistogramState other;
  for (uint64_t bound : {5, 50, 5000}) other.add_upper_bounds(bound);
  for (uint64_t count : {1, 2, 3, 4}) other.add_counts(count);
  other.set_sum(1234);

  histogram.Merge(other, +1);

  // <=5 and <=50 go to <=10 and <=100; <=5000 and the overflow go past 1000.
  EXPECT_THAT(CountsOf(histogram.Snapshot()), ElementsAre(1u, 2u, 0u, 7u));
  EXPECT_EQ(histogram.Snapshot().sum(), 1234u);
}

TEST(CounterSet, HandsOutOneCounterPerName) {
  CounterSet counters;
  Counter* first = counters.counter("flows/evaluated");
  first->Add(3);

  EXPECT_EQ(counters.counter("flows/evaluated"), first);
  EXPECT_EQ(counters.Get("flows/evaluated"), 3u);
  EXPECT_EQ(counters.Get("flows/unknown"), 0u);
}

TEST(CounterSet, CopyAndAddCarryCountersAndHistogramsExactly) {
  CounterSet before;
  before.Add("flows/evaluated", 7);
  before.Add("status", 2);
  before.counter("flows/zero");
  before.histogram("dns/upstream_latency_us", kLatencyBucketsUs)->Record(420);

  HandoffState state;
  before.CopyTo(&state);
  CounterSet after;
  after.Add("flows/evaluated", 1);
  after.Add(state);

  EXPECT_THAT(state.counters(),
              UnorderedElementsAre(Pair("flows/evaluated", 7u), Pair("status", 2u)))
      << "counters at zero are left out";
  EXPECT_EQ(after.Get("flows/evaluated"), 8u);
  EXPECT_EQ(after.Get("status"), 2u);
  ASSERT_EQ(after.Histograms().size(), 1u);
  EXPECT_EQ(after.Histograms()[0].first, "dns/upstream_latency_us");
  EXPECT_EQ(after.Histograms()[0].second.sum(), 420u);
}

TEST(CounterSet, ReplaceSwapsTheCheckpointForTheExactCounts) {
  CounterSet counters;
  HandoffState checkpoint;
  (*checkpoint.mutable_counters())["flows/evaluated"] = 100;
  counters.Add(checkpoint);
  counters.Add("flows/evaluated", 5);  // counted by this generation itself
  HandoffState exact;
  (*exact.mutable_counters())["flows/evaluated"] = 130;

  counters.Replace(checkpoint, exact);

  EXPECT_EQ(counters.Get("flows/evaluated"), 135u);
}

TEST(CounterSet, SumsFromOutsideSaturateInsteadOfWrapping) {
  CounterSet counters;
  counters.Add("flows/evaluated", 2);
  HandoffState huge;
  (*huge.mutable_counters())["flows/evaluated"] = std::numeric_limits<uint64_t>::max();

  counters.Add(huge);
  counters.Add("flows/evaluated");

  EXPECT_EQ(counters.Get("flows/evaluated"), std::numeric_limits<uint64_t>::max());
}

TEST(CounterSet, LosesNoAddFromConcurrentThreads) {
  CounterSet counters;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&counters] {
      for (int n = 0; n < 20000; ++n) counters.Add("flows/evaluated");
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(counters.Get("flows/evaluated"), 80000u);
}

TEST(CounterCheckpoint, WrittenCountsAreLoadedByTheNextProcess) {
  TempDir dir;
  {
    CounterSet counters;
    counters.Add("flows/denied", 9);
    counters.histogram("flows/batch_size", kBounds)->Record(50);
    CounterCheckpoint checkpoint(dir.path(), &counters, absl::Hours(1));
    ASSERT_TRUE(checkpoint.WriteNow().ok());
    EXPECT_TRUE(checkpoint.last_written().has_value());
  }

  CounterSet next;
  HandoffState loaded = LoadCheckpoint(dir.path(), &next);

  EXPECT_EQ(next.Get("flows/denied"), 9u);
  EXPECT_EQ(loaded.counters().at("flows/denied"), 9u);
  ASSERT_EQ(next.Histograms().size(), 1u);
  EXPECT_THAT(CountsOf(next.Histograms()[0].second), ElementsAre(0u, 1u, 0u, 0u));
}

TEST(CounterCheckpoint, WritesEveryIntervalWithoutBeingAsked) {
  TempDir dir;
  CounterSet counters;
  CounterCheckpoint checkpoint(dir.path(), &counters, absl::Milliseconds(20));

  counters.Add("flows/allowed", 4);

  EXPECT_TRUE(nehost::testing::WaitUntil(
      [&] {
        return ReadFileOrEmpty(dir / kCounterFileName).find("flows/allowed") != std::string::npos;
      },
      absl::Seconds(10)));
}

TEST(CounterCheckpoint, StopWritesTheLastCounts) {
  TempDir dir;
  CounterSet counters;
  CounterCheckpoint checkpoint(dir.path(), &counters, absl::Hours(1));
  counters.Add("flows/allowed", 12);

  checkpoint.Stop();

  CounterSet next;
  LoadCheckpoint(dir.path(), &next);
  EXPECT_EQ(next.Get("flows/allowed"), 12u);
}

TEST(CounterCheckpoint, ACorruptCheckpointIsMovedAsideAndCountingStartsFromZero) {
  TempDir dir;
  WriteFileOrDie(dir / kCounterFileName, "{\"schemaVersion\": 1, \"state\": {\"counters\": {");

  CounterSet counters;
  HandoffState loaded = LoadCheckpoint(dir.path(), &counters);

  EXPECT_EQ(loaded.counters_size(), 0);
  EXPECT_EQ(counters.Get("checkpoint/load_failures"), 1u);
  EXPECT_FALSE(std::filesystem::exists(dir / kCounterFileName));
  EXPECT_THAT(ReadFileOrEmpty(dir / "counters.json.bad"), HasSubstr("schemaVersion"));
}

TEST(CounterCheckpoint, ANewerSchemaVersionIsNotLoaded) {
  TempDir dir;
  WriteFileOrDie(dir / kCounterFileName,
                 R"({"schemaVersion": 2, "state": {"counters": {"flows/denied": "5"}}})");

  CounterSet counters;
  LoadCheckpoint(dir.path(), &counters);

  EXPECT_EQ(counters.Get("flows/denied"), 0u);
  EXPECT_EQ(counters.Get("checkpoint/load_failures"), 1u);
}

}  // namespace
}  // namespace nehost::filter
