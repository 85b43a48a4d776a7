#include "agent/commands.h"

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "agent/progress.h"
#include "agent/verified_dial.h"
#include "common/files.h"
#include "common/grpc_client.h"
#include "common/unique_fd.h"
#include "common/unix_socket.h"
#include "nehost/filter/v1/filter.grpc.pb.h"
#include "nehost/filter/v1/flow.grpc.pb.h"
#include "nehost/filter/v1/stats.grpc.pb.h"
#include "nehost/supervisor/v1/supervisor.grpc.pb.h"

namespace nehost::agent {
namespace {

using filter::v1::Filter;
using filter::v1::FilterStats;
using filter::v1::FlowFilter;
using filter::v1::ImportRulesResponse;
using filter::v1::RemoveListResponse;

// Parts of an imported file, well below the 4 MB message limit.
constexpr size_t kImportChunkBytes = 1 << 20;
using supervisor::v1::ReexecResponse;
using supervisor::v1::Supervisor;

// nehostd's lookup wait ends this long before the call's deadline, at most, so that its
// answer has time to arrive.
constexpr absl::Duration kLookupAnswerMargin = absl::Seconds(1);

// decisions follows a service across its generations, but gives up after this many streams
// in a row that ended before delivering anything, waiting this long before each new one.
constexpr int kMostFruitlessReconnects = 10;
constexpr absl::Duration kReconnectPause = absl::Milliseconds(50);

// How often a terminal's progress line shows the time again.
constexpr absl::Duration kProgressRefresh = absl::Milliseconds(100);
// The step of an upgrade whose messages say why it was rolled back.
constexpr char kRollbackStep[] = "rollback";

// After answering Reexec, the old nehostd may still answer a call for a moment before it
// executes its new image. Its connection closing marks the moment; if it stays open this long
// (a connection inherited across exec), the wait goes on without it.
constexpr absl::Duration kReexecCloseGrace = absl::Seconds(2);
// While nehostd re-executes, its socket may be missing, refuse, or hold a connection in its
// backlog until the new image accepts: each try is short and tried again soon.
constexpr absl::Duration kReexecPollInterval = absl::Milliseconds(20);
constexpr absl::Duration kReexecAttemptTimeout = absl::Seconds(1);

template <typename Stub, typename Request, typename Response>
using UnaryMethod = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&, Response*);

struct CallResult {
  grpc::Status status;
  // Our own deadline ended the call. A DEADLINE_EXCEEDED that the server chose instead
  // carries the server's reason, which is worth more than ours.
  bool timed_out = false;
};

// gRPC enforces a deadline on a clock of its own, which may fire a little before absl::Now()
// reaches it; a DEADLINE_EXCEEDED the server reports long before ours is not ours.
constexpr absl::Duration kDeadlineClockSlack = absl::Milliseconds(20);

bool OurDeadlinePassed(const grpc::Status& status, absl::Time deadline) {
  return status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
         absl::Now() >= deadline - kDeadlineClockSlack;
}

template <typename Stub, typename Request, typename Response>
CallResult CallWithDeadline(Stub& stub, UnaryMethod<Stub, Request, Response> method,
                            const Request& request, Response* response, absl::Time deadline) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(deadline));

  CallResult result{(stub.*method)(&context, request, response)};
  result.timed_out = OurDeadlinePassed(result.status, deadline);
  return result;
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// Why nothing listens at path ("No such file or directory", "Connection refused"), or nullopt
// when something does. gRPC's own message buries the cause in its connection machinery, so
// a call that found no one asks the socket directly. The probe does not block, unlike
// ConnectUnix: a hung peer's full backlog would hold it past every deadline.
std::optional<std::string> WhyUnreachable(const std::string& path) {
  if (absl::Status fits = CheckUnixPath(path); !fits.ok()) return std::string(fits.message());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);

  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) return ErrnoText(errno);
  if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    return std::nullopt;
  }
  // A full backlog means someone listens but does not keep up.
  if (errno == EAGAIN) return std::nullopt;
  return ErrnoText(errno);
}

// Whether a call that failed UNAVAILABLE because its connection was lost, as one caught by a
// restarting nehostd or a draining generation does, is tried again on a new connection. Only
// calls that change nothing are. An UNAVAILABLE the server answered on a live connection ("the
// service failed") is its answer, and final.
enum class Retry { kNo, kOnUnavailable };

// Retries start soon and back off: nehostd's socket is usually back within milliseconds.
constexpr absl::Duration kFirstRetry = absl::Milliseconds(1);
constexpr absl::Duration kLongestRetry = absl::Milliseconds(250);

// Runs attempt until it succeeds, fails for good, or deadline passes. attempt returns the
// status of one try; UNAVAILABLE is tried again when retry says so and lost() says the
// connection is gone.
template <typename Attempt, typename Lost>
auto WithRetries(Retry retry, absl::Time deadline, Attempt attempt, Lost lost)
    -> decltype(attempt()) {
  absl::Duration wait = kFirstRetry;
  for (;;) {
    auto result = attempt();
    const bool again = retry == Retry::kOnUnavailable && absl::IsUnavailable(result.status()) &&
                       lost() && absl::Now() + wait < deadline;
    if (!again) return result;
    absl::SleepFor(wait);
    wait = std::min(wait * 2, kLongestRetry);
  }
}

