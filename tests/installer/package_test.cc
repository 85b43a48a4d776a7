#include "installer/package.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "installer/in_use.h"
#include "installer/signature.h"
#include "tests/support/process.h"

namespace nehost::installer {
namespace {

namespace fs = std::filesystem;

using nehost::testing::ReadFileOrEmpty;
using nehost::testing::Subprocess;
using nehost::testing::TempDir;
using nehost::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kService[] = "org.nehost.test";

// Every entry below root with its type, mode, and contents or link target: two snapshots
// differ when anything under root changed.
std::vector<std::string> Snapshot(const std::string& root) {
  if (!fs::exists(fs::symlink_status(root))) return {"(no " + root + ")"};
  std::vector<std::string> entries;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const std::string path = fs::relative(entry.path(), root).string();
    const auto status = fs::symlink_status(entry.path());
    const int mode = static_cast<int>(status.permissions());
    if (fs::is_symlink(status)) {
      entries.push_back(absl::StrCat(path, " -> ", fs::read_symlink(entry.path()).string()));
    } else if (fs::is_directory(status)) {
      entries.push_back(absl::StrCat(path, "/ ", mode));
    } else {
      entries.push_back(absl::StrCat(path, " ", mode, " ", ReadFileOrEmpty(entry.path())));
    }
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

std::vector<std::string> Versions(const std::string& prefix) {
  absl::StatusOr<std::vector<InstalledVersion>> versions = ListVersions(prefix);
  EXPECT_TRUE(versions.ok()) << versions.status();
  std::vector<std::string> names;
  for (const InstalledVersion& version : versions.value_or(std::vector<InstalledVersion>{})) {
    names.push_back(version.version);
  }
  return names;
}

class PackageTest : public ::testing::Test {
 protected:
  // A package with a script stamped with its version, a data file, and any extra files.
  std::string MakePackage(const std::string& version,
                          std::vector<std::pair<std::string, std::string>> extra_files = {}) {
    const std::string sources = dir_ / ("src-" + version);
    WriteFileOrDie(sources + "/tool", "#!/bin/sh\necho " + version + "\n");
    ::chmod((sources + "/tool").c_str(), 0755);
    WriteFileOrDie(sources + "/rules.txt", "rules of " + version + "\n");

    BuildSpec spec{
        .version = version,
        .out_dir = dir_ / ("pkg-" + version),
        .files = {{"bin/tool", sources + "/tool"}, {"etc/rules.txt", sources + "/rules.txt"}},
        .services = {{kService, "bin/tool"}}};
    spec.files.insert(spec.files.end(), extra_files.begin(), extra_files.end());
    absl::StatusOr<Manifest> built = BuildPackage(spec);
    EXPECT_TRUE(built.ok()) << built.status();
    EXPECT_TRUE(SignPackage(spec.out_dir, key_).ok());
    return spec.out_dir;
  }

  // A package whose bin/sleep is a copy of /bin/sleep, to run from the version folder.
  std::string MakeSleepPackage(const std::string& version) {
    return MakePackage(version, {{"bin/sleep", "/bin/sleep"}});
  }

  void InstallOrFail(const std::string& package) {
    absl::StatusOr<InstallResult> installed = Install(package, prefix_, keyring_);
    ASSERT_TRUE(installed.ok()) << installed.status();
  }

  std::string Current() { return CurrentVersion(prefix_).value_or("(none)"); }

  TempDir dir_;
  const std::string prefix_ = dir_ / "prefix";
  const SecretKey key_ = SecretKey::Generate().value();
  const Keyring keyring_ = Keyring::FromKeys({key_.Public()});
};

TEST_F(PackageTest, BuildRecordsHashesAndExecuteBits) {
  const std::string package = MakePackage("1.0");
  absl::StatusOr<Manifest> manifest = ReadManifest(package);
  ASSERT_TRUE(manifest.ok()) << manifest.status();

  EXPECT_EQ(manifest->version(), "1.0");
  ASSERT_EQ(manifest->files_size(), 2);
  EXPECT_EQ(manifest->files(0).path(), "bin/tool");
  EXPECT_EQ(manifest->files(0).mode(), 0755u);
  EXPECT_EQ(manifest->files(0).sha256(), *Sha256File(package + "/bin/tool"));
  EXPECT_EQ(manifest->files(1).mode(), 0644u);
  EXPECT_EQ(manifest->services(0).executable(), "bin/tool");
}

TEST_F(PackageTest, BuildRefusesAFolderThatIsNotEmpty) {
  WriteFileOrDie(dir_ / "out/stale", "x");
  WriteFileOrDie(dir_ / "source", "x");
  BuildSpec spec{.version = "1.0", .out_dir = dir_ / "out", .files = {{"a", dir_ / "source"}}};

  absl::StatusOr<Manifest> built = BuildPackage(spec);
  ASSERT_FALSE(built.ok());
  EXPECT_THAT(built.status().message(), HasSubstr("is not empty"));
}

TEST_F(PackageTest, BuildRefusesAServiceWhoseExecutableIsNotAFile) {
  WriteFileOrDie(dir_ / "source", "x");
  BuildSpec spec{.version = "1.0",
                 .out_dir = dir_ / "out",
                 .files = {{"a", dir_ / "source"}},
                 .services = {{kService, "bin/missing"}}};

  absl::StatusOr<Manifest> built = BuildPackage(spec);
  ASSERT_FALSE(built.ok());
  EXPECT_THAT(built.status().message(), HasSubstr("\"bin/missing\" is not among the files"));
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

TEST_F(PackageTest, InstallMakesTheVersionCurrent) {
  InstallOrFail(MakePackage("1.0"));

  EXPECT_EQ(Current(), "1.0");
  EXPECT_EQ(fs::read_symlink(prefix_ + "/current"), "versions/1.0");
  const std::string folder = VersionDir(prefix_, "1.0");
  EXPECT_EQ(ReadFileOrEmpty(prefix_ + "/current/bin/tool"), "#!/bin/sh\necho 1.0\n");
  EXPECT_EQ(fs::status(folder + "/bin/tool").permissions() & fs::perms::all,
            static_cast<fs::perms>(0755));
  EXPECT_TRUE(fs::exists(folder + "/manifest.json"));
  EXPECT_TRUE(VerifyFiles(folder, *ReadManifest(folder)).ok());
}

TEST_F(PackageTest, SecondInstallSwitchesCurrentAndKeepsTheFirst) {
  InstallOrFail(MakePackage("1.0"));
  absl::StatusOr<InstallResult> second = Install(MakePackage("2.0"), prefix_, keyring_);
  ASSERT_TRUE(second.ok()) << second.status();

  EXPECT_EQ(second->previous, "1.0");
  EXPECT_EQ(Current(), "2.0");
  EXPECT_THAT(Versions(prefix_), ElementsAre("2.0", "1.0"));
  EXPECT_EQ(ReadFileOrEmpty(VersionDir(prefix_, "1.0") + "/etc/rules.txt"), "rules of 1.0\n");
}

TEST_F(PackageTest, InstallingTheSameVersionAgainCopiesNothingAndMakesItCurrent) {
  const std::string first = MakePackage("1.0");
  InstallOrFail(first);
  InstallOrFail(MakePackage("2.0"));
  const std::string installed_at = ReadFileOrEmpty(VersionDir(prefix_, "1.0") + "/installed_at");

  absl::StatusOr<InstallResult> again = Install(first, prefix_, keyring_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->already_installed);
  EXPECT_EQ(Current(), "1.0");
  EXPECT_EQ(ReadFileOrEmpty(VersionDir(prefix_, "1.0") + "/installed_at"), installed_at);
}

TEST_F(PackageTest, InstallRefusesAVersionInstalledWithOtherContents) {
  InstallOrFail(MakePackage("1.0"));
  const std::vector<std::string> before = Snapshot(prefix_);

  // Same version, other sources.
  WriteFileOrDie(dir_ / "other", "other contents");
  BuildSpec spec{.version = "1.0", .out_dir = dir_ / "other-pkg", .files = {{"a", dir_ / "other"}}};
  ASSERT_TRUE(BuildPackage(spec).ok());
  ASSERT_TRUE(SignPackage(spec.out_dir, key_).ok());

  absl::StatusOr<InstallResult> installed = Install(spec.out_dir, prefix_, keyring_);
  ASSERT_FALSE(installed.ok());
  EXPECT_TRUE(absl::IsAlreadyExists(installed.status())) << installed.status();
  EXPECT_THAT(installed.status().message(), HasSubstr("already installed with other contents"));
  EXPECT_EQ(Snapshot(prefix_), before);
}

// A package damaged in one way, and what the error must say about it.
struct BadPackage {
  std::string name;
  std::function<void(const std::string& package)> damage;
  std::string says;
};

void ReplaceInManifest(const std::string& package, const std::string& from, const std::string& to) {
  std::string json = ReadFileOrEmpty(package + "/manifest.json");
  const size_t at = json.find(from);
  ASSERT_NE(at, std::string::npos) << from << " not in " << json;
  WriteFileOrDie(package + "/manifest.json", json.replace(at, from.size(), to));
}

const BadPackage kBadPackages[] = {
    {"HashMismatch",
     [](const std::string& p) { WriteFileOrDie(p + "/etc/rules.txt", "tampered\n"); },
     "file \"etc/rules.txt\": sha256 mismatch"},
    {"MissingFile", [](const std::string& p) { fs::remove(p + "/bin/tool"); },
     "file \"bin/tool\": missing"},
    {"TruncatedManifest",
     [](const std::string& p) {
       const std::string json = ReadFileOrEmpty(p + "/manifest.json");
       WriteFileOrDie(p + "/manifest.json", json.substr(0, json.size() / 2));
     },
     "manifest.json: not a manifest in JSON form"},
    {"CorruptManifest",
     [](const std::string& p) { WriteFileOrDie(p + "/manifest.json", std::string("\0\xff{[", 4)); },
     "manifest.json: not a manifest in JSON form"},
    {"EmptyManifest", [](const std::string& p) { WriteFileOrDie(p + "/manifest.json", "{}"); },
     "manifest.json: version is empty"},
    {"MissingManifest", [](const std::string& p) { fs::remove(p + "/manifest.json"); },
     "manifest.json: No such file or directory"},
    {"PathWithDotDot",
     [](const std::string& p) { ReplaceInManifest(p, "\"etc/rules.txt\"", "\"../rules.txt\""); },
     "file \"../rules.txt\": path has a \"..\" component"},
    {"AbsolutePath",
     [](const std::string& p) { ReplaceInManifest(p, "\"etc/rules.txt\"", "\"/etc/rules.txt\""); },
     "file \"/etc/rules.txt\": path is absolute"},
    {"UnsafeVersion",
     [](const std::string& p) {
       ReplaceInManifest(p, "\"version\": \"3.0\"", "\"version\": \"../3\"");
     },
     "version \"../3\" holds a character other than"},
    {"DuplicatePath",
     [](const std::string& p) { ReplaceInManifest(p, "\"etc/rules.txt\"", "\"bin/tool\""); },
     "file \"bin/tool\": listed twice"},
    {"PathNotUtf8",
     [](const std::string& p) {
       fs::rename(p + "/etc/rules.txt", p + "/etc/r\xe9gles.txt");
       ReplaceInManifest(p, "\"etc/rules.txt\"", "\"etc/r\xe9gles.txt\"");
     },
     "manifest.json: not a manifest in JSON form"},
};

// Damaged before it was signed, as a broken publisher would: the checks after the
// signature's are the ones tried. A manifest that is missing cannot be signed.
class BadPackageTest : public PackageTest, public ::testing::WithParamInterface<BadPackage> {
 protected:
  std::string DamagedPackage() {
    const std::string package = MakePackage("3.0");
    GetParam().damage(package);
    if (fs::exists(package + "/manifest.json")) {
      WriteFileOrDie(package + "/manifest.json.sig",
                     key_.SignManifest(ReadFileOrEmpty(package + "/manifest.json")));
    }
    return package;
  }
};

TEST_P(BadPackageTest, FailsNamingTheCauseAndChangesNothing) {
  InstallOrFail(MakePackage("1.0"));
  const std::string package = DamagedPackage();
  const std::vector<std::string> before = Snapshot(prefix_);

  absl::StatusOr<InstallResult> installed = Install(package, prefix_, keyring_);
  ASSERT_FALSE(installed.ok());
  EXPECT_THAT(installed.status().message(), HasSubstr("install package " + package));
  EXPECT_THAT(installed.status().message(), HasSubstr(GetParam().says));
  EXPECT_EQ(Snapshot(prefix_), before);
  EXPECT_EQ(Current(), "1.0");
}

TEST_P(BadPackageTest, FirstInstallCreatesNoPrefix) {
  const std::string package = DamagedPackage();

  EXPECT_FALSE(Install(package, prefix_, keyring_).ok());
  EXPECT_FALSE(fs::exists(prefix_));
}

INSTANTIATE_TEST_SUITE_P(Install, BadPackageTest, ::testing::ValuesIn(kBadPackages),
                         [](const auto& info) { return info.param.name; });

// Signatures: whatever is wrong, the error says it and the prefix stays as it was.
class SignatureInstallTest : public PackageTest {
 protected:
  void ExpectRefused(const std::string& package, absl::StatusCode code, const std::string& says,
                     const Keyring& keyring) {
    InstallOrFail(MakePackage("1.0"));
    const std::vector<std::string> before = Snapshot(prefix_);
    absl::StatusOr<InstallResult> installed = Install(package, prefix_, keyring);
    ASSERT_FALSE(installed.ok());
    EXPECT_EQ(installed.status().code(), code) << installed.status();
    EXPECT_THAT(installed.status().message(), HasSubstr(says));
    EXPECT_EQ(Snapshot(prefix_), before);
    EXPECT_EQ(Current(), "1.0");
  }
};

TEST_F(SignatureInstallTest, InstallRecordsTheSigningKeyAndKeepsTheSignature) {
  absl::StatusOr<InstallResult> installed = Install(MakePackage("1.0"), prefix_, keyring_);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->signed_by, key_.id());
  absl::StatusOr<SignedManifest> kept = ReadSignedManifest(prefix_ + "/versions/1.0", keyring_);
  EXPECT_TRUE(kept.ok()) << kept.status();
}

TEST_F(SignatureInstallTest, UnsignedPackageIsRefused) {
  const std::string package = MakePackage("2.0");
  fs::remove(package + "/manifest.json.sig");
  ExpectRefused(package, absl::StatusCode::kFailedPrecondition, "unsigned: no ", keyring_);
}

TEST_F(SignatureInstallTest, ManifestChangedAfterSigningIsRefused) {
  const std::string package = MakePackage("2.0");
  // A file swapped together with its hash in the manifest: only the signature can tell.
  WriteFileOrDie(package + "/etc/rules.txt", "tampered\n");
  ReplaceInManifest(package, Sha256File(dir_ / "src-2.0/rules.txt").value(),
                    Sha256File(package + "/etc/rules.txt").value());
  ExpectRefused(package, absl::StatusCode::kUnauthenticated,
                absl::StrCat("the signature by trusted key ", key_.id()), keyring_);
}

TEST_F(SignatureInstallTest, WrongSignatureIsRefused) {
  const std::string package = MakePackage("2.0");
  std::string signature = ReadFileOrEmpty(package + "/manifest.json.sig");
  // One base64 character in the middle changed, where every bit counts: a signature, but not
  // this one.
  char& middle = signature[signature.rfind(' ') + 20];
  middle = middle == 'A' ? 'B' : 'A';
  WriteFileOrDie(package + "/manifest.json.sig", signature);
  ExpectRefused(package, absl::StatusCode::kUnauthenticated, "does not match the manifest",
                keyring_);
}

TEST_F(SignatureInstallTest, UnknownKeyIsRefused) {
  const SecretKey stranger = SecretKey::Generate().value();
  const std::string package = MakePackage("2.0");
  fs::remove(package + "/manifest.json.sig");
  ASSERT_TRUE(SignPackage(package, stranger).ok());
  ExpectRefused(package, absl::StatusCode::kPermissionDenied,
                absl::StrCat("signed only by key ", stranger.id(), ", which is not trusted"),
                keyring_);
}

TEST_F(SignatureInstallTest, NoTrustedKeysRefusesEverything) {
  ExpectRefused(MakePackage("2.0"), absl::StatusCode::kFailedPrecondition, "no trusted key in",
                Keyring::FromKeys({}, dir_ / "keys"));
}

TEST_F(SignatureInstallTest, AnySignatureByATrustedKeyWillDo) {
  const SecretKey stranger = SecretKey::Generate().value();
  const std::string package = MakePackage("2.0");
  ASSERT_TRUE(SignPackage(package, stranger).ok());
  EXPECT_TRUE(Install(package, prefix_, keyring_).ok());
  EXPECT_TRUE(Install(package, prefix_, Keyring::FromKeys({stranger.Public()})).ok());
}

TEST_F(SignatureInstallTest, RollbackRefusesAVersionNoLongerTrusted) {
  InstallOrFail(MakePackage("1.0"));
  InstallOrFail(MakePackage("2.0"));
  const Keyring other = Keyring::FromKeys({SecretKey::Generate().value().Public()});

  absl::StatusOr<RollbackResult> rolled = Rollback(prefix_, "", &other);
  ASSERT_FALSE(rolled.ok());
  EXPECT_THAT(rolled.status().message(), HasSubstr("version 1.0: "));
  EXPECT_THAT(rolled.status().message(), HasSubstr("which is not trusted"));
  EXPECT_EQ(Current(), "2.0");
  EXPECT_TRUE(Rollback(prefix_, "", &keyring_).ok());
  EXPECT_EQ(Current(), "1.0");
}

TEST_F(PackageTest, RollbackWalksBackThroughInstalls) {
  for (const std::string version : {"1.0", "2.0", "3.0"}) InstallOrFail(MakePackage(version));

  absl::StatusOr<RollbackResult> rolled = Rollback(prefix_);
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  EXPECT_EQ(rolled->from, "3.0");
  EXPECT_EQ(rolled->to, "2.0");
  ASSERT_TRUE(Rollback(prefix_).ok());
  EXPECT_EQ(Current(), "1.0");

  absl::StatusOr<RollbackResult> none_before = Rollback(prefix_);
  ASSERT_FALSE(none_before.ok());
  EXPECT_THAT(none_before.status().message(), HasSubstr("no version was installed before"));
  EXPECT_EQ(Current(), "1.0");
}

TEST_F(PackageTest, RollbackToANamedVersion) {
  for (const std::string version : {"1.0", "2.0", "3.0"}) InstallOrFail(MakePackage(version));

  ASSERT_TRUE(Rollback(prefix_, "1.0").ok());
  EXPECT_EQ(Current(), "1.0");
  absl::StatusOr<RollbackResult> same = Rollback(prefix_, "1.0");
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->from, same->to);
}

TEST_F(PackageTest, RollbackToAVersionNotInstalledChangesNothing) {
  InstallOrFail(MakePackage("1.0"));
  const std::vector<std::string> before = Snapshot(prefix_);

  absl::StatusOr<RollbackResult> rolled = Rollback(prefix_, "9.9");
  ASSERT_FALSE(rolled.ok());
  EXPECT_TRUE(absl::IsNotFound(rolled.status())) << rolled.status();
  EXPECT_THAT(rolled.status().message(), HasSubstr("version 9.9 is not installed"));
  EXPECT_EQ(Snapshot(prefix_), before);
}

TEST_F(PackageTest, SwitchCurrentNeedsAnInstalledVersion) {
  InstallOrFail(MakePackage("1.0"));
  InstallOrFail(MakePackage("2.0"));

  absl::StatusOr<std::string> switched = SwitchCurrent(prefix_, "1.0");
  ASSERT_TRUE(switched.ok()) << switched.status();
  EXPECT_EQ(*switched, "2.0");
  EXPECT_EQ(Current(), "1.0");
  EXPECT_TRUE(absl::IsNotFound(SwitchCurrent(prefix_, "3.0").status()));
  EXPECT_FALSE(SwitchCurrent(prefix_, "../1.0").ok());
  EXPECT_EQ(Current(), "1.0");
}

TEST_F(PackageTest, RollbackRefusesADamagedVersion) {
  InstallOrFail(MakePackage("1.0"));
  InstallOrFail(MakePackage("2.0"));
  WriteFileOrDie(VersionDir(prefix_, "1.0") + "/etc/rules.txt", "damaged\n");

  absl::StatusOr<RollbackResult> rolled = Rollback(prefix_);
  ASSERT_FALSE(rolled.ok());
  EXPECT_THAT(rolled.status().message(), HasSubstr("file \"etc/rules.txt\": sha256 mismatch"));
  EXPECT_EQ(Current(), "2.0");
}

TEST_F(PackageTest, CollectKeepsTheCurrentAndTheMostRecent) {
  for (const std::string version : {"1.0", "2.0", "3.0", "4.0"})
    InstallOrFail(MakePackage(version));
  ASSERT_TRUE(Rollback(prefix_, "2.0").ok());

  absl::StatusOr<std::vector<CollectDecision>> decisions = CollectVersions(prefix_, 2);
  ASSERT_TRUE(decisions.ok()) << decisions.status();
  // The current version counts as one of the two: the newest other one is the second.
  EXPECT_THAT(Versions(prefix_), ElementsAre("4.0", "2.0"));
  EXPECT_FALSE(fs::exists(VersionDir(prefix_, "3.0")));
  EXPECT_EQ(Current(), "2.0");
}

TEST_F(PackageTest, CollectKeepsAVersionInUseUntilItsProcessEnds) {
  InstallOrFail(MakeSleepPackage("1.0"));
  // Started through the current link, as nehostd starts a service.
  auto sleeper =
      std::make_unique<Subprocess>(std::vector<std::string>{prefix_ + "/current/bin/sleep", "1000"},
                                   std::vector<std::string>{}, dir_ / "sleep.log");
  for (const std::string version : {"2.0", "3.0"}) InstallOrFail(MakePackage(version));

  absl::StatusOr<std::vector<CollectDecision>> decisions = CollectVersions(prefix_, 2);
  ASSERT_TRUE(decisions.ok()) << decisions.status();
  ASSERT_EQ(decisions->size(), 3u);
  EXPECT_EQ((*decisions)[2].reason, CollectReason::kInUse);
  EXPECT_THAT((*decisions)[2].pids, ElementsAre(sleeper->pid()));
  EXPECT_THAT(Versions(prefix_), ElementsAre("3.0", "2.0", "1.0"));

  sleeper->Signal(SIGKILL);
  ASSERT_TRUE(sleeper->Wait(absl::Seconds(10)).has_value());
  ASSERT_TRUE(CollectVersions(prefix_, 2).ok());
  EXPECT_THAT(Versions(prefix_), ElementsAre("3.0", "2.0"));
}

TEST_F(PackageTest, ABinaryRemovedWhileRunningStillHoldsItsVersion) {
  InstallOrFail(MakeSleepPackage("1.0"));
  Subprocess sleeper({VersionDir(prefix_, "1.0") + "/bin/sleep", "1000"}, {}, dir_ / "sleep.log");
  fs::remove(VersionDir(prefix_, "1.0") + "/bin/sleep");
  InstallOrFail(MakePackage("2.0"));

  ASSERT_TRUE(CollectVersions(prefix_, 1).ok());
  absl::StatusOr<std::vector<InstalledVersion>> versions = ListVersions(prefix_);
  ASSERT_TRUE(versions.ok());
  ASSERT_EQ(versions->size(), 2u);
  EXPECT_EQ((*versions)[1].version, "1.0");
  EXPECT_THAT((*versions)[1].pids, ElementsAre(sleeper.pid()));
}

TEST(ProcessesRunningFrom, MatchesOnlyPathsBelowTheFolder) {
  const std::vector<RunningProcess> processes = {
      {1, "/nonexistent/p/versions/1.0/bin/x"},
      {2, "/nonexistent/p/versions/1.0/bin/x (deleted)"},
      {3, "/nonexistent/p/versions/1.0.1/bin/x"},
      {4, "/usr/bin/x"},
  };
  EXPECT_THAT(ProcessesRunningFrom("/nonexistent/p/versions/1.0", processes), ElementsAre(1, 2));
}

TEST_F(PackageTest, CollectRemovesTemporariesOfDeadInstallers) {
  InstallOrFail(MakePackage("1.0"));
  WriteFileOrDie(prefix_ + "/versions/2.0.tmp-999999/bin/tool", "half copied");
  fs::create_symlink("versions/2.0", prefix_ + "/current.tmp-999999");

  ASSERT_TRUE(CollectVersions(prefix_).ok());
  EXPECT_FALSE(fs::exists(prefix_ + "/versions/2.0.tmp-999999"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(prefix_ + "/current.tmp-999999")));
  EXPECT_EQ(Current(), "1.0");
}

TEST_F(PackageTest, ListLeavesOutFoldersThatAreNotVersions) {
  InstallOrFail(MakePackage("1.0"));
  fs::create_directories(prefix_ + "/versions/stray");
  fs::copy(VersionDir(prefix_, "1.0"), prefix_ + "/versions/renamed", fs::copy_options::recursive);

  EXPECT_THAT(Versions(prefix_), ElementsAre("1.0"));
  ASSERT_TRUE(CollectVersions(prefix_, 1).ok());
  EXPECT_TRUE(fs::exists(prefix_ + "/versions/stray"));
}

TEST_F(PackageTest, NothingInstalledYet) {
  EXPECT_TRUE(absl::IsNotFound(CurrentVersion(prefix_).status()));
  EXPECT_TRUE(Versions(prefix_).empty());
  EXPECT_TRUE(CollectVersions(prefix_).ok());
  EXPECT_FALSE(Rollback(prefix_).ok());
  EXPECT_FALSE(fs::exists(prefix_));
}

TEST_F(PackageTest, ConcurrentInstallsTakeTurns) {
  std::vector<std::string> packages;
  for (int i = 0; i < 4; ++i) packages.push_back(MakePackage(absl::StrCat(i, ".0")));

  std::vector<std::thread> installers;
  std::vector<absl::Status> results(packages.size());
  for (size_t i = 0; i < packages.size(); ++i) {
    installers.emplace_back(
        [&, i] { results[i] = Install(packages[i], prefix_, keyring_).status(); });
  }
  for (std::thread& installer : installers) installer.join();

  for (const absl::Status& result : results) EXPECT_TRUE(result.ok()) << result;
  EXPECT_EQ(Versions(prefix_).size(), 4u);
  EXPECT_EQ(Versions(prefix_)[0], Current());
}

TEST(ValidateVersion, AcceptsSafeFolderNames) {
  EXPECT_TRUE(ValidateVersion("1.2.3+build-4_rc").ok());
  for (const std::string bad : {"", ".", "..", ".hidden", "a/b", "a b", "2.0.tmp-12", "\xff"}) {
    EXPECT_FALSE(ValidateVersion(bad).ok()) << bad;
  }
  EXPECT_FALSE(ValidateVersion(std::string(129, 'a')).ok());
}

TEST(ValidatePackagePath, AcceptsOnlyPlainRelativePaths) {
  EXPECT_TRUE(ValidatePackagePath("bin/nehost-filter").ok());
  for (const std::string bad : {"", "/bin/x", "../x", "a/../b", "a//b", "./a", "a/.", "a/"}) {
    EXPECT_FALSE(ValidatePackagePath(bad).ok()) << bad;
  }
  EXPECT_FALSE(ValidatePackagePath(std::string("a\0b", 3)).ok());
  EXPECT_FALSE(ValidatePackagePath("a\nb").ok());
  EXPECT_TRUE(ValidatePackagePath("etc/r\xc3\xa8gles.txt").ok());
  absl::Status latin1 = ValidatePackagePath("etc/r\xe8gles.txt");
  EXPECT_FALSE(latin1.ok());
  EXPECT_THAT(latin1.message(), HasSubstr("not UTF-8"));
}

Manifest ValidManifest() {
  Manifest manifest;
  manifest.set_version("1.0");
  PackageFile* file = manifest.add_files();
  file->set_path("bin/tool");
  file->set_sha256(std::string(64, 'a'));
  file->set_mode(0755);
  PackageService* service = manifest.add_services();
  service->set_name(kService);
  service->set_executable("bin/tool");
  return manifest;
}

TEST(ValidateManifest, NamesTheFirstProblem) {
  EXPECT_TRUE(ValidateManifest(ValidManifest()).ok());

  const std::vector<std::pair<std::function<void(Manifest&)>, std::string>> cases = {
      {[](Manifest& m) { m.clear_files(); }, "lists no files"},
      {[](Manifest& m) { m.mutable_files(0)->set_sha256("ABC"); }, "not 64 lower-case hex"},
      {[](Manifest& m) { m.mutable_files(0)->set_mode(04755); }, "mode 04755 has bits beyond"},
      {[](Manifest& m) { m.mutable_files(0)->set_path("manifest.json"); }, "reserved"},
      {[](Manifest& m) { *m.add_files() = m.files(0); }, "listed twice"},
      {[](Manifest& m) { m.mutable_files(0)->set_mode(0644); }, "has no execute bit"},
      {[](Manifest& m) { *m.add_services() = m.services(0); },
       "service \"org.nehost.test\": listed twice"},
      {[](Manifest& m) { m.mutable_services(0)->set_name("a b"); }, "name is not"},
      {[](Manifest& m) {
         PackageFile* file = m.add_files();
         *file = m.files(0);
         file->set_path("bin/tool/inner");
       },
       "also a folder of"},
  };
  for (const auto& [damage, says] : cases) {
    Manifest manifest = ValidManifest();
    damage(manifest);
    EXPECT_THAT(ValidateManifest(manifest).message(), HasSubstr(says));
  }
}

}  // namespace
}  // namespace nehost::installer
