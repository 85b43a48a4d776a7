// Failpoints: named places in the upgrade, adoption and restart paths where a test can make
// a process crash, fail or stall, deterministically.
//
// Armed through the environment, read once at start:
//
//   NEHOST_FAILPOINTS=upgrade.after_switch=kill,adopt.before_take_listeners=delay:500
//
// Actions: "kill" (SIGKILL to this process), "exit" (_exit(3)), "error" (the point reports
// failure, and the caller fails that step as if the world had), "delay:MS" (sleep, then go
// on). A process with nothing armed pays one load of a flag per point. Thread safe.
//
//   if (Failpoint("upgrade.before_switch")) return absl::InternalError("failpoint");
#pragma once

#include <atomic>
#include <string>

namespace nehost {

namespace internal {
extern std::atomic<bool> failpoints_armed;
bool HitFailpoint(const char* name);
}  // namespace internal

// Whether the point asks the caller to fail; may not return at all ("kill", "exit").
inline bool Failpoint(const char* name) {
  if (!internal::failpoints_armed.load(std::memory_order_relaxed)) return false;
  return internal::HitFailpoint(name);
}

// Reads NEHOST_FAILPOINTS; call once at the start of main. Bad entries are logged and
// ignored.
void InitFailpoints();

}  // namespace nehost
