// Connections to nehost's sockets that are checked before anything is said on them, the way a
// macOS client checks a service's code requirement before it talks to it.
//
// On a connected Unix socket, SO_PEERCRED names the process that called listen(). For
// nehostd.sock that is nehostd, which must run as an expected user; for a service's socket it
// is the nehostd that created the socket (not the extension, which only accepts on it), whose
// pid nehostd reports in the service's registration. A process that squats on either path
// shows other credentials and is refused before a request is sent.
//
// The check and the call use the same connection: the gRPC channel is made over the verified
// socket itself, so the path cannot be swapped in between. Such a channel does not reconnect;
// a caller that wants to go on after the connection breaks dials again. DialVerified blocks up
// to its deadline while the listener's backlog is full.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"

namespace nehost::agent {

// Who must be listening at the other end.
struct ExpectedListener {
  // What the socket is, for messages: "nehostd", "org.nehost.filter's endpoint".
  std::string what;
  // The listener's uid must be one of these.
  std::vector<uid_t> uids;
  // When nonzero, the listener must be exactly this process.
  pid_t pid = 0;
};

// The uids nehostd may run as when the user names none: root, or the user itself.
std::vector<uid_t> DefaultServerUids();

// PERMISSION_DENIED, naming the path, who listens and who was expected, unless listener is
// the expected one.
absl::Status CheckListener(const std::string& path, const PeerCredentials& listener,
                           const ExpectedListener& expected);

struct VerifiedChannel {
  std::shared_ptr<grpc::Channel> channel;
  // Who listens, as checked.
  PeerCredentials listener;
  // A second descriptor of the same connection, never read or written: a channel made on a
  // descriptor cannot report its state, so this is how its owner sees the server close it.
  UniqueFd connection;
};

// Whether the server closed the connection, or it failed; true for an invalid descriptor.
// Does not block.
bool ConnectionClosed(int connection);

// Waits until the server closes the connection, or until deadline; returns whether it did.
bool WaitForClose(int connection, absl::Time deadline);

// Connects to path, checks the listener and makes a channel over that connection. UNAVAILABLE
// when nothing listens there, with the cause; a full backlog is tried again until deadline.
absl::StatusOr<VerifiedChannel> DialVerified(const std::string& path,
                                             const ExpectedListener& expected, absl::Time deadline);

}  // namespace nehost::agent