// nehostd's API on RUNTIME/nehostd.sock, over a connection checked to be nehostd's. Failures
// come back as statuses whose messages say what went wrong in the user's terms.
class SupervisorClient {
 public:
  explicit SupervisorClient(const GlobalOptions& options)
      : socket_(SupervisorSocketPath(options.runtime_dir)),
        timeout_(options.timeout),
        expected_{"nehostd", options.server_uids, 0} {}

  // Dials nehostd when there is no working connection.
  absl::Status Connect(absl::Time deadline) {
    if (!Broken()) return absl::OkStatus();
    absl::StatusOr<VerifiedChannel> dialed = DialVerified(socket_, expected_, deadline);
    if (absl::IsUnavailable(dialed.status())) {
      std::optional<std::string> cause = WhyUnreachable(socket_);
      return absl::UnavailableError(
          absl::StrCat("nehostd is not running at ", socket_, ": ",
                       cause.value_or(std::string(dialed.status().message()))));
    }
    if (!dialed.ok()) return dialed.status();
    channel_ = std::move(dialed->channel);
    connection_ = std::move(dialed->connection);
    listener_ = dialed->listener;
    stub_ = Supervisor::NewStub(channel_);
    return absl::OkStatus();
  }

  // Who listens on nehostd.sock; set once connected.
  const PeerCredentials& listener() const { return listener_; }

  absl::StatusOr<Registration> Lookup(const std::string& name) {
    supervisor::v1::LookupRequest request;
    request.set_name(name);
    request.set_wait_ms(LookupWaitMs(timeout_));
    auto response = Call(&Supervisor::Stub::Lookup, request, Retry::kOnUnavailable);
    if (!response.ok()) return response.status();
    return response->registration();
  }

  absl::StatusOr<ListResponse> List() {
    return Call(&Supervisor::Stub::List, supervisor::v1::ListRequest(), Retry::kOnUnavailable);
  }

  absl::StatusOr<Registration> Start(const std::string& name) {
    return Change<supervisor::v1::StartRequest>(&Supervisor::Stub::Start, name);
  }
  absl::StatusOr<Registration> Stop(const std::string& name) {
    return Change<supervisor::v1::StopRequest>(&Supervisor::Stub::Stop, name);
  }
  absl::StatusOr<Registration> Restart(const std::string& name) {
    return Change<supervisor::v1::RestartRequest>(&Supervisor::Stub::Restart, name);
  }

  // No deadline: the stream lasts as long as the user wants it. Connect first.
  std::unique_ptr<grpc::ClientReader<Event>> Watch(grpc::ClientContext* context,
                                                   const std::string& name) {
    supervisor::v1::WatchRequest request;
    request.set_name(name);
    return stub_->Watch(context, request);
  }

  // The deadline is the context's. Connect first.
  std::unique_ptr<grpc::ClientReader<UpgradeProgress>> Upgrade(grpc::ClientContext* context,
                                                               const std::string& name,
                                                               const std::string& to_version) {
    supervisor::v1::UpgradeRequest request;
    request.set_name(name);
    request.set_to_version(to_version);
    return stub_->Upgrade(context, request);
  }

  absl::StatusOr<DoctorResponse> Doctor(const std::string& name) {
    supervisor::v1::DoctorRequest request;
    request.set_name(name);
    return Call(&Supervisor::Stub::Doctor, request, Retry::kOnUnavailable);
  }

  absl::StatusOr<ReexecResponse> Reexec() {
    return Call(&Supervisor::Stub::Reexec, supervisor::v1::ReexecRequest(), Retry::kNo);
  }

  // Waits until the connection that carried the last call closes, or until deadline;
  // returns whether it closed.
  bool WaitForDisconnect(absl::Time deadline) {
    if (channel_ == nullptr) return true;
    return WaitForClose(connection_.get(), deadline);
  }

  absl::Status Explain(const CallResult& result) const {
    if (result.status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      std::optional<std::string> cause = WhyUnreachable(socket_);
      if (cause) {
        return absl::UnavailableError(
            absl::StrCat("nehostd is not running at ", socket_, ": ", *cause));
      }
    }
    if (result.timed_out) {
      return absl::DeadlineExceededError(absl::StrCat(
          "nehostd at ", socket_, " did not answer within ", absl::FormatDuration(timeout_)));
    }
    // gRPC's own answer for a method the server lacks says nothing.
    if (result.status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
        result.status.error_message().empty()) {
      return absl::UnimplementedError(absl::StrCat(
          "nehostd at ", socket_, " does not implement this call; it may be older than nehostctl"));
    }
    return FromGrpc(result.status);
  }

 private:
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(UnaryMethod<Supervisor::Stub, Request, Response> method,
                                const Request& request, Retry retry) {
    const absl::Time deadline = absl::Now() + timeout_;
    return WithRetries(
        retry, deadline,
        [&]() -> absl::StatusOr<Response> {
          if (absl::Status connected = Connect(deadline); !connected.ok()) return connected;
          Response response;
          CallResult result = CallWithDeadline(*stub_, method, request, &response, deadline);
          if (!result.status.ok()) return Explain(result);
          return response;
        },
        [this] { return Broken(); });
  }

