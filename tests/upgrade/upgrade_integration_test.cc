// Upgrades, restarts and adoption under load, on real processes: each scenario ends with
// exactly one verified generation serving, the rules intact, no stray process, and no
// failed agent call beyond the bounded wait.
#include <signal.h>

#include <algorithm>
#include <future>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_client.h"
#include "common/unix_socket.h"
#include "gtest/gtest.h"
#include "tests/upgrade/harness.h"

namespace nehost::testing {
namespace {

namespace v1 = nehost::supervisor::v1;
namespace filter = nehost::filter::v1;

int CountOccurrences(absl::string_view text, absl::string_view part) {
  int count = 0;
  for (size_t at = text.find(part); at != absl::string_view::npos;
       at = text.find(part, at + part.size())) {
    ++count;
  }
  return count;
}

class UpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "1.0.0")); }

  ::testing::AssertionResult StartNehostd(std::vector<std::string> environment = {}) {
    nehostd_ = std::make_unique<Nehostd>(root_);
    nehostd_->set_environment(std::move(environment));
    nehostd_->WriteDefinition("filter.textproto", PackagedFilterDefinition(prefix_));
    if (auto started = nehostd_->Start(); !started) return started;
    absl::StatusOr<Registration> found = nehostd_->Lookup(kFilter);
    if (!found.ok()) return ::testing::AssertionFailure() << found.status() << nehostd_->Log();
    return ::testing::AssertionSuccess();
  }

  // Kills nehostd the hard way and starts another on the same folders.
  ::testing::AssertionResult KillAndRestartNehostd(std::vector<std::string> environment = {}) {
    nehostd_->Kill();
    return StartNehostd(std::move(environment));
  }

  CommandResult Upgrade(const std::string& to_version = "") {
    std::vector<std::string> args = {"upgrade", kFilter};
    if (!to_version.empty()) args.insert(args.end(), {"--to", to_version});
    return nehostd_->Ctl(args);
  }

  void AddRule(const std::string& domain) {
    CommandResult added = nehostd_->Ctl({"rules", "add", kFilter, domain});
    ASSERT_EQ(added.status.code, 0) << added.err;
  }

  // Exactly one generation serves: the registry names one ready owner, no other generation
  // and no upgrade under way, and no other process says it is the service.
  void ExpectOneVerifiedGeneration() {
    ASSERT_TRUE(WaitUntil(
        [&] {
          absl::StatusOr<Registration> found = nehostd_->Find(kFilter);
          return found.ok() && found->state() == v1::READY &&
                 found->other_generations_size() == 0 && found->upgrading_to().empty();
        },
        absl::Seconds(30)))
        << nehostd_->Log();
    ASSERT_TRUE(nehostd_->Lookup(kFilter).ok());
    CommandResult doctor = nehostd_->Ctl({"doctor", kFilter, "--json"});
    EXPECT_EQ(doctor.status.code, 0) << doctor.out << doctor.err;
  }

  void ExpectRule(const std::string& domain) {
    CommandResult listed = nehostd_->Ctl({"rules", "list", kFilter});
    EXPECT_TRUE(absl::StrContains(listed.out, domain)) << listed.out << listed.err;
  }

  v1::GenerationRecord WaitForOtherGeneration(v1::GenerationRecord::Role role) {
    v1::GenerationRecord record;
    EXPECT_TRUE(WaitUntil(
        [&] {
          absl::StatusOr<Registration> found = nehostd_->Find(kFilter);
          if (!found.ok()) return false;
          for (const auto& other : found->other_generations()) {
            if (other.role() == role && other.pid() > 0) {
              record = other;
              return true;
            }
          }
          return false;
        },
        absl::Seconds(20)));
    return record;
  }

  TempDir root_;
  const std::string prefix_ = root_ / "opt";
  std::unique_ptr<Nehostd> nehostd_;
};

