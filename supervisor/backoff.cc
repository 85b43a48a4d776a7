#include "supervisor/backoff.h"

#include <algorithm>

namespace nehost::supervisor {

BackoffPolicy BackoffPolicy::FromProto(const nehost::supervisor::v1::RestartPolicy& proto) {
  BackoffPolicy policy;
  if (proto.initial_backoff_ms() > 0)
    policy.initial = absl::Milliseconds(proto.initial_backoff_ms());
  if (proto.max_backoff_ms() > 0) policy.max = absl::Milliseconds(proto.max_backoff_ms());
  if (proto.reset_after_ms() > 0) policy.reset_after = absl::Milliseconds(proto.reset_after_ms());
  if (proto.crash_loop_exits() > 0)
    policy.crash_loop_exits = static_cast<int>(proto.crash_loop_exits());
  if (proto.crash_loop_window_ms() > 0) {
    policy.crash_loop_window = absl::Milliseconds(proto.crash_loop_window_ms());
  }
  policy.delay_first_restart = proto.delay_first_restart();
  policy.max = std::max(policy.max, policy.initial);
  return policy;
}

BackoffSchedule::Decision BackoffSchedule::OnExit(absl::Time now, absl::Duration served) {
  if (served >= policy_.reset_after) Reset();

  exits_.push_back(now);
  while (!exits_.empty() && now - exits_.front() > policy_.crash_loop_window) exits_.pop_front();

  ++streak_;
  const int delayed_exits = policy_.delay_first_restart ? streak_ : streak_ - 1;
  if (delayed_exits == 0) {
    next_delay_ = absl::ZeroDuration();
  } else if (delayed_exits == 1) {
    next_delay_ = policy_.initial;
  } else {
    next_delay_ = std::min(next_delay_ * 2, policy_.max);
  }

  Decision decision;
  decision.exits_in_window = static_cast<int>(exits_.size());
  decision.crash_loop = decision.exits_in_window >= policy_.crash_loop_exits;
  decision.delay = decision.crash_loop ? policy_.max : next_delay_;
  return decision;
}

void BackoffSchedule::Reset() {
  streak_ = 0;
  next_delay_ = absl::ZeroDuration();
  exits_.clear();
}

}  // namespace nehost::supervisor
