// The upgrade regression harness: packages of nehost-filter stamped v1, v2 and a bad v3,
// installed with the real nehost-pkg, and agents that call Lookup and Status all the time,
// counting every failure with its message.
//
// Agents run on threads of their own until Stop, bounded in calls and time. Not thread safe
// otherwise: each test owns its objects.
#pragma once

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/support/nehostd.h"

namespace nehost::testing {

inline constexpr char kFilter[] = "org.nehost.filter";

// Where the stamped variants of nehost-filter were built.
std::string FilterVariant(const std::string& version);  // "1.0.0", "2.0.0", "3.0.0-bad"
std::string PkgBinary();

// The harness's signing key, made on first use: root/signing/harness.secret, with its public
// half trusted in root/etc/keys, the keys folder of the Nehostd on root (and of nehost-pkg
// below). Returns the secret key file.
std::string HarnessSigningKey(const TempDir& root);

// Builds a package of the variant into root/pkg-VERSION, signed with the harness key, and
// installs it under prefix.
::testing::AssertionResult InstallFilterPackage(const TempDir& root, const std::string& prefix,
                                                const std::string& version);

// Builds the signed package only; returns its folder.
std::string BuildFilterPackage(const TempDir& root, const std::string& version);

// The definition of org.nehost.filter from the packages under prefix.
std::string PackagedFilterDefinition(const std::string& prefix, const std::string& extra = "");

class Agents {
 public:
  // count agents against nehostd's runtime folder; each call waits at most call_timeout.
  Agents(std::string runtime_dir, int count, absl::Duration call_timeout = absl::Seconds(10));
  ~Agents();  // Stops.

  void Stop();
  int64_t calls() const { return calls_.load(); }
  int64_t failures() const;
  // Each distinct failure message, with how often it was seen.
  std::map<std::string, int64_t> failure_messages() const;
  std::string FailureReport() const;
  void ResetCounts();

  // Waits until every agent has made n more successful calls than now.
  bool WaitForProgress(int64_t n, absl::Duration timeout) const;

 private:
  void Run();
  void Fail(const std::string& message);

  const std::string runtime_dir_;
  const absl::Duration call_timeout_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> calls_{0};
  std::atomic<int64_t> successes_{0};
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace nehost::testing
