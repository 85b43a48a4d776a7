// dns_bench: nehost-filter's DNS data plane against dnsmasq, side by side in one run, with
// dnsperf from Debian as the load and dnsmasq as the upstream, all on 127.0.0.1.
//
//   forward  queries per second forwarded to the same upstream, both caches off, with each
//            query from a random port (as dnsmasq does) and with one socket per upstream
//   blocked  queries per second for names both answer NXDOMAIN themselves (nehost-filter from
//            an imported list, dnsmasq from --address=/name/)
//   load     a list of a million names: time from start to the first answer that blocks one,
//            and memory added, against the same program with an empty list
//   upgrade  queries dnsperf saw lost while nehostd upgrades a packaged nehost-filter under
//            its load
//
// Rounds alternate between the two servers so that the machine's noise falls on both.
// Everything lives in a temporary folder; every process is stopped at the end.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_support.h"
#include "common/files.h"
#include "common/unique_fd.h"
#include "extension/domain_rules.h"

namespace nehost::bench {
namespace {

using std::chrono::milliseconds;

constexpr char kHelp[] = R"(usage: dns_bench [--parts forward,blocked,load,upgrade] [--seconds N]
                 [--rounds N] [--names N] [--upgrades N]

Measures nehost-filter's DNS data plane against dnsmasq in one run, with dnsperf as the load
(see the top of bench/dns_bench.cc). --seconds is each dnsperf run (default 5), --rounds the
rounds per comparison (default 3), --names the size of the big list (default 1000000),
--upgrades the upgrades under load (default 5).
)";

struct Flags {
  std::vector<std::string> parts = {"forward", "blocked", "load", "upgrade"};
  int seconds = 5;
  int rounds = 3;
  int names = 1'000'000;
  int upgrades = 5;
};

bool Wants(const Flags& flags, const std::string& part) {
  return std::find(flags.parts.begin(), flags.parts.end(), part) != flags.parts.end();
}

// A port free for UDP and TCP on 127.0.0.1 a moment ago.
uint16_t FreePort() {
  for (;;) {
    UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(udp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    ::getsockname(udp.get(), reinterpret_cast<sockaddr*>(&address), &length);
    UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::bind(tcp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      return ntohs(address.sin_port);
    }
  }
}

std::vector<uint8_t> QueryPacket(const std::string& name, uint16_t id) {
  std::vector<uint8_t> packet = {
      static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    packet.push_back(static_cast<uint8_t>(label.size()));
    packet.insert(packet.end(), label.begin(), label.end());
  }
  packet.insert(packet.end(), {0, 0, 1, 0, 1});
  return packet;
}

// The rcode of the answer to one query, or -1 when none came within timeout.
int Ask(uint16_t port, const std::string& name, milliseconds timeout) {
  UniqueFd socket(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<uint8_t> query = QueryPacket(name, 0x4242);
  ::sendto(socket.get(), query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&to),
           sizeof to);
  pollfd readable{socket.get(), POLLIN, 0};
  if (::poll(&readable, 1, static_cast<int>(timeout.count())) != 1) return -1;
  uint8_t answer[4096];
  ssize_t got = ::recv(socket.get(), answer, sizeof answer, 0);
  return got >= 12 ? answer[3] & 0xf : -1;
}

// Waits until a query for name gets an answer with rcode; how long that took.
absl::StatusOr<milliseconds> WaitForAnswer(uint16_t port, const std::string& name, int rcode,
                                           const Child& process, milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  bool answered = WaitUntil(
      [&] { return process.Exited() || Ask(port, name, milliseconds(20)) == rcode; }, timeout);
  if (!answered || process.Exited()) {
    return absl::UnavailableError(absl::StrCat("no answer for ", name, " on port ", port));
  }
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
}

int64_t RssKb(pid_t pid) {
  absl::StatusOr<std::string> status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!status.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    int64_t kb = 0;
    absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(line, "kB")), &kb);
    return kb;
  }
  return -1;
}

