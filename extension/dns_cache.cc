#include "extension/dns_cache.h"

#include <algorithm>
#include <cstring>

namespace nehost::filter {
namespace {

constexpr size_t kMaxKey = dns::kMaxNameText + 8;

}  // namespace

DnsCache::DnsCache(size_t capacity) : capacity_(capacity) {
  entries_.resize(capacity);
  index_.reserve(capacity);
}

size_t DnsCache::KeyOf(const dns::Query& query, char* buffer) {
  const dns::Question& question = query.question;
  size_t length = question.name_length;
  std::memcpy(buffer, question.name, length);
  buffer[length++] = '\0';
  dns::WriteU16(reinterpret_cast<uint8_t*>(&buffer[length]), question.type);
  dns::WriteU16(reinterpret_cast<uint8_t*>(&buffer[length + 2]), question.klass);
  buffer[length + 4] = static_cast<char>((query.has_edns ? 1 : 0) | (query.dnssec_ok ? 2 : 0) |
                                         (query.checking_disabled ? 4 : 0));
  return length + 5;
}

void DnsCache::Erase(size_t slot) {
  Entry& entry = entries_[slot];
  index_.erase(entry.key);
  entry.used = false;
}

void DnsCache::Insert(const dns::Query& query, std::span<const uint8_t> answer,
                      const dns::Response& parsed, Clock::time_point now) {
  if (capacity_ == 0 || parsed.cache_ttl <= 0 || parsed.ttl_count > dns::kMaxTtlOffsets) return;
  char key[kMaxKey];
  absl::string_view key_view(key, KeyOf(query, key));

  size_t slot;
  auto found = index_.find(key_view);
  if (found != index_.end()) {
    slot = found->second;
  } else {
    slot = next_;
    next_ = (next_ + 1) % capacity_;
    if (entries_[slot].used) Erase(slot);
    entries_[slot].key.assign(key_view.data(), key_view.size());
    index_.emplace(entries_[slot].key, slot);
  }

  Entry& entry = entries_[slot];
  entry.used = true;
  entry.answer.assign(reinterpret_cast<const char*>(answer.data()), answer.size());
  entry.stored = now;
  uint32_t ttl = static_cast<uint32_t>(std::min<int64_t>(parsed.cache_ttl, kMaxTtl));
  entry.expires = now + std::chrono::seconds(ttl);
  std::copy_n(parsed.ttl_offsets, parsed.ttl_count, entry.ttl_offsets);
  entry.ttl_count = parsed.ttl_count;
}

size_t DnsCache::Lookup(const dns::Query& query, std::span<const uint8_t> packet,
                        Clock::time_point now, std::span<uint8_t> out) {
  if (index_.empty()) return 0;
  char key[kMaxKey];
  auto found = index_.find(absl::string_view(key, KeyOf(query, key)));
  if (found == index_.end()) return 0;

  const Entry& entry = entries_[found->second];
  if (now >= entry.expires) {
    Erase(found->second);
    return 0;
  }

  size_t length = entry.answer.size();
  std::memcpy(out.data(), entry.answer.data(), length);
  dns::SetId(out, query.id);
  // The question as this client wrote it: the same name has the same length whatever its case.
  std::memcpy(&out[dns::kHeaderSize], &packet[dns::kHeaderSize],
              query.question_end - dns::kHeaderSize);

  auto age = std::chrono::duration_cast<std::chrono::seconds>(now - entry.stored).count();
  for (size_t i = 0; i < entry.ttl_count; ++i) {
    uint8_t* ttl = &out[entry.ttl_offsets[i]];
    uint32_t original = dns::ReadU32(ttl);
    dns::WriteU32(ttl, original > static_cast<uint32_t>(age) ? original - age : 0);
  }
  return length;
}

}  // namespace nehost::filter