TEST_F(UpgradeTest, UpgradeUnderLoadLosesNoCallAndHandsOverCounters) {
  ASSERT_TRUE(StartNehostd());
  AddRule("ads.example.com");
  Agents agents(nehostd_->runtime_dir, 8);
  ASSERT_TRUE(agents.WaitForProgress(20, absl::Seconds(20))) << agents.FailureReport();
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(before.ok());

  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));
  CommandResult upgrade = Upgrade();
  ASSERT_EQ(upgrade.status.code, 0) << upgrade.out << upgrade.err << nehostd_->Log();
  ASSERT_TRUE(agents.WaitForProgress(20, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  absl::StatusOr<Registration> after = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->version(), "2.0.0");
  EXPECT_GT(after->generation(), before->generation());
  EXPECT_FALSE(ProcessAlive(before->pid()));
  ExpectOneVerifiedGeneration();
  ExpectRule("ads.example.com");

  // The new generation counts the old one's calls as its own.
  auto stub = filter::Filter::NewStub(DialUnix(after->endpoint()));
  grpc::ClientContext context;
  filter::StatusResponse status;
  ASSERT_TRUE(stub->Status(&context, {}, &status).ok());
  EXPECT_GE(status.counters().at("status"),
            static_cast<uint64_t>(agents.calls() - agents.failures()));
}

TEST_F(UpgradeTest, NeverReadyVersionRollsBackAndTheOldOneKeepsServing) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  Agents agents(nehostd_->runtime_dir, 4);
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "3.0.0-bad"));

  CommandResult upgrade = Upgrade();
  EXPECT_EQ(upgrade.status.code, 4) << upgrade.out << upgrade.err;
  EXPECT_TRUE(absl::StrContains(upgrade.out + upgrade.err, "rolled back")) << upgrade.out;
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  absl::StatusOr<Registration> after = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pid(), before->pid());
  EXPECT_EQ(after->version(), "1.0.0");
  ExpectOneVerifiedGeneration();
}

TEST_F(UpgradeTest, UpgradeToAVersionThatIsNotInstalledChangesNothing) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  CommandResult upgrade = Upgrade("9.9.9");
  EXPECT_NE(upgrade.status.code, 0);
  EXPECT_TRUE(absl::StrContains(upgrade.err, "9.9.9 of org.nehost.filter is not installed"))
      << upgrade.err;
  absl::StatusOr<Registration> after = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pid(), before->pid());
}

TEST_F(UpgradeTest, ASecondUpgradeWhileOneRunsIsRefused) {
  ASSERT_TRUE(StartNehostd({"NEHOST_FAILPOINTS=filter.before_ready=delay:1500"}));
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));

  std::future<CommandResult> first = std::async(std::launch::async, [&] { return Upgrade(); });
  WaitForOtherGeneration(v1::GenerationRecord::CANDIDATE);
  CommandResult second = Upgrade();
  EXPECT_EQ(second.status.code, 4);
  EXPECT_TRUE(absl::StrContains(second.err, "already under way")) << second.err;
  EXPECT_EQ(first.get().status.code, 0);
  ExpectOneVerifiedGeneration();
}

TEST_F(UpgradeTest, KillNineOfTheNewGenerationBeforeReadyRollsBack) {
  ASSERT_TRUE(StartNehostd({"NEHOST_FAILPOINTS=filter.before_ready=delay:1500"}));
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  Agents agents(nehostd_->runtime_dir, 4);
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));

  std::future<CommandResult> upgrade = std::async(std::launch::async, [&] { return Upgrade(); });
  v1::GenerationRecord candidate = WaitForOtherGeneration(v1::GenerationRecord::CANDIDATE);
  ASSERT_EQ(::kill(candidate.pid(), SIGKILL), 0);
  CommandResult result = upgrade.get();
  EXPECT_EQ(result.status.code, 4) << result.out << result.err;
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  absl::StatusOr<Registration> after = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pid(), before->pid());
  ExpectOneVerifiedGeneration();
}

TEST_F(UpgradeTest, KillNineOfTheOldGenerationWhileDrainingStillUpgrades) {
  ASSERT_TRUE(StartNehostd({"NEHOST_FAILPOINTS=filter.drain.before_reply=delay:1500"}));
  AddRule("ads.example.com");
  Agents agents(nehostd_->runtime_dir, 4);
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));

  std::future<CommandResult> upgrade = std::async(std::launch::async, [&] { return Upgrade(); });
  v1::GenerationRecord draining = WaitForOtherGeneration(v1::GenerationRecord::DRAINING);
  ASSERT_EQ(::kill(draining.pid(), SIGKILL), 0);
  CommandResult result = upgrade.get();
  EXPECT_EQ(result.status.code, 0) << result.out << result.err;
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  EXPECT_EQ(nehostd_->Lookup(kFilter)->version(), "2.0.0");
  ExpectOneVerifiedGeneration();
  ExpectRule("ads.example.com");
}

