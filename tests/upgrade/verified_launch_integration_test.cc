// Verified launches, on real processes: nehostd runs a packaged service only when the binary's
// sha256 is the one its signed manifest lists, at the first launch, at a restart and at an
// upgrade, and a refused upgrade leaves the running generation serving.
#include <signal.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/process_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/upgrade/harness.h"

namespace nehost::testing {
namespace {

namespace fs = std::filesystem;
namespace v1 = nehost::supervisor::v1;

using ::testing::HasSubstr;

constexpr int kUnavailable = 4;

class VerifiedLaunchTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "1.0.0")); }

  ::testing::AssertionResult StartNehostd() {
    nehostd_.WriteDefinition("filter.textproto", PackagedFilterDefinition(prefix_));
    return nehostd_.Start();
  }

  std::string Binary(const std::string& version) const {
    return prefix_ + "/versions/" + version + "/bin/nehost-filter";
  }

  // Puts another binary at the path the way an attacker with write access to the folder
  // would: a new file renamed over it (a running binary cannot be written in place).
  void ReplaceBinary(const std::string& version, const std::string& with) {
    const std::string path = Binary(version);
    fs::copy_file(with, path + ".evil");
    fs::permissions(path + ".evil", fs::perms(0755));
    fs::rename(path + ".evil", path);
  }

  CommandResult Upgrade(const std::string& to_version) {
    return nehostd_.Ctl({"upgrade", kFilter, "--to", to_version});
  }

  TempDir root_;
  const std::string prefix_ = root_ / "prefix";
  Nehostd nehostd_{root_};
};

TEST_F(VerifiedLaunchTest, SignedBinaryRunsAndLookupSaysWhatVouchedForIt) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> found = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(found.ok()) << found.status() << nehostd_.Log();
  EXPECT_EQ(found->executable_sha256(), Sha256File(FilterVariant("1.0.0")).value());
  EXPECT_THAT(found->verified_by(),
              HasSubstr("signed manifest " + prefix_ + "/versions/1.0.0/manifest.json, key "));

  CommandResult doctor = nehostd_.Ctl({"doctor", kFilter});
  EXPECT_EQ(doctor.status.code, 0) << doctor.out << doctor.err;
  EXPECT_THAT(doctor.out, HasSubstr("signature"));
}

TEST_F(VerifiedLaunchTest, TamperedBinaryIsRefusedAtTheFirstLaunch) {
  ReplaceBinary("1.0.0", FilterVariant("2.0.0"));
  ASSERT_TRUE(StartNehostd());
  ASSERT_TRUE(nehostd_.WaitForState(kFilter, v1::FAILED)) << nehostd_.Log();

  // A failed service is nehostd's answer, not a lost connection to retry on until the
  // deadline; and the answer is the only line.
  const absl::Time asked = absl::Now();
  CommandResult lookup = nehostd_.Ctl({"--timeout-ms", "60000", "lookup", kFilter});
  EXPECT_LT(absl::Now() - asked, absl::Seconds(30));
  EXPECT_EQ(std::count(lookup.err.begin(), lookup.err.end(), '\n'), 1) << lookup.err;
  EXPECT_EQ(lookup.status.code, kUnavailable);
  EXPECT_THAT(lookup.err, HasSubstr("launch refused: executable " + Binary("1.0.0")));
  EXPECT_THAT(lookup.err, HasSubstr("the signed manifest does not vouch for"));
  CommandResult doctor = nehostd_.Ctl({"doctor", kFilter});
  EXPECT_THAT(doctor.out, HasSubstr("launch refused"));
  EXPECT_TRUE(
      ProcessesWithEnvironment("NOTIFY_SOCKET=" + nehostd_.runtime_dir + "/notify.sock").empty());
}

TEST_F(VerifiedLaunchTest, TamperedBinaryIsRefusedAtARestart) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(before.ok()) << before.status();

  ReplaceBinary("1.0.0", FilterVariant("3.0.0-bad"));
  ASSERT_EQ(::kill(before->pid(), SIGKILL), 0);
  ASSERT_TRUE(nehostd_.WaitForState(kFilter, v1::FAILED)) << nehostd_.Log();
  absl::StatusOr<Registration> failed = nehostd_.Find(kFilter);
  ASSERT_TRUE(failed.ok());
  EXPECT_THAT(failed->state_reason(), HasSubstr("launch refused"));
  EXPECT_THAT(failed->state_reason(), HasSubstr("says " + before->executable_sha256()));
}

TEST_F(VerifiedLaunchTest, KeyNoLongerTrustedIsRefusedAtARestart) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(before.ok()) << before.status();

  fs::remove(nehostd_.config_dir + "/keys/harness.pub");
  ASSERT_EQ(::kill(before->pid(), SIGKILL), 0);
  ASSERT_TRUE(nehostd_.WaitForState(kFilter, v1::FAILED)) << nehostd_.Log();
  EXPECT_THAT(nehostd_.Find(kFilter)->state_reason(), HasSubstr("no trusted key in"));
}

