// A rule set and flows of mixed kinds for the flow benchmarks, the same on every run: rules
// that match on CIDRs, exact domains, domain suffixes, executables, single ports, and a few
// port ranges and protocol-only rules; flows of which some hit a rule of each kind and most
// hit none, as on a host whose filter blocks a list of bad destinations.
//
// Pure functions; thread safe.
#pragma once

#include <cstdint>
#include <vector>

#include "nehost/filter/v1/flow.pb.h"

namespace nehost::bench {

// count rules, about a third ALLOW, the rest DENY. Of every 100: 35 CIDRs (IPv4 /16 to /32,
// some IPv6 /48), 30 exact domains, 20 domain suffixes, 8 executables, 7 single ports; plus up
// to 16 rules in all with a port range or only a protocol, which every flow is checked
// against.
std::vector<filter::v1::FlowRule> MixedRules(int count);

// count flows for a set of rule_count rules: about one in four matches a rule.
std::vector<filter::v1::Flow> MixedFlows(int count, int rule_count);

}  // namespace nehost::bench
