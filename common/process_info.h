// What /proc says about a process: enough to tell one process from a later one that reuses
// its pid. Reads are cheap and do not block on anything but procfs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace nehost {

// Field 22 of /proc/PID/stat: the time the process started, in clock ticks after boot.
// NOT_FOUND when no such process exists.
absl::StatusOr<uint64_t> ReadProcessStartTime(pid_t pid);

// The target of /proc/PID/exe. A binary that was replaced or removed while running reads as
// "PATH (deleted)"; that suffix is kept, so a comparison with the registered path fails.
absl::StatusOr<std::string> ReadProcessExecutable(pid_t pid);

// Parses the contents of a /proc/PID/stat file; the command name may hold spaces and ')'.
absl::StatusOr<uint64_t> ParseStartTimeFromStat(const std::string& stat);

}  // namespace nehost
