// nehost-filter: the extension nehost ships. It serves nehost.filter.v1 on a Unix socket that
// it inherits (nehostd, systemd socket activation) or binds itself, and runs until SIGTERM or
// SIGINT.
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/grpc_server.h"
#include "common/listen_fds.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "common/version.h"
#include "extension/filter_service.h"
#include "extension/rule_store.h"
#include "spdlog/spdlog.h"

namespace nehost::filter {
namespace {

namespace po = boost::program_options;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Calls in flight get this long to finish after a stop signal; then they are cancelled.
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);

constexpr char kGrpcSocketName[] = "grpc";

constexpr char kHelp[] = R"(usage: nehost-filter [--listen PATH] [--state-dir DIR] [-v]

Serves nehost.filter.v1 (status and domain rules), grpc.health.v1 and server reflection
over gRPC on a Unix socket, until SIGTERM or SIGINT.

Socket: when LISTEN_PID is this process's pid and LISTEN_FDS is set, as nehostd and systemd
socket activation set them, it serves the inherited socket that LISTEN_FDNAMES names "grpc",
or the only inherited socket whatever its name, and ignores --listen. Otherwise it binds
--listen PATH itself, with mode 0660.

Readiness: when NOTIFY_SOCKET is set it sends READY=1 once it serves, and STOPPING=1 on
SIGTERM or SIGINT; it then lets calls in flight finish (for up to 5 s) and exits 0.

State: the rules live in DIR/rules.json; DIR must exist. Status reports NEHOST_GENERATION
and NEHOST_SERVICE, which nehostd sets.

Exit status: 0 after a stop signal, 1 on a runtime failure, 2 on a usage error.

)";

struct Flags {
  std::string listen_path;
  std::string state_dir;
  bool verbose = false;
};

// The socket that nehost-filter accepts on.
struct Listener {
  int fd = -1;
  bool activated = false;
  // Set when nehost-filter bound the socket itself; an inherited one belongs to its parent.
  UniqueFd owned;
};

int UsageError(const std::string& message) {
  std::cerr << "nehost-filter: " << message << " (see --help)\n";
  return kExitUsage;
}

int RuntimeFailure(const absl::Status& status) {
  spdlog::error("{}", std::string(status.message()));
  return kExitFailure;
}

// systemd sets STATE_DIRECTORY to a colon-separated list when a unit names several folders;
// the first is this program's.
std::optional<int> ResolveStateDir(Flags* flags) {
  const char* from_environment = std::getenv("STATE_DIRECTORY");
  if (flags->state_dir.empty() && from_environment != nullptr) {
    std::string folders = from_environment;
    flags->state_dir = folders.substr(0, folders.find(':'));
  }
  if (flags->state_dir.empty()) {
    return UsageError("no state folder: pass --state-dir DIR or set STATE_DIRECTORY");
  }
  return std::nullopt;
}

// An exit code when the program should stop here: help, version, or a usage error.
std::optional<int> ParseFlags(int argc, char** argv, Flags* flags) {
  po::options_description options("options");
  options.add_options()  //
      ("listen", po::value(&flags->listen_path)->value_name("PATH"),
       "bind this Unix socket when not socket-activated")  //
      ("state-dir", po::value(&flags->state_dir)->value_name("DIR"),
       "folder of rules.json (default: $STATE_DIRECTORY)")                       //
      ("verbose,v", po::bool_switch(&flags->verbose), "log routine detail too")  //
      ("help", "print this help and exit")                                       //
      ("version", "print the version and exit");

  po::variables_map values;
  try {
    // With no positional options described, a stray argument is an error, not ignored.
    po::positional_options_description no_positionals;
    po::store(po::command_line_parser(argc, argv).options(options).positional(no_positionals).run(),
              values);
    po::notify(values);
  } catch (const po::error& error) {
    return UsageError(error.what());
  }

  if (values.count("help") != 0) {
    std::cout << kHelp << options;
    return 0;
  }
  if (values.count("version") != 0) {
    std::cout << "nehost-filter " << kVersion << "\n";
    return 0;
  }
  return ResolveStateDir(flags);
}

// Blocked in every thread, gRPC's included, so that only WaitForStopSignal receives them.
// Must run before the first thread starts: threads inherit the mask when they are created.
sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int WaitForStopSignal(const sigset_t& signals) {
  for (;;) {
    int signal = sigwaitinfo(&signals, nullptr);
    if (signal > 0) return signal;
  }
}

