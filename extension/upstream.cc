#include "extension/upstream.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "spdlog/spdlog.h"

namespace nehost::filter {
namespace {

constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
constexpr size_t kUdpBatch = 16;
// Big enough for any answer a client asked for with an EDNS0 size up to 8 KB; a bigger one
// arrives cut (MSG_TRUNC) and is asked again over TCP.
constexpr size_t kUdpAnswerBuffer = 8192;
constexpr int kUpstreamReceiveBuffer = 1 << 20;

absl::Status InvalidAddress(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("address \"", text, "\": ", why));
}

uint32_t DelayMs(DnsClock::duration elapsed) {
  return static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count());
}

}  // namespace

absl::StatusOr<InetAddress> ParseInetAddress(absl::string_view text, uint16_t default_port) {
  std::string host(text);
  uint32_t port = default_port;

  // A port follows the only colon of an IPv4 address, or the "]" of a bracketed IPv6 one.
  size_t colon = text.rfind(':');
  bool bracketed = !text.empty() && text.front() == '[';
  size_t close = text.find(']');
  bool host_and_port = bracketed ? close != absl::string_view::npos && close + 1 == colon
                                 : colon != absl::string_view::npos && text.find(':') == colon;
  if (host_and_port) {
    if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port == 0 || port > 65535) {
      return InvalidAddress(text, "the port is not a number from 1 to 65535");
    }
    host = std::string(text.substr(0, colon));
  }
  if (bracketed) {
    if (host.size() < 2 || host.back() != ']') return InvalidAddress(text, "unbalanced '['");
    host = host.substr(1, host.size() - 2);
  }

  InetAddress address;
  address.text = std::string(text);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address.address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.address);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    address.length = sizeof *v4;
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    address.length = sizeof *v6;
  } else {
    return InvalidAddress(text, "not an IPv4 or IPv6 address, with an optional :PORT");
  }
  return address;
}

absl::StatusOr<std::vector<InetAddress>> UpstreamsFromResolvConf(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();

  std::vector<InetAddress> upstreams;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.size() < 2 || words[0] != "nameserver") continue;

    // A link-local address names its interface after '%': forwarding to one is not supported.
    absl::StatusOr<InetAddress> address = ParseInetAddress(words[1], 53);
    if (!address.ok()) {
      spdlog::warn("ignoring nameserver path={} line={}: {}", path, line_number,
                   std::string(address.status().message()));
      continue;
    }
    upstreams.push_back(*std::move(address));
  }
  return upstreams;
}

// Random ids from the kernel's generator, drawn a few thousand at a time.
class Forwarder::IdSource {
 public:
  uint16_t Next() {
    if (next_ == pool_.size()) Refill();
    return pool_[next_++];
  }

 private:
  void Refill() {
    ssize_t got = ::getrandom(pool_.data(), sizeof pool_, 0);
    if (got != static_cast<ssize_t>(sizeof pool_)) {
      // getrandom only fails this way before the kernel's pool is initialised at boot.
      for (uint16_t& id : pool_) id = absl::Uniform<uint16_t>(fallback_);
    }
    next_ = 0;
  }

  std::array<uint16_t, 2048> pool_{};
  size_t next_ = pool_.size();
  absl::BitGen fallback_;
};

struct Forwarder::Pending {
  bool used = false;
  // Changes whenever the slot starts a TCP connection, so that an event of an old one is
  // told apart.
  uint32_t serial = 0;
  uint16_t id = 0;
  ClientRef client;
  dns::Query query;
  // The query as forwarded: the upstream id in place of the client's.
  std::string packet;
  uint32_t upstream = 0;
  uint32_t tried = 0;
  DnsClock::time_point sent;
  DnsClock::time_point deadline;
  uint32_t previous = kNone;
  uint32_t next = kNone;

  // The query's own UDP socket, from a random port; empty when it went out on the shared one.
  UniqueFd udp;
  UniqueFd tcp;
  // Writing: the length and the query; reading: the length and the answer so far.
  std::string tcp_buffer;
  size_t tcp_done = 0;
  bool tcp_reading = false;
};