  // A channel whose connection closed cannot carry the next call: a verified channel does not
  // reconnect.
  bool Broken() const { return channel_ == nullptr || ConnectionClosed(connection_.get()); }

  // Start, Stop and Restart: a name goes in, the registration after the change comes out.
  template <typename Request, typename Response>
  absl::StatusOr<Registration> Change(UnaryMethod<Supervisor::Stub, Request, Response> method,
                                      const std::string& name) {
    Request request;
    request.set_name(name);
    absl::StatusOr<Response> response = Call(method, request, Retry::kNo);
    if (!response.ok()) return response.status();
    return response->registration();
  }

  std::string socket_;
  absl::Duration timeout_;
  ExpectedListener expected_;
  std::shared_ptr<grpc::Channel> channel_;
  UniqueFd connection_;
  PeerCredentials listener_;
  std::unique_ptr<Supervisor::Stub> stub_;
};

// One service's nehost.filter.v1 API, at the endpoint its registration names, over a
// connection checked to be to the socket nehostd listens on.
class FilterClient {
 public:
  // Fails when the endpoint is not a Unix socket path that fits in sockaddr_un. nehostd_uid
  // is the uid nehostd was found to run as: the endpoint's listener must have it too.
  static absl::StatusOr<FilterClient> Dial(const GlobalOptions& options,
                                           const Registration& registration, uid_t nehostd_uid) {
    absl::string_view socket = registration.endpoint();
    if (!absl::ConsumePrefix(&socket, "unix:")) {
      return absl::InvalidArgumentError(absl::StrCat("registration has endpoint \"",
                                                     registration.endpoint(), "\", not unix:PATH"));
    }
    if (absl::Status fits = CheckUnixPath(std::string(socket)); !fits.ok()) return fits;
    ExpectedListener expected{absl::StrCat("the socket nehostd created for ", registration.name()),
                              {nehostd_uid},
                              registration.endpoint_listener_pid()};
    return FilterClient(registration, std::string(socket), options.timeout, std::move(expected));
  }

  absl::StatusOr<StatusResponse> Status() {
    return Call(&Filter::Stub::Status, filter::v1::StatusRequest(), Retry::kOnUnavailable);
  }

  absl::StatusOr<ListRulesResponse> ListRules() {
    return Call(&Filter::Stub::ListRules, filter::v1::ListRulesRequest(), Retry::kOnUnavailable);
  }

  absl::StatusOr<AddRuleResponse> AddRule(const Rule& rule) {
    filter::v1::AddRuleRequest request;
    *request.mutable_rule() = rule;
    return Call(&Filter::Stub::AddRule, request, Retry::kNo);
  }

  absl::StatusOr<RemoveRuleResponse> RemoveRule(const std::string& domain, Rule::Match match) {
    filter::v1::RemoveRuleRequest request;
    request.set_domain(domain);
    request.set_match(match);
    return Call(&Filter::Stub::RemoveRule, request, Retry::kNo);
  }

  absl::StatusOr<RemoveListResponse> RemoveList(const std::string& list) {
    filter::v1::RemoveListRequest request;
    request.set_name(list);
    return Call(&Filter::Stub::RemoveList, request, Retry::kNo);
  }

  // Streams file after header, in chunks well below the message limit. Not retried: an import
  // replaces a list, so a second attempt is for the user to decide.
  absl::StatusOr<ImportRulesResponse> ImportRules(const filter::v1::ImportRulesHeader& header,
                                                  std::istream& file) {
    const absl::Time deadline = absl::Now() + timeout_;
    if (absl::Status connected = Connect(deadline); !connected.ok()) return connected;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    ImportRulesResponse response;
    std::unique_ptr<grpc::ClientWriter<filter::v1::ImportRulesRequest>> writer =
        stubs_.filter->ImportRules(&context, &response);

    filter::v1::ImportRulesRequest request;
    *request.mutable_header() = header;
    bool open = writer->Write(request);
    std::string chunk(kImportChunkBytes, '\0');
    while (open && file.read(chunk.data(), chunk.size()).gcount() > 0) {
      request.set_chunk(chunk.data(), static_cast<size_t>(file.gcount()));
      open = writer->Write(request);
    }
    if (open) writer->WritesDone();

    grpc::Status finished = writer->Finish();
    CallResult result{finished, OurDeadlinePassed(finished, deadline)};
    if (!result.status.ok()) return Explain(result, Filter::service_full_name());
    if (file.bad()) return absl::DataLossError("read the file: an I/O error cut it short");
    return response;
  }

  absl::StatusOr<ListFlowRulesResponse> ListFlowRules() {
    return Call(&FlowFilter::Stub::ListFlowRules, filter::v1::ListFlowRulesRequest(),
                Retry::kOnUnavailable);
  }

  absl::StatusOr<AddFlowRuleResponse> AddFlowRule(const FlowRule& rule) {
    filter::v1::AddFlowRuleRequest request;
    *request.mutable_rule() = rule;
    return Call(&FlowFilter::Stub::AddFlowRule, request, Retry::kNo);
  }

  absl::StatusOr<filter::v1::RemoveFlowRuleResponse> RemoveFlowRule(const std::string& rule) {
    filter::v1::RemoveFlowRuleRequest request;
    request.set_name(rule);
    return Call(&FlowFilter::Stub::RemoveFlowRule, request, Retry::kNo);
  }

