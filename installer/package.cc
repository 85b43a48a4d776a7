#include "installer/package.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "installer/archive.h"
#include "installer/in_use.h"

namespace nehost::installer {
namespace {

namespace fs = std::filesystem;

constexpr char kVersionsFolder[] = "versions";
constexpr char kCurrentName[] = "current";
constexpr uint32_t kExecuteBits = 0111;
constexpr int kFolderMode = 0755;

// The same status with what was being done in front: "install package /tmp/p: file ...".
absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

std::string TemporaryPath(const std::string& path) {
  return absl::StrCat(path, kTemporaryMarker, ::getpid());
}

bool Exists(const std::string& path) {
  struct stat status;
  return ::lstat(path.c_str(), &status) == 0;
}

absl::Status SyncFolder(const std::string& path) {
  UniqueFd folder(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!folder) return ErrnoStatus(errno, "open folder", path);
  if (::fsync(folder.get()) != 0) return ErrnoStatus(errno, "fsync folder", path);
  return absl::OkStatus();
}

// Every folder from root down, so that the entries made in them survive a crash.
absl::Status SyncTree(const std::string& root) {
  if (absl::Status synced = SyncFolder(root); !synced.ok()) return synced;

  std::error_code error;
  for (fs::recursive_directory_iterator it(root, error), end; !error && it != end;
       it.increment(error)) {
    if (!it->is_directory()) continue;
    if (absl::Status synced = SyncFolder(it->path().string()); !synced.ok()) return synced;
  }
  if (error) return ErrnoStatus(error.value(), "list folder", root);
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  std::error_code error;
  fs::remove_all(path, error);
  if (error) return ErrnoStatus(error.value(), "remove", path);
  return absl::OkStatus();
}

// An exclusive flock on the prefix folder, held until the fd closes. It locks a folder that
// exists anyway, so a failed install leaves no lock file behind.
absl::StatusOr<UniqueFd> LockPrefix(const std::string& prefix) {
  UniqueFd fd(::open(prefix.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, "open prefix folder", prefix);
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoStatus(errno, "lock prefix folder", prefix);
  }
  return fd;
}

// Copies contents and sets mode exactly, whatever the umask, then makes the copy durable.
absl::Status CopyFile(const std::string& source, const std::string& destination, uint32_t mode) {
  std::error_code error;
  fs::copy_file(source, destination, fs::copy_options::none, error);
  if (error) return ErrnoStatus(error.value(), absl::StrCat("copy ", source, " to"), destination);
  if (::chmod(destination.c_str(), mode) != 0) return ErrnoStatus(errno, "chmod", destination);

  UniqueFd copy(::open(destination.c_str(), O_RDONLY | O_CLOEXEC));
  if (!copy || ::fsync(copy.get()) != 0) return ErrnoStatus(errno, "fsync", destination);
  return absl::OkStatus();
}

// Copies source to root/PATH, making the folders on the way.
absl::Status PlaceFile(const std::string& source, const std::string& root,
                       const PackageFile& file) {
  const fs::path destination = fs::path(root) / file.path();
  absl::Status made = MakeDirs(destination.parent_path().string(), kFolderMode);
  if (!made.ok()) return made;
  return CopyFile(source, destination.string(), EffectiveMode(file));
}

absl::StatusOr<PackageFile> DraftFile(const std::string& path, const std::string& source) {
  struct stat status;
  if (::stat(source.c_str(), &status) != 0) return ErrnoStatus(errno, "stat", source);
  if (!S_ISREG(status.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(source, " is not a regular file"));
  }
  absl::StatusOr<std::string> sha256 = Sha256File(source);
  if (!sha256.ok()) return sha256.status();

  PackageFile file;
  file.set_path(path);
  file.set_sha256(*sha256);
  file.set_mode((status.st_mode & kExecuteBits) != 0 ? 0755 : 0644);
  return file;
}

absl::StatusOr<Manifest> DraftManifest(const BuildSpec& spec) {
  Manifest manifest;
  manifest.set_version(spec.version);
  for (const auto& [path, source] : spec.files) {
    absl::StatusOr<PackageFile> file = DraftFile(path, source);
    if (!file.ok()) return WithContext(file.status(), absl::StrCat("file \"", path, "\""));
    *manifest.add_files() = *std::move(file);
  }
  for (const auto& [name, executable] : spec.services) {
    PackageService* service = manifest.add_services();
    service->set_name(name);
    service->set_executable(executable);
  }

  if (absl::Status valid = ValidateManifest(manifest); !valid.ok()) return valid;
  return manifest;
}

absl::Status MakeEmptyFolder(const std::string& path) {
  std::error_code error;
  if (fs::is_directory(path, error) && !fs::is_empty(path, error)) {
    return absl::FailedPreconditionError(absl::StrCat("folder ", path, " is not empty"));
  }
  return MakeDirs(path, kFolderMode);
}

absl::Status WritePackage(const BuildSpec& spec, const Manifest& manifest) {
  if (absl::Status made = MakeEmptyFolder(spec.out_dir); !made.ok()) return made;
  for (int i = 0; i < manifest.files_size(); ++i) {
    absl::Status placed = PlaceFile(spec.files[i].second, spec.out_dir, manifest.files(i));
    if (!placed.ok()) return placed;
  }

  // A source that changed while it was copied would make a package that never installs.
  if (absl::Status verified = VerifyFiles(spec.out_dir, manifest); !verified.ok()) return verified;
  return WriteJsonProto(absl::StrCat(spec.out_dir, "/", kManifestFile), manifest);
}

// What the last successful install or switch made current, or empty.
std::string CurrentOrNone(const std::string& prefix) {
  absl::StatusOr<std::string> current = CurrentVersion(prefix);
  if (current.ok()) return *current;
  if (!absl::IsNotFound(current.status())) {
    spdlog::warn("ignoring current link: {}", current.status().message());
  }
  return "";
}

// Points P/current at versions/VERSION with one rename, so that a reader never finds it
// missing. Returns the version it named before, or empty.
absl::StatusOr<std::string> PointCurrentAt(const std::string& prefix, const std::string& version) {
  const std::string previous = CurrentOrNone(prefix);
  const std::string link = CurrentLink(prefix);
  const std::string temporary = TemporaryPath(link);
  ::unlink(temporary.c_str());  // left by an earlier run with this pid that crashed

  const std::string target = absl::StrCat(kVersionsFolder, "/", version);
  if (::symlink(target.c_str(), temporary.c_str()) != 0) {
    return ErrnoStatus(errno, "create symlink", temporary);
  }
  if (::rename(temporary.c_str(), link.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return ErrnoStatus(error, "rename symlink over", link);
  }
  if (absl::Status synced = SyncFolder(prefix); !synced.ok()) return synced;

  spdlog::info("switched current={} previous={}", version, previous.empty() ? "none" : previous);
  return previous;
}

// A manifest in a version folder must name the version the folder is for.
absl::Status CheckNamesVersion(const Manifest& manifest, const std::string& version,
                               const std::string& folder) {
  if (manifest.version() == version) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("manifest in ", folder, " names version ",
                                          manifest.version(), ", not ", version));
}

// The installed version's manifest, which must name the folder it lies in.
absl::StatusOr<Manifest> ReadInstalled(const std::string& prefix, const std::string& version) {
  if (absl::Status valid = ValidateVersion(version); !valid.ok()) return valid;
  const std::string folder = VersionDir(prefix, version);
  if (!Exists(folder)) {
    return absl::NotFoundError(
        absl::StrCat("version ", version, " is not installed (no ", folder, ")"));
  }
  absl::StatusOr<Manifest> manifest = ReadManifest(folder);
  if (!manifest.ok()) return manifest.status();
  if (absl::Status named = CheckNamesVersion(*manifest, version, folder); !named.ok()) {
    return named;
  }
  return manifest;
}

// Switches to an installed version once its files pass, and its signature when a keyring is
// given: a key withdrawn since the install no longer vouches for it. The caller holds the lock.
absl::StatusOr<std::string> SwitchVerified(const std::string& prefix, const std::string& version,
                                           const Keyring* keyring) {
  absl::StatusOr<Manifest> manifest = ReadInstalled(prefix, version);
  if (!manifest.ok()) return manifest.status();
  if (keyring != nullptr) {
    absl::StatusOr<SignedManifest> signed_manifest =
        ReadSignedManifest(VersionDir(prefix, version), *keyring);
    if (!signed_manifest.ok()) {
      return WithContext(signed_manifest.status(), absl::StrCat("version ", version));
    }
    // The files are checked against the bytes that verified, not an earlier read of them.
    if (absl::Status named =
            CheckNamesVersion(signed_manifest->manifest, version, VersionDir(prefix, version));
        !named.ok()) {
      return named;
    }
    *manifest = std::move(signed_manifest->manifest);
  }
  absl::Status verified = VerifyFiles(VersionDir(prefix, version), *manifest);
  if (!verified.ok()) return WithContext(verified, absl::StrCat("version ", version));
  return PointCurrentAt(prefix, version);
}

// A version folder that exists already must hold this very package, undamaged.
absl::Status CheckInstalledSame(const std::string& prefix, const Manifest& manifest) {
  const std::string folder = VersionDir(prefix, manifest.version());
  absl::StatusOr<Manifest> installed = ReadInstalled(prefix, manifest.version());
  if (!installed.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        folder, " exists but is not an installed version: ", installed.status().message()));
  }
  if (!SameContents(*installed, manifest)) {
    return absl::AlreadyExistsError(absl::StrCat("version ", manifest.version(),
                                                 " is already installed with other contents in ",
                                                 folder, "; give this package a new version"));
  }
  if (absl::Status verified = VerifyFiles(folder, *installed); !verified.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "version ", manifest.version(), " is already installed but damaged: ", verified.message(),
        "; remove ", folder, " to install it again"));
  }
  return absl::OkStatus();
}