TEST_F(VerifiedLaunchTest, UpgradeToATamperedVersionIsRefusedAndTheOldOneKeepsServing) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(before.ok()) << before.status() << nehostd_.Log();
  Agents agents(nehostd_.runtime_dir, 4);
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();

  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));
  ReplaceBinary("2.0.0", FilterVariant("3.0.0-bad"));
  CommandResult upgrade = Upgrade("2.0.0");
  EXPECT_EQ(upgrade.status.code, kUnavailable) << upgrade.out << upgrade.err;
  EXPECT_THAT(upgrade.out + upgrade.err, HasSubstr("refused"));
  EXPECT_THAT(upgrade.out + upgrade.err, HasSubstr("does not vouch for"));

  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();
  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  absl::StatusOr<Registration> after = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pid(), before->pid());
  EXPECT_EQ(after->version(), "1.0.0");
  EXPECT_EQ(after->state(), v1::READY);
  EXPECT_THAT(after->state_reason(), HasSubstr("upgrade to version 2.0.0 refused"));
}

TEST_F(VerifiedLaunchTest, UpgradeToAnUnsignedVersionIsRefused) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));
  fs::remove(prefix_ + "/versions/2.0.0/manifest.json.sig");

  CommandResult upgrade = Upgrade("2.0.0");
  EXPECT_EQ(upgrade.status.code, kUnavailable) << upgrade.out << upgrade.err;
  EXPECT_THAT(upgrade.out + upgrade.err, HasSubstr("unsigned"));
  absl::StatusOr<Registration> after = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pid(), before->pid());
}

TEST_F(VerifiedLaunchTest, UpgradeToAProperlySignedVersionStillWorks) {
  ASSERT_TRUE(StartNehostd());
  ASSERT_TRUE(nehostd_.Lookup(kFilter).ok());
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));
  CommandResult upgrade = Upgrade("2.0.0");
  EXPECT_EQ(upgrade.status.code, 0) << upgrade.out << upgrade.err;
  absl::StatusOr<Registration> after = nehostd_.Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->version(), "2.0.0");
  EXPECT_EQ(after->executable_sha256(), Sha256File(FilterVariant("2.0.0")).value());
}

// nehostd itself from a signed package, as the .deb installs it: a re-execution runs the path
// it was started as, PREFIX/current/bin/nehostd, only when that binary verifies.
TEST_F(VerifiedLaunchTest, ReexecIntoATamperedNehostdIsRefused) {
  auto install_nehost = [&](const std::string& version) {
    const std::string package = root_ / ("nehost-" + version);
    CommandResult built =
        RunCommand({PkgBinary(), "build", "--version", version, "--out", package, "--file",
                    "bin/nehostd=" + NehostdBinary(), "--file",
                    "bin/nehost-filter=" + FilterBinary(), "--key", HarnessSigningKey(root_)});
    ASSERT_EQ(built.status.code, 0) << built.err;
    CommandResult installed = RunCommand(
        {PkgBinary(), "--prefix", prefix_, "--config-dir", root_ / "etc", "install", package});
    ASSERT_EQ(installed.status.code, 0) << installed.err;
  };
  install_nehost("5.0.0");
  Subprocess nehostd({prefix_ + "/current/bin/nehostd", "--config-dir", nehostd_.config_dir,
                      "--runtime-dir", nehostd_.runtime_dir, "--state-dir", nehostd_.state_dir},
                     {}, root_ / "packaged-nehostd.log");
  // This nehostd is not the fixture's: it is reached through nehostctl alone.
  auto serving = [&] { return nehostd_.Ctl({"lookup", kFilter}).status.code == 0; };
  ASSERT_TRUE(WaitUntil(serving, absl::Seconds(20)))
      << ReadFileOrEmpty(root_ / "packaged-nehostd.log");

  install_nehost("6.0.0");
  const std::string binary = prefix_ + "/versions/6.0.0/bin/nehostd";
  fs::copy_file(FilterBinary(), binary + ".evil");
  fs::rename(binary + ".evil", binary);
  CommandResult refused = nehostd_.Ctl({"reexec"});
  EXPECT_EQ(refused.status.code, 1) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("reexec refused: executable " + binary + " has sha256"));
  EXPECT_EQ(ReadProcessExecutable(nehostd.pid()).value_or(""),
            prefix_ + "/versions/5.0.0/bin/nehostd");
  EXPECT_TRUE(serving());

  fs::copy_file(NehostdBinary(), binary + ".good");
  fs::rename(binary + ".good", binary);
  CommandResult reexec = nehostd_.Ctl({"reexec"});
  EXPECT_EQ(reexec.status.code, 0) << reexec.out << reexec.err;
  EXPECT_EQ(ReadProcessExecutable(nehostd.pid()).value_or(""), binary);
  EXPECT_TRUE(serving());
  nehostd.Signal(SIGTERM);
  EXPECT_TRUE(nehostd.Wait(absl::Seconds(20)).has_value());
}

TEST(PlainDefinition, RecordsTheHashWithoutAManifest) {
  TempDir root;
  Nehostd nehostd(root);
  ASSERT_TRUE(nehostd.Start());
  absl::StatusOr<Registration> found = nehostd.Lookup(kFilter);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->executable_sha256(), Sha256File(FilterBinary()).value());
  EXPECT_EQ(found->verified_by(), "no manifest: plain definition, sha256 recorded only");
}

}  // namespace
}  // namespace nehost::testing
