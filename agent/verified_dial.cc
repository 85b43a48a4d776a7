#include "agent/verified_dial.h"

#include <fcntl.h>
#include <grpcpp/create_channel_posix.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/grpc_server.h"

namespace nehost::agent {

std::vector<uid_t> DefaultServerUids() {
  std::vector<uid_t> uids = {0};
  if (::getuid() != 0) uids.push_back(::getuid());
  return uids;
}

absl::Status CheckListener(const std::string& path, const PeerCredentials& listener,
                           const ExpectedListener& expected) {
  const bool uid_ok =
      std::find(expected.uids.begin(), expected.uids.end(), listener.uid) != expected.uids.end();
  const bool pid_ok = expected.pid == 0 || listener.pid == expected.pid;
  if (uid_ok && pid_ok) return absl::OkStatus();

  std::string wanted = absl::StrCat("uid ", absl::StrJoin(expected.uids, " or uid "));
  if (expected.pid != 0) absl::StrAppend(&wanted, ", pid ", expected.pid);
  return absl::PermissionDeniedError(absl::StrCat(
      "refusing ", path, ": it is served by pid ", listener.pid, " (uid ", listener.uid,
      "), not by ", expected.what, " (", wanted, "); another process holds the path"));
}

namespace {

// Waits between tries while the listener's backlog is full.
constexpr absl::Duration kFullBacklogRetry = absl::Milliseconds(5);

// A Unix stream connect never completes later: it succeeds, fails, or finds the backlog full
// (EAGAIN on a non-blocking socket), which is tried again until the deadline.
absl::StatusOr<UniqueFd> ConnectBefore(const std::string& path, absl::Time deadline) {
  if (absl::Status fits = CheckUnixPath(path); !fits.ok()) return fits;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "create socket for", path);
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      return fd;
    }
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN && absl::Now() + kFullBacklogRetry < deadline) {
      absl::SleepFor(kFullBacklogRetry);
      continue;
    }
    absl::Status failed = ErrnoStatus(err, "connect to", path);
    if (err == ECONNREFUSED || err == ENOENT || err == EAGAIN) {
      return absl::UnavailableError(failed.message());
    }
    return failed;
  }
}

}  // namespace

absl::StatusOr<VerifiedChannel> DialVerified(const std::string& path,
                                             const ExpectedListener& expected,
                                             absl::Time deadline) {
  absl::StatusOr<UniqueFd> socket = ConnectBefore(path, deadline);
  if (!socket.ok()) return socket.status();
  absl::StatusOr<PeerCredentials> listener = GetPeerCredentials(socket->get());
  if (!listener.ok()) return listener.status();
  if (absl::Status checked = CheckListener(path, *listener, expected); !checked.ok()) {
    return checked;
  }

  // The socket is non-blocking, as gRPC's fd channels need.
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxMessageBytes);
  arguments.SetMaxSendMessageSize(kMaxMessageBytes);
  UniqueFd watch(::fcntl(socket->get(), F_DUPFD_CLOEXEC, 0));
  if (!watch) return ErrnoStatus(errno, "duplicate connection to", path);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomInsecureChannelFromFd(
      absl::StrCat("unix:", path), socket->Release(), arguments);
  return VerifiedChannel{std::move(channel), *std::move(listener), std::move(watch)};
}

bool ConnectionClosed(int connection) { return WaitForClose(connection, absl::InfinitePast()); }

bool WaitForClose(int connection, absl::Time deadline) {
  if (connection < 0) return true;
  for (;;) {
    // POLLIN is left out: unread data belongs to gRPC, which reads from the other descriptor.
    pollfd polled{connection, POLLRDHUP, 0};
    const absl::Duration left = std::max(deadline - absl::Now(), absl::ZeroDuration());
    const int ready = ::poll(&polled, 1, static_cast<int>(absl::ToInt64Milliseconds(left)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return true;
    return (polled.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }
}

}  // namespace nehost::agent
