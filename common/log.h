// Logging for every nehost program: one line per event on stderr, lower case, identifiers
// as key=value, through spdlog's default logger.
//
//   spdlog::info("restarting service={} generation={} backoff_ms={}", name, gen, ms);
//
// Under systemd (JOURNAL_STREAM set) each line starts with its journald priority, "<6>",
// and carries no timestamp, since the journal adds its own.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

// Abseil here has its own string_view, which fmt does not know: log status.message() and
// statuses themselves directly.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(absl::string_view text, Context& context) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text.data(), text.size()),
                                                    context);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(const absl::Status& status, Context& context) const {
    std::string text = status.ToString();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), context);
  }
};

namespace nehost {

enum class LogVerbosity { kNormal, kDebug, kQuiet };

// Call once, first thing in main.
void InitLogging(absl::string_view program, LogVerbosity verbosity = LogVerbosity::kNormal);

}  // namespace nehost
