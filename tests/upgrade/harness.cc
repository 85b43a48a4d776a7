#include "tests/upgrade/harness.h"

#include <grpcpp/grpcpp.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_client.h"
#include "nehost/filter/v1/filter.grpc.pb.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"

namespace nehost::testing {
namespace {

// Bounds every agent, whatever the test does.
constexpr int64_t kMaxCallsPerAgent = 2'000'000;
constexpr absl::Duration kMaxAgentTime = absl::Minutes(5);

std::chrono::system_clock::time_point After(absl::Duration duration) {
  return absl::ToChronoTime(absl::Now() + duration);
}

}  // namespace

std::string FilterVariant(const std::string& version) {
  if (version == "1.0.0") return NEHOST_FILTER_V1;
  if (version == "2.0.0") return NEHOST_FILTER_V2;
  return NEHOST_FILTER_V3BAD;
}

std::string PkgBinary() { return NEHOST_PKG_BINARY; }

std::string HarnessSigningKey(const TempDir& root) {
  const std::string secret = root / "signing/harness.secret";
  if (ReadFileOrEmpty(secret).empty()) {
    CommandResult made = RunCommand({PkgBinary(), "keygen", "harness", "--out", root / "signing"});
    EXPECT_EQ(made.status.code, 0) << made.err;
    std::filesystem::create_directories(root / "etc/keys");
    WriteFileOrDie(root / "etc/keys/harness.pub", ReadFileOrEmpty(root / "signing/harness.pub"));
  }
  return secret;
}

std::string BuildFilterPackage(const TempDir& root, const std::string& version) {
  std::string package = root / ("pkg-" + version);
  CommandResult built =
      RunCommand({PkgBinary(), "build", "--version", version, "--out", package, "--file",
                  "bin/nehost-filter=" + FilterVariant(version), "--service",
                  std::string(kFilter) + "=bin/nehost-filter", "--key", HarnessSigningKey(root)});
  EXPECT_EQ(built.status.code, 0) << "nehost-pkg build: " << built.err;
  return package;
}

::testing::AssertionResult InstallFilterPackage(const TempDir& root, const std::string& prefix,
                                                const std::string& version) {
  std::string package = BuildFilterPackage(root, version);
  CommandResult installed = RunCommand(
      {PkgBinary(), "--prefix", prefix, "--config-dir", root / "etc", "install", package});
  if (installed.status.code != 0) {
    return ::testing::AssertionFailure() << "nehost-pkg install: " << installed.err;
  }
  return ::testing::AssertionSuccess();
}

std::string PackagedFilterDefinition(const std::string& prefix, const std::string& extra) {
  return absl::StrCat("name: \"", kFilter, "\"\nexecutable: \"bin/nehost-filter\"\n",
                      "package_prefix: \"", prefix, "\"\n", extra);
}

Agents::Agents(std::string runtime_dir, int count, absl::Duration call_timeout)
    : runtime_dir_(std::move(runtime_dir)), call_timeout_(call_timeout) {
  for (int i = 0; i < count; ++i) threads_.emplace_back([this] { Run(); });
}

Agents::~Agents() { Stop(); }

void Agents::Stop() {
  stop_ = true;
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

void Agents::Fail(const std::string& message) {
  absl::MutexLock lock(&mu_);
  ++failures_[message];
}

int64_t Agents::failures() const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  for (const auto& [message, count] : failures_) total += count;
  return total;
}

std::map<std::string, int64_t> Agents::failure_messages() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

std::string Agents::FailureReport() const {
  std::string report = absl::StrCat(calls(), " calls, ", failures(), " failed");
  for (const auto& [message, count] : failure_messages()) {
    absl::StrAppend(&report, "\n  ", count, "x ", message);
  }
  return report;
}

void Agents::ResetCounts() {
  absl::MutexLock lock(&mu_);
  failures_.clear();
}

bool Agents::WaitForProgress(int64_t n, absl::Duration timeout) const {
  int64_t target = successes_.load() + n * static_cast<int64_t>(threads_.size());
  return WaitUntil([&] { return successes_.load() >= target; }, timeout);
}

// One agent, as a client of the field would be: look the name up, call the service at the
// endpoint it names, again and again. A call may wait (bounded) but must not fail.
void Agents::Run() {
  auto supervisor =
      nehost::supervisor::v1::Supervisor::NewStub(DialUnix(runtime_dir_ + "/nehostd.sock"));
  std::string endpoint;
  std::unique_ptr<nehost::filter::v1::Filter::Stub> filter;
  absl::Time give_up = absl::Now() + kMaxAgentTime;

  for (int64_t i = 0; i < kMaxCallsPerAgent && !stop_ && absl::Now() < give_up; ++i) {
    ++calls_;
    grpc::ClientContext lookup_context;
    lookup_context.set_deadline(After(call_timeout_));
    lookup_context.set_wait_for_ready(true);
    nehost::supervisor::v1::LookupRequest request;
    request.set_name(kFilter);
    nehost::supervisor::v1::LookupResponse found;
    grpc::Status looked_up = supervisor->Lookup(&lookup_context, request, &found);
    if (!looked_up.ok()) {
      Fail("lookup: " + looked_up.error_message());
      continue;
    }

    if (found.registration().endpoint() != endpoint || filter == nullptr) {
      endpoint = found.registration().endpoint();
      filter = nehost::filter::v1::Filter::NewStub(DialUnix(endpoint));
    }
    grpc::ClientContext status_context;
    status_context.set_deadline(After(call_timeout_));
    status_context.set_wait_for_ready(true);
    nehost::filter::v1::StatusResponse status;
    grpc::Status called = filter->Status(&status_context, {}, &status);
    if (!called.ok()) {
      Fail("status: " + called.error_message());
      continue;
    }
    ++successes_;
  }
}

}  // namespace nehost::testing
