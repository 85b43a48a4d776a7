// Package archives: a package folder (manifest.json, manifest.json.sig and the files the
// manifest lists) as one tar file, plain or compressed, read and written with libarchive.
//
// Extraction treats the archive as hostile until the manifest's signature and hashes have
// been checked, which happens after it, on the extracted folder. So it writes only below
// the target folder, and refuses the whole archive at the first entry that is not a plain
// relative path to a regular file or folder:
//   - an absolute path, a ".." or empty component, a control character, a name that is not
//     UTF-8;
//   - a symbolic or hard link, wherever it points, and a device, fifo or socket: a package
//     needs none, and a link is how an extractor is tricked into writing elsewhere;
//   - an entry larger than the per-entry limit, more bytes in all than the total limit, or
//     more entries than the count limit (a decompression bomb stops there);
//   - the same path twice, and an archive that is damaged or cut short.
// On error the target may hold part of the archive; the caller removes it (Install does).
//
// Stateless; safe from any thread. Both calls block on the disk.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "installer/manifest.h"

namespace nehost::installer {

struct ExtractLimits {
  uint64_t max_entry_bytes = uint64_t{1} << 30;  // 1 GiB
  uint64_t max_total_bytes = uint64_t{4} << 30;  // 4 GiB
  uint64_t max_entries = 10000;
};

// Whether path looks like a package archive rather than a folder: a regular file.
bool IsPackageArchive(const std::string& path);

// Extracts archive into target, an existing empty folder, within limits. Errors name the
// archive, the entry and the cause.
absl::Status ExtractPackageArchive(const std::string& archive, const std::string& target,
                                   const ExtractLimits& limits = {});

// Writes the package folder's manifest, its signature file when there is one, and every
// file the manifest lists, with the manifest's modes, owner root and a fixed time, so the
// same package always makes the same archive. The compression follows the name: .tar,
// .tar.gz or .tgz, .tar.xz. The archive appears whole or not at all.
absl::Status WritePackageArchive(const std::string& package_dir, const Manifest& manifest,
                                 const std::string& archive);

}  // namespace nehost::installer
