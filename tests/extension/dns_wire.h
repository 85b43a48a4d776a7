// DNS messages built byte by byte for tests, independently of the parser under test: queries
// with and without EDNS0, answers with records, and the malformed shapes the parser must
// refuse. Header-only; plain functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace nehost::filter::testing {

using Bytes = std::vector<uint8_t>;

inline void Put16(Bytes* out, uint16_t value) {
  out->push_back(static_cast<uint8_t>(value >> 8));
  out->push_back(static_cast<uint8_t>(value));
}

inline void Put32(Bytes* out, uint32_t value) {
  Put16(out, static_cast<uint16_t>(value >> 16));
  Put16(out, static_cast<uint16_t>(value));
}

// "www.example.com" as labels; "" is the root.
inline void PutName(Bytes* out, absl::string_view name) {
  if (!name.empty()) {
    for (absl::string_view label : absl::StrSplit(name, '.')) {
      out->push_back(static_cast<uint8_t>(label.size()));
      out->insert(out->end(), label.begin(), label.end());
    }
  }
  out->push_back(0);
}

struct Header {
  uint16_t id = 0x1234;
  uint16_t flags = 0x0100;  // a query, recursion desired
  uint16_t questions = 1;
  uint16_t answers = 0;
  uint16_t authority = 0;
  uint16_t additional = 0;
};

inline Bytes HeaderBytes(const Header& header) {
  Bytes out;
  Put16(&out, header.id);
  Put16(&out, header.flags);
  Put16(&out, header.questions);
  Put16(&out, header.answers);
  Put16(&out, header.authority);
  Put16(&out, header.additional);
  return out;
}

inline void PutOpt(Bytes* out, uint16_t payload, bool dnssec_ok = false) {
  out->push_back(0);
  Put16(out, 41);
  Put16(out, payload);
  Put32(out, dnssec_ok ? 0x8000 : 0);
  Put16(out, 0);
}

inline Bytes Query(absl::string_view name, uint16_t type = 1, uint16_t id = 0x1234,
                   int edns_payload = 0) {
  Header header;
  header.id = id;
  header.additional = edns_payload > 0 ? 1 : 0;
  Bytes out = HeaderBytes(header);
  PutName(&out, name);
  Put16(&out, type);
  Put16(&out, 1);
  if (edns_payload > 0) PutOpt(&out, static_cast<uint16_t>(edns_payload));
  return out;
}

// A record whose owner is the question's name (a pointer to offset 12).
inline void PutRecord(Bytes* out, uint16_t type, uint32_t ttl, const Bytes& data) {
  Put16(out, 0xc00c);
  Put16(out, type);
  Put16(out, 1);
  Put32(out, ttl);
  Put16(out, static_cast<uint16_t>(data.size()));
  out->insert(out->end(), data.begin(), data.end());
}

// An answer to Query(name, type, id): count A records 192.0.2.N with ttl.
inline Bytes Answer(absl::string_view name, uint16_t id, uint32_t ttl, int count = 1,
                    uint16_t rcode = 0, bool truncated = false) {
  Header header;
  header.id = id;
  header.flags = static_cast<uint16_t>(0x8180 | rcode | (truncated ? 0x0200 : 0));
  header.answers = static_cast<uint16_t>(count);
  Bytes out = HeaderBytes(header);
  PutName(&out, name);
  Put16(&out, 1);
  Put16(&out, 1);
  for (int i = 0; i < count; ++i) {
    PutRecord(&out, 1, ttl, {192, 0, 2, static_cast<uint8_t>(i + 1)});
  }
  return out;
}

// NXDOMAIN with an SOA in the authority section: ttl on the record, minimum in its data.
inline Bytes NegativeAnswer(absl::string_view name, uint16_t id, uint32_t ttl, uint32_t minimum) {
  Header header;
  header.id = id;
  header.flags = 0x8183;
  header.authority = 1;
  Bytes out = HeaderBytes(header);
  PutName(&out, name);
  Put16(&out, 1);
  Put16(&out, 1);

  Bytes soa;
  PutName(&soa, "ns.example");
  PutName(&soa, "hostmaster.example");
  for (uint32_t field : {1u, 3600u, 600u, 86400u, minimum}) Put32(&soa, field);
  PutRecord(&out, 6, ttl, soa);
  return out;
}

}  // namespace nehost::filter::testing
