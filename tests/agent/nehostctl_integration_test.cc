// The built nehostctl as a user meets it: against a real nehostd hosting the real filter,
// when nehostd is not there, and when the command line is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
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

constexpr int kUnknownName = 3;

class NehostctlWithNehostd : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(nehostd_.Start()); }

  TempDir root_;
  Nehostd nehostd_{root_};
};

TEST_F(NehostctlWithNehostd, LookupJsonHasTheDocumentedFields) {
  CommandResult result = nehostd_.Ctl({"lookup", "org.nehost.filter", "--json"});
  ASSERT_EQ(result.status.code, 0) << result.err;
  for (const char* field : {"\"name\":\"org.nehost.filter\"", "\"generation\":1", "\"pid\":",
                            "\"version\":\"", "\"state\":\"ready\"", "\"endpoint\":\"unix:"}) {
    EXPECT_THAT(result.out, HasSubstr(field));
  }
  EXPECT_EQ(std::count(result.out.begin(), result.out.end(), '\n'), 1) << "one object, one line";
}

TEST_F(NehostctlWithNehostd, UnknownNameExitsThreeNamingTheService) {
  CommandResult result = nehostd_.Ctl({"lookup", "org.example.nothing"});
  EXPECT_EQ(result.status.code, kUnknownName);
  EXPECT_THAT(result.err, HasSubstr("org.example.nothing"));
  EXPECT_THAT(result.err, HasSubstr("unknown service name"));
  EXPECT_THAT(result.out, IsEmpty());
}

TEST_F(NehostctlWithNehostd, RulesGoThroughTheLookedUpEndpoint) {
  ASSERT_EQ(nehostd_.Ctl({"rules", "add", "org.nehost.filter", "ads.example.com"}).status.code, 0);
  ASSERT_EQ(
      nehostd_.Ctl({"rules", "add", "org.nehost.filter", "example.org", "--allow", "--suffix"})
          .status.code,
      0);

  CommandResult listed = nehostd_.Ctl({"rules", "list", "org.nehost.filter"});
  ASSERT_EQ(listed.status.code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("ads.example.com"));
  EXPECT_THAT(listed.out, HasSubstr("allow"));

  CommandResult removed = nehostd_.Ctl({"rules", "remove", "org.nehost.filter", "ads.example.com"});
  ASSERT_EQ(removed.status.code, 0) << removed.err;
  EXPECT_THAT(nehostd_.Ctl({"rules", "list", "org.nehost.filter"}).out,
              ::testing::Not(HasSubstr("ads.example.com")));
}

TEST_F(NehostctlWithNehostd, RestartStartsANewGenerationThatStatusReports) {
  CommandResult restarted = nehostd_.Ctl({"restart", "org.nehost.filter"});
  ASSERT_EQ(restarted.status.code, 0) << restarted.err;

  CommandResult status = nehostd_.Ctl({"status", "org.nehost.filter", "--json"});
  ASSERT_EQ(status.status.code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("\"generation\":2"));
}

TEST(NehostctlCrashLoop, LookupExitsFourWithTheReason) {
  TempDir root;
  Nehostd nehostd(root);
  nehostd.WriteDefinition("crasher.textproto",
                          "name: \"org.example.crasher\"\nexecutable: \"/bin/false\"\n"
                          "restart { initial_backoff_ms: 10 crash_loop_exits: 2 }\n");
  ASSERT_TRUE(nehostd.Start());
  ASSERT_TRUE(nehostd.WaitForState("org.example.crasher", supervisor::v1::FAILED));

  CommandResult result = nehostd.Ctl({"lookup", "org.example.crasher"});
  EXPECT_EQ(result.status.code, kUnavailable);
  EXPECT_THAT(result.err, HasSubstr("org.example.crasher"));
  EXPECT_THAT(result.err, HasSubstr("crash loop"));
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
      {"upgrade", "org.nehost.filter"},
      {"upgrade", "org.nehost.filter", "--to", "0.2.0"},
      {"doctor", "org.nehost.filter"},
      {"reexec"},
  };
  for (const std::vector<std::string>& command : commands) {
    std::vector<std::string> args = {"--runtime-dir", runtime_dir_};
    args.insert(args.end(), command.begin(), command.end());
    CommandResult result = Ctl(args);

    EXPECT_EQ(result.status.code, kUnavailable) << command[0];
    EXPECT_THAT(result.err, HasSubstr("nehostd is not running at " + socket_)) << command[0];
  }
}

