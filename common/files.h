// Whole-file reads and crash-safe writes, for the small state files nehost keeps: the
// registry, rule lists, configuration.
//
// WriteFileAtomically never leaves a half-written file behind: it writes a temporary file
// beside the target, fsyncs it, renames it over the target and fsyncs the folder. A crash at
// any point leaves either the old contents or the new ones. All calls block on the disk.
#pragma once

#include <google/protobuf/message.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nehost {

absl::StatusOr<std::string> ReadFile(const std::string& path);

// mode applies to the new file; the folder must exist.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents,
                                 int mode = 0644);

// Writes all of data to fd, going on after short writes and EINTR; path names it in errors.
absl::Status WriteAll(int fd, absl::string_view data, const std::string& path);

// Creates the folder and its parents with the given mode (whatever the umask), when missing.
// A folder that exists keeps its mode. Fails when path exists and is not a folder.
absl::Status MakeDirs(const std::string& path, int mode = 0755);

// Reads a protobuf message from its JSON form. NOT_FOUND when the file does not exist,
// DATA_LOSS when it exists but does not parse.
absl::Status ReadJsonProto(const std::string& path, google::protobuf::Message* message);

// Writes a protobuf message in JSON form, atomically.
absl::Status WriteJsonProto(const std::string& path, const google::protobuf::Message& message);

// Lower-case hex sha256 of a file's contents.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// The same of an open file, read from its start with pread; path names it in errors.
absl::StatusOr<std::string> Sha256Fd(int fd, const std::string& path);

// "No such file or directory" for errno values, for messages.
std::string ErrnoText(int err);

// An absl status for a failed system call: "OPERATION OBJECT: strerror".
absl::Status ErrnoStatus(int err, absl::string_view operation, absl::string_view object);

}  // namespace nehost
