#include "supervisor/verification.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/log.h"
#include "installer/package.h"
#include "installer/signature.h"

namespace nehost::supervisor {
namespace {

ExecutableIdentity IdentityOf(const struct stat& info) {
  return absl::StrCat(info.st_dev, ":", info.st_ino, ":", info.st_size, ":", info.st_mtim.tv_sec,
                      ".", info.st_mtim.tv_nsec, ":", info.st_ctim.tv_sec, ".",
                      info.st_ctim.tv_nsec);
}

absl::StatusOr<ExecutableIdentity> IdentityOfFd(int fd, const std::string& path) {
  struct stat info;
  if (::fstat(fd, &info) != 0) return ErrnoStatus(errno, "stat executable", path);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("executable ", path, " is not a file"));
  }
  return IdentityOf(info);
}

constexpr char kVerificationPayload[] = "type.nehost.org/verification-failure";

}  // namespace

absl::Status AsVerificationFailure(absl::Status status) {
  if (!status.ok()) status.SetPayload(kVerificationPayload, absl::Cord("1"));
  return status;
}

bool IsVerificationFailure(const absl::Status& status) {
  return status.GetPayload(kVerificationPayload).has_value();
}

absl::StatusOr<ExpectedExecutable> ExpectSignedExecutable(const std::string& prefix,
                                                          const std::string& version,
                                                          const std::string& executable,
                                                          const std::string& keys_dir) {
  const std::string folder = installer::VersionDir(prefix, version);
  absl::StatusOr<ExpectedExecutable> expected = ExpectSignedFile(folder, executable, keys_dir);
  if (expected.ok()) return expected;
  return absl::Status(expected.status().code(), absl::StrCat("verify version ", version, " in ",
                                                             expected.status().message()));
}

absl::StatusOr<ExpectedExecutable> ExpectSignedFile(const std::string& folder,
                                                    const std::string& executable,
                                                    const std::string& keys_dir) {
  const std::string subject = absl::StrCat(folder, ": ");
  absl::StatusOr<installer::Keyring> keyring = installer::Keyring::Load(keys_dir);
  if (!keyring.ok()) {
    return absl::Status(keyring.status().code(), subject + std::string(keyring.status().message()));
  }
  absl::StatusOr<installer::SignedManifest> signed_manifest =
      installer::ReadSignedManifest(folder, *keyring);
  if (!signed_manifest.ok()) {
    return absl::Status(signed_manifest.status().code(),
                        subject + std::string(signed_manifest.status().message()));
  }

  for (const installer::PackageFile& file : signed_manifest->manifest.files()) {
    if (file.path() != executable) continue;
    return ExpectedExecutable{
        .sha256 = file.sha256(),
        .verified_by = absl::StrCat("signed manifest ", folder, "/", installer::kManifestFile,
                                    ", key ", signed_manifest->signer.key_id)};
  }
  return absl::FailedPreconditionError(
      absl::StrCat(subject, "the signed manifest does not list the executable ", executable));
}

absl::StatusOr<OpenedExecutable> ExecutableCache::Open(const std::string& path,
                                                       const ExpectedExecutable& expected) {
  OpenedExecutable opened;
  opened.fd.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!opened.fd) return ErrnoStatus(errno, "open executable", path);
  absl::StatusOr<ExecutableIdentity> identity = IdentityOfFd(opened.fd.get(), path);
  if (!identity.ok()) return identity.status();
  opened.identity = *std::move(identity);

  absl::StatusOr<std::string> digest = DigestOf(opened.fd.get(), path, opened.identity);
  if (!digest.ok()) return digest.status();
  opened.sha256 = *std::move(digest);
  if (!expected.sha256.empty() && opened.sha256 != expected.sha256) {
    return AsVerificationFailure(absl::PermissionDeniedError(
        absl::StrCat("executable ", path, " has sha256 ", opened.sha256, ", but the ",
                     expected.verified_by, " says ", expected.sha256,
                     ": refusing to run a binary the signed manifest does not "
                     "vouch for")));
  }
  return opened;
}

std::string ExecutableCache::Digest(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  absl::StatusOr<ExecutableIdentity> identity = IdentityOfFd(fd.get(), path);
  if (!identity.ok()) return "";
  absl::StatusOr<std::string> digest = DigestOf(fd.get(), path, *identity);
  if (!digest.ok()) {
    spdlog::warn("cannot hash executable {}: {}", path, digest.status().message());
    return "";
  }
  return *digest;
}

absl::Status ExecutableCache::Recheck(const OpenedExecutable& opened, const std::string& path) {
  absl::StatusOr<ExecutableIdentity> now = IdentityOfFd(opened.fd.get(), path);
  if (!now.ok()) return now.status();
  if (*now != opened.identity) {
    return AsVerificationFailure(absl::AbortedError(
        absl::StrCat("executable ", path, " was written to while it was being launched")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExecutableCache::DigestOf(int fd, const std::string& path,
                                                      const ExecutableIdentity& identity) {
  {
    absl::MutexLock lock(&mu_);
    auto cached = digests_.find(path);
    if (cached != digests_.end() && cached->second.first == identity) return cached->second.second;
  }
  // Hashed without the lock: another launch need not wait for this one's file.
  absl::StatusOr<std::string> digest = Sha256Fd(fd, path);
  if (!digest.ok()) return digest.status();
  absl::MutexLock lock(&mu_);
  digests_[path] = {identity, *digest};
  return digest;
}

}  // namespace nehost::supervisor
