#include "common/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_posix.h>
#include <grpcpp/support/server_interceptor.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/files.h"
#include "common/log.h"

namespace nehost {

namespace {

// Lives exactly as long as one call: gRPC creates it when the call starts and destroys it
// when the call is done, whichever way it ends.
class CountingInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit CountingInterceptor(CallCounter* counter) : counter_(counter) { counter_->Enter(); }
  ~CountingInterceptor() override { counter_->Leave(); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  CallCounter* counter_;
};

class CountingInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CountingInterceptorFactory(CallCounter* counter) : counter_(counter) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new CountingInterceptor(counter_);
  }

 private:
  CallCounter* counter_;
};

}  // namespace

void CallCounter::Enter() {
  absl::MutexLock lock(&mu_);
  ++in_flight_;
}

void CallCounter::Leave() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

int CallCounter::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

bool CallCounter::WaitIdle(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartFdServer(
    const std::vector<grpc::Service*>& services, CallCounter* counter) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  for (grpc::Service* service : services) builder.RegisterService(service);
  if (counter != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(std::make_unique<CountingInterceptorFactory>(counter));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return absl::InternalError("start gRPC server: BuildAndStart failed");
  return server;
}

AcceptLoop::AcceptLoop(grpc::Server* server, std::vector<int> listen_fds)
    : server_(server), listen_fds_(std::move(listen_fds)) {}

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
    for (size_t i = 0; i + 1 < polled.size(); ++i) {
      if (polled[i].revents != 0) AcceptReady(polled[i].fd);
    }
  }
}

void AcceptLoop::AcceptReady(int listen_fd) {
  for (;;) {
    // gRPC's fd channels need a non-blocking socket: a blocking one hangs every call.
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // EAGAIN: drained, or another generation sharing the socket took the connection.
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      if (errno == ECONNABORTED) continue;
      // EMFILE and friends: the connection stays in the backlog; try again on the next poll.
      spdlog::warn("accept failed fd={} error=\"{}\"; retrying on the next connection", listen_fd,
                   ErrnoText(errno));
      return;
    }

    absl::StatusOr<PeerCredentials> peer = GetPeerCredentials(fd);
    struct stat info {};
    ::fstat(fd, &info);
    {
      absl::MutexLock lock(&mu_);
      accepted_[fd] = Accepted{peer.ok() ? *peer : PeerCredentials{}, info.st_ino};
    }
    if (peer.ok()) {
      spdlog::debug("accepted fd={} peer_pid={} peer_uid={}", fd, peer->pid, peer->uid);
    }
    grpc::AddInsecureChannelFromFd(server_, fd);
  }
}

std::optional<PeerCredentials> AcceptLoop::PeerOf(const grpc::ServerContext& context) const {
  // gRPC names an fd channel's peer "fd:N".
  std::string peer = context.peer();
  absl::string_view digits(peer);
  int fd = -1;
  if (!absl::ConsumePrefix(&digits, "fd:") || !absl::SimpleAtoi(digits, &fd)) return std::nullopt;

  absl::MutexLock lock(&mu_);
  auto found = accepted_.find(fd);
  if (found == accepted_.end()) return std::nullopt;
  return found->second.peer;
}

void AcceptLoop::ShutdownConnections() {
  absl::MutexLock lock(&mu_);
  for (const auto& [fd, accepted] : accepted_) {
    struct stat info {};
    if (::fstat(fd, &info) == 0 && S_ISSOCK(info.st_mode) && info.st_ino == accepted.inode) {
      ::shutdown(fd, SHUT_RDWR);
    }
  }
}

absl::StatusOr<std::unique_ptr<FdServer>> FdServer::Start(
    const std::vector<grpc::Service*>& services, std::vector<int> listen_fds) {
  std::unique_ptr<FdServer> server(new FdServer());
  absl::StatusOr<std::unique_ptr<grpc::Server>> grpc_server =
      StartFdServer(services, &server->counter_);
  if (!grpc_server.ok()) return grpc_server.status();
  server->server_ = std::move(*grpc_server);

  server->accept_loop_ = std::make_unique<AcceptLoop>(server->server_.get(), std::move(listen_fds));
  if (absl::Status accepting = server->accept_loop_->Start(); !accepting.ok()) {
    server->server_->Shutdown(std::chrono::system_clock::now());
    server->stopped_ = true;
    return accepting;
  }
  return server;
}

FdServer::~FdServer() { Stop(absl::ZeroDuration()); }

void FdServer::Stop(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  accept_loop_->Stop();

  if (!counter_.WaitIdle(absl::Now() + grace)) {
    spdlog::warn("cancelling calls={} still running after the grace of {}ms", counter_.in_flight(),
                 absl::ToInt64Milliseconds(grace));
  }
  // Closing the connections under the clients, rather than gRPC's Shutdown with its GOAWAY,
  // is what lets them go on: a call caught on a closed connection fails UNAVAILABLE, which
  // clients retry on a new connection (to the next generation), while the sync server's
  // Shutdown cancels calls it has queued, and CANCELLED is final. Shutdown then finds no
  // connection to wait for.
  accept_loop_->ShutdownConnections();
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(100)));
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace nehost
