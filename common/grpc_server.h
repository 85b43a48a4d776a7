// gRPC servers on sockets that someone else bound: an inherited socket-activation fd, or a
// socket nehostd created and keeps across generations.
//
// gRPC C++ 1.51 can only listen on addresses it binds itself, so an AcceptLoop runs the
// accept() calls on a thread of its own and hands each connection to the server with
// grpc::AddInsecureChannelFromFd. On the way it reads the caller's SO_PEERCRED, which
// handlers look up with PeerOf(context).
//
// The listening fds are not owned: nehostd keeps them open for later generations. They are
// switched to non-blocking, which every process sharing them sees; that is harmless, since
// each of them polls before it accepts.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"

namespace nehost {

// Requests larger than this get RESOURCE_EXHAUSTED.
inline constexpr int kMaxMessageBytes = 4 << 20;

// Counts the calls a server is running, through an interceptor on every call. Thread safe.
class CallCounter {
 public:
  void Enter();
  void Leave();
  int in_flight() const;
  // Blocks until no call runs or the deadline passes; whether none runs.
  bool WaitIdle(absl::Time deadline) const;

 private:
  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// Builds and starts a server with no listening port of its own, serving the given services
// plus grpc.health.v1 (SERVING) and server reflection. With a counter, every call is counted.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartFdServer(
    const std::vector<grpc::Service*>& services, CallCounter* counter = nullptr);

class AcceptLoop {
 public:
  // server must outlive the loop.
  AcceptLoop(grpc::Server* server, std::vector<int> listen_fds);
  ~AcceptLoop();  // Stops.

  AcceptLoop(const AcceptLoop&) = delete;
  AcceptLoop& operator=(const AcceptLoop&) = delete;

  absl::Status Start();

  // Stops accepting and joins the thread. Connections already handed over stay with the
  // server until it shuts down; new ones wait in the kernel's backlog for whoever accepts
  // next.
  void Stop();

  // The credentials of the caller behind context, when it came through this loop.
  std::optional<PeerCredentials> PeerOf(const grpc::ServerContext& context) const;

  // Shuts down (SHUT_RDWR) every connection this loop accepted that is still open, so that
  // a server shutting down need not wait for idle clients to notice its GOAWAY. A number
  // that gRPC closed and the kernel reused for another file is left alone: each connection
  // is recognised by its inode.
  void ShutdownConnections();

 private:
  void Run();
  void AcceptReady(int listen_fd);

  grpc::Server* server_;
  std::vector<int> listen_fds_;
  UniqueFd wake_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  struct Accepted {
    PeerCredentials peer;
    ino_t inode = 0;
  };
  absl::flat_hash_map<int, Accepted> accepted_ ABSL_GUARDED_BY(mu_);
};

// A gRPC server with its accept loop and call counter: what nehostd and nehost-filter run.
class FdServer {
 public:
  // services must outlive the server; listen_fds are not owned.
  static absl::StatusOr<std::unique_ptr<FdServer>> Start(
      const std::vector<grpc::Service*>& services, std::vector<int> listen_fds);
  ~FdServer();  // Stop(0).

  // Stops accepting, so new connections wait in the backlog for whoever accepts next; sends
  // every client a GOAWAY, so new calls go elsewhere; lets the calls in flight finish for up
  // to grace, then cancels the rest and closes the connections. Blocks until done.
  // gRPC's own Shutdown(deadline) would also wait out the deadline for every idle client
  // that has not yet noticed the GOAWAY; counting calls ends as soon as the work is done.
  void Stop(absl::Duration grace);

  int calls_in_flight() const { return counter_.in_flight(); }
  std::optional<PeerCredentials> PeerOf(const grpc::ServerContext& context) const {
    return accept_loop_->PeerOf(context);
  }

 private:
  FdServer() = default;

  CallCounter counter_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<AcceptLoop> accept_loop_;
  bool stopped_ = false;
};

// grpc::Status with the same code and message; the codes are shared.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace nehost
