#include "extension/dns_server.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "extension/dns_cache.h"
#include "spdlog/spdlog.h"

namespace nehost::filter {
namespace {

constexpr size_t kBatch = 32;
// Queries bigger than this are not queries anyone sends; they are read cut and dropped.
constexpr size_t kQueryBuffer = 4096;
constexpr size_t kEvents = 64;
constexpr size_t kMaxConnections = 256;
constexpr auto kIdleConnection = std::chrono::seconds(10);
// How often rule hits are added to the shared counters, and idle connections closed.
constexpr auto kHousekeeping = std::chrono::milliseconds(100);
// A connection that sends this much without reading its answers is closed.
constexpr size_t kMaxConnectionOutput = 1 << 20;

// epoll_wait's timeout: -1, no timeout, when there is no deadline.
int MillisecondsUntil(DnsClock::time_point deadline, DnsClock::time_point now) {
  if (deadline == DnsClock::time_point::max()) return -1;
  if (deadline <= now) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return static_cast<int>(std::min<int64_t>(ms, std::numeric_limits<int>::max()));
}

}  // namespace

class DnsServer::Loop final : public Forwarder::Sink {
 public:
  Loop(const Options& options, const RuleSource* rules, DnsCounters* counters)
      : options_(options),
        rules_source_(rules),
        counters_(counters),
        cache_(options.cache_entries),
        receive_(kBatch * kQueryBuffer),
        send_(kBatch * kQueryBuffer),
        answer_(dns::kMaxMessage),
        truncated_(dns::kMaxMessage) {}

  absl::Status Open();
  void Run();
  // Thread safe: asks Run to drain and end by deadline.
  void RequestDrain(DnsClock::time_point deadline);

  void Answered(const ClientRef& client, const dns::Query& query, std::span<uint8_t> answer,
                const dns::Response& parsed, DnsClock::duration latency) override;
  void Failed(const ClientRef& client, const dns::Query& query,
              std::span<const uint8_t> packet) override;

 private:
  struct Connection {
    UniqueFd fd;
    uint32_t serial = 0;
    sockaddr_storage peer{};
    socklen_t peer_length = 0;
    std::string in;
    std::string out;
    size_t out_done = 0;
    // Queries forwarded and not answered yet.
    uint32_t pending = 0;
    bool reading = true;
    bool watching_output = false;
    DnsClock::time_point last_active;
  };

  void Dispatch(const epoll_event& event);
  void ReadUdp(uint32_t listener);
  void Accept(uint32_t listener);
  void ReadConnection(uint32_t index);
  void WriteConnection(uint32_t index);
  void CloseConnection(uint32_t index);
  void UpdateConnectionEvents(uint32_t index);

  void HandleQuery(std::span<const uint8_t> packet, const ClientRef& client);
  bool Block(std::span<const uint8_t> packet, const dns::Query& query, const ClientRef& client);
  void Reply(const ClientRef& client, const dns::Query& query, std::span<const uint8_t> answer);
  void SendUdp(uint32_t listener, const sockaddr_storage& peer, socklen_t peer_length,
               std::span<const uint8_t> answer);
  void FlushUdp();
  void Report(const ClientRef& client, const dns::Query& query, QueryEvent::Outcome outcome,
              dns::Rcode rcode, absl::string_view rule, DnsClock::duration latency);

  void RefreshRules();
  void FlushRuleHits();
  void Housekeeping(DnsClock::time_point now);
  // Rule hits to add to the counters, or connections to watch for idleness.
  bool HousekeepingDue() const {
    return !touched_.empty() || free_connections_.size() < connections_.size();
  }
  void BeginDrain();
  bool Drained() const;

  const Options& options_;
  const RuleSource* const rules_source_;
  DnsCounters* const counters_;
  UniqueFd epoll_;
  UniqueFd stop_;
  std::atomic<int64_t> drain_deadline_ns_{0};
  bool draining_ = false;
  DnsClock::time_point now_;
  DnsClock::time_point next_housekeeping_;

  std::unique_ptr<Forwarder> forwarder_;
  DnsCache cache_;
  uint64_t rules_version_ = 0;
  std::shared_ptr<const DomainRules> rules_;
  std::vector<uint64_t> hits_;
  std::vector<uint32_t> touched_;

