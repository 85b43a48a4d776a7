#include "extension/control_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <utility>

#include "absl/time/clock.h"
#include "common/control_channel.h"
#include "common/files.h"
#include "common/log.h"
#include "common/unix_socket.h"

namespace nehost::filter {
namespace {

// Once a frame's first byte is in, the rest must follow within this; a reply must be taken
// within it too. A peer that stalls longer is dropped so that the next one can be served.
constexpr absl::Duration kFrameTimeout = absl::Seconds(2);

// After an accept error such as EMFILE the connection stays in the backlog, so poll would
// report it again at once; this pause keeps the retry from spinning.
constexpr int kAcceptRetryMs = 100;

// "health", "take_listeners", ...: the request's field name in control.proto, for logs.
std::string KindOf(const ControlRequest& request) {
  const google::protobuf::FieldDescriptor* field =
      ControlRequest::descriptor()->FindFieldByNumber(request.request_case());
  return field == nullptr ? "none" : field->name();
}

std::string PeerOf(int connection) {
  absl::StatusOr<PeerCredentials> peer = GetPeerCredentials(connection);
  return peer.ok() ? std::to_string(peer->pid) : "unknown";
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Listen(const std::string& path,
                                                                     ControlHandler* handler) {
  absl::StatusOr<UniqueFd> listener = ListenUnix(path, 0600);
  if (!listener.ok()) return listener.status();
  if (absl::Status status = SetNonBlocking(listener->get(), true); !status.ok()) return status;

  // The file's identity, not the socket's: fstat on a socket fd describes the socket.
  struct stat file;
  if (::lstat(path.c_str(), &file) != 0) return ErrnoStatus(errno, "inspect control socket", path);

  std::unique_ptr<ControlServer> server(new ControlServer(path, *std::move(listener), handler));
  server->device_ = file.st_dev;
  server->inode_ = file.st_ino;
  server->wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!server->wake_) return ErrnoStatus(errno, "create eventfd for control server", path);

  server->thread_ = std::thread([raw = server.get()] { raw->Run(); });
  spdlog::info("control channel listening path={}", path);
  return server;
}

ControlServer::ControlServer(std::string path, UniqueFd listener, ControlHandler* handler)
    : path_(std::move(path)), listener_(std::move(listener)), handler_(handler) {}

ControlServer::~ControlServer() {
  Stop();
  RemoveSocketFile();
}

void ControlServer::Stop() {
  if (!thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t written = ::write(wake_.get(), &one, sizeof one);
  thread_.join();

  std::list<ConnectionThread> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (ConnectionThread& connection : connections) connection.thread.join();
}

void ControlServer::JoinFinishedConnections() {
  std::list<ConnectionThread> finished;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if (it->done) finished.splice(finished.end(), connections_, it);
      it = next;
    }
  }
  for (ConnectionThread& connection : finished) connection.thread.join();
}

void ControlServer::RemoveSocketFile() {
  struct stat info;
  if (::lstat(path_.c_str(), &info) != 0) return;
  if (info.st_dev != device_ || info.st_ino != inode_) return;
  if (::unlink(path_.c_str()) != 0) {
    spdlog::warn("remove control socket failed path={} error=\"{}\"; it stays behind", path_,
                 ErrnoText(errno));
  }
}

bool ControlServer::WaitForSlot() {
  absl::MutexLock lock(&mu_);
  auto free = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return serving_ < kMaxControlConnections || stopping_;
  };
  mu_.Await(absl::Condition(&free));
  return !stopping_;
}

void ControlServer::Run() {
  while (WaitForSlot() && WaitReadable(listener_.get())) {
    UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (connection) {
      JoinFinishedConnections();
      absl::MutexLock lock(&mu_);
      ++serving_;
      ConnectionThread& started = connections_.emplace_back();
      started.thread = std::thread([this, &started, fd = connection.Release()] {
        Serve(UniqueFd(fd));
        absl::MutexLock lock(&mu_);
        --serving_;
        started.done = true;
      });
      continue;
    }
    if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;

    spdlog::warn("control accept failed path={} error=\"{}\"; retrying in {}ms", path_,
                 ErrnoText(errno), kAcceptRetryMs);
    pollfd woken{wake_.get(), POLLIN, 0};
    if (::poll(&woken, 1, kAcceptRetryMs) > 0) return;
  }
}

void ControlServer::Serve(UniqueFd connection) {
  // Frames are read and written with deadlines, by polling: the socket must not block.
  if (absl::Status status = SetNonBlocking(connection.get(), true); !status.ok()) {
    spdlog::warn("control connection dropped error=\"{}\"", status.message());
    return;
  }

  std::string peer = PeerOf(connection.get());
  spdlog::debug("control connection accepted peer_pid={}", peer);
  while (WaitReadable(connection.get()) && ServeOneRequest(connection.get())) {
  }
  spdlog::debug("control connection closed peer_pid={}", peer);
}

// Whether the connection can carry the next request.
bool ControlServer::ServeOneRequest(int connection) {
  ControlRequest request;
  std::vector<UniqueFd> unexpected_fds;
  absl::Status received =
      ReceiveFrame(connection, &request, &unexpected_fds, absl::Now() + kFrameTimeout);
  if (absl::IsUnavailable(received)) return false;
  if (!received.ok()) {
    spdlog::warn("control connection dropped error=\"{}\"; serving the next connection",
                 received.message());
    return false;
  }

  std::vector<int> fds;
  ControlResponse response = Dispatch(request, &fds);
  absl::Status sent = SendFrame(connection, response, fds, absl::Now() + kFrameTimeout);
  if (request.has_drain()) handler_->Drained();
  if (!sent.ok()) {
    spdlog::warn("control reply lost request={} error=\"{}\"; closing the connection",
                 KindOf(request), sent.message());
    return false;
  }
  return true;
}

ControlResponse ControlServer::Dispatch(const ControlRequest& request, std::vector<int>* fds) {
  spdlog::debug("control request kind={}", KindOf(request));
  switch (request.request_case()) {
    case ControlRequest::kHealth:
      return handler_->Health();
    case ControlRequest::kTakeListeners:
      return handler_->TakeListeners(fds);
    case ControlRequest::kDrain:
      return handler_->Drain(absl::Milliseconds(request.drain().grace_ms()));
    case ControlRequest::kImportState:
      return handler_->ImportState(request.import_state().state());
    case ControlRequest::REQUEST_NOT_SET:
      break;
  }

  ControlResponse response;
  response.set_error("control request: empty, or of a kind this nehost-filter does not know");
  return response;
}

bool ControlServer::WaitReadable(int fd) {
  pollfd polled[2] = {{fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
  for (;;) {
    int ready = ::poll(polled, 2, -1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      spdlog::error("control server stopped path={} error=\"poll: {}\"", path_, ErrnoText(errno));
      return false;
    }
    return polled[1].revents == 0;
  }
}

}  // namespace nehost::filter
