// A real nehostd for integration tests: its own temporary config, runtime and state folders,
// a log file, gRPC stubs for the supervisor and the filter, and nehostctl runs against it.
//
// The process is killed and reaped when the object goes, whatever the test did. Not thread
// safe; calls block up to the deadlines they name.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "nehost/filter/v1/filter.grpc.pb.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"
#include "tests/support/process.h"

namespace nehost::testing {

using nehost::supervisor::v1::Registration;

class Nehostd {
 public:
  // Folders live under root; root must outlive this object.
  explicit Nehostd(const TempDir& root, std::vector<std::string> extra_args = {});
  ~Nehostd();

  // Extra environment ("K=V") for the next Start, for example NEHOST_FAILPOINTS.
  void set_environment(std::vector<std::string> environment) {
    environment_ = std::move(environment);
  }

  // Writes CONFIG/services.d/FILE.
  void WriteDefinition(const std::string& file, const std::string& text) const;

  // Starts nehostd and waits until it answers on nehostd.sock.
  ::testing::AssertionResult Start();
  // SIGKILL, as a crash would: the services it launched keep running, for the next nehostd
  // on the same folders to adopt. Returns once the process is gone.
  void Kill();

  // SIGTERM, then the exit status.
  std::optional<ExitStatus> Stop(absl::Duration timeout = absl::Seconds(20));
  Subprocess* process() { return process_.get(); }

  absl::StatusOr<Registration> Lookup(const std::string& name, uint32_t wait_ms = 0);
  absl::StatusOr<Registration> Find(const std::string& name);  // from List, unverified
  // Waits until List shows name in state.
  bool WaitForState(const std::string& name, nehost::supervisor::v1::ServiceState state,
                    absl::Duration timeout = absl::Seconds(20));

  std::unique_ptr<nehost::filter::v1::Filter::Stub> FilterStub(const std::string& endpoint) const;

  // nehostctl --runtime-dir RUNTIME args...
  CommandResult Ctl(const std::vector<std::string>& args) const;

  std::string Log() const { return ReadFileOrEmpty(log_path); }

  const std::string config_dir;
  const std::string runtime_dir;
  const std::string state_dir;
  const std::string log_path;

 private:
  std::vector<std::string> extra_args_;
  std::vector<std::string> environment_;
  // Set by Kill: the services belong to whichever nehostd comes next.
  bool services_handed_on_ = false;
  std::unique_ptr<Subprocess> process_;
  std::unique_ptr<nehost::supervisor::v1::Supervisor::Stub> stub_;
};

absl::Status FromGrpc(const grpc::Status& status);

// Where the build put the programs.
std::string NehostdBinary();
std::string NehostctlBinary();
std::string FilterBinary();

}  // namespace nehost::testing
