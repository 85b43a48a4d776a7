#include "common/utf8.h"

#include <cstdint>

namespace nehost {
namespace {

// How many continuation bytes follow a lead byte, or -1 when it cannot lead.
int ContinuationCount(uint8_t lead) {
  if (lead < 0x80) return 0;
  if (lead >= 0xc2 && lead <= 0xdf) return 1;
  if (lead >= 0xe0 && lead <= 0xef) return 2;
  if (lead >= 0xf0 && lead <= 0xf4) return 3;
  return -1;  // a continuation byte, an overlong 2-byte lead (c0, c1), or beyond U+10FFFF
}

// The range the byte after the lead must fall in: the narrower ranges rule out overlong
// forms (e0, f0), surrogates (ed) and code points beyond U+10FFFF (f4).
bool SecondByteFits(uint8_t lead, uint8_t second) {
  switch (lead) {
    case 0xe0:
      return second >= 0xa0 && second <= 0xbf;
    case 0xed:
      return second >= 0x80 && second <= 0x9f;
    case 0xf0:
      return second >= 0x90 && second <= 0xbf;
    case 0xf4:
      return second >= 0x80 && second <= 0x8f;
    default:
      return second >= 0x80 && second <= 0xbf;
  }
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const uint8_t lead = static_cast<uint8_t>(text[i]);
    const int count = ContinuationCount(lead);
    if (count < 0) return false;
    if (text.size() - i - 1 < static_cast<size_t>(count)) return false;  // cut short

    if (count > 0 && !SecondByteFits(lead, static_cast<uint8_t>(text[i + 1]))) return false;
    for (int k = 2; k <= count; ++k) {
      const uint8_t next = static_cast<uint8_t>(text[i + k]);
      if (next < 0x80 || next > 0xbf) return false;
    }
    i += static_cast<size_t>(count) + 1;
  }
  return true;
}

}  // namespace nehost
