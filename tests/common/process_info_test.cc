#include "common/process_info.h"

#include <unistd.h>

#include "gtest/gtest.h"

namespace nehost {
namespace {

TEST(ParseStartTimeFromStat, ReadsFieldTwentyTwoPastAnAwkwardName) {
  // The command name holds spaces and a ')', as a hostile process may choose.
  std::string stat =
      "1234 (evil) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 "
      "1000 100 18446744073709551615";
  absl::StatusOr<uint64_t> start = ParseStartTimeFromStat(stat);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(*start, 987654u);
}

TEST(ParseStartTimeFromStat, RejectsTruncatedStat) {
  EXPECT_FALSE(ParseStartTimeFromStat("1234 (x) S 1 2 3").ok());
  EXPECT_FALSE(ParseStartTimeFromStat("garbage").ok());
}

TEST(ReadProcessStartTime, IsStableForOneProcess) {
  absl::StatusOr<uint64_t> first = ReadProcessStartTime(::getpid());
  absl::StatusOr<uint64_t> second = ReadProcessStartTime(::getpid());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, *second);
  EXPECT_TRUE(absl::IsNotFound(ReadProcessStartTime(0x3fffffff).status()));
}

}  // namespace
}  // namespace nehost
