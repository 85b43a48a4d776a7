#include "supervisor/registry.h"

#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace nehost::supervisor {

absl::Status Registry::Load() {
  nehost::supervisor::v1::RegistryFile file;
  if (absl::Status read = ReadJsonProto(path_, &file); !read.ok()) return read;
  if (file.schema_version() > kRegistrySchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("registry ", path_, " has schema version ", file.schema_version(),
                     "; this nehostd reads up to ", kRegistrySchemaVersion));
  }

  std::map<std::string, Registration> loaded;
  for (Registration& registration : *file.mutable_registrations()) {
    if (registration.name().empty()) {
      return absl::DataLossError(absl::StrCat("registry ", path_, " holds a nameless record"));
    }
    std::string name = registration.name();
    loaded[name] = std::move(registration);
  }
  registrations_ = std::move(loaded);
  return absl::OkStatus();
}

absl::Status Registry::Save() const { return WriteJsonProto(path_, Snapshot()); }

nehost::supervisor::v1::RegistryFile Registry::Snapshot() const {
  nehost::supervisor::v1::RegistryFile file;
  file.set_schema_version(kRegistrySchemaVersion);
  for (const auto& [name, registration] : registrations_) *file.add_registrations() = registration;
  return file;
}

const Registration* Registry::Find(const std::string& name) const {
  auto found = registrations_.find(name);
  return found == registrations_.end() ? nullptr : &found->second;
}

Registration& Registry::FindOrAdd(const std::string& name) {
  Registration& registration = registrations_[name];
  registration.set_name(name);
  return registration;
}

void Registry::Remove(const std::string& name) { registrations_.erase(name); }

std::vector<Registration> Registry::All() const {
  std::vector<Registration> all;
  for (const auto& [name, registration] : registrations_) all.push_back(registration);
  return all;
}

}  // namespace nehost::supervisor
