#include "common/grpc_client.h"

#include "common/grpc_server.h"

namespace nehost {
namespace {

// Calls that only read, retried when the connection breaks under them: a nehostd that is
// restarting or re-executing, a generation that drains. Calls that change something are not
// retried here; their callers decide.
constexpr char kServiceConfig[] = R"({
  "methodConfig": [{
    "name": [
      {"service": "nehost.supervisor.v1.Supervisor", "method": "Lookup"},
      {"service": "nehost.supervisor.v1.Supervisor", "method": "List"},
      {"service": "nehost.supervisor.v1.Supervisor", "method": "Doctor"},
      {"service": "nehost.filter.v1.Filter", "method": "Status"},
      {"service": "nehost.filter.v1.Filter", "method": "ListRules"}
    ],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.001s",
      "maxBackoff": "0.25s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})";

}  // namespace

std::shared_ptr<grpc::Channel> DialUnix(const std::string& target) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
  // A channel of its own connections: a shared subchannel may still hold a connection to a
  // process that has since gone, and the first call on it would fail with "Broken pipe".
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  arguments.SetServiceConfigJSON(kServiceConfig);
  arguments.SetMaxReceiveMessageSize(kMaxMessageBytes);
  arguments.SetMaxSendMessageSize(kMaxMessageBytes);

  std::string address = target.rfind("unix:", 0) == 0 ? target : "unix:" + target;
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments);
}

}  // namespace nehost
