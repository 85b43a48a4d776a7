// What the upgrade and recovery benchmarks share: processes held by pidfd, a nehostd in a
// temporary folder with its folders and log, cleanup that leaves no process behind (an
// extension orphaned by a killed nehostd included), and percentiles.
//
// A Host owns its nehostd and, when it goes, stops it with SIGTERM and then kills whatever
// extension still carries its NOTIFY_SOCKET. Not thread safe; calls block up to the
// deadlines they name. Call BecomeSubreaper once at the start, so that orphaned extensions
// are reparented to the benchmark and can be reaped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "google/protobuf/timestamp.pb.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"

namespace nehost::bench {

inline constexpr char kFilterName[] = "org.nehost.filter";

// Wall-clock nanoseconds since the epoch: nehostd's timestamps use the same clock.
int64_t WallNowNs();
int64_t ToNs(const google::protobuf::Timestamp& at);
double NsToMs(int64_t ns);

// Ctrl-C and SIGTERM set a flag that the benchmarks check, so that they clean up on the way
// out instead of dying with their children running.
void InstallInterruptHandler();
bool Interrupted();
void BecomeSubreaper();
// Reaps every exited child without waiting.
void ReapExited();

// Polls condition every millisecond until it holds or timeout passes.
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// A process held by a pidfd, so that a reused pid is never signalled.
class Child {
 public:
  Child() = default;
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  Child(Child&&) = default;
  Child& operator=(Child&&) = default;
  ~Child() { Stop(); }

  pid_t pid() const { return pid_; }
  bool running() const { return static_cast<bool>(pidfd_); }
  bool Exited() const;
  // SIGTERM, SIGKILL after a grace; reaps it when it is a child of this process.
  void Stop();
  // SIGKILL and reap.
  void Kill();
  // Waits for the exit and returns the exit code (-1 for a signal).
  int Wait();

 private:
  void Signal(int signal) const;
  bool WaitForExit(std::chrono::milliseconds timeout) const;

  pid_t pid_ = 0;
  UniqueFd pidfd_;
};

absl::StatusOr<Child> WatchProcess(pid_t pid);
// posix_spawn with stdout and stderr appended to log_path.
absl::StatusOr<Child> Spawn(std::vector<std::string> argv, const std::string& log_path);
// Runs argv to its end; an error unless it exits 0.
absl::Status RunToEnd(std::vector<std::string> argv, const std::string& log_path);

// The stamped filter builds as two packages of org.nehost.filter, 2.0.0 and 1.0.0, built and
// installed under prefix with nehost_pkg, 1.0.0 last so that "current" names it. They are
// signed with a key made for the run in dir/signing and trusted in config_dir/keys, so that
// nehostd verifies every launch as it does on a host.
struct FilterBuilds {
  std::string nehost_pkg;
  std::string v1;
  std::string v2;
};
absl::Status InstallSignedFilterPackages(const FilterBuilds& builds, const std::string& dir,
                                         const std::string& prefix, const std::string& config_dir);

absl::StatusOr<std::string> MakeTempDir(const std::string& stem);
std::string LogTail(const std::string& log_path, int lines = 10);

// SIGKILLs every process whose environment holds NOTIFY_SOCKET=runtime_dir/notify.sock: the
// extensions of a nehostd on runtime_dir. Returns how many.
int KillServiceProcesses(const std::string& runtime_dir);

// A nehostd on dir/etc, dir/run and dir/state, logging to dir/nehostd.log.
class Host {
 public:
  Host(std::string nehostd_path, std::string dir);
  ~Host();

  absl::Status MakeFolders() const;
  // Spawns nehostd and returns at once.
  absl::Status Spawn();
  // Spawns nehostd and waits until nehostd.sock takes connections.
  absl::Status Start();
  absl::Status WaitUntilConnectable(std::chrono::milliseconds timeout) const;
  // kill -9, as a crash: its extensions keep running.
  void Kill();
  // SIGTERM and wait; then no process of its services is left.
  void Stop();

  // Verified lookup, waiting for the service to be ready.
  absl::StatusOr<nehost::supervisor::v1::Registration> Lookup(const std::string& name) const;
  // One Lookup on a connection of its own, without waiting for nehostd: what a new agent sees
  // at this moment, free of the reconnect backoff that a channel to a killed nehostd is in.
  absl::StatusOr<nehost::supervisor::v1::Registration> LookupOnce(const std::string& name) const;
  nehost::supervisor::v1::Supervisor::Stub* supervisor() const { return stub_.get(); }

  std::string ServiceSocket(const std::string& name) const;
  const std::string& config_dir() const { return config_dir_; }
  const std::string& runtime_dir() const { return runtime_dir_; }
  const std::string& log_path() const { return log_path_; }
  pid_t pid() const { return process_.pid(); }

 private:
  const std::string nehostd_path_;
  const std::string config_dir_;
  const std::string runtime_dir_;
  const std::string state_dir_;
  const std::string log_path_;
  Child process_;
  std::unique_ptr<nehost::supervisor::v1::Supervisor::Stub> stub_;
};

// Nanoseconds from the log line's leading "YYYY-MM-DDTHH:MM:SS.mmmZ" timestamp, for the first
// line at or after from_line that contains needle; -1 when there is none.
int64_t LogLineTimeNs(const std::string& log_path, const std::string& needle, int from_line = 0);
int LogLineCount(const std::string& log_path);

// Nearest rank; 0 for an empty set.
double Percentile(std::vector<double> values, double fraction);
double Median(std::vector<double> values);
double Max(const std::vector<double>& values);

}  // namespace nehost::bench
