#include "common/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "absl/base/call_once.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/files.h"
#include "common/log.h"

namespace nehost {

namespace {

// How long a drain waits after closing one connection before it closes the next.
constexpr absl::Duration kClosePace = absl::Milliseconds(2);
// How long an accept loop that ran out of descriptors or memory waits before it tries again:
// the listening socket stays readable meanwhile, and polling it at once would spin.
constexpr int kOutOfResourcesPauseMs = 100;

// Which ConnectionTable each connection an AcceptLoop handed to gRPC belongs to, for the whole
// process: gRPC's hooks below learn a call's connection ("fd:N") but not its server. A number
// names at most one open connection at a time, so the table that accepted it last is its table.
class TableDirectory {
 public:
  static TableDirectory& Get() {
    static auto* directory = new TableDirectory;
    return *directory;
  }

  void Claim(int fd, ConnectionTable* table) {
    absl::MutexLock lock(&mu_);
    tables_[fd] = table;
  }

  void Forget(const ConnectionTable* table) {
    absl::MutexLock lock(&mu_);
    absl::erase_if(tables_, [table](const auto& entry) { return entry.second == table; });
  }

  // Runs for every call, from every gRPC thread; only an accept writes.
  ConnectionTable* Find(int fd) const {
    absl::ReaderMutexLock lock(&mu_);
    auto found = tables_.find(fd);
    return found == tables_.end() ? nullptr : found->second;
  }

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int, ConnectionTable*> tables_ ABSL_GUARDED_BY(mu_);
};

// The call this thread counted in PreSynchronousRequest, until PostSynchronousRequest: gRPC
// runs both, and the handler between them, on one thread.
struct CountedCall {
  ConnectionTable* table = nullptr;
  int fd = -1;
};
thread_local CountedCall t_counted_call;

// Counts each call of a synchronous method against its connection, from just before its
// handler runs until gRPC has sent the response (a unary or streaming handler returns to
// gRPC, which sends the status and waits for the send to complete, before the second hook).
//
// Not an interceptor, which would see every call, health checks included: gRPC 1.51 makes each
// batch of operations of an intercepted call take one more trip through its completion queue,
// which made a unary call take 131 to 138 µs instead of 105 to 109 (bench/status_latency.cc).
// These hooks are process-wide; calls on servers without an AcceptLoop find no table and are
// not counted.
class CallCountingHooks final : public grpc::Server::GlobalCallbacks {
 public:
  void PreSynchronousRequest(grpc::ServerContext* context) override {
    const int fd = ConnectionOf(context->peer());
    ConnectionTable* table = fd < 0 ? nullptr : TableDirectory::Get().Find(fd);
    if (table != nullptr) table->CallStarted(fd);
    t_counted_call = CountedCall{table, fd};
  }

  void PostSynchronousRequest(grpc::ServerContext*) override {
    if (t_counted_call.table != nullptr) t_counted_call.table->CallEnded(t_counted_call.fd);
    t_counted_call = CountedCall{};
  }
};

// gRPC takes global hooks only before it builds its first server in the process, and aborts
// when given them later.
void InstallCallCountingHooks() {
  static absl::once_flag once;
  absl::call_once(once, [] { grpc::Server::SetGlobalCallbacks(new CallCountingHooks); });
}

}  // namespace

int ConnectionOf(const std::string& peer) {
  absl::string_view digits(peer);
  int fd = -1;
  if (!absl::ConsumePrefix(&digits, "fd:") || !absl::SimpleAtoi(digits, &fd)) return -1;
  return fd;
}

ConnectionTable::~ConnectionTable() { TableDirectory::Get().Forget(this); }

void ConnectionTable::Add(int fd, PeerCredentials peer, ino_t inode) {
  {
    absl::MutexLock lock(&mu_);
    // A number gRPC closed and the kernel reused: the old connection's calls are all over.
    connections_[fd] = Connection{std::move(peer), inode};
  }
  TableDirectory::Get().Claim(fd, this);
}

std::optional<PeerCredentials> ConnectionTable::Peer(int fd) const {
  absl::MutexLock lock(&mu_);
  auto found = connections_.find(fd);
  if (found == connections_.end()) return std::nullopt;
  return found->second.peer;
}

void ConnectionTable::CallStarted(int fd) {
  absl::MutexLock lock(&mu_);
  ++calls_in_flight_;
  auto found = connections_.find(fd);
  if (found != connections_.end()) ++found->second.calls;
}

void ConnectionTable::CallEnded(int fd) {
  absl::MutexLock lock(&mu_);
  --calls_in_flight_;
  ++calls_ended_;
  auto found = connections_.find(fd);
  if (found != connections_.end() && found->second.calls > 0) --found->second.calls;
}

int ConnectionTable::calls_in_flight() const {
  absl::MutexLock lock(&mu_);
  return calls_in_flight_;
}

bool ConnectionTable::StillAccepted(int fd, const Connection& connection) {
  struct stat info {};
  return ::fstat(fd, &info) == 0 && S_ISSOCK(info.st_mode) && info.st_ino == connection.inode;
}

bool ConnectionTable::Close(int fd, Connection& connection) {
  connection.closed = true;
  if (!StillAccepted(fd, connection)) return false;
  ::shutdown(fd, SHUT_RDWR);
  return true;
}

int ConnectionTable::CloseWhenIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    bool open_left = false;
    Connection* idle = nullptr;
    int idle_fd = -1;
    for (auto& [fd, connection] : connections_) {
      if (connection.closed) continue;
      open_left = true;
      if (connection.calls == 0 && idle == nullptr) {
        idle = &connection;
        idle_fd = fd;
      }
    }
    if (!open_left) return 0;

