#include "installer/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/unique_fd.h"
#include "common/utf8.h"
#include "installer/signature.h"

namespace nehost::installer {
namespace {

constexpr size_t kBlockBytes = 64 * 1024;
constexpr int kFolderMode = 0755;
// 2000-01-01T00:00:00Z: every entry of every archive gets it, for reproducible archives.
constexpr time_t kArchiveTime = 946684800;

struct ReaderDeleter {
  void operator()(struct archive* reader) const { archive_read_free(reader); }
};
struct WriterDeleter {
  void operator()(struct archive* writer) const { archive_write_free(writer); }
};
struct EntryDeleter {
  void operator()(struct archive_entry* entry) const { archive_entry_free(entry); }
};
using Reader = std::unique_ptr<struct archive, ReaderDeleter>;
using Writer = std::unique_ptr<struct archive, WriterDeleter>;
using Entry = std::unique_ptr<struct archive_entry, EntryDeleter>;

std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

std::string ArchiveError(struct archive* archive) {
  const char* text = archive_error_string(archive);
  return text != nullptr ? text : "unknown libarchive error";
}

// What kind of entry it is, when it is one a package may not hold.
const char* ForbiddenKind(struct archive_entry* entry) {
  if (archive_entry_hardlink(entry) != nullptr) return "a hard link";
  switch (archive_entry_filetype(entry)) {
    case AE_IFREG:
    case AE_IFDIR:
      return nullptr;
    case AE_IFLNK:
      return "a symbolic link";
    case AE_IFCHR:
    case AE_IFBLK:
      return "a device file";
    case AE_IFIFO:
      return "a fifo";
    case AE_IFSOCK:
      return "a socket";
    default:
      return "of an unknown type";
  }
}

// The entry's path in the package: "./bin/x" and "bin/" come out as "bin/x" and "bin";
// empty for the archive's own top folder ("." or "./").
absl::StatusOr<std::string> PackagePath(const char* raw) {
  if (raw == nullptr) return absl::InvalidArgumentError("has no name");
  absl::string_view name(raw);
  if (!IsValidUtf8(name)) return absl::InvalidArgumentError("name is not UTF-8");
  if (absl::StartsWith(name, "/")) return absl::InvalidArgumentError("path is absolute");
  while (absl::ConsumePrefix(&name, "./")) {
  }
  while (absl::ConsumeSuffix(&name, "/")) {
  }
  if (name.empty() || name == ".") return std::string();
  if (absl::Status valid = ValidatePackagePath(std::string(name)); !valid.ok()) return valid;
  return std::string(name);
}

class Extraction {
 public:
  Extraction(const std::string& archive, const std::string& target, const ExtractLimits& limits)
      : archive_(archive), target_(target), limits_(limits) {}

  absl::Status Run() {
    Reader reader(archive_read_new());
    if (reader == nullptr) return absl::ResourceExhaustedError("libarchive: out of memory");
    // Only what WritePackageArchive makes. "All" would include filters that libarchive runs
    // as external programs (lrzip, grzip), on bytes nobody has vouched for yet.
    archive_read_support_filter_gzip(reader.get());
    archive_read_support_filter_xz(reader.get());
    archive_read_support_format_tar(reader.get());
    if (archive_read_open_filename(reader.get(), archive_.c_str(), kBlockBytes) != ARCHIVE_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat("not a readable tar archive: ", ArchiveError(reader.get())));
    }

    for (;;) {
      struct archive_entry* entry = nullptr;
      const int next = archive_read_next_header(reader.get(), &entry);
      if (next == ARCHIVE_EOF) break;
      if (next != ARCHIVE_OK && next != ARCHIVE_WARN) {
        return absl::DataLossError(absl::StrCat("damaged or cut short after ", entries_,
                                                " entries: ", ArchiveError(reader.get())));
      }
      if (absl::Status done = Extract(reader.get(), entry); !done.ok()) return done;
    }
    if (entries_ == 0) return absl::InvalidArgumentError("holds no entries");
    return absl::OkStatus();
  }

