// Caller credentials, end to end: nehostd and the filter it hosts decide from SO_PEERCRED
// who may call what, and nehostctl refuses to talk to a process squatting on their sockets.
// nehostctl runs as another user through setpriv, so these tests need root.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/unix_socket.h"
#include "nehost/filter/v1/filter.grpc.pb.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"
#include "tests/support/nehostd.h"
#include "tests/support/process.h"

namespace nehost::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kFilterName[] = "org.nehost.filter";
constexpr char kNobody[] = "65534";
constexpr char kReaders[] = "4242";
constexpr char kAdmins[] = "4243";
constexpr int kFailure = 1;

// argv run as uid and gid 65534, with only the given supplementary groups.
std::vector<std::string> AsNobody(const std::vector<std::string>& groups,
                                  const std::vector<std::string>& argv) {
  std::vector<std::string> command = {SETPRIV_BINARY, "--reuid", kNobody, "--regid", kNobody};
  if (groups.empty()) {
    command.push_back("--clear-groups");
  } else {
    command.insert(command.end(), {"--groups", absl::StrJoin(groups, ",")});
  }
  command.push_back("--");
  command.insert(command.end(), argv.begin(), argv.end());
  return command;
}

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to run nehostctl as another user";
    // Another user must be able to reach the sockets below the temporary folder.
    ASSERT_EQ(::chmod(root_.path().c_str(), 0755), 0);
    WriteFileOrDie(nehostd_.config_dir + "/nehostd.textproto",
                   absl::StrCat("access { admin_group: \"", kAdmins, "\" reader_group: \"",
                                kReaders, "\" }\n"));
    ASSERT_TRUE(nehostd_.Start());
    ASSERT_TRUE(nehostd_.Lookup(kFilterName).ok()) << nehostd_.Log();
  }

  CommandResult CtlAs(const std::vector<std::string>& groups,
                      const std::vector<std::string>& args) {
    std::vector<std::string> argv = {NehostctlBinary(), "--runtime-dir", nehostd_.runtime_dir};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(AsNobody(groups, argv));
  }

  std::string ServiceSocket() const {
    return nehostd_.runtime_dir + "/services/" + kFilterName + ".sock";
  }

  TempDir root_;
  Nehostd nehostd_{root_};
};

TEST_F(AccessTest, SocketsAreCreatedForTheReaderGroup) {
  for (const std::string& path : {nehostd_.runtime_dir + "/nehostd.sock", ServiceSocket()}) {
    struct stat info {};
    ASSERT_EQ(::stat(path.c_str(), &info), 0) << path;
    EXPECT_EQ(info.st_mode & 0777, 0660u) << path;
    EXPECT_EQ(info.st_gid, 4242u) << path;
  }
}

TEST_F(AccessTest, ReaderGroupMayLookUpAndReadButNotChange) {
  CommandResult lookup = CtlAs({kReaders}, {"lookup", kFilterName});
  EXPECT_EQ(lookup.status.code, 0) << lookup.err;
  CommandResult status = CtlAs({kReaders}, {"status", kFilterName});
  EXPECT_EQ(status.status.code, 0) << status.err;
  CommandResult rules = CtlAs({kReaders}, {"rules", "list", kFilterName});
  EXPECT_EQ(rules.status.code, 0) << rules.err;

  CommandResult add = CtlAs({kReaders}, {"rules", "add", kFilterName, "ads.example.com"});
  EXPECT_EQ(add.status.code, kFailure);
  EXPECT_THAT(add.err, HasSubstr("AddRule needs uid 0 or the admin group gid 4243"));
  CommandResult restart = CtlAs({kReaders}, {"restart", kFilterName});
  EXPECT_EQ(restart.status.code, kFailure);
  EXPECT_THAT(restart.err, HasSubstr("Restart needs uid 0 or the admin group gid 4243"));

  CommandResult listed = nehostd_.Ctl({"rules", "list", kFilterName});
  EXPECT_THAT(listed.out, ::testing::Not(HasSubstr("ads.example.com")));
}

TEST_F(AccessTest, AdminGroupMayChangeRules) {
  CommandResult add = CtlAs({kAdmins, kReaders}, {"rules", "add", kFilterName, "ads.example.com"});
  EXPECT_EQ(add.status.code, 0) << add.err;
  CommandResult listed = CtlAs({kAdmins, kReaders}, {"rules", "list", kFilterName});
  EXPECT_THAT(listed.out, HasSubstr("ads.example.com"));
}

