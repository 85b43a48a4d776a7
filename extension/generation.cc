#include "extension/generation.h"

#include <unistd.h>

#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_join.h"
#include "common/failpoint.h"
#include "common/log.h"
#include "common/version.h"
#include "extension/notify.h"

namespace nehost::filter {
namespace {

// "add_rule=2 status=40", sorted, for logs.
std::string Describe(const CounterMap& counters) {
  std::map<std::string, uint64_t> sorted(counters.begin(), counters.end());
  return absl::StrJoin(sorted, " ", absl::PairFormatter("="));
}

std::string ListenerNames(const std::vector<InheritedSocket>& sockets) {
  return absl::StrJoin(sockets, ":", [](std::string* out, const InheritedSocket& socket) {
    out->append(socket.name);
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Generation>> Generation::Start(RuleStore* store, Options options) {
  int serving_fd = options.serving_fd;
  std::unique_ptr<Generation> generation(new Generation(store, std::move(options)));

  absl::StatusOr<std::unique_ptr<FdServer>> server =
      FdServer::Start({&generation->service_}, {serving_fd}, &generation->connections_);
  if (!server.ok()) return server.status();
  generation->server_ = *std::move(server);
  return generation;
}

Generation::Generation(RuleStore* store, Options options)
    : store_(store),
      options_(std::move(options)),
      authorizer_(options_.access, &connections_),
      service_(store, &counters_, options_.dns_counters, &authorizer_, options_.instance) {}

void Generation::Stop(absl::Duration grace) {
  stopping_ = true;
  absl::MutexLock lock(&stop_mu_);
  // The data plane first: it only stops reading, and answers what it has read meanwhile.
  if (options_.drain_data_plane) options_.drain_data_plane(grace);
  server_->Stop(grace);
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
  Stop(grace);

  ControlResponse response = Identified();
  if (Failpoint("filter.drain.before_reply")) {
    response.set_error("drain: failed at failpoint filter.drain.before_reply");
    return response;
  }

  CounterMap* handed_over = response.mutable_state()->mutable_counters();
  counters_.CopyTo(handed_over);
  spdlog::info("drained generation={} counters=\"{}\"", options_.instance.generation,
               Describe(*handed_over));
  return response;
}

ControlResponse Generation::ImportState(const HandoffState& state) {
  counters_.Add(state.counters());
  spdlog::info("state imported generation={} counters=\"{}\"", options_.instance.generation,
               Describe(state.counters()));

  // The predecessor has drained, so the rule file holds its last word. A file that does not
  // load leaves this generation's rules in force; Reload says why in the log.
  store_->Reload().IgnoreError();
  return Identified();
}

void Generation::Drained() {
  if (options_.on_drained) options_.on_drained();
}

}  // namespace nehost::filter
