// Starting extension processes, behind an interface that unit tests of the supervisor can
// fake.
//
// A launch gives the child the listening sockets at fd 3 onwards, the socket-activation
// variables (LISTEN_PID set to the child's own pid, which only the child knows), a fresh
// session so a terminal's Ctrl-C reaches nehostd alone, and an empty signal mask. It returns
// the pid and a pidfd, through which the caller watches and signals the process without
// racing pid reuse. Launch blocks until exec succeeded or failed, not longer.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace nehost::supervisor {

struct LaunchSpec {
  // argv[0], and what is run when executable_fd is not set.
  std::string executable;
  // When set, the file executed (execveat with AT_EMPTY_PATH): the very file that was opened
  // and checked, whatever the path names by then. Not owned.
  int executable_fd = -1;
  std::vector<std::string> args;
  // Added to (and overriding) nehostd's own environment. LISTEN_FDS, LISTEN_PID,
  // LISTEN_FDNAMES and NOTIFY_SOCKET are never inherited from nehostd.
  std::vector<std::pair<std::string, std::string>> environment;
  // Passed as fd 3, 4, ... in this order, named in LISTEN_FDNAMES. Not owned.
  std::vector<int> listen_fds;
  std::vector<std::string> listen_fd_names;
};

struct LaunchedProcess {
  pid_t pid = 0;
  UniqueFd pidfd;
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  virtual absl::StatusOr<LaunchedProcess> Launch(const LaunchSpec& spec) = 0;
};

// The real launcher, on Boost.Process.
std::unique_ptr<Launcher> MakeProcessLauncher();

// Checks that path names an executable regular file, with a message that says which part
// is wrong.
absl::Status CheckExecutable(const std::string& path);

}  // namespace nehost::supervisor