TEST_F(AccessTest, ReaderGroupMayEvaluateFlowsButOnlyAdminsChangeFlowRules) {
  for (const std::vector<std::string>& reads :
       {std::vector<std::string>{"evaluate", kFilterName, "--address", "192.0.2.1", "--port",
                                 "443"},
        {"stats", kFilterName},
        {"flows", "list", kFilterName}}) {
    CommandResult read = CtlAs({kReaders}, reads);
    EXPECT_EQ(read.status.code, 0) << ::testing::PrintToString(reads) << read.err;
  }

  CommandResult add = CtlAs({kReaders}, {"flows", "add", kFilterName, "ssh", "--port", "22"});
  EXPECT_EQ(add.status.code, kFailure);
  EXPECT_THAT(add.err, HasSubstr("AddFlowRule needs uid 0 or the admin group gid 4243"));
  CommandResult deny = CtlAs({kReaders}, {"flows", "default", kFilterName, "deny"});
  EXPECT_EQ(deny.status.code, kFailure);
  EXPECT_THAT(deny.err, HasSubstr("SetDefaultFlowAction needs uid 0 or the admin group"));

  CommandResult admin =
      CtlAs({kAdmins, kReaders}, {"flows", "add", kFilterName, "ssh", "--port", "22"});
  EXPECT_EQ(admin.status.code, 0) << admin.err;
  EXPECT_EQ(
      CtlAs({kReaders}, {"evaluate", kFilterName, "--address", "192.0.2.1", "--port", "22"}).out,
      "deny (rule ssh)\n");
}

TEST_F(AccessTest, AnyoneElseCannotEvenConnect) {
  CommandResult lookup = CtlAs({}, {"lookup", kFilterName});
  EXPECT_NE(lookup.status.code, 0);
  EXPECT_THAT(lookup.err, HasSubstr("Permission denied"));
}

