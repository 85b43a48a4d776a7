#include "supervisor/control_client.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/control_channel.h"
#include "common/unix_socket.h"

namespace nehost::supervisor {

std::string ControlSocketPath(const std::string& runtime_dir, const std::string& name,
                              uint64_t generation) {
  return absl::StrCat(runtime_dir, "/gen/", name, ".", generation, ".ctl");
}

absl::StatusOr<ControlClient> ControlClient::ConnectAny(const std::string& path) {
  absl::StatusOr<UniqueFd> socket = ConnectUnix(path);
  if (!socket.ok()) {
    return absl::UnavailableError(
        absl::StrCat("control channel ", path, ": ", socket.status().message()));
  }
  // SO_PEERCRED on a connected Unix socket names the process that called listen(): the
  // generation itself, which binds its own control socket.
  absl::StatusOr<PeerCredentials> peer = GetPeerCredentials(socket->get());
  if (!peer.ok()) return peer.status();
  return ControlClient(std::move(*socket), path, peer->pid);
}

absl::StatusOr<ControlClient> ControlClient::Connect(const std::string& path, pid_t expected_pid) {
  absl::StatusOr<ControlClient> client = ConnectAny(path);
  if (!client.ok()) return client;
  if (client->peer_pid() != expected_pid) {
    return absl::PermissionDeniedError(
        absl::StrCat("control channel ", path, " belongs to pid ", client->peer_pid(),
                     ", not to the registered generation's pid ", expected_pid));
  }
  return client;
}

absl::StatusOr<ControlResponse> ControlClient::Call(const ControlRequest& request,
                                                    absl::Duration timeout,
                                                    std::vector<UniqueFd>* fds) {
  absl::Time deadline = absl::Now() + timeout;
  if (absl::Status sent = SendFrame(socket_.get(), request, {}, deadline); !sent.ok()) {
    return absl::Status(sent.code(), absl::StrCat(path_, ": ", sent.message()));
  }

  ControlResponse response;
  std::vector<UniqueFd> received;
  absl::Status read = ReceiveFrame(socket_.get(), &response, &received, deadline);
  if (!read.ok()) return absl::Status(read.code(), absl::StrCat(path_, ": ", read.message()));
  if (!response.error().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": ", response.error()));
  }
  if (fds != nullptr) {
    for (UniqueFd& fd : received) fds->push_back(std::move(fd));
  }
  return response;
}

}  // namespace nehost::supervisor
