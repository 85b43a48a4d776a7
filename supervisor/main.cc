// nehostd: the supervisor. Hosts the services defined in CONFIG/services.d (or the embedded
// nehost-filter), serves nehost.supervisor.v1 on RUNTIME/nehostd.sock, and stops everything
// it started on SIGTERM or Ctrl-C.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <cerrno>
#include <filesystem>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/abseil.h"
#include "common/access_policy.h"
#include "common/failpoint.h"
#include "common/files.h"
#include "common/grpc_server.h"
#include "common/listen_fds.h"
#include "common/log.h"
#include "common/unix_socket.h"
#include "common/version.h"
#include "installer/manifest.h"
#include "installer/signature.h"
#include "supervisor/service_config.h"
#include "supervisor/supervisor.h"
#include "supervisor/supervisor_service.h"
#include "supervisor/verification.h"

namespace po = boost::program_options;

namespace nehost::supervisor {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Flags {
  SupervisorOptions options;
  bool verbose = false;
  bool no_reconcile = false;
};

// Set by the Reexec handler; the main thread re-executes once it sees SIGUSR1.
std::atomic<bool> reexec_requested{false};

constexpr char kUsage[] =
    "usage: nehostd [--config-dir DIR] [--runtime-dir DIR] [--state-dir DIR] [options]\n"
    "\n"
    "Hosts long-lived network extensions: launches each service defined in\n"
    "CONFIG/services.d/*.textproto (with none, the nehost-filter beside this program, as\n"
    "org.nehost.filter), owns its sockets in RUNTIME/services/, restarts it when it exits,\n"
    "and answers lookups by name on RUNTIME/nehostd.sock (see nehostctl). A service from a\n"
    "package (package_prefix) runs only if its binary has the sha256 that its version's\n"
    "manifest lists, signed by a key in CONFIG/keys/. CONFIG/nehostd.textproto sets who may\n"
    "call what (access { admin_group reader_group }).\n"
    "SIGTERM or Ctrl-C stops every service, then nehostd.\n"
    "\n"
    "Exit status: 0 after a clean stop, 1 when nehostd cannot run, 2 for bad usage.\n"
    "\n"
    "options";

// Returns the exit status to leave with, or -1 to go on.
int ParseFlags(int argc, char** argv, Flags* flags) {
  SupervisorOptions& options = flags->options;
  int64_t lookup_wait_ms = 5000;
  po::options_description described(kUsage);
  described.add_options()("help,h", "print this help and exit")("version",
                                                                "print the version and exit")(
      "config-dir", po::value(&options.config_dir)->default_value("/etc/nehost"),
      "folder holding services.d/, keys/ and nehostd.textproto")(
      "runtime-dir", po::value(&options.runtime_dir)->default_value("/run/nehost"),
      "folder for nehostd.sock, services/*.sock and notify.sock")(
      "state-dir", po::value(&options.state_dir)->default_value("/var/lib/nehost"),
      "folder for registry.json and each service's state in services/NAME/")(
      "default-dns-listen",
      po::value(&options.default_dns_address)->default_value(kDefaultDnsAddress),
      "where the embedded default serves DNS, over UDP and TCP, when the address is free: "
      "ADDR:PORT, or none")("lookup-wait-ms", po::value(&lookup_wait_ms)->default_value(5000),
                            "how long a lookup waits for a starting service")(
      "no-reconcile", po::bool_switch(&flags->no_reconcile),
      "trust the registry as recorded, like a naive supervisor: no verification, adoption or "
      "replacement (for reproducing the field failure; never in production)")(
      "verbose,v", po::bool_switch(&flags->verbose), "log routine detail too");

  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc, argv).options(described).run(), values);
    po::notify(values);
  } catch (const po::error& error) {
    std::cerr << "nehostd: " << error.what() << "\nrun nehostd --help for usage\n";
    return kExitUsage;
  }
  if (values.count("help") != 0) {
    std::cout << described << "\n";
    return kExitOk;
  }
  if (values.count("version") != 0) {
    std::cout << "nehostd " << kVersion << "\n";
    return kExitOk;
  }
  if (lookup_wait_ms <= 0) {
    std::cerr << "nehostd: --lookup-wait-ms must be positive\n";
    return kExitUsage;
  }
  if (options.default_dns_address == "none") options.default_dns_address.clear();
  options.lookup_wait = absl::Milliseconds(lookup_wait_ms);
  options.reconcile = !flags->no_reconcile;
  return -1;
}

