#include "installer/in_use.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "common/process_info.h"

namespace nehost::installer {

std::vector<RunningProcess> RunningProcesses() {
  std::vector<RunningProcess> processes;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    // A process that exited since the listing, or that we may not inspect, runs nothing we
    // can know of.
    absl::StatusOr<std::string> executable = ReadProcessExecutable(pid);
    if (executable.ok()) processes.push_back({pid, *std::move(executable)});
  }
  return processes;
}

std::vector<pid_t> ProcessesRunningFrom(const std::string& folder,
                                        const std::vector<RunningProcess>& processes) {
  // The kernel reports resolved paths: a prefix reached through a symlink must be resolved
  // too, or nothing would ever match it.
  std::error_code error;
  std::filesystem::path canonical = std::filesystem::weakly_canonical(folder, error);
  const std::string below = (error ? folder : canonical.string()) + "/";

  std::vector<pid_t> pids;
  for (const RunningProcess& process : processes) {
    if (absl::StartsWith(process.executable, below)) pids.push_back(process.pid);
  }
  return pids;
}

}  // namespace nehost::installer
