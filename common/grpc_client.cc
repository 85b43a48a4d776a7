#include "common/grpc_client.h"

#include "common/grpc_server.h"

namespace nehost {

std::shared_ptr<grpc::Channel> DialUnix(const std::string& target) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
  // A channel of its own connections: a shared subchannel may still hold a connection to a
  // process that has since gone, and the first call on it would fail with "Broken pipe".
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  arguments.SetMaxReceiveMessageSize(kMaxMessageBytes);
  arguments.SetMaxSendMessageSize(kMaxMessageBytes);

  std::string address = target.rfind("unix:", 0) == 0 ? target : "unix:" + target;
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments);
}

}  // namespace nehost
