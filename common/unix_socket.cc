#include "common/unix_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace nehost {
namespace {

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  if (absl::Status fits = CheckUnixPath(path); !fits.ok()) return fits;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

// Whether some process accepts connections on the socket file at address.
bool SomeoneListens(const sockaddr_un& address) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) return false;
  int rc = ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  // EAGAIN: a listener whose backlog is full is still a listener.
  return rc == 0 || errno == EAGAIN;
}

// A socket file left by a process that exited still exists but refuses connections. Only
// such a file is removed: a live socket is somebody's service, and any other file at the
// path is somebody's data.
absl::Status RemoveStaleSocket(const std::string& path, const sockaddr_un& address) {
  struct stat info;
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "stat", path);
  }
  if (!S_ISSOCK(info.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrCat("bind ", path, ": a file that is not a socket is in the way"));
  }
  if (SomeoneListens(address)) {
    return absl::AlreadyExistsError(
        absl::StrCat("bind ", path, ": another process is listening on it"));
  }
  if (::unlink(path.c_str()) != 0) return ErrnoStatus(errno, "remove stale socket", path);
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> BindUnix(const std::string& path, int type, mode_t mode, gid_t group) {
  absl::StatusOr<sockaddr_un> address = UnixAddress(path);
  if (!address.ok()) return address.status();

  UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "create socket for", path);
  if (absl::Status removed = RemoveStaleSocket(path, *address); !removed.ok()) return removed;

  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&*address), sizeof *address) != 0) {
    return ErrnoStatus(errno, "bind", path);
  }
  if (::chmod(path.c_str(), mode) != 0) return ErrnoStatus(errno, "chmod", path);
  if (group != kKeepGroup && ::chown(path.c_str(), static_cast<uid_t>(-1), group) != 0) {
    return ErrnoStatus(errno, absl::StrCat("give group ", group, " the socket"), path);
  }
  return fd;
}

}  // namespace

absl::Status CheckUnixPath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("socket path is empty");
  if (path.size() > kMaxUnixPathLength) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is ", path.size(),
                                                   " bytes; a Unix socket path holds at most ",
                                                   kMaxUnixPathLength));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> ListenUnix(const std::string& path, mode_t mode, gid_t group) {
  absl::StatusOr<UniqueFd> fd = BindUnix(path, SOCK_STREAM, mode, group);
  if (!fd.ok()) return fd;
  if (::listen(fd->get(), SOMAXCONN) != 0) return ErrnoStatus(errno, "listen on", path);
  return fd;
}

absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path) {
  absl::StatusOr<sockaddr_un> address = UnixAddress(path);
  if (!address.ok()) return address.status();

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "create socket for", path);
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&*address), sizeof *address);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    absl::Status status = ErrnoStatus(err, "connect to", path);
    if (err == ECONNREFUSED || err == ENOENT || err == EAGAIN) {
      return absl::UnavailableError(status.message());
    }
    return status;
  }
  return fd;
}

absl::StatusOr<UniqueFd> BindUnixDatagram(const std::string& path, mode_t mode, gid_t group) {
  absl::StatusOr<UniqueFd> fd = BindUnix(path, SOCK_DGRAM, mode, group);
  if (!fd.ok()) return fd;
  int on = 1;
  if (::setsockopt(fd->get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    return ErrnoStatus(errno, "enable SO_PASSCRED on", path);
  }
  return fd;
}

absl::StatusOr<UniqueFd> BindInet(const std::string& address, InetProtocol protocol) {
  size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address ", address, " is not ADDRESS:PORT, for example 127.0.0.1:5353"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }

  sockaddr_storage storage{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    length = sizeof *v4;
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    length = sizeof *v6;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("address ", address, ": ", host, " is not an IPv4 or IPv6 address"));
  }

  int type = protocol == InetProtocol::kTcp ? SOCK_STREAM : SOCK_DGRAM;
  UniqueFd fd(::socket(storage.ss_family, type | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "create socket for", address);
  int on = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    return ErrnoStatus(errno, "bind", address);
  }
  if (protocol == InetProtocol::kTcp && ::listen(fd.get(), SOMAXCONN) != 0) {
    return ErrnoStatus(errno, "listen on", address);
  }
  return fd;
}

absl::Status SetNonBlocking(int fd, bool non_blocking) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, "fcntl", absl::StrCat("fd ", fd));
  flags = non_blocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) != 0) return ErrnoStatus(errno, "fcntl", absl::StrCat("fd ", fd));
  return absl::OkStatus();
}

bool PeerCredentials::InGroup(gid_t wanted) const {
  return gid == wanted || std::find(groups.begin(), groups.end(), wanted) != groups.end();
}

PeerCredentials PeerCredentials::Nobody() {
  constexpr uid_t kNobody = 65534;
  return PeerCredentials{0, kNobody, kNobody, {}};
}

absl::StatusOr<PeerCredentials> GetPeerCredentials(int fd) {
  ucred credentials{};
  socklen_t length = sizeof credentials;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    return ErrnoStatus(errno, "read SO_PEERCRED of", absl::StrCat("fd ", fd));
  }
  PeerCredentials peer{credentials.pid, credentials.uid, credentials.gid, {}};

  // The kernel answers ERANGE with the size it needs when the buffer is too small.
  std::vector<gid_t> groups(16);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      peer.groups = std::move(groups);
      return peer;
    }
    if (errno != ERANGE) break;
    groups.resize(bytes / sizeof(gid_t));
  }
  return ErrnoStatus(errno, "read SO_PEERGROUPS of", absl::StrCat("fd ", fd));
}

}  // namespace nehost
