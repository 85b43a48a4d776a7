// Which processes run from which folder, as /proc/PID/exe tells it: how the installer knows
// that a version folder is still in use and must stay.
//
// Only the executable counts, not a process's working folder or the files it maps. A
// process whose executable cannot be read (a kernel thread, or another user's process when
// not run as root) is left out. Stateless and safe from any thread; RunningProcesses reads
// procfs and blocks on nothing else.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace nehost::installer {

struct RunningProcess {
  pid_t pid = 0;
  // The target of /proc/PID/exe; "PATH (deleted)" when the file was removed or replaced.
  std::string executable;
};

// Every process whose executable this process may read, at the time of the scan.
std::vector<RunningProcess> RunningProcesses();

// The pids among processes whose executable lies below folder. The folder is compared in
// canonical form, as the kernel reports executables; a removed executable's old path counts.
std::vector<pid_t> ProcessesRunningFrom(const std::string& folder,
                                        const std::vector<RunningProcess>& processes);

}  // namespace nehost::installer
