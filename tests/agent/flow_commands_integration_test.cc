// nehostctl's flow commands as a user meets them: flows, evaluate, stats and decisions against
// a real nehostd hosting the real filter, and their usage errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/support/nehostd.h"
#include "tests/support/process.h"

namespace nehost::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kFilter[] = "org.nehost.filter";
constexpr int kFailure = 1;
constexpr int kUsage = 2;

CommandResult Ctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {NehostctlBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

class FlowCommands : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(nehostd_.Start()); }

  TempDir root_;
  Nehostd nehostd_{root_};
};

TEST_F(FlowCommands, RulesDecideWhatEvaluateAnswers) {
  CommandResult added =
      nehostd_.Ctl({"flows", "add", kFilter, "no-web", "--cidr", "10.0.0.0/8,192.0.2.0/24",
                    "--port", "80-443", "--protocol", "tcp", "--direction", "outbound"});
  ASSERT_EQ(added.status.code, 0) << added.err;
  EXPECT_EQ(
      added.out,
      "added flow rule no-web: deny tcp outbound ports 80-443 cidr 10.0.0.0/8,192.0.2.0/24\n");
  ASSERT_EQ(
      nehostd_.Ctl({"flows", "add", kFilter, "curl", "--allow", "--executable", "/usr/bin/curl"})
          .status.code,
      0);

  EXPECT_EQ(nehostd_.Ctl({"evaluate", kFilter, "--address", "10.1.2.3", "--port", "443"}).out,
            "deny (rule no-web)\n");
  EXPECT_EQ(nehostd_
                .Ctl({"evaluate", kFilter, "--address", "10.1.2.3", "--port", "443", "--executable",
                      "/usr/bin/curl"})
                .out,
            "allow (rule curl)\n");
  EXPECT_EQ(nehostd_.Ctl({"evaluate", kFilter, "--address", "10.1.2.3", "--port", "22"}).out,
            "allow (default action)\n");

  ASSERT_EQ(nehostd_.Ctl({"flows", "default", kFilter, "deny"}).status.code, 0);
  CommandResult by_default =
      nehostd_.Ctl({"evaluate", kFilter, "--address", "10.1.2.3", "--port", "22", "--json"});
  EXPECT_THAT(by_default.out, HasSubstr(R"("action":"deny")"));
  EXPECT_THAT(by_default.out, ::testing::Not(HasSubstr(R"("rule")")));

  CommandResult listed = nehostd_.Ctl({"flows", "list", kFilter, "--json"});
  ASSERT_EQ(listed.status.code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr(R"("default_action":"deny")"));
  EXPECT_THAT(listed.out, HasSubstr(R"("cidrs":["10.0.0.0/8","192.0.2.0/24"])"));

  CommandResult removed = nehostd_.Ctl({"flows", "remove", kFilter, "no-web"});
  EXPECT_EQ(removed.out, "removed flow rule no-web\n");
  EXPECT_EQ(nehostd_.Ctl({"flows", "remove", kFilter, "no-web"}).out,
            "no flow rule named no-web\n");
}

TEST_F(FlowCommands, BadRulesAndFlowsAreRefusedByTheFilterNamingTheCause) {
  CommandResult host_bits = nehostd_.Ctl({"flows", "add", kFilter, "bad", "--cidr", "10.0.0.1/8"});
  EXPECT_EQ(host_bits.status.code, kFailure);
  EXPECT_THAT(host_bits.err, HasSubstr("flows add org.nehost.filter: flow rule \"bad\": cidr "
                                       "\"10.0.0.1/8\" has host bits set past /8"));

  CommandResult relative =
      nehostd_.Ctl({"flows", "add", kFilter, "bad", "--executable", "bin/curl"});
  EXPECT_EQ(relative.status.code, kFailure);
  EXPECT_THAT(relative.err, HasSubstr("is not an absolute path"));

  CommandResult address = nehostd_.Ctl({"evaluate", kFilter, "--address", "10.0.0.256"});
  EXPECT_EQ(address.status.code, kFailure);
  EXPECT_THAT(address.err, HasSubstr("remote_address \"10.0.0.256\" is not an IPv4 or IPv6"));
  EXPECT_THAT(nehostd_.Ctl({"flows", "list", kFilter}).out, HasSubstr("default: allow"));
}

TEST_F(FlowCommands, StatsCountWhatWasEvaluated) {
  ASSERT_EQ(nehostd_.Ctl({"flows", "add", kFilter, "ssh", "--port", "22"}).status.code, 0);
  for (const char* port : {"22", "22", "80"}) {
    ASSERT_EQ(
        nehostd_.Ctl({"evaluate", kFilter, "--address", "192.0.2.1", "--port", port}).status.code,
        0);
  }

  CommandResult table = nehostd_.Ctl({"stats", kFilter});
  ASSERT_EQ(table.status.code, 0) << table.err;
  EXPECT_THAT(table.out, ::testing::ContainsRegex("\n  flows/evaluated +3\n"));
  EXPECT_THAT(table.out, ::testing::ContainsRegex("\n  flow/ssh +2\n"));

  CommandResult json = nehostd_.Ctl({"stats", kFilter, "--json"});
  ASSERT_EQ(json.status.code, 0) << json.err;
  for (const char* field :
       {R"("calls":{)", R"("evaluate_flow":3)", R"("flows/denied":2)",
        R"("rule_hits":{"flow/ssh":2})", R"("histograms":[)", R"("service":"org.nehost.filter")"}) {
    EXPECT_THAT(json.out, HasSubstr(field));
  }
}