absl::StatusOr<std::unique_ptr<Forwarder>> Forwarder::Create(Options options, int epoll_fd,
                                                             DnsCounters* counters, Sink* sink) {
  std::unique_ptr<Forwarder> forwarder(new Forwarder(std::move(options), epoll_fd, counters, sink));
  for (uint32_t i = 0; i < forwarder->options_.upstreams.size(); ++i) {
    const InetAddress& upstream = forwarder->options_.upstreams[i];
    UniqueFd socket(
        ::socket(upstream.address.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!socket) return ErrnoStatus(errno, "create socket for upstream", upstream.text);
    ::setsockopt(socket.get(), SOL_SOCKET, SO_RCVBUF, &kUpstreamReceiveBuffer,
                 sizeof kUpstreamReceiveBuffer);
    if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&upstream.address),
                  upstream.length) != 0) {
      return ErrnoStatus(errno, "connect to upstream", upstream.text);
    }

    epoll_event event{EPOLLIN, {.u64 = EventTag(EventKind::kUpstreamUdp, i)}};
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, socket.get(), &event) != 0) {
      return ErrnoStatus(errno, "watch socket of upstream", upstream.text);
    }
    forwarder->sockets_.push_back(std::move(socket));
  }
  return forwarder;
}

Forwarder::Forwarder(Options options, int epoll_fd, DnsCounters* counters, Sink* sink)
    : options_(std::move(options)),
      epoll_fd_(epoll_fd),
      counters_(counters),
      sink_(sink),
      ids_(std::make_unique<IdSource>()),
      slots_(options_.max_in_flight),
      slot_of_id_(65536, kNone),
      oldest_(kNone),
      newest_(kNone),
      receive_buffers_(kUdpBatch * kUdpAnswerBuffer) {
  free_slots_.reserve(slots_.size());
  for (size_t i = slots_.size(); i-- > 0;) free_slots_.push_back(static_cast<uint32_t>(i));
}

Forwarder::~Forwarder() = default;

bool Forwarder::Forward(const ClientRef& client, const dns::Query& query,
                        std::span<const uint8_t> packet, DnsClock::time_point now) {
  if (free_slots_.empty() || options_.upstreams.empty()) return false;

  // A free id, at random: with at most max_in_flight of 65536 taken, a few draws find one.
  uint16_t id = ids_->Next();
  for (int draw = 0; slot_of_id_[id] != kNone; ++draw) {
    if (draw == 16) return false;
    id = ids_->Next();
  }

  uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  ++in_flight_;
  slot_of_id_[id] = slot;

  Pending& pending = slots_[slot];
  pending.used = true;
  pending.id = id;
  pending.client = client;
  pending.query = query;
  pending.packet.assign(reinterpret_cast<const char*>(packet.data()), packet.size());
  dns::SetId(std::span(reinterpret_cast<uint8_t*>(pending.packet.data()), 2), id);
  pending.upstream = preferred_ % options_.upstreams.size();
  pending.tried = 1;
  pending.sent = now;
  SendUdp(slot, now);
  return true;
}

int Forwarder::OpenQuerySocket(uint32_t slot) {
  Pending& pending = slots_[slot];
  const InetAddress& upstream = options_.upstreams[pending.upstream];
  pending.serial = (pending.serial + 1) & 0xffffff;
  pending.udp.Reset(
      ::socket(upstream.address.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!pending.udp) return -1;

  // connect() binds the socket to a port that Linux picks at random for each UDP socket.
  epoll_event event{EPOLLIN, {.u64 = EventTag(EventKind::kUpstreamQuery, slot, pending.serial)}};
  if (::connect(pending.udp.get(), reinterpret_cast<const sockaddr*>(&upstream.address),
                upstream.length) != 0 ||
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pending.udp.get(), &event) != 0) {
    pending.udp.Reset();
    return -1;
  }
  return pending.udp.get();
}

void Forwarder::SendUdp(uint32_t slot, DnsClock::time_point now) {
  Pending& pending = slots_[slot];
  pending.deadline = now + options_.timeout;
  Append(slot);

  // Out of descriptors, the query goes out on the shared socket: still under a random id.
  int fd = options_.random_ports ? OpenQuerySocket(slot) : -1;
  if (fd < 0) fd = sockets_[pending.upstream].get();

  // A send that fails (a full socket buffer, an unreachable network) is left to the timeout,
  // which moves the query on to the next upstream.
  ssize_t sent =
      ::send(fd, pending.packet.data(), pending.packet.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent < 0) {
    spdlog::debug("send to upstream failed upstream={} error=\"{}\"",
                  options_.upstreams[pending.upstream].text, ErrnoText(errno));
  }
}