// Fills folder with the package's files, its manifest and signatures exactly as they were read
// and checked, and the install time.
absl::Status CopyVersion(const std::string& package_dir, const SignedManifest& signed_manifest,
                         const std::string& folder) {
  const Manifest& manifest = signed_manifest.manifest;
  if (absl::Status made = MakeDirs(folder, kFolderMode); !made.ok()) return made;
  for (const PackageFile& file : manifest.files()) {
    absl::Status placed = PlaceFile(absl::StrCat(package_dir, "/", file.path()), folder, file);
    if (!placed.ok()) return WithContext(placed, absl::StrCat("file \"", file.path(), "\""));
  }

  const std::string manifest_path = absl::StrCat(folder, "/", kManifestFile);
  if (absl::Status written = WriteFileAtomically(manifest_path, signed_manifest.json);
      !written.ok()) {
    return written;
  }
  const std::string signature_path = absl::StrCat(folder, "/", kSignatureFile);
  if (absl::Status written = WriteFileAtomically(signature_path, signed_manifest.signature);
      !written.ok()) {
    return written;
  }
  const std::string installed_at = FormatInstallTime(absl::Now()) + "\n";
  absl::Status written =
      WriteFileAtomically(absl::StrCat(folder, "/", kInstalledAtFile), installed_at);
  if (!written.ok()) return written;

  // The package was checked before the copy; a file changed since must not slip in.
  if (absl::Status verified = VerifyFiles(folder, manifest); !verified.ok()) return verified;
  return SyncTree(folder);
}

