// The .deb, end to end, with the real dpkg in a temporary root (dpkg --root, maintainer
// scripts run without chroot and with DPKG_ROOT set): install one version, run nehostd from
// it, upgrade to the next with agents calling all the time, then remove and purge.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_client.h"
#include "common/process_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"
#include "tests/upgrade/harness.h"

namespace nehost::testing {
namespace {

namespace fs = std::filesystem;
namespace v1 = nehost::supervisor::v1;

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kFirstVersion[] = NEHOST_DEB_FIRST_VERSION;
constexpr char kSecondVersion[] = NEHOST_DEB_SECOND_VERSION;

class DebTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: dpkg sets the owners of what it unpacks";
    for (const char* folder : {"info", "updates", "triggers"}) {
      fs::create_directories(admin_ + "/" + folder);
    }
    WriteFileOrDie(admin_ + "/status", "");
    WriteFileOrDie(admin_ + "/available", "");
  }

  // Whatever a nehostd of this test launched and a failed assertion left running goes too:
  // its services are recognised by the notify socket they were given.
  void TearDown() override {
    for (pid_t pid : ProcessesWithEnvironment("NOTIFY_SOCKET=" + runtime_ + "/notify.sock")) {
      ::kill(pid, SIGKILL);
    }
  }

  // dpkg on the temporary root. The maintainer scripts find nehostd's runtime folder through
  // NEHOST_RUNTIME_DIR, as nehostctl does.
  CommandResult Dpkg(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/usr/bin/env",
                                     "NEHOST_RUNTIME_DIR=" + runtime_,
                                     DPKG_BINARY,
                                     "--root=" + inst_,
                                     "--force-script-chrootless",
                                     "--force-depends",
                                     "--log=" + root_ / "dpkg.log"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, absl::Minutes(3));
  }

  // "Version: ..." and "Status: ..." of the package, as dpkg records them.
  std::string PackageStatus() { return Dpkg({"--status", "nehost"}).out; }

  std::string Opt(const std::string& path) const { return inst_ + "/opt/nehost/" + path; }

  absl::StatusOr<Registration> LookupFilter() {
    auto stub = v1::Supervisor::NewStub(DialUnix(runtime_ + "/nehostd.sock"));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(15)));
    context.set_wait_for_ready(true);
    v1::LookupRequest request;
    request.set_name(kFilter);
    request.set_wait_ms(10000);
    v1::LookupResponse response;
    grpc::Status status = stub->Lookup(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response.registration();
  }

  std::string RunningExecutable(pid_t pid) { return ReadProcessExecutable(pid).value_or("(gone)"); }

  TempDir root_;
  const std::string inst_ = root_ / "root";
  const std::string admin_ = inst_ + "/var/lib/dpkg";
  const std::string runtime_ = root_ / "run";
  const std::string state_ = root_ / "state";
};

