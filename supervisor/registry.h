// The registry: what nehostd knows of each service name, persisted in STATE/registry.json.
//
// Registry holds one Registration per name in memory. Save writes the whole file atomically
// (temporary file, fsync, rename, fsync of the folder), so a crash mid-write leaves the last
// good copy; nehostd itself hands a Snapshot to a RegistryWriter instead, which writes it the
// same way without its lock held. Load refuses a file that does not parse and leaves it
// where it is for an operator to inspect. Not thread safe: the Supervisor serialises access
// under its lock. Save blocks on the disk.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nehost/supervisor/v1/supervisor.pb.h"

namespace nehost::supervisor {

using nehost::supervisor::v1::Registration;

inline constexpr uint32_t kRegistrySchemaVersion = 1;

class Registry {
 public:
  explicit Registry(std::string path) : path_(std::move(path)) {}

  // Replaces the contents with the file's. NOT_FOUND when there is no file yet (a first
  // start), DATA_LOSS when it is corrupt, FAILED_PRECONDITION for a newer schema.
  absl::Status Load();

  absl::Status Save() const;
  // The file's contents, as Save writes them.
  nehost::supervisor::v1::RegistryFile Snapshot() const;

  const Registration* Find(const std::string& name) const;
  Registration& FindOrAdd(const std::string& name);
  void Remove(const std::string& name);
  std::vector<Registration> All() const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::map<std::string, Registration> registrations_;
};

}  // namespace nehost::supervisor
