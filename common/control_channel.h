// Framing for the control channel between nehostd and a generation (control.proto): one
// protobuf message per frame, a 4-byte big-endian length first, with file descriptors
// riding along as SCM_RIGHTS.
//
// Calls block up to the deadline they are given; a frame is read or written whole or the
// call fails. Not thread safe per socket: one reader and one writer at a time.
#pragma once

#include <google/protobuf/message.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"

namespace nehost {

// Frames larger than this are refused: the peer is broken or hostile.
inline constexpr uint32_t kMaxControlFrameBytes = 1 << 20;

absl::Status SendFrame(int socket, const google::protobuf::Message& message,
                       const std::vector<int>& fds, absl::Time deadline);

// Receives one frame into message; received descriptors are appended to fds.
absl::Status ReceiveFrame(int socket, google::protobuf::Message* message,
                          std::vector<UniqueFd>* fds, absl::Time deadline);

}  // namespace nehost
