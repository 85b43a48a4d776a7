// DnsServer is nehost-filter's DNS data plane: it answers queries on UDP and TCP listening
// sockets, blocks names by the rules in force, answers repeated questions from a cache and
// forwards the rest to the upstreams.
//
// It runs one or more threads, each an epoll loop of its own over the same listening sockets
// (EPOLLEXCLUSIVE wakes one of them per packet), with its own upstream sockets, queries in
// flight and cache: a packet never takes a lock. A thread reads the rules through
// RuleSource, which it asks for a new snapshot only when the version changes.
//
// The listening sockets belong to the caller (nehostd's, passed down, or bound by main) and
// outlive the server; they are shared with other generations of the service, which read from
// them too while generations overlap. Drain stops reading them, so that every query not yet
// read is left in the socket for the next generation, and answers the queries already read
// before the threads end. The RuleSource and DnsCounters must outlive the server.
//
// Start and Drain are called from one thread; Drain blocks up to its grace.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "extension/dns_counters.h"
#include "extension/domain_rules.h"
#include "extension/upstream.h"

namespace nehost::filter {

// One query and what became of it, for whoever watches decisions.
struct QueryEvent {
  enum class Outcome : uint8_t { kBlocked, kCached, kForwarded, kFailed, kNotImplemented };
  absl::string_view name;
  uint16_t type = 0;
  // The client's address; for TCP the connection's peer.
  const sockaddr* client = nullptr;
  socklen_t client_length = 0;
  Outcome outcome = Outcome::kForwarded;
  dns::Rcode rcode = dns::Rcode::kNoError;
  // The rule or list that blocked it (DomainRules::RuleName), else empty.
  absl::string_view rule;
  // Forwarded: the time the upstreams took, retries and TCP included.
  std::chrono::microseconds upstream_latency{0};
};

class DnsServer {
 public:
  struct Options {
    // Listening sockets, not owned; they are made non-blocking.
    std::vector<int> udp_listeners;
    std::vector<int> tcp_listeners;
    Forwarder::Options forwarding;
    // Answers kept per thread; 0 disables the cache.
    size_t cache_entries = 10000;
    int threads = 1;
    // Called on the data-plane thread for every query answered; must be quick and thread
    // safe when threads > 1. Empty: no call.
    std::function<void(const QueryEvent&)> on_query;
  };

  static absl::StatusOr<std::unique_ptr<DnsServer>> Start(Options options, const RuleSource* rules,
                                                          DnsCounters* counters);
  // Drains with no grace when Drain was not called.
  ~DnsServer();

  // Stops reading the listening sockets, answers what was already read (waiting for the
  // upstreams up to grace), and ends the threads. Idempotent.
  void Drain(absl::Duration grace);

  class Loop;

 private:
  DnsServer() = default;

  // Shared by the loops, which keep a reference.
  std::shared_ptr<const Options> options_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
  bool drained_ = false;
};

}  // namespace nehost::filter