    if (idle != nullptr) {
      // One gRPC closed long ago costs no pause: nobody is there to connect again.
      if (!Close(idle_fd, *idle)) continue;
      // Every client of a closed connection connects again to the next generation at once;
      // all of them in the same millisecond would queue behind each other's handshakes.
      const absl::Time next = std::min(deadline, absl::Now() + kClosePace);
      auto later = [next]() { return absl::Now() >= next; };
      mu_.AwaitWithDeadline(absl::Condition(&later), next);
      if (next >= deadline) break;
      continue;
    }
    uint64_t ended = calls_ended_;
    auto another_ended = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_ended_ != ended; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&another_ended), deadline)) break;
  }

  int cut = 0;
  for (auto& [fd, connection] : connections_) {
    if (connection.closed) continue;
    cut += connection.calls;
    Close(fd, connection);
  }
  return cut;
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartFdServer(
    const std::vector<grpc::Service*>& services) {
  InstallCallCountingHooks();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  for (grpc::Service* service : services) builder.RegisterService(service);

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return absl::InternalError("start gRPC server: BuildAndStart failed");
  return server;
}

AcceptLoop::AcceptLoop(grpc::Server* server, std::vector<int> listen_fds,
                       ConnectionTable* connections)
    : server_(server), listen_fds_(std::move(listen_fds)), connections_(connections) {}

AcceptLoop::~AcceptLoop() { Stop(); }

absl::Status AcceptLoop::Start() {
  for (int fd : listen_fds_) {
    if (absl::Status status = SetNonBlocking(fd, true); !status.ok()) return status;
  }
  wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return ErrnoStatus(errno, "create", "eventfd for accept loop");
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void AcceptLoop::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void AcceptLoop::Run() {
  std::vector<pollfd> polled;
  for (int fd : listen_fds_) polled.push_back({fd, POLLIN, 0});
  polled.push_back({wake_.get(), POLLIN, 0});

  for (;;) {
    int ready = ::poll(polled.data(), polled.size(), -1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      spdlog::error("accept loop stopped: poll failed: {}", ErrnoText(errno));
      return;
    }
    if (polled.back().revents != 0) return;

    bool out_of_resources = false;
    for (size_t i = 0; i + 1 < polled.size(); ++i) {
      if (polled[i].revents != 0 && AcceptReady(polled[i].fd) == Accepted::kOutOfResources) {
        out_of_resources = true;
      }
    }
    if (out_of_resources) {
      // Only the wake fd, so that Stop is not kept waiting through the pause.
      ready = ::poll(&polled.back(), 1, kOutOfResourcesPauseMs);
      if (ready > 0) return;
    }
  }
}

AcceptLoop::Accepted AcceptLoop::AcceptReady(int listen_fd) {
  for (;;) {
    // gRPC's fd channels need a non-blocking socket: a blocking one hangs every call.
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // EAGAIN: drained, or another generation sharing the socket took the connection.
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Accepted::kAll;
      if (errno == ECONNABORTED) continue;
      // EMFILE and friends: the connection stays in the backlog until a descriptor is free.
      if (!out_of_resources_) {
        spdlog::warn("accept failed fd={} error=\"{}\"; retrying every {}ms", listen_fd,
                     ErrnoText(errno), kOutOfResourcesPauseMs);
      }
      out_of_resources_ = true;
      return Accepted::kOutOfResources;
    }
    if (out_of_resources_) {
      spdlog::info("accepting again fd={}", listen_fd);
      out_of_resources_ = false;
    }

    // A caller whose credentials cannot be read is recorded as nobody, so that every
    // policy refuses it.
    absl::StatusOr<PeerCredentials> peer = GetPeerCredentials(fd);
    struct stat info {};
    ::fstat(fd, &info);
    if (peer.ok()) {
      spdlog::debug("accepted fd={} peer_pid={} peer_uid={}", fd, peer->pid, peer->uid);
    }
    if (connections_ != nullptr) {
      connections_->Add(fd, peer.ok() ? *std::move(peer) : PeerCredentials::Nobody(), info.st_ino);
    }
    grpc::AddInsecureChannelFromFd(server_, fd);
  }
}

absl::StatusOr<std::unique_ptr<FdServer>> FdServer::Start(
    const std::vector<grpc::Service*>& services, std::vector<int> listen_fds,
    ConnectionTable* connections) {
  std::unique_ptr<FdServer> server(new FdServer(connections));
  absl::StatusOr<std::unique_ptr<grpc::Server>> grpc_server = StartFdServer(services);
  if (!grpc_server.ok()) return grpc_server.status();
  server->server_ = std::move(*grpc_server);

  server->accept_loop_ =
      std::make_unique<AcceptLoop>(server->server_.get(), std::move(listen_fds), connections);
  if (absl::Status accepting = server->accept_loop_->Start(); !accepting.ok()) return accepting;
  return server;
}

FdServer::~FdServer() {
  // Either may be missing when Start failed part way.
  if (accept_loop_ != nullptr) Stop(absl::ZeroDuration());
  // Every connection is closed, so Shutdown has no client to wait for; winding down gRPC's
  // threads may still take tens of milliseconds.
  if (server_ != nullptr) {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(100)));
  }
}

void FdServer::Stop(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  accept_loop_->Stop();

  if (int cut = connections_->CloseWhenIdle(absl::Now() + grace); cut > 0) {
    spdlog::warn("cancelled calls={} still running after the grace of {}ms", cut,
                 absl::ToInt64Milliseconds(grace));
  }
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace nehost
