#include "common/process_info.h"

#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"

namespace nehost {

absl::StatusOr<uint64_t> ParseStartTimeFromStat(const std::string& stat) {
  // "PID (COMM) STATE PPID ..." where COMM is free text: fields resume after its last ')'.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return absl::DataLossError("stat has no command field");

  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(close + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state), so field 22 is fields[19].
  constexpr size_t kStartTimeIndex = 22 - 3;
  uint64_t start = 0;
  if (fields.size() <= kStartTimeIndex || !absl::SimpleAtoi(fields[kStartTimeIndex], &start)) {
    return absl::DataLossError("stat has no start time in field 22");
  }
  return start;
}

absl::StatusOr<uint64_t> ReadProcessStartTime(pid_t pid) {
  absl::StatusOr<std::string> stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) {
    if (absl::IsNotFound(stat.status())) {
      return absl::NotFoundError(absl::StrCat("process ", pid, " does not exist"));
    }
    return stat.status();
  }
  return ParseStartTimeFromStat(*stat);
}

absl::StatusOr<std::string> ReadProcessExecutable(pid_t pid) {
  std::string link = absl::StrCat("/proc/", pid, "/exe");
  char target[4096];
  ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n < 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("process ", pid, " does not exist"));
    return ErrnoStatus(errno, "readlink", link);
  }
  return std::string(target, static_cast<size_t>(n));
}

}  // namespace nehost
