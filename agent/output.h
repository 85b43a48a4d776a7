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
// line (watch and upgrade: one per line as they happen). The fields:
//
//   lookup, start, stop, restart: a registration object
//     always:        name, generation, pid, version, state, endpoint, enabled
//     when present:  state_reason, executable, start_time_ticks, restart_count,
//                    recent_exits, next_attempt_at, status_text, upgrading_to,
//                    other_generations (generation objects)
//   list:            {"services": [registration objects]}
//   status:          service, version, pid, generation, uptime_ms, rule_count
//   rules list:      {"service", "rules": [rule objects]}
//   rules add:       {"service", "added" (false when already in force), "rule": rule object}
//   rules remove:    {"service", "domain", "removed" (how many)}
//   watch, per line: at, name, generation, pid, state, kind; "message" and "exit" (an exit
//                    object) when present
//   upgrade, per line: at, step, generation, pid, done; "message" when present; on the last
//                    line (done true) also "succeeded" and "rolled_back"
//   doctor:          registration (a registration object), checks ([{name, ok, detail}]),
//                    strays ([{pid, executable, why}]), summary, healthy (every check ok and
//                    no stray)
//   reexec:          pid (of nehostd), back (whether it answered again in time), and
//                    "back_after_ms" when it did
//   flows list:      {"service", "default_action", "rules": [flow rule objects]}
//   flows add:       {"service", "added" (false when already in force), "rule": flow rule}
//   flows remove:    {"service", "rule" (the name), "removed"}
//   flows default:   {"service", "default_action"}
//   evaluate:        service, flow_id, action ("allow", "deny"), and "rule" when a rule
//                    decided (none: the default action did)
//   stats:           service, calls ({method: count}), counters ({name: count}), rule_hits
//                    ({"flow/NAME": count}), histograms ([{name, upper_bounds, counts, count,
//                    sum}]), and "last_checkpoint" when one was written
//   decisions, per line: at, kind ("flow", "dns"), action, "rule" and "error" when set,
//                    "dropped_before" when not 0, and "flow" (a flow object) or "dns" (client,
//                    name, type, outcome, rcode, upstream_latency_us)
//
//   flow rule object: name, action, and when set: cidrs, port_min, port_max, protocol ("tcp",
//                    "udp", "icmp"), direction ("outbound", "inbound"), domain, domain_match
//                    ("exact", "suffix"), executable
//   flow object:     id, protocol, direction, and when set: remote_address, remote_port,
//                    hostname, local_port, pid, executable
//
//   rule object:     domain, action ("deny", "allow"), match ("exact", "suffix")
//   exit object:     generation, pid, reason, and "signal" when a signal ended it, else
//                    "exit_code"; "at" and "description" when present
//   generation object: role ("candidate", "draining"), generation, pid, version
//   state:           "starting", "ready", "draining", "stopping", "stopped", "backoff",
//                    "failed" ("unspecified" when unset)
//   reason:          "requested", "superseded", "crashed", "never_ready", "host_shutdown"
//                    ("unspecified" when unset)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "nehost/filter/v1/filter.pb.h"
#include "nehost/filter/v1/flow.pb.h"
#include "nehost/filter/v1/stats.pb.h"
#include "nehost/supervisor/v1/supervisor.pb.h"