 private:
  absl::Status Extract(struct archive* reader, struct archive_entry* entry) {
    const char* raw = archive_entry_pathname(entry);
    const std::string shown = Quote(raw != nullptr ? raw : "");
    if (++entries_ > limits_.max_entries) {
      return absl::ResourceExhaustedError(
          absl::StrCat("holds more than ", limits_.max_entries, " entries"));
    }
    absl::StatusOr<std::string> path = PackagePath(raw);
    if (!path.ok()) return EntryError(shown, path.status());
    if (const char* kind = ForbiddenKind(entry); kind != nullptr) {
      return EntryError(shown, absl::InvalidArgumentError(absl::StrCat(
                                   "is ", kind, "; a package holds only files and folders")));
    }
    if (path->empty()) return absl::OkStatus();
    if (!seen_.insert(*path).second) {
      return EntryError(shown, absl::InvalidArgumentError("appears twice"));
    }

    const std::string destination = absl::StrCat(target_, "/", *path);
    if (archive_entry_filetype(entry) == AE_IFDIR) return MakeDirs(destination, kFolderMode);
    absl::Status written = WriteEntry(reader, entry, destination);
    if (!written.ok()) return EntryError(shown, written);
    return absl::OkStatus();
  }

  absl::Status WriteEntry(struct archive* reader, struct archive_entry* entry,
                          const std::string& destination) {
    if (archive_entry_size_is_set(entry) &&
        static_cast<uint64_t>(archive_entry_size(entry)) > limits_.max_entry_bytes) {
      return TooLarge();
    }
    const std::string folder = destination.substr(0, destination.rfind('/'));
    if (absl::Status made = MakeDirs(folder, kFolderMode); !made.ok()) return made;
    // Every folder on the way was made here, from checked names, and no link is ever
    // extracted: O_NOFOLLOW and O_EXCL are a second line, not the first.
    const mode_t mode = (archive_entry_perm(entry) & 0111) != 0 ? 0755 : 0644;
    UniqueFd fd(
        ::open(destination.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd) return ErrnoStatus(errno, "create", destination);

    uint64_t entry_bytes = 0;
    char buffer[kBlockBytes];
    for (;;) {
      const la_ssize_t n = archive_read_data(reader, buffer, sizeof buffer);
      if (n == 0) break;
      if (n < 0) return absl::DataLossError(absl::StrCat("cut short: ", ArchiveError(reader)));
      entry_bytes += static_cast<uint64_t>(n);
      total_bytes_ += static_cast<uint64_t>(n);
      if (entry_bytes > limits_.max_entry_bytes) return TooLarge();
      if (total_bytes_ > limits_.max_total_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the archive unpacks to more than ", limits_.max_total_bytes, " bytes"));
      }
      if (absl::Status wrote =
              WriteAll(fd.get(), absl::string_view(buffer, static_cast<size_t>(n)), destination);
          !wrote.ok()) {
        return wrote;
      }
    }
    return absl::OkStatus();
  }

  absl::Status TooLarge() const {
    return absl::ResourceExhaustedError(
        absl::StrCat("is larger than ", limits_.max_entry_bytes, " bytes"));
  }

  static absl::Status EntryError(const std::string& shown, const absl::Status& cause) {
    return absl::Status(cause.code(), absl::StrCat("entry ", shown, ": ", cause.message()));
  }

  const std::string& archive_;
  const std::string& target_;
  const ExtractLimits& limits_;
  uint64_t entries_ = 0;
  uint64_t total_bytes_ = 0;
  std::set<std::string> seen_;
};

absl::Status ChooseCompression(struct archive* writer, const std::string& archive) {
  if (absl::EndsWith(archive, ".tar.gz") || absl::EndsWith(archive, ".tgz")) {
    // gzip's header would carry the time of writing otherwise.
    return archive_write_add_filter_gzip(writer) == ARCHIVE_OK &&
                   archive_write_set_filter_option(writer, "gzip", "timestamp", nullptr) ==
                       ARCHIVE_OK
               ? absl::OkStatus()
               : absl::InternalError(ArchiveError(writer));
  }
  if (absl::EndsWith(archive, ".tar.xz")) {
    return archive_write_add_filter_xz(writer) == ARCHIVE_OK
               ? absl::OkStatus()
               : absl::InternalError(ArchiveError(writer));
  }
  if (absl::EndsWith(archive, ".tar")) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("archive name ", archive, " does not end in .tar, .tar.gz, .tgz or .tar.xz"));
}

absl::Status AddFile(struct archive* writer, const std::string& source, const std::string& name,
                     uint32_t mode) {
  absl::StatusOr<std::string> contents = ReadFile(source);
  if (!contents.ok()) return contents.status();

  Entry entry(archive_entry_new());
  archive_entry_set_pathname(entry.get(), name.c_str());
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_perm(entry.get(), mode);
  archive_entry_set_size(entry.get(), static_cast<la_int64_t>(contents->size()));
  archive_entry_set_uid(entry.get(), 0);
  archive_entry_set_gid(entry.get(), 0);
  archive_entry_set_uname(entry.get(), "root");
  archive_entry_set_gname(entry.get(), "root");
  archive_entry_set_mtime(entry.get(), kArchiveTime, 0);
  if (archive_write_header(writer, entry.get()) != ARCHIVE_OK ||
      archive_write_data(writer, contents->data(), contents->size()) !=
          static_cast<la_ssize_t>(contents->size())) {
    return absl::InternalError(absl::StrCat("add ", name, ": ", ArchiveError(writer)));
  }
  return absl::OkStatus();
}

absl::Status WriteEntries(struct archive* writer, const std::string& package_dir,
                          const Manifest& manifest) {
  if (absl::Status added =
          AddFile(writer, absl::StrCat(package_dir, "/", kManifestFile), kManifestFile, 0644);
      !added.ok()) {
    return added;
  }
  const std::string signature = absl::StrCat(package_dir, "/", kSignatureFile);
  if (::access(signature.c_str(), F_OK) == 0) {
    if (absl::Status added = AddFile(writer, signature, kSignatureFile, 0644); !added.ok()) {
      return added;
    }
  }
  for (const PackageFile& file : manifest.files()) {
    absl::Status added = AddFile(writer, absl::StrCat(package_dir, "/", file.path()), file.path(),
                                 EffectiveMode(file));
    if (!added.ok()) return added;
  }
  return absl::OkStatus();
}

}  // namespace

