// DNS messages as nehost-filter's data plane reads and writes them (RFC 1035, EDNS0 from
// RFC 6891): the question of a query, what a forwarded answer must match, and the answers
// nehost-filter writes itself (blocked names, SERVFAIL, truncation).
//
// Packets are the untrusted boundary: every read is bounds-checked, names are decoded with
// compression pointers that may only point backwards (so that no loop is possible) and within
// RFC 1035's limits of 63 octets a label and 255 a name. A packet that breaks any rule is
// reported with a ParseError, never read past its end. README.md says why this parser and not
// ldns: it reads only what forwarding needs, in place, without allocating.
//
// Plain functions on caller-owned buffers: no allocation, no state, thread safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/strings/string_view.h"

namespace nehost::filter::dns {

inline constexpr size_t kHeaderSize = 12;
// The longest name in text form, without its trailing dot.
inline constexpr size_t kMaxNameText = 253;
// What a client without EDNS0 may receive over UDP.
inline constexpr size_t kClassicUdpPayload = 512;
// What nehost-filter advertises in the OPT record of the answers it writes: the size the DNS
// flag day of 2020 settled on, which avoids IP fragmentation on nearly every path.
inline constexpr uint16_t kAdvertisedUdpPayload = 1232;
inline constexpr size_t kMaxMessage = 65535;

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeSoa = 6;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeOpt = 41;
inline constexpr uint16_t kClassIn = 1;

enum class Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};

enum class ParseError : uint8_t {
  kNone,
  kTooShort,
  kNotAQuery,
  kNotAResponse,
  kQuestionCount,
  kNameTooLong,
  kBadPointer,
  kBadLabelType,
  kBadCharacter,
  kTruncatedRecord,
  kBadOpt,
};

// For logs and counters: "label_too_long" and so on.
absl::string_view ParseErrorName(ParseError error);

struct Question {
  // Lower case, without the trailing dot; empty for the root. Labels may hold any printable
  // ASCII but the dot (RFC 2317 names hold '/', SRV names '_'); a name with a dot, a space or a
  // byte outside ASCII inside a label is refused as kBadCharacter, so that the text form is
  // never ambiguous.
  char name[kMaxNameText + 1] = {};
  uint8_t name_length = 0;
  uint16_t type = 0;
  uint16_t klass = 0;

  absl::string_view Name() const { return {name, name_length}; }
};

struct Query {
  uint16_t id = 0;
  uint8_t opcode = 0;
  bool recursion_desired = false;
  bool checking_disabled = false;
  Question question;
  // Offset just past the question: the header and question of a reply are bytes [0, end).
  size_t question_end = 0;
  bool has_edns = false;
  bool dnssec_ok = false;
  // The largest UDP answer the client accepts: its EDNS0 size, at least 512.
  uint16_t udp_payload = kClassicUdpPayload;
};

// Reads a query. kNotAQuery for a packet with QR set; a query whose opcode is not QUERY is
// still parsed as far as its header (the caller answers NOTIMP).
ParseError ParseQuery(std::span<const uint8_t> packet, Query* query);

// Where the TTLs of an answer's records are, so that a cached copy can count them down.
inline constexpr size_t kMaxTtlOffsets = 48;

struct Response {
  uint16_t id = 0;
  bool truncated = false;
  Rcode rcode = Rcode::kNoError;
  Question question;
  size_t question_end = 0;
  // How long the answer may be cached: the least TTL of its records (for a negative answer,
  // the SOA's TTL capped at its MINIMUM field). -1 when it must not be cached.
  int64_t cache_ttl = -1;
  // Offsets of the 32-bit TTL of each record but OPT; ttl_count > kMaxTtlOffsets means the
  // answer had more and must not be cached.
  uint16_t ttl_offsets[kMaxTtlOffsets] = {};
  size_t ttl_count = 0;
};

// Reads an answer from an upstream, every record of it, so that garbage is refused before it
// reaches a client or the cache.
ParseError ParseResponse(std::span<const uint8_t> packet, Response* response);

// Whether an answer's question is the one that was asked: names compare without case.
bool SameQuestion(const Question& asked, const Question& answered);

inline uint16_t ReadU16(const uint8_t* at) { return static_cast<uint16_t>(at[0] << 8 | at[1]); }
inline void WriteU16(uint8_t* at, uint16_t value) {
  at[0] = static_cast<uint8_t>(value >> 8);
  at[1] = static_cast<uint8_t>(value);
}
inline uint32_t ReadU32(const uint8_t* at) {
  return static_cast<uint32_t>(at[0]) << 24 | static_cast<uint32_t>(at[1]) << 16 |
         static_cast<uint32_t>(at[2]) << 8 | at[3];
}
inline void WriteU32(uint8_t* at, uint32_t value) {
  WriteU16(at, static_cast<uint16_t>(value >> 16));
  WriteU16(at + 2, static_cast<uint16_t>(value));
}

// What a blocked name gets.
enum class BlockedAnswer : uint8_t { kNxDomain, kSinkhole };
// The TTL of the answers nehost-filter writes for blocked names.
inline constexpr uint32_t kBlockedTtl = 60;

// The answers below are written into out, which must hold at least the query's question_end
// plus 64 bytes; each returns the answer's size. They repeat the client's question as it was
// sent, and add an OPT record when the query had one.

// NXDOMAIN, or for a sinkhole 0.0.0.0 to A, :: to AAAA, and an empty NOERROR to other types.
size_t WriteBlockedAnswer(const Query& query, std::span<const uint8_t> packet, BlockedAnswer kind,
                          std::span<uint8_t> out);

// An answer with no records and this rcode: SERVFAIL when every upstream failed, NOTIMP for
// an opcode nehost-filter does not forward.
size_t WriteEmptyAnswer(const Query& query, std::span<const uint8_t> packet, Rcode rcode,
                        std::span<uint8_t> out);

// The answer cut to its header and question with TC set, for a UDP client that cannot take it
// whole; it asks again over TCP. answer is at least the header and the question.
size_t WriteTruncated(std::span<const uint8_t> answer, size_t question_end, std::span<uint8_t> out);

inline void SetId(std::span<uint8_t> packet, uint16_t id) { WriteU16(packet.data(), id); }

}  // namespace nehost::filter::dns
