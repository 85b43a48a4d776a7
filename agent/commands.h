// The commands of nehostctl, one function each. A command makes its calls, prints the result
// on stdout in the chosen format, or one line on stderr naming the service and the cause,
// and returns the process's exit status.
//
// Every call goes to nehostd's socket in the runtime folder, or, for status and rules, to
// the endpoint that a lookup of the service returned. Each blocks until it is answered or
// its deadline passes; watch blocks until the stream ends or the user interrupts it, upgrade
// until nehostd reports how the upgrade ended, reexec until nehostd answers again. The
// commands share stdout and are meant to run one at a time, from main.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/output.h"
#include "agent/verified_dial.h"

namespace nehost::agent {

enum class ExitCode : int {
  kOk = 0,
  kFailure = 1,
  // Unknown command, missing argument, bad flag.
  kUsage = 2,
  // nehostd knows no service by that name.
  kUnknownName = 3,
  // nehostd or the service cannot answer now: not running, not ready, timed out. Also:
  // upgrade failed and was rolled back, or another upgrade is under way (the service is still
  // available); doctor found something wrong; reexec's nehostd did not answer again in time.
  kUnavailable = 4,
};

// Who answered a call. NOT_FOUND means an unknown service name only when nehostd says it.
enum class Server { kSupervisor, kService };

ExitCode ExitCodeFor(absl::StatusCode code, Server server);

inline constexpr char kDefaultRuntimeDir[] = "/run/nehost";
inline constexpr absl::Duration kDefaultTimeout = absl::Seconds(10);
// An upgrade waits for a new generation to start and the old one to drain: it gets longer.
inline constexpr absl::Duration kDefaultUpgradeTimeout = absl::Seconds(120);

// The flags every command takes.
struct GlobalOptions {
  std::string runtime_dir = kDefaultRuntimeDir;
  OutputFormat format = OutputFormat::kTable;
  // The deadline of each call, counted from its start.
  absl::Duration timeout = kDefaultTimeout;
  // Whether the user chose the timeout, rather than leaving the default of each command.
  bool timeout_given = false;
  // nehostd must run as one of these users; by default root or the user itself.
  std::vector<uid_t> server_uids = DefaultServerUids();
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
// Imports the hosts file or domain list at path as the list header names. Exit 0 when the
// list is in force (invalid lines skipped are reported on stderr), 1 when nothing was
// imported: all-or-nothing with an invalid line, or no valid name at all.
ExitCode ImportRules(const GlobalOptions& options, const std::string& name,
                     const filter::v1::ImportRulesHeader& header, const std::string& path);
ExitCode RemoveList(const GlobalOptions& options, const std::string& name, const std::string& list);

// The flow rules of a filter service (nehost.filter.v1.FlowFilter).
ExitCode ListFlowRules(const GlobalOptions& options, const std::string& name);
ExitCode AddFlowRule(const GlobalOptions& options, const std::string& name, const FlowRule& rule);
ExitCode RemoveFlowRule(const GlobalOptions& options, const std::string& name,
                        const std::string& rule);
ExitCode SetDefaultFlowAction(const GlobalOptions& options, const std::string& name,
                              FlowRule::Action action);
// One flow's verdict and the rule that decided it. kOk whatever the verdict.
ExitCode Evaluate(const GlobalOptions& options, const std::string& name, const Flow& flow);
// Every counter of the service, its rule hits and histograms.
ExitCode ShowStats(const GlobalOptions& options, const std::string& name);
// The service's decisions as it makes them, through a queue of buffer decisions (0: the
// service's default), until Ctrl-C; SIGINT and SIGTERM stay blocked, as for Watch. When a
// generation stops (an upgrade, a restart), it looks the service up again and follows the
// next one, saying so on stderr.
ExitCode WatchDecisions(const GlobalOptions& options, const std::string& name, uint32_t buffer);

// Replaces the current generation of name by one of to_version (empty: the version nehostd
// picks), showing each step as nehostd reports it. The whole upgrade is bounded by the
// timeout if the user gave one, else by kDefaultUpgradeTimeout. kUnavailable when the upgrade
// failed and was rolled back, or another upgrade of the service is under way. SIGINT and
// SIGTERM stay blocked for the rest of the process's life, as for Watch.
ExitCode Upgrade(const GlobalOptions& options, const std::string& name,
                 const std::string& to_version);

// nehostd's explanation of a name. kUnavailable when a check failed or a stray process runs.
ExitCode Doctor(const GlobalOptions& options, const std::string& name);

// Asks nehostd to re-execute itself, then waits until it answers again, within the timeout
// counted from the start; kUnavailable when it does not.
ExitCode Reexec(const GlobalOptions& options);

// Events of the service name, or of every service when it is empty. SIGINT and SIGTERM end
// the stream cleanly (exit 0); they stay blocked for the rest of the process's life.
ExitCode Watch(const GlobalOptions& options, const std::string& name);

}  // namespace nehost::agent