struct Dnsperf {
  double qps = 0;
  int64_t sent = 0;
  int64_t lost = 0;
};

absl::StatusOr<Dnsperf> RunDnsperf(const std::string& dir, uint16_t port,
                                   const std::string& queries, int seconds) {
  std::string log = absl::StrCat(dir, "/dnsperf-", port, "-", WallNowNs(), ".log");
  absl::Status ran = RunToEnd({"/usr/bin/dnsperf", "-s", "127.0.0.1", "-p", std::to_string(port),
                               "-d", queries, "-l", std::to_string(seconds), "-t", "5"},
                              log);
  if (!ran.ok()) return ran;
  absl::StatusOr<std::string> output = ReadFile(log);
  if (!output.ok()) return output.status();

  Dnsperf result;
  for (absl::string_view line : absl::StrSplit(*output, '\n')) {
    line = absl::StripLeadingAsciiWhitespace(line);
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (absl::StartsWith(line, "Queries per second:")) absl::SimpleAtod(words.back(), &result.qps);
    if (absl::StartsWith(line, "Queries sent:")) absl::SimpleAtoi(words.back(), &result.sent);
    if (absl::StartsWith(line, "Queries lost:")) absl::SimpleAtoi(words[2], &result.lost);
  }
  return result;
}

absl::Status WriteLines(const std::string& path, int count,
                        const std::function<std::string(int)>& line) {
  std::ofstream out(path);
  for (int i = 0; i < count; ++i) out << line(i) << '\n';
  out.close();
  return out ? absl::OkStatus() : absl::InternalError("write " + path);
}

// A name as block lists hold them: about 30 characters, a few labels.
std::string ListName(int i) { return absl::StrCat("ads", i, ".tracker", i % 5000, ".example.com"); }

class Bench {
 public:
  Bench(Flags flags, std::string dir) : flags_(std::move(flags)), dir_(std::move(dir)) {}

  absl::Status Run() {
    if (absl::Status upstream = StartUpstream(); !upstream.ok()) return upstream;
    if (Wants(flags_, "forward")) {
      if (absl::Status done = Forward(); !done.ok()) return done;
    }
    if (Wants(flags_, "blocked")) {
      if (absl::Status done = Blocked(); !done.ok()) return done;
    }
    if (Wants(flags_, "load")) {
      if (absl::Status done = Load(); !done.ok()) return done;
    }
    if (Wants(flags_, "upgrade")) {
      if (absl::Status done = Upgrade(); !done.ok()) return done;
    }
    return absl::OkStatus();
  }

 private:
  // dnsmasq, authoritative for bench.example: what both servers forward to.
  absl::Status StartUpstream() {
    upstream_port_ = FreePort();
    absl::StatusOr<Child> upstream =
        StartDnsmasq("upstream", upstream_port_, {"--address=/bench.example/192.0.2.1"});
    if (!upstream.ok()) return upstream.status();
    upstream_ = *std::move(upstream);
    return absl::OkStatus();
  }

  // dnsmasq in the foreground on 127.0.0.1:port, logging to stderr, with nothing from the
  // machine's own resolv.conf or hosts file.
  static std::vector<std::string> DnsmasqArgv(uint16_t port) {
    return {"/usr/sbin/dnsmasq",
            "-d",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            absl::StrCat("--port=", port),
            "--log-facility=-"};
  }

  // Starts dnsmasq and waits until a query for probe gets rcode.
  absl::StatusOr<Child> StartDnsmasq(const std::string& name, uint16_t port,
                                     std::vector<std::string> extra,
                                     const std::string& probe = "up.bench.example", int rcode = 0) {
    std::vector<std::string> argv = DnsmasqArgv(port);
    argv.insert(argv.end(), extra.begin(), extra.end());
    absl::StatusOr<Child> child = Spawn(argv, absl::StrCat(dir_, "/", name, ".log"));
    if (!child.ok()) return child;
    absl::StatusOr<milliseconds> up =
        WaitForAnswer(port, probe, rcode, *child, milliseconds(60000));
    if (!up.ok()) return absl::Status(up.status().code(), LogTail(dir_ + "/" + name + ".log"));
    return child;
  }

