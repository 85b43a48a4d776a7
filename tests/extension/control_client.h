// The test's side of a control channel (control.proto): connect to a generation's control
// socket and make calls on it as nehostd would, with deadlines. Not thread safe.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/control_channel.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "nehost/supervisor/v1/control.pb.h"

namespace nehost::filter::testing {

using ControlRequest = nehost::supervisor::v1::ControlRequest;
using ControlResponse = nehost::supervisor::v1::ControlResponse;

inline constexpr absl::Duration kControlDeadline = absl::Seconds(20);

inline ControlRequest HealthRequest() {
  ControlRequest request;
  request.mutable_health();
  return request;
}

inline ControlRequest TakeListenersRequest() {
  ControlRequest request;
  request.mutable_take_listeners();
  return request;
}

inline ControlRequest DrainRequest(uint32_t grace_ms) {
  ControlRequest request;
  request.mutable_drain()->set_grace_ms(grace_ms);
  return request;
}

inline ControlRequest ImportStateRequest(
    const std::vector<std::pair<std::string, uint64_t>>& counters) {
  ControlRequest request;
  auto* imported = request.mutable_import_state()->mutable_state()->mutable_counters();
  for (const auto& [method, count] : counters) (*imported)[method] = count;
  return request;
}

// One request and its response; descriptors that came with the response go to *fds.
inline absl::StatusOr<ControlResponse> ControlCall(int socket, const ControlRequest& request,
                                                   std::vector<UniqueFd>* fds = nullptr) {
  absl::Time deadline = absl::Now() + kControlDeadline;
  if (absl::Status sent = SendFrame(socket, request, {}, deadline); !sent.ok()) return sent;

  ControlResponse response;
  std::vector<UniqueFd> received;
  absl::Status status = ReceiveFrame(socket, &response, &received, deadline);
  if (!status.ok()) return status;
  if (fds != nullptr) *fds = std::move(received);
  return response;
}

// Sends raw bytes as they are, framing and all.
inline bool SendRaw(int socket, const std::string& bytes) {
  return ::send(socket, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
         static_cast<ssize_t>(bytes.size());
}

// Whether the peer closes the connection before the deadline; anything it sends first is
// read and dropped.
inline bool PeerCloses(int socket, absl::Duration timeout = kControlDeadline) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) return false;
    pollfd readable{socket, POLLIN, 0};
    if (::poll(&readable, 1, static_cast<int>(left_ms)) != 1) continue;
    char buffer[256];
    ssize_t n = ::recv(socket, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
  }
}

inline pid_t PeerPid(int socket) {
  absl::StatusOr<PeerCredentials> peer = GetPeerCredentials(socket);
  return peer.ok() ? peer->pid : -1;
}

// Whether fd is a socket in the listening state.
inline bool IsListening(int fd) {
  int listening = 0;
  socklen_t length = sizeof listening;
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening == 1;
}

}  // namespace nehost::filter::testing
