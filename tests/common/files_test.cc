#include "common/files.h"

#include <sys/stat.h>

#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace nehost {
namespace {

using nehost::testing::TempDir;

TEST(WriteFileAtomically, ReplacesContentsWhole) {
  TempDir dir;
  std::string path = dir / "state.json";
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());

  absl::StatusOr<std::string> contents = ReadFile(path);
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(*contents, "second");
}

TEST(WriteFileAtomically, FailedWriteKeepsTheOldContents) {
  TempDir dir;
  std::string path = dir / "state.json";
  ASSERT_TRUE(WriteFileAtomically(path, "good").ok());

  // A folder where the temporary file must go makes the write fail before the rename.
  ASSERT_EQ(::mkdir((path + ".tmp." + std::to_string(::getpid())).c_str(), 0755), 0);
  EXPECT_FALSE(WriteFileAtomically(path, "bad").ok());
  EXPECT_EQ(*ReadFile(path), "good");
}

TEST(ReadFile, NamesTheMissingFile) {
  absl::StatusOr<std::string> contents = ReadFile("/nonexistent/nehost/file");
  ASSERT_FALSE(contents.ok());
  EXPECT_TRUE(absl::IsNotFound(contents.status()));
  EXPECT_NE(contents.status().message().find("/nonexistent/nehost/file"), std::string::npos);
}

TEST(Sha256File, MatchesKnownDigest) {
  TempDir dir;
  std::string path = dir / "abc";
  ASSERT_TRUE(WriteFileAtomically(path, "abc").ok());
  absl::StatusOr<std::string> digest = Sha256File(path);
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(*digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace nehost