void Forwarder::OnEvent(uint64_t tag, uint32_t events, DnsClock::time_point now) {
  switch (KindOf(tag)) {
    case EventKind::kUpstreamUdp:
      ReadUdp(IndexOf(tag), now);
      return;
    case EventKind::kUpstreamQuery:
      ReadQuerySocket(IndexOf(tag), SerialOf(tag), now);
      return;
    default:
      OnTcpEvent(IndexOf(tag), SerialOf(tag), events, now);
      return;
  }
}

void Forwarder::ReadUdp(uint32_t upstream, DnsClock::time_point now) {
  std::array<mmsghdr, kUdpBatch> messages{};
  std::array<iovec, kUdpBatch> vectors{};
  for (size_t i = 0; i < kUdpBatch; ++i) {
    vectors[i] = {&receive_buffers_[i * kUdpAnswerBuffer], kUdpAnswerBuffer};
    messages[i].msg_hdr.msg_iov = &vectors[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }

  int received =
      ::recvmmsg(sockets_[upstream].get(), messages.data(), kUdpBatch, MSG_DONTWAIT, nullptr);
  for (int i = 0; i < received; ++i) {
    std::span<uint8_t> answer(&receive_buffers_[i * kUdpAnswerBuffer], messages[i].msg_len);
    if ((messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 && answer.size() >= dns::kHeaderSize) {
      // Cut by the buffer: the header is whole, and says which query it answers.
      uint32_t slot = slot_of_id_[dns::ReadU16(answer.data())];
      if (slot != kNone && slots_[slot].upstream == upstream && !slots_[slot].tcp &&
          !slots_[slot].udp) {
        StartTcp(slot, now);
        continue;
      }
    }
    OnUdpAnswer(upstream, kNone, answer, now);
  }
}

void Forwarder::ReadQuerySocket(uint32_t slot, uint32_t serial, DnsClock::time_point now) {
  if (slot >= slots_.size()) return;
  Pending& pending = slots_[slot];
  if (!pending.used || !pending.udp || pending.serial != serial) return;

  // One datagram an event: the slot may be free once it is read. MSG_TRUNC gives its real size.
  ssize_t got = ::recv(pending.udp.get(), receive_buffers_.data(), kUdpAnswerBuffer,
                       MSG_DONTWAIT | MSG_TRUNC);
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (got < 0) {
    // ECONNREFUSED: the upstream's host says nothing listens there. No need to wait it out.
    spdlog::debug("upstream unreachable upstream={} error=\"{}\"",
                  options_.upstreams[pending.upstream].text, ErrnoText(errno));
    UpstreamFailed(slot, now);
    return;
  }

  std::span<uint8_t> answer(receive_buffers_.data(),
                            std::min(static_cast<size_t>(got), kUdpAnswerBuffer));
  if (static_cast<size_t>(got) > kUdpAnswerBuffer && dns::ReadU16(answer.data()) == pending.id) {
    StartTcp(slot, now);
    return;
  }
  OnUdpAnswer(pending.upstream, slot, answer, now);
}

void Forwarder::OnUdpAnswer(uint32_t upstream, uint32_t via_slot, std::span<uint8_t> answer,
                            DnsClock::time_point now) {
  dns::Response parsed;
  dns::ParseError error = dns::ParseResponse(answer, &parsed);
  uint32_t slot = error == dns::ParseError::kNone ? slot_of_id_[parsed.id] : kNone;

  // The answer must come in where the query went out: its own socket, or the shared one.
  // Late answers from an upstream already given up on land here too.
  uint32_t expected_via = slot != kNone && slots_[slot].udp ? slot : kNone;
  if (slot == kNone || via_slot != expected_via || slots_[slot].upstream != upstream ||
      slots_[slot].tcp || !dns::SameQuestion(slots_[slot].query.question, parsed.question)) {
    counters_->Increment(DnsCounters::kUpstreamBadAnswers);
    spdlog::debug("dropped upstream answer upstream={} size={} error={}",
                  options_.upstreams[upstream].text, answer.size(),
                  std::string(error == dns::ParseError::kNone ? "not_in_flight"
                                                              : dns::ParseErrorName(error)));
    return;
  }
  Accept(slot, answer, parsed, now);
}

void Forwarder::Accept(uint32_t slot, std::span<uint8_t> answer, const dns::Response& parsed,
                       DnsClock::time_point now) {
  Pending& pending = slots_[slot];
  if (parsed.truncated && !pending.tcp) {
    counters_->Increment(DnsCounters::kTcpRetries);
    StartTcp(slot, now);
    return;
  }

  bool refused = parsed.rcode == dns::Rcode::kServFail || parsed.rcode == dns::Rcode::kRefused;
  if (refused && pending.tried < options_.upstreams.size()) {
    spdlog::debug("upstream refused upstream={} rcode={}",
                  options_.upstreams[pending.upstream].text, static_cast<int>(parsed.rcode));
    TryNext(slot, now);
    return;
  }

  preferred_ = pending.upstream;
  DnsClock::duration latency = now - pending.sent;
  counters_->RecordUpstreamLatency(absl::FromChrono(latency));
  dns::SetId(answer, pending.query.id);
  sink_->Answered(pending.client, pending.query, answer, parsed, latency);
  Release(slot);
}

void Forwarder::StartTcp(uint32_t slot, DnsClock::time_point now) {
  Pending& pending = slots_[slot];
  pending.udp.Reset();
  const InetAddress& upstream = options_.upstreams[pending.upstream];
  Unlink(slot);
  pending.deadline = now + options_.timeout;
  Append(slot);

  pending.serial = (pending.serial + 1) & 0xffffff;
  pending.tcp.Reset(
      ::socket(upstream.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int connected =
      pending.tcp ? ::connect(pending.tcp.get(),
                              reinterpret_cast<const sockaddr*>(&upstream.address), upstream.length)
                  : -1;
  epoll_event event{EPOLLOUT, {.u64 = EventTag(EventKind::kUpstreamTcp, slot, pending.serial)}};
  if ((connected != 0 && errno != EINPROGRESS) ||
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pending.tcp.get(), &event) != 0) {
    spdlog::debug("tcp to upstream failed upstream={} error=\"{}\"", upstream.text,
                  ErrnoText(errno));
    TryNext(slot, now);
    return;
  }

  uint8_t length[2];
  dns::WriteU16(length, static_cast<uint16_t>(pending.packet.size()));
  pending.tcp_buffer.assign(reinterpret_cast<const char*>(length), 2);
  pending.tcp_buffer.append(pending.packet);
  pending.tcp_done = 0;
  pending.tcp_reading = false;
}

void Forwarder::OnTcpEvent(uint32_t slot, uint32_t serial, uint32_t events,
                           DnsClock::time_point now) {
  if (slot >= slots_.size()) return;
  Pending& pending = slots_[slot];
  if (!pending.used || !pending.tcp || pending.serial != serial) return;

  if ((events & (EPOLLERR | EPOLLHUP)) != 0 && !pending.tcp_reading) {
    spdlog::debug("tcp to upstream failed upstream={}", options_.upstreams[pending.upstream].text);
    TryNext(slot, now);
    return;
  }
  if (pending.tcp_reading) {
    ReadTcp(slot, now);
  } else {
    WriteTcp(slot, now);
  }
}

void Forwarder::WriteTcp(uint32_t slot, DnsClock::time_point now) {
  Pending& pending = slots_[slot];
  ssize_t written = ::send(pending.tcp.get(), pending.tcp_buffer.data() + pending.tcp_done,
                           pending.tcp_buffer.size() - pending.tcp_done, MSG_NOSIGNAL);
  if (written < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    TryNext(slot, now);
    return;
  }

  pending.tcp_done += static_cast<size_t>(written);
  if (pending.tcp_done < pending.tcp_buffer.size()) return;
  pending.tcp_reading = true;
  pending.tcp_buffer.clear();
  epoll_event event{EPOLLIN, {.u64 = EventTag(EventKind::kUpstreamTcp, slot, pending.serial)}};
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, pending.tcp.get(), &event);
}

void Forwarder::ReadTcp(uint32_t slot, DnsClock::time_point now) {
  Pending& pending = slots_[slot];
  std::string& buffer = pending.tcp_buffer;
  size_t wanted =
      buffer.size() < 2 ? 2 : 2 + dns::ReadU16(reinterpret_cast<uint8_t*>(buffer.data()));
  size_t had = buffer.size();
  buffer.resize(wanted);
  ssize_t got = ::recv(pending.tcp.get(), buffer.data() + had, wanted - had, 0);
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
    buffer.resize(had);
    return;
  }
  if (got <= 0) {
    spdlog::debug("tcp answer cut short upstream={}", options_.upstreams[pending.upstream].text);
    TryNext(slot, now);
    return;
  }

  buffer.resize(had + static_cast<size_t>(got));
  if (buffer.size() == 2) {
    // The length is known now: read the answer on the next event.
    if (dns::ReadU16(reinterpret_cast<uint8_t*>(buffer.data())) == 0) TryNext(slot, now);
    return;
  }
  if (buffer.size() < wanted) return;

  std::span<uint8_t> answer(reinterpret_cast<uint8_t*>(buffer.data()) + 2, buffer.size() - 2);
  dns::Response parsed;
  dns::ParseError error = dns::ParseResponse(answer, &parsed);
  if (error != dns::ParseError::kNone || parsed.id != pending.id ||
      !dns::SameQuestion(pending.query.question, parsed.question)) {
    counters_->Increment(DnsCounters::kUpstreamBadAnswers);
    TryNext(slot, now);
    return;
  }
  Accept(slot, answer, parsed, now);
}

void Forwarder::CloseSockets(uint32_t slot) {
  // Closing a descriptor removes it from the epoll set.
  Pending& pending = slots_[slot];
  pending.udp.Reset();
  if (!pending.tcp) return;
  pending.tcp.Reset();
  pending.tcp_buffer.clear();
}

void Forwarder::TryNext(uint32_t slot, DnsClock::time_point now) {
  Pending& pending = slots_[slot];
  CloseSockets(slot);
  Unlink(slot);
  if (pending.tried >= options_.upstreams.size()) {
    spdlog::debug("every upstream failed name={} type={} tried={} waited_ms={}",
                  std::string(pending.query.question.Name()), pending.query.question.type,
                  pending.tried, DelayMs(now - pending.sent));
    sink_->Failed(
        pending.client, pending.query,
        std::span(reinterpret_cast<const uint8_t*>(pending.packet.data()), pending.packet.size()));
    Release(slot);
    return;
  }

  ++pending.tried;
  pending.upstream = (pending.upstream + 1) % options_.upstreams.size();
  SendUdp(slot, now);
}

void Forwarder::Expire(DnsClock::time_point now) {
  while (oldest_ != kNone && slots_[oldest_].deadline <= now) {
    counters_->Increment(DnsCounters::kUpstreamTimeouts);
    UpstreamFailed(oldest_, now);
  }
}

void Forwarder::UpstreamFailed(uint32_t slot, DnsClock::time_point now) {
  uint32_t upstream = slots_[slot].upstream;
  if (preferred_ == upstream && options_.upstreams.size() > 1) {
    preferred_ = (upstream + 1) % options_.upstreams.size();
    spdlog::warn("upstream failed upstream={} timeout_ms={}; trying {} first from now",
                 options_.upstreams[upstream].text, options_.timeout.count(),
                 options_.upstreams[preferred_].text);
  }
  TryNext(slot, now);
}

DnsClock::time_point Forwarder::NextDeadline() const {
  return oldest_ == kNone ? DnsClock::time_point::max() : slots_[oldest_].deadline;
}

void Forwarder::Release(uint32_t slot) {
  Pending& pending = slots_[slot];
  CloseSockets(slot);
  Unlink(slot);
  slot_of_id_[pending.id] = kNone;
  pending.used = false;
  free_slots_.push_back(slot);
  --in_flight_;
}

void Forwarder::Unlink(uint32_t slot) {
  Pending& pending = slots_[slot];
  bool linked = pending.previous != kNone || pending.next != kNone || oldest_ == slot;
  if (!linked) return;

  if (pending.previous != kNone) slots_[pending.previous].next = pending.next;
  if (pending.next != kNone) slots_[pending.next].previous = pending.previous;
  if (oldest_ == slot) oldest_ = pending.next;
  if (newest_ == slot) newest_ = pending.previous;
  pending.previous = pending.next = kNone;
}

void Forwarder::Append(uint32_t slot) {
  Pending& pending = slots_[slot];
  pending.previous = newest_;
  pending.next = kNone;
  if (newest_ != kNone) slots_[newest_].next = slot;
  newest_ = slot;
  if (oldest_ == kNone) oldest_ = slot;
}

}  // namespace nehost::filter
