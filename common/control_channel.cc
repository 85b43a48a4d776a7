#include "common/control_channel.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/files.h"

namespace nehost {
namespace {

constexpr size_t kMaxFds = 16;

absl::Status WaitFor(int socket, short events, absl::Time deadline) {
  for (;;) {
    int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0)
      return absl::DeadlineExceededError("control channel: peer did not answer in time");
    pollfd polled{socket, events, 0};
    int ready = ::poll(&polled, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoStatus(errno, "poll", "control channel");
    if (ready > 0) return absl::OkStatus();
  }
}

// Sends bytes; the descriptors go with the first sendmsg, so with the first byte.
absl::Status SendAll(int socket, const std::string& bytes, const std::vector<int>& fds,
                     absl::Time deadline) {
  size_t sent = 0;
  bool fds_sent = fds.empty();
  while (sent < bytes.size()) {
    if (absl::Status ready = WaitFor(socket, POLLOUT, deadline); !ready.ok()) return ready;

    iovec iov{const_cast<char*>(bytes.data() + sent), bytes.size() - sent};
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    if (!fds_sent) {
      header.msg_control = control;
      header.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&header);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n = ::sendmsg(socket, &header, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoStatus(errno, "send on", "control channel");
    sent += static_cast<size_t>(n);
    fds_sent = true;
  }
  return absl::OkStatus();
}

absl::Status ReceiveAll(int socket, char* buffer, size_t size, std::vector<UniqueFd>* fds,
                        absl::Time deadline) {
  size_t received = 0;
  while (received < size) {
    if (absl::Status ready = WaitFor(socket, POLLIN, deadline); !ready.ok()) return ready;

    iovec iov{buffer + received, size - received};
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    header.msg_control = control;
    header.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(socket, &header, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoStatus(errno, "receive on", "control channel");

    for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds->emplace_back(fd);
      }
    }
    if (n == 0) return absl::UnavailableError("control channel: peer closed the connection");
    received += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SendFrame(int socket, const google::protobuf::Message& message,
                       const std::vector<int>& fds, absl::Time deadline) {
  if (fds.size() > kMaxFds) {
    return absl::InvalidArgumentError(
        absl::StrCat("control channel: ", fds.size(), " descriptors; at most ", kMaxFds, " fit"));
  }
  std::string body = message.SerializeAsString();
  uint32_t length = static_cast<uint32_t>(body.size());
  std::string frame = {static_cast<char>(length >> 24), static_cast<char>(length >> 16),
                       static_cast<char>(length >> 8), static_cast<char>(length)};
  frame += body;
  return SendAll(socket, frame, fds, deadline);
}

absl::Status ReceiveFrame(int socket, google::protobuf::Message* message,
                          std::vector<UniqueFd>* fds, absl::Time deadline) {
  unsigned char prefix[4];
  absl::Status read = ReceiveAll(socket, reinterpret_cast<char*>(prefix), 4, fds, deadline);
  if (!read.ok()) return read;

  uint32_t length = (uint32_t{prefix[0]} << 24) | (uint32_t{prefix[1]} << 16) |
                    (uint32_t{prefix[2]} << 8) | uint32_t{prefix[3]};
  if (length > kMaxControlFrameBytes) {
    return absl::DataLossError(
        absl::StrCat("control channel: frame of ", length, " bytes is larger than the limit"));
  }
  std::string body(length, '\0');
  read = ReceiveAll(socket, body.data(), length, fds, deadline);
  if (!read.ok()) return read;
  if (!message->ParseFromString(body)) {
    return absl::DataLossError("control channel: frame does not parse");
  }
  return absl::OkStatus();
}

}  // namespace nehost
