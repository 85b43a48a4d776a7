// nehost-filter: the extension nehost ships. It serves nehost.filter.v1 on a Unix socket that
// it inherits (nehostd, systemd socket activation) or binds itself, and runs until SIGTERM,
// SIGINT, or a drain on its control channel to nehostd.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>

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
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/abseil.h"
#include "common/access_policy.h"
#include "common/failpoint.h"
#include "common/files.h"
#include "common/listen_fds.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "common/version.h"
#include "extension/checkpoint.h"
#include "extension/control_server.h"
#include "extension/counters.h"
#include "extension/decisions.h"
#include "extension/dns_counters.h"
#include "extension/dns_server.h"
#include "extension/flow_rules.h"
#include "extension/generation.h"
#include "extension/notify.h"
#include "extension/query_decisions.h"
#include "extension/rule_store.h"
#include "extension/upstream.h"
#include "spdlog/spdlog.h"

namespace nehost::filter {
namespace {

namespace po = boost::program_options;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Calls in flight get this long to finish after a stop signal; then they are cancelled.
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);

constexpr char kGrpcSocketName[] = "grpc";

constexpr char kHelp[] =
    R"(usage: nehost-filter [--listen PATH] [--state-dir DIR] [--admin-group GROUP]
                     [--reader-group GROUP] [--dns-listen ADDR:PORT]... [--upstream ADDR[:PORT]]...
                     [--resolv-conf PATH] [--upstream-timeout-ms N] [--upstream-ports MODE]
                     [--cache-entries N] [--dns-threads N] [-v]

Serves nehost.filter.v1 (status, domain rules and lists; flow verdicts, flow rules and the
stream of decisions; counters), grpc.health.v1 and server reflection over gRPC on a Unix
socket, and DNS over UDP and TCP, until SIGTERM, SIGINT, or a drain from nehostd.

DNS: it answers names that a rule or list denies itself (NXDOMAIN, or 0.0.0.0 and :: for a
sinkhole rule), answers repeated questions from a cache that honours TTLs, and forwards the
rest to the upstreams in order, each query under a random id from a random port, failing over
to the next on a timeout, SERVFAIL or REFUSED, and asking again over TCP when an answer is
truncated. Without --upstream it forwards to the nameservers of /etc/resolv.conf
(--resolv-conf). When socket-activated it serves the inherited sockets whose LISTEN_FDNAMES
name starts with "dns" (UDP or TCP, whichever each is) and ignores --dns-listen; otherwise it
binds UDP and TCP on each --dns-listen address itself. With neither, it serves no DNS.

Socket: when LISTEN_PID is this process's pid and LISTEN_FDS is set, as nehostd and systemd
socket activation set them, it serves the inherited socket that LISTEN_FDNAMES names "grpc",
or the only inherited socket whatever its name, and ignores --listen. Otherwise it binds
--listen PATH itself, with mode 0660.

Readiness: when NOTIFY_SOCKET is set it sends READY=1 once it serves, and STOPPING=1 on
SIGTERM or SIGINT; it then lets calls in flight finish (for up to 5 s) and exits 0.

Control: when NEHOST_CONTROL_SOCKET=PATH is set, as nehostd sets it, it listens on PATH
(mode 0600) before READY=1 and answers nehostd's health, take_listeners, drain and
import_state requests there. After a drain it exits 0.

Access: uid 0 and this process's own uid may call anything; members of the admin group may
also change rules, members of the reader group may read status, rules and counters, evaluate
flows and watch decisions; anyone else gets PERMISSION_DENIED. nehostd passes its own
groups in NEHOST_ADMIN_GROUP and NEHOST_READER_GROUP. A socket it binds itself gets the reader group (else the admin group).

State: the domain rules live in DIR/rules.json, the names of imported lists in DIR/lists/
and the flow rules in DIR/flow_rules.json; DIR must exist, and a rule file that does not load
stops the start, the file untouched. A rules.json of schema 1 is migrated to schema 2 at
start. The counters are checkpointed to DIR/counters.json every 2 s and at stop, and loaded at
start; one that does not load is moved to counters.json.bad and counting starts from zero.
Status reports NEHOST_GENERATION and NEHOST_SERVICE, which nehostd sets, and the calls served
since the service first started.

Counters: Status reports the DNS counters as "dns." entries: queries, blocked, forwarded,
cached, failed, dropped_malformed, upstream_bad_answers, upstream_timeouts, tcp_retries,
truncated_to_client, not_implemented, hits.RULE, and upstream_latency_us.le_BOUND. Stats
reports every counter and histogram by its own name ("dns/queries", "flows/evaluated",
"rule_hits/dns/RULE", "dns/upstream_latency_us").

Tests: NEHOST_FAILPOINTS arms filter.start, filter.before_ready and
filter.drain.before_reply. A build whose version ends in "-bad" exits 1 at start.

Exit status: 0 after a stop signal or a drain, 1 on a runtime failure, 2 on a usage error.

)";

