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

TEST(MakeDirs, CreatesMissingFoldersWithTheModeAskedFor) {
  TempDir dir;
  const std::string path = dir / "a/b/c";
  const mode_t umask_before = ::umask(0077);
  absl::Status made = MakeDirs(path, 0755);
  ::umask(umask_before);
  ASSERT_TRUE(made.ok()) << made;

  for (const std::string& folder : {dir / "a", dir / "a/b", path}) {
    struct stat info {};
    ASSERT_EQ(::stat(folder.c_str(), &info), 0) << folder;
    EXPECT_TRUE(S_ISDIR(info.st_mode)) << folder;
    EXPECT_EQ(info.st_mode & 07777, 0755u) << folder;
  }
}

// Run in $HOME or /tmp (nehost-pkg keygen's default is the current folder), making a folder
// that is there already must not open it to everyone or take /tmp's sticky bit.
TEST(MakeDirs, LeavesTheModeOfAFolderThatExists) {
  TempDir dir;
  const std::string sticky = dir / "sticky";
  ASSERT_EQ(::mkdir(sticky.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(sticky.c_str(), 01777), 0);
  ASSERT_TRUE(MakeDirs(sticky, 0755).ok());
  ASSERT_TRUE(MakeDirs(sticky + "/", 0755).ok());

  struct stat info {};
  ASSERT_EQ(::stat(sticky.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 07777, 01777u);
}

TEST(MakeDirs, RefusesAPathThatIsAFile) {
  TempDir dir;
  const std::string file = dir / "file";
  ASSERT_TRUE(WriteFileAtomically(file, "x").ok());

  absl::Status made = MakeDirs(file, 0755);
  EXPECT_FALSE(made.ok());
  EXPECT_NE(made.message().find(file), std::string::npos) << made;
  EXPECT_FALSE(MakeDirs(file + "/below", 0755).ok());
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
