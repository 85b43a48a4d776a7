// nehost-pkg, the installer: builds package folders, installs them as versions under a
// prefix, lists them, rolls back and collects old ones. This file reads the command line and
// prints results; the work is in package.h.
//
// The global flags may come before or after the command. A first parse finds the command,
// the first word that is not a flag; a second one reads the whole line again with that
// command's own flags and arguments, and refuses anything else.
#include <algorithm>
#include <boost/program_options.hpp>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/version.h"
#include "installer/package.h"

namespace nehost::installer {
namespace {

namespace po = boost::program_options;

enum class ExitCode : int { kOk = 0, kFailure = 1, kUsage = 2 };

// Every member has an initializer, so that the table below names only what a command uses.
struct Command {
  std::string name = {};
  std::string synopsis = {};  // the usage line after "nehost-pkg [GLOBAL FLAGS]"
  std::string summary = {};   // one line, for the command list
  std::string details = {};   // for 'nehost-pkg help COMMAND'
  // The arguments, in order, as hidden options named like them ("DIR"); all required.
  std::vector<std::string> arguments = {};
  po::options_description (*flags)() = nullptr;
  ExitCode (*run)(const std::string& prefix, const po::variables_map& values) = nullptr;
};

ExitCode UsageError(absl::string_view message, absl::string_view command = "") {
  const std::string help = command.empty() ? "--help" : absl::StrCat("help ", command);
  std::cerr << "nehost-pkg: " << message << "; run 'nehost-pkg " << help << "' for usage\n";
  return ExitCode::kUsage;
}

ExitCode Fail(const absl::Status& status) {
  std::cerr << "nehost-pkg: " << status.message() << "\n";
  return ExitCode::kFailure;
}

// Splits each "KEY=VALUE" of a repeated flag.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Pairs(
    const po::variables_map& values, const std::string& flag, absl::string_view form) {
  std::vector<std::pair<std::string, std::string>> pairs;
  if (values.count(flag) == 0) return pairs;
  for (const std::string& text : values[flag].as<std::vector<std::string>>()) {
    const size_t equals = text.find('=');
    if (equals == 0 || equals == std::string::npos || equals + 1 == text.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", text, " is not ", form));
    }
    pairs.emplace_back(text.substr(0, equals), text.substr(equals + 1));
  }
  return pairs;
}

absl::StatusOr<int> Keep(const po::variables_map& values) {
  const int keep = values["keep"].as<int>();
  if (keep < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--keep ", keep, " is less than 1; the current version always stays"));
  }
  return keep;
}

po::options_description BuildFlags() {
  po::options_description flags("flags", 100);
  auto add = flags.add_options();
  add("version", po::value<std::string>()->value_name("V")->required(),
      "the package's version: 1 to 128 of A-Z a-z 0-9 . _ + -");
  add("out", po::value<std::string>()->value_name("DIR")->required(),
      "the package folder to make; created, or empty");
  add("file", po::value<std::vector<std::string>>()->value_name("REL=SRC")->required(),
      "copy SRC to DIR/REL; repeat for each file");
  add("service", po::value<std::vector<std::string>>()->value_name("NAME=REL"),
      "declare service NAME, run from the package file REL; repeatable");
  return flags;
}

ExitCode RunBuild(const std::string&, const po::variables_map& values) {
  auto files = Pairs(values, "file", "REL=SRC");
  if (!files.ok()) return UsageError(files.status().message(), "build");
  auto services = Pairs(values, "service", "NAME=REL");
  if (!services.ok()) return UsageError(services.status().message(), "build");

  BuildSpec spec{.version = values["version"].as<std::string>(),
                 .out_dir = values["out"].as<std::string>(),
                 .files = *std::move(files),
                 .services = *std::move(services)};
  absl::StatusOr<Manifest> manifest = BuildPackage(spec);
  if (!manifest.ok()) return Fail(manifest.status());
  std::cout << "built version " << spec.version << " in " << spec.out_dir
            << ": files=" << manifest->files_size() << " services=" << manifest->services_size()
            << "\n";
  return ExitCode::kOk;
}

po::options_description KeepFlags() {
  po::options_description flags("flags", 100);
  flags.add_options()("keep", po::value<int>()->value_name("N")->default_value(kDefaultKeep),
                      "keep the N most recently installed versions, counting the current one");
  return flags;
}

// A failed collection does not undo the install: it is reported, and the next one retries.
void CollectAfterInstall(const std::string& prefix, int keep) {
  absl::StatusOr<std::vector<CollectDecision>> collected = CollectVersions(prefix, keep);
  if (!collected.ok()) {
    spdlog::warn("old versions stay: {}; 'nehost-pkg gc' retries", collected.status().message());
  }
}

ExitCode RunInstall(const std::string& prefix, const po::variables_map& values) {
  absl::StatusOr<int> keep = Keep(values);
  if (!keep.ok()) return UsageError(keep.status().message(), "install");
  absl::StatusOr<InstallResult> result = Install(values["DIR"].as<std::string>(), prefix);
  if (!result.ok()) return Fail(result.status());

  const std::string previous = result->previous.empty() ? "none" : result->previous;
  std::cout << (result->already_installed ? "already installed " : "installed ") << result->version
            << "; current is " << result->version << " (was " << previous << ")\n";
  CollectAfterInstall(prefix, *keep);
  return ExitCode::kOk;
}

po::options_description ListFlags() {
  po::options_description flags("flags", 100);
  flags.add_options()("json", po::bool_switch(), "print one JSON object");
  return flags;
}

// Versions are [A-Za-z0-9._+-], timestamps digits and punctuation: nothing needs escaping.
void PrintJson(const std::vector<InstalledVersion>& versions) {
  std::string current = "null";
  std::vector<std::string> entries;
  for (const InstalledVersion& v : versions) {
    if (v.current) current = absl::StrCat("\"", v.version, "\"");
    entries.push_back(absl::StrCat(
        "{\"version\":\"", v.version, "\",\"current\":", v.current ? "true" : "false",
        ",\"in_use\":", v.in_use() ? "true" : "false", ",\"pids\":[", absl::StrJoin(v.pids, ","),
        "],\"installed_at\":\"", FormatInstallTime(v.installed_at), "\"}"));
  }
  std::cout << "{\"current\":" << current << ",\"versions\":[" << absl::StrJoin(entries, ",")
            << "]}\n";
}

// text, then spaces to fill width and two more between columns.
std::string Column(const std::string& text, size_t width) {
  return text + std::string(width - std::min(width, text.size()) + 2, ' ');
}

void PrintTable(const std::vector<InstalledVersion>& versions) {
  size_t width = std::string("VERSION").size();
  for (const InstalledVersion& v : versions) width = std::max(width, v.version.size());
  constexpr size_t kTimeWidth = sizeof "2024-05-01T12:00:00Z" - 1;

  std::cout << Column("VERSION", width) << Column("INSTALLED", kTimeWidth) << Column("CURRENT", 7)
            << "IN USE\n";
  for (const InstalledVersion& v : versions) {
    const std::string installed =
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", v.installed_at, absl::UTCTimeZone());
    const std::string in_use = v.in_use() ? absl::StrCat("pid ", absl::StrJoin(v.pids, ",")) : "no";
    std::cout << Column(v.version, width) << Column(installed, kTimeWidth)
              << Column(v.current ? "yes" : "no", 7) << in_use << "\n";
  }
}

ExitCode RunList(const std::string& prefix, const po::variables_map& values) {
  absl::StatusOr<std::vector<InstalledVersion>> versions = ListVersions(prefix);
  if (!versions.ok()) {
    return Fail(absl::Status(
        versions.status().code(),
        absl::StrCat("list versions under ", prefix, ": ", versions.status().message())));
  }

  if (values["json"].as<bool>()) {
    PrintJson(*versions);
  } else if (versions->empty()) {
    std::cout << "no versions installed under " << prefix << "\n";
  } else {
    PrintTable(*versions);
  }
  return ExitCode::kOk;
}

po::options_description RollbackFlags() {
  po::options_description flags("flags", 100);
  flags.add_options()("to", po::value<std::string>()->value_name("V"),
                      "the version to make current, instead of the previous one");
  return flags;
}

ExitCode RunRollback(const std::string& prefix, const po::variables_map& values) {
  const std::string to = values.count("to") > 0 ? values["to"].as<std::string>() : "";
  absl::StatusOr<RollbackResult> result = Rollback(prefix, to);
  if (!result.ok()) return Fail(result.status());

  if (result->from == result->to) {
    std::cout << result->to << " is already current\n";
  } else {
    const std::string from = result->from.empty() ? "none" : result->from;
    std::cout << "current is " << result->to << " (was " << from << ")\n";
  }
  return ExitCode::kOk;
}

ExitCode RunGc(const std::string& prefix, const po::variables_map& values) {
  absl::StatusOr<int> keep = Keep(values);
  if (!keep.ok()) return UsageError(keep.status().message(), "gc");
  absl::StatusOr<std::vector<CollectDecision>> decisions = CollectVersions(prefix, *keep);
  if (!decisions.ok()) return Fail(decisions.status());

  for (const CollectDecision& decision : *decisions) {
    std::cout << (decision.removed() ? "removed " : "kept ") << decision.version << ": "
              << CollectReasonName(decision.reason);
    if (!decision.pids.empty()) std::cout << " (pid " << absl::StrJoin(decision.pids, ",") << ")";
    std::cout << "\n";
  }
  return ExitCode::kOk;
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {.name = "build",
       .synopsis = "build --version V --out DIR --file REL=SRC... [--service NAME=REL]...",
       .summary = "make a package folder from built files",
       .details = "Copies each SRC to DIR/REL and writes DIR/manifest.json with the version,\n"
                  "each file's sha256 and mode (0755 when SRC has an execute bit, else 0644)\n"
                  "and the services. DIR must be missing or empty.",
       .flags = BuildFlags,
       .run = RunBuild},
      {.name = "install",
       .synopsis = "install DIR [--keep N]",
       .summary = "install a package folder and make it current",
       .details = "Checks DIR/manifest.json and the sha256 of every file, copies the package\n"
                  "to P/versions/V/ and points P/current at it, then collects old versions as\n"
                  "gc does. On any error nothing under P changes. A version installed before\n"
                  "with other contents is refused; with the same contents it only becomes\n"
                  "current again.",
       .arguments = {"DIR"},
       .flags = KeepFlags,
       .run = RunInstall},
      {.name = "list",
       .synopsis = "list [--json]",
       .summary = "list installed versions, newest install first",
       .details =
           "Lists the installed versions, newest install first, with their install\n"
           "time, which one is current and which run a process (its executable lies\n"
           "in the version folder). --json prints\n"
           "{\"current\": V, \"versions\": [{\"version\", \"current\", \"in_use\", \"pids\",\n"
           "\"installed_at\"}]}, current null when none is.",
       .flags = ListFlags,
       .run = RunList},
      {.name = "rollback",
       .synopsis = "rollback [--to V]",
       .summary = "make the previous version current again",
       .details = "Points P/current at the newest version installed before the current one,\n"
                  "or at V, after checking its files. Fails when there is no such version.",
       .flags = RollbackFlags,
       .run = RunRollback},
      {.name = "gc",
       .synopsis = "gc [--keep N]",
       .summary = "remove old versions that nothing runs from",
       .details = "Removes each version folder that is not current, not among the N most\n"
                  "recently installed (counting the current one), and not the home of a running\n"
                  "process's executable, and the temporaries of installers that died.",
       .flags = KeepFlags,
       .run = RunGc},
  };
  return commands;
}

