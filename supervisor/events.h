// EventHub fans lifecycle events out to Watch streams.
//
// Publishing never blocks on a subscriber: each one has a bounded queue, and a subscriber
// that falls behind loses its oldest events, counted in dropped(). Thread safe; Next blocks
// up to its timeout.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nehost/supervisor/v1/supervisor.pb.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::Event;

class EventHub {
 public:
  static constexpr size_t kQueueLimit = 1024;

  class Subscription {
   public:
    // The next event, or nullopt after the timeout or once the hub is closed.
    std::optional<Event> Next(absl::Duration timeout);
    bool closed() const;
    uint64_t dropped() const;

   private:
    friend class EventHub;
    explicit Subscription(std::string name) : name_(std::move(name)) {}

    const std::string name_;
    mutable absl::Mutex mu_;
    std::deque<Event> queue_ ABSL_GUARDED_BY(mu_);
    uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
    bool closed_ ABSL_GUARDED_BY(mu_) = false;
  };

  // Events of the service `name`, or of all services when it is empty.
  std::shared_ptr<Subscription> Subscribe(const std::string& name);
  void Unsubscribe(const std::shared_ptr<Subscription>& subscription);

  void Publish(const Event& event);

  // Ends every subscription; later Subscribe calls get closed ones.
  void Close();

 private:
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Subscription>> subscriptions_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace nehost::supervisor
