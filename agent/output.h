// How nehostctl shows what nehostd and the services answer: a readable table or key: value
// block by default, or JSON for scripts.
//
// Every function is pure: it turns a response into text ending in a newline and touches no
// stream, so the formats can be tested without a server. Thread safe.
//
// The JSON is printed by protobuf from a google.protobuf.Struct that names each field
// explicitly, so a new field in the API never appears in the output by accident. Keys come
// out sorted, the same on every run; numbers are JSON numbers; times are RFC 3339 strings in
// UTC; enums are the lower-case names below. Each command prints exactly one object on one
// line (watch: one per event). The fields:
//
//   lookup, start, stop, restart: a registration object
//     always:        name, generation, pid, version, state, endpoint, enabled
//     when present:  state_reason, executable, start_time_ticks, restart_count,
//                    recent_exits, next_attempt_at, status_text
//   list:            {"services": [registration objects]}
//   status:          service, version, pid, generation, uptime_ms, rule_count
//   rules list:      {"service", "rules": [rule objects]}
//   rules add:       {"service", "added" (false when already in force), "rule": rule object}
//   rules remove:    {"service", "domain", "removed" (how many)}
//   watch, per line: at, name, generation, pid, state, kind; "message" and "exit" (an exit
//                    object) when present
//
//   rule object:     domain, action ("deny", "allow"), match ("exact", "suffix")
//   exit object:     generation, pid, reason, and "signal" when a signal ended it, else
//                    "exit_code"; "at" and "description" when present
//   state:           "starting", "ready", "draining", "stopping", "stopped", "backoff",
//                    "failed" ("unspecified" when unset)
//   reason:          "requested", "superseded", "crashed", "never_ready", "host_shutdown"
//                    ("unspecified" when unset)
#pragma once

#include <string>

#include "nehost/filter/v1/filter.pb.h"
#include "nehost/supervisor/v1/supervisor.pb.h"

namespace nehost::agent {

using filter::v1::AddRuleResponse;
using filter::v1::ListRulesResponse;
using filter::v1::RemoveRuleResponse;
using filter::v1::Rule;
using filter::v1::StatusResponse;
using supervisor::v1::Event;
using supervisor::v1::ListResponse;
using supervisor::v1::Registration;
using supervisor::v1::ServiceState;
using supervisor::v1::StopReason;

enum class OutputFormat { kTable, kJson };

// A key: value block for one service.
std::string FormatRegistration(const Registration& registration, OutputFormat format);

// A table NAME STATE GEN PID VERSION ENDPOINT; the state carries its reason when not ready.
std::string FormatServiceList(const ListResponse& list, OutputFormat format);

// name is the service looked up; it stands in when the service leaves its own name empty.
std::string FormatStatus(const std::string& name, const StatusResponse& status,
                         OutputFormat format);

std::string FormatRules(const std::string& name, const ListRulesResponse& rules,
                        OutputFormat format);
std::string FormatAddedRule(const std::string& name, const AddRuleResponse& added,
                            OutputFormat format);
std::string FormatRemovedRules(const std::string& name, const std::string& domain,
                               const RemoveRuleResponse& removed, OutputFormat format);

// Exactly one line.
std::string FormatEvent(const Event& event, OutputFormat format);

// The lower-case names that both the tables and the JSON show.
std::string StateName(ServiceState state);
std::string StopReasonName(StopReason reason);
std::string ActionName(Rule::Action action);
std::string MatchName(Rule::Match match);

}  // namespace nehost::agent
