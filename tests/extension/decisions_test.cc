#include "extension/decisions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/time/clock.h"

namespace nehost::filter {
namespace {

std::vector<Decision> Flows(uint64_t first_id, int count) {
  std::vector<Decision> decisions(count);
  for (int i = 0; i < count; ++i) decisions[i].mutable_flow()->set_id(first_id + i);
  return decisions;
}

std::vector<uint64_t> IdsOf(const std::vector<Decision>& decisions) {
  std::vector<uint64_t> ids;
  for (const Decision& decision : decisions) ids.push_back(decision.flow().id());
  return ids;
}

TEST(DecisionHub, DeliversEveryDecisionInOrderToEachWatcher) {
  CounterSet counters;
  DecisionHub hub(&counters);
  auto first = hub.Watch(16);
  auto second = hub.Watch(16);

  hub.Publish(Flows(1, 3));

  std::vector<Decision> got;
  ASSERT_EQ(first->Next(&got, absl::Seconds(5)), DecisionWatcher::kDecisions);
  EXPECT_THAT(IdsOf(got), ::testing::ElementsAre(1u, 2u, 3u));
  ASSERT_EQ(second->Next(&got, absl::Seconds(5)), DecisionWatcher::kDecisions);
  EXPECT_THAT(IdsOf(got), ::testing::ElementsAre(1u, 2u, 3u));
  EXPECT_EQ(counters.Get("decisions/published"), 3u);
}

TEST(DecisionHub, AFullQueueDropsTheNewestAndTheNextDeliveredCarriesTheCount) {
  CounterSet counters;
  DecisionHub hub(&counters);
  auto watcher = hub.Watch(4);

  hub.Publish(Flows(1, 10));  // 1-4 queued, 5-10 dropped
  std::vector<Decision> got;
  ASSERT_EQ(watcher->Next(&got, absl::Seconds(5)), DecisionWatcher::kDecisions);
  hub.Publish(Flows(11, 2));
  std::vector<Decision> after;
  ASSERT_EQ(watcher->Next(&after, absl::Seconds(5)), DecisionWatcher::kDecisions);

  EXPECT_THAT(IdsOf(got), ::testing::ElementsAre(1u, 2u, 3u, 4u));
  EXPECT_THAT(IdsOf(after), ::testing::ElementsAre(11u, 12u));
  EXPECT_EQ(after[0].dropped_before(), 6u);
  EXPECT_EQ(after[1].dropped_before(), 0u);
  EXPECT_EQ(watcher->dropped(), 6u);
  EXPECT_EQ(counters.Get("decisions/dropped"), 6u);
}

TEST(DecisionHub, AWatcherThatNeverReadsDoesNotHoldUpPublishers) {
  CounterSet counters;
  DecisionHub hub(&counters);
  auto stalled = hub.Watch(8);

  const absl::Time started = absl::Now();
  for (int i = 0; i < 1000; ++i) hub.Publish(Flows(i * 100, 100));

  EXPECT_LT(absl::Now() - started, absl::Seconds(10)) << "publishing must not wait";
  EXPECT_EQ(stalled->dropped(), 100000u - 8u);
}

TEST(DecisionHub, WithoutWatchersNothingIsQueuedOrCounted) {
  CounterSet counters;
  DecisionHub hub(&counters);
  EXPECT_FALSE(hub.HasWatchers());

  hub.Publish(Flows(1, 5));

  EXPECT_EQ(counters.Get("decisions/published"), 0u);
  auto watcher = hub.Watch(4);
  EXPECT_TRUE(hub.HasWatchers());
  hub.Unwatch(watcher);
  EXPECT_FALSE(hub.HasWatchers());
}

TEST(DecisionHub, NextTimesOutWhenNothingCame) {
  CounterSet counters;
  DecisionHub hub(&counters);
  auto watcher = hub.Watch(4);
  std::vector<Decision> got;

  EXPECT_EQ(watcher->Next(&got, absl::Milliseconds(1)), DecisionWatcher::kTimedOut);
}

TEST(DecisionHub, CloseEndsWatchersNowAndToCome) {
  CounterSet counters;
  DecisionHub hub(&counters);
  auto watcher = hub.Watch(4);
  std::atomic<bool> ended = false;
  std::thread reader([&] {
    std::vector<Decision> got;
    while (watcher->Next(&got, absl::Seconds(30)) != DecisionWatcher::kClosed) {
    }
    ended = true;
  });

  hub.Close();
  reader.join();

  EXPECT_TRUE(ended);
  std::vector<Decision> got;
  EXPECT_EQ(hub.Watch(4)->Next(&got, absl::Seconds(5)), DecisionWatcher::kClosed);
}

TEST(DecisionHub, ClosingAWatcherRunsItsCloseActionOnce) {
  CounterSet counters;
  DecisionHub hub(&counters);
  auto watcher = hub.Watch(4);
  int closed = 0;
  watcher->OnClose([&closed] { ++closed; });

  hub.Close();
  hub.Close();

  EXPECT_EQ(closed, 1);
  EXPECT_TRUE(watcher->closed());
  int late = 0;
  hub.Watch(4)->OnClose([&late] { ++late; });
  EXPECT_EQ(late, 1) << "a watcher of a closed hub runs its close action at once";
}

TEST(DecisionHub, ConcurrentPublishersLoseNothingWhileThereIsRoom) {
  CounterSet counters;
  DecisionHub hub(&counters);
  auto watcher = hub.Watch(kMaxDecisionBuffer);
  std::vector<std::thread> publishers;
  for (int p = 0; p < 4; ++p) {
    publishers.emplace_back([&hub, p] {
      for (int i = 0; i < 100; ++i) hub.Publish(Flows(p * 1000 + i * 10, 10));
    });
  }
  for (std::thread& publisher : publishers) publisher.join();

  std::vector<Decision> got;
  ASSERT_EQ(watcher->Next(&got, absl::Seconds(5)), DecisionWatcher::kDecisions);
  EXPECT_EQ(got.size(), 4000u);
  EXPECT_EQ(watcher->dropped(), 0u);
}

TEST(DecisionHub, DecisionsNotBuiltForLackOfRoomCountAsDropped) {
  CounterSet counters;
  DecisionHub hub(&counters);
  auto watcher = hub.Watch(3);
  ASSERT_EQ(hub.Room(), 3u);

  hub.Publish(Flows(1, 3), 1000);
  EXPECT_EQ(hub.Room(), 0u);
  hub.Publish({}, 500);

  EXPECT_EQ(watcher->dropped(), 1497u);
  EXPECT_EQ(counters.Get("decisions/published"), 1500u);
  EXPECT_EQ(counters.Get("decisions/dropped"), 1497u);
}

}  // namespace
}  // namespace nehost::filter
