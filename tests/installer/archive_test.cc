#include "installer/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>
#include <functional>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "installer/package.h"
#include "installer/signature.h"
#include "tests/support/process.h"

namespace nehost::installer {
namespace {

namespace fs = std::filesystem;

using nehost::testing::ReadFileOrEmpty;
using nehost::testing::TempDir;
using nehost::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// One entry of a hand-made archive, as an attacker would write it.
struct TestEntry {
  std::string path;
  unsigned type = AE_IFREG;
  std::string contents = "x";
  std::string symlink = {};   // for AE_IFLNK
  std::string hardlink = {};  // makes the entry a hard link to this path
};

// Writes entries as a GNU tar archive with libarchive's own writer, as GNU tar would: names
// go in as raw bytes, whatever their encoding.
void WriteTar(const std::string& path, const std::vector<TestEntry>& entries) {
  struct archive* writer = archive_write_new();
  archive_write_set_format_gnutar(writer);
  ASSERT_EQ(archive_write_open_filename(writer, path.c_str()), ARCHIVE_OK);
  for (const TestEntry& test_entry : entries) {
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, test_entry.path.c_str());
    archive_entry_set_filetype(entry, test_entry.type);
    archive_entry_set_perm(entry, 0644);
    if (!test_entry.symlink.empty()) archive_entry_set_symlink(entry, test_entry.symlink.c_str());
    if (!test_entry.hardlink.empty()) {
      archive_entry_set_hardlink(entry, test_entry.hardlink.c_str());
    }
    if (test_entry.type == AE_IFCHR) archive_entry_set_rdev(entry, ::makedev(1, 3));
    const bool has_data = test_entry.type == AE_IFREG && test_entry.hardlink.empty();
    archive_entry_set_size(entry, has_data ? test_entry.contents.size() : 0);
    ASSERT_EQ(archive_write_header(writer, entry), ARCHIVE_OK) << archive_error_string(writer);
    if (has_data)
      archive_write_data(writer, test_entry.contents.data(), test_entry.contents.size());
    archive_entry_free(entry);
  }
  ASSERT_EQ(archive_write_close(writer), ARCHIVE_OK);
  archive_write_free(writer);
}

// Every path below root, as a sorted list: two snapshots differ when anything was written.
std::vector<std::string> Tree(const std::string& root) {
  std::vector<std::string> paths;
  if (!fs::exists(root)) return paths;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    paths.push_back(fs::relative(entry.path(), root).string());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

struct MaliciousArchive {
  std::string name;
  // Given the test's folder (the target is FOLDER/target), the entries.
  std::function<std::vector<TestEntry>(const std::string& folder)> entries;
  std::string says;
};

const ExtractLimits kSmallLimits{
    .max_entry_bytes = 1024, .max_total_bytes = 1500, .max_entries = 4};

const MaliciousArchive kMaliciousArchives[] = {
    {"AbsolutePath",
     [](const std::string& folder) {
       return std::vector<TestEntry>{{.path = folder + "/outside/pwned"}};
     },
     "path is absolute"},
    {"DotDot",
     [](const std::string&) { return std::vector<TestEntry>{{.path = "../outside/pwned"}}; },
     "path has a \"..\" component"},
    {"DotDotInside",
     [](const std::string&) {
       return std::vector<TestEntry>{{.path = "bin/x"}, {.path = "bin/../../outside/pwned"}};
     },
     "path has a \"..\" component"},
    {"SymlinkOutside",
     [](const std::string& folder) {
       return std::vector<TestEntry>{
           {.path = "bin", .type = AE_IFLNK, .contents = "", .symlink = folder + "/outside"},
           {.path = "bin/pwned"}};
     },
     "entry \"bin\": is a symbolic link; a package holds only files and folders"},
    {"SymlinkUpwards",
     [](const std::string&) {
       return std::vector<TestEntry>{
           {.path = "etc", .type = AE_IFLNK, .contents = "", .symlink = "../outside"},
           {.path = "etc/pwned"}};
     },
     "is a symbolic link"},
    {"HardlinkOutside",
     [](const std::string& folder) {
       return std::vector<TestEntry>{
           {.path = "bin/passwd", .hardlink = folder + "/outside/secret"}};
     },
     "is a hard link"},
    {"HardlinkInside",
     [](const std::string&) {
       return std::vector<TestEntry>{{.path = "bin/x"}, {.path = "bin/y", .hardlink = "bin/x"}};
     },
     "is a hard link"},
    {"DeviceFile",
     [](const std::string&) {
       return std::vector<TestEntry>{{.path = "dev/null", .type = AE_IFCHR, .contents = ""}};
     },
     "is a device file"},
    {"Fifo",
     [](const std::string&) {
       return std::vector<TestEntry>{{.path = "run/fifo", .type = AE_IFIFO, .contents = ""}};
     },
     "is a fifo"},
    {"EntryTooLarge",
     [](const std::string&) {
       return std::vector<TestEntry>{{.path = "big", .contents = std::string(2048, 'a')}};
     },
     "entry \"big\": is larger than 1024 bytes"},
    {"TotalTooLarge",
     [](const std::string&) {
       return std::vector<TestEntry>{{.path = "a", .contents = std::string(1000, 'a')},
                                     {.path = "b", .contents = std::string(1000, 'b')}};
     },
     "unpacks to more than 1500 bytes"},
    {"TooManyEntries",
     [](const std::string&) {
       std::vector<TestEntry> entries;
       for (int i = 0; i < 5; ++i) entries.push_back({.path = absl::StrCat("f", i)});
       return entries;
     },
     "holds more than 4 entries"},
    {"SamePathTwice",
     [](const std::string&) {
       return std::vector<TestEntry>{{.path = "bin/x"}, {.path = "./bin/x", .contents = "y"}};
     },
     "entry \"./bin/x\": appears twice"},
    {"NameNotUtf8",
     [](const std::string&) { return std::vector<TestEntry>{{.path = "bin/caf\xe9"}}; },
     "name is not UTF-8"},
    {"ControlCharacter",
     [](const std::string&) { return std::vector<TestEntry>{{.path = "bin/a\nb"}}; },
     "path holds a control character"},
};

class MaliciousArchiveTest : public ::testing::TestWithParam<MaliciousArchive> {
 protected:
  void SetUp() override {
    fs::create_directories(target_);
    WriteFileOrDie(dir_ / "outside/secret", "secret\n");
  }

  TempDir dir_;
  const std::string target_ = dir_ / "target";
  const std::string archive_ = dir_ / "evil.tar";
};

TEST_P(MaliciousArchiveTest, IsRefusedAndWritesNothingOutside) {
  WriteTar(archive_, GetParam().entries(dir_.path()));
  const std::vector<std::string> outside = Tree(dir_ / "outside");

  absl::Status extracted = ExtractPackageArchive(archive_, target_, kSmallLimits);
  ASSERT_FALSE(extracted.ok());
  EXPECT_THAT(extracted.message(), HasSubstr("archive " + archive_ + ": "));
  EXPECT_THAT(extracted.message(), HasSubstr(GetParam().says));
  EXPECT_EQ(Tree(dir_ / "outside"), outside);
  EXPECT_EQ(ReadFileOrEmpty(dir_ / "outside/secret"), "secret\n");
}

TEST_P(MaliciousArchiveTest, InstallWritesNothingAtAll) {
  WriteTar(archive_, GetParam().entries(dir_.path()));
  const std::string work = dir_ / "work";
  fs::create_directories(work);
  const SecretKey key = SecretKey::Generate().value();

  absl::StatusOr<InstallResult> installed =
      Install(archive_, dir_ / "prefix", Keyring::FromKeys({key.Public()}),
              {.limits = kSmallLimits, .work_dir = work});
  ASSERT_FALSE(installed.ok());
  EXPECT_THAT(installed.status().message(), HasSubstr(GetParam().says));
  EXPECT_FALSE(fs::exists(dir_ / "prefix"));
  EXPECT_THAT(Tree(work), IsEmpty());
  EXPECT_EQ(Tree(dir_ / "outside"), std::vector<std::string>{"secret"});
}

INSTANTIATE_TEST_SUITE_P(Extract, MaliciousArchiveTest, ::testing::ValuesIn(kMaliciousArchives),
                         [](const auto& info) { return info.param.name; });

// Installing from an archive: a good one installs; a bad one leaves the prefix as it was
// and its extraction folder gone.
class ArchiveInstallTest : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(work_); }

