// ControlServer is a generation's end of the private control channel to nehostd
// (nehost.supervisor.v1 ControlRequest / ControlResponse, framed as common/control_channel.h
// says), on the Unix socket that NEHOST_CONTROL_SOCKET names.
//
// The generation binds and listens itself, before it sends READY=1, so that SO_PEERCRED on
// nehostd's connection names this process. Each connection gets a thread of its own that
// serves its requests in order until the peer closes, so that an upgrade holding one open
// for its handoff does not keep `nehostctl doctor`'s health check or a restarted nehostd
// waiting; at most kMaxControlConnections are served at once, and more wait in the backlog.
// A frame that is not a request closes that connection only.
//
// What each request does is the ControlHandler's business; it runs on the server's thread.
// The handler must outlive the server. Stop and the destructor block until the request in
// hand, if any, is answered.
#pragma once

#include <sys/types.h>

#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "nehost/supervisor/v1/control.pb.h"

namespace nehost::filter {

using ControlRequest = nehost::supervisor::v1::ControlRequest;
using ControlResponse = nehost::supervisor::v1::ControlResponse;
using HandoffState = nehost::supervisor::v1::HandoffState;

// A request fails by setting response.error; a handler never throws.
class ControlHandler {
 public:
  virtual ~ControlHandler() = default;

  virtual ControlResponse Health() = 0;
  // *fds: the descriptors to attach, in the order of listener_names; the handler keeps them.
  virtual ControlResponse TakeListeners(std::vector<int>* fds) = 0;
  // Blocks while calls in flight finish, up to grace.
  virtual ControlResponse Drain(absl::Duration grace) = 0;
  virtual ControlResponse ImportState(const HandoffState& state) = 0;

  // Called once the reply to a drain has been written, or failed to be: the process may
  // exit now without the reply getting lost.
  virtual void Drained() = 0;
};

inline constexpr int kMaxControlConnections = 4;

class ControlServer {
 public:
  // Binds path with mode 0600, listens and starts serving on a thread of its own.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Listen(const std::string& path,
                                                               ControlHandler* handler);
  // Stops, then removes the socket file if it is still the one this server bound.
  ~ControlServer();

  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Stops accepting and serving; a connection still open is closed. Idempotent.
  void Stop();

  const std::string& path() const { return path_; }

 private:
  ControlServer(std::string path, UniqueFd listener, ControlHandler* handler);

  void Run();
  // Waits for a free connection slot; false when the server is stopping.
  bool WaitForSlot();
  void JoinFinishedConnections();
  void Serve(UniqueFd connection);
  bool ServeOneRequest(int connection);
  ControlResponse Dispatch(const ControlRequest& request, std::vector<int>* fds);
  // Waits until fd is readable; false when the server is stopping.
  bool WaitReadable(int fd);
  void RemoveSocketFile();

  const std::string path_;
  UniqueFd listener_;
  // The socket file as bound, so that removal leaves a file someone else put there alone.
  dev_t device_ = 0;
  ino_t inode_ = 0;
  ControlHandler* const handler_;
  // Written once, by Stop, and never read: every poll of every thread sees it from then on.
  UniqueFd wake_;
  std::thread thread_;

  absl::Mutex mu_;
  int serving_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The threads of the connections, served or being served; the finished ones are joined
  // as the next connection starts.
  struct ConnectionThread {
    std::thread thread;
    bool done = false;
  };
  std::list<ConnectionThread> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nehost::filter