class NehostdKilledAt : public UpgradeTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(NehostdKilledAt, RestartEndsWithOneVerifiedGeneration) {
  ASSERT_TRUE(StartNehostd({absl::StrCat("NEHOST_FAILPOINTS=", GetParam(), "=kill")}));
  AddRule("ads.example.com");
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));
  Agents agents(nehostd_->runtime_dir, 4);

  Upgrade();  // nehostd dies at the failpoint, the call with it
  ASSERT_TRUE(nehostd_->process()->Wait(absl::Seconds(20)).has_value()) << nehostd_->Log();
  nehostd_->Kill();
  ASSERT_TRUE(StartNehostd());
  ExpectOneVerifiedGeneration();
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  EXPECT_EQ(nehostd_->Lookup(kFilter)->version(), "2.0.0") << nehostd_->Log();
  ExpectRule("ads.example.com");
}

INSTANTIATE_TEST_SUITE_P(EveryFailpoint, NehostdKilledAt,
                         ::testing::Values("upgrade.after_launch", "upgrade.before_switch",
                                           "upgrade.after_switch", "upgrade.after_drain"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '.', '_');
                           return name;
                         });

TEST_F(UpgradeTest, KillNineOfNehostdLeavesTheServiceServingAndItIsAdopted) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  Agents agents(nehostd_->runtime_dir, 4);
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20)));

  ASSERT_TRUE(KillAndRestartNehostd());
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  absl::StatusOr<Registration> after = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pid(), before->pid());
  EXPECT_EQ(after->generation(), before->generation());
  EXPECT_TRUE(absl::StrContains(nehostd_->Log(), "adopted service=org.nehost.filter"));
}

TEST_F(UpgradeTest, NehostdKilledWhileAdoptingEndsWithOneVerifiedGeneration) {
  ASSERT_TRUE(StartNehostd());
  AddRule("ads.example.com");
  Agents agents(nehostd_->runtime_dir, 4);

  nehostd_->Kill();
  nehostd_ = std::make_unique<Nehostd>(root_);
  nehostd_->set_environment({"NEHOST_FAILPOINTS=adopt.after_take_listeners=kill"});
  nehostd_->WriteDefinition("filter.textproto", PackagedFilterDefinition(prefix_));
  nehostd_->Start();  // dies while adopting, with the listening sockets taken
  ASSERT_TRUE(nehostd_->process()->Wait(absl::Seconds(20)).has_value());
  nehostd_->Kill();

  ASSERT_TRUE(StartNehostd());
  ExpectOneVerifiedGeneration();
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();
  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  ExpectRule("ads.example.com");
}

TEST_F(UpgradeTest, NehostdKilledBeforeARelaunchEndsWithOneVerifiedGeneration) {
  ASSERT_TRUE(StartNehostd({"NEHOST_FAILPOINTS=restart.before_launch=kill"}));
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(before.ok());

  ASSERT_EQ(::kill(before->pid(), SIGKILL), 0);  // nehostd dies as it relaunches
  ASSERT_TRUE(nehostd_->process()->Wait(absl::Seconds(20)).has_value());
  nehostd_->Kill();
  ASSERT_TRUE(StartNehostd());
  ExpectOneVerifiedGeneration();
  EXPECT_NE(nehostd_->Lookup(kFilter)->pid(), before->pid());
}

TEST_F(UpgradeTest, CorruptRegistryStillAdoptsTheServingGeneration) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  Agents agents(nehostd_->runtime_dir, 4);
  nehostd_->Kill();
  std::string registry = ReadFileOrEmpty(nehostd_->state_dir + "/registry.json");
  WriteFileOrDie(nehostd_->state_dir + "/registry.json", registry.substr(0, registry.size() / 2));

  ASSERT_TRUE(StartNehostd());
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();
  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  absl::StatusOr<Registration> after = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pid(), before->pid()) << nehostd_->Log();
  EXPECT_TRUE(absl::StrContains(nehostd_->Log(), "registry unreadable"));
  ExpectOneVerifiedGeneration();
}

