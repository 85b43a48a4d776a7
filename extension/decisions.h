// DecisionHub hands every decision the filter makes (flow verdicts, and DNS queries once the
// DNS data plane publishes them) to the agents that watch, without ever slowing the filter.
//
// Each watcher has a queue of its own, bounded by the buffer it asked for. Publishing puts a
// decision in every queue that has room and drops it for every queue that is full: the newest
// decision is dropped, what waits in the queue is kept. Each drop is counted in the hub's
// CounterSet ("decisions/dropped"), and the next decision that reaches that watcher carries
// the number it lost just before it in dropped_before. A publisher never waits for a watcher
// to read: it holds a watcher's lock only to copy decisions in, and a watcher holds it only
// to take the whole queue out. With no watcher, publishing is one atomic load, and callers
// that check HasWatchers first do not even build the decision; with watchers that are full,
// callers that ask for Room first build none of the decisions that would be dropped.
//
// The hub and its watchers are thread safe: gRPC's threads publish while each watcher's
// handler waits in Next. Watchers are shared between the hub and their handler; Close ends
// every one of them, for a generation that stops serving.
//
//   if (hub.HasWatchers()) hub.Publish(std::move(decisions));   // data plane
//
//   std::shared_ptr<DecisionWatcher> watcher = hub.Watch(4096);  // a WatchDecisions handler
//   while (watcher->Next(&batch, absl::Milliseconds(100)) != DecisionWatcher::kClosed) ...
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "extension/counters.h"
#include "nehost/filter/v1/flow.pb.h"

namespace nehost::filter {

using Decision = nehost::filter::v1::Decision;

inline constexpr uint32_t kDefaultDecisionBuffer = 4096;
inline constexpr uint32_t kMaxDecisionBuffer = 65536;

class DecisionWatcher {
 public:
  enum Outcome { kDecisions, kTimedOut, kClosed };

  explicit DecisionWatcher(size_t capacity) : capacity_(capacity) {}

  // Waits up to timeout for decisions and moves every one waiting into *out (cleared first).
  // kClosed once the watcher is closed and nothing is left to read.
  Outcome Next(std::vector<Decision>* out, absl::Duration timeout);

  // Runs on_close once the watcher is closed (at once if it is already): a handler blocked
  // writing to a client that does not read is cancelled that way, instead of holding its
  // connection open to the end of a drain's grace.
  void OnClose(std::function<void()> on_close);
  bool closed() const;

  // Puts what fits of decisions in the queue, which are the first of total decisions made;
  // returns how many of the total were dropped.
  uint64_t Offer(const std::vector<Decision>& decisions, uint64_t total);
  // How many decisions the queue has room for now.
  size_t room() const;
  void Close();

  size_t capacity() const { return capacity_; }
  // Decisions this watcher lost, in all.
  uint64_t dropped() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<Decision> queue_ ABSL_GUARDED_BY(mu_);
  // Dropped since the last decision queued: the next one carries them.
  uint64_t pending_drops_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_close_ ABSL_GUARDED_BY(mu_);
};

class DecisionHub {
 public:
  // counters must outlive the hub.
  explicit DecisionHub(CounterSet* counters);

  bool HasWatchers() const { return watcher_count_.load(std::memory_order_acquire) > 0; }

  // A new watcher with a queue of buffer decisions (1 to kMaxDecisionBuffer). It is closed
  // at once when the hub is closed.
  std::shared_ptr<DecisionWatcher> Watch(size_t buffer);
  // Forgets a watcher, as its handler ends.
  void Unwatch(const std::shared_ptr<DecisionWatcher>& watcher);

  // The most room any watcher has: a publisher of many decisions need build no more than that
  // many, and only count the rest as made (Publish's total). 0 with no watcher.
  size_t Room() const;
  // Offers the decisions to every watcher, in order. They are the first of total decisions
  // made (total >= decisions.size()); those not built count as dropped for every watcher.
  // Never blocks on a watcher.
  void Publish(const std::vector<Decision>& decisions, uint64_t total);
  void Publish(const std::vector<Decision>& decisions) { Publish(decisions, decisions.size()); }

  // Closes every watcher, now and to come.
  void Close();

 private:
  std::atomic<int> watcher_count_{0};
  Counter* const published_;
  Counter* const dropped_;

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<DecisionWatcher>> watchers_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace nehost::filter