bool IsPackageArchive(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

absl::Status ExtractPackageArchive(const std::string& archive, const std::string& target,
                                   const ExtractLimits& limits) {
  absl::Status extracted = Extraction(archive, target, limits).Run();
  if (extracted.ok()) return extracted;
  return absl::Status(extracted.code(),
                      absl::StrCat("archive ", archive, ": ", extracted.message()));
}

absl::Status WritePackageArchive(const std::string& package_dir, const Manifest& manifest,
                                 const std::string& archive) {
  Writer writer(archive_write_new());
  if (writer == nullptr) return absl::ResourceExhaustedError("libarchive: out of memory");
  if (absl::Status chosen = ChooseCompression(writer.get(), archive); !chosen.ok()) return chosen;
  archive_write_set_format_pax_restricted(writer.get());

  // Written beside the archive under a temporary name, then renamed: a reader never finds
  // half an archive.
  const std::string temporary = absl::StrCat(archive, kTemporaryMarker, ::getpid());
  if (archive_write_open_filename(writer.get(), temporary.c_str()) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("create archive ", temporary, ": ", ArchiveError(writer.get())));
  }
  absl::Status written = WriteEntries(writer.get(), package_dir, manifest);
  if (written.ok() && archive_write_close(writer.get()) != ARCHIVE_OK) {
    written = absl::InternalError(
        absl::StrCat("finish archive ", temporary, ": ", ArchiveError(writer.get())));
  }
  if (written.ok() && ::rename(temporary.c_str(), archive.c_str()) != 0) {
    written = ErrnoStatus(errno, "rename into place", archive);
  }
  if (!written.ok()) ::unlink(temporary.c_str());
  return written;
}

}  // namespace nehost::installer
