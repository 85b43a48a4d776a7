// Channels to nehost's gRPC servers, which are always on this host behind a Unix socket.
//
// gRPC's default reconnect backoff (a second, growing) suits remote servers; a local socket
// that is missing now is usually there a few milliseconds later (nehostd starting, a
// generation restarting), so these channels retry within tens of milliseconds. They also
// carry the same message size limit as nehost's servers. Thread safe, as gRPC channels are.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace nehost {

// target is "unix:PATH" or a plain path.
std::shared_ptr<grpc::Channel> DialUnix(const std::string& target);

}  // namespace nehost