  std::string MakePackage(const std::string& version) {
    WriteFileOrDie(dir_ / ("src/tool-" + version), "#!/bin/sh\necho " + version + "\n");
    ::chmod((dir_ / ("src/tool-" + version)).c_str(), 0755);
    BuildSpec spec{.version = version,
                   .out_dir = dir_ / ("pkg-" + version),
                   .files = {{"bin/tool", dir_ / ("src/tool-" + version)}},
                   .services = {{"org.nehost.test", "bin/tool"}}};
    EXPECT_TRUE(BuildPackage(spec).ok());
    EXPECT_TRUE(SignPackage(spec.out_dir, key_).ok());
    return spec.out_dir;
  }

  std::string MakeArchive(const std::string& version, const std::string& extension) {
    const std::string package = MakePackage(version);
    const std::string archive = dir_ / ("nehost-" + version + extension);
    absl::Status written = WritePackageArchive(package, ReadManifest(package).value(), archive);
    EXPECT_TRUE(written.ok()) << written;
    return archive;
  }

  absl::StatusOr<InstallResult> InstallArchive(const std::string& archive) {
    return Install(archive, prefix_, keyring_, {.work_dir = work_});
  }

  void ExpectRefusedChangingNothing(const std::string& archive, const std::string& says) {
    ASSERT_TRUE(InstallArchive(MakeArchive("1.0", ".tar.gz")).ok());
    const std::vector<std::string> before = Tree(prefix_);
    absl::StatusOr<InstallResult> installed = InstallArchive(archive);
    ASSERT_FALSE(installed.ok());
    EXPECT_THAT(installed.status().message(), HasSubstr("install package " + archive + ": "));
    EXPECT_THAT(installed.status().message(), HasSubstr(says));
    EXPECT_EQ(Tree(prefix_), before);
    EXPECT_EQ(CurrentVersion(prefix_).value_or(""), "1.0");
    EXPECT_THAT(Tree(work_), IsEmpty());
  }