// Copies the package to P/versions/VERSION through a temporary folder, or finds it there
// already. Whether it copied.
absl::StatusOr<bool> PlaceVersion(const std::string& package_dir,
                                  const SignedManifest& signed_manifest,
                                  const std::string& prefix) {
  const Manifest& manifest = signed_manifest.manifest;
  const std::string folder = VersionDir(prefix, manifest.version());
  if (Exists(folder)) {
    absl::Status same = CheckInstalledSame(prefix, manifest);
    if (!same.ok()) return same;
    spdlog::info("version={} already installed with the same contents: nothing to copy",
                 manifest.version());
    return false;
  }

  const std::string temporary = TemporaryPath(folder);
  RemoveTree(temporary).IgnoreError();  // left by an earlier run with this pid that crashed
  absl::Status copied = CopyVersion(package_dir, signed_manifest, temporary);
  if (copied.ok() && ::rename(temporary.c_str(), folder.c_str()) != 0) {
    copied = ErrnoStatus(errno, "rename into place", folder);
  }
  if (copied.ok()) copied = SyncFolder(VersionsDir(prefix));
  if (!copied.ok()) {
    RemoveTree(temporary).IgnoreError();
    return copied;
  }
  spdlog::info("installed version={} folder={} files={}", manifest.version(), folder,
               manifest.files_size());
  return true;
}

