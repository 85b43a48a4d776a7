// The built nehost-pkg, end to end: what a user or the upgrade harness sees on stdout, on
// stderr and in the exit status.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace nehost::testing {
namespace {

namespace fs = std::filesystem;

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr int kOk = 0;
constexpr int kFailure = 1;
constexpr int kUsage = 2;

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class NehostPkgTest : public ::testing::Test {
 protected:
  // The signing key, made with nehost-pkg itself, and trusted in CONFIG/keys.
  void SetUp() override {
    CommandResult made =
        RunCommand({NEHOST_PKG_BINARY, "keygen", "test", "--out", dir_ / "signing"});
    ASSERT_EQ(made.status.code, kOk) << made.err;
    WriteFileOrDie(config_ + "/keys/test.pub", ReadFileOrEmpty(dir_ / "signing/test.pub"));
  }

  // nehost-pkg --config-dir CONFIG args...
  CommandResult Pkg(std::vector<std::string> args) {
    args.insert(args.begin(), {NEHOST_PKG_BINARY, "--config-dir", config_});
    return RunCommand(args);
  }

  // nehost-pkg build, of a version with a stamped script and, optionally, a copy of sleep.
  std::string Build(const std::string& version, bool with_sleep = false) {
    const std::string script = dir_ / ("tool-" + version);
    WriteFileOrDie(script, "#!/bin/sh\necho " + version + "\n");
    ::chmod(script.c_str(), 0755);
    const std::string out = dir_ / ("pkg-" + version);
    std::vector<std::string> args = {"build",
                                     "--version",
                                     version,
                                     "--out",
                                     out,
                                     "--file",
                                     "bin/tool=" + script,
                                     "--service",
                                     "org.nehost.test=bin/tool",
                                     "--key",
                                     key_};
    if (with_sleep) args.insert(args.end(), {"--file", "bin/sleep=/bin/sleep"});

    CommandResult built = Pkg(args);
    EXPECT_EQ(built.status.code, kOk) << built.err;
    return out;
  }

  void InstallOrFail(const std::string& package) {
    CommandResult installed = Pkg({"install", package, "--prefix", prefix_});
    ASSERT_EQ(installed.status.code, kOk) << installed.err;
  }

  // nehost-pkg list --json, parsed.
  google::protobuf::Struct List() {
    CommandResult listed = Pkg({"--prefix", prefix_, "list", "--json"});
    EXPECT_EQ(listed.status.code, kOk) << listed.err;
    google::protobuf::Struct list;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(listed.out, &list).ok()) << listed.out;
    return list;
  }

  std::string CurrentInList() {
    const google::protobuf::Struct list = List();
    const google::protobuf::Value& current = list.fields().at("current");
    return current.has_null_value() ? "(null)" : current.string_value();
  }

  TempDir dir_;
  const std::string prefix_ = dir_ / "prefix";
  const std::string config_ = dir_ / "etc";
  const std::string key_ = dir_ / "signing/test.secret";
};

TEST_F(NehostPkgTest, BuildsInstallsListsAndRollsBack) {
  InstallOrFail(Build("1.0"));
  InstallOrFail(Build("2.0"));

  google::protobuf::Struct list = List();
  EXPECT_EQ(list.fields().at("current").string_value(), "2.0");
  const auto& versions = list.fields().at("versions").list_value().values();
  ASSERT_THAT(versions, SizeIs(2));
  const auto& newest = versions[0].struct_value().fields();
  EXPECT_EQ(newest.at("version").string_value(), "2.0");
  EXPECT_TRUE(newest.at("current").bool_value());
  EXPECT_FALSE(newest.at("in_use").bool_value());
  EXPECT_THAT(newest.at("installed_at").string_value(), ::testing::EndsWith("Z"));
  EXPECT_EQ(versions[1].struct_value().fields().at("version").string_value(), "1.0");

  CommandResult rolled = Pkg({"rollback", "--prefix", prefix_});
  ASSERT_EQ(rolled.status.code, kOk) << rolled.err;
  EXPECT_EQ(rolled.out, "current is 1.0 (was 2.0)\n");
  EXPECT_EQ(CurrentInList(), "1.0");
  EXPECT_EQ(fs::read_symlink(prefix_ + "/current"), "versions/1.0");
}