  // nehost-filter with its own state folder; rules.json and list files written beforehand.
  absl::StatusOr<Child> StartFilter(const std::string& name, uint16_t port,
                                    const std::string& state_dir, std::vector<std::string> extra) {
    std::vector<std::string> argv = {NEHOST_FILTER_PATH,
                                     "--listen",
                                     dir_ + "/" + name + ".sock",
                                     "--state-dir",
                                     state_dir,
                                     "--dns-listen",
                                     absl::StrCat("127.0.0.1:", port),
                                     "--upstream",
                                     absl::StrCat("127.0.0.1:", upstream_port_)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::filesystem::remove(dir_ + "/" + name + ".sock");
    return Spawn(argv, absl::StrCat(dir_, "/", name, ".log"));
  }

  // A state folder whose rules hold one imported list of names, as nehost-filter writes it.
  absl::StatusOr<std::string> ListState(const std::string& name, int count,
                                        const std::function<std::string(int)>& names) {
    std::string state = absl::StrCat(dir_, "/state-", name);
    if (absl::Status made = MakeDirs(state + "/lists"); !made.ok()) return made;
    if (absl::Status written = WriteLines(state + "/lists/bench.0.list", count, names);
        !written.ok()) {
      return written;
    }
    std::string rules = absl::StrCat(
        R"({"schema_version": 2, "lists": [{"name": "bench", "action": "DENY", )",
        R"("response": "NXDOMAIN", "count": ")", count, R"(", "file": "lists/bench.0.list"}]})");
    if (count == 0) rules = R"({"schema_version": 2})";
    if (absl::Status written = WriteFileAtomically(state + "/rules.json", rules); !written.ok()) {
      return written;
    }
    return state;
  }

  // Runs dnsperf against each server in turn, rounds times, and prints the comparison.
  absl::Status Compare(const std::string& title, uint16_t nehost_port, uint16_t dnsmasq_port,
                       const std::string& queries) {
    std::printf("\n%s (%d rounds of %d s, dnsperf -d %s)\n", title.c_str(), flags_.rounds,
                flags_.seconds, queries.c_str());
    std::printf("%-6s %14s %14s %8s %12s\n", "round", "nehost_qps", "dnsmasq_qps", "ratio",
                "lost(n/d)");
    std::vector<double> ratios;
    for (int round = 1; round <= flags_.rounds; ++round) {
      absl::StatusOr<Dnsperf> nehost = RunDnsperf(dir_, nehost_port, queries, flags_.seconds);
      if (!nehost.ok()) return nehost.status();
      absl::StatusOr<Dnsperf> dnsmasq = RunDnsperf(dir_, dnsmasq_port, queries, flags_.seconds);
      if (!dnsmasq.ok()) return dnsmasq.status();
      double ratio = dnsmasq->qps > 0 ? nehost->qps / dnsmasq->qps : 0;
      ratios.push_back(ratio);
      std::printf("%-6d %14.0f %14.0f %7.2fx %5lld/%lld\n", round, nehost->qps, dnsmasq->qps, ratio,
                  static_cast<long long>(nehost->lost), static_cast<long long>(dnsmasq->lost));
    }
    std::printf("median ratio %.2fx (goal >= 1.0x)\n", Median(ratios));
    return absl::OkStatus();
  }

  absl::Status Forward() {
    std::string queries = dir_ + "/forward.queries";
    absl::Status written =
        WriteLines(queries, 100000, [](int i) { return absl::StrCat("q", i, ".bench.example A"); });
    if (!written.ok()) return written;

    uint16_t nehost_port = FreePort();
    absl::StatusOr<std::string> state = ListState("forward", 0, nullptr);
    if (!state.ok()) return state.status();
    absl::StatusOr<Child> nehost =
        StartFilter("filter-forward", nehost_port, *state, {"--cache-entries", "0"});
    if (!nehost.ok()) return nehost.status();
    absl::StatusOr<milliseconds> up =
        WaitForAnswer(nehost_port, "up.bench.example", 0, *nehost, milliseconds(30000));
    if (!up.ok()) return up.status();

    uint16_t shared_port = FreePort();
    absl::StatusOr<Child> shared =
        StartFilter("filter-shared", shared_port, *state,
                    {"--cache-entries", "0", "--upstream-ports", "shared"});
    if (!shared.ok()) return shared.status();
    up = WaitForAnswer(shared_port, "up.bench.example", 0, *shared, milliseconds(30000));
    if (!up.ok()) return up.status();

    uint16_t dnsmasq_port = FreePort();
    absl::StatusOr<Child> dnsmasq =
        StartDnsmasq("dnsmasq-forward", dnsmasq_port,
                     {absl::StrCat("--server=127.0.0.1#", upstream_port_), "--cache-size=0"});
    if (!dnsmasq.ok()) return dnsmasq.status();
    absl::Status compared = Compare(
        "forwarded queries, caches off, same upstream; each query from a random port (default)",
        nehost_port, dnsmasq_port, queries);
    if (!compared.ok()) return compared;
    return Compare("the same with --upstream-ports shared (one socket per upstream)", shared_port,
                   dnsmasq_port, queries);
  }

  absl::Status Blocked() {
    constexpr int kBlocked = 1000;
    std::string queries = dir_ + "/blocked.queries";
    absl::Status written = WriteLines(queries, kBlocked, [](int i) { return ListName(i) + " A"; });
    if (!written.ok()) return written;

    uint16_t nehost_port = FreePort();
    absl::StatusOr<std::string> state = ListState("blocked", kBlocked, ListName);
    if (!state.ok()) return state.status();
    absl::StatusOr<Child> nehost = StartFilter("filter-blocked", nehost_port, *state, {});
    if (!nehost.ok()) return nehost.status();
    absl::StatusOr<milliseconds> up =
        WaitForAnswer(nehost_port, ListName(0), 3, *nehost, milliseconds(30000));
    if (!up.ok()) return up.status();

    std::string conf = dir_ + "/blocked.conf";
    written = WriteLines(conf, kBlocked,
                         [](int i) { return absl::StrCat("address=/", ListName(i), "/"); });
    if (!written.ok()) return written;
    uint16_t dnsmasq_port = FreePort();
    absl::StatusOr<Child> dnsmasq =
        StartDnsmasq("dnsmasq-blocked", dnsmasq_port, {"--conf-file=" + conf}, ListName(0), 3);
    if (!dnsmasq.ok()) return dnsmasq.status();
    return Compare("blocked names answered NXDOMAIN by the server itself", nehost_port,
                   dnsmasq_port, queries);
  }

  struct LoadFigures {
    milliseconds time{0};
    int64_t rss_kb = 0;
  };

  // Starts a server, waits until probe gets rcode, and reads its memory; then stops it.
  absl::StatusOr<LoadFigures> Measure(const std::function<absl::StatusOr<Child>(uint16_t)>& start,
                                      const std::string& probe, int rcode) {
    uint16_t port = FreePort();
    absl::StatusOr<Child> child = start(port);
    if (!child.ok()) return child.status();
    absl::StatusOr<milliseconds> ready =
        WaitForAnswer(port, probe, rcode, *child, milliseconds(600000));
    if (!ready.ok()) return ready.status();
    LoadFigures figures{*ready, RssKb(child->pid())};
    child->Stop();
    return figures;
  }

  absl::Status Load() {
    std::printf("\na list of %d names (\"%s\" and so on)\n", flags_.names, ListName(0).c_str());
    absl::StatusOr<std::string> empty = ListState("empty", 0, nullptr);
    absl::StatusOr<std::string> big = ListState("big", flags_.names, ListName);
    if (!empty.ok() || !big.ok()) return empty.ok() ? big.status() : empty.status();

    // In-process, the list alone: read and index its file.
    auto read_start = std::chrono::steady_clock::now();
    absl::StatusOr<std::shared_ptr<const filter::DomainList>> list =
        filter::DomainList::Load(*big + "/lists/bench.0.list");
    if (!list.ok()) return list.status();
    size_t file_bytes = (*list)->contents().size();
    auto read_ms =
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - read_start);
    std::printf("in process: read and index %zu bytes in %lld ms; the list takes %.1f MB\n",
                file_bytes, static_cast<long long>(read_ms.count()),
                (*list)->MemoryBytes() / 1048576.0);
    list->reset();

    std::string hosts = dir_ + "/big.hosts";
    absl::Status written = WriteLines(hosts, flags_.names,
                                      [](int i) { return absl::StrCat("0.0.0.0 ", ListName(i)); });
    std::string empty_hosts = dir_ + "/empty.hosts";
    if (written.ok()) written = WriteLines(empty_hosts, 0, nullptr);
    if (!written.ok()) return written;

    std::string last = ListName(flags_.names - 1);
    auto filter = [&](const std::string& state) {
      return [&, state](uint16_t port) { return StartFilter("filter-load", port, state, {}); };
    };
    auto dnsmasq = [&](const std::string& file) {
      return [&, file](uint16_t port) {
        std::vector<std::string> argv = DnsmasqArgv(port);
        argv.push_back("--addn-hosts=" + file);
        return Spawn(argv, dir_ + "/dnsmasq-load.log");
      };
    };

    std::printf("%-14s %14s %14s %16s %16s\n", "server", "start_empty_ms", "start_list_ms",
                "rss_empty_mb", "rss_added_mb");
    for (int round = 1; round <= flags_.rounds; ++round) {
      absl::StatusOr<LoadFigures> n_empty = Measure(filter(*empty), "up.bench.example", 0);
      absl::StatusOr<LoadFigures> n_big = Measure(filter(*big), last, 3);
      absl::StatusOr<LoadFigures> d_empty = Measure(dnsmasq(empty_hosts), "up.bench.example", 5);
      absl::StatusOr<LoadFigures> d_big = Measure(dnsmasq(hosts), last, 0);
      for (const auto* figures : {&n_empty, &n_big, &d_empty, &d_big}) {
        if (!figures->ok()) return figures->status();
      }
      auto row = [](const char* name, const LoadFigures& empty, const LoadFigures& big) {
        std::printf("%-14s %14lld %14lld %16.1f %16.1f\n", name,
                    static_cast<long long>(empty.time.count()),
                    static_cast<long long>(big.time.count()), empty.rss_kb / 1024.0,
                    (big.rss_kb - empty.rss_kb) / 1024.0);
      };
      row("nehost-filter", *n_empty, *n_big);
      row("dnsmasq", *d_empty, *d_big);
    }
    std::printf(
        "goals for nehost-filter: list loaded within 1 s of an empty start, at most 64 MB "
        "added\n");
    return absl::OkStatus();
  }

