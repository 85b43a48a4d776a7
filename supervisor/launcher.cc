#include "supervisor/launcher.h"

// Boost.Process offers use_vfork only where the feature macros still declare vfork, which
// _GNU_SOURCE's newer POSIX level does not; glibc has it all the same. Must come before the
// first Boost.Process header.
#define BOOST_POSIX_HAS_VFORK 1

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/posix.hpp>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"

namespace bp = boost::process;

namespace nehost::supervisor {
namespace {

// Wide enough for any pid (pid_max is at most 2^22); the child overwrites the digits.
constexpr char kListenPidPlaceholder[] = "LISTEN_PID=0000000000";

// Everything the child does between vfork and exec, in nehostd's memory and on its stack:
// only async-signal-safe calls, no allocation, no logging, and no write to anything but this
// launch's own environment block. Returns 0 or an errno value.
struct ChildSetup {
  const std::vector<int>* listen_fds;
  int executable_fd;

  int Run(char** environment) const {
    if (int err = PlaceListenFds(); err != 0) return err;
    WriteOwnPid(environment);

    sigset_t none;
    sigemptyset(&none);
    if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) return errno;
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &default_action, nullptr);

    if (::setsid() < 0) return errno;
    return 0;
  }

  // Executes the opened file; returns only on failure, with the errno value. A script's
  // interpreter reopens it as /dev/fd/N, which close-on-exec would have closed by then: such
  // a file is tried again with the descriptor left open across the exec.
  int ExecOpenedFile(char* const* argv, char** environment) const {
    ::syscall(SYS_execveat, executable_fd, "", argv, environment, AT_EMPTY_PATH);
    if (errno != ENOENT) return errno;
    if (::fcntl(executable_fd, F_SETFD, 0) != 0) return errno;
    ::syscall(SYS_execveat, executable_fd, "", argv, environment, AT_EMPTY_PATH);
    return errno;
  }

  // dup2 into 3, 4, ... would overwrite a source that already sits in that range, so every
  // source is first copied above the range.
  int PlaceListenFds() const {
    const int count = static_cast<int>(listen_fds->size());
    int staged[64];
    if (count > 64) return EMFILE;
    for (int i = 0; i < count; ++i) {
      staged[i] = ::fcntl((*listen_fds)[i], F_DUPFD_CLOEXEC, 3 + count);
      if (staged[i] < 0) return errno;
    }
    // dup2 leaves the new descriptor without FD_CLOEXEC, so exactly these survive exec.
    for (int i = 0; i < count; ++i) {
      if (::dup2(staged[i], 3 + i) < 0) return errno;
      ::close(staged[i]);
    }
    return 0;
  }

  static void WriteOwnPid(char** environment) {
    const size_t prefix = sizeof "LISTEN_PID=" - 1;
    for (char** entry = environment; entry != nullptr && *entry != nullptr; ++entry) {
      if (std::strncmp(*entry, kListenPidPlaceholder, prefix) != 0) continue;
      char digits[16];
      int length = 0;
      for (pid_t pid = ::getpid(); pid > 0; pid /= 10) digits[length++] = '0' + pid % 10;
      char* out = *entry + prefix;
      while (length > 0) *out++ = digits[--length];
      *out = '\0';
      return;
    }
  }
};

bool IsReservedVariable(const std::string& name) {
  return name == "LISTEN_FDS" || name == "LISTEN_PID" || name == "LISTEN_FDNAMES" ||
         name == "NOTIFY_SOCKET";
}

bp::environment BuildEnvironment(const LaunchSpec& spec) {
  bp::environment environment = boost::this_process::environment();
  for (const auto& entry : boost::this_process::environment()) {
    if (IsReservedVariable(entry.get_name())) environment.erase(entry.get_name());
  }
  for (const auto& [name, value] : spec.environment) environment[name] = value;

  if (!spec.listen_fds.empty()) {
    environment["LISTEN_FDS"] = std::to_string(spec.listen_fds.size());
    environment["LISTEN_FDNAMES"] = absl::StrJoin(spec.listen_fd_names, ":");
    environment["LISTEN_PID"] = kListenPidPlaceholder + (sizeof "LISTEN_PID=" - 1);
  }
  return environment;
}

class ProcessLauncher : public Launcher {
 public:
  absl::StatusOr<LaunchedProcess> Launch(const LaunchSpec& spec) override {
    if (absl::Status executable = CheckExecutable(spec.executable); !executable.ok()) {
      return executable;
    }

    ChildSetup setup{&spec.listen_fds, spec.executable_fd};
    std::error_code error;
    // vfork rather than fork: nehostd's page tables are not copied, so its other threads,
    // serving lookups, do not stall behind the copy. The child shares nehostd's memory until
    // exec, which ChildSetup allows for: it only writes this launch's own environment block.
    bp::child child(bp::exe(spec.executable), bp::args(spec.args), bp::env(BuildEnvironment(spec)),
                    bp::posix::use_vfork, bp::extend::on_exec_setup([&setup](auto& executor) {
                      int err = setup.Run(executor.env);
                      const char* step = "child setup";
                      if (err == 0 && setup.executable_fd >= 0) {
                        err = setup.ExecOpenedFile(executor.cmd_line, executor.env);
                        step = "exec";
                      }
                      if (err != 0) {
                        // In the child, set_error writes to Boost's error pipe, which the parent
                        // reads; the exec must then not go ahead.
                        executor.set_error(std::error_code(err, std::system_category()), step);
                        ::_exit(127);
                      }
                    }),
                    error);
    if (error) {
      if (child.id() > 0) ::waitpid(child.id(), nullptr, 0);
      return absl::InternalError(absl::StrCat("launch ", spec.executable, ": ", error.message()));
    }

    LaunchedProcess launched;
    launched.pid = child.id();
    child.detach();

    // The child cannot be reaped by anyone else before this: nehostd is its parent and only
    // waits through the pidfd. So the pid still names it, even if it already exited.
    launched.pidfd.Reset(static_cast<int>(::syscall(SYS_pidfd_open, launched.pid, 0)));
    if (!launched.pidfd) {
      int err = errno;
      ::kill(launched.pid, SIGKILL);
      return ErrnoStatus(err, "pidfd_open for", absl::StrCat("pid ", launched.pid));
    }
    return launched;
  }
};

}  // namespace

absl::Status CheckExecutable(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return ErrnoStatus(errno, "executable", path);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("executable ", path, " is not a file"));
  }
  if (::access(path.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("executable ", path, " is not executable: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

std::unique_ptr<Launcher> MakeProcessLauncher() { return std::make_unique<ProcessLauncher>(); }

}  // namespace nehost::supervisor