TEST_F(AccessTest, OversizedRequestsGetResourceExhausted) {
  grpc::ChannelArguments unlimited;
  unlimited.SetMaxSendMessageSize(-1);
  const std::string big(5 << 20, 'a');

  auto supervisor = nehost::supervisor::v1::Supervisor::NewStub(
      grpc::CreateCustomChannel("unix:" + nehostd_.runtime_dir + "/nehostd.sock",
                                grpc::InsecureChannelCredentials(), unlimited));
  grpc::ClientContext lookup_context;
  nehost::supervisor::v1::LookupRequest lookup;
  lookup.set_name(big);
  nehost::supervisor::v1::LookupResponse found;
  EXPECT_EQ(supervisor->Lookup(&lookup_context, lookup, &found).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  auto filter = nehost::filter::v1::Filter::NewStub(grpc::CreateCustomChannel(
      "unix:" + ServiceSocket(), grpc::InsecureChannelCredentials(), unlimited));
  grpc::ClientContext add_context;
  nehost::filter::v1::AddRuleRequest add;
  add.mutable_rule()->set_domain(big);
  nehost::filter::v1::AddRuleResponse added;
  EXPECT_EQ(filter->AddRule(&add_context, add, &added).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(AccessTest, ProcessSquattingOnTheServiceSocketIsRefused) {
  // Another process takes the path; nehostd's socket lives on, unreachable by name.
  ASSERT_EQ(::unlink(ServiceSocket().c_str()), 0);
  std::string squatter_state = root_ / "squatter";
  ASSERT_EQ(::mkdir(squatter_state.c_str(), 0700), 0);
  Subprocess squatter({FilterBinary(), "--listen", ServiceSocket(), "--state-dir", squatter_state},
                      {}, root_ / "squatter.log");
  ASSERT_TRUE(WaitUntil([&] { return ConnectUnix(ServiceSocket()).ok(); }, absl::Seconds(20)));

  CommandResult status = nehostd_.Ctl({"status", kFilterName});
  EXPECT_EQ(status.status.code, kFailure);
  EXPECT_THAT(status.err, HasSubstr(absl::StrCat("served by pid ", squatter.pid())));
  EXPECT_THAT(status.err, HasSubstr("not by the socket nehostd created for org.nehost.filter"));

  CommandResult add = nehostd_.Ctl({"rules", "add", kFilterName, "ads.example.com"});
  EXPECT_EQ(add.status.code, kFailure);
  EXPECT_EQ(ReadFileOrEmpty(squatter_state + "/rules.json"), "") << "the squatter got the rule";
}

class SquattedNehostdSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root, to run the squatter as another user";
    ASSERT_EQ(::chmod(root_.path().c_str(), 0755), 0);
    for (const std::string& folder : {runtime_dir_, state_dir_}) {
      ASSERT_EQ(::mkdir(folder.c_str(), 0755), 0);
      ASSERT_EQ(::chown(folder.c_str(), 65534, 65534), 0);
    }
  }

  TempDir root_;
  const std::string runtime_dir_ = root_ / "run";
  const std::string state_dir_ = root_ / "state";
};

TEST_F(SquattedNehostdSocket, ProcessOfAnotherUserIsRefused) {
  // Any gRPC server will do as the squatter: it answers whatever reaches it.
  const std::string socket = runtime_dir_ + "/nehostd.sock";
  Subprocess squatter(AsNobody({}, {FilterBinary(), "--listen", socket, "--state-dir", state_dir_}),
                      {}, root_ / "squatter.log");
  ASSERT_TRUE(WaitUntil([&] { return ConnectUnix(socket).ok(); }, absl::Seconds(20)))
      << ReadFileOrEmpty(root_ / "squatter.log");

  CommandResult list = RunCommand({NehostctlBinary(), "--runtime-dir", runtime_dir_, "list"});
  EXPECT_EQ(list.status.code, kFailure);
  EXPECT_THAT(list.err, HasSubstr("uid 65534"));
  EXPECT_THAT(list.err, HasSubstr("not by nehostd"));

  // Trusting that user on purpose reaches the squatter, which does not serve nehostd's API:
  // the check, not the squatter, refused the call above.
  CommandResult trusted = RunCommand(
      {NehostctlBinary(), "--runtime-dir", runtime_dir_, "--server-uid", kNobody, "list"});
  EXPECT_THAT(trusted.err, HasSubstr("does not implement"));
}

TEST_F(SquattedNehostdSocket, SquattersOnBothSocketsGetNothing) {
  // Another user holds both names a client would follow: nehostd.sock and the service's
  // socket. The first hop is refused, so the second squatter is never even reached.
  const std::string services = runtime_dir_ + "/services";
  ASSERT_EQ(::mkdir(services.c_str(), 0755), 0);
  ASSERT_EQ(::chown(services.c_str(), 65534, 65534), 0);
  const std::string nehostd_socket = runtime_dir_ + "/nehostd.sock";
  const std::string service_socket = services + "/org.nehost.filter.sock";
  const std::string service_state = state_dir_ + "/service";
  ASSERT_EQ(::mkdir(service_state.c_str(), 0700), 0);
  ASSERT_EQ(::chown(service_state.c_str(), 65534, 65534), 0);
  Subprocess fake_nehostd(
      AsNobody({}, {FilterBinary(), "--listen", nehostd_socket, "--state-dir", state_dir_}), {},
      root_ / "fake-nehostd.log");
  Subprocess fake_service(
      AsNobody({}, {FilterBinary(), "--listen", service_socket, "--state-dir", service_state}), {},
      root_ / "fake-service.log");
  for (const std::string& socket : {nehostd_socket, service_socket}) {
    ASSERT_TRUE(WaitUntil([&] { return ConnectUnix(socket).ok(); }, absl::Seconds(20))) << socket;
  }

  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"status", kFilterName}, {"rules", "add", kFilterName, "ads.example.com"}}) {
    std::vector<std::string> argv = {NehostctlBinary(), "--runtime-dir", runtime_dir_};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult result = RunCommand(argv);
    EXPECT_EQ(result.status.code, kFailure) << args[0];
    EXPECT_THAT(result.err, HasSubstr("not by nehostd")) << args[0];
  }
  EXPECT_EQ(ReadFileOrEmpty(service_state + "/rules.json"), "") << "a squatter got the rule";
  EXPECT_EQ(ReadFileOrEmpty(state_dir_ + "/rules.json"), "") << "a squatter got the rule";
}

}  // namespace
}  // namespace nehost::testing
