// The supervisor's end of the sd_notify protocol (sd_notify(3)): a datagram socket at
// RUNTIME/notify.sock, whose path every generation gets as NOTIFY_SOCKET.
//
// Each datagram is newline-separated KEY=VALUE assignments. The kernel attaches the sender's
// credentials (SO_PASSCRED), so a message is attributed to the pid that sent it, not to
// whatever the text claims. NotifySocket is used from the supervisor's loop thread only.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace nehost::supervisor {

struct NotifyMessage {
  bool ready = false;
  bool stopping = false;
  bool watchdog = false;
  bool reloading = false;
  std::optional<std::string> status;
  std::optional<int> errno_value;
};

// Unknown assignments are ignored, as systemd does; lines that are not assignments make the
// whole message invalid.
absl::StatusOr<NotifyMessage> ParseNotifyMessage(const std::string& text);

struct ReceivedNotify {
  pid_t sender = 0;
  NotifyMessage message;
};

class NotifySocket {
 public:
  static absl::StatusOr<NotifySocket> Bind(const std::string& path);

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

  // The next pending datagram; nullopt when none is pending. A datagram that does not parse,
  // or carries no credentials, is an error the caller logs and drops.
  absl::StatusOr<std::optional<ReceivedNotify>> Receive();

 private:
  NotifySocket(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  UniqueFd fd_;
  std::string path_;
};

}  // namespace nehost::supervisor
