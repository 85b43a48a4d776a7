#include "extension/query_decisions.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace nehost::filter {
namespace {

std::string ClientText(const sockaddr* address, socklen_t length) {
  char host[INET6_ADDRSTRLEN] = "";
  if (address == nullptr) return "";
  if (address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    ::inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    return absl::StrCat(host, ":", ntohs(v4->sin_port));
  }
  if (address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    return absl::StrCat("[", host, "]:", ntohs(v6->sin6_port));
  }
  return "";
}

std::string TypeText(uint16_t type) {
  switch (type) {
    case 1:
      return "A";
    case 2:
      return "NS";
    case 5:
      return "CNAME";
    case 6:
      return "SOA";
    case 12:
      return "PTR";
    case 15:
      return "MX";
    case 16:
      return "TXT";
    case 28:
      return "AAAA";
    case 33:
      return "SRV";
    case 64:
      return "SVCB";
    case 65:
      return "HTTPS";
    default:
      return absl::StrCat(type);
  }
}

std::string RcodeText(dns::Rcode rcode) {
  switch (rcode) {
    case dns::Rcode::kNoError:
      return "NOERROR";
    case dns::Rcode::kFormErr:
      return "FORMERR";
    case dns::Rcode::kServFail:
      return "SERVFAIL";
    case dns::Rcode::kNxDomain:
      return "NXDOMAIN";
    case dns::Rcode::kNotImp:
      return "NOTIMP";
    case dns::Rcode::kRefused:
      return "REFUSED";
  }
  return absl::StrCat(static_cast<int>(rcode));
}

const char* OutcomeText(QueryEvent::Outcome outcome) {
  switch (outcome) {
    case QueryEvent::Outcome::kBlocked:
      return "blocked";
    case QueryEvent::Outcome::kCached:
      return "cached";
    case QueryEvent::Outcome::kForwarded:
      return "forwarded";
    case QueryEvent::Outcome::kFailed:
      return "failed";
    case QueryEvent::Outcome::kNotImplemented:
      return "not_implemented";
  }
  return "unknown";
}

}  // namespace

Decision QueryDecision(const QueryEvent& event, absl::Time at) {
  Decision decision;
  *decision.mutable_at() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(at));

  nehost::filter::v1::DnsQuery* query = decision.mutable_dns();
  query->set_client(ClientText(event.client, event.client_length));
  query->set_name(std::string(event.name));
  query->set_type(TypeText(event.type));
  query->set_outcome(OutcomeText(event.outcome));
  query->set_rcode(RcodeText(event.rcode));
  query->set_upstream_latency_us(static_cast<uint32_t>(event.upstream_latency.count()));

  const bool blocked = event.outcome == QueryEvent::Outcome::kBlocked;
  decision.mutable_verdict()->set_action(blocked ? FlowRule::DENY : FlowRule::ALLOW);
  decision.mutable_verdict()->set_rule(std::string(event.rule));
  return decision;
}

std::function<void(const QueryEvent&)> PublishQueriesTo(DecisionHub* hub) {
  return [hub](const QueryEvent& event) {
    if (!hub->HasWatchers()) return;
    hub->Publish(std::vector<Decision>{QueryDecision(event, absl::Now())});
  };
}

}  // namespace nehost::filter
