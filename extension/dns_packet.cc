#include "extension/dns_packet.h"

#include <algorithm>
#include <cstring>

namespace nehost::filter::dns {
namespace {

constexpr size_t kMaxNameWire = 255;
constexpr size_t kRecordFixedSize = 10;  // type, class, TTL, RDLENGTH
constexpr uint16_t kFlagResponse = 0x8000;
constexpr uint16_t kFlagTruncated = 0x0200;
constexpr uint16_t kFlagRecursionDesired = 0x0100;
constexpr uint16_t kFlagRecursionAvailable = 0x0080;
constexpr uint16_t kFlagCheckingDisabled = 0x0010;
constexpr uint32_t kOptDnssecOk = 0x8000;
// RFC 2181: a TTL with the top bit set is read as zero.
constexpr uint32_t kMaxTtl = 0x7fffffff;

// A name, read where it sits: end is the offset just past it there (a pointer ends it), and
// text its lower-case dotted form when asked for.
struct NameReader {
  std::span<const uint8_t> packet;
  char* text = nullptr;
  uint8_t* text_length = nullptr;

  ParseError Read(size_t offset, size_t* end) const;
};

ParseError AppendLabel(const uint8_t* label, size_t length, char* text, size_t* written) {
  if (*written != 0) text[(*written)++] = '.';
  for (size_t i = 0; i < length; ++i) {
    uint8_t c = label[i];
    if (c <= ' ' || c >= 0x7f || c == '.') return ParseError::kBadCharacter;
    text[(*written)++] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  }
  return ParseError::kNone;
}

// Pointers may only point backwards, each before the last one's target, and never into the
// header: every jump makes progress towards the start, so no packet can make a loop.
ParseError NameReader::Read(size_t offset, size_t* end) const {
  size_t position = offset;
  size_t lowest = offset;
  size_t wire_length = 0;
  size_t written = 0;
  bool jumped = false;

  for (;;) {
    if (position >= packet.size()) return ParseError::kTooShort;
    uint8_t length = packet[position];

    if ((length & 0xc0) == 0xc0) {
      if (position + 1 >= packet.size()) return ParseError::kTooShort;
      size_t target = static_cast<size_t>(length & 0x3f) << 8 | packet[position + 1];
      if (target < kHeaderSize || target >= lowest) return ParseError::kBadPointer;
      if (!jumped) *end = position + 2;
      jumped = true;
      position = lowest = target;
      continue;
    }
    if ((length & 0xc0) != 0) return ParseError::kBadLabelType;

    wire_length += length + 1;
    if (wire_length > kMaxNameWire) return ParseError::kNameTooLong;
    if (length == 0) break;
    if (position + 1 + length > packet.size()) return ParseError::kTooShort;

    if (text != nullptr) {
      ParseError label = AppendLabel(&packet[position + 1], length, text, &written);
      if (label != ParseError::kNone) return label;
    }
    position += 1 + length;
  }

  if (!jumped) *end = position + 1;
  if (text_length != nullptr) *text_length = static_cast<uint8_t>(written);
  return ParseError::kNone;
}

ParseError ReadQuestion(std::span<const uint8_t> packet, Question* question, size_t* end) {
  NameReader reader{packet, question->name, &question->name_length};
  size_t name_end = 0;
  if (ParseError name = reader.Read(kHeaderSize, &name_end); name != ParseError::kNone) return name;
  if (name_end + 4 > packet.size()) return ParseError::kTooShort;

  question->type = ReadU16(&packet[name_end]);
  question->klass = ReadU16(&packet[name_end + 2]);
  *end = name_end + 4;
  return ParseError::kNone;
}

// One resource record: where its fixed fields and its data are.
struct Record {
  size_t fixed = 0;  // offset of TYPE
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  size_t data = 0;
  uint16_t data_length = 0;
  bool root_owner = false;
};

ParseError ReadRecord(std::span<const uint8_t> packet, size_t* position, Record* record) {
  NameReader reader{packet};
  size_t name_end = 0;
  if (ParseError name = reader.Read(*position, &name_end); name != ParseError::kNone) return name;
  if (name_end + kRecordFixedSize > packet.size()) return ParseError::kTruncatedRecord;

  record->root_owner = packet[*position] == 0;
  record->fixed = name_end;
  record->type = ReadU16(&packet[name_end]);
  record->klass = ReadU16(&packet[name_end + 2]);
  record->ttl = ReadU32(&packet[name_end + 4]);
  record->data_length = ReadU16(&packet[name_end + 8]);
  record->data = name_end + kRecordFixedSize;

  if (record->data + record->data_length > packet.size()) return ParseError::kTruncatedRecord;
  *position = record->data + record->data_length;
  return ParseError::kNone;
}

// The SOA's MINIMUM field, which caps how long a negative answer may be cached (RFC 2308).
ParseError SoaMinimum(std::span<const uint8_t> packet, const Record& soa, uint32_t* minimum) {
  std::span<const uint8_t> upto_end = packet.first(soa.data + soa.data_length);
  NameReader reader{upto_end};
  size_t end = 0;
  if (ParseError mname = reader.Read(soa.data, &end); mname != ParseError::kNone) return mname;
  if (ParseError rname = reader.Read(end, &end); rname != ParseError::kNone) return rname;
  if (end + 20 != upto_end.size()) return ParseError::kTruncatedRecord;

  *minimum = ReadU32(&packet[end + 16]);
  return ParseError::kNone;
}

uint16_t ReplyFlags(const Query& query, Rcode rcode) {
  uint16_t flags = kFlagResponse | kFlagRecursionAvailable | static_cast<uint16_t>(rcode);
  if (query.recursion_desired) flags |= kFlagRecursionDesired;
  if (query.checking_disabled) flags |= kFlagCheckingDisabled;
  return flags;
}

size_t AppendOpt(const Query& query, uint8_t* at) {
  at[0] = 0;  // the root
  WriteU16(at + 1, kTypeOpt);
  WriteU16(at + 3, kAdvertisedUdpPayload);
  WriteU32(at + 5, query.dnssec_ok ? kOptDnssecOk : 0);
  WriteU16(at + 9, 0);
  return 11;
}

// The header and question of the query, made a reply: the counts are the caller's to set.
size_t StartReply(const Query& query, std::span<const uint8_t> packet, Rcode rcode,
                  std::span<uint8_t> out) {
  size_t length = std::min(query.question_end, packet.size());
  length = std::max(length, kHeaderSize);
  std::memcpy(out.data(), packet.data(), length);

  WriteU16(&out[2], ReplyFlags(query, rcode));
  WriteU16(&out[4], length > kHeaderSize ? 1 : 0);
  std::memset(&out[6], 0, 6);
  return length;
}

size_t AppendAddress(const Query& query, uint8_t* at) {
  uint16_t length = query.question.type == kTypeA ? 4 : 16;
  WriteU16(at, 0xc000 | kHeaderSize);  // the name of the question
  WriteU16(at + 2, query.question.type);
  WriteU16(at + 4, kClassIn);
  WriteU32(at + 6, kBlockedTtl);
  WriteU16(at + 10, length);
  std::memset(at + 12, 0, length);
  return 12 + length;
}

}  // namespace

absl::string_view ParseErrorName(ParseError error) {
  switch (error) {
    case ParseError::kNone:
      return "none";
    case ParseError::kTooShort:
      return "too_short";
    case ParseError::kNotAQuery:
      return "not_a_query";
    case ParseError::kNotAResponse:
      return "not_a_response";
    case ParseError::kQuestionCount:
      return "question_count";
    case ParseError::kNameTooLong:
      return "name_too_long";
    case ParseError::kBadPointer:
      return "bad_pointer";
    case ParseError::kBadLabelType:
      return "bad_label_type";
    case ParseError::kBadCharacter:
      return "bad_character";
    case ParseError::kTruncatedRecord:
      return "truncated_record";
    case ParseError::kBadOpt:
      return "bad_opt";
  }
  return "unknown";
}

ParseError ParseQuery(std::span<const uint8_t> packet, Query* query) {
  if (packet.size() < kHeaderSize) return ParseError::kTooShort;
  uint16_t flags = ReadU16(&packet[2]);
  if ((flags & kFlagResponse) != 0) return ParseError::kNotAQuery;

  query->id = ReadU16(&packet[0]);
  query->opcode = (flags >> 11) & 0xf;
  query->recursion_desired = (flags & kFlagRecursionDesired) != 0;
  query->checking_disabled = (flags & kFlagCheckingDisabled) != 0;
  query->question_end = kHeaderSize;
  if (query->opcode != 0) return ParseError::kNone;

  if (ReadU16(&packet[4]) != 1) return ParseError::kQuestionCount;
  ParseError question = ReadQuestion(packet, &query->question, &query->question_end);
  if (question != ParseError::kNone) return question;

  size_t records = size_t{ReadU16(&packet[6])} + ReadU16(&packet[8]) + ReadU16(&packet[10]);
  size_t position = query->question_end;
  for (size_t i = 0; i < records; ++i) {
    Record record;
    if (ParseError read = ReadRecord(packet, &position, &record); read != ParseError::kNone) {
      return read;
    }
    if (record.type != kTypeOpt) continue;

    if (query->has_edns || !record.root_owner) return ParseError::kBadOpt;
    query->has_edns = true;
    query->dnssec_ok = (record.ttl & kOptDnssecOk) != 0;
    query->udp_payload = std::max<uint16_t>(record.klass, kClassicUdpPayload);
  }
  return ParseError::kNone;
}

ParseError ParseResponse(std::span<const uint8_t> packet, Response* response) {
  if (packet.size() < kHeaderSize) return ParseError::kTooShort;
  uint16_t flags = ReadU16(&packet[2]);
  if ((flags & kFlagResponse) == 0) return ParseError::kNotAResponse;
  if (ReadU16(&packet[4]) != 1) return ParseError::kQuestionCount;

  response->id = ReadU16(&packet[0]);
  response->truncated = (flags & kFlagTruncated) != 0;
  response->rcode = static_cast<Rcode>(flags & 0xf);
  ParseError question = ReadQuestion(packet, &response->question, &response->question_end);
  if (question != ParseError::kNone) return question;

  uint16_t answers = ReadU16(&packet[6]);
  size_t records = size_t{answers} + ReadU16(&packet[8]) + ReadU16(&packet[10]);
  size_t position = response->question_end;
  uint32_t least_ttl = kMaxTtl;
  int64_t negative_ttl = -1;
  response->ttl_count = 0;
  bool seen_opt = false;

  for (size_t i = 0; i < records; ++i) {
    Record record;
    if (ParseError read = ReadRecord(packet, &position, &record); read != ParseError::kNone) {
      return read;
    }
    if (record.type == kTypeOpt) {
      if (seen_opt || !record.root_owner || i < size_t{answers}) return ParseError::kBadOpt;
      seen_opt = true;
      continue;
    }

    if (response->ttl_count < kMaxTtlOffsets) {
      response->ttl_offsets[response->ttl_count] = static_cast<uint16_t>(record.fixed + 4);
    }
    ++response->ttl_count;
    uint32_t ttl = record.ttl > kMaxTtl ? 0 : record.ttl;
    least_ttl = std::min(least_ttl, ttl);

    if (record.type == kTypeSoa && i >= answers) {
      uint32_t minimum = 0;
      if (ParseError soa = SoaMinimum(packet, record, &minimum); soa != ParseError::kNone) {
        return soa;
      }
      negative_ttl = std::min(ttl, std::min(minimum, kMaxTtl));
    }
  }

  bool cacheable_rcode = response->rcode == Rcode::kNoError || response->rcode == Rcode::kNxDomain;
  bool positive = response->rcode == Rcode::kNoError && answers > 0;
  response->cache_ttl = -1;
  if (!response->truncated && cacheable_rcode && response->ttl_count <= kMaxTtlOffsets) {
    response->cache_ttl = positive ? int64_t{least_ttl} : negative_ttl;
  }
  return ParseError::kNone;
}

bool SameQuestion(const Question& asked, const Question& answered) {
  return asked.type == answered.type && asked.klass == answered.klass &&
         asked.Name() == answered.Name();
}

size_t WriteBlockedAnswer(const Query& query, std::span<const uint8_t> packet, BlockedAnswer kind,
                          std::span<uint8_t> out) {
  if (kind == BlockedAnswer::kNxDomain) {
    return WriteEmptyAnswer(query, packet, Rcode::kNxDomain, out);
  }

  size_t length = StartReply(query, packet, Rcode::kNoError, out);
  const Question& question = query.question;
  bool address =
      question.klass == kClassIn && (question.type == kTypeA || question.type == kTypeAaaa);
  if (address) {
    length += AppendAddress(query, &out[length]);
    WriteU16(&out[6], 1);
  }
  if (query.has_edns) {
    length += AppendOpt(query, &out[length]);
    WriteU16(&out[10], 1);
  }
  return length;
}

size_t WriteEmptyAnswer(const Query& query, std::span<const uint8_t> packet, Rcode rcode,
                        std::span<uint8_t> out) {
  size_t length = StartReply(query, packet, rcode, out);
  if (query.has_edns) {
    length += AppendOpt(query, &out[length]);
    WriteU16(&out[10], 1);
  }
  return length;
}

size_t WriteTruncated(std::span<const uint8_t> answer, size_t question_end,
                      std::span<uint8_t> out) {
  size_t length = std::max(std::min(question_end, answer.size()), kHeaderSize);
  std::memcpy(out.data(), answer.data(), length);
  WriteU16(&out[2], ReadU16(&out[2]) | kFlagTruncated);
  std::memset(&out[6], 0, 6);
  return length;
}

}  // namespace nehost::filter::dns