namespace nehost::agent {

using filter::v1::AddFlowRuleResponse;
using filter::v1::AddRuleResponse;
using filter::v1::Decision;
using filter::v1::Flow;
using filter::v1::FlowRule;
using filter::v1::ImportLineError;
using filter::v1::ImportRulesResponse;
using filter::v1::ListFlowRulesResponse;
using filter::v1::ListRulesResponse;
using filter::v1::RemoveListResponse;
using filter::v1::RemoveRuleResponse;
using filter::v1::Rule;
using filter::v1::RuleList;
using filter::v1::StatsResponse;
using filter::v1::StatusResponse;
using filter::v1::Verdict;
using supervisor::v1::DoctorResponse;
using supervisor::v1::Event;
using supervisor::v1::GenerationRecord;
using supervisor::v1::ListResponse;
using supervisor::v1::Registration;
using supervisor::v1::ServiceState;
using supervisor::v1::StopReason;
using supervisor::v1::UpgradeProgress;

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
// The outcome of an import; in table form one line, with the invalid lines left to
// FormatImportErrors ("FILE:LINE: message" each, for stderr).
std::string FormatImport(const std::string& name, const std::string& path,
                         const ImportRulesResponse& imported, OutputFormat format);
std::string FormatImportErrors(const std::string& path, const ImportRulesResponse& imported);
std::string FormatRemovedList(const std::string& name, const std::string& list,
                              const RemoveListResponse& removed, OutputFormat format);
std::string FormatRemovedRules(const std::string& name, const std::string& domain,
                               const RemoveRuleResponse& removed, OutputFormat format);

// Exactly one line; the table starts with the event's time, HH:MM:SS.mmm in UTC.
std::string FormatEvent(const Event& event, OutputFormat format);

// One step of an upgrade as a line that does not change: "HH:MM:SS.mmm step message" (the
// time in UTC), or a JSON object.
std::string FormatProgress(const UpgradeProgress& progress, OutputFormat format);

// The step of an upgrade that a terminal shows, with how long it has taken so far or took:
// "launch      12 ms  started generation 4 pid 4242". No newline; never wider than columns
// (0: no limit), so that a carriage return can overwrite it.
std::string FormatLiveStep(const std::string& step, const std::string& message,
                           absl::Duration elapsed, int columns);

// The last line of an upgrade: "upgraded NAME to generation G (version V) in X ms". The
// version is left out when empty.
std::string FormatUpgraded(const std::string& name, uint64_t generation, const std::string& version,
                           absl::Duration elapsed);
// "rolled back NAME: REASON; generation N keeps serving", or with what went wrong when
// nehostctl could not tell which generation serves.
std::string FormatRolledBack(const std::string& name, const std::string& reason,
                             uint64_t serving_generation);
std::string FormatRolledBackUnknown(const std::string& name, const std::string& reason,
                                    const std::string& why_unknown);

// The registration, each check, the strays, the recent exits, then the summary.
std::string FormatDoctor(const DoctorResponse& doctor, OutputFormat format);
// Whether every check is ok and no stray runs: what doctor's exit status reports.
bool DoctorFoundNothingWrong(const DoctorResponse& doctor);

// The table prints "nehostd pid P re-executing; services keep running" at once, then
// "nehostd is back after N ms" once it answers; the JSON is one object, at the end.
std::string FormatReexecStarted(int32_t pid);
std::string FormatReexecEnded(int32_t pid, std::optional<absl::Duration> back_after,
                              OutputFormat format);

// A table NAME ACTION CRITERIA, then the default action.
std::string FormatFlowRules(const std::string& name, const ListFlowRulesResponse& rules,
                            OutputFormat format);
std::string FormatAddedFlowRule(const std::string& name, const AddFlowRuleResponse& added,
                                OutputFormat format);
std::string FormatRemovedFlowRule(const std::string& name, const std::string& rule, bool removed,
                                  OutputFormat format);
std::string FormatDefaultFlowAction(const std::string& name, FlowRule::Action action,
                                    OutputFormat format);
// "deny (rule no-telnet)", "allow (default action)".
std::string FormatVerdict(const std::string& name, const Verdict& verdict, OutputFormat format);
// Sections: calls, counters, rule hits, histograms; names sorted.
std::string FormatStats(const std::string& name, const StatsResponse& stats, OutputFormat format);
// Exactly one line; the table starts with the decision's time, HH:MM:SS.mmm in UTC.
std::string FormatDecision(const Decision& decision, OutputFormat format);
// "tcp outbound port 443 cidr 10.0.0.0/8 domain *.example.com executable /usr/bin/curl", or
// "any flow".
std::string FlowRuleCriteria(const FlowRule& rule);

// HH:MM:SS.mmm in UTC.
std::string ClockTime(const google::protobuf::Timestamp& at);

// The lower-case names that both the tables and the JSON show.
std::string StateName(ServiceState state);
std::string StopReasonName(StopReason reason);
std::string RoleName(GenerationRecord::Role role);
std::string ActionName(Rule::Action action);
std::string MatchName(Rule::Match match);
std::string FlowActionName(FlowRule::Action action);
std::string ProtocolName(Flow::Protocol protocol);
std::string DirectionName(Flow::Direction direction);

}  // namespace nehost::agent
