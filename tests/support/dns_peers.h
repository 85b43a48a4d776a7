// DNS peers for integration tests and benchmarks, all on 127.0.0.1: dnsmasq from Debian as an
// upstream with records of the test's choosing, dig from Debian as a client, ports reserved
// for them.
//
// dnsmasq cannot bind port 0, so a port is reserved (bound to 0, read, closed) and dnsmasq is
// started on it, again on another port when it loses the race for that one. Every process is
// a Subprocess: killed and reaped when its object goes. Not thread safe; calls block up to the
// deadlines they name.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "tests/support/process.h"

namespace nehost::testing {

// A port that was free on 127.0.0.1 for both UDP and TCP a moment ago.
uint16_t ReservePort();

// A UDP and a TCP socket bound to the same free port on 127.0.0.1, the TCP one listening:
// what nehostd would pass to a DNS server.
struct DnsSocketPair {
  UniqueFd udp;
  UniqueFd tcp;
  uint16_t port = 0;
};
DnsSocketPair BindDnsSocketPair();

class Dnsmasq {
 public:
  // Starts dnsmasq on a free port with records given as its own options (for example
  // "--address=/up.example/192.0.2.1") and waits until it answers. Aborts the test on failure.
  Dnsmasq(const TempDir& root, const std::vector<std::string>& records,
          const std::string& log_name = "dnsmasq.log");
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  Subprocess* process() { return process_.get(); }

 private:
  uint16_t port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

struct DigResult {
  bool answered = false;             // false: dig timed out or failed
  std::string status;                // "NOERROR", "NXDOMAIN", "SERVFAIL"...
  std::vector<std::string> answers;  // the RDATA of each answer record, in order
  bool truncated = false;
  std::string output;  // all of it, for failure messages
};

// dig @127.0.0.1 -p port name type, one try of timeout_s seconds; extra are dig options
// such as "+tcp" or "+ignore".
DigResult Dig(uint16_t port, const std::string& name, const std::string& type = "A",
              const std::vector<std::string>& extra = {}, int timeout_s = 3);

// Waits until something answers DNS on port.
bool WaitForDns(uint16_t port, absl::Duration timeout);

}  // namespace nehost::testing
