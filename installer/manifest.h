// The package manifest (nehost.package.v1.Manifest): what a package folder and an installed
// version folder hold, and the checks that every manifest and every file pass before nehost
// installs or runs anything from them.
//
// A manifest is manifest.json, in protobuf's JSON form, at the root of the folder; each file
// it lists lies at its relative path below that root. These functions own nothing beyond the
// call and keep no state, so they are safe from any thread; VerifyFiles and ReadManifest block
// on the disk.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nehost/package/v1/manifest.pb.h"

namespace nehost::installer {

using nehost::package::v1::Manifest;
using nehost::package::v1::PackageFile;
using nehost::package::v1::PackageService;

inline constexpr char kManifestFile[] = "manifest.json";
// Beside the manifest: its Ed25519 signatures (signature.h).
inline constexpr char kSignatureFile[] = "manifest.json.sig";
// Written by install beside the manifest in each version folder: when it was installed.
inline constexpr char kInstalledAtFile[] = "installed_at";
// Marks the installer's temporary files and folders ("2.0.0.tmp-4242"); no version holds it.
inline constexpr char kTemporaryMarker[] = ".tmp-";
// What a file gets when its manifest entry says mode 0.
inline constexpr uint32_t kDefaultFileMode = 0644;

// 1 to 128 of [A-Za-z0-9._+-], not starting with '.', without kTemporaryMarker.
absl::Status ValidateVersion(const std::string& version);

// Relative and '/'-separated, with no empty, "." or ".." component and no control character.
absl::Status ValidatePackagePath(const std::string& path);

// Everything that can be checked without reading the files: the version, each path, sha256
// and mode, duplicates, and that each service's executable is a listed, executable file.
absl::Status ValidateManifest(const Manifest& manifest);

// Parses the JSON form and validates it. INVALID_ARGUMENT names the first problem.
absl::StatusOr<Manifest> ParseManifest(const std::string& json);

// Reads and validates FOLDER/manifest.json. NOT_FOUND when there is none. json, when given,
// receives the file's bytes, so that a copy of the manifest is the one that was checked.
absl::StatusOr<Manifest> ReadManifest(const std::string& folder, std::string* json = nullptr);

// Checks that every listed file is present under folder with its sha256. The error names the
// first file that fails and why.
absl::Status VerifyFiles(const std::string& folder, const Manifest& manifest);

// Whether two manifests describe the same files and services, whatever their order.
bool SameContents(const Manifest& a, const Manifest& b);

uint32_t EffectiveMode(const PackageFile& file);

}  // namespace nehost::installer
