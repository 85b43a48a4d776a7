#include "supervisor/service_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/listen_fds.h"

namespace nehost::supervisor {
namespace {

// Collects the first parse error with its line, so the message names where to look.
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (!error_.empty()) return;
    // The tokenizer counts from zero.
    error_ = absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

absl::Status CheckListeners(const ServiceDefinition& definition, const std::string& source) {
  std::set<std::string> names = {"grpc"};
  for (const auto& listener : definition.listeners()) {
    if (!IsValidFdName(listener.name())) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": listener name \"", listener.name(),
                       "\" must be 1 to 255 printable characters without ':' or spaces"));
    }
    if (!names.insert(listener.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": listener name \"", listener.name(), "\" is used twice"));
    }
    if (listener.address_case() == listener.ADDRESS_NOT_SET) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": listener \"", listener.name(), "\" needs unix_path, tcp or udp"));
    }
  }
  return absl::OkStatus();
}

bool IsDefinitionFile(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  return extension == ".textproto" || extension == ".conf";
}

}  // namespace

bool IsValidServiceName(const std::string& name) {
  if (name.empty() || name.size() > 200) return false;
  std::vector<absl::string_view> labels = absl::StrSplit(name, '.');
  if (labels.size() < 2) return false;
  return std::all_of(labels.begin(), labels.end(), [](absl::string_view label) {
    if (label.empty() || label.front() == '-' || label.back() == '-') return false;
    return std::all_of(label.begin(), label.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
  });
}

absl::StatusOr<ServiceDefinition> ParseServiceDefinition(const std::string& text,
                                                         const std::string& source,
                                                         const std::string& base_dir) {
  google::protobuf::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);

  ServiceDefinition definition;
  if (!parser.ParseFromString(text, &definition)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", errors.error()));
  }
  if (!IsValidServiceName(definition.name())) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": name \"", definition.name(),
                     "\" is not a reverse-DNS service name such as org.example.filter"));
  }
  if (definition.executable().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": executable is missing"));
  }
  if (absl::Status listeners = CheckListeners(definition, source); !listeners.ok()) {
    return listeners;
  }

  std::filesystem::path executable(definition.executable());
  if (!definition.package_prefix().empty()) {
    // Packaged: the executable is a path inside each installed version.
    if (!std::filesystem::path(definition.package_prefix()).is_absolute() ||
        executable.is_absolute() || definition.executable().find("..") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(source,
                       ": with package_prefix, the prefix must be absolute and executable a path "
                       "inside a version, such as \"bin/nehost-filter\""));
    }
    return definition;
  }
  if (executable.is_relative()) {
    definition.set_executable((std::filesystem::path(base_dir) / executable).lexically_normal());
  }
  return definition;
}

absl::StatusOr<nehost::supervisor::v1::NehostdConfig> LoadNehostdConfig(
    const std::string& config_dir) {
  std::string path = absl::StrCat(config_dir, "/", kNehostdConfigFile);
  nehost::supervisor::v1::NehostdConfig config;
  absl::StatusOr<std::string> text = ReadFile(path);
  if (absl::IsNotFound(text.status())) return config;
  if (!text.ok()) return text.status();

  google::protobuf::TextFormat::Parser parser;
  FirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(*text, &config)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", errors.error()));
  }
  return config;
}

ServiceDefinition EmbeddedDefaultDefinition(const std::string& self_dir,
                                            const std::string& dns_address) {
  ServiceDefinition definition;
  definition.set_name(kDefaultServiceName);
  definition.set_executable((std::filesystem::path(self_dir) / "nehost-filter").string());
  if (dns_address.empty()) return definition;

  // DNS on a port that needs no privilege; nehost-filter forwards to /etc/resolv.conf's
  // servers. Optional, so that a host where something else holds the port still gets the
  // filter's API.
  auto* udp = definition.add_listeners();
  udp->set_name("dns-udp");
  udp->set_udp(dns_address);
  udp->set_optional(true);
  auto* tcp = definition.add_listeners();
  tcp->set_name("dns-tcp");
  tcp->set_tcp(dns_address);
  tcp->set_optional(true);
  return definition;
}

LoadedDefinitions LoadServiceDefinitions(const std::string& config_dir, const std::string& self_dir,
                                         const std::string& default_dns_address) {
  LoadedDefinitions loaded;
  std::filesystem::path folder = std::filesystem::path(config_dir) / "services.d";

  std::error_code error;
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(folder, error), end; !error && it != end;
       it.increment(error)) {
    if (IsDefinitionFile(it->path())) files.push_back(it->path());
  }
  if (error && error != std::errc::no_such_file_or_directory) {
    loaded.errors.push_back(ErrnoStatus(error.value(), "read folder", folder.string()));
  }
  std::sort(files.begin(), files.end());

  std::set<std::string> names;
  for (const std::filesystem::path& file : files) {
    absl::StatusOr<std::string> text = ReadFile(file.string());
    absl::StatusOr<ServiceDefinition> definition =
        text.ok() ? ParseServiceDefinition(*text, file.string(), folder.string()) : text.status();
    if (definition.ok() && !names.insert(definition->name()).second) {
      definition = absl::AlreadyExistsError(absl::StrCat(
          file.string(), ": service ", definition->name(), " is defined by an earlier file"));
    }
    if (!definition.ok()) {
      loaded.errors.push_back(definition.status());
      continue;
    }
    loaded.definitions.push_back(std::move(*definition));
  }

  // Only an empty configuration gets the embedded default: a folder whose every file is
  // broken must not silently start something the operator did not ask for.
  if (files.empty() && loaded.errors.empty()) {
    loaded.definitions.push_back(EmbeddedDefaultDefinition(self_dir, default_dns_address));
    loaded.embedded_default = true;
  }
  return loaded;
}

}  // namespace nehost::supervisor