std::string SelfDir() {
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? "." : self.parent_path().string();
}

// One nehostd per runtime folder: a second one would take over the first one's sockets.
absl::StatusOr<UniqueFd> LockRuntimeDir(const std::string& runtime_dir) {
  if (absl::Status made = MakeDirs(runtime_dir, 0755); !made.ok()) return made;
  std::string path = runtime_dir + "/nehostd.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) return ErrnoStatus(errno, "open lock file", path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::AlreadyExistsError(
          absl::StrCat("another nehostd already runs on ", runtime_dir, " (", path, " is locked)"));
    }
    return ErrnoStatus(errno, "lock", path);
  }
  return fd;
}

int WaitForSignal(const sigset_t& signals) {
  for (;;) {
    int signal = 0;
    if (::sigwait(&signals, &signal) == 0) return signal;
  }
}

// The socket nehostd.sock, inherited across a re-execution (or from systemd's socket
// activation) so that clients wait in its backlog instead of being refused; else bound anew.
absl::StatusOr<UniqueFd> TakeOrBindControlSocket(const std::string& path, gid_t group) {
  absl::StatusOr<std::vector<InheritedSocket>> inherited = TakeListenFds();
  if (inherited.ok() && inherited->size() == 1) {
    spdlog::info("control socket inherited path={} fd={}", path, (*inherited)[0].fd);
    return UniqueFd((*inherited)[0].fd);
  }
  if (!inherited.ok()) {
    spdlog::warn("inherited sockets unusable: {}; binding {} anew", inherited.status().message(),
                 path);
  }
  return ListenUnix(path, 0660, group);
}

// CONFIG/nehostd.textproto's access policy; its groups must exist.
absl::StatusOr<AccessPolicy> LoadAccessPolicy(const std::string& config_dir) {
  absl::StatusOr<v1::NehostdConfig> config = LoadNehostdConfig(config_dir);
  if (!config.ok()) return config.status();
  absl::StatusOr<AccessPolicy> policy =
      AccessPolicy::Create(config->access().admin_group(), config->access().reader_group());
  if (!policy.ok()) {
    return absl::Status(
        policy.status().code(),
        absl::StrCat(config_dir, "/", kNehostdConfigFile, ": access: ", policy.status().message()));
  }
  return policy;
}

// What a re-execution runs: the path nehostd was started as, when it is absolute, so that after
// a package upgrade moved PREFIX/current (nehostd started as PREFIX/current/bin/nehostd) nehostd
// comes back as the new version; else the very binary that runs now.
std::string ReexecPath(const char* argv0) {
  if (argv0 != nullptr && argv0[0] == '/' && ::access(argv0, X_OK) == 0) return argv0;
  return "/proc/self/exe";
}

// The new image, checked and opened when the re-execution was asked for; executed through
// the descriptor, so that what runs is what was checked.
struct ReexecImage {
  std::string path;
  OpenedExecutable opened;
  std::string verified_by;
};

ABSL_CONST_INIT absl::Mutex reexec_mu(absl::kConstInit);
std::optional<ReexecImage> reexec_image ABSL_GUARDED_BY(reexec_mu);