struct Flags {
  std::string listen_path;
  std::string state_dir;
  std::string admin_group;
  std::string reader_group;
  std::vector<std::string> dns_listen;
  std::vector<std::string> upstreams;
  std::string resolv_conf = "/etc/resolv.conf";
  uint32_t upstream_timeout_ms = 1500;
  uint32_t cache_entries = 10000;
  uint32_t dns_threads = 1;
  std::string upstream_ports = "random";
  bool verbose = false;
};

constexpr char kDnsSocketPrefix[] = "dns";

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
       "folder of rules.json (default: $STATE_DIRECTORY)")  //
      ("admin-group", po::value(&flags->admin_group)->value_name("GROUP"),
       "group that may change rules (default: $NEHOST_ADMIN_GROUP)")  //
      ("reader-group", po::value(&flags->reader_group)->value_name("GROUP"),
       "group that may read status and rules (default: $NEHOST_READER_GROUP)")  //
      ("dns-listen", po::value(&flags->dns_listen)->value_name("ADDR:PORT"),
       "serve DNS on UDP and TCP here when not socket-activated; repeatable")  //
      ("upstream", po::value(&flags->upstreams)->value_name("ADDR[:PORT]"),
       "forward to this DNS server, in order of preference; repeatable")  //
      ("resolv-conf", po::value(&flags->resolv_conf)->value_name("PATH"),
       "where the upstreams are when --upstream is not given (default /etc/resolv.conf)")  //
      ("upstream-timeout-ms", po::value(&flags->upstream_timeout_ms)->value_name("N"),
       "how long one upstream may take before the next is tried (default 1500)")  //
      ("cache-entries", po::value(&flags->cache_entries)->value_name("N"),
       "answers cached per DNS thread; 0 disables the cache (default 10000)")  //
      ("upstream-ports", po::value(&flags->upstream_ports)->value_name("random|shared"),
       "each forwarded query from a port of its own (default), or all from one socket per "
       "upstream: faster, but the 16-bit id is then all an off-path attacker must guess")  //
      ("dns-threads", po::value(&flags->dns_threads)->value_name("N"),
       "DNS threads, each an epoll loop over the same sockets (default 1)")      //
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
  if (flags->upstream_timeout_ms == 0) return UsageError("--upstream-timeout-ms must be above 0");
  for (const std::string& upstream : flags->upstreams) {
    absl::StatusOr<InetAddress> address = ParseInetAddress(upstream, 53);
    if (!address.ok()) return UsageError(absl::StrCat("--upstream: ", address.status().message()));
  }
  for (const std::string& listen : flags->dns_listen) {
    // Without a port, the parser leaves it 0.
    absl::StatusOr<InetAddress> address = ParseInetAddress(listen, 0);
    if (!address.ok() || reinterpret_cast<const sockaddr_in*>(&address->address)->sin_port == 0) {
      return UsageError(absl::StrCat("--dns-listen ", listen, ": not ADDRESS:PORT"));
    }
  }
  if (flags->upstream_ports != "random" && flags->upstream_ports != "shared") {
    return UsageError("--upstream-ports must be random or shared");
  }
  if (flags->dns_threads == 0 || flags->dns_threads > 64) {
    return UsageError("--dns-threads must be from 1 to 64");
  }
  return ResolveStateDir(flags);
}

// Blocked in every thread, gRPC's included, so that only StopWaiter receives them.
// Must run before the first thread starts: threads inherit the mask when they are created.
sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Waits for whichever ends the run first: a stop signal, or a drain on the control channel.
class StopWaiter {
 public:
  static absl::StatusOr<StopWaiter> Create(const sigset_t& signals) {
    StopWaiter waiter;
    waiter.signals_.Reset(::signalfd(-1, &signals, SFD_CLOEXEC));
    if (!waiter.signals_) return ErrnoStatus(errno, "create", "signalfd for stop signals");
    waiter.drained_.Reset(::eventfd(0, EFD_CLOEXEC));
    if (!waiter.drained_) return ErrnoStatus(errno, "create", "eventfd for drain");
    return waiter;
  }

