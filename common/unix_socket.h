// Unix and inet sockets as nehost creates them: close-on-exec, with errors that name the
// path and the cause.
//
// ListenUnix replaces a stale socket file left by a process that is gone, but refuses to
// replace any other kind of file. All calls are plain system calls and do not block, except
// ConnectUnix, which blocks until the peer accepts or the backlog is full.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace nehost {

// sun_path holds 108 bytes, one of them the terminating NUL.
inline constexpr size_t kMaxUnixPathLength = 107;

// OK when path fits in sockaddr_un; otherwise says how long it is and what fits.
absl::Status CheckUnixPath(const std::string& path);

// chown's "leave the group as it is".
inline constexpr gid_t kKeepGroup = static_cast<gid_t>(-1);

// A listening SOCK_STREAM socket bound to path, with the given permission bits and group.
absl::StatusOr<UniqueFd> ListenUnix(const std::string& path, mode_t mode = 0660,
                                    gid_t group = kKeepGroup);

// A connected SOCK_STREAM socket.
absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path);

// A bound SOCK_DGRAM socket that receives senders' credentials (SO_PASSCRED).
absl::StatusOr<UniqueFd> BindUnixDatagram(const std::string& path, mode_t mode = 0660,
                                          gid_t group = kKeepGroup);

enum class InetProtocol { kTcp, kUdp };

// A bound socket on "ADDRESS:PORT" ("127.0.0.1:5353", "[::1]:53"); a TCP one also listens.
absl::StatusOr<UniqueFd> BindInet(const std::string& address, InetProtocol protocol);

// Sets or clears O_NONBLOCK.
absl::Status SetNonBlocking(int fd, bool non_blocking);

// The credentials of the process at the other end of a connected Unix socket, as the kernel
// recorded them when the connection was made (for a client, when the server called listen).
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  // Supplementary groups (SO_PEERGROUPS).
  std::vector<gid_t> groups;

  // Whether gid is the primary group or one of the supplementary ones.
  bool InGroup(gid_t wanted) const;
  // Someone no policy admits: what a connection whose credentials cannot be read counts as.
  static PeerCredentials Nobody();
};
absl::StatusOr<PeerCredentials> GetPeerCredentials(int fd);

}  // namespace nehost