  absl::StatusOr<filter::v1::SetDefaultFlowActionResponse> SetDefaultFlowAction(
      FlowRule::Action action) {
    filter::v1::SetDefaultFlowActionRequest request;
    request.set_action(action);
    return Call(&FlowFilter::Stub::SetDefaultFlowAction, request, Retry::kNo);
  }

  // Evaluation changes nothing but counters, so it is tried again like a read.
  absl::StatusOr<Verdict> EvaluateFlow(const Flow& flow) {
    return Call(&FlowFilter::Stub::EvaluateFlow, flow, Retry::kOnUnavailable);
  }

  absl::StatusOr<StatsResponse> Stats() {
    return Call(&FilterStats::Stub::Stats, filter::v1::StatsRequest(), Retry::kOnUnavailable);
  }

  // No deadline: the stream lasts as long as the user wants it.
  absl::StatusOr<std::unique_ptr<grpc::ClientReader<Decision>>> WatchDecisions(
      grpc::ClientContext* context, uint32_t buffer) {
    if (absl::Status connected = Connect(absl::Now() + timeout_); !connected.ok()) {
      return connected;
    }
    filter::v1::WatchDecisionsRequest request;
    request.set_buffer(buffer);
    return stubs_.flows->WatchDecisions(context, request);
  }

  absl::Status Explain(const grpc::Status& status) const {
    return Explain(CallResult{status}, FlowFilter::service_full_name());
  }

 private:
  FilterClient(const Registration& registration, std::string socket, absl::Duration timeout,
               ExpectedListener expected)
      : where_(absl::StrCat(registration.name(), " at ", registration.endpoint())),
        socket_(std::move(socket)),
        timeout_(timeout),
        expected_(std::move(expected)) {}

  bool Broken() const { return channel_ == nullptr || ConnectionClosed(connection_.get()); }

  absl::Status Connect(absl::Time deadline) {
    if (!Broken()) return absl::OkStatus();
    absl::StatusOr<VerifiedChannel> dialed = DialVerified(socket_, expected_, deadline);
    if (absl::IsUnavailable(dialed.status())) {
      return absl::UnavailableError(
          absl::StrCat(where_, " is unreachable: ",
                       WhyUnreachable(socket_).value_or(std::string(dialed.status().message()))));
    }
    if (!dialed.ok()) return dialed.status();
    channel_ = std::move(dialed->channel);
    connection_ = std::move(dialed->connection);
    stubs_.filter = Filter::NewStub(channel_);
    stubs_.flows = FlowFilter::NewStub(channel_);
    stubs_.stats = FilterStats::NewStub(channel_);
    return absl::OkStatus();
  }

  // The services of one filter, over one channel.
  struct Stubs {
    std::unique_ptr<Filter::Stub> filter;
    std::unique_ptr<FlowFilter::Stub> flows;
    std::unique_ptr<FilterStats::Stub> stats;

    Filter::Stub& Of(Filter::Stub*) { return *filter; }
    FlowFilter::Stub& Of(FlowFilter::Stub*) { return *flows; }
    FilterStats::Stub& Of(FilterStats::Stub*) { return *stats; }

    static const char* NameOf(Filter::Stub*) { return Filter::service_full_name(); }
    static const char* NameOf(FlowFilter::Stub*) { return FlowFilter::service_full_name(); }
    static const char* NameOf(FilterStats::Stub*) { return FilterStats::service_full_name(); }
  };

  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Call(UnaryMethod<Stub, Request, Response> method, const Request& request,
                                Retry retry) {
    const absl::Time deadline = absl::Now() + timeout_;
    return WithRetries(
        retry, deadline,
        [&]() -> absl::StatusOr<Response> {
          if (absl::Status connected = Connect(deadline); !connected.ok()) return connected;
          Response response;
          Stub* const kind = nullptr;
          CallResult result =
              CallWithDeadline(stubs_.Of(kind), method, request, &response, deadline);
          if (!result.status.ok()) return Explain(result, Stubs::NameOf(kind));
          return response;
        },
        [this] { return Broken(); });
  }

  absl::Status Explain(const CallResult& result, const char* service) const {
    const grpc::StatusCode code = result.status.error_code();
    if (code == grpc::StatusCode::UNAVAILABLE) {
      std::optional<std::string> cause = WhyUnreachable(socket_);
      if (cause) return absl::UnavailableError(absl::StrCat(where_, " is unreachable: ", *cause));
    }
    if (result.timed_out) {
      return absl::DeadlineExceededError(
          absl::StrCat(where_, " did not answer within ", absl::FormatDuration(timeout_)));
    }
    if (code == grpc::StatusCode::UNIMPLEMENTED) {
      return absl::UnimplementedError(absl::StrCat(where_, " does not serve ", service));
    }
    if (code == grpc::StatusCode::UNAVAILABLE) {
      return absl::UnavailableError(absl::StrCat(where_, ": ", result.status.error_message()));
    }
    return FromGrpc(result.status);
  }

  std::string where_;  // "org.nehost.filter at unix:/run/nehost/services/org.nehost.filter.sock"
  std::string socket_;
  absl::Duration timeout_;
  ExpectedListener expected_;
  std::shared_ptr<grpc::Channel> channel_;
  UniqueFd connection_;
  Stubs stubs_;
};

