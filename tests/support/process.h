// Real processes and folders for tests: a temporary folder removed at the end, a child
// process that is always killed and reaped, a command run to completion with its output,
// and waiting on a condition with a deadline instead of sleeping.
//
// Not thread safe; each test owns its objects. Waits block up to the deadline given.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/unique_fd.h"

namespace nehost::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct ExitStatus {
  bool exited = false;  // false: killed by a signal
  int code = 0;         // exit code, or the signal number
};

class Subprocess {
 public:
  // Starts argv[0] with argv, nehostd-free environment plus `environment` ("K=V"), stdout and
  // stderr appended to log_path (or inherited when empty). Aborts the test on failure.
  Subprocess(const std::vector<std::string>& argv, const std::vector<std::string>& environment,
             const std::string& log_path);
  ~Subprocess();  // SIGKILL and reap, if still running.
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int signal);
  // The exit, or nullopt if the process is still running at the deadline.
  std::optional<ExitStatus> Wait(absl::Duration timeout);
  // False once the process has exited, reaped or not.
  bool running() const;

 private:
  pid_t pid_ = 0;
  UniqueFd pidfd_;
  bool reaped_ = false;
};

struct CommandResult {
  ExitStatus status;
  std::string out;
  std::string err;
};

// Runs a command to completion (killed after timeout) and returns its output.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         absl::Duration timeout = absl::Seconds(30));

// Polls predicate until it holds or the timeout passes; returns whether it held.
bool WaitUntil(const std::function<bool()>& predicate, absl::Duration timeout,
               absl::Duration interval = absl::Milliseconds(10));

// Whether pid names a live process (not a zombie).
bool ProcessAlive(pid_t pid);

// The processes whose environment holds the entry "K=V".
std::vector<pid_t> ProcessesWithEnvironment(const std::string& entry);

// The live (not zombie) processes whose process group is pgid.
std::vector<pid_t> LiveProcessesInGroup(pid_t pgid);

std::string ReadFileOrEmpty(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& contents);

}  // namespace nehost::testing