  TempDir dir_;
  const std::string prefix_ = dir_ / "prefix";
  const std::string work_ = dir_ / "work";
  const SecretKey key_ = SecretKey::Generate().value();
  const Keyring keyring_ = Keyring::FromKeys({key_.Public()});
};

TEST_F(ArchiveInstallTest, InstallsEachCompression) {
  for (const auto& [version, extension] :
       {std::pair{"1.0", ".tar"}, std::pair{"2.0", ".tar.gz"}, std::pair{"3.0", ".tar.xz"}}) {
    absl::StatusOr<InstallResult> installed = InstallArchive(MakeArchive(version, extension));
    ASSERT_TRUE(installed.ok()) << installed.status();
    EXPECT_EQ(installed->signed_by, key_.id());
    EXPECT_EQ(ReadFileOrEmpty(prefix_ + "/current/bin/tool"),
              absl::StrCat("#!/bin/sh\necho ", version, "\n"));
  }
  EXPECT_THAT(Tree(work_), IsEmpty());
}

TEST_F(ArchiveInstallTest, SamePackageMakesTheSameArchive) {
  const std::string package = MakePackage("1.0");
  const Manifest manifest = ReadManifest(package).value();
  ASSERT_TRUE(WritePackageArchive(package, manifest, dir_ / "a.tar").ok());
  ASSERT_TRUE(WritePackageArchive(package, manifest, dir_ / "b.tar").ok());
  EXPECT_EQ(ReadFileOrEmpty(dir_ / "a.tar"), ReadFileOrEmpty(dir_ / "b.tar"));

  // gzip's header has a field for the time of writing (bytes 4 to 7); it must stay empty, or
  // two archives a second apart differ.
  ASSERT_TRUE(WritePackageArchive(package, manifest, dir_ / "a.tar.gz").ok());
  const std::string gzip = ReadFileOrEmpty(dir_ / "a.tar.gz");
  ASSERT_GE(gzip.size(), 10u);
  EXPECT_EQ(gzip.substr(0, 2), "\x1f\x8b");
  EXPECT_EQ(gzip.substr(4, 4), std::string(4, '\0'));
}

TEST_F(ArchiveInstallTest, TruncatedArchiveIsRefused) {
  const std::string archive = MakeArchive("2.0", ".tar");
  const std::string bytes = ReadFileOrEmpty(archive);
  WriteFileOrDie(archive, bytes.substr(0, bytes.size() / 3));
  ExpectRefusedChangingNothing(archive, "cut short");
}

TEST_F(ArchiveInstallTest, TruncatedCompressedArchiveIsRefused) {
  const std::string archive = MakeArchive("2.0", ".tar.gz");
  const std::string bytes = ReadFileOrEmpty(archive);
  WriteFileOrDie(archive, bytes.substr(0, bytes.size() / 2));
  ExpectRefusedChangingNothing(archive, "archive " + archive + ": ");
}

TEST_F(ArchiveInstallTest, FileThatIsNoArchiveIsRefused) {
  WriteFileOrDie(dir_ / "junk.tar", "this is not a tar archive, only text\n");
  ExpectRefusedChangingNothing(dir_ / "junk.tar", "archive " + dir_ / "junk.tar" + ": ");
}

TEST_F(ArchiveInstallTest, MaliciousEntryIsRefused) {
  WriteTar(dir_ / "evil.tar", {{.path = "manifest.json"}, {.path = "../../pwned"}});
  ExpectRefusedChangingNothing(dir_ / "evil.tar", "path has a \"..\" component");
  EXPECT_FALSE(fs::exists(dir_ / "pwned"));
}

TEST_F(ArchiveInstallTest, ArchiveWithoutSignatureIsRefused) {
  const std::string package = MakePackage("2.0");
  fs::remove(package + "/manifest.json.sig");
  const std::string archive = dir_ / "unsigned.tar";
  ASSERT_TRUE(WritePackageArchive(package, ReadManifest(package).value(), archive).ok());
  ExpectRefusedChangingNothing(archive, "unsigned: no ");
}

TEST_F(ArchiveInstallTest, ArchiveWhoseManifestNamesAMissingFileIsRefused) {
  const std::string package = MakePackage("2.0");
  // A signed manifest, and an archive that leaves out one of its files.
  WriteTar(
      dir_ / "short.tar",
      {{.path = "manifest.json", .contents = ReadFileOrEmpty(package + "/manifest.json")},
       {.path = "manifest.json.sig", .contents = ReadFileOrEmpty(package + "/manifest.json.sig")}});
  ExpectRefusedChangingNothing(dir_ / "short.tar", "file \"bin/tool\": missing");
}

}  // namespace
}  // namespace nehost::installer