// Takes a version folder out of the listing at once, then deletes it: a crash part way
// leaves only a temporary, never a version with files missing.
absl::Status RemoveVersion(const std::string& prefix, const std::string& version) {
  const std::string folder = VersionDir(prefix, version);
  const std::string temporary = TemporaryPath(folder);
  if (::rename(folder.c_str(), temporary.c_str()) != 0) {
    return ErrnoStatus(errno, "rename for removal", folder);
  }
  return RemoveTree(temporary);
}

// OK when the entry is a folder holding the installed version called name; else why not.
absl::Status CheckVersionFolder(const fs::directory_entry& entry, const std::string& name) {
  std::error_code error;
  if (!entry.is_directory(error) || entry.is_symlink(error)) {
    return absl::FailedPreconditionError("not a folder");
  }
  absl::StatusOr<Manifest> manifest = ReadManifest(entry.path().string());
  if (!manifest.ok()) return manifest.status();
  if (manifest->version() != name) {
    return absl::FailedPreconditionError(
        absl::StrCat("its manifest names version ", manifest->version()));
  }
  return absl::OkStatus();
}

// The names of the installed version folders, in no particular order.
absl::StatusOr<std::vector<std::string>> InstalledVersionNames(const std::string& prefix) {
  const std::string versions = VersionsDir(prefix);
  std::vector<std::string> names;
  std::error_code error;
  fs::directory_iterator it(versions, error);
  if (error == std::errc::no_such_file_or_directory) return names;

  for (fs::directory_iterator end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (absl::StrContains(name, kTemporaryMarker)) continue;
    if (absl::Status installed = CheckVersionFolder(*it, name); !installed.ok()) {
      spdlog::warn("skipping folder={}: not an installed version: {}", it->path().string(),
                   installed.message());
      continue;
    }
    names.push_back(name);
  }
  if (error) return ErrnoStatus(error.value(), "list folder", versions);
  return names;
}

absl::Time InstalledAt(const std::string& folder) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat(folder, "/", kInstalledAtFile));
  absl::Time time;
  std::string ignored;
  if (text.ok() &&
      absl::ParseTime(absl::RFC3339_full, absl::StripAsciiWhitespace(*text), &time, &ignored)) {
    return time;
  }
  // A folder put in place by hand has no install time: its modification time comes closest.
  struct stat status;
  if (::stat(folder.c_str(), &status) == 0) return absl::TimeFromTimespec(status.st_mtim);
  return absl::InfinitePast();
}

bool NewerFirst(const InstalledVersion& a, const InstalledVersion& b) {
  if (a.installed_at != b.installed_at) return a.installed_at > b.installed_at;
  return a.version > b.version;
}

// The newest version installed before the current one.
absl::StatusOr<std::string> PreviousVersion(const std::string& prefix) {
  absl::StatusOr<std::vector<InstalledVersion>> versions = ListVersions(prefix);
  if (!versions.ok()) return versions.status();

  auto current = absl::c_find_if(*versions, [](const InstalledVersion& v) { return v.current; });
  if (current == versions->end()) {
    return absl::FailedPreconditionError("no version is current; name the one to roll back to");
  }
  if (current + 1 == versions->end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no version was installed before the current one, ", current->version));
  }
  return (current + 1)->version;
}

