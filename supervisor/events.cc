#include "supervisor/events.h"

#include <algorithm>

namespace nehost::supervisor {

std::optional<Event> EventHub::Subscription::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || closed_; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (queue_.empty()) return std::nullopt;

  Event event = std::move(queue_.front());
  queue_.pop_front();
  return event;
}

bool EventHub::Subscription::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

uint64_t EventHub::Subscription::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

std::shared_ptr<EventHub::Subscription> EventHub::Subscribe(const std::string& name) {
  std::shared_ptr<Subscription> subscription(new Subscription(name));
  absl::MutexLock lock(&mu_);
  if (closed_) {
    absl::MutexLock inner(&subscription->mu_);
    subscription->closed_ = true;
  } else {
    subscriptions_.push_back(subscription);
  }
  return subscription;
}

void EventHub::Unsubscribe(const std::shared_ptr<Subscription>& subscription) {
  absl::MutexLock lock(&mu_);
  subscriptions_.erase(std::remove(subscriptions_.begin(), subscriptions_.end(), subscription),
                       subscriptions_.end());
}

void EventHub::Publish(const Event& event) {
  absl::MutexLock lock(&mu_);
  for (const std::shared_ptr<Subscription>& subscription : subscriptions_) {
    if (!subscription->name_.empty() && subscription->name_ != event.name()) continue;

    absl::MutexLock inner(&subscription->mu_);
    if (subscription->queue_.size() >= kQueueLimit) {
      subscription->queue_.pop_front();
      ++subscription->dropped_;
    }
    subscription->queue_.push_back(event);
  }
}

void EventHub::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  for (const std::shared_ptr<Subscription>& subscription : subscriptions_) {
    absl::MutexLock inner(&subscription->mu_);
    subscription->closed_ = true;
  }
  subscriptions_.clear();
}

}  // namespace nehost::supervisor
