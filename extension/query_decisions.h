// What the DNS data plane did with each query, as the Decisions that WatchDecisions streams:
// the query (client, name, type, outcome, rcode, upstream latency) and its verdict, DENY with
// the deciding rule for a blocked name and ALLOW for anything answered or forwarded.
//
// The callback runs on the data-plane threads for every query. With no watcher it costs one
// atomic load; with watchers it builds one Decision and offers it, never waiting for them.
#pragma once

#include <functional>

#include "absl/time/time.h"
#include "extension/decisions.h"
#include "extension/dns_server.h"
#include "extension/flow_rules.h"

namespace nehost::filter {

// The Decision that a watcher of the query sees.
Decision QueryDecision(const QueryEvent& event, absl::Time at);

// A DnsServer::Options::on_query that publishes to hub, which must outlive the server.
std::function<void(const QueryEvent&)> PublishQueriesTo(DecisionHub* hub);

}  // namespace nehost::filter
