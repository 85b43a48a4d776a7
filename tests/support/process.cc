#include "tests/support/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace nehost::testing {
namespace {

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// The test's own environment without anything that would make a child think it was
// socket-activated or supervised.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string value(*entry);
    if (absl::StartsWith(value, "LISTEN_") || absl::StartsWith(value, "NOTIFY_SOCKET=") ||
        absl::StartsWith(value, "NEHOST_")) {
      continue;
    }
    environment.push_back(value);
  }
  environment.insert(environment.end(), extra.begin(), extra.end());
  return environment;
}

ExitStatus FromWaitStatus(int status) {
  if (WIFEXITED(status)) return {true, WEXITSTATUS(status)};
  return {false, WTERMSIG(status)};
}

void ReadAll(int fd, std::string* out) {
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) out->append(buffer, n);
}

}  // namespace

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "nehost-test-XXXXXX").string();
  char* made = ::mkdtemp(pattern.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    std::abort();
  }
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

Subprocess::Subprocess(const std::vector<std::string>& argv,
                       const std::vector<std::string>& environment, const std::string& log_path) {
  std::vector<std::string> arguments = argv;
  std::vector<std::string> variables = ChildEnvironment(environment);
  std::vector<char*> c_arguments = CStrings(arguments);
  std::vector<char*> c_variables = CStrings(variables);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!log_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  }
  // A process group of its own: a test's kill never reaches the test runner.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);

  int error = ::posix_spawn(&pid_, c_arguments[0], &actions, &attributes, c_arguments.data(),
                            c_variables.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    ADD_FAILURE() << "spawn " << argv[0] << ": " << std::strerror(error);
    std::abort();
  }
  pidfd_.Reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
}

Subprocess::~Subprocess() {
  if (reaped_) return;
  Signal(SIGKILL);
  Wait(absl::Seconds(10));
}

bool Subprocess::running() const {
  if (reaped_) return false;
  pollfd polled{pidfd_.get(), POLLIN, 0};
  return ::poll(&polled, 1, 0) == 0;
}

void Subprocess::Signal(int signal) {
  if (!reaped_) ::kill(pid_, signal);
}

std::optional<ExitStatus> Subprocess::Wait(absl::Duration timeout) {
  if (reaped_) return std::nullopt;
  pollfd polled{pidfd_.get(), POLLIN, 0};
  int ready = ::poll(&polled, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (ready <= 0) return std::nullopt;

  int status = 0;
  if (::waitpid(pid_, &status, 0) != pid_) return std::nullopt;
  reaped_ = true;
  return FromWaitStatus(status);
}

CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) std::abort();

  std::vector<std::string> arguments = argv;
  std::vector<std::string> variables = ChildEnvironment({});
  std::vector<char*> c_arguments = CStrings(arguments);
  std::vector<char*> c_variables = CStrings(variables);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);

  pid_t pid = 0;
  int error = ::posix_spawn(&pid, c_arguments[0], &actions, nullptr, c_arguments.data(),
                            c_variables.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  CommandResult result;
  if (error != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    result.status = {true, 127};
    result.err = std::string("spawn failed: ") + std::strerror(error);
    return result;
  }

  // Read both pipes until the command closes them; kill it at the deadline.
  absl::Time deadline = absl::Now() + timeout;
  pollfd polled[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_pipes = 2;
  while (open_pipes > 0) {
    int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (left <= 0 || ::poll(polled, 2, left) <= 0) {
      ::kill(pid, SIGKILL);
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (polled[i].fd < 0 || polled[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = ::read(polled[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buffer, n);
      } else {
        polled[i].fd = -1;
        --open_pipes;
      }
    }
  }
  ReadAll(out_pipe[0], &result.out);
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);

  int status = 0;
  ::waitpid(pid, &status, 0);
  result.status = FromWaitStatus(status);
  return result;
}

bool WaitUntil(const std::function<bool()>& predicate, absl::Duration timeout,
               absl::Duration interval) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (predicate()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(interval);
  }
}

namespace {

// State and process group from /proc/PID/stat; the command name may hold spaces.
bool ReadStateAndGroup(pid_t pid, char* state, pid_t* group) {
  std::string contents = ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/stat");
  size_t close = contents.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(contents.substr(close + 1));
  pid_t parent = 0;
  return static_cast<bool>(fields >> *state >> parent >> *group);
}

}  // namespace

bool ProcessAlive(pid_t pid) {
  char state = 0;
  pid_t group = 0;
  return ReadStateAndGroup(pid, &state, &group) && state != 'Z';
}

std::vector<pid_t> ProcessesWithEnvironment(const std::string& entry) {
  std::vector<pid_t> found;
  for (const auto& process : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(process.path().filename().string(), &pid)) continue;
    std::string environment = ReadFileOrEmpty(process.path().string() + "/environ");
    for (absl::string_view variable : absl::StrSplit(environment, '\0')) {
      if (variable == entry) {
        found.push_back(pid);
        break;
      }
    }
  }
  return found;
}

std::vector<pid_t> LiveProcessesInGroup(pid_t pgid) {
  std::vector<pid_t> members;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
    char state = 0;
    pid_t group = 0;
    if (ReadStateAndGroup(pid, &state, &group) && group == pgid && state != 'Z') {
      members.push_back(pid);
    }
  }
  return members;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFileOrDie(const std::string& path, const std::string& contents) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path);
  out << contents;
  if (!out) {
    ADD_FAILURE() << "write " << path;
    std::abort();
  }
}

}  // namespace nehost::testing
