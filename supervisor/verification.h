// What nehostd checks about an executable right before it launches it, first launch,
// restart and upgrade alike.
//
// For a service from a package (package_prefix), the version folder's manifest.json must carry
// a signature by a key in CONFIG/keys (installer/signature.h), and the executable's sha256
// must be the one that signed manifest lists for it. For a plain definition there is no
// manifest: the executable is hashed and its sha256 recorded, and nothing is compared; the
// definition's author, who can write to CONFIG, is trusted.
//
// Either way the check and the launch use one open file: the executable is opened once, the
// opened file is hashed (or its identity found in the cache), and the launcher executes that
// same file through its descriptor (execveat), so a rename over the path in between changes
// nothing. A write into the file itself changes its ctime, which ExecutableCache::Recheck
// sees right after the exec, and the process is killed before it is registered.
//
// ExecutableCache is thread safe, with a lock of its own, so that a launch that runs without
// the supervisor's lock (an upgrade's candidate) can use it. Hashing a binary takes tens of
// milliseconds: each file is hashed once per identity (device, inode, size, modification and
// change times). A write changes the identity, except one that keeps the size and lands in the
// same tick of the kernel's coarse clock (a few milliseconds) as the change before it; only
// someone who may write the binary, root for an installed package, can try that.
#pragma once

#include <map>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/unique_fd.h"

namespace nehost::supervisor {

// Marks a status as a verification failure (an unsigned or untrusted version, a binary that
// does not match its signed manifest), which a launch reports as refused and an upgrade as
// refused with the old generation serving, rather than as an error.
absl::Status AsVerificationFailure(absl::Status status);
bool IsVerificationFailure(const absl::Status& status);

// "dev:ino:size:mtime:ctime" of an open file.
using ExecutableIdentity = std::string;

// What the signed manifest of a service's version says its executable must be.
struct ExpectedExecutable {
  // Lower-case hex; empty when there is no manifest (a plain definition).
  std::string sha256;
  // For the registration and messages: what vouched for it.
  std::string verified_by;
};

// Reads FOLDER/manifest.json with its signature, checks the signature against keys_dir, and
// finds the file (relative to the folder) among the files. Errors name the folder, the file
// and the cause.
absl::StatusOr<ExpectedExecutable> ExpectSignedFile(const std::string& folder,
                                                    const std::string& file,
                                                    const std::string& keys_dir);

// The same for a service's executable in PREFIX/versions/VERSION.
absl::StatusOr<ExpectedExecutable> ExpectSignedExecutable(const std::string& prefix,
                                                          const std::string& version,
                                                          const std::string& executable,
                                                          const std::string& keys_dir);

// An executable opened for a launch.
struct OpenedExecutable {
  UniqueFd fd;
  ExecutableIdentity identity;
  std::string sha256;
};

class ExecutableCache {
 public:
  // Opens path read-only and hashes the opened file, unless its identity is cached. When
  // expected.sha256 is set, a different digest is PERMISSION_DENIED naming both, marked as a
  // verification failure.
  absl::StatusOr<OpenedExecutable> Open(const std::string& path,
                                        const ExpectedExecutable& expected);

  // The sha256 of path, from the cache when its identity is known; empty on failure.
  std::string Digest(const std::string& path);

  // Whether the opened file is still what was hashed: call after the exec. A change is a
  // verification failure.
  static absl::Status Recheck(const OpenedExecutable& opened, const std::string& path);

 private:
  absl::StatusOr<std::string> DigestOf(int fd, const std::string& path,
                                       const ExecutableIdentity& identity);

  absl::Mutex mu_;
  // Path to (identity, sha256).
  std::map<std::string, std::pair<ExecutableIdentity, std::string>> digests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nehost::supervisor