// Checks the binary a re-execution would run, as a service's is checked before its launch:
// installed from a package (VERSION/bin/nehostd with VERSION/manifest.json), its sha256 must
// be the one the manifest lists, signed by a key in CONFIG/keys. A binary with no manifest
// beside it (a development build) is run unverified, as a plain definition's is.
absl::StatusOr<ReexecImage> PrepareReexec(const char* argv0, const std::string& config_dir) {
  ReexecImage image{.path = ReexecPath(argv0), .opened = {}, .verified_by = ""};
  std::error_code error;
  const std::filesystem::path real = std::filesystem::canonical(image.path, error);
  if (error) return ErrnoStatus(error.value(), "resolve", image.path);
  const std::filesystem::path folder = real.parent_path().parent_path();

  ExpectedExecutable expected{.sha256 = "",
                              .verified_by = "no manifest beside it: sha256 recorded only"};
  const bool has_manifest = std::filesystem::exists(folder / installer::kManifestFile, error);
  if (error) {
    return ErrnoStatus(error.value(), "look for", (folder / installer::kManifestFile).string());
  }
  if (has_manifest) {
    absl::StatusOr<ExpectedExecutable> signed_file =
        ExpectSignedFile(folder.string(), std::filesystem::relative(real, folder).string(),
                         installer::KeysDir(config_dir));
    if (!signed_file.ok()) return signed_file.status();
    expected = *std::move(signed_file);
  }
  ExecutableCache cache;
  absl::StatusOr<OpenedExecutable> opened = cache.Open(real.string(), expected);
  if (!opened.ok()) return opened.status();
  image.opened = *std::move(opened);
  image.verified_by = expected.verified_by;
  return image;
}

// Re-executes the checked image with the same arguments, handing nehostd.sock over as fd 3
// the socket-activation way. Returns only on failure.
absl::Status ReexecSelf(char** argv, UniqueFd control_socket, const ReexecImage& image) {
  if (!ExecutableCache::Recheck(image.opened, image.path).ok()) {
    return absl::AbortedError(absl::StrCat(image.path, " changed after it was checked"));
  }
  // fd 3 is about to become nehostd.sock: an image opened there moves out of its way.
  UniqueFd moved_image;
  int image_fd = image.opened.fd.get();
  if (image_fd == kListenFdsStart) {
    moved_image.Reset(::fcntl(image_fd, F_DUPFD_CLOEXEC, kListenFdsStart + 1));
    if (!moved_image) return ErrnoStatus(errno, "move", image.path);
    image_fd = moved_image.get();
  }
  // An image that inherited the socket holds it at fd 3 already, close-on-exec; dup2 onto
  // itself would leave that flag, and the next image would find fd 3 closed.
  if (control_socket.get() == kListenFdsStart) {
    if (::fcntl(kListenFdsStart, F_SETFD, 0) != 0) {
      return ErrnoStatus(errno, "keep open across exec", "nehostd.sock");
    }
  } else if (::dup2(control_socket.get(), kListenFdsStart) < 0) {
    return ErrnoStatus(errno, "dup2", "nehostd.sock for the new image");
  }

  ::setenv("LISTEN_FDS", "1", 1);
  ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
  ::setenv("LISTEN_FDNAMES", "nehostd", 1);
  ::syscall(SYS_execveat, image_fd, "", argv, environ, AT_EMPTY_PATH);
  return ErrnoStatus(errno, "execveat", image.path);
}

