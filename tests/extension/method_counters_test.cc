#include "extension/method_counters.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <thread>
#include <vector>

namespace nehost::filter {
namespace {

using ::testing::Pair;
using ::testing::UnorderedElementsAre;

CounterMap Counts(std::initializer_list<std::pair<const std::string, uint64_t>> entries) {
  CounterMap counts;
  for (const auto& [method, count] : entries) counts[method] = count;
  return counts;
}

TEST(MethodCounters, CountsEachMethodOnItsOwn) {
  CounterSet set;
  MethodCounters counters(&set);
  counters.Increment("status");
  counters.Increment("status");
  counters.Increment("add_rule");

  CounterMap snapshot;
  counters.CopyTo(&snapshot);
  EXPECT_THAT(snapshot, UnorderedElementsAre(Pair("status", 2u), Pair("add_rule", 1u)));
}

TEST(MethodCounters, AddsAPredecessorsCountsToItsOwn) {
  CounterSet set;
  MethodCounters counters(&set);
  counters.Increment("status");

  counters.Add(Counts({{"status", 40}, {"remove_rule", 3}}));

  EXPECT_EQ(counters.Get("status"), 41u);
  EXPECT_EQ(counters.Get("remove_rule"), 3u);
  EXPECT_EQ(counters.Get("list_rules"), 0u);
}

TEST(MethodCounters, KeepsCountsOfMethodsItDoesNotServe) {
  CounterSet set;
  MethodCounters counters(&set);

  counters.Add(Counts({{"a_method_of_a_later_version", 5}}));

  EXPECT_EQ(counters.Get("a_method_of_a_later_version"), 5u);
}

TEST(MethodCounters, SumThatWouldOverflowStaysAtTheLargestValue) {
  constexpr uint64_t kLargest = std::numeric_limits<uint64_t>::max();
  CounterSet set;
  MethodCounters counters(&set);
  counters.Increment("status");

  counters.Add(Counts({{"status", kLargest}}));
  counters.Increment("status");

  EXPECT_EQ(counters.Get("status"), kLargest);
}

TEST(MethodCounters, CopyToReplacesWhatTheMapHeld) {
  CounterSet set;
  MethodCounters counters(&set);
  counters.Increment("status");
  CounterMap snapshot = Counts({{"stale", 9}});

  counters.CopyTo(&snapshot);

  EXPECT_THAT(snapshot, UnorderedElementsAre(Pair("status", 1u)));
}

TEST(MethodCounters, LosesNoIncrementFromConcurrentThreads) {
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 10000;
  CounterSet set;
  MethodCounters counters(&set);

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&counters] {
      for (int call = 0; call < kCallsPerThread; ++call) counters.Increment("status");
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_EQ(counters.Get("status"), uint64_t{kThreads} * kCallsPerThread);
}

}  // namespace
}  // namespace nehost::filter
