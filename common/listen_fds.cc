#include "common/listen_fds.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"

namespace nehost {

absl::StatusOr<std::vector<InheritedSocket>> ParseListenFds(const char* listen_pid,
                                                            const char* listen_fds,
                                                            const char* listen_fdnames,
                                                            pid_t self_pid) {
  if (listen_pid == nullptr || listen_fds == nullptr) return std::vector<InheritedSocket>{};

  int64_t pid = 0;
  if (!absl::SimpleAtoi(listen_pid, &pid) || pid <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("LISTEN_PID=", listen_pid, " is not a pid"));
  }
  if (pid != self_pid) return std::vector<InheritedSocket>{};

  int64_t count = 0;
  if (!absl::SimpleAtoi(listen_fds, &count) || count < 0 || count > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("LISTEN_FDS=", listen_fds, " is not a count of sockets"));
  }

  std::vector<std::string> names;
  if (listen_fdnames != nullptr) {
    names = absl::StrSplit(listen_fdnames, ':');
    if (static_cast<int64_t>(names.size()) != count) {
      return absl::InvalidArgumentError(
          absl::StrCat("LISTEN_FDNAMES names ", names.size(), " sockets but LISTEN_FDS=", count));
    }
  }

  std::vector<InheritedSocket> sockets;
  for (int64_t i = 0; i < count; ++i) {
    std::string name = names.empty() ? "unknown" : names[i];
    sockets.push_back({name, kListenFdsStart + static_cast<int>(i)});
  }
  return sockets;
}

absl::StatusOr<std::vector<InheritedSocket>> TakeListenFds() {
  absl::StatusOr<std::vector<InheritedSocket>> sockets =
      ParseListenFds(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                     std::getenv("LISTEN_FDNAMES"), ::getpid());
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!sockets.ok()) return sockets;

  for (const InheritedSocket& socket : *sockets) {
    const std::string named = absl::StrCat(socket.name, " (fd ", socket.fd, ")");
    int flags = ::fcntl(socket.fd, F_GETFD);
    if (flags < 0) return ErrnoStatus(errno, "inspect inherited socket", named);
    // A parent that let the fd close on exec leaves the number to whatever this process
    // opened first, which must not be served as a socket.
    struct stat info {};
    if (::fstat(socket.fd, &info) != 0) {
      return ErrnoStatus(errno, "inspect inherited socket", named);
    }
    if (!S_ISSOCK(info.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("inherited ", named, " is not a socket"));
    }
    ::fcntl(socket.fd, F_SETFD, flags | FD_CLOEXEC);
  }
  return sockets;
}

int FindInheritedSocket(const std::vector<InheritedSocket>& sockets, const std::string& name) {
  for (const InheritedSocket& socket : sockets) {
    if (socket.name == name) return socket.fd;
  }
  return -1;
}

bool IsValidFdName(const std::string& name) {
  if (name.empty() || name.size() > 255) return false;
  for (char c : name) {
    if (c <= ' ' || c > '~' || c == ':') return false;
  }
  return true;
}

}  // namespace nehost