int Run(Flags flags, char** argv) {
  SupervisorOptions& options = flags.options;
  absl::StatusOr<AccessPolicy> access = LoadAccessPolicy(options.config_dir);
  if (!access.ok()) {
    spdlog::error("cannot start: {}", access.status().message());
    return kExitFailure;
  }
  options.access = *std::move(access);
  absl::StatusOr<UniqueFd> lock = LockRuntimeDir(options.runtime_dir);
  if (!lock.ok()) {
    spdlog::error("cannot start: {}", lock.status().message());
    return kExitFailure;
  }

  Supervisor supervisor(options, MakeProcessLauncher());
  ConnectionTable connections;
  Authorizer authorizer(options.access, &connections);
  SupervisorService service(&supervisor, &authorizer, [&options, argv]() -> absl::Status {
    absl::StatusOr<ReexecImage> image = PrepareReexec(argv[0], options.config_dir);
    if (!image.ok()) {
      spdlog::error("re-execution refused: {}; nehostd goes on as it is", image.status().message());
      return image.status();
    }
    {
      absl::MutexLock lock(&reexec_mu);
      reexec_image = *std::move(image);
    }
    reexec_requested = true;
    ::kill(::getpid(), SIGUSR1);
    return absl::OkStatus();
  });

  // Bound before the services start, so an early client waits in the backlog instead of
  // being refused.
  std::string socket_path = supervisor.control_socket_path();
  absl::StatusOr<UniqueFd> listener =
      TakeOrBindControlSocket(socket_path, options.access.socket_group().value_or(kKeepGroup));
  if (!listener.ok()) {
    spdlog::error("cannot start: {}", listener.status().message());
    return kExitFailure;
  }
  if (absl::Status started = supervisor.Start(); !started.ok()) {
    spdlog::error("cannot start: {}", started.message());
    return kExitFailure;
  }
  absl::StatusOr<std::unique_ptr<FdServer>> server =
      FdServer::Start({&service}, {listener->get()}, &connections);
  if (!server.ok()) {
    spdlog::error("cannot serve {}: {}", socket_path, server.status().message());
    supervisor.Shutdown();
    return kExitFailure;
  }

  spdlog::info("serving socket={} version={} config_dir={} state_dir={} {}", socket_path, kVersion,
               options.config_dir, options.state_dir, options.access.Describe());
  sd_notify(0, "READY=1\nSTATUS=supervising");

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  int signal = WaitForSignal(signals);
  while (signal == SIGUSR1 && !reexec_requested) signal = WaitForSignal(signals);

  if (signal == SIGUSR1) {
    // Taken out from under the lock: a second Reexec call that comes meanwhile must not wait
    // on it as a call in flight, which would hold the drain below to its whole grace.
    ReexecImage image;
    {
      absl::MutexLock lock(&reexec_mu);
      image = *std::move(reexec_image);
    }
    spdlog::info(
        "re-executing path={} sha256={} verified_by=\"{}\"; every service keeps running and is "
        "adopted by the new image",
        image.path, image.opened.sha256, image.verified_by);
    sd_notify(0, "RELOADING=1");
    supervisor.Detach();
    (*server)->Stop(absl::Seconds(1));
    absl::Status failed = ReexecSelf(argv, std::move(*listener), image);
    spdlog::error("re-execution failed: {}; stopping", failed.message());
    return kExitFailure;
  }

  spdlog::info("stopping signal={}: stopping every service first", sigabbrev_np(signal));
  sd_notify(0, "STOPPING=1");
  supervisor.Shutdown();
  // Watch streams end with the supervisor; lookups in flight get a moment to answer.
  (*server)->Stop(absl::Seconds(2));
  ::unlink(socket_path.c_str());
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace
}  // namespace nehost::supervisor

int main(int argc, char** argv) {
  nehost::DisableMutexDeadlockDetection();
  using namespace nehost::supervisor;

  // Blocked before any thread exists, so every thread inherits the mask and only sigwait
  // sees these signals. Children get an empty mask back from the launcher.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Flags flags;
  if (int exit_status = ParseFlags(argc, argv, &flags); exit_status >= 0) return exit_status;
  nehost::InitLogging("nehostd",
                      flags.verbose ? nehost::LogVerbosity::kDebug : nehost::LogVerbosity::kNormal);
  flags.options.self_dir = SelfDir();
  flags.options.version = nehost::kVersion;
  nehost::InitFailpoints();
  return Run(flags, argv);
}