TEST_F(UpgradeTest, ControlEndpointOfAnotherProcessIsNotTrusted) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(before.ok());
  nehostd_->Kill();

  // This test process squats on the generation's control socket path.
  std::string path =
      absl::StrCat(nehostd_->runtime_dir, "/gen/", kFilter, ".", before->generation(), ".ctl");
  ASSERT_EQ(::unlink(path.c_str()), 0);
  absl::StatusOr<UniqueFd> squatter = ListenUnix(path, 0600);
  ASSERT_TRUE(squatter.ok()) << squatter.status();

  ASSERT_TRUE(StartNehostd());
  EXPECT_TRUE(absl::StrContains(nehostd_->Log(), absl::StrCat("belongs to pid ", ::getpid())))
      << nehostd_->Log();
  absl::StatusOr<Registration> after = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_NE(after->pid(), before->pid());
  EXPECT_FALSE(ProcessAlive(before->pid())) << "the generation it could not verify is stopped";
  ExpectOneVerifiedGeneration();
}

// Twice: the second image holds nehostd.sock at fd 3 already, as it inherited it, and must
// hand it on all the same.
TEST_F(UpgradeTest, ReexecKeepsEveryServiceRunning) {
  ASSERT_TRUE(StartNehostd());
  absl::StatusOr<Registration> before = nehostd_->Lookup(kFilter);
  Agents agents(nehostd_->runtime_dir, 4);
  pid_t nehostd_pid = nehostd_->process()->pid();

  for (int i = 1; i <= 2; ++i) {
    CommandResult reexec = nehostd_->Ctl({"reexec"});
    ASSERT_EQ(reexec.status.code, 0) << reexec.out << reexec.err << nehostd_->Log();
    ASSERT_TRUE(WaitUntil(
        [&] { return CountOccurrences(nehostd_->Log(), "control socket inherited") == i; },
        absl::Seconds(20)))
        << "re-execution " << i << " did not hand nehostd.sock over:\n"
        << nehostd_->Log();
    ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  }
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  EXPECT_EQ(nehostd_->process()->pid(), nehostd_pid);
  EXPECT_TRUE(nehostd_->process()->running());
  absl::StatusOr<Registration> after = nehostd_->Lookup(kFilter);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pid(), before->pid());
}

TEST_F(UpgradeTest, ReadyBeforeTheLaunchIsRegisteredStillCounts) {
  // The new generation's READY=1 arrives while the upgrade waits to take nehostd's lock back
  // after the exec, before the generation is registered.
  ASSERT_TRUE(StartNehostd({"NEHOST_FAILPOINTS=upgrade.after_exec=delay:500"}));
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));

  CommandResult upgrade = Upgrade();
  ASSERT_EQ(upgrade.status.code, 0) << upgrade.out << upgrade.err << nehostd_->Log();
  EXPECT_EQ(nehostd_->Lookup(kFilter)->version(), "2.0.0");
  ExpectOneVerifiedGeneration();
}

TEST_F(UpgradeTest, HundredUpgradesInARowUnderLoad) {
  ASSERT_TRUE(StartNehostd());
  AddRule("ads.example.com");
  ASSERT_TRUE(InstallFilterPackage(root_, prefix_, "2.0.0"));
  Agents agents(nehostd_->runtime_dir, 8);

  for (int i = 0; i < 100; ++i) {
    CommandResult upgrade = Upgrade(i % 2 == 0 ? "1.0.0" : "2.0.0");
    ASSERT_EQ(upgrade.status.code, 0) << "upgrade " << i << ": " << upgrade.out << upgrade.err;
  }
  ASSERT_TRUE(agents.WaitForProgress(10, absl::Seconds(20))) << agents.FailureReport();
  agents.Stop();

  EXPECT_EQ(agents.failures(), 0) << agents.FailureReport();
  ExpectOneVerifiedGeneration();
  ExpectRule("ads.example.com");
}

}  // namespace
}  // namespace nehost::testing