TEST_F(NehostPkgTest, InstallCollectsOldVersions) {
  for (const std::string version : {"1.0", "2.0", "3.0"}) InstallOrFail(Build(version));

  const google::protobuf::Struct list = List();
  const auto& versions = list.fields().at("versions").list_value().values();
  ASSERT_THAT(versions, SizeIs(2));
  EXPECT_FALSE(fs::exists(prefix_ + "/versions/1.0"));
}

TEST_F(NehostPkgTest, ListShowsTheVersionAProcessRunsFrom) {
  InstallOrFail(Build("1.0", /*with_sleep=*/true));
  Subprocess sleeper({prefix_ + "/current/bin/sleep", "1000"}, {}, dir_ / "sleep.log");
  InstallOrFail(Build("2.0"));
  InstallOrFail(Build("3.0"));

  const google::protobuf::Struct list = List();
  const auto& versions = list.fields().at("versions").list_value().values();
  ASSERT_THAT(versions, SizeIs(3));
  const auto& oldest = versions[2].struct_value().fields();
  EXPECT_EQ(oldest.at("version").string_value(), "1.0");
  EXPECT_TRUE(oldest.at("in_use").bool_value());
  EXPECT_EQ(oldest.at("pids").list_value().values(0).number_value(), sleeper.pid());

  CommandResult table = Pkg({"list", "--prefix", prefix_});
  EXPECT_THAT(table.out, HasSubstr(absl::StrCat("pid ", sleeper.pid())));
}

TEST_F(NehostPkgTest, ABadPackageFailsWithOneLineAndChangesNothing) {
  InstallOrFail(Build("1.0"));
  const std::string package = Build("2.0");
  WriteFileOrDie(package + "/bin/tool", "#!/bin/sh\necho tampered\n");

  CommandResult installed = Pkg({"install", package, "--prefix", prefix_});
  EXPECT_EQ(installed.status.code, kFailure);
  ASSERT_THAT(Lines(installed.err), SizeIs(1)) << installed.err;
  EXPECT_THAT(installed.err, StartsWith("nehost-pkg: install package " + package + ": "));
  EXPECT_THAT(installed.err, HasSubstr("file \"bin/tool\": sha256 mismatch"));
  EXPECT_FALSE(fs::exists(prefix_ + "/versions/2.0"));
  EXPECT_EQ(CurrentInList(), "1.0");
}

TEST_F(NehostPkgTest, KeygenSignVerifyInstall) {
  CommandResult made = Pkg({"keygen", "release", "--out", dir_ / "release"});
  ASSERT_EQ(made.status.code, kOk) << made.err;
  EXPECT_THAT(made.out, HasSubstr("release.secret (keep it private)"));
  struct stat secret {};
  ASSERT_EQ(::stat((dir_ / "release/release.secret").c_str(), &secret), 0);
  EXPECT_EQ(secret.st_mode & 0777, 0600u);
  EXPECT_EQ(Pkg({"keygen", "release", "--out", dir_ / "release"}).status.code, kFailure);

  const std::string script = dir_ / "tool";
  WriteFileOrDie(script, "#!/bin/sh\necho 1.0\n");
  const std::string package = dir_ / "pkg";
  ASSERT_EQ(Pkg({"build", "--version", "1.0", "--out", package, "--file", "bin/tool=" + script})
                .status.code,
            kOk);

  CommandResult unsigned_ = Pkg({"install", package, "--prefix", prefix_});
  EXPECT_EQ(unsigned_.status.code, kFailure);
  EXPECT_THAT(unsigned_.err, HasSubstr("unsigned: no " + package + "/manifest.json.sig"));

  CommandResult signed_ = Pkg({"sign", package, "--key", dir_ / "release/release.secret"});
  ASSERT_EQ(signed_.status.code, kOk) << signed_.err;
  CommandResult untrusted = Pkg({"verify", package});
  EXPECT_EQ(untrusted.status.code, kFailure);
  EXPECT_THAT(untrusted.err,
              HasSubstr("which is not trusted: no such key in " + config_ + "/keys"));
  CommandResult untrusted_install = Pkg({"install", package, "--prefix", prefix_});
  EXPECT_EQ(untrusted_install.status.code, kFailure);
  EXPECT_FALSE(fs::exists(prefix_));

  CommandResult trusted = Pkg({"--keys-dir", dir_ / "release", "verify", package});
  EXPECT_EQ(trusted.status.code, kOk) << trusted.err;
  EXPECT_THAT(trusted.out, HasSubstr("signed by trusted key"));
  CommandResult installed =
      Pkg({"--keys-dir", dir_ / "release", "install", package, "--prefix", prefix_});
  EXPECT_EQ(installed.status.code, kOk) << installed.err;
  EXPECT_TRUE(fs::exists(prefix_ + "/versions/1.0/manifest.json.sig"));
}

