// libFuzzer target for the DNS packet boundary: every byte string is read as a query and as an
// upstream answer, and whatever parses is then written back the way the server would (blocked
// answers, SERVFAIL, truncation, the cache), so that no input can read or write out of bounds
// or loop. Built with clang and -fsanitize=fuzzer when NEHOST_BUILD_FUZZERS is on; the
// dns_packet_fuzz_replay test runs the same entry point over the seed corpus under any
// compiler.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "extension/dns_cache.h"
#include "extension/dns_packet.h"

namespace {

using namespace nehost::filter;

void WriteAnswers(std::span<const uint8_t> packet, const dns::Query& query) {
  static std::vector<uint8_t> out(dns::kMaxMessage);
  dns::WriteBlockedAnswer(query, packet, dns::BlockedAnswer::kNxDomain, out);
  dns::WriteBlockedAnswer(query, packet, dns::BlockedAnswer::kSinkhole, out);
  dns::WriteEmptyAnswer(query, packet, dns::Rcode::kServFail, out);
}

void CacheRoundTrip(std::span<const uint8_t> packet, const dns::Response& response) {
  // The answer's own question, read as a query, is what the cache would be asked.
  std::vector<uint8_t> question(packet.begin(), packet.begin() + response.question_end);
  question[2] = 0x01;  // a query, recursion desired
  question[3] = 0;
  question[6] = question[7] = question[8] = question[9] = question[10] = question[11] = 0;
  dns::Query query;
  if (dns::ParseQuery(question, &query) != dns::ParseError::kNone) return;

  static DnsCache cache(16);
  static std::vector<uint8_t> out(dns::kMaxMessage);
  auto now = DnsCache::Clock::now();
  cache.Insert(query, packet, response, now);
  cache.Lookup(query, question, now + std::chrono::seconds(1), out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> packet(data, size);

  dns::Query query;
  if (dns::ParseQuery(packet, &query) == dns::ParseError::kNone) WriteAnswers(packet, query);

  dns::Response response;
  if (dns::ParseResponse(packet, &response) == dns::ParseError::kNone) {
    static std::vector<uint8_t> out(dns::kMaxMessage);
    dns::WriteTruncated(packet, response.question_end, out);
    CacheRoundTrip(packet, response);
  }
  return 0;
}
