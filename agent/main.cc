// nehostctl, the command-line agent: finds the services nehostd hosts by name and talks to
// them. This file reads the command line and dispatches; the commands are in commands.cc.
//
// Global flags may come before or after the command, so they are parsed first, wherever they
// are; what remains names the command, its arguments and its own flags.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/commands.h"
#include "common/abseil.h"
#include "common/unix_socket.h"
#include "common/utf8.h"
#include "common/version.h"

namespace nehost::agent {
namespace {

namespace po = boost::program_options;

constexpr char kRuntimeDirVariable[] = "NEHOST_RUNTIME_DIR";
constexpr char kServerUidVariable[] = "NEHOST_SERVER_UID";
// A day: a longer deadline is surely a typo.
constexpr int64_t kMaxTimeoutMs = int64_t{24} * 3600 * 1000;

// What a command gets after its name: its arguments in order, and the flags it was given
// with their values ("" for a flag that takes none).
struct Arguments {
  std::vector<std::string> values;
  std::map<std::string, std::string> flags;

  bool Has(const std::string& flag) const { return flags.count(flag) > 0; }
  std::string Value(const std::string& flag) const {
    auto found = flags.find(flag);
    return found == flags.end() ? "" : found->second;
  }
};

// A flag as the user wrote it: "--to 0.2.0" or "--to=0.2.0" give a value, "--allow" none.
struct FlagWord {
  std::string name;
  std::optional<std::string> value;
};

// One entry of Command::flags: "--allow", or "--to VERSION" for a flag that takes a value.
struct FlagSpec {
  std::string name;
  std::string value_name;  // empty for a flag that takes no value
};

FlagSpec ParseFlagSpec(absl::string_view text) {
  std::pair<std::string, std::string> parts = absl::StrSplit(text, absl::MaxSplits(' ', 1));
  return {parts.first, parts.second};
}

// Every member has an initializer, so that the table below names only what a command uses.
struct Command {
  std::string name = {};                    // "rules add"
  std::vector<std::string> arguments = {};  // required, in order
  std::string optional_argument = {};       // may follow the required ones
  // Each entry is one flag, or alternatives that exclude each other: "--suffix|--exact". A
  // flag that takes a value names it after a space: "--to VERSION".
  std::vector<std::string> flags = {};
  std::string summary = {};  // one line, for the command list
  std::string details = {};  // for 'nehostctl help COMMAND'
  ExitCode (*run)(const GlobalOptions& options, const Arguments& arguments) = nullptr;
};

// The global flags, and the command line without them.
struct CommandLine {
  GlobalOptions options;
  bool help = false;
  bool version = false;
  std::vector<std::string> positional = {};  // the command's name words and arguments
  std::vector<FlagWord> flags = {};          // the command's own flags
};

ExitCode UsageError(absl::string_view message, absl::string_view topic = "") {
  const std::string help = topic.empty() ? "--help" : absl::StrCat("help ", topic);
  std::cerr << "nehostctl: " << message << "; run 'nehostctl " << help << "' for usage\n";
  return ExitCode::kUsage;
}

ExitCode RunRulesAdd(const GlobalOptions& options, const Arguments& arguments) {
  Rule rule;
  rule.set_domain(arguments.values[1]);
  rule.set_action(arguments.Has("--allow") ? Rule::ALLOW : Rule::DENY);
  rule.set_match(arguments.Has("--suffix") ? Rule::SUFFIX : Rule::EXACT);
  if (arguments.Has("--sinkhole")) rule.set_response(Rule::SINKHOLE);
  return AddRule(options, arguments.values[0], rule);
}

// "Pi-hole Hosts.TXT" -> "pi-hole-hosts": a list name from a file name.
std::string ListNameFromPath(const std::string& path) {
  std::string stem = std::filesystem::path(path).stem().string();
  std::string name;
  for (char c : absl::AsciiStrToLower(stem)) {
    bool allowed = absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
    name.push_back(allowed ? c : '-');
  }
  while (!name.empty() && name.front() == '.') name.erase(0, 1);
  return name.substr(0, 64);
}

ExitCode RunRulesImport(const GlobalOptions& options, const Arguments& arguments) {
  const std::string& path = arguments.values[1];
  filter::v1::ImportRulesHeader header;
  header.set_name(arguments.Has("--list") ? arguments.Value("--list") : ListNameFromPath(path));

  const std::string format = arguments.Value("--format");
  if (format == "hosts") {
    header.set_format(filter::v1::IMPORT_FORMAT_HOSTS);
  } else if (format == "domains") {
    header.set_format(filter::v1::IMPORT_FORMAT_DOMAINS);
  } else if (!format.empty() && format != "auto") {
    return UsageError(
        absl::StrCat("rules import: --format ", format, " is not one of hosts, domains, auto"),
        "rules import");
  }
  header.set_all_or_nothing(arguments.Has("--all-or-nothing"));
  header.set_action(arguments.Has("--allow") ? Rule::ALLOW : Rule::DENY);
  if (arguments.Has("--sinkhole")) header.set_response(Rule::SINKHOLE);
  header.set_suffix(arguments.Has("--suffix"));
  return ImportRules(options, arguments.values[0], header, path);
}

ExitCode RunRulesRemove(const GlobalOptions& options, const Arguments& arguments) {
  Rule::Match match = Rule::MATCH_UNSPECIFIED;
  if (arguments.Has("--exact")) match = Rule::EXACT;
  if (arguments.Has("--suffix")) match = Rule::SUFFIX;
  return RemoveRule(options, arguments.values[0], arguments.values[1], match);
}

// A number from 0 to max, or an error naming the flag.
absl::StatusOr<uint32_t> ParseNumber(const std::string& flag, const std::string& text,
                                     uint32_t max) {
  uint32_t number = 0;
  if (!absl::SimpleAtoi(text, &number) || number > max || text.empty() || text[0] == '+' ||
      text[0] == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", text, " is not a number from 0 to ", max));
  }
  return number;
}

// "443" or "1000-2000".
absl::Status ParsePorts(const std::string& text, FlowRule* rule) {
  const size_t dash = text.find('-');
  absl::StatusOr<uint32_t> first = ParseNumber("--port", text.substr(0, dash), 65535);
  if (!first.ok()) return first.status();
  absl::StatusOr<uint32_t> last = first;
  if (dash != std::string::npos) last = ParseNumber("--port", text.substr(dash + 1), 65535);
  if (!last.ok()) return last.status();

  rule->set_port_min(*first);
  rule->set_port_max(*last);
  return absl::OkStatus();
}

absl::StatusOr<Flow::Protocol> ParseProtocol(const std::string& text) {
  if (text == "tcp") return Flow::TCP;
  if (text == "udp") return Flow::UDP;
  if (text == "icmp") return Flow::ICMP;
  return absl::InvalidArgumentError(
      absl::StrCat("--protocol ", text, " is not one of tcp, udp, icmp"));
}

absl::StatusOr<Flow::Direction> ParseDirection(const std::string& text) {
  if (text == "outbound") return Flow::OUTBOUND;
  if (text == "inbound") return Flow::INBOUND;
  return absl::InvalidArgumentError(
      absl::StrCat("--direction ", text, " is not outbound or inbound"));
}

// The criteria of flows add, from its flags; the filter checks their values.
absl::StatusOr<FlowRule> FlowRuleFromFlags(const Arguments& arguments) {
  FlowRule rule;
  rule.set_name(arguments.values[1]);
  rule.set_action(arguments.Has("--allow") ? FlowRule::ALLOW : FlowRule::DENY);
  if (arguments.Has("--cidr")) {
    for (absl::string_view cidr :
         absl::StrSplit(arguments.Value("--cidr"), ',', absl::SkipEmpty())) {
      rule.add_cidrs(std::string(cidr));
    }
  }
  if (arguments.Has("--port")) {
    absl::Status ports = ParsePorts(arguments.Value("--port"), &rule);
    if (!ports.ok()) return ports;
  }
  if (arguments.Has("--protocol")) {
    absl::StatusOr<Flow::Protocol> protocol = ParseProtocol(arguments.Value("--protocol"));
    if (!protocol.ok()) return protocol.status();
    rule.set_protocol(*protocol);
  }
  if (arguments.Has("--direction")) {
    absl::StatusOr<Flow::Direction> direction = ParseDirection(arguments.Value("--direction"));
    if (!direction.ok()) return direction.status();
    rule.set_direction(*direction);
  }
  if (arguments.Has("--suffix") && !arguments.Has("--domain")) {
    return absl::InvalidArgumentError("--suffix needs --domain");
  }
  rule.set_domain(arguments.Value("--domain"));
  if (arguments.Has("--domain")) {
    rule.set_domain_match(arguments.Has("--suffix") ? FlowRule::SUFFIX : FlowRule::EXACT);
  }
  rule.set_executable(arguments.Value("--executable"));
  return rule;
}

ExitCode RunFlowsAdd(const GlobalOptions& options, const Arguments& arguments) {
  absl::StatusOr<FlowRule> rule = FlowRuleFromFlags(arguments);
  if (!rule.ok()) {
    return UsageError(absl::StrCat("flows add: ", rule.status().message()), "flows add");
  }
  return AddFlowRule(options, arguments.values[0], *rule);
}

ExitCode RunFlowsDefault(const GlobalOptions& options, const Arguments& arguments) {
  const std::string& action = arguments.values[1];
  if (action != "allow" && action != "deny") {
    return UsageError(absl::StrCat("flows default: ", action, " is not allow or deny"),
                      "flows default");
  }
  return SetDefaultFlowAction(options, arguments.values[0],
                              action == "allow" ? FlowRule::ALLOW : FlowRule::DENY);
}

// The flow evaluate describes, from its flags; the filter checks the address.
absl::StatusOr<Flow> FlowFromFlags(const Arguments& arguments) {
  Flow flow;
  flow.set_protocol(Flow::TCP);
  flow.set_direction(Flow::OUTBOUND);
  if (arguments.Has("--protocol")) {
    absl::StatusOr<Flow::Protocol> protocol = ParseProtocol(arguments.Value("--protocol"));
    if (!protocol.ok()) return protocol.status();
    flow.set_protocol(*protocol);
  }
  if (arguments.Has("--direction")) {
    absl::StatusOr<Flow::Direction> direction = ParseDirection(arguments.Value("--direction"));
    if (!direction.ok()) return direction.status();
    flow.set_direction(*direction);
  }
  for (const auto& [flag, setter] : std::vector<std::pair<std::string, void (Flow::*)(uint32_t)>>{
           {"--port", &Flow::set_remote_port}, {"--local-port", &Flow::set_local_port}}) {
    if (!arguments.Has(flag)) continue;
    absl::StatusOr<uint32_t> port = ParseNumber(flag, arguments.Value(flag), 65535);
    if (!port.ok()) return port.status();
    (flow.*setter)(*port);
  }
  if (arguments.Has("--pid")) {
    absl::StatusOr<uint32_t> pid = ParseNumber("--pid", arguments.Value("--pid"), INT32_MAX);
    if (!pid.ok()) return pid.status();
    flow.set_pid(static_cast<int32_t>(*pid));
  }
  flow.set_remote_address(arguments.Value("--address"));
  flow.set_hostname(arguments.Value("--hostname"));
  flow.set_executable(arguments.Value("--executable"));
  return flow;
}

ExitCode RunEvaluate(const GlobalOptions& options, const Arguments& arguments) {
  absl::StatusOr<Flow> flow = FlowFromFlags(arguments);
  if (!flow.ok()) {
    return UsageError(absl::StrCat("evaluate: ", flow.status().message()), "evaluate");
  }
  return Evaluate(options, arguments.values[0], *flow);
}

ExitCode RunDecisions(const GlobalOptions& options, const Arguments& arguments) {
  uint32_t buffer = 0;
  if (arguments.Has("--buffer")) {
    absl::StatusOr<uint32_t> parsed = ParseNumber("--buffer", arguments.Value("--buffer"), 65536);
    if (!parsed.ok()) {
      return UsageError(absl::StrCat("decisions: ", parsed.status().message()), "decisions");
    }
    buffer = *parsed;
  }
  return WatchDecisions(options, arguments.values[0], buffer);
}

// The exit statuses of the commands that report trouble with 4, for their help.
constexpr char kUpgradeExits[] =
    "Exit status: 0 upgraded; 4 the upgrade failed and was rolled back (the service is\n"
    "still available, served by the generation it had), or another upgrade of NAME is\n"
    "under way, or nehostd cannot answer; 3 unknown service name; 1 other failure.";
constexpr char kDoctorExits[] =
    "Exit status: 0 every check is ok and no stray process runs; 4 something is wrong,\n"
    "or nehostd cannot answer; 3 unknown service name; 1 other failure.";

const std::vector<Command>& Commands() {
  using A = const Arguments&;
  using O = const GlobalOptions&;
  static const std::vector<Command> commands = {
      {.name = "lookup",
       .arguments = {"NAME"},
       .summary = "show the verified registration of a service",
       .details = "Asks nehostd for the registration of NAME. nehostd answers only after\n"
                  "checking that the registered process is alive and is the one it launched;\n"
                  "a service that is starting is waited for, within the timeout.",
       .run = [](O o, A a) { return Lookup(o, a.values[0]); }},
      {.name = "list",
       .summary = "list every service with its state",
       .details = "Lists every service nehostd knows. A service that is not ready shows why.",
       .run = [](O o, A) { return List(o); }},
      {.name = "status",
       .arguments = {"NAME"},
       .summary = "ask a service itself how it is",
       .details = "Looks NAME up, then asks the service on its endpoint for its version, pid,\n"
                  "generation, uptime and rule count.",
       .run = [](O o, A a) { return ShowStatus(o, a.values[0]); }},
      {.name = "start",
       .arguments = {"NAME"},
       .summary = "enable a service and start it",
       .details = "Enables NAME and starts it. It stays enabled across restarts of nehostd.",
       .run = [](O o, A a) { return Start(o, a.values[0]); }},
      {.name = "stop",
       .arguments = {"NAME"},
       .summary = "disable a service and stop it",
       .details = "Disables NAME and stops it. It stays stopped across restarts of nehostd.",
       .run = [](O o, A a) { return Stop(o, a.values[0]); }},
      {.name = "restart",
       .arguments = {"NAME"},
       .summary = "start a new generation of a service",
       .details = "Stops the current generation of NAME and starts a new one.",
       .run = [](O o, A a) { return Restart(o, a.values[0]); }},
      {.name = "rules list",
       .arguments = {"NAME"},
       .summary = "list the domain rules of a filter service",
       .details = "Lists the domain rules and imported lists of the filter service NAME.",
       .run = [](O o, A a) { return ListRules(o, a.values[0]); }},
      {.name = "rules add",
       .arguments = {"NAME", "DOMAIN"},
       .flags = {"--allow|--sinkhole", "--suffix"},
       .summary = "add a domain rule",
       .details = "Adds a rule for DOMAIN to the filter service NAME. By default the rule\n"
                  "denies DOMAIN itself: its DNS queries get NXDOMAIN. Allow rules override\n"
                  "deny rules and lists.\n\n"
                  "  --allow     allow DOMAIN instead of denying it\n"
                  "  --sinkhole  answer 0.0.0.0 and :: instead of NXDOMAIN\n"
                  "  --suffix    match DOMAIN and every name below it",
       .run = RunRulesAdd},
      {.name = "rules import",
       .arguments = {"NAME", "FILE"},
       .flags = {"--list LIST", "--format FORMAT", "--all-or-nothing", "--allow|--sinkhole",
                 "--suffix"},
       .summary = "import a hosts file or domain list as a list of rules",
       .details = "Imports FILE into the filter service NAME as one list, replacing a list of\n"
                  "the same name. Each invalid line is reported on stderr as FILE:LINE: cause;\n"
                  "the valid lines are imported unless --all-or-nothing is given.\n\n"
                  "  --list LIST       the list's name (default: FILE's name without extension)\n"
                  "  --format FORMAT   hosts (\"0.0.0.0 name ...\"), domains (one name a line,\n"
                  "                    or ||name^ for the name and every name below it), or\n"
                  "                    auto (default: each line as it looks)\n"
                  "  --all-or-nothing  import nothing when a line is invalid\n"
                  "  --allow           allow the names instead of denying them\n"
                  "  --sinkhole        answer 0.0.0.0 and :: instead of NXDOMAIN\n"
                  "  --suffix          every name also matches the names below it\n\n"
                  "Exit status: 0 the list is in force; 1 nothing was imported (an invalid line\n"
                  "with --all-or-nothing, or no valid name), or another failure.",
       .run = RunRulesImport},
      {.name = "rules remove-list",
       .arguments = {"NAME", "LIST"},
       .summary = "remove an imported list",
       .details = "Removes the list LIST from the filter service NAME.",
       .run = [](O o, A a) { return RemoveList(o, a.values[0], a.values[1]); }},
      {.name = "rules remove",
       .arguments = {"NAME", "DOMAIN"},
       .flags = {"--suffix|--exact"},
       .summary = "remove domain rules",
       .details = "Removes the rules for DOMAIN from the filter service NAME: every rule of\n"
                  "DOMAIN, or only the one that --suffix or --exact names.",
       .run = RunRulesRemove},
      {.name = "flows list",
       .arguments = {"NAME"},
       .summary = "list the flow rules of a filter service",
       .details = "Lists the flow rules of the filter service NAME, and the action for flows\n"
                  "that no rule matches. A flow that an allow rule matches is allowed, whatever\n"
                  "deny rules match too.",
       .run = [](O o, A a) { return ListFlowRules(o, a.values[0]); }},
      {.name = "flows add",
       .arguments = {"NAME", "RULE"},
       .flags = {"--allow|--deny", "--cidr CIDRS", "--port PORTS", "--protocol PROTOCOL",
                 "--direction DIRECTION", "--domain DOMAIN", "--suffix", "--executable PATH"},
       .summary = "add or replace a flow rule",
       .details = "Adds the flow rule RULE (1 to 64 of a-z, 0-9, '.', '_', '-') to the filter\n"
                  "service NAME, replacing a rule of that name. Every criterion given must hold\n"
                  "for the rule to match; none given matches every flow.\n\n"
                  "  --allow, --deny          what the rule does (default: deny)\n"
                  "  --cidr CIDRS             remote address in one of these, comma-separated:\n"
                  "                           10.0.0.0/8,2001:db8::/32,192.0.2.7\n"
                  "  --port PORTS             remote port, or range: 443, 6000-6999\n"
                  "  --protocol PROTOCOL      tcp, udp or icmp\n"
                  "  --direction DIRECTION    outbound or inbound\n"
                  "  --domain DOMAIN          the flow's hostname is DOMAIN\n"
                  "  --suffix                 ... or a name below DOMAIN\n"
                  "  --executable PATH        the flow's process runs PATH (absolute); a PATH\n"
                  "                           ending in / matches every executable below it",
       .run = RunFlowsAdd},
      {.name = "flows remove",
       .arguments = {"NAME", "RULE"},
       .summary = "remove a flow rule",
       .details = "Removes the flow rule RULE from the filter service NAME.",
       .run = [](O o, A a) { return RemoveFlowRule(o, a.values[0], a.values[1]); }},
      {.name = "flows default",
       .arguments = {"NAME", "ACTION"},
       .summary = "set what happens to flows no rule matches",
       .details = "Sets the action, allow or deny, for the flows that no flow rule of the\n"
                  "filter service NAME matches.",
       .run = RunFlowsDefault},
      {.name = "evaluate",
       .arguments = {"NAME"},
       .flags = {"--protocol PROTOCOL", "--direction DIRECTION", "--address ADDRESS", "--port PORT",
                 "--hostname HOST", "--local-port PORT", "--pid PID", "--executable PATH"},
       .summary = "ask a filter service for one flow's verdict",
       .details = "Asks the filter service NAME what it decides for one flow, and which rule\n"
                  "decided it. The flow is counted and shown to decision watchers like any.\n\n"
                  "  --protocol PROTOCOL    tcp (default), udp or icmp\n"
                  "  --direction DIRECTION  outbound (default) or inbound\n"
                  "  --address ADDRESS      the remote IPv4 or IPv6 address\n"
                  "  --port PORT            the remote port\n"
                  "  --hostname HOST        the name the flow was opened for\n"
                  "  --local-port PORT      the local port\n"
                  "  --pid PID, --executable PATH  the local process\n\n"
                  "Exit status: 0 when the service answered, whatever the verdict.",
       .run = RunEvaluate},
      {.name = "stats",
       .arguments = {"NAME"},
       .summary = "show the counters of a filter service",
       .details = "Shows every counter of the filter service NAME since it was first started:\n"
                  "calls by method, flows and DNS queries by outcome, decisions by rule, and\n"
                  "histograms. Upgrades keep them exactly; a crash keeps them up to the last\n"
                  "checkpoint, written every 2 s.",
       .run = [](O o, A a) { return ShowStats(o, a.values[0]); }},
      {.name = "decisions",
       .arguments = {"NAME"},
       .flags = {"--buffer N"},
       .summary = "print a filter service's decisions as it makes them",
       .details = "Prints each decision of the filter service NAME (flow verdicts, and DNS\n"
                  "queries) as it makes it, one line each, until Ctrl-C. The service never\n"
                  "waits for this command: when it falls behind by more than the buffer,\n"
                  "decisions are dropped, and the next line says how many.\n\n"
                  "  --buffer N  decisions that may wait for this command, 1 to 65536\n"
                  "              (default: the service's, 4096)\n\n"
                  "It follows NAME across upgrades and restarts: when a generation stops, it\n"
                  "looks NAME up again and goes on with the next, saying so on stderr.\n\n"
                  "Not to be confused with 'watch', which prints nehostd's lifecycle events.",
       .run = RunDecisions},
      {.name = "watch",
       .optional_argument = "NAME",
       .summary = "print lifecycle events as they happen",
       .details = "Prints nehostd's lifecycle events, of NAME or of every service, one line\n"
                  "each, until Ctrl-C or until nehostd ends the stream. With --json each line\n"
                  "is a JSON object.",
       .run = [](O o, A a) { return Watch(o, a.values.empty() ? "" : a.values[0]); }},
      {.name = "upgrade",
       .arguments = {"NAME"},
       .flags = {"--to VERSION"},
       .summary = "upgrade a service to a new generation, with no gap",
       .details = absl::StrCat(
           "Asks nehostd to upgrade NAME: start a new generation on the same sockets, wait\n"
           "until it is ready and serving, switch the registry to it, then drain the old\n"
           "one. A failure before the switch stops the new generation and keeps the old:\n"
           "a rollback. Shows each step as it happens: live on a terminal, one\n"
           "\"HH:MM:SS.mmm step message\" line each (UTC) otherwise, one JSON object each\n"
           "with --json. The whole upgrade may take --timeout-ms if given, else 120 s.\n\n"
           "  --to VERSION  an installed version (default: the one nehostd picks: the\n"
           "                package's current version, or the same executable again)\n\n",
           kUpgradeExits),
       .run = [](O o, A a) { return Upgrade(o, a.values[0], a.Value("--to")); }},
      {.name = "doctor",
       .arguments = {"NAME"},
       .summary = "explain a name: its owner, checks, strays, exits",
       .details = absl::StrCat(
           "Asks nehostd to explain NAME: its registration, each check of the registered\n"
           "process (alive, same start time, same executable...), processes of NAME that\n"
           "nehostd does not supervise, recent exits, and what nehostd does about it.\n\n",
           kDoctorExits),
       .run = [](O o, A a) { return Doctor(o, a.values[0]); }},
      {.name = "reexec",
       .summary = "make nehostd re-execute itself; services keep running",
       .details = "Asks nehostd to re-execute itself, as after an upgrade of nehostd. Its\n"
                  "services keep running and serving, and the new nehostd adopts them. Waits\n"
                  "until nehostd answers again, within --timeout-ms.\n\n"
                  "Exit status: 0 nehostd is back; 4 it did not answer again in time, or\n"
                  "could not be asked; 1 other failure.",
       .run = [](O o, A) { return Reexec(o); }},
  };
  return commands;
}

// The flags of any command that take a value: the word after one is its value, not an
// argument.
const std::set<std::string>& FlagsWithValues() {
  static const std::set<std::string> flags = [] {
    std::set<std::string> names;
    for (const Command& command : Commands()) {
      for (const std::string& entry : command.flags) {
        for (absl::string_view alternative : absl::StrSplit(entry, '|')) {
          FlagSpec spec = ParseFlagSpec(alternative);
          if (!spec.value_name.empty()) names.insert(spec.name);
        }
      }
    }
    return names;
  }();
  return flags;
}

const Command* FindCommand(const std::string& name) {
  for (const Command& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

// Commands named by two words: "rules list", "flows add".
bool IsGroup(const std::string& word) { return word == "rules" || word == "flows"; }

// How many leading words name the command: a group's name takes a second one.
size_t NameLength(const std::vector<std::string>& positional) {
  return positional.size() >= 2 && IsGroup(positional[0]) ? 2 : 1;
}

std::string Synopsis(const Command& command) {
  std::vector<std::string> words = {command.name};
  words.insert(words.end(), command.arguments.begin(), command.arguments.end());
  if (!command.optional_argument.empty()) words.push_back("[" + command.optional_argument + "]");
  for (const std::string& flag : command.flags) words.push_back("[" + flag + "]");
  return absl::StrJoin(words, " ");
}

using CommandList = std::vector<std::pair<std::string, std::string>>;  // synopsis, summary

CommandList ListOf(const std::vector<const Command*>& commands) {
  CommandList list;
  for (const Command* command : commands) list.emplace_back(Synopsis(*command), command->summary);
  return list;
}

// Synopses longer than this get their summary on a line of its own, so that one long
// command does not push every summary off the screen.
constexpr size_t kSynopsisColumn = 56;

void PrintCommandList(const CommandList& list) {
  size_t width = 0;
  for (const auto& [synopsis, summary] : list) {
    if (synopsis.size() <= kSynopsisColumn) width = std::max(width, synopsis.size());
  }
  for (const auto& [synopsis, summary] : list) {
    if (synopsis.size() > width) {
      std::cout << "  " << synopsis << "\n  " << std::string(width + 2, ' ') << summary << "\n";
      continue;
    }
    std::cout << "  " << synopsis << std::string(width - synopsis.size() + 2, ' ') << summary
              << "\n";
  }
}

void PrintHelp(const po::options_description& globals) {
  std::vector<const Command*> commands;
  for (const Command& command : Commands()) commands.push_back(&command);
  CommandList list = ListOf(commands);
  list.emplace_back("help [COMMAND]", "show this text, or a command's");

  std::cout << "usage: nehostctl [GLOBAL FLAGS] COMMAND [ARGUMENTS]\n\n"
               "Finds the services that nehostd hosts by name, and talks to them.\n\n"
               "commands:\n";
  PrintCommandList(list);
  std::cout << "\n"
            << globals << "\n"
            << "exit status: 0 ok, 1 other failure, 2 usage, 3 unknown service name,\n"
               "4 unavailable (nehostd or the service not running, not ready, or too slow),\n"
               "and for upgrade: the upgrade failed and was rolled back, or another is under\n"
               "way; for doctor: something is wrong; for reexec: nehostd did not come back\n";
}

// 'nehostctl help TOPIC', 'nehostctl TOPIC --help'. A topic is a command or a group ("rules",
// "flows").
ExitCode Help(const std::vector<std::string>& topic_words, const po::options_description& globals) {
  const std::string topic = absl::StrJoin(topic_words, " ");
  if (topic.empty()) {
    PrintHelp(globals);
    return ExitCode::kOk;
  }
  if (const Command* command = FindCommand(topic)) {
    std::cout << "usage: nehostctl [GLOBAL FLAGS] " << Synopsis(*command) << "\n\n"
              << command->details << "\n\nGlobal flags: see 'nehostctl --help'.\n";
    return ExitCode::kOk;
  }

  std::vector<const Command*> group;
  for (const Command& command : Commands()) {
    if (absl::StartsWith(command.name, topic + " ")) group.push_back(&command);
  }
  if (group.empty()) return UsageError(absl::StrCat("unknown command '", topic, "'"));
  std::cout << "usage: nehostctl [GLOBAL FLAGS] " << topic << " COMMAND\n\ncommands:\n";
  PrintCommandList(ListOf(group));
  return ExitCode::kOk;
}

po::options_description GlobalFlags() {
  const int64_t default_timeout_ms = absl::ToInt64Milliseconds(kDefaultTimeout);
  po::options_description flags("global flags, before or after the command", 100);
  auto add = flags.add_options();
  add("runtime-dir", po::value<std::string>()->value_name("DIR"),
      "nehostd's runtime folder (default: $NEHOST_RUNTIME_DIR, else /run/nehost)");
  add("json", po::bool_switch(), "print JSON: one object, or one per line for watch and upgrade");
  add("timeout-ms", po::value<int64_t>()->value_name("N")->default_value(default_timeout_ms),
      "deadline of each call, in milliseconds; of a whole upgrade: 120000");
  add("server-uid", po::value<uid_t>()->value_name("UID"),
      "talk only to a nehostd running as UID (default: $NEHOST_SERVER_UID, else root or "
      "yourself)");
  add("help,h", po::bool_switch(), "show help; 'nehostctl help COMMAND' for one command");
  add("version", po::bool_switch(), "print the version");
  return flags;
}

// The flag, else the environment, else the default.
absl::StatusOr<std::string> RuntimeDir(const po::variables_map& values) {
  if (values.count("runtime-dir") > 0) {
    const std::string& dir = values["runtime-dir"].as<std::string>();
    if (dir.empty()) return absl::InvalidArgumentError("--runtime-dir is empty");
    return dir;
  }
  const char* from_environment = std::getenv(kRuntimeDirVariable);
  if (from_environment != nullptr && *from_environment != '\0') return from_environment;
  return kDefaultRuntimeDir;
}

// The flag, else the environment; none means the default users.
absl::StatusOr<std::optional<uid_t>> ServerUid(const po::variables_map& values) {
  if (values.count("server-uid") > 0) return values["server-uid"].as<uid_t>();
  const char* from_environment = std::getenv(kServerUidVariable);
  if (from_environment == nullptr || *from_environment == '\0') return std::nullopt;
  uid_t uid = 0;
  if (!absl::SimpleAtoi(from_environment, &uid)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kServerUidVariable, "=", from_environment, " is not a uid"));
  }
  return uid;
}

absl::StatusOr<GlobalOptions> ReadGlobalOptions(const po::variables_map& values) {
  GlobalOptions options;
  absl::StatusOr<std::string> runtime_dir = RuntimeDir(values);
  if (!runtime_dir.ok()) return runtime_dir.status();
  options.runtime_dir = *runtime_dir;

  const int64_t timeout_ms = values["timeout-ms"].as<int64_t>();
  if (timeout_ms < 1 || timeout_ms > kMaxTimeoutMs) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout-ms ", timeout_ms, " is not between 1 and ", kMaxTimeoutMs));
  }
  options.timeout = absl::Milliseconds(timeout_ms);
  options.timeout_given = !values["timeout-ms"].defaulted();
  options.format = values["json"].as<bool>() ? OutputFormat::kJson : OutputFormat::kTable;

