#include "supervisor/backoff.h"

#include "gtest/gtest.h"

namespace nehost::supervisor {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

std::vector<int64_t> DelaysOfExits(BackoffSchedule& schedule, int exits) {
  std::vector<int64_t> delays;
  absl::Time now = kStart;
  for (int i = 0; i < exits; ++i) {
    now += absl::Seconds(100);  // outside the crash-loop window, inside no reset
    delays.push_back(absl::ToInt64Milliseconds(schedule.OnExit(now, absl::Seconds(1)).delay));
  }
  return delays;
}

TEST(BackoffSchedule, RestartsAtOnceThenDoublesFromInitialToMax) {
  BackoffPolicy policy;
  policy.crash_loop_exits = 100;
  BackoffSchedule schedule(policy);

  EXPECT_EQ(DelaysOfExits(schedule, 13),
            (std::vector<int64_t>{0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000,
                                  30000, 30000}));
}

TEST(BackoffSchedule, DelayFirstRestartWaitsInitialFromTheFirstExit) {
  BackoffPolicy policy;
  policy.crash_loop_exits = 100;
  policy.delay_first_restart = true;
  BackoffSchedule schedule(policy);

  EXPECT_EQ(DelaysOfExits(schedule, 4), (std::vector<int64_t>{100, 200, 400, 800}));
}

TEST(BackoffSchedule, ResetsAfterServingLongEnough) {
  BackoffSchedule schedule(BackoffPolicy{});
  schedule.OnExit(kStart, absl::ZeroDuration());
  schedule.OnExit(kStart + absl::Seconds(1), absl::ZeroDuration());
  EXPECT_EQ(schedule.OnExit(kStart + absl::Seconds(2), absl::ZeroDuration()).delay,
            absl::Milliseconds(200));

  // Served 60 s, the default reset_after: the schedule starts over, with an immediate restart.
  EXPECT_EQ(schedule.OnExit(kStart + absl::Seconds(70), absl::Seconds(60)).delay,
            absl::ZeroDuration());
  EXPECT_EQ(schedule.OnExit(kStart + absl::Seconds(71), absl::ZeroDuration()).delay,
            absl::Milliseconds(100));
}

TEST(BackoffSchedule, CrashLoopAfterNExitsInTheWindow) {
  BackoffPolicy policy;
  policy.crash_loop_exits = 3;
  policy.crash_loop_window = absl::Seconds(10);
  BackoffSchedule schedule(policy);

  EXPECT_FALSE(schedule.OnExit(kStart, absl::ZeroDuration()).crash_loop);
  EXPECT_FALSE(schedule.OnExit(kStart + absl::Seconds(1), absl::ZeroDuration()).crash_loop);
  BackoffSchedule::Decision third =
      schedule.OnExit(kStart + absl::Seconds(2), absl::ZeroDuration());
  EXPECT_TRUE(third.crash_loop);
  EXPECT_EQ(third.exits_in_window, 3);
  EXPECT_EQ(third.delay, policy.max);
}

TEST(BackoffSchedule, ExitsOutsideTheWindowDoNotCount) {
  BackoffPolicy policy;
  policy.crash_loop_exits = 3;
  policy.crash_loop_window = absl::Seconds(10);
  BackoffSchedule schedule(policy);

  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(schedule.OnExit(kStart + absl::Seconds(11 * i), absl::ZeroDuration()).crash_loop);
  }
}

TEST(BackoffPolicy, DefinitionOverridesDefaults) {
  nehost::supervisor::v1::RestartPolicy proto;
  proto.set_initial_backoff_ms(50);
  proto.set_crash_loop_exits(2);
  proto.set_delay_first_restart(true);
  BackoffPolicy policy = BackoffPolicy::FromProto(proto);
  EXPECT_TRUE(policy.delay_first_restart);
  EXPECT_EQ(policy.initial, absl::Milliseconds(50));
  EXPECT_EQ(policy.max, absl::Seconds(30));
  EXPECT_EQ(policy.crash_loop_exits, 2);
}

}  // namespace
}  // namespace nehost::supervisor
