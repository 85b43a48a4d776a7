// nehost-pkg, the installer: makes signing keys, builds and signs package folders and
// archives, verifies and installs them as versions under a prefix, lists them, rolls back and
// collects old ones. This file reads the command line and prints results; the work is in
// package.h, signature.h and archive.h.
//
// The global flags may come before or after the command. A first parse finds the command,
// the first word that is not a flag; a second one reads the whole line again with that
// command's own flags and arguments, and refuses anything else.
#include <algorithm>
#include <boost/program_options.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/abseil.h"
#include "common/log.h"
#include "common/version.h"
#include "installer/package.h"

namespace nehost::installer {
namespace {

namespace po = boost::program_options;

enum class ExitCode : int { kOk = 0, kFailure = 1, kUsage = 2 };

// What the global flags say.
struct Globals {
  std::string prefix;
  // The trusted public keys: --keys-dir, else CONFIG/keys.
  std::string keys_dir;
};

// Every member has an initializer, so that the table below names only what a command uses.
struct Command {
  std::string name = {};
  std::string synopsis = {};  // the usage line after "nehost-pkg [GLOBAL FLAGS]"
  std::string summary = {};   // one line, for the command list
  std::string details = {};   // for 'nehost-pkg help COMMAND'
  // The arguments, in order, as hidden options named like them ("DIR"); all required.
  std::vector<std::string> arguments = {};
  po::options_description (*flags)() = nullptr;
  ExitCode (*run)(const Globals& globals, const po::variables_map& values) = nullptr;
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
  add("key", po::value<std::string>()->value_name("SECRET"),
      "sign the package with this secret key file (NAME.secret, mode 0600)");
  add("archive", po::value<std::string>()->value_name("FILE"),
      "also write the package as one archive: FILE ends in .tar, .tar.gz, .tgz or .tar.xz");
  return flags;
}

// The secret key of --key, when given.
absl::StatusOr<std::optional<SecretKey>> OptionalKey(const po::variables_map& values) {
  if (values.count("key") == 0) return std::optional<SecretKey>();
  absl::StatusOr<SecretKey> key = SecretKey::Read(values["key"].as<std::string>());
  if (!key.ok()) return key.status();
  return std::optional<SecretKey>(*std::move(key));
}

ExitCode RunBuild(const Globals&, const po::variables_map& values) {
  auto files = Pairs(values, "file", "REL=SRC");
  if (!files.ok()) return UsageError(files.status().message(), "build");
  auto services = Pairs(values, "service", "NAME=REL");
  if (!services.ok()) return UsageError(services.status().message(), "build");
  absl::StatusOr<std::optional<SecretKey>> key = OptionalKey(values);
  if (!key.ok()) return Fail(key.status());

  BuildSpec spec{.version = values["version"].as<std::string>(),
                 .out_dir = values["out"].as<std::string>(),
                 .files = *std::move(files),
                 .services = *std::move(services)};
  absl::StatusOr<Manifest> manifest = BuildPackage(spec);
  if (!manifest.ok()) return Fail(manifest.status());
  if (key->has_value()) {
    if (absl::Status signed_ = SignPackage(spec.out_dir, **key); !signed_.ok()) {
      return Fail(signed_);
    }
  }
  std::cout << "built version " << spec.version << " in " << spec.out_dir
            << ": files=" << manifest->files_size() << " services=" << manifest->services_size()
            << (key->has_value() ? absl::StrCat(" signed_by=", (*key)->id()) : " unsigned") << "\n";

  if (values.count("archive") == 0) return ExitCode::kOk;
  const std::string archive = values["archive"].as<std::string>();
  if (absl::Status written = WritePackageArchive(spec.out_dir, *manifest, archive); !written.ok()) {
    return Fail(absl::Status(written.code(),
                             absl::StrCat("write archive ", archive, ": ", written.message())));
  }
  std::cout << "wrote archive " << archive << "\n";
  return ExitCode::kOk;
}

po::options_description KeygenFlags() {
  po::options_description flags("flags", 100);
  flags.add_options()("out", po::value<std::string>()->value_name("DIR")->default_value("."),
                      "the folder to write NAME.secret and NAME.pub in");
  return flags;
}

ExitCode RunKeygen(const Globals&, const po::variables_map& values) {
  const std::string dir = values["out"].as<std::string>();
  absl::StatusOr<PublicKey> key = WriteKeyPair(dir, values["NAME"].as<std::string>());
  if (!key.ok())
    return Fail(
        absl::Status(key.status().code(), absl::StrCat("keygen: ", key.status().message())));
  std::cout << "key " << key->id() << ": secret " << dir << "/" << values["NAME"].as<std::string>()
            << kSecretKeyExtension << " (keep it private), public " << key->source()
            << " (copy it into CONFIG/keys/ to trust it)\n";
  return ExitCode::kOk;
}

po::options_description SignFlags() {
  po::options_description flags("flags", 100);
  flags.add_options()("key", po::value<std::string>()->value_name("SECRET")->required(),
                      "the secret key file to sign with (NAME.secret, mode 0600)");
  return flags;
}

ExitCode RunSign(const Globals&, const po::variables_map& values) {
  const std::string dir = values["DIR"].as<std::string>();
  absl::StatusOr<SecretKey> key = SecretKey::Read(values["key"].as<std::string>());
  if (!key.ok()) return Fail(key.status());
  if (absl::Status signed_ = SignPackage(dir, *key); !signed_.ok()) {
    return Fail(
        absl::Status(signed_.code(), absl::StrCat("sign package ", dir, ": ", signed_.message())));
  }
  std::cout << "signed " << dir << "/" << kManifestFile << " with key " << key->id() << " in "
            << dir << "/" << kSignatureFile << "\n";
  return ExitCode::kOk;
}

ExitCode RunVerify(const Globals& globals, const po::variables_map& values) {
  absl::StatusOr<Keyring> keyring = Keyring::Load(globals.keys_dir);
  if (!keyring.ok()) return Fail(keyring.status());
  const std::string source = values["PACKAGE"].as<std::string>();
  absl::StatusOr<SignedManifest> verified = VerifyPackage(source, *keyring);
  if (!verified.ok()) return Fail(verified.status());

  std::cout << "verified " << source << ": version " << verified->manifest.version()
            << ", files=" << verified->manifest.files_size() << ", signed by trusted key "
            << verified->signer.key_id << " (" << verified->signer.key_source << ")\n";
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

ExitCode RunInstall(const Globals& globals, const po::variables_map& values) {
  const std::string& prefix = globals.prefix;
  absl::StatusOr<int> keep = Keep(values);
  if (!keep.ok()) return UsageError(keep.status().message(), "install");
  absl::StatusOr<Keyring> keyring = Keyring::Load(globals.keys_dir);
  if (!keyring.ok()) return Fail(keyring.status());
  absl::StatusOr<InstallResult> result =
      Install(values["PACKAGE"].as<std::string>(), prefix, *keyring);
  if (!result.ok()) return Fail(result.status());

  const std::string previous = result->previous.empty() ? "none" : result->previous;
  std::cout << (result->already_installed ? "already installed " : "installed ") << result->version
            << "; current is " << result->version << " (was " << previous << ")\n";
  CollectAfterInstall(prefix, *keep);
  return ExitCode::kOk;
}

po::options_description NoFlags() { return po::options_description("flags", 100); }

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

ExitCode RunList(const Globals& globals, const po::variables_map& values) {
  const std::string& prefix = globals.prefix;
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

ExitCode RunRollback(const Globals& globals, const po::variables_map& values) {
  const std::string to = values.count("to") > 0 ? values["to"].as<std::string>() : "";
  absl::StatusOr<Keyring> keyring = Keyring::Load(globals.keys_dir);
  if (!keyring.ok()) return Fail(keyring.status());
  absl::StatusOr<RollbackResult> result = Rollback(globals.prefix, to, &*keyring);
  if (!result.ok()) return Fail(result.status());

  if (result->from == result->to) {
    std::cout << result->to << " is already current\n";
  } else {
    const std::string from = result->from.empty() ? "none" : result->from;
    std::cout << "current is " << result->to << " (was " << from << ")\n";
  }
  return ExitCode::kOk;
}

ExitCode RunGc(const Globals& globals, const po::variables_map& values) {
  const std::string& prefix = globals.prefix;
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
      {.name = "keygen",
       .synopsis = "keygen NAME [--out DIR]",
       .summary = "make an Ed25519 signing key pair",
       .details = "Writes DIR/NAME.secret (mode 0600; refused if it exists) and DIR/NAME.pub.\n"
                  "Sign packages with the secret; copy the .pub file into CONFIG/keys/ of each\n"
                  "host that is to trust them. Each file is one line, KIND KEY-ID BASE64.",
       .arguments = {"NAME"},
       .flags = KeygenFlags,
       .run = RunKeygen},
      {.name = "build",
       .synopsis = "build --version V --out DIR --file REL=SRC... [--service NAME=REL]...\n"
                   "        [--key SECRET] [--archive FILE]",
       .summary = "make a package folder (and archive) from built files, signed with --key",
       .details = "Copies each SRC to DIR/REL and writes DIR/manifest.json with the version,\n"
                  "each file's sha256 and mode (0755 when SRC has an execute bit, else 0644)\n"
                  "and the services. DIR must be missing or empty. With --key, signs the\n"
                  "manifest as sign does; with --archive, also writes the folder as one tar\n"
                  "archive, compressed as FILE's name says (.tar, .tar.gz, .tgz, .tar.xz).",
       .flags = BuildFlags,
       .run = RunBuild},
      {.name = "sign",
       .synopsis = "sign DIR --key SECRET",
       .summary = "sign a package folder's manifest",
       .details = "Signs the exact bytes of DIR/manifest.json with the Ed25519 key SECRET and\n"
                  "writes the signature line to DIR/manifest.json.sig, replacing an earlier\n"
                  "signature by the same key and keeping those of other keys. The manifest\n"
                  "lists every file's sha256, so the signature covers every file.",
       .arguments = {"DIR"},
       .flags = SignFlags,
       .run = RunSign},
      {.name = "verify",
       .synopsis = "verify PACKAGE",
       .summary = "check a package's signature, manifest and files, installing nothing",
       .details = "PACKAGE is a package folder or archive. Checks that a key in the keys\n"
                  "folder (--keys-dir, else CONFIG/keys) signed its manifest, that the\n"
                  "manifest is valid and that every file has its sha256, as install does.",
       .arguments = {"PACKAGE"},
       .flags = NoFlags,
       .run = RunVerify},
      {.name = "install",
       .synopsis = "install PACKAGE [--keep N]",
       .summary = "install a signed package folder or archive and make it current",
       .details = "PACKAGE is a package folder or an archive of one (tar, plain or compressed),\n"
                  "extracted into a private temporary folder first: only plain relative paths\n"
                  "to files and folders, no links, no devices, within size limits. Checks that\n"
                  "a trusted key (--keys-dir, else CONFIG/keys) signed the manifest, then the\n"
                  "manifest and the sha256 of every file; copies the package to P/versions/V/\n"
                  "and points P/current at it, then collects old versions as gc does. On any\n"
                  "error nothing under P changes. A version installed before with other\n"
                  "contents is refused; with the same contents it only becomes current again.",
       .arguments = {"PACKAGE"},
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
                  "or at V, after checking its signature against the trusted keys and its\n"
                  "files. Fails when there is no such version.",
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
  add("config-dir",
      po::value<std::string>()->value_name("CONFIG")->default_value(kDefaultConfigDir),
      "nehost's configuration folder; the trusted public keys are CONFIG/keys/*.pub");
  add("keys-dir", po::value<std::string>()->value_name("DIR"),
      "the trusted public keys, instead of CONFIG/keys");
  add("verbose,v", po::bool_switch(), "log routine detail too");
  add("quiet,q", po::bool_switch(), "log only warnings and errors");
  add("help,h", po::bool_switch(), "show help; 'nehost-pkg help COMMAND' for one command");
  return flags;
}

void PrintHelp(const po::options_description& globals) {
  std::cout << "usage: nehost-pkg [GLOBAL FLAGS] COMMAND [ARGUMENTS]\n\n"
               "nehost-pkg "
            << kVersion
            << ": builds and signs nehost packages, and installs\n"
               "those signed by a trusted key as versions under P/versions/V/, with\n"
               "P/current pointing at the one to run.\n\n"
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
  Globals settings{.prefix = (*values)["prefix"].as<std::string>(), .keys_dir = ""};
  if (settings.prefix.empty()) return UsageError("--prefix is empty");
  settings.keys_dir = values->count("keys-dir") > 0
                          ? (*values)["keys-dir"].as<std::string>()
                          : KeysDir((*values)["config-dir"].as<std::string>());
  if (settings.keys_dir.empty()) return UsageError("--keys-dir is empty");

  InitLogging("nehost-pkg", Verbosity(*values));
  return command.run(settings, *values);
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

int main(int argc, char** argv) {
  nehost::DisableMutexDeadlockDetection();
  return static_cast<int>(nehost::installer::Run(argc, argv));
}