// The list is newest first: the first versions that are not current fill the recent places.
std::vector<CollectDecision> DecideCollection(const std::vector<InstalledVersion>& versions,
                                              int keep) {
  const bool has_current = absl::c_any_of(versions, [](const auto& v) { return v.current; });
  int recent_places = keep - (has_current ? 1 : 0);

  std::vector<CollectDecision> decisions;
  for (const InstalledVersion& version : versions) {
    CollectDecision decision{.version = version.version, .pids = version.pids};
    if (version.current) {
      decision.reason = CollectReason::kCurrent;
    } else if (recent_places > 0) {
      --recent_places;
      decision.reason = CollectReason::kRecent;
    } else if (version.in_use()) {
      decision.reason = CollectReason::kInUse;
    }
    decisions.push_back(std::move(decision));
  }
  return decisions;
}

// Temporaries under P belong to installers that died: every live one holds the lock.
void RemoveStaleTemporaries(const std::string& prefix) {
  for (const std::string& folder : {prefix, VersionsDir(prefix)}) {
    std::error_code error;
    for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
      if (!absl::StrContains(it->path().filename().string(), kTemporaryMarker)) continue;
      spdlog::info("removing stale temporary path={}", it->path().string());
      absl::Status removed = RemoveTree(it->path().string());
      if (!removed.ok()) spdlog::warn("leaving stale temporary: {}", removed.message());
    }
  }
}

// A private folder that goes, with everything in it, when the object does.
class TemporaryFolder {
 public:
  static absl::StatusOr<std::unique_ptr<TemporaryFolder>> Create(const std::string& parent) {
    std::string pattern = absl::StrCat(parent, "/nehost-pkg-XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      return ErrnoStatus(errno, "create temporary folder in", parent);
    }
    return std::unique_ptr<TemporaryFolder>(new TemporaryFolder(std::move(pattern)));
  }
  ~TemporaryFolder() {
    absl::Status removed = RemoveTree(path_);
    if (!removed.ok()) spdlog::warn("leaving temporary folder: {}", removed.message());
  }
  TemporaryFolder(const TemporaryFolder&) = delete;
  TemporaryFolder& operator=(const TemporaryFolder&) = delete;

  const std::string& path() const { return path_; }