absl::StatusOr<InstanceInfo> InstanceFromEnvironment() {
  InstanceInfo instance;
  const char* generation = std::getenv("NEHOST_GENERATION");
  if (generation != nullptr && !absl::SimpleAtoi(generation, &instance.generation)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "read NEHOST_GENERATION: \"", absl::CHexEscape(generation), "\" is not a generation"));
  }

  const char* service = std::getenv("NEHOST_SERVICE");
  if (service != nullptr) instance.service = service;
  return instance;
}

absl::StatusOr<Listener> InheritedListener(const std::vector<InheritedSocket>& sockets) {
  int fd = FindInheritedSocket(sockets, kGrpcSocketName);
  if (fd < 0 && sockets.size() == 1) fd = sockets.front().fd;
  if (fd >= 0) return Listener{fd, true, UniqueFd()};

  std::vector<std::string> names;
  for (const InheritedSocket& socket : sockets) names.push_back(socket.name);
  return absl::FailedPreconditionError(
      absl::StrCat("choose inherited socket: none of ", sockets.size(), " is named ",
                   kGrpcSocketName, " (LISTEN_FDNAMES=", absl::StrJoin(names, ":"), ")"));
}

absl::StatusOr<Listener> ChooseListener(const Flags& flags,
                                        const std::vector<InheritedSocket>& inherited) {
  if (!inherited.empty()) {
    if (!flags.listen_path.empty()) {
      spdlog::info("ignoring --listen path={}: socket-activated", flags.listen_path);
    }
    return InheritedListener(inherited);
  }

  absl::StatusOr<UniqueFd> bound = ListenUnix(flags.listen_path, 0660);
  if (!bound.ok()) return bound.status();
  int fd = bound->get();
  return Listener{fd, false, *std::move(bound)};
}

// The path a listening socket is bound to, for logs; inherited ones are known only by fd.
std::string SocketPathOf(int fd) {
  sockaddr_un address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      address.sun_family != AF_UNIX || address.sun_path[0] == '\0') {
    return absl::StrCat("fd:", fd);
  }
  return address.sun_path;
}

void Notify(const std::string& state) {
  int sent = sd_notify(0, state.c_str());
  if (sent < 0) {
    spdlog::warn("notify failed error=\"{}\"; the supervisor will not see this state",
                 ErrnoText(-sent));
  }
}

int Serve(const Listener& listener, RuleStore* store, InstanceInfo instance,
          const sigset_t& stop_signals) {
  uint64_t generation = instance.generation;
  FilterService service(store, std::move(instance));
  absl::StatusOr<std::unique_ptr<FdServer>> server = FdServer::Start({&service}, {listener.fd});
  if (!server.ok()) return RuntimeFailure(server.status());
  spdlog::info("serving socket={} activated={} generation={} version={}", SocketPathOf(listener.fd),
               listener.activated, generation, kVersion);
  Notify(absl::StrCat("READY=1\nSTATUS=serving version=", kVersion, " rules=", store->size()));

  int signal = WaitForStopSignal(stop_signals);
  spdlog::info("stopping signal={} grace_ms={}", absl::AsciiStrToLower(sigabbrev_np(signal)),
               absl::ToInt64Milliseconds(kShutdownGrace));
  Notify("STOPPING=1");

  (*server)->Stop(kShutdownGrace);
  spdlog::info("stopped");
  return 0;
}

int Main(int argc, char** argv) {
  sigset_t stop_signals = BlockStopSignals();
  Flags flags;
  if (std::optional<int> exit_code = ParseFlags(argc, argv, &flags)) return *exit_code;
  InitLogging("nehost-filter", flags.verbose ? LogVerbosity::kDebug : LogVerbosity::kNormal);

  absl::StatusOr<std::vector<InheritedSocket>> inherited = TakeListenFds();
  if (!inherited.ok()) return RuntimeFailure(inherited.status());
  if (inherited->empty() && flags.listen_path.empty()) {
    return UsageError("no socket to serve: pass --listen PATH or start socket-activated");
  }

  absl::StatusOr<InstanceInfo> instance = InstanceFromEnvironment();
  if (!instance.ok()) return RuntimeFailure(instance.status());
  absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(flags.state_dir);
  if (!store.ok()) return RuntimeFailure(store.status());

  absl::StatusOr<Listener> listener = ChooseListener(flags, *inherited);
  if (!listener.ok()) return RuntimeFailure(listener.status());
  return Serve(*listener, store->get(), *std::move(instance), stop_signals);
}

}  // namespace
}  // namespace nehost::filter

int main(int argc, char** argv) { return nehost::filter::Main(argc, argv); }