  absl::Status Upgrade() {
    std::string prefix = dir_ + "/opt";
    Host host(NEHOSTD_PATH, dir_ + "/host");
    if (absl::Status made = host.MakeFolders(); !made.ok()) return made;
    if (absl::Status installed = InstallSignedFilterPackages(
            {NEHOST_PKG_PATH, NEHOST_FILTER_V1, NEHOST_FILTER_V2}, dir_, prefix, host.config_dir());
        !installed.ok()) {
      return installed;
    }
    uint16_t port = FreePort();
    std::string address = absl::StrCat("127.0.0.1:", port);
    std::string folder = host.config_dir() + "/services.d";
    if (absl::Status made = MakeDirs(folder); !made.ok()) return made;
    absl::Status written = WriteFileAtomically(
        absl::StrCat(folder, "/", kFilterName, ".textproto"),
        absl::StrCat("name: \"", kFilterName, "\"\nexecutable: \"bin/nehost-filter\"\n",
                     "package_prefix: \"", prefix, "\"\nargs: \"--upstream\"\nargs: \"127.0.0.1:",
                     upstream_port_, "\"\nlisteners { name: \"dns-udp\" udp: \"", address,
                     "\" }\nlisteners { name: \"dns-tcp\" tcp: \"", address, "\" }\n"));
    if (!written.ok()) return written;
    if (absl::Status started = host.Start(); !started.ok()) return started;
    if (absl::StatusOr<supervisor::v1::Registration> found = host.Lookup(kFilterName);
        !found.ok()) {
      return found.status();
    }

    std::string queries = dir_ + "/upgrade.queries";
    written =
        WriteLines(queries, 100000, [](int i) { return absl::StrCat("q", i, ".bench.example A"); });
    if (!written.ok()) return written;

    int seconds = 2 + 2 * flags_.upgrades;
    std::printf("\nupgrades under load: %d upgrades during %d s of dnsperf\n", flags_.upgrades,
                seconds);
    absl::StatusOr<Dnsperf> load;
    std::thread loader([&] { load = RunDnsperf(dir_, port, queries, seconds); });
    int failed = 0;
    for (int i = 0; i < flags_.upgrades; ++i) {
      std::this_thread::sleep_for(milliseconds(2000));
      absl::Status upgraded =
          RunToEnd({NEHOSTCTL_PATH, "--runtime-dir", host.runtime_dir(), "upgrade", kFilterName,
                    "--to", i % 2 == 0 ? "2.0.0" : "1.0.0"},
                   dir_ + "/upgrades.log");
      if (!upgraded.ok()) ++failed;
    }
    loader.join();
    host.Stop();
    if (!load.ok()) return load.status();
    std::printf("upgrades failed: %d of %d\n", failed, flags_.upgrades);
    std::printf("queries sent %lld, lost %lld (goal 0), %.0f per second\n",
                static_cast<long long>(load->sent), static_cast<long long>(load->lost), load->qps);
    return absl::OkStatus();
  }

