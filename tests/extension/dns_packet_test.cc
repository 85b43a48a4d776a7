#include "extension/dns_packet.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/extension/dns_wire.h"

namespace nehost::filter::dns {
namespace {

using ::nehost::filter::testing::Answer;
using ::nehost::filter::testing::Bytes;
using ::nehost::filter::testing::Header;
using ::nehost::filter::testing::HeaderBytes;
using ::nehost::filter::testing::NegativeAnswer;
using ::nehost::filter::testing::Put16;
using ::nehost::filter::testing::PutName;
using ::nehost::filter::testing::Query;

TEST(ParseQuery, ReadsTheQuestionInLowerCase) {
  Bytes packet = Query("WWW.Example.COM", kTypeAaaa, 0xbeef);
  dns::Query query;

  ASSERT_EQ(ParseQuery(packet, &query), ParseError::kNone);
  EXPECT_EQ(query.id, 0xbeef);
  EXPECT_EQ(query.question.Name(), "www.example.com");
  EXPECT_EQ(query.question.type, kTypeAaaa);
  EXPECT_EQ(query.question.klass, kClassIn);
  EXPECT_EQ(query.question_end, packet.size());
  EXPECT_TRUE(query.recursion_desired);
  EXPECT_FALSE(query.has_edns);
  EXPECT_EQ(query.udp_payload, 512);
}

TEST(ParseQuery, ReadsEdnsPayloadAndDnssecOk) {
  Bytes packet = Query("example.com", kTypeA, 1, 4096);
  packet[packet.size() - 4] = 0x80;  // the DO bit of the OPT record's TTL
  dns::Query query;

  ASSERT_EQ(ParseQuery(packet, &query), ParseError::kNone);
  EXPECT_TRUE(query.has_edns);
  EXPECT_TRUE(query.dnssec_ok);
  EXPECT_EQ(query.udp_payload, 4096);
}

TEST(ParseQuery, AnEdnsPayloadBelow512CountsAs512) {
  dns::Query query;
  ASSERT_EQ(ParseQuery(Query("example.com", kTypeA, 1, 100), &query), ParseError::kNone);
  EXPECT_EQ(query.udp_payload, 512);
}

TEST(ParseQuery, ReadsTheRootAndNamesWithUnderscoresAndSlashes) {
  dns::Query query;
  ASSERT_EQ(ParseQuery(Query(""), &query), ParseError::kNone);
  EXPECT_EQ(query.question.Name(), "");
  ASSERT_EQ(ParseQuery(Query("_dmarc.example.com"), &query), ParseError::kNone);
  EXPECT_EQ(query.question.Name(), "_dmarc.example.com");
  ASSERT_EQ(ParseQuery(Query("0/25.2.0.192.in-addr.arpa"), &query), ParseError::kNone);
}

TEST(ParseQuery, RefusesShortPacketsAndAnswers) {
  dns::Query query;
  Bytes packet = Query("example.com");
  EXPECT_EQ(ParseQuery(std::span(packet).first(11), &query), ParseError::kTooShort);
  EXPECT_EQ(ParseQuery(std::span(packet).first(packet.size() - 1), &query), ParseError::kTooShort);
  EXPECT_EQ(ParseQuery(std::span(packet).first(16), &query), ParseError::kTooShort);
  EXPECT_EQ(ParseQuery(Answer("example.com", 1, 60), &query), ParseError::kNotAQuery);
}

TEST(ParseQuery, RefusesAnythingButOneQuestion) {
  Header header;
  header.questions = 2;
  Bytes packet = HeaderBytes(header);
  PutName(&packet, "example.com");
  Put16(&packet, 1);
  Put16(&packet, 1);
  dns::Query query;
  EXPECT_EQ(ParseQuery(packet, &query), ParseError::kQuestionCount);

  header.questions = 0;
  EXPECT_EQ(ParseQuery(HeaderBytes(header), &query), ParseError::kQuestionCount);
}

TEST(ParseQuery, ParsesOnlyTheHeaderOfOtherOpcodes) {
  Header header;
  header.flags = 2 << 11;  // STATUS
  header.questions = 0;
  dns::Query query;
  ASSERT_EQ(ParseQuery(HeaderBytes(header), &query), ParseError::kNone);
  EXPECT_EQ(query.opcode, 2);
}

TEST(ParseQuery, RefusesOversizedLabelsAndNames) {
  dns::Query query;
  Bytes long_label = HeaderBytes(Header{});
  long_label.push_back(64);  // 0x40: a label type RFC 1035 reserves
  long_label.insert(long_label.end(), 64, 'a');
  long_label.insert(long_label.end(), {0, 0, 1, 0, 1});
  EXPECT_EQ(ParseQuery(long_label, &query), ParseError::kBadLabelType);

  std::string name;
  for (int i = 0; i < 5; ++i) name += std::string(60, 'a') + ".";
  name.pop_back();  // 5 labels of 60: 305 octets on the wire
  EXPECT_EQ(ParseQuery(Query(name), &query), ParseError::kNameTooLong);

  std::string longest;
  for (int i = 0; i < 4; ++i) longest += std::string(i < 3 ? 63 : 61, 'a') + ".";
  longest.pop_back();  // 253 characters: 255 octets, the most RFC 1035 allows
  ASSERT_EQ(ParseQuery(Query(longest), &query), ParseError::kNone);
  EXPECT_EQ(query.question.Name(), longest);
}

TEST(ParseQuery, RefusesCompressionPointersInTheQuestion) {
  Bytes packet = HeaderBytes(Header{});
  Put16(&packet, 0xc00c);  // points at itself
  Put16(&packet, 1);
  Put16(&packet, 1);
  dns::Query query;
  EXPECT_EQ(ParseQuery(packet, &query), ParseError::kBadPointer);
}

TEST(ParseQuery, RefusesPointerLoopsInRecords) {
  // An additional record whose owner name points at itself, then at each other.
  Header header;
  header.additional = 1;
  Bytes packet = HeaderBytes(header);
  PutName(&packet, "example.com");
  Put16(&packet, 1);
  Put16(&packet, 1);
  size_t self = packet.size();
  Put16(&packet, static_cast<uint16_t>(0xc000 | self));
  packet.insert(packet.end(), 10, 0);
  dns::Query query;
  EXPECT_EQ(ParseQuery(packet, &query), ParseError::kBadPointer);

  Bytes forward = HeaderBytes(header);
  PutName(&forward, "example.com");
  Put16(&forward, 1);
  Put16(&forward, 1);
  Put16(&forward, static_cast<uint16_t>(0xc000 | (forward.size() + 2)));
  Put16(&forward, static_cast<uint16_t>(0xc000 | (forward.size() - 2)));
  forward.insert(forward.end(), 10, 0);
  EXPECT_EQ(ParseQuery(forward, &query), ParseError::kBadPointer);
}

TEST(ParseQuery, RefusesDotsAndControlBytesInLabels) {
  Bytes packet = HeaderBytes(Header{});
  packet.insert(packet.end(), {7, 'a', 'd', 's', '.', 'c', 'o', 'm', 0, 0, 1, 0, 1});
  dns::Query query;
  EXPECT_EQ(ParseQuery(packet, &query), ParseError::kBadCharacter);
  packet[13] = 0;
  EXPECT_EQ(ParseQuery(packet, &query), ParseError::kBadCharacter);
}

TEST(ParseQuery, RefusesTwoOptRecords) {
  Bytes packet = Query("example.com", 1, 1, 1232);
  packet[11] = 2;
  testing::PutOpt(&packet, 1232);
  dns::Query query;
  EXPECT_EQ(ParseQuery(packet, &query), ParseError::kBadOpt);
}

TEST(ParseResponse, ReadsIdQuestionAndTheLeastTtl) {
  Bytes packet = Answer("Example.com", 0x4321, 300, 3);
  packet[packet.size() - 8] = 0;  // the last record's TTL: 300 -> 44
  Response response;

  ASSERT_EQ(ParseResponse(packet, &response), ParseError::kNone);
  EXPECT_EQ(response.id, 0x4321);
  EXPECT_EQ(response.question.Name(), "example.com");
  EXPECT_EQ(response.rcode, Rcode::kNoError);
  EXPECT_EQ(response.cache_ttl, 44);
  ASSERT_EQ(response.ttl_count, 3u);
  EXPECT_EQ(ReadU32(&packet[response.ttl_offsets[0]]), 300u);
}

TEST(ParseResponse, NegativeAnswerIsCachedForTheSoaMinimumAtMost) {
  Response response;
  ASSERT_EQ(ParseResponse(NegativeAnswer("gone.example", 1, 3600, 120), &response),
            ParseError::kNone);
  EXPECT_EQ(response.rcode, Rcode::kNxDomain);
  EXPECT_EQ(response.cache_ttl, 120);

  ASSERT_EQ(ParseResponse(NegativeAnswer("gone.example", 1, 30, 120), &response),
            ParseError::kNone);
  EXPECT_EQ(response.cache_ttl, 30);
}

TEST(ParseResponse, TruncatedAndFailedAnswersAreNotCached) {
  Response response;
  ASSERT_EQ(ParseResponse(Answer("example.com", 1, 60, 1, 0, true), &response), ParseError::kNone);
  EXPECT_TRUE(response.truncated);
  EXPECT_EQ(response.cache_ttl, -1);
  ASSERT_EQ(ParseResponse(Answer("example.com", 1, 60, 0, 2), &response), ParseError::kNone);
  EXPECT_EQ(response.rcode, Rcode::kServFail);
  EXPECT_EQ(response.cache_ttl, -1);
}

TEST(ParseResponse, RefusesRecordsThatRunPastTheEnd) {
  Bytes packet = Answer("example.com", 1, 60, 2);
  Response response;
  EXPECT_EQ(ParseResponse(std::span(packet).first(packet.size() - 1), &response),
            ParseError::kTruncatedRecord);
  packet[7] = 3;  // claims a third answer that is not there
  EXPECT_EQ(ParseResponse(packet, &response), ParseError::kTooShort);
  EXPECT_EQ(ParseResponse(Query("example.com"), &response), ParseError::kNotAResponse);
}

TEST(WriteBlockedAnswer, NxDomainRepeatsTheQuestionAndEdns) {
  Bytes packet = Query("Ads.Example.com", kTypeA, 77, 1232);
  dns::Query query;
  ASSERT_EQ(ParseQuery(packet, &query), ParseError::kNone);
  std::vector<uint8_t> out(query.question_end + 64);

  size_t length = WriteBlockedAnswer(query, packet, BlockedAnswer::kNxDomain, out);
  Response response;
  ASSERT_EQ(ParseResponse(std::span(out).first(length), &response), ParseError::kNone);
  EXPECT_EQ(response.id, 77);
  EXPECT_EQ(response.rcode, Rcode::kNxDomain);
  EXPECT_EQ(response.question.Name(), "ads.example.com");
  EXPECT_EQ(out[13], 'A');          // the client's own spelling
  EXPECT_EQ(ReadU16(&out[10]), 1);  // the OPT record
}

TEST(WriteBlockedAnswer, SinkholeAnswersZeroAddresses) {
  for (uint16_t type : {kTypeA, kTypeAaaa}) {
    Bytes packet = Query("ads.example.com", type);
    dns::Query query;
    ASSERT_EQ(ParseQuery(packet, &query), ParseError::kNone);
    std::vector<uint8_t> out(query.question_end + 64);

    size_t length = WriteBlockedAnswer(query, packet, BlockedAnswer::kSinkhole, out);
    Response response;
    ASSERT_EQ(ParseResponse(std::span(out).first(length), &response), ParseError::kNone);
    EXPECT_EQ(response.rcode, Rcode::kNoError);
    EXPECT_EQ(ReadU16(&out[6]), 1);
    EXPECT_EQ(length, packet.size() + 12 + (type == kTypeA ? 4 : 16));
    EXPECT_EQ(response.cache_ttl, kBlockedTtl);
  }
}

TEST(WriteBlockedAnswer, SinkholeOfOtherTypesIsAnEmptyAnswer) {
  Bytes packet = Query("ads.example.com", 16);  // TXT
  dns::Query query;
  ASSERT_EQ(ParseQuery(packet, &query), ParseError::kNone);
  std::vector<uint8_t> out(query.question_end + 64);

  size_t length = WriteBlockedAnswer(query, packet, BlockedAnswer::kSinkhole, out);
  EXPECT_EQ(length, packet.size());
  EXPECT_EQ(ReadU16(&out[6]), 0);
  EXPECT_EQ(out[3] & 0xf, 0);
}

TEST(WriteTruncated, KeepsHeaderAndQuestionWithTcSet) {
  Bytes answer = Answer("example.com", 5, 60, 40);
  Response parsed;
  ASSERT_EQ(ParseResponse(answer, &parsed), ParseError::kNone);
  std::vector<uint8_t> out(answer.size());

  size_t length = WriteTruncated(answer, parsed.question_end, out);
  Response response;
  ASSERT_EQ(ParseResponse(std::span(out).first(length), &response), ParseError::kNone);
  EXPECT_TRUE(response.truncated);
  EXPECT_EQ(response.id, 5);
  EXPECT_EQ(ReadU16(&out[6]), 0);
  EXPECT_EQ(length, parsed.question_end);
}

}  // namespace
}  // namespace nehost::filter::dns