  absl::StatusOr<std::optional<uid_t>> server_uid = ServerUid(values);
  if (!server_uid.ok()) return server_uid.status();
  if (server_uid->has_value()) options.server_uids = {**server_uid};
  return options;
}

// Takes the global flags from anywhere on the line into values. The other words come back in
// order: the command's own flags among them are unknown to this parser, which leaves them be.
absl::StatusOr<std::vector<std::string>> ParseGlobalFlags(int argc, char** argv,
                                                          const po::options_description& globals,
                                                          po::variables_map& values) {
  po::options_description all;
  all.add(globals).add_options()("words", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("words", -1);
  // Abbreviations would let a new flag change what an old command line means.
  const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;

  try {
    po::parsed_options parsed = po::command_line_parser(argc, argv)
                                    .options(all)
                                    .positional(positional)
                                    .style(style)
                                    .allow_unregistered()
                                    .run();
    po::store(parsed, values);
    return po::collect_unrecognized(parsed.options, po::include_positional);
  } catch (const po::error& error) {
    return absl::InvalidArgumentError(error.what());
  }
}

absl::StatusOr<CommandLine> ParseCommandLine(int argc, char** argv,
                                             const po::options_description& globals) {
  po::variables_map values;
  absl::StatusOr<std::vector<std::string>> rest = ParseGlobalFlags(argc, argv, globals, values);
  if (!rest.ok()) return rest.status();
  absl::StatusOr<GlobalOptions> options = ReadGlobalOptions(values);
  if (!options.ok()) return options.status();

  CommandLine line{.options = *options,
                   .help = values["help"].as<bool>(),
                   .version = values["version"].as<bool>()};
  for (size_t i = 0; i < rest->size(); ++i) {
    const std::string& word = (*rest)[i];
    if (word.size() <= 1 || word[0] != '-') {
      line.positional.push_back(word);
      continue;
    }

    FlagWord flag;
    if (size_t equals = word.find('='); equals != std::string::npos) {
      flag = {word.substr(0, equals), word.substr(equals + 1)};
    } else {
      flag.name = word;
      if (FlagsWithValues().count(word) > 0 && i + 1 < rest->size()) flag.value = (*rest)[++i];
    }
    line.flags.push_back(std::move(flag));
  }
  return line;
}

// The command that the leading words name.
absl::StatusOr<const Command*> ResolveCommand(const std::vector<std::string>& positional) {
  const size_t length = NameLength(positional);
  const std::string name = absl::StrJoin(positional.begin(), positional.begin() + length, " ");
  if (const Command* command = FindCommand(name)) return command;
  if (name == "rules") {
    return absl::InvalidArgumentError("rules: missing list, add, remove, import or remove-list");
  }
  if (name == "flows") {
    return absl::InvalidArgumentError("flows: missing list, add, remove or default");
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown command '", name, "'"));
}

// Whether flag has the value its spec asks for: one when the spec names one, else none.
absl::Status CheckFlagValue(const Command& command, const FlagSpec& spec, const FlagWord& flag) {
  if (spec.value_name.empty() && flag.value) {
    return absl::InvalidArgumentError(
        absl::StrCat(command.name, ": ", flag.name, " takes no value"));
  }
  if (!spec.value_name.empty() && (!flag.value || flag.value->empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(command.name, ": ", flag.name, " needs a ", spec.value_name));
  }
  return absl::OkStatus();
}

// Adds flag to the arguments if the command takes it and no alternative to it was given.
absl::Status TakeFlag(const Command& command, const FlagWord& flag, Arguments& arguments) {
  for (const std::string& entry : command.flags) {
    std::vector<FlagSpec> alternatives;
    for (absl::string_view text : absl::StrSplit(entry, '|')) {
      alternatives.push_back(ParseFlagSpec(text));
    }
    auto spec =
        absl::c_find_if(alternatives, [&](const FlagSpec& s) { return s.name == flag.name; });
    if (spec == alternatives.end()) continue;

    for (const FlagSpec& other : alternatives) {
      if (other.name != flag.name && arguments.Has(other.name)) {
        return absl::InvalidArgumentError(absl::StrCat(command.name, ": ", other.name, " and ",
                                                       flag.name, " exclude each other"));
      }
    }
    if (absl::Status valued = CheckFlagValue(command, *spec, flag); !valued.ok()) return valued;
    arguments.flags[flag.name] = flag.value.value_or("");
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(command.name, ": unknown flag ", flag.name));
}

// Checks the words after the command's name against what the command takes.
absl::StatusOr<Arguments> ReadArguments(const Command& command, const CommandLine& line) {
  Arguments arguments;
  arguments.values.assign(line.positional.begin() + NameLength(line.positional),
                          line.positional.end());

  const size_t given = arguments.values.size();
  const size_t required = command.arguments.size();
  const size_t allowed = required + (command.optional_argument.empty() ? 0 : 1);
  if (given < required) {
    return absl::InvalidArgumentError(
        absl::StrCat(command.name, ": missing ", command.arguments[given]));
  }
  if (given > allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat(command.name, ": unexpected argument '", arguments.values[allowed], "'"));
  }

  for (const FlagWord& flag : line.flags) {
    absl::Status taken = TakeFlag(command, flag, arguments);
    if (!taken.ok()) return taken;
  }
  // Names, domains and paths travel as protobuf strings, which must be UTF-8: the server
  // could not even read the request, and would answer with nothing clearer than INTERNAL.
  auto not_utf8 = [&](absl::string_view what, const std::string& value) {
    return absl::InvalidArgumentError(
        absl::StrCat(command.name, ": ", what, " \"", absl::CHexEscape(value), "\" is not UTF-8"));
  };
  for (const std::string& value : arguments.values) {
    if (!IsValidUtf8(value)) return not_utf8("argument", value);
  }
  for (const auto& [flag, value] : arguments.flags) {
    if (!IsValidUtf8(value)) return not_utf8(flag, value);
  }
  return arguments;
}

ExitCode Dispatch(const CommandLine& line) {
  absl::StatusOr<const Command*> command = ResolveCommand(line.positional);
  if (!command.ok()) {
    const bool in_group = IsGroup(line.positional[0]);
    return UsageError(command.status().message(), in_group ? line.positional[0] : "");
  }
  absl::StatusOr<Arguments> arguments = ReadArguments(**command, line);
  if (!arguments.ok()) return UsageError(arguments.status().message(), (*command)->name);

  // Every call would fail on a socket path too long for sockaddr_un: say so before any.
  const std::string socket = SupervisorSocketPath(line.options.runtime_dir);
  if (absl::Status fits = CheckUnixPath(socket); !fits.ok()) {
    std::cerr << "nehostctl: runtime folder: " << fits.message() << "\n";
    return ExitCode::kUsage;
  }
  return (*command)->run(line.options, *arguments);
}

ExitCode Run(int argc, char** argv) {
  const po::options_description globals = GlobalFlags();
  absl::StatusOr<CommandLine> line = ParseCommandLine(argc, argv, globals);
  if (!line.ok()) return UsageError(line.status().message());
  if (line->version) {
    std::cout << "nehostctl " << kVersion << "\n";
    return ExitCode::kOk;
  }

  const std::vector<std::string>& words = line->positional;
  if (!words.empty() && words[0] == "help") return Help({words.begin() + 1, words.end()}, globals);
  if (line->help) {
    const size_t name_length = std::min(words.size(), NameLength(words));
    return Help({words.begin(), words.begin() + name_length}, globals);
  }
  if (words.empty()) return UsageError("missing COMMAND");
  return Dispatch(*line);
}

}  // namespace
}  // namespace nehost::agent

int main(int argc, char** argv) {
  nehost::DisableMutexDeadlockDetection();
  return static_cast<int>(nehost::agent::Run(argc, argv));
}
