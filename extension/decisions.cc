#include "extension/decisions.h"

#include <algorithm>

namespace nehost::filter {

DecisionWatcher::Outcome DecisionWatcher::Next(std::vector<Decision>* out, absl::Duration timeout) {
  out->clear();
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || closed_; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);

  if (queue_.empty()) return closed_ ? kClosed : kTimedOut;
  out->reserve(queue_.size());
  for (Decision& decision : queue_) out->push_back(std::move(decision));
  queue_.clear();
  return kDecisions;
}

uint64_t DecisionWatcher::Offer(const std::vector<Decision>& decisions, uint64_t total) {
  absl::MutexLock lock(&mu_);
  if (closed_) return 0;

  const size_t room = capacity_ - std::min(capacity_, queue_.size());
  const size_t taken = std::min(room, decisions.size());
  for (size_t i = 0; i < taken; ++i) {
    queue_.push_back(decisions[i]);
    if (pending_drops_ != 0) {
      queue_.back().set_dropped_before(pending_drops_);
      pending_drops_ = 0;
    }
  }

  const uint64_t dropped = total - taken;
  pending_drops_ += dropped;
  dropped_ += dropped;
  return dropped;
}

size_t DecisionWatcher::room() const {
  absl::MutexLock lock(&mu_);
  return capacity_ - std::min(capacity_, queue_.size());
}

void DecisionWatcher::OnClose(std::function<void()> on_close) {
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      on_close_ = std::move(on_close);
      return;
    }
  }
  on_close();
}

bool DecisionWatcher::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

void DecisionWatcher::Close() {
  std::function<void()> on_close;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    on_close = std::move(on_close_);
    on_close_ = nullptr;
  }
  if (on_close) on_close();
}

uint64_t DecisionWatcher::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

DecisionHub::DecisionHub(CounterSet* counters)
    : published_(counters->counter("decisions/published")),
      dropped_(counters->counter("decisions/dropped")) {}

std::shared_ptr<DecisionWatcher> DecisionHub::Watch(size_t buffer) {
  auto watcher =
      std::make_shared<DecisionWatcher>(std::clamp<size_t>(buffer, 1, kMaxDecisionBuffer));
  absl::MutexLock lock(&mu_);
  if (closed_) {
    watcher->Close();
    return watcher;
  }
  watchers_.push_back(watcher);
  watcher_count_.store(static_cast<int>(watchers_.size()), std::memory_order_release);
  return watcher;
}

void DecisionHub::Unwatch(const std::shared_ptr<DecisionWatcher>& watcher) {
  absl::MutexLock lock(&mu_);
  std::erase(watchers_, watcher);
  watcher_count_.store(static_cast<int>(watchers_.size()), std::memory_order_release);
}

size_t DecisionHub::Room() const {
  absl::ReaderMutexLock lock(&mu_);
  size_t most = 0;
  for (const std::shared_ptr<DecisionWatcher>& watcher : watchers_) {
    most = std::max(most, watcher->room());
  }
  return most;
}

void DecisionHub::Publish(const std::vector<Decision>& decisions, uint64_t total) {
  if (total == 0 || !HasWatchers()) return;
  absl::ReaderMutexLock lock(&mu_);
  if (watchers_.empty()) return;

  published_->Add(total);
  for (const std::shared_ptr<DecisionWatcher>& watcher : watchers_) {
    if (uint64_t dropped = watcher->Offer(decisions, total); dropped != 0) dropped_->Add(dropped);
  }
}

void DecisionHub::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  for (const std::shared_ptr<DecisionWatcher>& watcher : watchers_) watcher->Close();
}

}  // namespace nehost::filter
