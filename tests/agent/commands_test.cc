#include "agent/commands.h"

#include <gtest/gtest.h>

namespace nehost::agent {
namespace {

TEST(ExitCodeFor, NotFoundFromNehostdIsAnUnknownName) {
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kNotFound, Server::kSupervisor), ExitCode::kUnknownName);
}

TEST(ExitCodeFor, NotFoundFromAServiceIsAPlainFailure) {
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kNotFound, Server::kService), ExitCode::kFailure);
}

TEST(ExitCodeFor, CodesThatMeanTryLaterAreUnavailable) {
  for (Server server : {Server::kSupervisor, Server::kService}) {
    EXPECT_EQ(ExitCodeFor(absl::StatusCode::kUnavailable, server), ExitCode::kUnavailable);
    EXPECT_EQ(ExitCodeFor(absl::StatusCode::kDeadlineExceeded, server), ExitCode::kUnavailable);
    EXPECT_EQ(ExitCodeFor(absl::StatusCode::kFailedPrecondition, server), ExitCode::kUnavailable);
  }
}

TEST(ExitCodeFor, OkAndOtherCodes) {
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kOk, Server::kSupervisor), ExitCode::kOk);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kInvalidArgument, Server::kService), ExitCode::kFailure);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kInternal, Server::kSupervisor), ExitCode::kFailure);
  EXPECT_EQ(ExitCodeFor(absl::StatusCode::kUnimplemented, Server::kService), ExitCode::kFailure);
}

TEST(ExitCode, ValuesAreTheDocumentedOnes) {
  EXPECT_EQ(static_cast<int>(ExitCode::kOk), 0);
  EXPECT_EQ(static_cast<int>(ExitCode::kFailure), 1);
  EXPECT_EQ(static_cast<int>(ExitCode::kUsage), 2);
  EXPECT_EQ(static_cast<int>(ExitCode::kUnknownName), 3);
  EXPECT_EQ(static_cast<int>(ExitCode::kUnavailable), 4);
}

TEST(LookupWaitMs, EndsBeforeTheDeadline) {
  EXPECT_EQ(LookupWaitMs(absl::Seconds(10)), 9000u);
  EXPECT_EQ(LookupWaitMs(absl::Seconds(1)), 500u);
  EXPECT_EQ(LookupWaitMs(absl::Milliseconds(300)), 150u);
}

// 0 asks for nehostd's default wait, which could outlast a short deadline.
TEST(LookupWaitMs, IsNeverZero) { EXPECT_EQ(LookupWaitMs(absl::Milliseconds(1)), 1u); }

TEST(SupervisorSocketPath, IsInTheRuntimeFolder) {
  EXPECT_EQ(SupervisorSocketPath("/run/nehost"), "/run/nehost/nehostd.sock");
  EXPECT_EQ(SupervisorSocketPath("/run/nehost/"), "/run/nehost/nehostd.sock");
  EXPECT_EQ(SupervisorSocketPath("relative"), "relative/nehostd.sock");
}

}  // namespace
}  // namespace nehost::agent
