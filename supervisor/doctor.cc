// Explaining a name to an operator: the registered owner, each check a lookup makes, and
// processes of the service that nehostd does not supervise.
#include <dirent.h>

#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/process_info.h"
#include "installer/signature.h"
#include "supervisor/control_client.h"
#include "supervisor/service_state.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::DoctorCheck;
using nehost::supervisor::v1::DoctorResponse;

namespace {

void AddCheck(DoctorResponse* response, const std::string& name, const absl::Status& status,
              const std::string& ok_detail) {
  DoctorCheck* check = response->add_checks();
  check->set_name(name);
  check->set_ok(status.ok());
  check->set_detail(status.ok() ? ok_detail : std::string(status.message()));
}

// Whether /proc/PID/environ says the process is the service as this nehostd launches it:
// NEHOST_SERVICE names it and NOTIFY_SOCKET is this nehostd's.
bool EnvironmentNames(pid_t pid, const std::string& name, const std::string& notify_socket) {
  absl::StatusOr<std::string> environ = ReadFile(absl::StrCat("/proc/", pid, "/environ"));
  if (!environ.ok()) return false;
  bool named = false, ours = false;
  for (absl::string_view entry : absl::StrSplit(*environ, '\0')) {
    named = named || entry == "NEHOST_SERVICE=" + name;
    ours = ours || entry == "NOTIFY_SOCKET=" + notify_socket;
  }
  return named && ours;
}

}  // namespace

void Supervisor::AddSignatureCheck(const Service& service, DoctorResponse* response) const {
  const Registration& registration = *service.registration;
  const std::string& sha256 = registration.executable_sha256();
  if (service.definition.package_prefix().empty()) {
    AddCheck(response, "signature", absl::OkStatus(),
             absl::StrCat("no manifest: plain definition; sha256 ", sha256, " recorded at launch"));
    return;
  }
  // Checked again now, against the keys trusted now: a key withdrawn since the launch shows.
  absl::StatusOr<ExpectedExecutable> expected = ExpectSignedExecutable(
      service.definition.package_prefix(), registration.version(), service.definition.executable(),
      installer::KeysDir(options_.config_dir));
  absl::Status matches = expected.status();
  if (expected.ok() && expected->sha256 != sha256) {
    matches = absl::PermissionDeniedError(absl::StrCat("the running binary has sha256 ", sha256,
                                                       ", the ", expected->verified_by, " says ",
                                                       expected->sha256));
  }
  AddCheck(response, "signature", matches,
           expected.ok()
               ? absl::StrCat("sha256 ", sha256, " as the ", expected->verified_by, " says")
               : "");
}

absl::StatusOr<DoctorResponse> Supervisor::Doctor(const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Service*> found = Find(name);
  if (!found.ok()) return found.status();
  Service& service = **found;
  const Registration& registration = *service.registration;

  DoctorResponse response;
  *response.mutable_registration() = registration;
  std::set<pid_t> supervised;
  for (const auto& [fd, owner] : pidfds_) {
    if (owner.first == &service) supervised.insert(owner.second->pid);
  }

  if (service.running()) {
    pid_t pid = registration.pid();
    AddCheck(&response, "supervised",
             service.current->trusted_only
                 ? absl::FailedPreconditionError(
                       "trusted from the registry without a pidfd (--no-reconcile)")
                 : absl::OkStatus(),
             absl::StrCat("pidfd held for pid ", pid));
    absl::StatusOr<uint64_t> start = ReadProcessStartTime(pid);
    AddCheck(&response, "alive", start.status(), absl::StrCat("pid ", pid, " exists"));
    absl::Status same_start = !start.ok() ? start.status()
                              : *start == registration.start_time_ticks()
                                  ? absl::OkStatus()
                                  : absl::NotFoundError(absl::StrCat(
                                        "pid ", pid, " started at tick ", *start,
                                        ", not the registered ", registration.start_time_ticks()));
    AddCheck(&response, "start time", same_start,
             absl::StrCat("tick ", registration.start_time_ticks(), " as registered"));
    absl::StatusOr<std::string> executable = ReadProcessExecutable(pid);
    absl::Status same_executable =
        !executable.ok() ? executable.status()
        : *executable == registration.executable()
            ? absl::OkStatus()
            : absl::FailedPreconditionError(absl::StrCat("runs ", *executable));
    AddCheck(&response, "executable", same_executable, registration.executable());
    AddSignatureCheck(service, &response);

    std::string path = ControlSocketPath(options_.runtime_dir, name, registration.generation());
    absl::StatusOr<ControlClient> control = ControlClient::Connect(path, pid);
    absl::Status serving = control.status();
    if (control.ok()) {
      ControlRequest request;
      request.mutable_health();
      absl::StatusOr<ControlResponse> health = control->Call(request, absl::Seconds(1));
      serving = !health.ok() ? health.status()
                : health->serving() == ControlResponse::SERVING
                    ? absl::OkStatus()
                    : absl::UnavailableError("control channel answers NOT_SERVING");
    }
    AddCheck(&response, "control channel", serving, absl::StrCat(path, " answers SERVING"));
  } else {
    AddCheck(
        &response, "process",
        absl::UnavailableError(absl::StrCat("no process runs: ", StateName(registration.state()),
                                            " (", registration.state_reason(), ")")),
        "");
  }

  // Strays: processes that say they are this service, or run its executable, that nehostd
  // does not watch. After a failed upgrade elsewhere they are what keeps a name stuck.
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid) || supervised.count(pid)) {
      continue;
    }
    absl::StatusOr<std::string> executable = ReadProcessExecutable(pid);
    std::string why;
    if (EnvironmentNames(pid, name, notify_->path())) {
      why = "its environment names the service (NEHOST_SERVICE)";
    } else if (executable.ok() && !registration.executable().empty() &&
               *executable == registration.executable()) {
      why = "runs the service's executable";
    }
    if (why.empty()) continue;
    auto* stray = response.add_strays();
    stray->set_pid(pid);
    stray->set_executable(executable.ok() ? *executable : "");
    stray->set_why(why);
  }

  bool healthy = std::all_of(response.checks().begin(), response.checks().end(),
                             [](const DoctorCheck& check) { return check.ok(); });
  std::string summary =
      healthy ? absl::StrCat(name, " is served by generation ", registration.generation(),
                             ", verified.")
              : absl::StrCat(name, " is not served: ", registration.state_reason(), ".");
  if (!healthy && registration.next_attempt_at().seconds() > 0 && registration.enabled()) {
    absl::StrAppend(&summary, " nehostd tries again at ",
                    TimeText(absl::FromUnixSeconds(registration.next_attempt_at().seconds())), ".");
  }
  if (response.strays_size() > 0) {
    absl::StrAppend(&summary, " ", response.strays_size(),
                    " process(es) of this service run outside nehostd's supervision: stop them "
                    "or restart nehostd, which stops what it cannot adopt.");
  }
  response.set_summary(summary);
  return response;
}

}  // namespace nehost::supervisor
