// Forwarding to upstream DNS servers: their addresses (flags or /etc/resolv.conf), and the
// Forwarder that one data-plane thread uses to send queries on and match the answers.
//
// The Forwarder sends each query over UDP under a fresh random id, from a socket of its own on
// a random port (so that an off-path attacker must guess both to poison the cache), connected
// to the upstream, so only that upstream's packets are read. An answer is taken only if its id is
// in flight to the upstream it came from and it repeats the question asked; anything else is
// counted and dropped while the query keeps waiting. A truncated answer is asked again over TCP.
// When an upstream times out, or answers SERVFAIL or REFUSED, the query goes to the next upstream;
// when every upstream has failed, the client gets SERVFAIL. An upstream that timed out stops
// being the first one tried until another fails in turn.
//
// Every query waits the same timeout per attempt, so the queries in flight are kept in a list
// ordered by deadline: expiring them costs nothing per query that does not expire.
//
// Owned by one data-plane thread, like the epoll set it registers its sockets in: not thread
// safe. No call blocks.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"
#include "extension/dns_counters.h"
#include "extension/dns_packet.h"

namespace nehost::filter {

using DnsClock = std::chrono::steady_clock;

struct InetAddress {
  sockaddr_storage address{};
  socklen_t length = 0;
  // As given, for logs: "127.0.0.1:53".
  std::string text;
};

// "192.0.2.1", "192.0.2.1:53", "2001:db8::1", "[2001:db8::1]:53"; default_port when there is
// none. INVALID_ARGUMENT naming the text otherwise.
absl::StatusOr<InetAddress> ParseInetAddress(absl::string_view text, uint16_t default_port);

// The nameservers of a resolv.conf file, on port 53. An empty list is not an error.
absl::StatusOr<std::vector<InetAddress>> UpstreamsFromResolvConf(const std::string& path);

// Tags of epoll events: which part of a data-plane thread a descriptor belongs to, and which
// one of them (the index, and for reused slots a serial that tells a stale event apart).
enum class EventKind : uint8_t {
  kStop = 1,
  kUdpListener,
  kTcpListener,
  kClientConnection,
  kUpstreamUdp,
  kUpstreamQuery,
  kUpstreamTcp,
};
inline uint64_t EventTag(EventKind kind, uint32_t index, uint32_t serial = 0) {
  return uint64_t{static_cast<uint8_t>(kind)} << 56 | uint64_t{serial & 0xffffff} << 32 | index;
}
inline EventKind KindOf(uint64_t tag) { return static_cast<EventKind>(tag >> 56); }
inline uint32_t IndexOf(uint64_t tag) { return static_cast<uint32_t>(tag); }
inline uint32_t SerialOf(uint64_t tag) { return static_cast<uint32_t>(tag >> 32) & 0xffffff; }

// Where an answer goes back to.
struct ClientRef {
  enum class Transport : uint8_t { kUdp, kTcp };
  Transport transport = Transport::kUdp;
  // UDP: which listening socket, and the client's address.
  uint32_t listener = 0;
  sockaddr_storage peer{};
  socklen_t peer_length = 0;
  // TCP: which connection, and its serial, so that an answer for a closed one is dropped.
  uint32_t connection = 0;
  uint32_t serial = 0;
};

class Forwarder {
 public:
  struct Options {
    std::vector<InetAddress> upstreams;
    // How long one attempt at one upstream may take.
    std::chrono::milliseconds timeout{1500};
    // Queries in flight at once; more are answered SERVFAIL.
    size_t max_in_flight = 8192;
    // Each query from a socket of its own, on a port Linux picks at random, so that an
    // off-path attacker must guess the port as well as the id. Off: every query to an
    // upstream goes out on one socket.
    bool random_ports = true;
  };

