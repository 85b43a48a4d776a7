// dns_parse_bench: what the data plane needs from a packet, read by nehost's own parser
// (extension/dns_packet.h) and by ldns from Debian, on the same packets in the same run.
//
//   query   the question's name in lower case, its type, and the EDNS0 payload size
//   answer  id, rcode, the question, and the least TTL of the records (what the cache needs)
//
// Prints nanoseconds per packet for each. Rounds alternate between the two parsers.
#include <ldns/ldns.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "extension/dns_packet.h"

namespace {

using Bytes = std::vector<uint8_t>;

void Put16(Bytes* out, uint16_t value) {
  out->push_back(static_cast<uint8_t>(value >> 8));
  out->push_back(static_cast<uint8_t>(value));
}

void PutName(Bytes* out, const std::string& name) {
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    out->push_back(static_cast<uint8_t>(label.size()));
    out->insert(out->end(), label.begin(), label.end());
  }
  out->push_back(0);
}

Bytes QueryPacket(const std::string& name, uint16_t type, bool edns) {
  Bytes out = {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, static_cast<uint8_t>(edns ? 1 : 0)};
  PutName(&out, name);
  Put16(&out, type);
  Put16(&out, 1);
  if (edns) out.insert(out.end(), {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0});
  return out;
}

// A typical upstream answer: a CNAME and addresses, names compressed.
Bytes AnswerPacket(const std::string& name, int addresses) {
  Bytes out = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, static_cast<uint8_t>(addresses + 1), 0, 0, 0, 0};
  PutName(&out, name);
  Put16(&out, 1);
  Put16(&out, 1);
  out.insert(out.end(),
             {0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0x0e, 0x10, 0, 6, 3, 'c', 'd', 'n', 0xc0, 0x0c});
  uint8_t cname = static_cast<uint8_t>(12 + name.size() + 2 + 4 + 12);
  for (int i = 0; i < addresses; ++i) {
    out.insert(out.end(), {0xc0, cname, 0, 1, 0, 1, 0, 0, 0x01, static_cast<uint8_t>(0x2c + i), 0,
                           4, 192, 0, 2, static_cast<uint8_t>(i + 1)});
  }
  return out;
}

struct Packets {
  std::vector<Bytes> queries;
  std::vector<Bytes> answers;
};

Packets MakePackets() {
  Packets packets;
  for (int i = 0; i < 1000; ++i) {
    std::string name = absl::StrCat("Host", i, ".Tracker", i % 37, ".example.com");
    packets.queries.push_back(QueryPacket(name, i % 3 == 0 ? 28 : 1, i % 2 == 0));
    packets.answers.push_back(AnswerPacket(name, 1 + i % 4));
  }
  return packets;
}

// nehost's parser: the question in place, lower-cased into a fixed buffer.
uint64_t OwnQueries(const Packets& packets) {
  uint64_t sink = 0;
  for (const Bytes& packet : packets.queries) {
    nehost::filter::dns::Query query;
    if (nehost::filter::dns::ParseQuery(packet, &query) != nehost::filter::dns::ParseError::kNone) {
      std::abort();
    }
    sink += query.question.name_length + query.question.type + query.udp_payload;
  }
  return sink;
}

uint64_t OwnAnswers(const Packets& packets) {
  uint64_t sink = 0;
  for (const Bytes& packet : packets.answers) {
    nehost::filter::dns::Response response;
    if (nehost::filter::dns::ParseResponse(packet, &response) !=
        nehost::filter::dns::ParseError::kNone) {
      std::abort();
    }
    sink += response.id + static_cast<uint64_t>(response.cache_ttl) + response.question.type;
  }
  return sink;
}

// ldns: the whole packet into ldns objects, then the same facts out of them.
uint64_t LdnsQueries(const Packets& packets) {
  uint64_t sink = 0;
  for (const Bytes& packet : packets.queries) {
    ldns_pkt* parsed = nullptr;
    if (ldns_wire2pkt(&parsed, packet.data(), packet.size()) != LDNS_STATUS_OK) std::abort();
    ldns_rr* question = ldns_rr_list_rr(ldns_pkt_question(parsed), 0);
    ldns_rdf* owner = ldns_rdf_clone(ldns_rr_owner(question));
    ldns_dname2canonical(owner);
    char* text = ldns_rdf2str(owner);
    sink += std::strlen(text) + ldns_rr_get_type(question) + ldns_pkt_edns_udp_size(parsed);
    std::free(text);
    ldns_rdf_deep_free(owner);
    ldns_pkt_free(parsed);
  }
  return sink;
}

uint64_t LdnsAnswers(const Packets& packets) {
  uint64_t sink = 0;
  for (const Bytes& packet : packets.answers) {
    ldns_pkt* parsed = nullptr;
    if (ldns_wire2pkt(&parsed, packet.data(), packet.size()) != LDNS_STATUS_OK) std::abort();
    uint32_t least = UINT32_MAX;
    ldns_rr_list* answers = ldns_pkt_answer(parsed);
    for (size_t i = 0; i < ldns_rr_list_rr_count(answers); ++i) {
      least = std::min(least, ldns_rr_ttl(ldns_rr_list_rr(answers, i)));
    }
    sink += ldns_pkt_id(parsed) + least + ldns_pkt_get_rcode(parsed);
    ldns_pkt_free(parsed);
  }
  return sink;
}

// Nanoseconds per packet over repeats passes.
template <typename Parse>
double Time(Parse parse, const Packets& packets, size_t count, int repeats) {
  uint64_t sink = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) sink += parse(packets);
  auto elapsed = std::chrono::steady_clock::now() - start;
  if (sink == 42) std::puts("");  // keeps the work from being optimised away
  return std::chrono::duration<double, std::nano>(elapsed).count() /
         (static_cast<double>(count) * repeats);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  int repeats = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--rounds") (void)absl::SimpleAtoi(argv[i + 1], &rounds);
    if (flag == "--repeats") (void)absl::SimpleAtoi(argv[i + 1], &repeats);
  }

  Packets packets = MakePackets();
  std::printf("%zu queries and %zu answers, %d passes a round; ns per packet\n",
              packets.queries.size(), packets.answers.size(), repeats);
  std::printf("%-6s %12s %12s %12s %12s\n", "round", "own_query", "ldns_query", "own_answer",
              "ldns_answer");
  for (int round = 1; round <= rounds; ++round) {
    double own_query = Time(OwnQueries, packets, packets.queries.size(), repeats);
    double ldns_query = Time(LdnsQueries, packets, packets.queries.size(), repeats);
    double own_answer = Time(OwnAnswers, packets, packets.answers.size(), repeats);
    double ldns_answer = Time(LdnsAnswers, packets, packets.answers.size(), repeats);
    std::printf("%-6d %12.1f %12.1f %12.1f %12.1f\n", round, own_query, ldns_query, own_answer,
                ldns_answer);
  }
  return 0;
}
