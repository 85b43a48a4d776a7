#include "tests/support/nehostd.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_client.h"
#include "common/unix_socket.h"
#include "gtest/gtest.h"

namespace nehost::testing {

std::string NehostdBinary() { return NEHOSTD_BINARY; }
std::string NehostctlBinary() { return NEHOSTCTL_BINARY; }
std::string FilterBinary() { return NEHOST_FILTER_BINARY; }

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

namespace {

std::chrono::system_clock::time_point In(absl::Duration duration) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(duration));
}

}  // namespace

Nehostd::Nehostd(const TempDir& root, std::vector<std::string> extra_args)
    : config_dir(root / "etc"),
      runtime_dir(root / "run"),
      state_dir(root / "state"),
      log_path(root / "nehostd.log"),
      extra_args_(std::move(extra_args)) {}

Nehostd::~Nehostd() {
  if (process_ != nullptr && process_->running()) {
    process_->Signal(SIGTERM);
    if (!process_->Wait(absl::Seconds(20)).has_value()) process_->Signal(SIGKILL);
  }
  // Whatever this nehostd launched and a test left running (after a crash of nehostd) goes
  // too: its children are recognised by the notify socket they were given.
  if (services_handed_on_) return;
  for (pid_t pid : ProcessesWithEnvironment("NOTIFY_SOCKET=" + runtime_dir + "/notify.sock")) {
    ::kill(pid, SIGKILL);
  }
}

void Nehostd::WriteDefinition(const std::string& file, const std::string& text) const {
  WriteFileOrDie(config_dir + "/services.d/" + file, text);
}

::testing::AssertionResult Nehostd::Start() {
  std::vector<std::string> argv = {NehostdBinary(), "--config-dir", config_dir, "--runtime-dir",
                                   runtime_dir,     "--state-dir",  state_dir};
  // The embedded default would serve DNS on the fixed 127.0.0.1:5353; a test that wants DNS
  // defines its listeners on ports of its own, or passes its own --default-dns-listen.
  if (absl::c_find(extra_args_, "--default-dns-listen") == extra_args_.end()) {
    argv.insert(argv.end(), {"--default-dns-listen", "none"});
  }
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  process_ = std::make_unique<Subprocess>(argv, environment_, log_path);

  // nehostd binds its socket before anything else; until then a gRPC channel would only
  // learn of the socket through its slow backup poller, so wait for a plain connect first.
  std::string socket_path = runtime_dir + "/nehostd.sock";
  bool bound = WaitUntil([&] { return !process_->running() || ConnectUnix(socket_path).ok(); },
                         absl::Seconds(20));
  stub_ = nehost::supervisor::v1::Supervisor::NewStub(DialUnix(socket_path));
  if (!bound || !process_->running()) {
    return ::testing::AssertionFailure() << "nehostd did not bind " << socket_path << "; log:\n"
                                         << Log();
  }

  // Short waits, so that a nehostd that dies while starting is seen at once.
  grpc::Status listed = grpc::Status(grpc::StatusCode::UNAVAILABLE, "not asked yet");
  bool answered = WaitUntil(
      [&] {
        if (!process_->running()) return true;
        grpc::ClientContext context;
        context.set_deadline(In(absl::Milliseconds(500)));
        context.set_wait_for_ready(true);
        nehost::supervisor::v1::ListResponse response;
        listed = stub_->List(&context, {}, &response);
        return listed.ok();
      },
      absl::Seconds(20), absl::Milliseconds(1));
  if (!answered || !listed.ok()) {
    return ::testing::AssertionFailure()
           << "nehostd did not answer: " << listed.error_message() << "; log:\n"
           << Log();
  }
  return ::testing::AssertionSuccess();
}

void Nehostd::Kill() {
  services_handed_on_ = true;
  process_->Signal(SIGKILL);
  process_->Wait(absl::Seconds(10));
}

std::optional<ExitStatus> Nehostd::Stop(absl::Duration timeout) {
  process_->Signal(SIGTERM);
  return process_->Wait(timeout);
}

absl::StatusOr<Registration> Nehostd::Lookup(const std::string& name, uint32_t wait_ms) {
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(30)));
  nehost::supervisor::v1::LookupRequest request;
  request.set_name(name);
  request.set_wait_ms(wait_ms);
  nehost::supervisor::v1::LookupResponse response;
  grpc::Status status = stub_->Lookup(&context, request, &response);
  if (!status.ok()) return FromGrpc(status);
  return response.registration();
}

absl::StatusOr<Registration> Nehostd::Find(const std::string& name) {
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(10)));
  nehost::supervisor::v1::ListResponse response;
  grpc::Status status = stub_->List(&context, {}, &response);
  if (!status.ok()) return FromGrpc(status);
  for (const Registration& registration : response.registrations()) {
    if (registration.name() == name) return registration;
  }
  return absl::NotFoundError(absl::StrCat(name, " is not listed"));
}

bool Nehostd::WaitForState(const std::string& name, nehost::supervisor::v1::ServiceState state,
                           absl::Duration timeout) {
  return WaitUntil(
      [&] {
        absl::StatusOr<Registration> registration = Find(name);
        return registration.ok() && registration->state() == state;
      },
      timeout, absl::Milliseconds(20));
}

std::unique_ptr<nehost::filter::v1::Filter::Stub> Nehostd::FilterStub(
    const std::string& endpoint) const {
  return nehost::filter::v1::Filter::NewStub(DialUnix(endpoint));
}

CommandResult Nehostd::Ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {NehostctlBinary(), "--runtime-dir", runtime_dir};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

}  // namespace nehost::testing
