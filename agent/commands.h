// The commands of nehostctl, one function each. A command makes its calls, prints the result
// on stdout in the chosen format, or one line on stderr naming the service and the cause,
// and returns the process's exit status.
//
// Every call goes to nehostd's socket in the runtime folder, or, for status and rules, to
// the endpoint that a lookup of the service returned. Each blocks until it is answered or
// its deadline passes; watch blocks until the stream ends or the user interrupts it. The
// commands share stdout and are meant to run one at a time, from main.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/output.h"

namespace nehost::agent {

enum class ExitCode : int {
  kOk = 0,
  kFailure = 1,
  // Unknown command, missing argument, bad flag.
  kUsage = 2,
  // nehostd knows no service by that name.
  kUnknownName = 3,
  // nehostd or the service cannot answer now: not running, not ready, timed out.
  kUnavailable = 4,
};

// Who answered a call. NOT_FOUND means an unknown service name only when nehostd says it.
enum class Server { kSupervisor, kService };

ExitCode ExitCodeFor(absl::StatusCode code, Server server);

inline constexpr char kDefaultRuntimeDir[] = "/run/nehost";
inline constexpr absl::Duration kDefaultTimeout = absl::Seconds(10);

// The flags every command takes.
struct GlobalOptions {
  std::string runtime_dir = kDefaultRuntimeDir;
  OutputFormat format = OutputFormat::kTable;
  // The deadline of each call, counted from its start.
  absl::Duration timeout = kDefaultTimeout;
};

std::string SupervisorSocketPath(const std::string& runtime_dir);

// How long nehostd may wait for a starting service during a lookup. It ends before the
// call's own deadline, so that nehostd's answer, with the reason the service is not ready,
// arrives instead of a bare timeout.
uint32_t LookupWaitMs(absl::Duration timeout);

ExitCode Lookup(const GlobalOptions& options, const std::string& name);
ExitCode List(const GlobalOptions& options);
ExitCode ShowStatus(const GlobalOptions& options, const std::string& name);
ExitCode Start(const GlobalOptions& options, const std::string& name);
ExitCode Stop(const GlobalOptions& options, const std::string& name);
ExitCode Restart(const GlobalOptions& options, const std::string& name);

ExitCode ListRules(const GlobalOptions& options, const std::string& name);
ExitCode AddRule(const GlobalOptions& options, const std::string& name, const Rule& rule);
// MATCH_UNSPECIFIED removes every rule of the domain.
ExitCode RemoveRule(const GlobalOptions& options, const std::string& name,
                    const std::string& domain, Rule::Match match);

// Events of the service name, or of every service when it is empty. SIGINT and SIGTERM end
// the stream cleanly (exit 0); they stay blocked for the rest of the process's life.
ExitCode Watch(const GlobalOptions& options, const std::string& name);

}  // namespace nehost::agent
