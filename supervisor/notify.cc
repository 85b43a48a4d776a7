#include "supervisor/notify.h"

#include <sys/socket.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/unix_socket.h"

namespace nehost::supervisor {

// Large enough for any message sd_notify sends in practice; longer ones are truncated by
// the kernel and rejected below.
constexpr size_t kMaxNotifyBytes = 4096;

absl::StatusOr<NotifyMessage> ParseNotifyMessage(const std::string& text) {
  NotifyMessage message;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits('=', 1));
    if (line.find('=') == absl::string_view::npos || kv.first.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("notify message line \"", line, "\" is not KEY=VALUE"));
    }
    if (kv.first == "READY") {
      message.ready = kv.second == "1";
    } else if (kv.first == "STOPPING") {
      message.stopping = kv.second == "1";
    } else if (kv.first == "WATCHDOG") {
      message.watchdog = kv.second == "1";
    } else if (kv.first == "RELOADING") {
      message.reloading = kv.second == "1";
    } else if (kv.first == "STATUS") {
      message.status = std::string(kv.second);
    } else if (kv.first == "ERRNO") {
      int value = 0;
      if (absl::SimpleAtoi(kv.second, &value)) message.errno_value = value;
    }
  }
  return message;
}

absl::StatusOr<NotifySocket> NotifySocket::Bind(const std::string& path) {
  absl::StatusOr<UniqueFd> fd = BindUnixDatagram(path, 0660);
  if (!fd.ok()) return fd.status();
  if (absl::Status status = SetNonBlocking(fd->get(), true); !status.ok()) return status;
  return NotifySocket(std::move(*fd), path);
}

absl::StatusOr<std::optional<ReceivedNotify>> NotifySocket::Receive() {
  char buffer[kMaxNotifyBytes + 1];
  iovec iov{buffer, sizeof buffer};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 16)];
  msghdr header{};
  header.msg_iov = &iov;
  header.msg_iovlen = 1;
  header.msg_control = control;
  header.msg_controllen = sizeof control;

  ssize_t n = ::recvmsg(fd_.get(), &header, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return std::nullopt;
    return ErrnoStatus(errno, "receive from", path_);
  }

  // Close any descriptors a sender attached (FDSTORE=1 is not supported); leaving them
  // open would leak one per message.
  std::optional<ucred> credentials;
  for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS) {
      ucred value;
      std::memcpy(&value, CMSG_DATA(c), sizeof value);
      credentials = value;
    } else if (c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        ::close(fd);
      }
    }
  }

  if (static_cast<size_t>(n) > kMaxNotifyBytes || (header.msg_flags & MSG_TRUNC) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("notify message of ", n, " bytes is too long"));
  }
  if (!credentials.has_value()) {
    return absl::InvalidArgumentError("notify message without sender credentials");
  }

  absl::StatusOr<NotifyMessage> message =
      ParseNotifyMessage(std::string(buffer, static_cast<size_t>(n)));
  if (!message.ok()) return message.status();
  return ReceivedNotify{credentials->pid, std::move(*message)};
}

}  // namespace nehost::supervisor
