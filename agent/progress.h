// How nehostctl shows an upgrade while nehostd streams its steps. On a terminal: one line per
// step, the current step's line rewritten in place with the time it has taken so far, and
// left with the time it took once the next step begins. Elsewhere: one line per message as it
// arrives, plain ("HH:MM:SS.mmm step message") or JSON, with no escape sequences.
//
// The view writes to a stream it does not own. Show, Tick and Finish may be called from
// different threads (the reader of the stream and a ticker that refreshes the elapsed time):
// the view serializes them. None blocks beyond writing to the stream.
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/output.h"

namespace nehost::agent {

enum class ProgressStyle {
  kLive,   // a terminal: lines rewritten in place
  kPlain,  // a pipe or a file
  kJson,
};

class UpgradeView {
 public:
  // columns says how wide the terminal is now (0 when unknown); only kLive asks.
  UpgradeView(std::ostream& out, ProgressStyle style, std::function<int()> columns);
  UpgradeView(const UpgradeView&) = delete;
  UpgradeView& operator=(const UpgradeView&) = delete;

  // One message of the stream, received at now. A message without a time gets now.
  void Show(UpgradeProgress progress, absl::Time now);
  // Rewrites the current step's line with its elapsed time (kLive only).
  void Tick(absl::Time now);
  ProgressStyle style() const { return style_; }

  // Leaves the current step's line complete, so that what follows starts on a line of its
  // own. Show after Finish starts a new line.
  void Finish(absl::Time now);

 private:
  void ShowLive(const UpgradeProgress& progress, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The current step's line, drawn over whatever the cursor's line holds.
  void Redraw(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompleteStep(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::ostream& out_;
  const ProgressStyle style_;
  const std::function<int()> columns_;

  absl::Mutex mu_;
  std::string step_ ABSL_GUARDED_BY(mu_);  // empty while no step's line is open
  std::string message_ ABSL_GUARDED_BY(mu_);
  absl::Time step_started_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nehost::agent
