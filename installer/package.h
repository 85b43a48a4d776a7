// Versioned installs of nehost packages under a prefix P (default /opt/nehost):
//
//   P/versions/VERSION/manifest.json   the package's manifest, as it came
//   P/versions/VERSION/installed_at    when it was installed, RFC 3339 UTC
//   P/versions/VERSION/...             the package's files, each at its manifest path
//   P/current -> versions/VERSION      the version to run: nehostd reads it, then the manifest
//
// An installed version folder does not change. Install copies a package into a temporary
// folder beside its final place and renames it there; it moves `current` by renaming a new
// symlink over it. A reader, such as nehostd, sees the old layout or the new one, never half
// of one, and a crash leaves at worst a temporary that the next CollectVersions removes. A
// version stays while any process runs from it (see in_use.h).
//
// The functions own nothing beyond the call. Those that change P (Install, SwitchCurrent,
// Rollback, CollectVersions) hold an exclusive flock on the P folder while they work, so
// installers in other processes or threads take turns: they block until the holder is done.
// Every call blocks on the disk; ListVersions and CollectVersions also read all of /proc.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "installer/archive.h"
#include "installer/manifest.h"
#include "installer/signature.h"

namespace nehost::installer {

inline constexpr char kDefaultPrefix[] = "/opt/nehost";
// nehost's configuration folder, which holds the trusted keys in keys/ (signature.h).
inline constexpr char kDefaultConfigDir[] = "/etc/nehost";
// Versions that CollectVersions keeps by default, counting the current one.
inline constexpr int kDefaultKeep = 2;

std::string VersionsDir(const std::string& prefix);
std::string VersionDir(const std::string& prefix, const std::string& version);
std::string CurrentLink(const std::string& prefix);

// What `nehost-pkg build` makes a package from.
struct BuildSpec {
  std::string version = {};
  // Created if missing; must be empty if it exists.
  std::string out_dir = {};
  // Each file's path in the package, and the file to copy there.
  std::vector<std::pair<std::string, std::string>> files = {};
  // Each service's name, and its executable's path in the package.
  std::vector<std::pair<std::string, std::string>> services = {};
};

// Copies the files into out_dir and writes its manifest.json. A file's mode is 0755 when its
// source has an execute bit, else 0644, whatever the other bits.
absl::StatusOr<Manifest> BuildPackage(const BuildSpec& spec);

struct InstallResult {
  std::string version = {};
  // The version `current` named before, or empty.
  std::string previous = {};
  // The same version with the same contents was there: nothing was copied.
  bool already_installed = false;
  // The id of the trusted key whose signature verified.
  std::string signed_by = {};
};

struct InstallOptions {
  ExtractLimits limits = {};
  // Where an archive is extracted before it is checked; the system's temporary folder when
  // empty. The extraction is removed afterwards, whatever happened.
  std::string work_dir = {};
};

// Installs a package, a folder or an archive of one (archive.h), as P/versions/VERSION and
// makes it current. Before anything under P changes, the manifest's signature must verify
// against a key of the keyring (signature.h), and then the manifest and the hash of every
// file must pass. On any error nothing under P changes, and the message names the package,
// the file and the cause. A version installed before with other contents is refused; with
// the same contents, its installed files are verified and it becomes current again.
absl::StatusOr<InstallResult> Install(const std::string& source, const std::string& prefix,
                                      const Keyring& keyring, const InstallOptions& options = {});

// The checks of Install, without installing: the signature, the manifest and every file.
absl::StatusOr<SignedManifest> VerifyPackage(const std::string& source, const Keyring& keyring,
                                             const InstallOptions& options = {});

// RFC 3339 in UTC with nanoseconds, "2024-05-01T12:00:00.123456789Z": how installed_at
// files and `nehost-pkg list --json` write install times.
std::string FormatInstallTime(absl::Time time);

// The version P/current names. NOT_FOUND when there is none.
absl::StatusOr<std::string> CurrentVersion(const std::string& prefix);

// Makes an installed version current after verifying its files, and its signature when a
// keyring is given; returns the version that was current before, or empty.
absl::StatusOr<std::string> SwitchCurrent(const std::string& prefix, const std::string& version,
                                          const Keyring* keyring = nullptr);

struct InstalledVersion {
  std::string version = {};
  absl::Time installed_at = {};
  bool current = false;
  // The processes running from the version folder at the time of the call.
  std::vector<pid_t> pids = {};

  bool in_use() const { return !pids.empty(); }
};

// The installed versions, newest install first. Folders under P/versions that are not
// installed versions (temporaries, folders without a matching manifest) are left out, the
// latter with a warning. Empty when P holds nothing.
absl::StatusOr<std::vector<InstalledVersion>> ListVersions(const std::string& prefix);

struct RollbackResult {
  std::string from = {};  // empty when nothing was current
  std::string to = {};
};

// Makes `to` current, or, when it is empty, the newest version installed before the current
// one, checked as SwitchCurrent does. Rolling back to the current version changes nothing and
// succeeds.
absl::StatusOr<RollbackResult> Rollback(const std::string& prefix, const std::string& to = "",
                                        const Keyring* keyring = nullptr);

enum class CollectReason {
  kCurrent,  // kept: P/current names it
  kRecent,   // kept: among the most recently installed
  kInUse,    // kept: a process runs from it
  kOld,      // removed
};

// "current", "recent", "in-use", "old".
const char* CollectReasonName(CollectReason reason);

struct CollectDecision {
  std::string version = {};
  CollectReason reason = CollectReason::kOld;
  std::vector<pid_t> pids = {};  // for kInUse

  bool removed() const { return reason == CollectReason::kOld; }
};

// Removes each version folder that is not current, not among the keep most recently
// installed (counting the current one), and not in use by a running process, and any
// temporary left by an installer that died. Logs every decision with its reason.
absl::StatusOr<std::vector<CollectDecision>> CollectVersions(const std::string& prefix,
                                                             int keep = kDefaultKeep);

}  // namespace nehost::installer
