#include "bench/flow_rules_corpus.h"

#include <random>
#include <string>

#include "absl/strings/str_cat.h"

namespace nehost::bench {
namespace {

using filter::v1::Flow;
using filter::v1::FlowRule;

constexpr int kMostScannedRules = 16;

// The i-th rule's criterion, by kind; the flows below aim at the same values.
std::string V4Host(int i) {
  return absl::StrCat(10 + i % 200, ".", i / 200 % 256, ".", i % 256, ".", i % 250 + 1);
}
// The network of V4Host(i) with a prefix length of 16, 24 or 32.
std::string V4Network(int i, int length) {
  if (length == 32) return V4Host(i);
  if (length == 24) return absl::StrCat(10 + i % 200, ".", i / 200 % 256, ".", i % 256, ".0");
  return absl::StrCat(10 + i % 200, ".", i / 200 % 256, ".0.0");
}
std::string V6Network(int i) { return absl::StrCat("2001:db8:", absl::Hex(i % 65536), "::"); }
std::string Domain(int i) { return absl::StrCat("host", i, ".example", i % 97, ".com"); }
std::string SuffixDomain(int i) { return absl::StrCat("ads", i, ".example", i % 89, ".net"); }
std::string Executable(int i) { return absl::StrCat("/opt/app", i, "/bin/run"); }
uint32_t Port(int i) { return 1024 + i % 60000; }

enum class Kind { kCidr, kDomain, kSuffix, kExecutable, kPort };

Kind KindOf(int i) {
  const int slot = i % 100;
  if (slot < 35) return Kind::kCidr;
  if (slot < 65) return Kind::kDomain;
  if (slot < 85) return Kind::kSuffix;
  if (slot < 93) return Kind::kExecutable;
  return Kind::kPort;
}

}  // namespace

std::vector<FlowRule> MixedRules(int count) {
  std::vector<FlowRule> rules;
  rules.reserve(count);
  for (int i = 0; i < count; ++i) {
    FlowRule rule;
    rule.set_name(absl::StrCat("rule-", i));
    rule.set_action(i % 3 == 0 ? FlowRule::ALLOW : FlowRule::DENY);

    const int scanned = std::min(kMostScannedRules, count / 10);
    if (i < scanned) {
      // A port range, or only a protocol: rules no index narrows down.
      if (i % 2 == 0) {
        rule.set_port_min(40000 + i * 10);
        rule.set_port_max(40000 + i * 10 + 5);
      } else {
        rule.set_protocol(Flow::ICMP);
        rule.set_direction(Flow::INBOUND);
      }
      rules.push_back(std::move(rule));
      continue;
    }

    switch (KindOf(i)) {
      case Kind::kCidr:
        if (i % 7 == 0) {
          rule.add_cidrs(V6Network(i) + "/48");
        } else {
          const int length = 16 + 8 * (i % 3);  // /16, /24, /32
          rule.add_cidrs(absl::StrCat(V4Network(i, length), "/", length));
        }
        rule.set_protocol(Flow::TCP);
        break;
      case Kind::kDomain:
        rule.set_domain(Domain(i));
        break;
      case Kind::kSuffix:
        rule.set_domain(SuffixDomain(i));
        rule.set_domain_match(FlowRule::SUFFIX);
        break;
      case Kind::kExecutable:
        rule.set_executable(Executable(i));
        break;
      case Kind::kPort:
        rule.set_port_min(Port(i));
        rule.set_protocol(Flow::UDP);
        break;
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

std::vector<Flow> MixedFlows(int count, int rule_count) {
  std::mt19937 random(7);
  std::vector<Flow> flows;
  flows.reserve(count);
  for (int n = 0; n < count; ++n) {
    Flow flow;
    flow.set_id(n);
    flow.set_protocol(Flow::TCP);
    flow.set_direction(Flow::OUTBOUND);
    flow.set_remote_port(443);
    flow.set_local_port(30000 + n % 20000);
    flow.set_pid(1000 + n % 300);
    flow.set_executable("/usr/bin/firefox");
    flow.set_remote_address(absl::StrCat("198.51.", random() % 256, ".", random() % 256));
    flow.set_hostname(absl::StrCat("www", random() % 1000, ".example.org"));

    // One flow in four aims at a rule, of whatever kind that rule is.
    const int i = static_cast<int>(random() % std::max(rule_count, 1));
    if (n % 4 == 0 && rule_count > 0) {
      switch (KindOf(i)) {
        case Kind::kCidr:
          flow.set_remote_address(i % 7 == 0 ? V6Network(i) + "42" : V4Host(i));
          break;
        case Kind::kDomain:
          flow.set_hostname(Domain(i));
          break;
        case Kind::kSuffix:
          flow.set_hostname(absl::StrCat("cdn.", SuffixDomain(i)));
          break;
        case Kind::kExecutable:
          flow.set_executable(Executable(i));
          break;
        case Kind::kPort:
          flow.set_protocol(Flow::UDP);
          flow.set_remote_port(Port(i));
          break;
      }
    }
    flows.push_back(std::move(flow));
  }
  return flows;
}

}  // namespace nehost::bench