ExitCode Fail(absl::string_view what, const absl::Status& status, Server server) {
  std::string cause(status.message());
  if (cause.empty()) cause = absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
  std::cerr << "nehostctl: " << what << ": " << cause << "\n";
  return ExitCodeFor(status.code(), server);
}

// lookup, start, stop and restart: one call to nehostd, which answers with a registration.
ExitCode ShowRegistration(
    const GlobalOptions& options, absl::string_view verb, const std::string& name,
    absl::StatusOr<Registration> (SupervisorClient::*call)(const std::string&)) {
  SupervisorClient supervisor(options);
  absl::StatusOr<Registration> registration = (supervisor.*call)(name);
  if (!registration.ok()) {
    return Fail(absl::StrCat(verb, " ", name), registration.status(), Server::kSupervisor);
  }

  std::cout << FormatRegistration(*registration, options.format);
  return ExitCode::kOk;
}

absl::StatusOr<FilterClient> DialService(const GlobalOptions& options, const std::string& name) {
  SupervisorClient supervisor(options);
  absl::StatusOr<Registration> registration = supervisor.Lookup(name);
  if (!registration.ok()) return registration.status();
  return FilterClient::Dial(options, *registration, supervisor.listener().uid);
}

// status and rules: look the service up, make one call to it, print the answer.
template <typename CallFn, typename FormatFn>
ExitCode CallService(const GlobalOptions& options, absl::string_view verb, const std::string& name,
                     CallFn call, FormatFn format) {
  const std::string what = absl::StrCat(verb, " ", name);
  absl::StatusOr<FilterClient> service = DialService(options, name);
  if (!service.ok()) return Fail(what, service.status(), Server::kSupervisor);

  auto response = call(*service);
  if (!response.ok()) return Fail(what, response.status(), Server::kService);
  std::cout << format(*response);
  return ExitCode::kOk;
}

// Blocks SIGINT and SIGTERM in this thread and every thread it starts from now on. gRPC's
// threads inherit the mask of the thread that creates them, so this must run before the first
// gRPC object exists: otherwise the kernel may hand a signal to one of them, and its default
// action kills the process instead of ending the stream.
sigset_t BlockInterrupts() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Cancels a call when one of the blocked signals arrives. A signal handler may not call into
// gRPC, so a thread of its own takes them with sigwait.
class CancelOnInterrupt {
 public:
  CancelOnInterrupt(grpc::ClientContext* context, sigset_t signals)
      : signals_(signals), thread_([this, context] { Wait(context); }) {}

  ~CancelOnInterrupt() {
    stopping_ = true;
    // A thread-directed signal goes to that thread's sigwait and to no one else.
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
  }

  CancelOnInterrupt(const CancelOnInterrupt&) = delete;
  CancelOnInterrupt& operator=(const CancelOnInterrupt&) = delete;

  bool interrupted() const { return interrupted_; }

 private:
  void Wait(grpc::ClientContext* context) {
    int signal = 0;
    sigwait(&signals_, &signal);
    if (stopping_) return;
    interrupted_ = true;
    context->TryCancel();
  }

  const sigset_t signals_;
  std::atomic<bool> stopping_ = false;
  std::atomic<bool> interrupted_ = false;
  std::thread thread_;  // last, so that it starts once the members above exist
};

// Calls tick every interval on a thread of its own, until destroyed.
class Ticker {
 public:
  Ticker(absl::Duration interval, std::function<void()> tick)
      : thread_([this, interval, tick = std::move(tick)] {
          while (!stop_.WaitForNotificationWithTimeout(interval)) tick();
        }) {}

  ~Ticker() {
    stop_.Notify();
    thread_.join();
  }

  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

 private:
  absl::Notification stop_;
  std::thread thread_;  // last, so that it starts once stop_ exists
};

// A terminal that understands escape sequences gets live progress; anything else plain lines.
ProgressStyle ProgressStyleFor(OutputFormat format) {
  if (format == OutputFormat::kJson) return ProgressStyle::kJson;
  const char* term = std::getenv("TERM");
  const bool dumb = term != nullptr && absl::string_view(term) == "dumb";
  return ::isatty(STDOUT_FILENO) == 1 && !dumb ? ProgressStyle::kLive : ProgressStyle::kPlain;
}

int TerminalColumns() {
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) != 0) return 0;
  return size.ws_col;
}

google::protobuf::Timestamp Now() {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now()));
}

// What the stream of an upgrade said, and how it ended.
struct UpgradeOutcome {
  std::optional<UpgradeProgress> last;  // the message with done set, if one came
  absl::Duration elapsed;               // from the request to the last message
  std::string rollback_reason;          // the last message of the rollback step
  absl::Status failure;                 // why no last message came
};

absl::Duration UpgradeTimeout(const GlobalOptions& options) {
  return options.timeout_given ? options.timeout : kDefaultUpgradeTimeout;
}

// Why the stream ended without saying how the upgrade ended.
absl::Status StreamFailure(const GlobalOptions& options, const std::string& name,
                           const SupervisorClient& supervisor, const grpc::Status& ended,
                           absl::Time deadline, bool interrupted) {
  const std::string see = absl::StrCat(
      "nehostd may still finish the upgrade or roll it back: see 'nehostctl doctor ", name, "'");
  if (interrupted) return absl::CancelledError(absl::StrCat("interrupted; ", see));
  if (ended.ok()) {
    return absl::InternalError("nehostd ended the upgrade's stream before its last step");
  }
  if (OurDeadlinePassed(ended, deadline)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "no outcome within ", absl::FormatDuration(UpgradeTimeout(options)), "; ", see));
  }
  return supervisor.Explain({ended});
}