  // Thread safe.
  void NotifyDrained() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t written = ::write(drained_.get(), &one, sizeof one);
  }

  // The signal that arrived, or 0 after a drain.
  int Wait() {
    pollfd polled[2] = {{signals_.get(), POLLIN, 0}, {drained_.get(), POLLIN, 0}};
    // Only EINTR fails a poll of two valid descriptors with no timeout.
    while (::poll(polled, 2, -1) <= 0) {
    }
    if (polled[1].revents != 0) return 0;

    // The signalfd was readable, so a short read cannot happen; stop as asked all the same.
    signalfd_siginfo info{};
    if (::read(signals_.get(), &info, sizeof info) != sizeof info) return SIGTERM;
    return static_cast<int>(info.ssi_signo);
  }

 private:
  UniqueFd signals_;
  UniqueFd drained_;
};

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

// The flags' groups, else the ones nehostd passes down.
absl::StatusOr<AccessPolicy> AccessFromFlags(const Flags& flags) {
  auto group = [](const std::string& flag, const char* variable) {
    const char* inherited = std::getenv(variable);
    return !flag.empty() || inherited == nullptr ? flag : std::string(inherited);
  };
  absl::StatusOr<AccessPolicy> access =
      AccessPolicy::Create(group(flags.admin_group, "NEHOST_ADMIN_GROUP"),
                           group(flags.reader_group, "NEHOST_READER_GROUP"));
  if (!access.ok()) {
    return absl::Status(access.status().code(),
                        absl::StrCat("access policy: ", access.status().message()));
  }
  return access;
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

absl::StatusOr<Listener> ChooseListener(const Flags& flags, const AccessPolicy& access,
                                        const std::vector<InheritedSocket>& inherited) {
  if (!inherited.empty()) {
    if (!flags.listen_path.empty()) {
      spdlog::info("ignoring --listen path={}: socket-activated", flags.listen_path);
    }
    return InheritedListener(inherited);
  }

  absl::StatusOr<UniqueFd> bound =
      ListenUnix(flags.listen_path, 0660, access.socket_group().value_or(kKeepGroup));
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

// Listens where nehostd asked for the control channel; nullptr when it did not ask.
absl::StatusOr<std::unique_ptr<ControlServer>> StartControlServer(Generation* generation) {
  const char* path = std::getenv("NEHOST_CONTROL_SOCKET");
  if (path == nullptr || *path == '\0') return nullptr;
  return ControlServer::Listen(path, generation);
}

// The DNS sockets: inherited ones named "dns...", or bound on each --dns-listen address.
struct DnsSockets {
  std::vector<int> udp;
  std::vector<int> tcp;
  // Those nehost-filter bound itself.
  std::vector<UniqueFd> owned;
};

absl::StatusOr<DnsSockets> ChooseDnsSockets(const Flags& flags,
                                            const std::vector<InheritedSocket>& inherited) {
  DnsSockets sockets;
  if (!inherited.empty()) {
    if (!flags.dns_listen.empty()) spdlog::info("ignoring --dns-listen: socket-activated");
    for (const InheritedSocket& socket : inherited) {
      if (!absl::StartsWith(socket.name, kDnsSocketPrefix)) continue;
      int type = 0;
      socklen_t length = sizeof type;
      if (::getsockopt(socket.fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
        return ErrnoStatus(errno, "read the type of inherited socket", socket.name);
      }
      (type == SOCK_DGRAM ? sockets.udp : sockets.tcp).push_back(socket.fd);
    }
    return sockets;
  }

  for (const std::string& address : flags.dns_listen) {
    absl::StatusOr<UniqueFd> udp = BindInet(address, InetProtocol::kUdp);
    if (!udp.ok()) return udp.status();
    absl::StatusOr<UniqueFd> tcp = BindInet(address, InetProtocol::kTcp);
    if (!tcp.ok()) return tcp.status();
    sockets.udp.push_back(udp->get());
    sockets.tcp.push_back(tcp->get());
    sockets.owned.push_back(*std::move(udp));
    sockets.owned.push_back(*std::move(tcp));
  }
  return sockets;
}

absl::StatusOr<std::vector<InetAddress>> ChooseUpstreams(const Flags& flags) {
  std::vector<InetAddress> upstreams;
  for (const std::string& text : flags.upstreams) {
    absl::StatusOr<InetAddress> upstream = ParseInetAddress(text, 53);
    if (!upstream.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--upstream: ", upstream.status().message()));
    }
    upstreams.push_back(*std::move(upstream));
  }
  if (!upstreams.empty()) return upstreams;

  absl::StatusOr<std::vector<InetAddress>> from_file = UpstreamsFromResolvConf(flags.resolv_conf);
  if (!from_file.ok()) {
    return absl::Status(from_file.status().code(),
                        absl::StrCat("read upstreams: ", from_file.status().message()));
  }
  if (from_file->empty()) {
    spdlog::warn("no nameserver in path={}; every forwarded query will get SERVFAIL",
                 flags.resolv_conf);
  }
  return from_file;
}

std::string AddressList(const std::vector<InetAddress>& addresses) {
  return absl::StrJoin(addresses, ",", [](std::string* out, const InetAddress& address) {
    out->append(address.text);
  });
}

// Each query forwarded takes a socket of its own while it waits for its upstream: the soft
// limit of 1024 descriptors would send some of them through the shared socket under load.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) {
    spdlog::debug("raised descriptor limit from={} to={}", before, limit.rlim_cur);
  }
}

// The DNS data plane, or nullptr when there is no DNS socket to serve.
absl::StatusOr<std::unique_ptr<DnsServer>> StartDns(const Flags& flags, const DnsSockets& sockets,
                                                    const RuleStore* store, DnsCounters* counters,
                                                    DecisionHub* decisions) {
  if (sockets.udp.empty() && sockets.tcp.empty()) {
    spdlog::info("serving no dns: no dns socket inherited and no --dns-listen");
    return nullptr;
  }
  absl::StatusOr<std::vector<InetAddress>> upstreams = ChooseUpstreams(flags);
  if (!upstreams.ok()) return upstreams.status();
  RaiseDescriptorLimit();

  DnsServer::Options options;
  options.udp_listeners = sockets.udp;
  options.tcp_listeners = sockets.tcp;
  options.forwarding.upstreams = *upstreams;
  options.forwarding.timeout = std::chrono::milliseconds(flags.upstream_timeout_ms);
  options.forwarding.random_ports = flags.upstream_ports == "random";
  options.cache_entries = flags.cache_entries;
  options.threads = static_cast<int>(flags.dns_threads);
  options.on_query = PublishQueriesTo(decisions);
  absl::StatusOr<std::unique_ptr<DnsServer>> server =
      DnsServer::Start(std::move(options), store, counters);
  if (!server.ok()) return server.status();

  spdlog::info("serving dns udp_sockets={} tcp_sockets={} upstreams={} threads={}",
               sockets.udp.size(), sockets.tcp.size(), AddressList(*upstreams), flags.dns_threads);
  return server;
}

// Once the server has stopped serving, nothing is left that the process must finish: its
// connections are closed, its rules are on disk, its counters handed over. gRPC's orderly
// teardown of its thread pools takes tens of milliseconds, during which an upgrade waits
// for this process to be gone, so it exits at once instead.
[[noreturn]] void ExitNow(int code) {
  spdlog::default_logger()->flush();
  std::_Exit(code);
}

// After a drain, the control channel has already stopped the server and handed over.
int ExitAfterDrain(std::unique_ptr<ControlServer> control, uint64_t generation) {
  control.reset();
  spdlog::info("exiting after drain generation={}", generation);
  ExitNow(0);
}

int StopAfterSignal(int signal, std::unique_ptr<ControlServer> control, Generation* generation) {
  spdlog::info("stopping signal={} grace_ms={}", absl::AsciiStrToLower(sigabbrev_np(signal)),
               absl::ToInt64Milliseconds(kShutdownGrace));
  Notify("STOPPING=1");

  // First the control channel, so that no drain starts while the server stops; one already
  // under way is finished and answered.
  control.reset();
  generation->Stop(kShutdownGrace);
  spdlog::info("stopped");
  ExitNow(0);
}

int Serve(const Flags& flags, const Listener& listener,
          const std::vector<InheritedSocket>& inherited, FilterState state, InstanceInfo instance,
          AccessPolicy access, const sigset_t& stop_signals) {
  absl::StatusOr<StopWaiter> waiter = StopWaiter::Create(stop_signals);
  if (!waiter.ok()) return RuntimeFailure(waiter.status());

  absl::StatusOr<DnsSockets> dns_sockets = ChooseDnsSockets(flags, inherited);
  if (!dns_sockets.ok()) return RuntimeFailure(dns_sockets.status());
  // Made only with a data plane to count, so that Stats lists no DNS counters without one.
  std::optional<DnsCounters> dns_counters;
  if (!dns_sockets->udp.empty() || !dns_sockets->tcp.empty()) dns_counters.emplace(state.counters);
  absl::StatusOr<std::unique_ptr<DnsServer>> dns = StartDns(
      flags, *dns_sockets, state.rules, dns_counters ? &*dns_counters : nullptr, state.decisions);
  if (!dns.ok()) return RuntimeFailure(dns.status());

  uint64_t number = instance.generation;
  const size_t rule_count = state.rules->size();
  const size_t flow_rule_count = state.flow_rules->size();
  Generation::Options options;
  options.instance = std::move(instance);
  options.serving_fd = listener.fd;
  options.inherited = inherited;
  options.on_drained = [&] { waiter->NotifyDrained(); };
  options.access = std::move(access);
  // Without a data plane there is nothing to count, and Status shows no DNS counters.
  options.dns_counters = *dns != nullptr ? &*dns_counters : nullptr;
  if (*dns != nullptr) {
    options.drain_data_plane = [&](absl::Duration grace) { (*dns)->Drain(grace); };
  }
  absl::StatusOr<std::unique_ptr<Generation>> generation =
      Generation::Start(std::move(state), std::move(options));
  if (!generation.ok()) return RuntimeFailure(generation.status());
  spdlog::info("serving socket={} activated={} generation={} version={}", SocketPathOf(listener.fd),
               listener.activated, number, kVersion);

  absl::StatusOr<std::unique_ptr<ControlServer>> control = StartControlServer(generation->get());
  if (!control.ok()) return RuntimeFailure(control.status());
  if (Failpoint("filter.before_ready")) {
    return RuntimeFailure(absl::InternalError("start: failed at failpoint filter.before_ready"));
  }
  Notify(absl::StrCat("READY=1\nSTATUS=serving version=", kVersion, " rules=", rule_count,
                      " flow_rules=", flow_rule_count));

  int signal = waiter->Wait();
  if (signal == 0) return ExitAfterDrain(*std::move(control), number);
  return StopAfterSignal(signal, *std::move(control), generation->get());
}

// The upgrade tests build a copy of this program whose version ends in "-bad": a release
// that never becomes ready, built from the same sources.
bool IsStampedBad() { return absl::EndsWith(kVersion, "-bad"); }

int Run(const Flags& flags, const sigset_t& stop_signals) {
  absl::StatusOr<std::vector<InheritedSocket>> inherited = TakeListenFds();
  if (!inherited.ok()) return RuntimeFailure(inherited.status());
  if (inherited->empty() && flags.listen_path.empty()) {
    return UsageError("no socket to serve: pass --listen PATH or start socket-activated");
  }

  absl::StatusOr<InstanceInfo> instance = InstanceFromEnvironment();
  if (!instance.ok()) return RuntimeFailure(instance.status());
  absl::StatusOr<std::unique_ptr<RuleStore>> store = RuleStore::Open(flags.state_dir);
  if (!store.ok()) return RuntimeFailure(store.status());
  // Counters first, so that the rules count their hits into what the checkpoint held.
  CounterSet counters;
  HandoffState checkpointed = LoadCheckpoint(flags.state_dir, &counters);
  absl::StatusOr<std::unique_ptr<FlowRuleStore>> flow_rules =
      FlowRuleStore::Open(flags.state_dir, &counters);
  if (!flow_rules.ok()) return RuntimeFailure(flow_rules.status());

  absl::StatusOr<AccessPolicy> access = AccessFromFlags(flags);
  if (!access.ok()) return RuntimeFailure(access.status());
  absl::StatusOr<Listener> listener = ChooseListener(flags, *access, *inherited);
  if (!listener.ok()) return RuntimeFailure(listener.status());
  DecisionHub decisions(&counters);
  FilterState state{.rules = store->get(),
                    .flow_rules = flow_rules->get(),
                    .counters = &counters,
                    .decisions = &decisions,
                    .state_dir = flags.state_dir,
                    .checkpointed = std::move(checkpointed)};
  return Serve(flags, *listener, *inherited, std::move(state), *std::move(instance),
               *std::move(access), stop_signals);
}

int Main(int argc, char** argv) {
  sigset_t stop_signals = BlockStopSignals();
  Flags flags;
  if (std::optional<int> exit_code = ParseFlags(argc, argv, &flags)) return *exit_code;
  InitLogging("nehost-filter", flags.verbose ? LogVerbosity::kDebug : LogVerbosity::kNormal);
  InitFailpoints();

  if (Failpoint("filter.start")) {
    return RuntimeFailure(absl::InternalError("start: failed at failpoint filter.start"));
  }
  if (IsStampedBad()) {
    spdlog::error("this build is stamped bad and exits at start version={}", kVersion);
    return kExitFailure;
  }
  return Run(flags, stop_signals);
}

}  // namespace
}  // namespace nehost::filter

int main(int argc, char** argv) {
  nehost::DisableMutexDeadlockDetection();
  return nehost::filter::Main(argc, argv);
}