TEST_F(NehostPkgTest, BuildsAndInstallsASignedArchive) {
  const std::string script = dir_ / "tool";
  WriteFileOrDie(script, "#!/bin/sh\necho 1.0\n");
  const std::string archive = dir_ / "nehost-1.0.tar.gz";
  CommandResult built = Pkg({"build", "--version", "1.0", "--out", dir_ / "pkg", "--file",
                             "bin/tool=" + script, "--key", key_, "--archive", archive});
  ASSERT_EQ(built.status.code, kOk) << built.err;
  EXPECT_THAT(built.out, HasSubstr("wrote archive " + archive));

  CommandResult verified = Pkg({"verify", archive});
  EXPECT_EQ(verified.status.code, kOk) << verified.err;
  InstallOrFail(archive);
  EXPECT_EQ(CurrentInList(), "1.0");
  EXPECT_EQ(ReadFileOrEmpty(prefix_ + "/current/bin/tool"), "#!/bin/sh\necho 1.0\n");

  WriteFileOrDie(dir_ / "cut.tar.gz", ReadFileOrEmpty(archive).substr(0, 100));
  CommandResult cut = Pkg({"install", dir_ / "cut.tar.gz", "--prefix", prefix_});
  EXPECT_EQ(cut.status.code, kFailure);
  ASSERT_THAT(Lines(cut.err), SizeIs(1)) << cut.err;
  EXPECT_THAT(cut.err, StartsWith("nehost-pkg: install package " + dir_ / "cut.tar.gz" + ": "));
}

TEST_F(NehostPkgTest, OperationalFailuresExitOne) {
  CommandResult missing = Pkg({"install", dir_ / "nonexistent", "--prefix", prefix_});
  EXPECT_EQ(missing.status.code, kFailure);
  EXPECT_THAT(missing.err, HasSubstr("manifest.json: No such file or directory"));

  CommandResult nothing = Pkg({"rollback", "--prefix", prefix_});
  EXPECT_EQ(nothing.status.code, kFailure);
  EXPECT_THAT(nothing.err, HasSubstr("rollback under " + prefix_));

  InstallOrFail(Build("1.0"));
  CommandResult unknown = Pkg({"rollback", "--to", "9.9", "--prefix", prefix_});
  EXPECT_EQ(unknown.status.code, kFailure);
  EXPECT_THAT(unknown.err, HasSubstr("version 9.9 is not installed"));

  CommandResult bad_version = Pkg({"build", "--version", "../x", "--out", dir_ / "out", "--file",
                                   "a=" + std::string(NEHOST_PKG_BINARY)});
  EXPECT_EQ(bad_version.status.code, kFailure);
  EXPECT_THAT(bad_version.err, HasSubstr("version \"../x\""));
}

TEST_F(NehostPkgTest, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> lines = {
      {},
      {"frobnicate"},
      {"install"},
      {"install", "a", "b"},
      {"build", "--version", "1.0", "--file", "a=b"},
      {"build", "--version", "1.0", "--out", "x", "--file", "no-equals-sign"},
      {"gc", "--keep", "0"},
      {"list", "--keep", "3"},
      {"list", "--prefix"},
      {"rollback", "--t", "1.0"},
  };
  for (const std::vector<std::string>& line : lines) {
    CommandResult result = Pkg(line);
    EXPECT_EQ(result.status.code, kUsage) << absl::StrJoin(line, " ") << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr("for usage")) << absl::StrJoin(line, " ");
    EXPECT_THAT(result.out, IsEmpty());
  }
}

TEST_F(NehostPkgTest, HelpNamesEveryCommand) {
  CommandResult help = Pkg({"--help"});
  EXPECT_EQ(help.status.code, kOk);
  for (const std::string command :
       {"keygen", "build", "sign", "verify", "install", "list", "rollback", "gc"}) {
    EXPECT_THAT(help.out, HasSubstr("  " + command)) << command;
    CommandResult one = Pkg({"help", command});
    EXPECT_EQ(one.status.code, kOk) << command;
    EXPECT_THAT(one.out, HasSubstr("usage: nehost-pkg [GLOBAL FLAGS] " + command));
  }
  EXPECT_EQ(Pkg({"install", "--help"}).out, Pkg({"help", "install"}).out);
}

}  // namespace
}  // namespace nehost::testing
