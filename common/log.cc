#include "common/log.h"

#include <cstdlib>
#include <memory>
#include <string>

#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace nehost {
namespace {

// "<3>" for errors, "<4>" warnings, "<6>" info, "<7>" debug: sd-daemon(3)'s prefixes.
class JournalPriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& message, const std::tm&,
              spdlog::memory_buf_t& destination) override {
    absl::string_view prefix = "<6>";
    switch (message.level) {
      case spdlog::level::critical:
        prefix = "<2>";
        break;
      case spdlog::level::err:
        prefix = "<3>";
        break;
      case spdlog::level::warn:
        prefix = "<4>";
        break;
      case spdlog::level::debug:
      case spdlog::level::trace:
        prefix = "<7>";
        break;
      default:
        break;
    }
    destination.append(prefix.data(), prefix.data() + prefix.size());
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JournalPriorityFlag>();
  }
};

}  // namespace

void InitLogging(absl::string_view program, LogVerbosity verbosity) {
  auto logger = std::make_shared<spdlog::logger>(std::string(program),
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());

  std::unique_ptr<spdlog::pattern_formatter> formatter;
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JournalPriorityFlag>('*').set_pattern("%*%n: %v");
  } else {
    formatter = std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %n %l: %v",
                                                            spdlog::pattern_time_type::utc);
  }
  logger->set_formatter(std::move(formatter));

  switch (verbosity) {
    case LogVerbosity::kDebug:
      logger->set_level(spdlog::level::debug);
      break;
    case LogVerbosity::kQuiet:
      logger->set_level(spdlog::level::warn);
      break;
    case LogVerbosity::kNormal:
      logger->set_level(spdlog::level::info);
      break;
  }
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace nehost