 private:
  explicit TemporaryFolder(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Extracts an archive into a private folder, outside the prefix: nothing in it is trusted
// until its signature and hashes are checked.
absl::StatusOr<std::unique_ptr<TemporaryFolder>> Unpack(const std::string& archive,
                                                        const InstallOptions& options) {
  std::string parent = options.work_dir;
  if (parent.empty()) {
    std::error_code error;
    parent = fs::temp_directory_path(error).string();
    if (error) return ErrnoStatus(error.value(), "find", "the temporary folder");
  }
  absl::StatusOr<std::unique_ptr<TemporaryFolder>> folder = TemporaryFolder::Create(parent);
  if (!folder.ok()) return folder.status();
  absl::Status extracted = ExtractPackageArchive(archive, (*folder)->path(), options.limits);
  if (!extracted.ok()) return extracted;
  return folder;
}

// A package that passed every check, and the folder its files are in: the source itself, or
// the private folder its archive was extracted into, which goes with this object.
struct CheckedPackage {
  std::unique_ptr<TemporaryFolder> unpacked;
  std::string folder;
  SignedManifest signed_manifest;
};

// The signature first, then the manifest, then every file's sha256.
absl::StatusOr<CheckedPackage> CheckPackage(const std::string& source, const Keyring& keyring,
                                            const InstallOptions& options) {
  CheckedPackage package{.unpacked = nullptr, .folder = source, .signed_manifest = {}};
  if (IsPackageArchive(source)) {
    absl::StatusOr<std::unique_ptr<TemporaryFolder>> unpacked = Unpack(source, options);
    if (!unpacked.ok()) return unpacked.status();
    package.unpacked = *std::move(unpacked);
    package.folder = package.unpacked->path();
  }

  absl::StatusOr<SignedManifest> signed_manifest = ReadSignedManifest(package.folder, keyring);
  if (!signed_manifest.ok()) return signed_manifest.status();
  package.signed_manifest = *std::move(signed_manifest);
  absl::Status verified = VerifyFiles(package.folder, package.signed_manifest.manifest);
  if (!verified.ok()) return verified;
  return package;
}

void LogDecision(const CollectDecision& decision) {
  if (decision.removed()) {
    spdlog::info("removing version={} reason={}", decision.version,
                 CollectReasonName(decision.reason));
  } else if (decision.reason == CollectReason::kInUse) {
    spdlog::info("keeping version={} reason=in-use pids={}", decision.version,
                 absl::StrJoin(decision.pids, ","));
  } else {
    spdlog::info("keeping version={} reason={}", decision.version,
                 CollectReasonName(decision.reason));
  }
}

}  // namespace

std::string VersionsDir(const std::string& prefix) {
  return absl::StrCat(prefix, "/", kVersionsFolder);
}

std::string VersionDir(const std::string& prefix, const std::string& version) {
  return absl::StrCat(prefix, "/", kVersionsFolder, "/", version);
}

std::string CurrentLink(const std::string& prefix) {
  return absl::StrCat(prefix, "/", kCurrentName);
}

absl::StatusOr<Manifest> BuildPackage(const BuildSpec& spec) {
  const std::string context = absl::StrCat("build package ", spec.out_dir);
  absl::StatusOr<Manifest> manifest = DraftManifest(spec);
  if (!manifest.ok()) return WithContext(manifest.status(), context);
  if (absl::Status written = WritePackage(spec, *manifest); !written.ok()) {
    return WithContext(written, context);
  }

  spdlog::info("built package version={} out={} files={} services={}", spec.version, spec.out_dir,
               manifest->files_size(), manifest->services_size());
  return manifest;
}

absl::StatusOr<InstallResult> Install(const std::string& source, const std::string& prefix,
                                      const Keyring& keyring, const InstallOptions& options) {
  const std::string context = absl::StrCat("install package ", source);
  absl::StatusOr<CheckedPackage> package = CheckPackage(source, keyring, options);
  if (!package.ok()) return WithContext(package.status(), context);
  const Manifest& manifest = package->signed_manifest.manifest;

  // Only a package known to be good gets to touch P.
  if (absl::Status made = MakeDirs(VersionsDir(prefix), kFolderMode); !made.ok()) {
    return WithContext(made, context);
  }
  absl::StatusOr<UniqueFd> lock = LockPrefix(prefix);
  if (!lock.ok()) return WithContext(lock.status(), context);

  absl::StatusOr<bool> copied = PlaceVersion(package->folder, package->signed_manifest, prefix);
  if (!copied.ok()) return WithContext(copied.status(), context);

  absl::StatusOr<std::string> previous = PointCurrentAt(prefix, manifest.version());
  if (!previous.ok()) {
    // Nothing under P may change on failure: the new version goes again.
    if (*copied) RemoveVersion(prefix, manifest.version()).IgnoreError();
    return WithContext(previous.status(), context);
  }
  const std::string& signer = package->signed_manifest.signer.key_id;
  spdlog::info("verified version={} signed_by={}", manifest.version(), signer);
  return InstallResult{.version = manifest.version(),
                       .previous = *previous,
                       .already_installed = !*copied,
                       .signed_by = signer};
}

absl::StatusOr<SignedManifest> VerifyPackage(const std::string& source, const Keyring& keyring,
                                             const InstallOptions& options) {
  absl::StatusOr<CheckedPackage> package = CheckPackage(source, keyring, options);
  if (!package.ok()) {
    return WithContext(package.status(), absl::StrCat("verify package ", source));
  }
  return std::move(package->signed_manifest);
}

std::string FormatInstallTime(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", time, absl::UTCTimeZone());
}

absl::StatusOr<std::string> CurrentVersion(const std::string& prefix) {
  const std::string link = CurrentLink(prefix);
  std::error_code error;
  const fs::path target = fs::read_symlink(link, error);
  if (error == std::errc::no_such_file_or_directory) {
    return absl::NotFoundError(absl::StrCat("no current version: ", link, " does not exist"));
  }
  if (error) return ErrnoStatus(error.value(), "read symlink", link);

  const std::string text = target.string();
  absl::string_view version = text;
  if (!absl::ConsumePrefix(&version, absl::StrCat(kVersionsFolder, "/")) ||
      !ValidateVersion(std::string(version)).ok()) {
    return absl::DataLossError(
        absl::StrCat(link, " points to ", text, ", not to versions/VERSION"));
  }
  return std::string(version);
}

absl::StatusOr<std::string> SwitchCurrent(const std::string& prefix, const std::string& version,
                                          const Keyring* keyring) {
  const std::string context = absl::StrCat("switch current under ", prefix, " to ", version);
  absl::StatusOr<UniqueFd> lock = LockPrefix(prefix);
  if (!lock.ok()) return WithContext(lock.status(), context);

  absl::StatusOr<std::string> previous = SwitchVerified(prefix, version, keyring);
  if (!previous.ok()) return WithContext(previous.status(), context);
  return previous;
}

absl::StatusOr<std::vector<InstalledVersion>> ListVersions(const std::string& prefix) {
  absl::StatusOr<std::vector<std::string>> names = InstalledVersionNames(prefix);
  if (!names.ok()) return names.status();
  const std::string current = CurrentOrNone(prefix);
  const std::vector<RunningProcess> processes = RunningProcesses();

  std::vector<InstalledVersion> versions;
  for (const std::string& name : *names) {
    const std::string folder = VersionDir(prefix, name);
    versions.push_back({.version = name,
                        .installed_at = InstalledAt(folder),
                        .current = name == current,
                        .pids = ProcessesRunningFrom(folder, processes)});
  }
  std::sort(versions.begin(), versions.end(), NewerFirst);
  return versions;
}

absl::StatusOr<RollbackResult> Rollback(const std::string& prefix, const std::string& to,
                                        const Keyring* keyring) {
  const std::string context = absl::StrCat("rollback under ", prefix);
  absl::StatusOr<UniqueFd> lock = LockPrefix(prefix);
  if (!lock.ok()) return WithContext(lock.status(), context);

  absl::StatusOr<std::string> target = to.empty() ? PreviousVersion(prefix) : to;
  if (!target.ok()) return WithContext(target.status(), context);
  const std::string current = CurrentOrNone(prefix);
  if (*target == current) {
    spdlog::info("rollback: version={} is already current", current);
    return RollbackResult{.from = current, .to = current};
  }

  absl::StatusOr<std::string> previous = SwitchVerified(prefix, *target, keyring);
  if (!previous.ok()) return WithContext(previous.status(), context);
  return RollbackResult{.from = *previous, .to = *target};
}

const char* CollectReasonName(CollectReason reason) {
  switch (reason) {
    case CollectReason::kCurrent:
      return "current";
    case CollectReason::kRecent:
      return "recent";
    case CollectReason::kInUse:
      return "in-use";
    case CollectReason::kOld:
      return "old";
  }
  return "unknown";
}

absl::StatusOr<std::vector<CollectDecision>> CollectVersions(const std::string& prefix, int keep) {
  const std::string context = absl::StrCat("collect versions under ", prefix);
  if (keep < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        context, ": keep is ", keep, "; the current version always stays, so at least 1"));
  }
  if (!Exists(VersionsDir(prefix))) return std::vector<CollectDecision>{};
  absl::StatusOr<UniqueFd> lock = LockPrefix(prefix);
  if (!lock.ok()) return WithContext(lock.status(), context);

  RemoveStaleTemporaries(prefix);
  absl::StatusOr<std::vector<InstalledVersion>> versions = ListVersions(prefix);
  if (!versions.ok()) return WithContext(versions.status(), context);

  std::vector<CollectDecision> decisions = DecideCollection(*versions, keep);
  for (const CollectDecision& decision : decisions) {
    LogDecision(decision);
    if (!decision.removed()) continue;
    absl::Status removed = RemoveVersion(prefix, decision.version);
    if (!removed.ok()) return WithContext(removed, context);
  }
  return decisions;
}

}  // namespace nehost::installer
