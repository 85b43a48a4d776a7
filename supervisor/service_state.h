// What the Supervisor keeps for each service and each of its generations. Private to the
// supervisor's own files (supervisor.cc, upgrade.cc, adoption.cc); everything here is
// guarded by the Supervisor's mutex.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "nehost/supervisor/v1/supervisor.pb.h"
#include "supervisor/backoff.h"
#include "supervisor/supervisor.h"

namespace nehost::supervisor {

// One process of a service: the current generation, an upgrade's candidate, or a
// predecessor that drains.
struct Supervisor::Generation {
  uint64_t number = 0;
  pid_t pid = 0;
  UniqueFd pidfd;
  uint64_t start_time_ticks = 0;
  std::string executable;
  std::string executable_sha256;
  // What vouched for the executable at launch (verification.h).
  std::string verified_by;
  std::string version;

  // The last STATUS= it sent.
  std::string status_text;
  bool ready = false;
  absl::Time ready_at = absl::InfinitePast();
  bool exited = false;
  nehost::supervisor::v1::ExitRecord exit;

  // Set when nehostd asked the process to stop; an exit without it is a crash.
  StopReason stop_reason = nehost::supervisor::v1::STOP_REASON_UNSPECIFIED;
  // When SIGKILL follows the SIGTERM, if the process is still there.
  absl::Time kill_at = absl::InfiniteFuture();
  bool kill_sent = false;
  // A process that an earlier nehostd image started and this one adopted (after kill -9 of
  // nehostd it is not even a child): its exit status may be unknown.
  bool adopted = false;
  // Trusted from the registry without verification (--no-reconcile); no pidfd.
  bool trusted_only = false;
};

struct Supervisor::Service {
  Service(ServiceDefinition definition_in, Registration* registration_in)
      : definition(std::move(definition_in)),
        registration(registration_in),
        backoff(BackoffPolicy::FromProto(definition.restart())) {}

  ServiceDefinition definition;
  Registration* registration;
  BackoffSchedule backoff;

  // The gRPC socket first, then the definition's listeners, in LISTEN_FDS order.
  std::vector<UniqueFd> listeners;
  std::vector<std::string> listener_names;
  // Why the listeners could not be created; such a service cannot start.
  std::string setup_error;

  GenerationPtr current;
  GenerationPtr candidate;
  std::vector<GenerationPtr> draining;
  bool upgrading = false;

  // When the service's state times out: the current generation's ready timeout, or the
  // next attempt after a backoff.
  absl::Time deadline = absl::InfiniteFuture();
  bool relaunch_after_stop = false;

  // The registry snapshot that first names the current owner, once one was handed to the
  // writer: a lookup returns the owner only after that snapshot is on disk.
  bool owner_unrecorded = false;
  uint64_t owner_recorded_in = 0;

  const std::string& name() const { return definition.name(); }
  bool running() const { return current != nullptr && !current->exited; }

  absl::Duration ready_timeout(const SupervisorOptions& options) const {
    return definition.ready_timeout_ms() > 0 ? absl::Milliseconds(definition.ready_timeout_ms())
                                             : options.default_ready_timeout;
  }
  absl::Duration stop_grace(const SupervisorOptions& options) const {
    return definition.stop_grace_ms() > 0 ? absl::Milliseconds(definition.stop_grace_ms())
                                          : options.default_stop_grace;
  }
};

// Shared helpers of the supervisor's files.
google::protobuf::Timestamp ToProtoTime(absl::Time time);
std::string TimeText(absl::Time time);
int PidfdSendSignal(int pidfd, int signal);
int PidfdOpen(pid_t pid);

}  // namespace nehost::supervisor
