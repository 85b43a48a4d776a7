// nehostd's end of a generation's control channel (control.proto): connect, check that the
// process listening is the registered generation, and make one call at a time.
//
// Every call blocks up to its timeout. A ControlClient is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "nehost/supervisor/v1/control.pb.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::ControlRequest;
using nehost::supervisor::v1::ControlResponse;

// RUNTIME/gen/NAME.GEN.ctl
std::string ControlSocketPath(const std::string& runtime_dir, const std::string& name,
                              uint64_t generation);

class ControlClient {
 public:
  // Connects and checks SO_PEERCRED: the process that listens on path must be expected_pid.
  // A socket that another process listens on is refused: it is not the generation's.
  static absl::StatusOr<ControlClient> Connect(const std::string& path, pid_t expected_pid);

  // Connects to whichever process listens on path; peer_pid() says which.
  static absl::StatusOr<ControlClient> ConnectAny(const std::string& path);

  pid_t peer_pid() const { return peer_pid_; }

  // One request and its response; a response with an error is returned as FAILED_PRECONDITION.
  // Descriptors that come with the response are appended to fds when given.
  absl::StatusOr<ControlResponse> Call(const ControlRequest& request, absl::Duration timeout,
                                       std::vector<UniqueFd>* fds = nullptr);

 private:
  ControlClient(UniqueFd socket, std::string path, pid_t peer_pid)
      : socket_(std::move(socket)), path_(std::move(path)), peer_pid_(peer_pid) {}

  UniqueFd socket_;
  std::string path_;
  pid_t peer_pid_ = 0;
};

}  // namespace nehost::supervisor
