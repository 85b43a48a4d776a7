#include "agent/progress.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace nehost::agent {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kStart = absl::FromUnixMillis(1714557600250);  // 2024-05-01T10:00:00.250Z

UpgradeProgress Step(const std::string& step, const std::string& message) {
  UpgradeProgress progress;
  progress.set_step(step);
  progress.set_message(message);
  progress.set_generation(4);
  progress.set_pid(4242);
  return progress;
}

UpgradeProgress Done() {
  UpgradeProgress done = Step("done", "upgraded to generation 4");
  done.set_done(true);
  done.set_succeeded(true);
  return done;
}

int Wide() { return 0; }

TEST(UpgradeView, LiveRewritesTheCurrentStepAndLeavesEachFinishedStepOnItsLine) {
  std::ostringstream out;
  UpgradeView view(out, ProgressStyle::kLive, Wide);

  view.Show(Step("launch", "starting generation 4"), kStart);
  view.Tick(kStart + absl::Milliseconds(100));
  view.Show(Step("launch", "started generation 4 pid 4242"), kStart + absl::Milliseconds(150));
  view.Show(Step("ready", "waiting for READY=1"), kStart + absl::Milliseconds(160));
  view.Show(Done(), kStart + absl::Milliseconds(400));

  EXPECT_EQ(out.str(),
            "\r\033[2Klaunch         0 ms  starting generation 4"
            "\r\033[2Klaunch       100 ms  starting generation 4"
            "\r\033[2Klaunch       150 ms  started generation 4 pid 4242"
            "\r\033[2Klaunch       160 ms  started generation 4 pid 4242\n"
            "\r\033[2Kready          0 ms  waiting for READY=1"
            "\r\033[2Kready        240 ms  waiting for READY=1\n");
}

TEST(UpgradeView, LiveFinishEndsAnOpenLineOnce) {
  std::ostringstream out;
  UpgradeView view(out, ProgressStyle::kLive, Wide);
  view.Show(Step("drain", "draining generation 3"), kStart);

  view.Finish(kStart + absl::Seconds(2));
  view.Finish(kStart + absl::Seconds(3));
  view.Tick(kStart + absl::Seconds(4));

  EXPECT_EQ(out.str(),
            "\r\033[2Kdrain          0 ms  draining generation 3"
            "\r\033[2Kdrain       2000 ms  draining generation 3\n");
}

TEST(UpgradeView, LiveLineIsCutToTheTerminalWidth) {
  std::ostringstream out;
  UpgradeView view(out, ProgressStyle::kLive, [] { return 30; });
  view.Show(Step("serving", "health check says SERVING on the control channel"), kStart);

  EXPECT_EQ(out.str(), "\r\033[2Kserving        0 ms  health c");
}

TEST(UpgradeView, PlainPrintsEachMessageWithItsTimeAndNoEscapes) {
  std::ostringstream out;
  UpgradeView view(out, ProgressStyle::kPlain, Wide);

  UpgradeProgress launch = Step("launch", "started generation 4 pid 4242");
  *launch.mutable_at() = TimeUtil::MillisecondsToTimestamp(1714557600250);
  view.Show(launch, kStart + absl::Hours(1));
  view.Tick(kStart + absl::Hours(1));
  view.Show(Step("switch", "registry names generation 4"), kStart + absl::Milliseconds(5));
  view.Show(Done(), kStart + absl::Milliseconds(9));
  view.Finish(kStart + absl::Milliseconds(9));

  EXPECT_EQ(out.str(),
            "10:00:00.250 launch   started generation 4 pid 4242\n"
            "10:00:00.255 switch   registry names generation 4\n"
            "10:00:00.259 done     upgraded to generation 4\n");
  EXPECT_THAT(out.str(), Not(HasSubstr("\033")));
}

TEST(UpgradeView, JsonPrintsOneObjectPerMessage) {
  std::ostringstream out;
  UpgradeView view(out, ProgressStyle::kJson, Wide);

  view.Show(Step("verify", "0.2.0 is installed"), kStart);
  view.Show(Done(), kStart);

  EXPECT_EQ(out.str(), R"({"at":"2024-05-01T10:00:00.250Z","done":false,"generation":4,)"
                       R"("message":"0.2.0 is installed","pid":4242,"step":"verify"})"
                       "\n"
                       R"({"at":"2024-05-01T10:00:00.250Z","done":true,"generation":4,)"
                       R"("message":"upgraded to generation 4","pid":4242,"rolled_back":false,)"
                       R"("step":"done","succeeded":true})"
                       "\n");
}

}  // namespace
}  // namespace nehost::agent
