// Socket activation as systemd defines it (sd_listen_fds(3)): the sockets a process inherits
// start at fd 3, LISTEN_FDS counts them, LISTEN_PID names the process they are meant for and
// LISTEN_FDNAMES names each of them, colon-separated.
//
// nehostd builds these variables for every generation; nehost-filter reads them. A process
// that was not meant to get the sockets (LISTEN_PID unset or someone else's) gets none and
// binds its own.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace nehost {

inline constexpr int kListenFdsStart = 3;

struct InheritedSocket {
  std::string name;
  int fd = -1;
};

// Parses the variables' values (nullptr for unset). Empty when they are not meant for
// self_pid; an error when they are meant for it but malformed.
absl::StatusOr<std::vector<InheritedSocket>> ParseListenFds(const char* listen_pid,
                                                            const char* listen_fds,
                                                            const char* listen_fdnames,
                                                            pid_t self_pid);

// Reads this process's variables, unsets them so that its own children do not take them,
// and marks each inherited fd close-on-exec.
absl::StatusOr<std::vector<InheritedSocket>> TakeListenFds();

// The socket named name, or -1.
int FindInheritedSocket(const std::vector<InheritedSocket>& sockets, const std::string& name);

// A name must be usable in LISTEN_FDNAMES: 1 to 255 printable ASCII characters, no colon.
bool IsValidFdName(const std::string& name);

}  // namespace nehost
