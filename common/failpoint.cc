#include "common/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace nehost {
namespace internal {

std::atomic<bool> failpoints_armed{false};

namespace {

// Written once by InitFailpoints before any thread reads it.
std::map<std::string, std::string>& Armed() {
  static auto* armed = new std::map<std::string, std::string>();
  return *armed;
}

}  // namespace

bool HitFailpoint(const char* name) {
  auto found = Armed().find(name);
  if (found == Armed().end()) return false;
  const std::string& action = found->second;

  spdlog::warn("failpoint hit name={} action={}", name, action);
  if (action == "kill") ::kill(::getpid(), SIGKILL);
  if (action == "exit") ::_exit(3);
  if (action == "error") return true;
  absl::string_view delay(action);
  int64_t milliseconds = 0;
  if (absl::ConsumePrefix(&delay, "delay:") && absl::SimpleAtoi(delay, &milliseconds)) {
    absl::SleepFor(absl::Milliseconds(milliseconds));
  }
  return false;
}

}  // namespace internal

void InitFailpoints() {
  const char* spec = std::getenv("NEHOST_FAILPOINTS");
  if (spec == nullptr || *spec == '\0') return;

  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> point = absl::StrSplit(entry, absl::MaxSplits('=', 1));
    bool known_action = point.second == "kill" || point.second == "exit" ||
                        point.second == "error" || absl::StartsWith(point.second, "delay:");
    if (point.first.empty() || !known_action) {
      spdlog::warn("ignoring failpoint \"{}\": want NAME=kill|exit|error|delay:MS", entry);
      continue;
    }
    internal::Armed()[point.first] = point.second;
    spdlog::warn("failpoint armed name={} action={}", point.first, point.second);
  }
  internal::failpoints_armed.store(!internal::Armed().empty());
}

}  // namespace nehost
