#include "common/files.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"

namespace nehost {
namespace {

absl::StatusCode CodeForErrno(int err) {
  switch (err) {
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case EEXIST:
      return absl::StatusCode::kAlreadyExists;
    case ENOSPC:
    case EMFILE:
    case ENFILE:
      return absl::StatusCode::kResourceExhausted;
    case EINVAL:
    case ENAMETOOLONG:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status SyncFolderOf(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string folder =
      slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));

  UniqueFd dir(::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return ErrnoStatus(errno, "open folder", folder);
  if (::fsync(dir.get()) != 0) return ErrnoStatus(errno, "fsync folder", folder);
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "write", path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string ErrnoText(int err) { return std::strerror(err); }

absl::Status ErrnoStatus(int err, absl::string_view operation, absl::string_view object) {
  return absl::Status(CodeForErrno(err),
                      absl::StrCat(operation, " ", object, ": ", ErrnoText(err)));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, "open", path);

  std::string contents;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read", path);
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
  }
  return contents;
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents, int mode) {
  // The temporary name carries the pid so two writers never share one; a crash leaves it
  // behind, harmless, and the next write by the same pid replaces it.
  std::string temporary = absl::StrCat(path, ".tmp.", ::getpid());
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return ErrnoStatus(errno, "create", temporary);

  absl::Status written = WriteAll(fd.get(), contents, temporary);
  if (written.ok() && ::fsync(fd.get()) != 0) written = ErrnoStatus(errno, "fsync", temporary);
  if (!written.ok()) {
    ::unlink(temporary.c_str());
    return written;
  }
  fd.Reset();

  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temporary.c_str());
    return ErrnoStatus(err, "rename into place", path);
  }
  return SyncFolderOf(path);
}

absl::Status MakeDirs(const std::string& path, int mode) {
  // The folders that are missing, deepest first. One that exists keeps its mode: it may be
  // the current folder, $HOME or /tmp, whose mode is its owner's to set.
  std::vector<std::filesystem::path> missing;
  for (std::filesystem::path folder(path); !folder.empty(); folder = folder.parent_path()) {
    struct stat info {};
    if (::stat(folder.c_str(), &info) == 0) break;
    if (errno != ENOENT) return ErrnoStatus(errno, "create folder", path);
    missing.push_back(folder);
  }

  for (auto folder = missing.rbegin(); folder != missing.rend(); ++folder) {
    if (::mkdir(folder->c_str(), static_cast<mode_t>(mode)) != 0) {
      // "a/b/" names "a/b" twice; or another process made it meanwhile, with its own mode.
      if (errno == EEXIST) continue;
      return ErrnoStatus(errno, "create folder", folder->string());
    }
    // mkdir's mode went through the umask; the caller's is the one asked for.
    if (::chmod(folder->c_str(), static_cast<mode_t>(mode)) != 0) {
      return ErrnoStatus(errno, "chmod folder", folder->string());
    }
  }

  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return ErrnoStatus(errno, "create folder", path);
  if (!S_ISDIR(info.st_mode)) return ErrnoStatus(ENOTDIR, "create folder", path);
  return absl::OkStatus();
}

absl::Status ReadJsonProto(const std::string& path, google::protobuf::Message* message) {
  absl::StatusOr<std::string> contents = ReadFile(path);
  if (!contents.ok()) return contents.status();

  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto parsed = google::protobuf::util::JsonStringToMessage(*contents, message, options);
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat("parse ", path, ": ", parsed.message().as_string()));
  }
  return absl::OkStatus();
}

absl::Status WriteJsonProto(const std::string& path, const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;

  std::string json;
  auto printed = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!printed.ok()) {
    return absl::InternalError(absl::StrCat("encode ", path, ": ", printed.message().as_string()));
  }
  return WriteFileAtomically(path, json);
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, "open", path);
  return Sha256Fd(fd.get(), path);
}

absl::StatusOr<std::string> Sha256Fd(int fd, const std::string& path) {
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");

  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  unsigned char buffer[65536];
  off_t offset = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "read", path);
    if (n == 0) break;
    crypto_hash_sha256_update(&state, buffer, static_cast<unsigned long long>(n));
    offset += n;
  }

  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&state, digest);
  char hex[2 * crypto_hash_sha256_BYTES + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(hex);
}

}  // namespace nehost