// Shows each message of the upgrade's stream in view as it arrives, until the stream ends.
UpgradeOutcome FollowUpgrade(const GlobalOptions& options, const std::string& name,
                             const std::string& to_version, sigset_t interrupts,
                             UpgradeView& view) {
  SupervisorClient supervisor(options);
  grpc::ClientContext context;
  const absl::Time started = absl::Now();
  const absl::Time deadline = started + UpgradeTimeout(options);
  context.set_deadline(absl::ToChronoTime(deadline));
  CancelOnInterrupt canceller(&context, interrupts);
  std::optional<Ticker> ticker;
  if (view.style() == ProgressStyle::kLive) {
    ticker.emplace(kProgressRefresh, [&view] { view.Tick(absl::Now()); });
  }

  UpgradeOutcome outcome;
  if (absl::Status connected = supervisor.Connect(deadline); !connected.ok()) {
    outcome.failure = absl::IsDeadlineExceeded(connected)
                          ? StreamFailure(options, name, supervisor,
                                          grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, ""),
                                          deadline, canceller.interrupted())
                          : connected;
    return outcome;
  }
  std::unique_ptr<grpc::ClientReader<UpgradeProgress>> stream =
      supervisor.Upgrade(&context, name, to_version);
  for (UpgradeProgress progress; stream->Read(&progress);) {
    view.Show(progress, absl::Now());
    if (progress.step() == kRollbackStep && !progress.message().empty()) {
      outcome.rollback_reason = progress.message();
    }
    if (progress.done() && !outcome.last) {
      outcome.last = progress;
      outcome.elapsed = absl::Now() - started;
    }
  }

  grpc::Status ended = stream->Finish();
  if (!outcome.last) {
    outcome.failure =
        StreamFailure(options, name, supervisor, ended, deadline, canceller.interrupted());
  }
  return outcome;
}

// The last line of an upgrade names the generation that serves now, which a lookup confirms.
std::string DescribeOutcome(const GlobalOptions& options, const std::string& name,
                            const UpgradeOutcome& outcome) {
  const UpgradeProgress& last = *outcome.last;
  absl::StatusOr<Registration> serving = SupervisorClient(options).Lookup(name);

  if (last.succeeded()) {
    uint64_t generation = last.generation();
    if (generation == 0 && serving.ok()) generation = serving->generation();
    const bool same = serving.ok() && serving->generation() == generation;
    return FormatUpgraded(name, generation, same ? serving->version() : "", outcome.elapsed);
  }

  std::string reason = last.message().empty() ? outcome.rollback_reason : last.message();
  if (reason.empty()) reason = "nehostd gave no reason";
  if (!serving.ok()) {
    return FormatRolledBackUnknown(name, reason, std::string(serving.status().message()));
  }
  return FormatRolledBack(name, reason, serving->generation());
}

// Polls nehostd with a fresh channel each time, until it answers List or deadline passes.
absl::Status WaitUntilAnswering(const GlobalOptions& options, absl::Time deadline) {
  absl::Status last = absl::DeadlineExceededError("no time left to ask");
  for (absl::Time now = absl::Now(); now < deadline; now = absl::Now()) {
    GlobalOptions attempt = options;
    attempt.timeout = std::min(deadline - now, kReexecAttemptTimeout);
    absl::StatusOr<ListResponse> list = SupervisorClient(attempt).List();
    if (list.ok()) return absl::OkStatus();

    last = list.status();
    absl::SleepFor(std::min(kReexecPollInterval, deadline - absl::Now()));
  }
  return absl::DeadlineExceededError(absl::StrCat("nehostd did not answer again within ",
                                                  absl::FormatDuration(options.timeout), ": ",
                                                  last.message()));
}

}  // namespace

ExitCode ExitCodeFor(absl::StatusCode code, Server server) {
  switch (code) {
    case absl::StatusCode::kOk:
      return ExitCode::kOk;
    case absl::StatusCode::kNotFound:
      return server == Server::kSupervisor ? ExitCode::kUnknownName : ExitCode::kFailure;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kFailedPrecondition:
      return ExitCode::kUnavailable;
    default:
      return ExitCode::kFailure;
  }
}

std::string SupervisorSocketPath(const std::string& runtime_dir) {
  return absl::StrCat(absl::StripSuffix(runtime_dir, "/"), "/nehostd.sock");
}

uint32_t LookupWaitMs(absl::Duration timeout) {
  const absl::Duration margin = std::min(kLookupAnswerMargin, timeout / 2);
  const int64_t wait_ms = absl::ToInt64Milliseconds(timeout - margin);
  // 0 would ask for nehostd's default wait, which may outlast the deadline.
  return static_cast<uint32_t>(std::clamp<int64_t>(wait_ms, 1, UINT32_MAX));
}

ExitCode Lookup(const GlobalOptions& options, const std::string& name) {
  return ShowRegistration(options, "lookup", name, &SupervisorClient::Lookup);
}

