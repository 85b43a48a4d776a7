#include "tests/support/dns_peers.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace nehost::testing {
namespace {

constexpr int kAttempts = 20;

UniqueFd BindLoopback(int type, uint16_t port) {
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return UniqueFd();
  }
  return fd;
}

uint16_t PortOf(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

}  // namespace

uint16_t ReservePort() {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    UniqueFd udp = BindLoopback(SOCK_DGRAM, 0);
    if (!udp) continue;
    uint16_t port = PortOf(udp.get());
    if (BindLoopback(SOCK_STREAM, port)) return port;
  }
  ADD_FAILURE() << "no free port on 127.0.0.1 for both UDP and TCP";
  return 0;
}

DnsSocketPair BindDnsSocketPair() {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    DnsSocketPair pair;
    pair.udp = BindLoopback(SOCK_DGRAM, 0);
    if (!pair.udp) continue;
    pair.port = PortOf(pair.udp.get());
    pair.tcp = BindLoopback(SOCK_STREAM, pair.port);
    if (pair.tcp && ::listen(pair.tcp.get(), SOMAXCONN) == 0) return pair;
  }
  ADD_FAILURE() << "no free port on 127.0.0.1 for both UDP and TCP";
  return {};
}

Dnsmasq::Dnsmasq(const TempDir& root, const std::vector<std::string>& records,
                 const std::string& log_name) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    port_ = ReservePort();
    // -d: in the foreground, no pid file, no change of user; --bind-interfaces with the
    // address so that it binds 127.0.0.1:PORT only.
    std::vector<std::string> argv = {DNSMASQ_BINARY,
                                     "-d",
                                     "--no-resolv",
                                     "--no-hosts",
                                     "--bind-interfaces",
                                     "--listen-address=127.0.0.1",
                                     absl::StrCat("--port=", port_),
                                     "--log-facility=-"};
    argv.insert(argv.end(), records.begin(), records.end());
    process_ = std::make_unique<Subprocess>(argv, std::vector<std::string>{}, root / log_name);

    bool up =
        WaitUntil([&] { return !process_->running() || WaitForDns(port_, absl::ZeroDuration()); },
                  absl::Seconds(10));
    if (up && process_->running()) return;
  }
  ADD_FAILURE() << "dnsmasq did not start: " << ReadFileOrEmpty(root / log_name);
}

DigResult Dig(uint16_t port, const std::string& name, const std::string& type,
              const std::vector<std::string>& extra, int timeout_s) {
  std::vector<std::string> argv = {DIG_BINARY,
                                   "@127.0.0.1",
                                   "-p",
                                   std::to_string(port),
                                   name,
                                   type,
                                   absl::StrCat("+time=", timeout_s),
                                   "+tries=1",
                                   "+nocookie"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  CommandResult run = RunCommand(argv, absl::Seconds(timeout_s + 10));

  DigResult result;
  result.output = run.out + run.err;
  bool in_answers = false;
  for (absl::string_view line : absl::StrSplit(run.out, '\n')) {
    if (absl::StrContains(line, "->>HEADER<<-")) {
      result.answered = true;
      size_t at = line.find("status: ");
      if (at != absl::string_view::npos) {
        absl::string_view rest = line.substr(at + 8);
        result.status = std::string(rest.substr(0, rest.find(',')));
      }
    }
    if (absl::StartsWith(line, ";; flags:")) {
      absl::string_view flags = line.substr(0, line.find(';', 3));
      result.truncated = absl::StrContains(flags, " tc");
    }
    if (line == ";; ANSWER SECTION:") {
      in_answers = true;
      continue;
    }
    if (in_answers && line.empty()) in_answers = false;
    if (in_answers) {
      std::vector<absl::string_view> fields =
          absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (!fields.empty()) result.answers.emplace_back(fields.back());
    }
  }
  return result;
}

bool WaitForDns(uint16_t port, absl::Duration timeout) {
  return WaitUntil([&] { return Dig(port, "ready.invalid", "A", {}, 1).answered; }, timeout,
                   absl::Milliseconds(50));
}

}  // namespace nehost::testing