TEST_F(FlowCommands, DecisionsPrintsEachDecisionUntilInterrupted) {
  const std::string log = root_ / "decisions.log";
  Subprocess decisions(
      {NehostctlBinary(), "--runtime-dir", nehostd_.runtime_dir, "decisions", kFilter, "--json"},
      {}, log);

  // The watcher starts on its own time: evaluate until a decision shows.
  ASSERT_TRUE(WaitUntil(
      [&] {
        nehostd_.Ctl(
            {"evaluate", kFilter, "--address", "192.0.2.9", "--port", "53", "--protocol", "udp"});
        return ReadFileOrEmpty(log).find("192.0.2.9") != std::string::npos;
      },
      absl::Seconds(20)))
      << ReadFileOrEmpty(log);
  decisions.Signal(SIGINT);
  std::optional<ExitStatus> exit = decisions.Wait(absl::Seconds(20));

  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 0);
  EXPECT_THAT(ReadFileOrEmpty(log),
              HasSubstr(R"("flow":{"direction":"outbound","id":0,"protocol":"udp",)"
                        R"("remote_address":"192.0.2.9","remote_port":53},"kind":"flow"})"));
}

TEST_F(FlowCommands, DecisionsFollowsTheServiceAcrossAnUpgrade) {
  const std::string log = root_ / "decisions.log";
  Subprocess decisions(
      {NehostctlBinary(), "--runtime-dir", nehostd_.runtime_dir, "decisions", kFilter, "--json"},
      {}, log);
  auto shows = [&](const std::string& address) {
    return WaitUntil(
        [&] {
          nehostd_.Ctl({"evaluate", kFilter, "--address", address, "--port", "443"});
          return ReadFileOrEmpty(log).find(address) != std::string::npos;
        },
        absl::Seconds(20));
  };
  ASSERT_TRUE(shows("192.0.2.1")) << ReadFileOrEmpty(log);

  CommandResult upgraded = nehostd_.Ctl({"upgrade", kFilter});
  ASSERT_EQ(upgraded.status.code, 0) << upgraded.err;

  EXPECT_TRUE(shows("192.0.2.2")) << ReadFileOrEmpty(log);
  EXPECT_THAT(ReadFileOrEmpty(log), HasSubstr("following the service's next generation"));
  decisions.Signal(SIGINT);
  std::optional<ExitStatus> exit = decisions.Wait(absl::Seconds(20));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code, 0);
}

TEST(FlowCommandUsage, BadValuesAreUsageErrorsNamingTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"flows", "add", kFilter, "x", "--port", "70000"}, "--port 70000 is not a number from 0"},
      {{"flows", "add", kFilter, "x", "--port", "9-"}, "--port  is not a number"},
      {{"flows", "add", kFilter, "x", "--protocol", "sctp"}, "--protocol sctp is not one of"},
      {{"flows", "add", kFilter, "x", "--direction", "up"}, "--direction up is not outbound"},
      {{"flows", "add", kFilter, "x", "--suffix"}, "--suffix needs --domain"},
      {{"flows", "add", kFilter, "x", "--allow", "--deny"}, "exclude each other"},
      {{"flows", "default", kFilter, "maybe"}, "maybe is not allow or deny"},
      {{"flows"}, "flows: missing list, add, remove or default"},
      {{"flows", "frobnicate"}, "unknown command 'flows frobnicate'"},
      {{"evaluate", kFilter, "--port", "-1"}, "--port -1 is not a number"},
      {{"evaluate", kFilter, "--pid", "x"}, "--pid x is not a number"},
      {{"decisions", kFilter, "--buffer", "70000"},
       "--buffer 70000 is not a number from 0 to 65536"},
      {{"flows", "add", kFilter}, "flows add: missing RULE"},
  };
  for (const auto& [args, message] : cases) {
    CommandResult result = Ctl(args);

    EXPECT_EQ(result.status.code, kUsage) << ::testing::PrintToString(args);
    EXPECT_THAT(result.err, HasSubstr(message)) << ::testing::PrintToString(args);
    EXPECT_THAT(result.out, IsEmpty());
  }
}

TEST(FlowCommandUsage, HelpListsTheFlowCommandsAndTellsDecisionsFromWatch) {
  CommandResult help = Ctl({"--help"});
  EXPECT_THAT(help.out, HasSubstr("flows add NAME RULE [--allow|--deny]"));
  EXPECT_THAT(help.out, HasSubstr("evaluate NAME"));
  EXPECT_THAT(help.out, HasSubstr("stats NAME"));
  EXPECT_THAT(help.out, HasSubstr("decisions NAME [--buffer N]"));

  CommandResult group = Ctl({"help", "flows"});
  EXPECT_EQ(group.status.code, 0);
  EXPECT_THAT(group.out, HasSubstr("flows default NAME ACTION"));
  EXPECT_THAT(Ctl({"help", "decisions"}).out, HasSubstr("Not to be confused with 'watch'"));
}

}  // namespace
}  // namespace nehost::testing