ExitCode List(const GlobalOptions& options) {
  absl::StatusOr<ListResponse> list = SupervisorClient(options).List();
  if (!list.ok()) return Fail("list", list.status(), Server::kSupervisor);

  std::cout << FormatServiceList(*list, options.format);
  return ExitCode::kOk;
}

ExitCode ShowStatus(const GlobalOptions& options, const std::string& name) {
  return CallService(
      options, "status", name, [](FilterClient& service) { return service.Status(); },
      [&](const StatusResponse& status) { return FormatStatus(name, status, options.format); });
}

ExitCode Start(const GlobalOptions& options, const std::string& name) {
  return ShowRegistration(options, "start", name, &SupervisorClient::Start);
}

ExitCode Stop(const GlobalOptions& options, const std::string& name) {
  return ShowRegistration(options, "stop", name, &SupervisorClient::Stop);
}

ExitCode Restart(const GlobalOptions& options, const std::string& name) {
  return ShowRegistration(options, "restart", name, &SupervisorClient::Restart);
}

ExitCode ListRules(const GlobalOptions& options, const std::string& name) {
  return CallService(
      options, "rules list", name, [](FilterClient& service) { return service.ListRules(); },
      [&](const ListRulesResponse& rules) { return FormatRules(name, rules, options.format); });
}

ExitCode AddRule(const GlobalOptions& options, const std::string& name, const Rule& rule) {
  return CallService(
      options, "rules add", name, [&](FilterClient& service) { return service.AddRule(rule); },
      [&](const AddRuleResponse& added) { return FormatAddedRule(name, added, options.format); });
}

ExitCode RemoveRule(const GlobalOptions& options, const std::string& name,
                    const std::string& domain, Rule::Match match) {
  return CallService(
      options, "rules remove", name,
      [&](FilterClient& service) { return service.RemoveRule(domain, match); },
      [&](const RemoveRuleResponse& removed) {
        return FormatRemovedRules(name, domain, removed, options.format);
      });
}

ExitCode RemoveList(const GlobalOptions& options, const std::string& name,
                    const std::string& list) {
  return CallService(
      options, "rules remove-list", name,
      [&](FilterClient& service) { return service.RemoveList(list); },
      [&](const RemoveListResponse& removed) {
        return FormatRemovedList(name, list, removed, options.format);
      });
}

ExitCode ImportRules(const GlobalOptions& options, const std::string& name,
                     const filter::v1::ImportRulesHeader& header, const std::string& path) {
  const std::string what = absl::StrCat("rules import ", name);
  std::ifstream file(path, std::ios::binary);
  if (!file) return Fail(what, ErrnoStatus(errno, "open", path), Server::kService);
  absl::StatusOr<FilterClient> service = DialService(options, name);
  if (!service.ok()) return Fail(what, service.status(), Server::kSupervisor);

  absl::StatusOr<ImportRulesResponse> imported = service->ImportRules(header, file);
  if (!imported.ok()) return Fail(what, imported.status(), Server::kService);
  std::cout << FormatImport(name, path, *imported, options.format);
  if (options.format != OutputFormat::kJson) std::cerr << FormatImportErrors(path, *imported);
  return imported->committed() ? ExitCode::kOk : ExitCode::kFailure;
}

ExitCode ListFlowRules(const GlobalOptions& options, const std::string& name) {
  return CallService(
      options, "flows list", name, [](FilterClient& service) { return service.ListFlowRules(); },
      [&](const ListFlowRulesResponse& rules) {
        return FormatFlowRules(name, rules, options.format);
      });
}

ExitCode AddFlowRule(const GlobalOptions& options, const std::string& name, const FlowRule& rule) {
  return CallService(
      options, "flows add", name, [&](FilterClient& service) { return service.AddFlowRule(rule); },
      [&](const AddFlowRuleResponse& added) {
        return FormatAddedFlowRule(name, added, options.format);
      });
}

ExitCode RemoveFlowRule(const GlobalOptions& options, const std::string& name,
                        const std::string& rule) {
  return CallService(
      options, "flows remove", name,
      [&](FilterClient& service) { return service.RemoveFlowRule(rule); },
      [&](const filter::v1::RemoveFlowRuleResponse& removed) {
        return FormatRemovedFlowRule(name, rule, removed.removed(), options.format);
      });
}

ExitCode SetDefaultFlowAction(const GlobalOptions& options, const std::string& name,
                              FlowRule::Action action) {
  return CallService(
      options, "flows default", name,
      [&](FilterClient& service) { return service.SetDefaultFlowAction(action); },
      [&](const filter::v1::SetDefaultFlowActionResponse&) {
        return FormatDefaultFlowAction(name, action, options.format);
      });
}

ExitCode Evaluate(const GlobalOptions& options, const std::string& name, const Flow& flow) {
  return CallService(
      options, "evaluate", name, [&](FilterClient& service) { return service.EvaluateFlow(flow); },
      [&](const Verdict& verdict) { return FormatVerdict(name, verdict, options.format); });
}

ExitCode ShowStats(const GlobalOptions& options, const std::string& name) {
  return CallService(
      options, "stats", name, [](FilterClient& service) { return service.Stats(); },
      [&](const StatsResponse& stats) { return FormatStats(name, stats, options.format); });
}

