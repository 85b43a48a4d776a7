#include "common/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace nehost {
namespace {

TEST(IsValidUtf8, AcceptsWellFormedText) {
  for (const std::string text : {"", "org.nehost.filter", "caf\xc3\xa9", "\xe2\x82\xac 5",
                                 "\xf0\x9f\x98\x80", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"}) {
    EXPECT_TRUE(IsValidUtf8(text)) << text;
  }
}

TEST(IsValidUtf8, RefusesWhatIsNotUtf8) {
  const std::string bad[] = {
      "caf\xe9",                     // Latin-1
      "\xc3",                        // cut short
      "\xe2\x82",                    // cut short
      "\x80",                        // a lone continuation byte
      "\xc0\xaf",                    // overlong '/'
      "\xe0\x80\xaf",                // overlong '/'
      "\xed\xa0\x80",                // a surrogate
      "\xf4\x90\x80\x80",            // beyond U+10FFFF
      "\xff",                        // never valid
      std::string("ok\xc3\x28", 4),  // a lead byte without its continuation
  };
  for (const std::string& text : bad) EXPECT_FALSE(IsValidUtf8(text)) << text;
}

}  // namespace
}  // namespace nehost
