// gRPC servers on sockets that someone else bound: an inherited socket-activation fd, or a
// socket nehostd created and keeps across generations.
//
// gRPC C++ 1.51 can only listen on addresses it binds itself, so an AcceptLoop runs the
// accept() calls on a thread of its own and hands each connection to the server with
// grpc::AddInsecureChannelFromFd. On the way it records the caller's credentials in a
// ConnectionTable, where handlers look their callers up (see common/access_policy.h).
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

// The connections an AcceptLoop handed to gRPC: who is at the other end of each (SO_PEERCRED
// and SO_PEERGROUPS, read once at accept) and how many calls run on it, which gRPC's hooks
// around every synchronous call keep up to date (health checks, which gRPC serves
// asynchronously, are not counted). A drain uses the counts to close each connection between
// two of its calls rather than under one.
//
// gRPC closes a connection's fd on its own; the number may then come back for a new
// connection, which replaces the entry, or for another kind of file, which the inode
// recorded at accept tells apart. Thread safe.
class ConnectionTable {
 public:
  ConnectionTable() = default;
  ~ConnectionTable();
  ConnectionTable(const ConnectionTable&) = delete;
  ConnectionTable& operator=(const ConnectionTable&) = delete;

  void Add(int fd, PeerCredentials peer, ino_t inode);
  std::optional<PeerCredentials> Peer(int fd) const;

  // Called as each call starts and ends; fd is the connection gRPC names "fd:N".
  void CallStarted(int fd);
  void CallEnded(int fd);
  int calls_in_flight() const;

  // Shuts down (SHUT_RDWR) each open connection once no call runs on it, 2 ms apart, until
  // none is left or the deadline passes; then the rest, cutting their calls. Returns how many
  // calls were cut. Blocks until done.
  int CloseWhenIdle(absl::Time deadline);

 private:
  struct Connection {
    PeerCredentials peer;
    ino_t inode = 0;
    int calls = 0;
    bool closed = false;
  };

  // Whether fd still is the socket that was accepted, and so may be shut down.
  static bool StillAccepted(int fd, const Connection& connection);
  // Marks the connection closed; false when gRPC had closed it already, and there was
  // nothing to shut down.
  bool Close(int fd, Connection& connection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int, Connection> connections_ ABSL_GUARDED_BY(mu_);
  int calls_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Counts calls that ended, so that CloseWhenIdle wakes up when one does.
  uint64_t calls_ended_ ABSL_GUARDED_BY(mu_) = 0;
};

// "fd:12" -> 12: the connection behind a call that came through an AcceptLoop; -1 otherwise.
int ConnectionOf(const std::string& peer);

// Builds and starts a server with no listening port of its own, serving the given services
// plus grpc.health.v1 (SERVING) and server reflection. Every call of a synchronous method is
// counted against its connection in the ConnectionTable of the AcceptLoop that accepted it.
//
// The counting uses gRPC's process-wide server hooks, which gRPC accepts only before it builds
// its first server: a process must start its first FdServer before any other grpc::Server.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartFdServer(
    const std::vector<grpc::Service*>& services);

class AcceptLoop {
 public:
  // server and connections must outlive the loop.
  AcceptLoop(grpc::Server* server, std::vector<int> listen_fds, ConnectionTable* connections);
  ~AcceptLoop();  // Stops.

  AcceptLoop(const AcceptLoop&) = delete;
  AcceptLoop& operator=(const AcceptLoop&) = delete;

  absl::Status Start();

  // Stops accepting and joins the thread. Connections already handed over stay with the
  // server until it shuts down; new ones wait in the kernel's backlog for whoever accepts
  // next.
  void Stop();

 private:
  enum class Accepted { kAll, kOutOfResources };

  void Run();
  Accepted AcceptReady(int listen_fd);

  grpc::Server* server_;
  std::vector<int> listen_fds_;
  ConnectionTable* connections_;
  UniqueFd wake_;
  std::thread thread_;
  // Set while accept fails for want of descriptors or memory: warned once, not every pause.
  bool out_of_resources_ = false;
};

// A gRPC server with its accept loop and connection table: what nehostd and nehost-filter
// run.
class FdServer {
 public:
  // services and connections must outlive the server; listen_fds are not owned. The accept
  // loop fills connections, where handlers find their callers.
  static absl::StatusOr<std::unique_ptr<FdServer>> Start(
      const std::vector<grpc::Service*>& services, std::vector<int> listen_fds,
      ConnectionTable* connections);
  // Stop(0), then shuts the gRPC server down, which can take tens of milliseconds.
  ~FdServer();

  // Stops accepting, so new connections wait in the backlog for whoever accepts next; closes
  // each connection once no call runs on it, for up to grace; then cuts what is left.
  // Blocks until done. Afterwards nothing reaches the server; a process that is about to
  // exit need not wait for the destructor.
  //
  // A client's next call on a closed connection fails UNAVAILABLE, having had no effect, and
  // a new connection reaches whoever accepts next. gRPC's own Shutdown would instead send a
  // GOAWAY, but gRPC 1.51 answers CANCELLED to every call that reaches the server after its
  // shutdown began, calls the client sent before it saw the GOAWAY included, and a client
  // cannot tell that CANCELLED from a call that ran.
  void Stop(absl::Duration grace);

  int calls_in_flight() const { return connections_->calls_in_flight(); }

 private:
  explicit FdServer(ConnectionTable* connections) : connections_(connections) {}

  ConnectionTable* const connections_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<AcceptLoop> accept_loop_;
  bool stopped_ = false;
};

// grpc::Status with the same code and message; the codes are shared.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace nehost
