// The built nehostctl on its own: what a user sees when nehostd is not there, and when the
// command line is wrong. Runs against nehostd are in the supervisor's integration tests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/files.h"
#include "common/unix_socket.h"
#include "common/version.h"
#include "tests/support/nehostd.h"
#include "tests/support/process.h"

namespace nehost::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kUsage = 2;
constexpr int kUnavailable = 4;

CommandResult Ctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {NehostctlBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

class NehostdAbsent : public ::testing::Test {
 protected:
  TempDir root_;
  const std::string runtime_dir_ = root_ / "runtime";
  const std::string socket_ = runtime_dir_ + "/nehostd.sock";
};

TEST_F(NehostdAbsent, LookupSaysNehostdIsNotRunningAndWhy) {
  CommandResult result = Ctl({"--runtime-dir", runtime_dir_, "lookup", "org.nehost.filter"});

  EXPECT_EQ(result.status.code, kUnavailable);
  EXPECT_THAT(result.out, IsEmpty());
  EXPECT_EQ(result.err, "nehostctl: lookup org.nehost.filter: nehostd is not running at " +
                            socket_ + ": No such file or directory\n");
}

// A socket file left by a nehostd that died refuses connections.
TEST_F(NehostdAbsent, StaleSocketIsReportedAsRefused) {
  ASSERT_TRUE(MakeDirs(runtime_dir_).ok());
  ASSERT_TRUE(ListenUnix(socket_).ok());  // closed at once; the file stays

  CommandResult result = Ctl({"--runtime-dir", runtime_dir_, "list"});

  EXPECT_EQ(result.status.code, kUnavailable);
  EXPECT_EQ(result.err,
            "nehostctl: list: nehostd is not running at " + socket_ + ": Connection refused\n");
}

TEST_F(NehostdAbsent, EveryCommandThatNeedsNehostdSaysSo) {
  const std::vector<std::vector<std::string>> commands = {
      {"list"},
      {"status", "org.nehost.filter"},
      {"start", "org.nehost.filter"},
      {"stop", "org.nehost.filter"},
      {"restart", "org.nehost.filter"},
      {"rules", "list", "org.nehost.filter"},
      {"rules", "add", "org.nehost.filter", "ads.example.com", "--suffix"},
      {"rules", "remove", "org.nehost.filter", "ads.example.com"},
      {"watch"},
  };
  for (const std::vector<std::string>& command : commands) {
    std::vector<std::string> args = {"--runtime-dir", runtime_dir_};
    args.insert(args.end(), command.begin(), command.end());
    CommandResult result = Ctl(args);

    EXPECT_EQ(result.status.code, kUnavailable) << command[0];
    EXPECT_THAT(result.err, HasSubstr("nehostd is not running at " + socket_)) << command[0];
  }
}

TEST_F(NehostdAbsent, GlobalFlagsMayFollowTheCommand) {
  CommandResult result =
      Ctl({"lookup", "--json", "--runtime-dir", runtime_dir_, "org.nehost.filter"});

  EXPECT_EQ(result.status.code, kUnavailable);
  EXPECT_THAT(result.err, HasSubstr(socket_));
}

// RunCommand clears NEHOST_ variables, so env sets it for the one command.
TEST_F(NehostdAbsent, EnvironmentNamesTheRuntimeFolderWhenNoFlagDoes) {
  CommandResult result =
      RunCommand({"/usr/bin/env", "NEHOST_RUNTIME_DIR=" + runtime_dir_, NehostctlBinary(), "list"});

  EXPECT_EQ(result.status.code, kUnavailable);
  EXPECT_THAT(result.err, HasSubstr(socket_));
}

TEST(NehostctlUsage, UnknownCommandPointsToHelp) {
  CommandResult result = Ctl({"frobnicate"});

  EXPECT_EQ(result.status.code, kUsage);
  EXPECT_THAT(result.out, IsEmpty());
  EXPECT_EQ(result.err,
            "nehostctl: unknown command 'frobnicate'; run 'nehostctl --help' for usage\n");
}

TEST(NehostctlUsage, MissingArgumentIsNamed) {
  CommandResult result = Ctl({"rules", "add", "org.nehost.filter"});

  EXPECT_EQ(result.status.code, kUsage);
  EXPECT_EQ(result.err,
            "nehostctl: rules add: missing DOMAIN; run 'nehostctl help rules add' for usage\n");
}

TEST(NehostctlUsage, BadFlagsAreUsageErrors) {
  const std::vector<std::vector<std::string>> command_lines = {
      {"--timeout-ms", "soon", "list"},
      {"--timeout-ms", "0", "list"},
      {"list", "--frobnicate"},
      {"lookup", "--allow", "org.nehost.filter"},
      {"lookup", "org.nehost.filter", "extra"},
      {"rules", "remove", "org.nehost.filter", "a.com", "--suffix", "--exact"},
      {"rules"},
      {},
  };
  for (const std::vector<std::string>& args : command_lines) {
    CommandResult result = Ctl(args);

    EXPECT_EQ(result.status.code, kUsage) << ::testing::PrintToString(args);
    EXPECT_THAT(result.err, HasSubstr("for usage\n")) << ::testing::PrintToString(args);
  }
}

TEST(NehostctlUsage, RuntimeFolderTooLongForASocketIsRefusedUpFront) {
  CommandResult result = Ctl({"--runtime-dir", "/tmp/" + std::string(120, 'x'), "list"});

  EXPECT_EQ(result.status.code, kUsage);
  EXPECT_THAT(result.err, HasSubstr("a Unix socket path holds at most 107"));
}

TEST(NehostctlHelp, ListsEveryCommand) {
  CommandResult result = Ctl({"--help"});

  EXPECT_EQ(result.status.code, 0);
  EXPECT_THAT(result.out, HasSubstr("rules add NAME DOMAIN [--allow] [--suffix]"));
  EXPECT_THAT(result.out, HasSubstr("watch [NAME]"));
  EXPECT_THAT(result.out, HasSubstr("--runtime-dir DIR"));
}

TEST(NehostctlHelp, ExplainsOneCommandEitherWay) {
  CommandResult by_help = Ctl({"help", "rules", "add"});
  CommandResult by_flag = Ctl({"rules", "add", "--help"});

  EXPECT_EQ(by_help.status.code, 0);
  EXPECT_THAT(by_help.out, HasSubstr("--suffix  match DOMAIN and every name below it"));
  EXPECT_EQ(by_flag.out, by_help.out);
}

TEST(NehostctlHelp, ExplainsTheRulesGroup) {
  CommandResult result = Ctl({"help", "rules"});

  EXPECT_EQ(result.status.code, 0);
  EXPECT_THAT(result.out, HasSubstr("rules list NAME"));
  EXPECT_THAT(result.out, HasSubstr("rules remove NAME DOMAIN"));
}

TEST(NehostctlHelp, VersionIsTheStampedOne) {
  CommandResult result = Ctl({"--version"});

  EXPECT_EQ(result.status.code, 0);
  EXPECT_EQ(result.out, std::string("nehostctl ") + kVersion + "\n");
}

}  // namespace
}  // namespace nehost::testing