TEST_F(NehostdAbsent, UpgradeSaysNehostdIsNotRunningAndPrintsNoProgress) {
  CommandResult result = Ctl({"--runtime-dir", runtime_dir_, "upgrade", "org.nehost.filter"});

  EXPECT_EQ(result.status.code, kUnavailable);
  EXPECT_THAT(result.out, IsEmpty());
  EXPECT_EQ(result.err, "nehostctl: upgrade org.nehost.filter: nehostd is not running at " +
                            socket_ + ": No such file or directory\n");
}

TEST_F(NehostdAbsent, ReexecDoesNotClaimARestartItCouldNotAskFor) {
  CommandResult result = Ctl({"--runtime-dir", runtime_dir_, "reexec", "--json"});

  EXPECT_EQ(result.status.code, kUnavailable);
  EXPECT_THAT(result.out, IsEmpty());
  EXPECT_THAT(result.err, HasSubstr("nehostctl: reexec: nehostd is not running at " + socket_));
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
      {"upgrade"},
      {"upgrade", "org.nehost.filter", "--to"},
      {"upgrade", "org.nehost.filter", "--to="},
      {"upgrade", "org.nehost.filter", "--frobnicate"},
      {"upgrade", "org.nehost.filter", "--allow"},
      {"upgrade", "org.nehost.filter", "0.2.0"},
      {"doctor"},
      {"doctor", "org.nehost.filter", "--to", "0.2.0"},
      {"reexec", "org.nehost.filter"},
      {"reexec", "--force"},
      {},
  };
  for (const std::vector<std::string>& args : command_lines) {
    CommandResult result = Ctl(args);

    EXPECT_EQ(result.status.code, kUsage) << ::testing::PrintToString(args);
    EXPECT_THAT(result.err, HasSubstr("for usage\n")) << ::testing::PrintToString(args);
  }
}

TEST(NehostctlUsage, NewCommandsNameWhatIsWrong) {
  EXPECT_EQ(Ctl({"upgrade"}).err,
            "nehostctl: upgrade: missing NAME; run 'nehostctl help upgrade' for usage\n");
  EXPECT_EQ(Ctl({"doctor"}).err,
            "nehostctl: doctor: missing NAME; run 'nehostctl help doctor' for usage\n");
  EXPECT_EQ(Ctl({"upgrade", "org.nehost.filter", "--to"}).err,
            "nehostctl: upgrade: --to needs a VERSION; run 'nehostctl help upgrade' for usage\n");
  EXPECT_EQ(Ctl({"upgrade", "org.nehost.filter", "--frobnicate"}).err,
            "nehostctl: upgrade: unknown flag --frobnicate; run 'nehostctl help upgrade' for "
            "usage\n");
  EXPECT_EQ(Ctl({"reexec", "--force"}).err,
            "nehostctl: reexec: unknown flag --force; run 'nehostctl help reexec' for usage\n");
}

// The version is the flag's value, not a second argument, wherever the flag stands.
TEST(NehostctlUsage, UpgradeTakesTheVersionEitherWay) {
  TempDir root;
  const std::string runtime_dir = root / "runtime";
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"upgrade", "--to", "0.2.0", "org.nehost.filter"},
                                             {"upgrade", "org.nehost.filter", "--to=0.2.0"}}) {
    std::vector<std::string> line = {"--runtime-dir", runtime_dir};
    line.insert(line.end(), args.begin(), args.end());
    CommandResult result = Ctl(line);

    EXPECT_EQ(result.status.code, kUnavailable) << ::testing::PrintToString(args) << result.err;
    EXPECT_THAT(result.err, HasSubstr("nehostd is not running")) << ::testing::PrintToString(args);
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
  EXPECT_THAT(result.out, HasSubstr("rules add NAME DOMAIN [--allow|--sinkhole] [--suffix]"));
  EXPECT_THAT(result.out, HasSubstr("watch [NAME]"));
  EXPECT_THAT(result.out, HasSubstr("upgrade NAME [--to VERSION]"));
  EXPECT_THAT(result.out, HasSubstr("doctor NAME"));
  EXPECT_THAT(result.out, HasSubstr("reexec"));
  EXPECT_THAT(result.out, HasSubstr("--runtime-dir DIR"));
}

TEST(NehostctlHelp, ExplainsOneCommandEitherWay) {
  CommandResult by_help = Ctl({"help", "rules", "add"});
  CommandResult by_flag = Ctl({"rules", "add", "--help"});

  EXPECT_EQ(by_help.status.code, 0);
  EXPECT_THAT(by_help.out, HasSubstr("--suffix    match DOMAIN and every name below it"));
  EXPECT_EQ(by_flag.out, by_help.out);
}