  std::vector<Connection> connections_;
  std::vector<uint32_t> free_connections_;
  uint32_t connection_serial_ = 0;

  std::vector<uint8_t> receive_;
  std::array<sockaddr_storage, kBatch> receive_peers_{};
  // Answers to UDP clients wait here to go out together through sendmmsg.
  std::vector<uint8_t> send_;
  std::array<mmsghdr, kBatch> send_messages_{};
  std::array<iovec, kBatch> send_vectors_{};
  std::array<sockaddr_storage, kBatch> send_peers_{};
  size_t send_count_ = 0;
  int send_fd_ = -1;

  std::vector<uint8_t> answer_;
  std::vector<uint8_t> truncated_;
};

absl::Status DnsServer::Loop::Open() {
  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return ErrnoStatus(errno, "create", "epoll set for the DNS data plane");
  stop_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_) return ErrnoStatus(errno, "create", "eventfd for the DNS data plane");

  epoll_event stop{EPOLLIN, {.u64 = EventTag(EventKind::kStop, 0)}};
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_.get(), &stop) != 0) {
    return ErrnoStatus(errno, "watch", "DNS stop eventfd");
  }

  // EPOLLEXCLUSIVE: a packet wakes one thread of this process, not all of them.
  auto watch = [&](int fd, EventKind kind, uint32_t index) -> absl::Status {
    epoll_event event{EPOLLIN | EPOLLEXCLUSIVE, {.u64 = EventTag(kind, index)}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      return ErrnoStatus(errno, "watch DNS listener", absl::StrCat("fd ", fd));
    }
    return absl::OkStatus();
  };
  for (uint32_t i = 0; i < options_.udp_listeners.size(); ++i) {
    if (absl::Status watched = watch(options_.udp_listeners[i], EventKind::kUdpListener, i);
        !watched.ok()) {
      return watched;
    }
  }
  for (uint32_t i = 0; i < options_.tcp_listeners.size(); ++i) {
    if (absl::Status watched = watch(options_.tcp_listeners[i], EventKind::kTcpListener, i);
        !watched.ok()) {
      return watched;
    }
  }

  absl::StatusOr<std::unique_ptr<Forwarder>> forwarder =
      Forwarder::Create(options_.forwarding, epoll_.get(), counters_, this);
  if (!forwarder.ok()) return forwarder.status();
  forwarder_ = *std::move(forwarder);

  connections_.resize(kMaxConnections);
  for (uint32_t i = kMaxConnections; i-- > 0;) free_connections_.push_back(i);
  RefreshRules();
  return absl::OkStatus();
}

void DnsServer::Loop::RequestDrain(DnsClock::time_point deadline) {
  drain_deadline_ns_ = deadline.time_since_epoch().count();
  uint64_t one = 1;
  [[maybe_unused]] ssize_t written = ::write(stop_.get(), &one, sizeof one);
}

void DnsServer::Loop::Run() {
  std::array<epoll_event, kEvents> events;
  now_ = DnsClock::now();
  next_housekeeping_ = now_ + kHousekeeping;

  for (;;) {
    // An idle thread sleeps until a packet or a drain comes: housekeeping waits for work.
    DnsClock::time_point wake = forwarder_->NextDeadline();
    if (HousekeepingDue()) wake = std::min(wake, next_housekeeping_);
    int ready = ::epoll_wait(epoll_.get(), events.data(), kEvents, MillisecondsUntil(wake, now_));
    now_ = DnsClock::now();
    if (rules_source_->rules_version() != rules_version_) RefreshRules();

    for (int i = 0; i < ready; ++i) Dispatch(events[i]);
    forwarder_->Expire(now_);
    FlushUdp();
    if (now_ >= next_housekeeping_ && HousekeepingDue()) Housekeeping(now_);

    if (draining_) {
      auto deadline = DnsClock::time_point(DnsClock::duration(drain_deadline_ns_.load()));
      if (Drained() || now_ >= deadline) break;
    }
  }

  if (forwarder_->in_flight() != 0) {
    spdlog::warn("dns drain grace over; {} queries in flight get no answer",
                 forwarder_->in_flight());
  }
  FlushRuleHits();
}

