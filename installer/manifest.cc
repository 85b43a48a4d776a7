#include "installer/manifest.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/utf8.h"

namespace nehost::installer {
namespace {

constexpr size_t kMaxVersionLength = 128;
constexpr size_t kMaxPathLength = 4095;
constexpr size_t kSha256HexLength = 64;
constexpr uint32_t kMaxMode = 0777;
constexpr uint32_t kExecuteBits = 0111;

// Paths at the top of a version folder that install writes itself.
constexpr const char* kReservedPaths[] = {kManifestFile, kSignatureFile, kInstalledAtFile};

// Quoted, with anything unprintable escaped, so that a hostile name cannot break the line.
std::string Quote(const std::string& text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

std::string Octal(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0%o", value);
  return text;
}

bool IsVersionCharacter(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' ||
         c == '-';
}

bool IsServiceNameCharacter(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

bool IsLowerHex(char c) { return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f'); }

absl::Status ValidateSha256(const std::string& sha256) {
  if (sha256.size() != kSha256HexLength || !absl::c_all_of(sha256, IsLowerHex)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sha256 ", Quote(sha256), " is not 64 lower-case hex digits"));
  }
  return absl::OkStatus();
}

absl::Status ValidateFile(const PackageFile& file) {
  if (absl::Status path = ValidatePackagePath(file.path()); !path.ok()) return path;
  if (absl::c_linear_search(kReservedPaths, file.path())) {
    return absl::InvalidArgumentError("path is reserved for the installer");
  }
  if (absl::Status sha256 = ValidateSha256(file.sha256()); !sha256.ok()) return sha256;
  if (file.mode() > kMaxMode) {
    return absl::InvalidArgumentError(
        absl::StrCat("mode ", Octal(file.mode()), " has bits beyond 0777"));
  }
  return absl::OkStatus();
}

// A file's path may not also be a folder on another file's path: "bin" and "bin/x".
absl::Status CheckFolderClash(std::vector<std::string> paths) {
  std::sort(paths.begin(), paths.end());
  for (size_t i = 0; i + 1 < paths.size(); ++i) {
    if (absl::StartsWith(paths[i + 1], paths[i] + "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat("file ", Quote(paths[i]), ": also a folder of ", Quote(paths[i + 1])));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFiles(const Manifest& manifest) {
  if (manifest.files().empty()) return absl::InvalidArgumentError("lists no files");

  std::set<std::string> seen;
  for (const PackageFile& file : manifest.files()) {
    if (absl::Status valid = ValidateFile(file); !valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("file ", Quote(file.path()), ": ", valid.message()));
    }
    if (!seen.insert(file.path()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("file ", Quote(file.path()), ": listed twice"));
    }
  }
  return CheckFolderClash({seen.begin(), seen.end()});
}

const PackageFile* FindFile(const Manifest& manifest, const std::string& path) {
  for (const PackageFile& file : manifest.files()) {
    if (file.path() == path) return &file;
  }
  return nullptr;
}

absl::Status ValidateService(const Manifest& manifest, const PackageService& service) {
  if (service.name().empty() || !absl::c_all_of(service.name(), IsServiceNameCharacter)) {
    return absl::InvalidArgumentError("name is not 1 or more of A-Z a-z 0-9 . _ -");
  }
  const PackageFile* executable = FindFile(manifest, service.executable());
  if (executable == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("executable ", Quote(service.executable()), " is not among the files"));
  }
  if ((EffectiveMode(*executable) & kExecuteBits) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("executable ", Quote(service.executable()),
                                                   " has no execute bit in its mode"));
  }
  return absl::OkStatus();
}

absl::Status ValidateServices(const Manifest& manifest) {
  std::set<std::string> seen;
  for (const PackageService& service : manifest.services()) {
    const std::string subject = absl::StrCat("service ", Quote(service.name()), ": ");
    if (absl::Status valid = ValidateService(manifest, service); !valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(subject, valid.message()));
    }
    if (!seen.insert(service.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(subject, "listed twice"));
    }
  }
  return absl::OkStatus();
}

// The same manifest with files and services in a fixed order, for comparison.
Manifest Sorted(Manifest manifest) {
  auto* files = manifest.mutable_files();
  std::sort(files->begin(), files->end(),
            [](const PackageFile& a, const PackageFile& b) { return a.path() < b.path(); });
  auto* services = manifest.mutable_services();
  std::sort(services->begin(), services->end(),
            [](const PackageService& a, const PackageService& b) { return a.name() < b.name(); });
  return manifest;
}

absl::Status VerifyFile(const std::string& folder, const PackageFile& file) {
  absl::StatusOr<std::string> sha256 = Sha256File(absl::StrCat(folder, "/", file.path()));
  if (absl::IsNotFound(sha256.status())) return absl::NotFoundError("missing");
  if (!sha256.ok()) return sha256.status();
  if (*sha256 != file.sha256()) {
    return absl::DataLossError(
        absl::StrCat("sha256 mismatch: file has ", *sha256, ", manifest says ", file.sha256()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateVersion(const std::string& version) {
  if (version.empty()) return absl::InvalidArgumentError("version is empty");
  const std::string subject = absl::StrCat("version ", Quote(version));
  if (version.size() > kMaxVersionLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(subject, " is longer than ", kMaxVersionLength, " characters"));
  }
  if (!absl::c_all_of(version, IsVersionCharacter)) {
    return absl::InvalidArgumentError(
        absl::StrCat(subject, " holds a character other than A-Z a-z 0-9 . _ + -"));
  }
  if (version[0] == '.')
    return absl::InvalidArgumentError(absl::StrCat(subject, " starts with '.'"));
  if (absl::StrContains(version, kTemporaryMarker)) {
    return absl::InvalidArgumentError(
        absl::StrCat(subject, " holds \"", kTemporaryMarker, "\", which marks temporary folders"));
  }
  return absl::OkStatus();
}

absl::Status ValidatePackagePath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("path is empty");
  if (path.size() > kMaxPathLength) return absl::InvalidArgumentError("path is too long");
  // Control characters would break the one-line messages and logs that name the path.
  if (absl::c_any_of(path,
                     [](char c) { return absl::ascii_iscntrl(static_cast<unsigned char>(c)); })) {
    return absl::InvalidArgumentError("path holds a control character");
  }
  if (path[0] == '/') return absl::InvalidArgumentError("path is absolute");
  if (!IsValidUtf8(path)) return absl::InvalidArgumentError("path is not UTF-8");

  for (absl::string_view component : absl::StrSplit(path, '/')) {
    if (component.empty()) return absl::InvalidArgumentError("path has an empty component");
    if (component == "." || component == "..") {
      return absl::InvalidArgumentError(absl::StrCat("path has a \"", component, "\" component"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateManifest(const Manifest& manifest) {
  if (absl::Status version = ValidateVersion(manifest.version()); !version.ok()) return version;
  if (absl::Status files = ValidateFiles(manifest); !files.ok()) return files;
  return ValidateServices(manifest);
}

absl::StatusOr<Manifest> ParseManifest(const std::string& json) {
  // Unknown fields pass, so that an older installer reads a newer manifest; a misspelt field
  // that matters still fails validation, since its value is then missing.
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  Manifest manifest;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &manifest, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a manifest in JSON form: ", parsed.message().as_string()));
  }

  if (absl::Status valid = ValidateManifest(manifest); !valid.ok()) return valid;
  return manifest;
}

absl::StatusOr<Manifest> ReadManifest(const std::string& folder, std::string* json_out) {
  const std::string path = absl::StrCat(folder, "/", kManifestFile);
  absl::StatusOr<std::string> json = ReadFile(path);
  if (!json.ok()) return json.status();

  absl::StatusOr<Manifest> manifest = ParseManifest(*json);
  if (!manifest.ok()) {
    return absl::Status(manifest.status().code(),
                        absl::StrCat("manifest ", path, ": ", manifest.status().message()));
  }
  if (json_out != nullptr) *json_out = *std::move(json);
  return manifest;
}

absl::Status VerifyFiles(const std::string& folder, const Manifest& manifest) {
  for (const PackageFile& file : manifest.files()) {
    absl::Status verified = VerifyFile(folder, file);
    if (!verified.ok()) {
      return absl::Status(verified.code(),
                          absl::StrCat("file ", Quote(file.path()), ": ", verified.message()));
    }
  }
  return absl::OkStatus();
}

bool SameContents(const Manifest& a, const Manifest& b) {
  return google::protobuf::util::MessageDifferencer::Equals(Sorted(a), Sorted(b));
}

uint32_t EffectiveMode(const PackageFile& file) {
  return file.mode() == 0 ? kDefaultFileMode : file.mode();
}

}  // namespace nehost::installer
