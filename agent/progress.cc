#include "agent/progress.h"

#include <google/protobuf/util/time_util.h>

#include <utility>

namespace nehost::agent {
namespace {

// Carriage return, then ANSI "erase the whole line": the cursor stays at the line's start.
constexpr char kClearLine[] = "\r\033[2K";

// The last message says how the upgrade ended; the summary line that follows says it better
// than a step line would.
constexpr char kLastStep[] = "done";

}  // namespace

UpgradeView::UpgradeView(std::ostream& out, ProgressStyle style, std::function<int()> columns)
    : out_(out), style_(style), columns_(std::move(columns)) {}

void UpgradeView::Show(UpgradeProgress progress, absl::Time now) {
  if (!progress.has_at()) {
    *progress.mutable_at() =
        google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(now));
  }

  absl::MutexLock lock(&mu_);
  switch (style_) {
    case ProgressStyle::kLive:
      ShowLive(progress, now);
      break;
    case ProgressStyle::kPlain:
      out_ << FormatProgress(progress, OutputFormat::kTable);
      break;
    case ProgressStyle::kJson:
      out_ << FormatProgress(progress, OutputFormat::kJson);
      break;
  }
  out_.flush();
}

void UpgradeView::Tick(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (style_ != ProgressStyle::kLive || step_.empty()) return;
  Redraw(now);
  out_.flush();
}

void UpgradeView::Finish(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (step_.empty()) return;
  CompleteStep(now);
  out_.flush();
}

void UpgradeView::ShowLive(const UpgradeProgress& progress, absl::Time now) {
  if (progress.step() == kLastStep || progress.step().empty()) {
    if (progress.done() && !step_.empty()) CompleteStep(now);
    return;
  }

  if (progress.step() != step_) {
    if (!step_.empty()) CompleteStep(now);
    step_ = progress.step();
    step_started_ = now;
  }
  // A step may say more as it goes ("waiting for READY=1", then "ready"): the latest counts.
  if (!progress.message().empty()) message_ = progress.message();
  Redraw(now);

  if (progress.done()) CompleteStep(now);
}

void UpgradeView::Redraw(absl::Time now) {
  out_ << kClearLine << FormatLiveStep(step_, message_, now - step_started_, columns_());
}

void UpgradeView::CompleteStep(absl::Time now) {
  if (style_ == ProgressStyle::kLive) {
    // Complete, the line may be as wide as it needs: nothing draws over it again.
    out_ << kClearLine << FormatLiveStep(step_, message_, now - step_started_, 0) << "\n";
  }
  step_.clear();
  message_.clear();
}

}  // namespace nehost::agent