void DnsServer::Loop::Dispatch(const epoll_event& event) {
  uint64_t tag = event.data.u64;
  switch (KindOf(tag)) {
    case EventKind::kStop:
      BeginDrain();
      return;
    case EventKind::kUdpListener:
      ReadUdp(IndexOf(tag));
      return;
    case EventKind::kTcpListener:
      Accept(IndexOf(tag));
      return;
    case EventKind::kClientConnection: {
      uint32_t index = IndexOf(tag);
      if (connections_[index].serial != SerialOf(tag) || !connections_[index].fd) return;
      if ((event.events & EPOLLOUT) != 0) WriteConnection(index);
      if ((event.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && connections_[index].fd) {
        ReadConnection(index);
      }
      return;
    }
    case EventKind::kUpstreamUdp:
    case EventKind::kUpstreamQuery:
    case EventKind::kUpstreamTcp:
      forwarder_->OnEvent(tag, event.events, now_);
      return;
  }
}

void DnsServer::Loop::ReadUdp(uint32_t listener) {
  if (draining_) return;
  std::array<mmsghdr, kBatch> messages{};
  std::array<iovec, kBatch> vectors{};
  for (size_t i = 0; i < kBatch; ++i) {
    vectors[i] = {&receive_[i * kQueryBuffer], kQueryBuffer};
    messages[i].msg_hdr.msg_iov = &vectors[i];
    messages[i].msg_hdr.msg_iovlen = 1;
    messages[i].msg_hdr.msg_name = &receive_peers_[i];
    messages[i].msg_hdr.msg_namelen = sizeof receive_peers_[i];
  }

  int fd = options_.udp_listeners[listener];
  int received = ::recvmmsg(fd, messages.data(), kBatch, MSG_DONTWAIT, nullptr);
  for (int i = 0; i < received; ++i) {
    if ((messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
      counters_->Increment(DnsCounters::kDroppedMalformed);
      continue;
    }
    ClientRef client;
    client.transport = ClientRef::Transport::kUdp;
    client.listener = listener;
    client.peer = receive_peers_[i];
    client.peer_length = messages[i].msg_hdr.msg_namelen;
    HandleQuery(std::span(&receive_[i * kQueryBuffer], messages[i].msg_len), client);
  }
}

void DnsServer::Loop::HandleQuery(std::span<const uint8_t> packet, const ClientRef& client) {
  dns::Query query;
  dns::ParseError error = dns::ParseQuery(packet, &query);
  if (error != dns::ParseError::kNone) {
    counters_->Increment(DnsCounters::kDroppedMalformed);
    spdlog::debug("dropped malformed query size={} error={}", packet.size(),
                  std::string(dns::ParseErrorName(error)));
    return;
  }
  counters_->Increment(DnsCounters::kQueries);

  if (query.opcode != 0) {
    counters_->Increment(DnsCounters::kNotImplemented);
    size_t length = dns::WriteEmptyAnswer(query, packet, dns::Rcode::kNotImp, answer_);
    Reply(client, query, std::span(answer_.data(), length));
    Report(client, query, QueryEvent::Outcome::kNotImplemented, dns::Rcode::kNotImp, "", {});
    return;
  }
  if (Block(packet, query, client)) return;

  size_t cached = cache_.Lookup(query, packet, now_, answer_);
  if (cached != 0) {
    counters_->Increment(DnsCounters::kCached);
    Reply(client, query, std::span(answer_.data(), cached));
    Report(client, query, QueryEvent::Outcome::kCached, static_cast<dns::Rcode>(answer_[3] & 0xf),
           "", {});
    return;
  }

  if (!forwarder_->Forward(client, query, packet, now_)) {
    Failed(client, query, packet);
    return;
  }
  if (client.transport == ClientRef::Transport::kTcp) ++connections_[client.connection].pending;
}

bool DnsServer::Loop::Block(std::span<const uint8_t> packet, const dns::Query& query,
                            const ClientRef& client) {
  Verdict verdict = rules_->Check(query.question.Name());
  if (verdict.kind != Verdict::Kind::kDeny) return false;

  counters_->Increment(DnsCounters::kBlocked);
  if (hits_[verdict.rule]++ == 0) touched_.push_back(verdict.rule);
  size_t length = dns::WriteBlockedAnswer(query, packet, verdict.answer, answer_);
  Reply(client, query, std::span(answer_.data(), length));
  Report(client, query, QueryEvent::Outcome::kBlocked,
         verdict.answer == dns::BlockedAnswer::kNxDomain ? dns::Rcode::kNxDomain
                                                         : dns::Rcode::kNoError,
         rules_->RuleName(verdict.rule), {});
  return true;
}

void DnsServer::Loop::Answered(const ClientRef& client, const dns::Query& query,
                               std::span<uint8_t> answer, const dns::Response& parsed,
                               DnsClock::duration latency) {
  counters_->Increment(DnsCounters::kForwarded);
  cache_.Insert(query, answer, parsed, now_);
  if (client.transport == ClientRef::Transport::kTcp) {
    Connection& connection = connections_[client.connection];
    if (connection.serial == client.serial && connection.pending > 0) --connection.pending;
  }
  Reply(client, query, answer);
  Report(client, query, QueryEvent::Outcome::kForwarded, parsed.rcode, "", latency);
}

void DnsServer::Loop::Failed(const ClientRef& client, const dns::Query& query,
                             std::span<const uint8_t> packet) {
  counters_->Increment(DnsCounters::kFailed);
  if (client.transport == ClientRef::Transport::kTcp) {
    Connection& connection = connections_[client.connection];
    if (connection.serial == client.serial && connection.pending > 0) --connection.pending;
  }
  size_t length = dns::WriteEmptyAnswer(query, packet, dns::Rcode::kServFail, answer_);
  // packet may be the query as forwarded, under the upstream id.
  dns::SetId(answer_, query.id);
  Reply(client, query, std::span(answer_.data(), length));
  Report(client, query, QueryEvent::Outcome::kFailed, dns::Rcode::kServFail, "", {});
}

void DnsServer::Loop::Reply(const ClientRef& client, const dns::Query& query,
                            std::span<const uint8_t> answer) {
  if (client.transport == ClientRef::Transport::kUdp) {
    if (answer.size() > query.udp_payload) {
      counters_->Increment(DnsCounters::kTruncatedToClient);
      size_t length = dns::WriteTruncated(answer, query.question_end, truncated_);
      answer = std::span(truncated_.data(), length);
    }
    SendUdp(client.listener, client.peer, client.peer_length, answer);
    return;
  }

  Connection& connection = connections_[client.connection];
  if (!connection.fd || connection.serial != client.serial) return;  // closed meanwhile
  if (connection.out.size() + answer.size() > kMaxConnectionOutput) {
    spdlog::debug("closing dns connection that does not read its answers");
    CloseConnection(client.connection);
    return;
  }
  uint8_t length[2];
  dns::WriteU16(length, static_cast<uint16_t>(answer.size()));
  connection.out.append(reinterpret_cast<const char*>(length), 2);
  connection.out.append(reinterpret_cast<const char*>(answer.data()), answer.size());
  WriteConnection(client.connection);
}

void DnsServer::Loop::SendUdp(uint32_t listener, const sockaddr_storage& peer,
                              socklen_t peer_length, std::span<const uint8_t> answer) {
  int fd = options_.udp_listeners[listener];
  if (answer.size() > kQueryBuffer) {
    // Rare: a client that takes big answers over UDP gets them one at a time.
    ::sendto(fd, answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
             reinterpret_cast<const sockaddr*>(&peer), peer_length);
    return;
  }
  if (send_count_ == kBatch || (send_count_ > 0 && send_fd_ != fd)) FlushUdp();

  size_t i = send_count_++;
  send_fd_ = fd;
  std::memcpy(&send_[i * kQueryBuffer], answer.data(), answer.size());
  send_peers_[i] = peer;
  send_vectors_[i] = {&send_[i * kQueryBuffer], answer.size()};
  send_messages_[i] = {};
  send_messages_[i].msg_hdr.msg_iov = &send_vectors_[i];
  send_messages_[i].msg_hdr.msg_iovlen = 1;
  send_messages_[i].msg_hdr.msg_name = &send_peers_[i];
  send_messages_[i].msg_hdr.msg_namelen = peer_length;
}

void DnsServer::Loop::FlushUdp() {
  size_t done = 0;
  while (done < send_count_) {
    int sent = ::sendmmsg(send_fd_, &send_messages_[done], send_count_ - done,
                          MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent > 0) {
      done += static_cast<size_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    // A full socket buffer or an unreachable client: UDP's answer is lost, as it would be on
    // the wire, and the client asks again.
    spdlog::debug("dns answers not sent count={} error=\"{}\"", send_count_ - done,
                  ErrnoText(errno));
    ++done;
  }
  send_count_ = 0;
}

void DnsServer::Loop::Report(const ClientRef& client, const dns::Query& query,
                             QueryEvent::Outcome outcome, dns::Rcode rcode, absl::string_view rule,
                             DnsClock::duration latency) {
  if (!options_.on_query) return;
  QueryEvent event;
  event.name = query.question.Name();
  event.type = query.question.type;
  if (client.transport == ClientRef::Transport::kUdp) {
    event.client = reinterpret_cast<const sockaddr*>(&client.peer);
    event.client_length = client.peer_length;
  } else {
    const Connection& connection = connections_[client.connection];
    event.client = reinterpret_cast<const sockaddr*>(&connection.peer);
    event.client_length = connection.peer_length;
  }
  event.outcome = outcome;
  event.rcode = rcode;
  event.rule = rule;
  event.upstream_latency = std::chrono::duration_cast<std::chrono::microseconds>(latency);
  options_.on_query(event);
}

void DnsServer::Loop::Accept(uint32_t listener) {
  if (draining_) return;
  for (;;) {
    sockaddr_storage peer{};
    socklen_t peer_length = sizeof peer;
    UniqueFd fd(::accept4(options_.tcp_listeners[listener], reinterpret_cast<sockaddr*>(&peer),
                          &peer_length, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;  // EAGAIN: another thread or generation took it, or none is left
    if (free_connections_.empty()) {
      spdlog::debug("refused dns connection: {} open in this thread", kMaxConnections);
      continue;
    }

    uint32_t index = free_connections_.back();
    free_connections_.pop_back();
    Connection& connection = connections_[index];
    connection.fd = std::move(fd);
    connection.serial = ++connection_serial_ & 0xffffff;
    connection.peer = peer;
    connection.peer_length = peer_length;
    connection.in.clear();
    connection.out.clear();
    connection.out_done = 0;
    connection.pending = 0;
    connection.reading = true;
    connection.watching_output = false;
    connection.last_active = now_;

    epoll_event event{EPOLLIN,
                      {.u64 = EventTag(EventKind::kClientConnection, index, connection.serial)}};
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, connection.fd.get(), &event) != 0) {
      CloseConnection(index);
    }
  }
}

void DnsServer::Loop::ReadConnection(uint32_t index) {
  Connection& connection = connections_[index];
  if (!connection.reading) return;
  char buffer[16384];
  ssize_t got = ::recv(connection.fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (got <= 0) {
    // The client is done asking; answers still owed are written before the close.
    connection.reading = false;
    if (connection.pending == 0 && connection.out_done == connection.out.size()) {
      CloseConnection(index);
    } else {
      UpdateConnectionEvents(index);
    }
    return;
  }

  connection.last_active = now_;
  connection.in.append(buffer, static_cast<size_t>(got));
  size_t used = 0;
  uint32_t serial = connection.serial;
  while (connection.in.size() - used >= 2) {
    size_t length = dns::ReadU16(reinterpret_cast<const uint8_t*>(&connection.in[used]));
    if (connection.in.size() - used < 2 + length) break;

    ClientRef client;
    client.transport = ClientRef::Transport::kTcp;
    client.connection = index;
    client.serial = serial;
    HandleQuery(std::span(reinterpret_cast<const uint8_t*>(&connection.in[used + 2]), length),
                client);
    used += 2 + length;
    if (!connection.fd || connection.serial != serial) return;  // closed by a failed write
  }
  connection.in.erase(0, used);
}

void DnsServer::Loop::WriteConnection(uint32_t index) {
  Connection& connection = connections_[index];
  while (connection.out_done < connection.out.size()) {
    ssize_t sent = ::send(connection.fd.get(), connection.out.data() + connection.out_done,
                          connection.out.size() - connection.out_done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno == EAGAIN) break;
    if (sent <= 0) {
      CloseConnection(index);
      return;
    }
    connection.out_done += static_cast<size_t>(sent);
  }

  if (connection.out_done == connection.out.size()) {
    connection.out.clear();
    connection.out_done = 0;
    if (!connection.reading && connection.pending == 0) {
      CloseConnection(index);
      return;
    }
  }
  UpdateConnectionEvents(index);
}

void DnsServer::Loop::UpdateConnectionEvents(uint32_t index) {
  Connection& connection = connections_[index];
  bool want_output = connection.out_done < connection.out.size();
  if (want_output == connection.watching_output && connection.reading) return;

  uint32_t events =
      (connection.reading ? uint32_t{EPOLLIN} : 0u) | (want_output ? uint32_t{EPOLLOUT} : 0u);
  epoll_event event{events,
                    {.u64 = EventTag(EventKind::kClientConnection, index, connection.serial)}};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, connection.fd.get(), &event);
  connection.watching_output = want_output;
}

void DnsServer::Loop::CloseConnection(uint32_t index) {
  Connection& connection = connections_[index];
  if (!connection.fd) return;
  connection.fd.Reset();
  connection.serial = 0;
  connection.in.clear();
  connection.out.clear();
  free_connections_.push_back(index);
}

void DnsServer::Loop::RefreshRules() {
  FlushRuleHits();
  rules_version_ = rules_source_->rules_version();
  rules_ = rules_source_->rules();
  hits_.assign(rules_->rule_count(), 0);
}

void DnsServer::Loop::FlushRuleHits() {
  for (uint32_t rule : touched_) {
    counters_->AddRuleHits(rules_->RuleName(rule), hits_[rule]);
    hits_[rule] = 0;
  }
  touched_.clear();
}

void DnsServer::Loop::Housekeeping(DnsClock::time_point now) {
  next_housekeeping_ = now + kHousekeeping;
  FlushRuleHits();
  for (uint32_t i = 0; i < connections_.size(); ++i) {
    const Connection& connection = connections_[i];
    if (connection.fd && connection.pending == 0 &&
        now - connection.last_active > kIdleConnection) {
      CloseConnection(i);
    }
  }
}

void DnsServer::Loop::BeginDrain() {
  if (draining_) return;
  draining_ = true;
  for (int fd : options_.udp_listeners) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  for (int fd : options_.tcp_listeners) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);

  // Connections stop being read: what a client sends from now on is for the next generation,
  // which it reaches by connecting again.
  for (uint32_t i = 0; i < connections_.size(); ++i) {
    Connection& connection = connections_[i];
    if (!connection.fd) continue;
    connection.reading = false;
    if (connection.pending == 0 && connection.out_done == connection.out.size()) {
      CloseConnection(i);
    } else {
      UpdateConnectionEvents(i);
    }
  }
}

bool DnsServer::Loop::Drained() const {
  if (forwarder_->in_flight() != 0) return false;
  return std::none_of(connections_.begin(), connections_.end(),
                      [](const Connection& connection) { return connection.fd.get() >= 0; });
}

absl::StatusOr<std::unique_ptr<DnsServer>> DnsServer::Start(Options options,
                                                            const RuleSource* rules,
                                                            DnsCounters* counters) {
  for (int fd : options.udp_listeners) {
    if (absl::Status status = SetNonBlocking(fd, true); !status.ok()) return status;
  }
  for (int fd : options.tcp_listeners) {
    if (absl::Status status = SetNonBlocking(fd, true); !status.ok()) return status;
  }

  std::unique_ptr<DnsServer> server(new DnsServer());
  auto shared = std::make_shared<Options>(std::move(options));
  int threads = std::max(1, shared->threads);
  for (int i = 0; i < threads; ++i) {
    auto loop = std::make_unique<Loop>(*shared, rules, counters);
    if (absl::Status opened = loop->Open(); !opened.ok()) return opened;
    server->loops_.push_back(std::move(loop));
  }
  server->options_ = std::move(shared);
  for (auto& loop : server->loops_) {
    server->threads_.emplace_back([running = loop.get()] { running->Run(); });
  }
  return server;
}

DnsServer::~DnsServer() { Drain(absl::ZeroDuration()); }

void DnsServer::Drain(absl::Duration grace) {
  if (drained_) return;
  drained_ = true;
  auto deadline = DnsClock::now() + absl::ToChronoNanoseconds(grace);
  for (auto& loop : loops_) loop->RequestDrain(deadline);
  for (std::thread& thread : threads_) thread.join();
}

}  // namespace nehost::filter
