// The field failure, reproduced and ended (DESIGN.md, "The failure nehost exists to end").
//
// The scenario, as an upgrade in the field ran it: install v1 and run; stop and remove
// every component except the running extension; install v2; start the supervisor; kill -9
// the old extension; restart the supervisor; upgrade again. Agents look the service up and
// call it throughout, counting every failure with its message.
//
// Against a supervisor that trusts its persisted record (nehostd --no-reconcile), lookups
// fail with "No such process" and stay failed until the runtime and state folders are
// wiped: the harness's reboot. Against nehost's default, no call fails and v2 serves.
#include <signal.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/upgrade/harness.h"

namespace nehost::testing {
namespace {

using nehost::supervisor::v1::READY;

class FieldScenario : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "1.0.0")); }

  // Runs nehostd on the test's folders, with the packaged filter defined.
  std::unique_ptr<Nehostd> StartNehostd(const std::vector<std::string>& args) {
    auto nehostd = std::make_unique<Nehostd>(root_, args);
    nehostd->WriteDefinition("filter.textproto", PackagedFilterDefinition(prefix_));
    EXPECT_TRUE(nehostd->Start());
    return nehostd;
  }

  // The field's "stop and remove everything but the running extension": the supervisor
  // dies without stopping it, and v1's files other than the running binary go.
  void RemoveEverythingButTheExtension(std::unique_ptr<Nehostd> nehostd) {
    nehostd->Kill();
    std::filesystem::remove(prefix_ + "/versions/1.0.0/manifest.json");
  }

  // Lookups of the same nehostd until one answers ok, at most timeout.
  static bool LookupSucceeds(Nehostd& nehostd) {
    absl::StatusOr<Registration> found = nehostd.Lookup(kFilter);
    return found.ok();
  }

  TempDir root_;
  const std::string prefix_ = root_ / "opt";
};

TEST_F(FieldScenario, NaiveSupervisorFailsWithNoSuchProcessUntilReboot) {
  const std::vector<std::string> naive = {"--no-reconcile"};
  auto first = StartNehostd(naive);
  absl::StatusOr<Registration> v1 = first->Lookup(kFilter);
  ASSERT_TRUE(v1.ok()) << v1.status() << first->Log();
  std::string runtime_dir = first->runtime_dir;
  RemoveEverythingButTheExtension(std::move(first));
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));

  auto second = StartNehostd(naive);
  Agents agents(runtime_dir, 4, absl::Seconds(2));
  ASSERT_TRUE(agents.WaitForProgress(5, absl::Seconds(20))) << agents.FailureReport();

  // kill -9 of the old extension: the record still names it, and nothing relaunches it.
  ASSERT_EQ(::kill(v1->pid(), SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([&] { return !ProcessAlive(v1->pid()); }, absl::Seconds(10)));
  ASSERT_TRUE(WaitUntil([&] { return agents.failures() >= 20; }, absl::Seconds(20)))
      << agents.FailureReport();
  absl::StatusOr<Registration> after_kill = second->Lookup(kFilter);
  ASSERT_FALSE(after_kill.ok());
  EXPECT_TRUE(absl::StrContains(after_kill.status().message(), "No such process"))
      << after_kill.status();

  // Restarting the supervisor does not help.
  second->Kill();
  auto third = StartNehostd(naive);
  agents.ResetCounts();
  ASSERT_TRUE(WaitUntil([&] { return agents.failures() >= 20; }, absl::Seconds(20)))
      << agents.FailureReport();
  EXPECT_FALSE(LookupSucceeds(*third));

  // Nor does upgrading again.
  CommandResult upgrade = third->Ctl({"upgrade", kFilter});
  EXPECT_NE(upgrade.status.code, 0);
  EXPECT_TRUE(absl::StrContains(upgrade.err, "No such process")) << upgrade.err;
  EXPECT_FALSE(LookupSucceeds(*third));
  for (const auto& [message, count] : agents.failure_messages()) {
    EXPECT_TRUE(absl::StrContains(message, "No such process")) << message;
  }

  // The harness's reboot: wipe the runtime and state folders. Then it works again.
  third->Kill();
  agents.Stop();
  std::filesystem::remove_all(root_ / "run");
  std::filesystem::remove_all(root_ / "state");
  auto rebooted = StartNehostd(naive);
  absl::StatusOr<Registration> v2 = rebooted->Lookup(kFilter);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->version(), "2.0.0");
}

TEST_F(FieldScenario, NehostPassesWithoutAFailedCallOrAReboot) {
  auto first = StartNehostd({});
  absl::StatusOr<Registration> v1 = first->Lookup(kFilter);
  ASSERT_TRUE(v1.ok()) << v1.status() << first->Log();
  Agents agents(first->runtime_dir, 4);
  ASSERT_TRUE(agents.WaitForProgress(5, absl::Seconds(20))) << agents.FailureReport();

  RemoveEverythingButTheExtension(std::move(first));
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));

  // The new nehostd adopts the live v1 and replaces it with v2 through an upgrade.
  auto second = StartNehostd({});
  ASSERT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<Registration> found = second->Find(kFilter);
        return found.ok() && found->version() == "2.0.0" && found->state() == READY &&
               found->other_generations_size() == 0;
      },
      absl::Seconds(30)))
      << second->Log();

  // kill -9 of the old extension: it is gone already, or goes now; v2 serves either way.
  ::kill(v1->pid(), SIGKILL);
  ASSERT_TRUE(agents.WaitForProgress(5, absl::Seconds(20))) << agents.FailureReport();

  // Restart the supervisor the hard way: kill -9, then start. It adopts v2.
  absl::StatusOr<Registration> v2 = second->Lookup(kFilter);
  ASSERT_TRUE(v2.ok());
  second->Kill();
  auto third = StartNehostd({});
  absl::StatusOr<Registration> adopted = third->Lookup(kFilter);
  ASSERT_TRUE(adopted.ok()) << adopted.status() << third->Log();
  EXPECT_EQ(adopted->pid(), v2->pid()) << "adopted, not restarted";

  // Upgrade again.
  CommandResult upgrade = third->Ctl({"upgrade", kFilter});
  EXPECT_EQ(upgrade.status.code, 0) << upgrade.out << upgrade.err << third->Log();
  ASSERT_TRUE(agents.WaitForProgress(5, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  absl::StatusOr<Registration> last = third->Lookup(kFilter);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->version(), "2.0.0");
  EXPECT_FALSE(ProcessAlive(v1->pid()));
}

}  // namespace
}  // namespace nehost::testing
