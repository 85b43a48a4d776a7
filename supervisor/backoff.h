// Restart delays and crash-loop detection for one service, as a pure function of the exits
// it is told about: no clock of its own, so tests drive it with made-up times.
//
// The first exit of a schedule restarts at once (unless the policy delays it too); the next
// waits the policy's initial value, and each further exit twice as long, up to the maximum.
// A process that served for reset_after before it exited starts the schedule again.
// crash_loop_exits exits within crash_loop_window make a crash loop. Not thread safe.
#pragma once

#include <cstdint>
#include <deque>

#include "absl/time/time.h"
#include "nehost/supervisor/v1/supervisor.pb.h"

namespace nehost::supervisor {

struct BackoffPolicy {
  absl::Duration initial = absl::Milliseconds(100);
  absl::Duration max = absl::Seconds(30);
  absl::Duration reset_after = absl::Seconds(60);
  int crash_loop_exits = 5;
  absl::Duration crash_loop_window = absl::Seconds(60);
  bool delay_first_restart = false;

  // The defaults above, overridden by each field the definition sets.
  static BackoffPolicy FromProto(const nehost::supervisor::v1::RestartPolicy& proto);
};

class BackoffSchedule {
 public:
  explicit BackoffSchedule(BackoffPolicy policy) : policy_(policy) {}

  struct Decision {
    absl::Duration delay;
    bool crash_loop = false;
    int exits_in_window = 0;
  };

  // An unrequested exit at `now`, after the process served (was ready) for `served`.
  Decision OnExit(absl::Time now, absl::Duration served);

  // Forgets every exit: an operator's Start or Restart begins afresh.
  void Reset();

  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  // Exits since the schedule last started afresh.
  int streak_ = 0;
  absl::Duration next_delay_ = absl::ZeroDuration();
  std::deque<absl::Time> exits_;
};

}  // namespace nehost::supervisor
