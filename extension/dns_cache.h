// DnsCache keeps upstream answers for as long as their TTLs allow, so that a repeated
// question is answered without a round trip. An answer is served with its TTLs counted down
// by the time it spent in the cache, and with the asking client's id and question, as sent.
//
// Answers are keyed by question (name without case, type, class) and by what changes the
// answer: whether the client spoke EDNS0, asked for DNSSEC records (DO) or disabled checking
// (CD). Truncated answers, SERVFAIL and other errors are never stored; negative answers are
// kept as long as their SOA allows (RFC 2308), at most kMaxTtl.
//
// When full, the oldest entry goes first. Entries keep their buffers when replaced, so a warm
// cache does not allocate. One per data-plane thread: not thread safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "extension/dns_packet.h"

namespace nehost::filter {

class DnsCache {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint32_t kMaxTtl = 86400;

  // capacity 0 disables the cache.
  explicit DnsCache(size_t capacity);

  // Stores answer, the upstream's answer to query, when parsed says it may be cached.
  void Insert(const dns::Query& query, std::span<const uint8_t> answer, const dns::Response& parsed,
              Clock::time_point now);

  // Writes the cached answer to the query (from packet) into out, which must hold
  // dns::kMaxMessage bytes, and returns its size; 0 when there is none or it has expired.
  size_t Lookup(const dns::Query& query, std::span<const uint8_t> packet, Clock::time_point now,
                std::span<uint8_t> out);

  size_t size() const { return index_.size(); }

 private:
  struct Entry {
    std::string key;
    std::string answer;
    Clock::time_point stored;
    Clock::time_point expires;
    uint16_t ttl_offsets[dns::kMaxTtlOffsets] = {};
    size_t ttl_count = 0;
    bool used = false;
  };

  // Writes the key of query's question into buffer and returns its length.
  static size_t KeyOf(const dns::Query& query, char* buffer);
  void Erase(size_t slot);

  const size_t capacity_;
  std::vector<Entry> entries_;
  // Where the next entry goes when the cache is full: the entries form a ring, oldest first.
  size_t next_ = 0;
  absl::flat_hash_map<std::string, size_t> index_;
};

}  // namespace nehost::filter