  // What becomes of a query. Both calls get the query as the client sent it.
  class Sink {
   public:
    virtual ~Sink() = default;
    // answer carries the client's id; parsed is its parse.
    virtual void Answered(const ClientRef& client, const dns::Query& query,
                          std::span<uint8_t> answer, const dns::Response& parsed,
                          DnsClock::duration latency) = 0;
    // Every upstream failed.
    virtual void Failed(const ClientRef& client, const dns::Query& query,
                        std::span<const uint8_t> packet) = 0;
  };

  // Creates the UDP sockets and registers them in epoll_fd. counters and sink must outlive it.
  static absl::StatusOr<std::unique_ptr<Forwarder>> Create(Options options, int epoll_fd,
                                                           DnsCounters* counters, Sink* sink);
  ~Forwarder();

  // Sends the query in packet, which parsed as query. False when too many are in flight.
  bool Forward(const ClientRef& client, const dns::Query& query, std::span<const uint8_t> packet,
               DnsClock::time_point now);

  // An epoll event tagged kUpstreamUdp, kUpstreamQuery or kUpstreamTcp.
  void OnEvent(uint64_t tag, uint32_t events, DnsClock::time_point now);

  // Moves every query whose attempt has timed out to its next upstream, or fails it.
  void Expire(DnsClock::time_point now);

  // When Expire has work next; max() when nothing is in flight.
  DnsClock::time_point NextDeadline() const;
  size_t in_flight() const { return in_flight_; }

 private:
  struct Pending;
  class IdSource;

  Forwarder(Options options, int epoll_fd, DnsCounters* counters, Sink* sink);

  // The query's own socket, registered in the epoll set; -1 when there is none to be had.
  int OpenQuerySocket(uint32_t slot);
  // An answer on an upstream's shared socket, or on one query's own.
  void ReadUdp(uint32_t upstream, DnsClock::time_point now);
  void ReadQuerySocket(uint32_t slot, uint32_t serial, DnsClock::time_point now);
  // via_slot: the slot whose own socket the answer came in on, or kNone for a shared one.
  void OnUdpAnswer(uint32_t upstream, uint32_t via_slot, std::span<uint8_t> answer,
                   DnsClock::time_point now);
  void OnTcpEvent(uint32_t slot, uint32_t serial, uint32_t events, DnsClock::time_point now);
  // An answer to pending slot: delivered, asked again over TCP, or sent to the next upstream.
  void Accept(uint32_t slot, std::span<uint8_t> answer, const dns::Response& parsed,
              DnsClock::time_point now);

  void SendUdp(uint32_t slot, DnsClock::time_point now);
  void StartTcp(uint32_t slot, DnsClock::time_point now);
  void WriteTcp(uint32_t slot, DnsClock::time_point now);
  void ReadTcp(uint32_t slot, DnsClock::time_point now);
  void CloseSockets(uint32_t slot);
  // The attempt's upstream timed out or is unreachable: it stops being tried first.
  void UpstreamFailed(uint32_t slot, DnsClock::time_point now);
  // The current attempt failed: the next upstream, or SERVFAIL when none is left.
  void TryNext(uint32_t slot, DnsClock::time_point now);
  void Release(uint32_t slot);

  // The deadline list: oldest first.
  void Unlink(uint32_t slot);
  void Append(uint32_t slot);

  const Options options_;
  const int epoll_fd_;
  DnsCounters* const counters_;
  Sink* const sink_;
  std::vector<UniqueFd> sockets_;
  std::unique_ptr<IdSource> ids_;

  std::vector<Pending> slots_;
  std::vector<uint32_t> free_slots_;
  // The slot each upstream id is in flight in, or kNone.
  std::vector<uint32_t> slot_of_id_;
  size_t in_flight_ = 0;
  uint32_t oldest_;
  uint32_t newest_;
  uint32_t preferred_ = 0;

  // recvmmsg buffers for answers over UDP.
  std::vector<uint8_t> receive_buffers_;
};

}  // namespace nehost::filter