ExitCode WatchDecisions(const GlobalOptions& options, const std::string& name, uint32_t buffer) {
  const sigset_t interrupts = BlockInterrupts();
  const std::string what = absl::StrCat("decisions ", name);
  int fruitless = 0;
  for (;;) {
    // Looked up again each time: after an upgrade, the registry names the next generation.
    absl::StatusOr<FilterClient> service = DialService(options, name);
    if (!service.ok()) return Fail(what, service.status(), Server::kSupervisor);

    grpc::ClientContext context;
    CancelOnInterrupt canceller(&context, interrupts);
    auto stream = service->WatchDecisions(&context, buffer);
    if (!stream.ok()) return Fail(what, stream.status(), Server::kService);
    bool delivered = false;
    for (Decision decision; (*stream)->Read(&decision);) {
      if (!decision.has_at()) *decision.mutable_at() = Now();
      std::cout << FormatDecision(decision, options.format) << std::flush;
      delivered = true;
    }
    grpc::Status ended = (*stream)->Finish();
    if (ended.ok() || canceller.interrupted()) return ExitCode::kOk;

    // A generation that stops ends its watchers; the next one serves the same name.
    const bool generation_ended = ended.error_code() == grpc::StatusCode::CANCELLED ||
                                  ended.error_code() == grpc::StatusCode::UNAVAILABLE;
    fruitless = delivered ? 0 : fruitless + 1;
    if (!generation_ended || fruitless >= kMostFruitlessReconnects) {
      return Fail(what, service->Explain(ended), Server::kService);
    }
    std::cerr << "nehostctl: " << what << ": the stream ended (" << ended.error_message()
              << "); following the service's next generation\n";
    absl::SleepFor(kReconnectPause);
  }
}

ExitCode Watch(const GlobalOptions& options, const std::string& name) {
  const sigset_t interrupts = BlockInterrupts();
  SupervisorClient supervisor(options);
  grpc::ClientContext context;
  CancelOnInterrupt canceller(&context, interrupts);

  const std::string what = name.empty() ? "watch" : absl::StrCat("watch ", name);
  if (absl::Status connected = supervisor.Connect(absl::Now() + options.timeout); !connected.ok()) {
    return Fail(what, connected, Server::kSupervisor);
  }
  std::unique_ptr<grpc::ClientReader<Event>> stream = supervisor.Watch(&context, name);
  for (Event event; stream->Read(&event);) {
    if (!event.has_at()) *event.mutable_at() = Now();
    std::cout << FormatEvent(event, options.format) << std::flush;
  }
  grpc::Status ended = stream->Finish();
  if (ended.ok() || canceller.interrupted()) return ExitCode::kOk;
  return Fail(what, supervisor.Explain({ended}), Server::kSupervisor);
}

ExitCode Upgrade(const GlobalOptions& options, const std::string& name,
                 const std::string& to_version) {
  const sigset_t interrupts = BlockInterrupts();
  UpgradeView view(std::cout, ProgressStyleFor(options.format), TerminalColumns);
  UpgradeOutcome outcome = FollowUpgrade(options, name, to_version, interrupts, view);
  view.Finish(absl::Now());

  const std::string what = absl::StrCat("upgrade ", name);
  if (!outcome.last) return Fail(what, outcome.failure, Server::kSupervisor);
  const UpgradeProgress& last = *outcome.last;
  if (!last.succeeded() && !last.rolled_back()) {
    const std::string cause = last.message().empty() ? "failed" : last.message();
    return Fail(what, absl::UnknownError(cause), Server::kSupervisor);
  }

  if (options.format == OutputFormat::kTable) std::cout << DescribeOutcome(options, name, outcome);
  return last.succeeded() ? ExitCode::kOk : ExitCode::kUnavailable;
}

ExitCode Doctor(const GlobalOptions& options, const std::string& name) {
  absl::StatusOr<DoctorResponse> doctor = SupervisorClient(options).Doctor(name);
  const std::string what = absl::StrCat("doctor ", name);
  if (!doctor.ok()) return Fail(what, doctor.status(), Server::kSupervisor);

  std::cout << FormatDoctor(*doctor, options.format);
  return DoctorFoundNothingWrong(*doctor) ? ExitCode::kOk : ExitCode::kUnavailable;
}

ExitCode Reexec(const GlobalOptions& options) {
  const absl::Time deadline = absl::Now() + options.timeout;
  SupervisorClient supervisor(options);
  absl::StatusOr<ReexecResponse> reexec = supervisor.Reexec();
  if (!reexec.ok()) return Fail("reexec", reexec.status(), Server::kSupervisor);
  const absl::Time asked = absl::Now();
  if (options.format == OutputFormat::kTable) {
    std::cout << FormatReexecStarted(reexec->pid()) << std::flush;
  }

  supervisor.WaitForDisconnect(std::min(deadline, asked + kReexecCloseGrace));
  absl::Status back = WaitUntilAnswering(options, deadline);
  std::optional<absl::Duration> back_after;
  if (back.ok()) back_after = absl::Now() - asked;
  std::cout << FormatReexecEnded(reexec->pid(), back_after, options.format);

  if (!back.ok()) return Fail("reexec", back, Server::kSupervisor);
  return ExitCode::kOk;
}

}  // namespace nehost::agent
