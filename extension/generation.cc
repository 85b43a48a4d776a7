#include "extension/generation.h"

#include <unistd.h>

#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/version.h"
#include "extension/notify.h"

namespace nehost::filter {
namespace {

// "calls=\"add_rule=2 status=40\" counters=12 histograms=1", for logs: the calls by method,
// sorted, and how many other counters there are, which may be one per rule.
std::string Describe(const HandoffState& state) {
  std::map<std::string, uint64_t> calls;
  for (const auto& [name, count] : state.counters()) {
    if (MethodCounters::IsMethod(name)) calls.emplace(name, count);
  }
  return absl::StrCat("calls=\"", absl::StrJoin(calls, " ", absl::PairFormatter("=")),
                      "\" counters=", state.counters_size() - calls.size(),
                      " histograms=", state.histograms_size());
}

std::string ListenerNames(const std::vector<InheritedSocket>& sockets) {
  return absl::StrJoin(sockets, ":", [](std::string* out, const InheritedSocket& socket) {
    out->append(socket.name);
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Generation>> Generation::Start(FilterState state, Options options) {
  int serving_fd = options.serving_fd;
  std::unique_ptr<Generation> generation(new Generation(std::move(state), std::move(options)));

  absl::StatusOr<std::unique_ptr<FdServer>> server = FdServer::Start(
      {&generation->service_, &generation->flow_service_, &generation->stats_service_},
      {serving_fd}, &generation->connections_);
  if (!server.ok()) return server.status();
  generation->server_ = *std::move(server);
  return generation;
}

Generation::Generation(FilterState state, Options options)
    : state_(std::move(state)),
      options_(std::move(options)),
      calls_(state_.counters),
      authorizer_(options_.access, &connections_),
      checkpoint_(state_.state_dir.empty()
                      ? nullptr
                      : std::make_unique<CounterCheckpoint>(state_.state_dir, state_.counters)),
      service_(state_.rules, &calls_, options_.dns_counters, &authorizer_, options_.instance),
      flow_service_(state_.flow_rules, state_.decisions, state_.counters, &authorizer_),
      stats_service_(state_.counters, checkpoint_.get(), &authorizer_) {}

void Generation::Stop(absl::Duration grace) {
  StopServing(grace, CounterCheckpoint::LastWrite::kWrite);
}

void Generation::StopServing(absl::Duration grace, CounterCheckpoint::LastWrite last) {
  stopping_ = true;
  absl::MutexLock lock(&stop_mu_);
  // The data plane first: it only stops reading, and answers what it has read meanwhile.
  if (options_.drain_data_plane) options_.drain_data_plane(grace);
  // Watchers and evaluation streams would hold their connections open to the end of the grace.
  state_.decisions->Close();
  flow_service_.EndStreams();
  server_->Stop(grace);
  if (checkpoint_ != nullptr) checkpoint_->Stop(last);
}

ControlResponse Generation::Identified() const {
  ControlResponse response;
  response.set_generation(options_.instance.generation);
  response.set_pid(::getpid());
  response.set_version(kVersion);
  response.set_serving(stopping_ ? ControlResponse::NOT_SERVING : ControlResponse::SERVING);
  return response;
}

ControlResponse Generation::Health() { return Identified(); }

ControlResponse Generation::TakeListeners(std::vector<int>* fds) {
  ControlResponse response = Identified();
  if (options_.inherited.empty()) {
    response.set_error(
        "take listeners: this process inherited no listening sockets; it bound its own");
    return response;
  }

  for (const InheritedSocket& socket : options_.inherited) {
    response.add_listener_names(socket.name);
    fds->push_back(socket.fd);
  }
  spdlog::info("handing over listeners generation={} names={}", options_.instance.generation,
               ListenerNames(options_.inherited));
  return response;
}

ControlResponse Generation::Drain(absl::Duration grace) {
  spdlog::info("draining generation={} grace_ms={}", options_.instance.generation,
               absl::ToInt64Milliseconds(grace));
  Notify("STOPPING=1");
  // The successor takes the counts from the reply; the last periodic checkpoint covers a
  // handoff that fails.
  StopServing(grace, CounterCheckpoint::LastWrite::kSkip);

  ControlResponse response = Identified();
  if (Failpoint("filter.drain.before_reply")) {
    response.set_error("drain: failed at failpoint filter.drain.before_reply");
    return response;
  }

  HandoffState* handed_over = response.mutable_state();
  state_.counters->CopyTo(handed_over);
  spdlog::info("drained generation={} {}", options_.instance.generation, Describe(*handed_over));
  return response;
}

ControlResponse Generation::ImportState(const HandoffState& state) {
  {
    // The predecessor's counts already include the checkpoint this generation started from.
    absl::MutexLock lock(&import_mu_);
    state_.counters->Replace(state_.checkpointed, state);
    state_.checkpointed.Clear();
  }
  spdlog::info("state imported generation={} {}", options_.instance.generation, Describe(state));

  // The predecessor has drained, so the rule files hold its last word. A file that does not
  // load leaves this generation's rules in force; Reload says why in the log.
  state_.rules->Reload().IgnoreError();
  state_.flow_rules->Reload().IgnoreError();
  return Identified();
}

void Generation::Drained() {
  if (options_.on_drained) options_.on_drained();
}

}  // namespace nehost::filter
