// Service definitions: one protobuf text-format file per service in CONFIG/services.d/,
// named anything ending in ".textproto" or ".conf".
//
//   name: "org.nehost.filter"
//   executable: "/opt/nehost/current/bin/nehost-filter"
//   restart { initial_backoff_ms: 100 }
//
// A file that does not parse, or names a service badly, is reported with its path and line
// and skipped: the other services still load. With no definitions at all, nehostd hosts the
// nehost-filter beside its own executable as org.nehost.filter, the embedded default.
// Everything here blocks on the file system.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nehost/supervisor/v1/supervisor.pb.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::ServiceDefinition;

inline constexpr char kDefaultServiceName[] = "org.nehost.filter";
// Where the embedded default serves DNS, over UDP and TCP.
inline constexpr char kDefaultDnsAddress[] = "127.0.0.1:5353";

struct LoadedDefinitions {
  std::vector<ServiceDefinition> definitions;
  // One per file that was skipped, each naming the file and the cause.
  std::vector<absl::Status> errors;
  bool embedded_default = false;
};

// Reads CONFIG/services.d. A folder that is missing counts as empty; one that cannot be read
// is an error in `errors`.
// With no definitions, the embedded default serves DNS on default_dns_address ("ADDR:PORT"),
// or on none when it is empty.
LoadedDefinitions LoadServiceDefinitions(
    const std::string& config_dir, const std::string& self_dir,
    const std::string& default_dns_address = kDefaultDnsAddress);

// Parses one definition; `source` names it in errors, `base_dir` anchors a relative
// executable path.
absl::StatusOr<ServiceDefinition> ParseServiceDefinition(const std::string& text,
                                                         const std::string& source,
                                                         const std::string& base_dir);

// The definition of the embedded default: nehost-filter from self_dir.
ServiceDefinition EmbeddedDefaultDefinition(const std::string& self_dir,
                                            const std::string& dns_address = kDefaultDnsAddress);

inline constexpr char kNehostdConfigFile[] = "nehostd.textproto";

// CONFIG/nehostd.textproto, a nehost.supervisor.v1.NehostdConfig in text format; the defaults
// when there is no such file. An error names the file, the line and the cause.
absl::StatusOr<nehost::supervisor::v1::NehostdConfig> LoadNehostdConfig(
    const std::string& config_dir);

// Reverse-DNS: at least two dot-separated labels of [a-z0-9-], at most 200 bytes.
bool IsValidServiceName(const std::string& name);

}  // namespace nehost::supervisor