TEST_F(DebTest, InstallsUpgradesAndRemovesWithoutAFailedCall) {
  // Install: the payload is staged, then installed as a version beside nothing.
  CommandResult installed = Dpkg({"--install", NEHOST_DEB_FIRST});
  ASSERT_EQ(installed.status.code, 0) << installed.out << installed.err;
  EXPECT_THAT(PackageStatus(), HasSubstr(absl::StrCat("Version: ", kFirstVersion)));
  for (const char* program : {"nehostd", "nehostctl", "nehost-filter", "nehost-pkg"}) {
    EXPECT_TRUE(fs::exists(Opt(absl::StrCat("versions/", kFirstVersion, "/bin/", program))))
        << program;
  }
  EXPECT_EQ(fs::read_symlink(Opt("current")).string(), absl::StrCat("versions/", kFirstVersion));
  EXPECT_TRUE(fs::exists(inst_ + "/usr/lib/nehost/stage/manifest.json.sig"));
  EXPECT_TRUE(fs::exists(inst_ + "/lib/systemd/system/nehostd.service"));
  EXPECT_TRUE(fs::exists(inst_ + "/etc/nehost/keys/nehost-package.pub"));
  EXPECT_EQ(fs::read_symlink(inst_ + "/usr/bin/nehostctl").string(),
            "/opt/nehost/current/bin/nehostctl");
  EXPECT_THAT(ReadFileOrEmpty(inst_ + "/etc/nehost/services.d/org.nehost.filter.textproto"),
              HasSubstr("package_prefix: \"" + inst_ + "/opt/nehost\""));

  // nehostd from the installed package, as the systemd unit runs it.
  Subprocess nehostd({Opt("current/bin/nehostd"), "--config-dir", inst_ + "/etc/nehost",
                      "--runtime-dir", runtime_, "--state-dir", state_},
                     {}, root_ / "nehostd.log");
  absl::StatusOr<Registration> before = LookupFilter();
  ASSERT_TRUE(before.ok()) << before.status() << ReadFileOrEmpty(root_ / "nehostd.log");
  EXPECT_EQ(before->version(), kFirstVersion);
  EXPECT_THAT(before->verified_by(), HasSubstr("signed manifest"));
  Agents agents(runtime_, 4);
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();

  // Upgrade: nehostd re-executes as the new version and hands the filter over blue/green.
  CommandResult upgraded = Dpkg({"--install", NEHOST_DEB_SECOND});
  ASSERT_EQ(upgraded.status.code, 0)
      << upgraded.out << upgraded.err << ReadFileOrEmpty(root_ / "nehostd.log");
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  absl::StatusOr<Registration> after = LookupFilter();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->version(), kSecondVersion);
  EXPECT_NE(after->pid(), before->pid());
  EXPECT_THAT(after->executable(), StartsWith(Opt(absl::StrCat("versions/", kSecondVersion))));
  EXPECT_TRUE(nehostd.running());
  EXPECT_THAT(RunningExecutable(nehostd.pid()),
              StartsWith(Opt(absl::StrCat("versions/", kSecondVersion, "/bin/nehostd"))));
  EXPECT_EQ(fs::read_symlink(Opt("current")).string(), absl::StrCat("versions/", kSecondVersion));
  EXPECT_TRUE(fs::exists(Opt(absl::StrCat("versions/", kFirstVersion))));
  EXPECT_THAT(PackageStatus(), HasSubstr(absl::StrCat("Version: ", kSecondVersion)));
  agents.Stop();
  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();

  // Remove, with nehostd stopped as the prerm does under systemd, and a process still
  // running from the first version's folder: that folder stays, the rest goes.
  nehostd.Signal(SIGTERM);
  ASSERT_TRUE(nehostd.Wait(absl::Seconds(30)).has_value());
  const std::string kept_binary = Opt(absl::StrCat("versions/", kFirstVersion, "/bin/sleep"));
  fs::copy_file("/bin/sleep", kept_binary);
  Subprocess sleeper({kept_binary, "600"}, {}, root_ / "sleep.log");
  ASSERT_TRUE(WaitUntil([&] { return RunningExecutable(sleeper.pid()) == kept_binary; },
                        absl::Seconds(10)));

  CommandResult removed = Dpkg({"--remove", "nehost"});
  ASSERT_EQ(removed.status.code, 0) << removed.out << removed.err;
  EXPECT_THAT(removed.err, HasSubstr("a process still runs from it"));
  EXPECT_TRUE(fs::exists(kept_binary));
  EXPECT_FALSE(fs::exists(Opt(absl::StrCat("versions/", kSecondVersion))));
  EXPECT_FALSE(fs::exists(inst_ + "/usr/lib/nehost/stage"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(inst_ + "/usr/bin/nehostctl")));
  EXPECT_THAT(PackageStatus(), HasSubstr("Status: deinstall ok config-files"));

  // Purge, once nothing runs from it: no trace is left.
  sleeper.Signal(SIGKILL);
  ASSERT_TRUE(sleeper.Wait(absl::Seconds(10)).has_value());
  CommandResult purged = Dpkg({"--purge", "nehost"});
  ASSERT_EQ(purged.status.code, 0) << purged.out << purged.err;
  EXPECT_FALSE(fs::exists(inst_ + "/opt/nehost"));
  EXPECT_FALSE(fs::exists(inst_ + "/etc/nehost"));
  EXPECT_THAT(Dpkg({"--status", "nehost"}).status.code, ::testing::Ne(0));
}

TEST_F(DebTest, UpgradeWithNoNehostdRunningOnlyInstalls) {
  ASSERT_EQ(Dpkg({"--install", NEHOST_DEB_FIRST}).status.code, 0);
  CommandResult upgraded = Dpkg({"--install", NEHOST_DEB_SECOND});
  ASSERT_EQ(upgraded.status.code, 0) << upgraded.out << upgraded.err;
  EXPECT_EQ(fs::read_symlink(Opt("current")).string(), absl::StrCat("versions/", kSecondVersion));
  // Nothing ran from the first version, so dpkg's upgrade may drop it no earlier than gc.
  EXPECT_TRUE(fs::exists(Opt(absl::StrCat("versions/", kFirstVersion, "/manifest.json.sig"))));
  ASSERT_EQ(Dpkg({"--purge", "nehost"}).status.code, 0);
  EXPECT_FALSE(fs::exists(inst_ + "/opt/nehost"));
}

}  // namespace
}  // namespace nehost::testing
