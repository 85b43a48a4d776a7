// Flow rules, and the matcher that turns a flow into a verdict.
//
// FlowRules is a compiled, immutable set: CIDRs parsed into address ranges and domains
// normalised once, then evaluated by any number of threads at once without a lock. A flow
// that an ALLOW rule matches is allowed, whatever DENY rules match too; else a DENY rule that
// matches denies it; else the default action holds. The rule named in the verdict is the
// first matching one in that order: ALLOW rules before DENY rules, each kind in list order.
//
// Evaluation does not scan every rule. Each rule is filed under its most selective criterion
// (exact domain, domain suffix, CIDR, executable, single port) in a hash table, and only the
// rules filed under the flow's own hostname, suffixes, address prefixes, executable and port
// are checked, plus those with none of these criteria. The answer is the same as a scan's.
//
// FlowRuleStore keeps the rule list in memory and in STATE/flow_rules.json (a
// nehost.filter.v1.FlowRuleFile in JSON form, schema_version 1). A change is written to disk
// first, then a new compiled set is swapped in: evaluation never waits for a change, and a
// failed write changes nothing. Decisions are counted per rule in a CounterSet, under
// "rule_hits/flow/NAME", so the counts outlive a replaced rule set and the process. Its
// methods are thread safe; Add, Remove, SetDefault and Reload block on the disk.
//
//   std::shared_ptr<const FlowRules> rules = store->Current();   // once per batch
//   ParsedFlow parsed;                                           // reused for every flow
//   if (ParseFlow(flow, &parsed).ok()) FlowDecision decision = rules->Evaluate(parsed);
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "extension/counters.h"
#include "nehost/filter/v1/flow.pb.h"

namespace nehost::filter {

using Flow = nehost::filter::v1::Flow;
using FlowRule = nehost::filter::v1::FlowRule;

inline constexpr uint32_t kFlowRuleFileSchemaVersion = 1;
inline constexpr char kFlowRuleFileName[] = "flow_rules.json";
// Per-rule decision counters are named this and the rule's name.
inline constexpr char kFlowRuleHitsPrefix[] = "rule_hits/flow/";
inline constexpr int kMaxCidrsPerRule = 1024;

// An IPv4 address is kept IPv4-mapped (::ffff:a.b.c.d), so one comparison serves both.
using Address = unsigned __int128;

// A flow as the matcher reads it: the address parsed, the hostname in canonical form. It
// points into the Flow it was parsed from, which must outlive it, and is meant to be reused
// from one flow to the next, so that parsing a batch allocates nothing.
struct ParsedFlow {
  ParsedFlow() = default;
  ParsedFlow(const ParsedFlow&) = delete;
  ParsedFlow& operator=(const ParsedFlow&) = delete;

  Flow::Protocol protocol = Flow::PROTOCOL_UNSPECIFIED;
  Flow::Direction direction = Flow::DIRECTION_UNSPECIFIED;
  bool has_address = false;
  Address address = 0;
  uint32_t remote_port = 0;
  // Lower case, without a trailing dot; empty when unknown.
  absl::string_view hostname;
  absl::string_view executable;

  // Holds the hostname when the flow's own was not canonical already.
  std::string hostname_storage;
};

// Fills *parsed from flow. INVALID_ARGUMENT, naming the flow's id and the field, for an
// address that is not one, a port past 65535, or an unknown protocol or direction.
absl::Status ParseFlow(const Flow& flow, ParsedFlow* parsed);

// The rule with defaults filled in (DENY, EXACT, port_max) and its domain normalised;
// INVALID_ARGUMENT naming the rule and the field when something is wrong with it.
absl::StatusOr<FlowRule> NormalizeFlowRule(const FlowRule& rule);

struct FlowDecision {
  FlowRule::Action action = FlowRule::ALLOW;
  // The deciding rule, or nullptr when the default decided. Valid while the FlowRules is.
  const FlowRule* rule = nullptr;
};

class FlowRules {
 public:
  ~FlowRules();

  // How Evaluate finds the rules to check: through the index, or by checking each rule in
  // turn. The scan exists to compare against, in tests and benchmarks.
  enum class Matching { kIndexed, kScan };

  // rules must be normalised (NormalizeFlowRule) and their names unique. Each rule counts its
  // decisions in hits, under kFlowRuleHitsPrefix and its name; hits must outlive the set.
  static std::shared_ptr<const FlowRules> Compile(const std::vector<FlowRule>& rules,
                                                  FlowRule::Action default_action, CounterSet* hits,
                                                  Matching matching = Matching::kIndexed);

  // Counts the decision against its rule.
  FlowDecision Evaluate(const ParsedFlow& flow) const;

  size_t size() const;
  FlowRule::Action default_action() const { return default_action_; }

  struct Range {
    Address first = 0;
    Address last = 0;
  };

 private:
  struct Compiled;
  struct Index;

  FlowRules();
  void BuildIndex();
  uint32_t FirstMatchIndexed(const ParsedFlow& flow) const;
  uint32_t FirstMatchScan(const ParsedFlow& flow) const;

  // ALLOW rules first: the first rule that matches decides.
  std::vector<Compiled> rules_;
  std::unique_ptr<Index> index_;
  FlowRule::Action default_action_ = FlowRule::ALLOW;
};

class FlowRuleStore {
 public:
  // Loads STATE/flow_rules.json; a missing file is no rules and the default ALLOW. A file
  // that does not load is an error, and is left untouched. hits must outlive the store.
  static absl::StatusOr<std::unique_ptr<FlowRuleStore>> Open(const std::string& state_dir,
                                                             CounterSet* hits);

  std::shared_ptr<const FlowRules> Current() const { return current_.load(); }

  struct AddResult {
    // False when the same rule was already in force.
    bool added = false;
    // The rule as stored, normalised.
    FlowRule rule;
  };
  // A rule of the same name is replaced, and keeps its place in the list.
  absl::StatusOr<AddResult> Add(const FlowRule& rule);
  // Whether a rule of that name was there.
  absl::StatusOr<bool> Remove(const std::string& name);
  // ALLOW or DENY.
  absl::Status SetDefault(FlowRule::Action action);
  // Reads the file again, as a generation does once its predecessor has drained. A file that
  // does not load leaves the rules in force as they are, and the error is logged and returned.
  absl::Status Reload();

  // In the order they were first added.
  std::vector<FlowRule> List() const;
  FlowRule::Action default_action() const;
  size_t size() const;

 private:
  FlowRuleStore(std::string path, std::vector<FlowRule> rules, FlowRule::Action default_action,
                CounterSet* hits);

  absl::Status Save(const std::vector<FlowRule>& rules, FlowRule::Action default_action) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  CounterSet* const hits_;
  mutable absl::Mutex mu_;
  std::vector<FlowRule> rules_ ABSL_GUARDED_BY(mu_);
  FlowRule::Action default_action_ ABSL_GUARDED_BY(mu_);
  std::atomic<std::shared_ptr<const FlowRules>> current_;
};

}  // namespace nehost::filter