TEST(NehostctlHelp, NewCommandsDocumentTheirExitStatus) {
  CommandResult upgrade = Ctl({"help", "upgrade"});
  EXPECT_EQ(upgrade.status.code, 0);
  EXPECT_THAT(upgrade.out, HasSubstr("--to VERSION"));
  EXPECT_THAT(upgrade.out, HasSubstr("4 the upgrade failed and was rolled back"));

  CommandResult doctor = Ctl({"doctor", "--help"});
  EXPECT_EQ(doctor.status.code, 0);
  EXPECT_THAT(doctor.out, HasSubstr("4 something is wrong"));

  CommandResult reexec = Ctl({"help", "reexec"});
  EXPECT_EQ(reexec.status.code, 0);
  EXPECT_THAT(reexec.out, HasSubstr("services keep running"));
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

namespace nehost::testing {
namespace {

// Bad input of every kind through the real programs: each gets a clear error, and the rules
// in force stay.
class BadInputTest : public NehostctlWithNehostd {
 protected:
  void SetUp() override {
    NehostctlWithNehostd::SetUp();
    ASSERT_EQ(nehostd_.Ctl({"rules", "add", kService, "ads.example.com"}).status.code, 0);
  }

  void ExpectRulesIntact() {
    CommandResult listed = nehostd_.Ctl({"rules", "list", kService, "--json"});
    ASSERT_EQ(listed.status.code, 0) << listed.err;
    EXPECT_THAT(listed.out, HasSubstr("\"domain\":\"ads.example.com\""));
  }

  static constexpr char kService[] = "org.nehost.filter";
};

TEST_F(BadInputTest, RuleThatIsNeitherADomainNorAnythingElseIsRefused) {
  for (const std::string domain :
       {"10.0.0.0/8", "192.168.1.1", "2001:db8::/32", "ads example.com", "ads-.example.com", "a..b",
        "b\xc3\xbc"
        "cher.de"}) {
    CommandResult added = nehostd_.Ctl({"rules", "add", kService, domain});
    EXPECT_EQ(added.status.code, 1) << domain << ": " << added.err;
    EXPECT_THAT(added.err, HasSubstr("invalid domain")) << domain;
  }
  ExpectRulesIntact();
}

TEST_F(BadInputTest, NamesThatAreNotUtf8AreRefusedBeforeAnyCall) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"lookup", "org.nehost.\xff"},
                                             {"rules", "add", kService, "caf\xe9.example"},
                                             {"rules", "remove", kService, "caf\xe9.example"},
                                             {"upgrade", "org.\xc3"},
                                             {"flows", "add", kService, "r", "--domain=caf\xe9.de"},
                                             {"evaluate", kService, "--executable", "/bin/\xff"},
                                             {"upgrade", kService, "--to", "2.\xff"}}) {
    CommandResult result = nehostd_.Ctl(args);
    EXPECT_EQ(result.status.code, kUsage) << args[0] << ": " << result.err;
    EXPECT_THAT(result.err, HasSubstr("is not UTF-8")) << args[0];
  }
  ExpectRulesIntact();
}

TEST_F(BadInputTest, ARawClientSendingInvalidUtf8ChangesNothing) {
  // A client that skips nehostctl's check: protobuf refuses to parse the request.
  auto filter = nehostd_.FilterStub(nehostd_.Lookup(kService)->endpoint());
  grpc::ClientContext context;
  nehost::filter::v1::AddRuleRequest request;
  request.mutable_rule()->set_domain("caf\xe9.example");
  nehost::filter::v1::AddRuleResponse response;
  grpc::Status added = filter->AddRule(&context, request, &response);
  EXPECT_FALSE(added.ok());
  ExpectRulesIntact();
  EXPECT_TRUE(nehostd_.Lookup(kService).ok());
}

TEST_F(BadInputTest, ServiceDefinitionWithANameThatIsNotUtf8IsSkipped) {
  nehostd_.Stop();
  nehostd_.WriteDefinition("bad.textproto", "name: \"org.caf\xe9\"\nexecutable: \"/bin/true\"\n");
  nehostd_.WriteDefinition("good.textproto",
                           "name: \"org.nehost.filter\"\nexecutable: \"" + FilterBinary() + "\"\n");
  ASSERT_TRUE(nehostd_.Start());
  EXPECT_TRUE(nehostd_.Lookup(kService).ok()) << nehostd_.Log();
  EXPECT_THAT(nehostd_.Log(), HasSubstr("bad.textproto"));
  ExpectRulesIntact();
}

}  // namespace
}  // namespace nehost::testing