  const Flags flags_;
  const std::string dir_;
  uint16_t upstream_port_ = 0;
  Child upstream_;
};

std::optional<int> ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help") {
      std::cout << kHelp;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "dns_bench: " << flag << " needs a value\n" << kHelp;
      return 2;
    }
    std::string value = argv[++i];
    bool ok = true;
    if (flag == "--parts") {
      flags->parts = absl::StrSplit(value, ',');
    } else if (flag == "--seconds") {
      ok = absl::SimpleAtoi(value, &flags->seconds) && flags->seconds > 0;
    } else if (flag == "--rounds") {
      ok = absl::SimpleAtoi(value, &flags->rounds) && flags->rounds > 0;
    } else if (flag == "--names") {
      ok = absl::SimpleAtoi(value, &flags->names) && flags->names > 0;
    } else if (flag == "--upgrades") {
      ok = absl::SimpleAtoi(value, &flags->upgrades) && flags->upgrades > 0;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "dns_bench: bad flag " << flag << " " << value << "\n" << kHelp;
      return 2;
    }
  }
  return std::nullopt;
}

int Main(int argc, char** argv) {
  Flags flags;
  if (std::optional<int> exit_code = ParseFlags(argc, argv, &flags)) return *exit_code;
  InstallInterruptHandler();
  BecomeSubreaper();

  absl::StatusOr<std::string> dir = MakeTempDir("dns-bench");
  if (!dir.ok()) {
    std::cerr << "dns_bench: " << dir.status().message() << "\n";
    return 1;
  }
  absl::Status ran = Bench(flags, *dir).Run();
  if (!ran.ok()) {
    std::cerr << "dns_bench: " << ran.message() << " (files in " << *dir << ")\n";
    return 1;
  }
  std::filesystem::remove_all(*dir);
  return 0;
}

}  // namespace
}  // namespace nehost::bench

int main(int argc, char** argv) { return nehost::bench::Main(argc, argv); }