const Command* FindCommand(const std::string& name) {
  for (const Command& command : Commands()) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

po::options_description GlobalFlags() {
  po::options_description flags("global flags, before or after the command", 100);
  auto add = flags.add_options();
  add("prefix", po::value<std::string>()->value_name("P")->default_value(kDefaultPrefix),
      "the install folder: P/versions/V/ and the symlink P/current");
  add("verbose,v", po::bool_switch(), "log routine detail too");
  add("quiet,q", po::bool_switch(), "log only warnings and errors");
  add("help,h", po::bool_switch(), "show help; 'nehost-pkg help COMMAND' for one command");
  return flags;
}

void PrintHelp(const po::options_description& globals) {
  std::cout << "usage: nehost-pkg [GLOBAL FLAGS] COMMAND [ARGUMENTS]\n\n"
               "nehost-pkg "
            << kVersion
            << ": builds nehost packages and installs them as\n"
               "versions under P/versions/V/, with P/current pointing at the one to run.\n\n"
               "commands:\n";
  for (const Command& command : Commands()) {
    std::cout << "  " << command.synopsis << "\n      " << command.summary << "\n";
  }
  std::cout << "  help [COMMAND]\n      show this text, or a command's\n\n"
            << globals << "\n"
            << "exit status: 0 ok, 1 failure (one line on stderr names the operation, the\n"
               "object and the cause), 2 usage\n";
}

ExitCode Help(const std::vector<std::string>& topic, const po::options_description& globals) {
  if (topic.empty()) {
    PrintHelp(globals);
    return ExitCode::kOk;
  }
  if (topic.size() > 1) {
    return UsageError(absl::StrCat("help: unexpected argument '", topic[1], "'"));
  }
  const Command* command = FindCommand(topic[0]);
  if (command == nullptr) return UsageError(absl::StrCat("unknown command '", topic[0], "'"));

  std::cout << "usage: nehost-pkg [GLOBAL FLAGS] " << command->synopsis << "\n\n"
            << command->details << "\n\n"
            << command->flags() << "\nGlobal flags: see 'nehost-pkg --help'.\n";
  return ExitCode::kOk;
}

// Abbreviations would let a new flag change what an old command line means.
constexpr int kStyle =
    po::command_line_style::default_style & ~po::command_line_style::allow_guessing;

// The global flags, and the words that are not flags, in order. Flags this parse does not
// know are left for the second one.
absl::StatusOr<std::vector<std::string>> ParseGlobalFlags(int argc, char** argv,
                                                          const po::options_description& globals,
                                                          po::variables_map& values) {
  po::options_description all;
  all.add(globals).add_options()("words", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("words", -1);
  try {
    po::store(po::command_line_parser(argc, argv)
                  .options(all)
                  .positional(positional)
                  .style(kStyle)
                  .allow_unregistered()
                  .run(),
              values);
  } catch (const po::error& error) {
    return absl::InvalidArgumentError(error.what());
  }
  if (values.count("words") == 0) return std::vector<std::string>{};
  return values["words"].as<std::vector<std::string>>();
}

// The whole line again, with the command's flags and arguments: anything else is an error.
absl::StatusOr<po::variables_map> ParseCommand(int argc, char** argv, const Command& command,
                                               const po::options_description& globals) {
  po::options_description all;
  all.add(globals).add(command.flags()).add_options()("command", po::value<std::string>());
  po::positional_options_description positional;
  positional.add("command", 1);
  for (const std::string& argument : command.arguments) {
    all.add_options()(argument.c_str(), po::value<std::string>());
    positional.add(argument.c_str(), 1);
  }

  po::variables_map values;
  try {
    po::store(
        po::command_line_parser(argc, argv).options(all).positional(positional).style(kStyle).run(),
        values);
    po::notify(values);
  } catch (const po::error& error) {
    return absl::InvalidArgumentError(error.what());
  }
  for (const std::string& argument : command.arguments) {
    if (values.count(argument) == 0) return absl::InvalidArgumentError("missing " + argument);
  }
  return values;
}

LogVerbosity Verbosity(const po::variables_map& values) {
  if (values["verbose"].as<bool>()) return LogVerbosity::kDebug;
  if (values["quiet"].as<bool>()) return LogVerbosity::kQuiet;
  return LogVerbosity::kNormal;
}

// 'nehost-pkg help install' and 'nehost-pkg install --help' both ask about install.
std::vector<std::string> HelpTopic(const std::vector<std::string>& words) {
  if (!words.empty() && words[0] == "help") return {words.begin() + 1, words.end()};
  return {words.begin(), words.begin() + std::min<size_t>(words.size(), 1)};
}

ExitCode Dispatch(int argc, char** argv, const Command& command,
                  const po::options_description& globals) {
  absl::StatusOr<po::variables_map> values = ParseCommand(argc, argv, command, globals);
  if (!values.ok()) {
    return UsageError(absl::StrCat(command.name, ": ", values.status().message()), command.name);
  }
  const std::string prefix = (*values)["prefix"].as<std::string>();
  if (prefix.empty()) return UsageError("--prefix is empty");

  InitLogging("nehost-pkg", Verbosity(*values));
  return command.run(prefix, *values);
}

ExitCode Run(int argc, char** argv) {
  const po::options_description globals = GlobalFlags();
  po::variables_map global_values;
  absl::StatusOr<std::vector<std::string>> words =
      ParseGlobalFlags(argc, argv, globals, global_values);
  if (!words.ok()) return UsageError(words.status().message());

  const bool help = !words->empty() && (*words)[0] == "help";
  if (help || global_values["help"].as<bool>()) return Help(HelpTopic(*words), globals);
  if (words->empty()) return UsageError("missing COMMAND");
  const Command* command = FindCommand((*words)[0]);
  if (command == nullptr) return UsageError(absl::StrCat("unknown command '", (*words)[0], "'"));
  return Dispatch(argc, argv, *command, globals);
}

}  // namespace
}  // namespace nehost::installer

int main(int argc, char** argv) { return static_cast<int>(nehost::installer::Run(argc, argv)); }
