#include "installer/signature.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/unique_fd.h"

namespace nehost::installer {
namespace {

namespace fs = std::filesystem;

constexpr char kPublicKind[] = "nehost-ed25519-public";
constexpr char kSecretKind[] = "nehost-ed25519-secret";
constexpr char kSignatureKind[] = "nehost-ed25519-signature";
constexpr size_t kKeyIdBytes = 8;
constexpr size_t kMaxKeyNameLength = 64;
// A signature file holds a handful of lines; anything much bigger is not one.
constexpr size_t kMaxSignatureFileBytes = 64 * 1024;
// A manifest lists files in a few hundred bytes each: this allows tens of thousands.
constexpr size_t kMaxManifestBytes = 16 << 20;
constexpr mode_t kSecretKeyMode = 0600;
constexpr mode_t kPublicKeyMode = 0644;

absl::Status InitSodium() {
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  return absl::OkStatus();
}

std::string KeyIdOf(const std::array<unsigned char, PublicKey::kBytes>& public_key) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, public_key.data(), public_key.size());
  char hex[2 * kKeyIdBytes + 1];
  sodium_bin2hex(hex, sizeof hex, digest, kKeyIdBytes);
  return hex;
}

bool IsKeyId(absl::string_view text) {
  return text.size() == 2 * kKeyIdBytes && absl::c_all_of(text, [](char c) {
           return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
         });
}

// One "KIND KEY-ID BASE64" line, split and checked.
struct Line {
  std::string kind;
  std::string id;
  std::string bytes;
};

absl::StatusOr<Line> ParseLine(absl::string_view text, size_t expected_bytes) {
  std::vector<absl::string_view> words = absl::StrSplit(text, ' ', absl::SkipEmpty());
  if (words.size() != 3) return absl::InvalidArgumentError("is not \"KIND KEY-ID BASE64\"");
  Line line{std::string(words[0]), std::string(words[1]), ""};
  if (!IsKeyId(line.id)) {
    return absl::InvalidArgumentError("key id is not 16 lower-case hex digits");
  }
  if (!absl::Base64Unescape(words[2], &line.bytes) || line.bytes.size() != expected_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("is not ", expected_bytes, " bytes in base64 after the key id"));
  }
  return line;
}

// The lines that carry something: no blank lines, no '#' comments.
std::vector<absl::string_view> ContentLines(absl::string_view text) {
  std::vector<absl::string_view> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty() && line[0] != '#') lines.push_back(line);
  }
  return lines;
}

// The one content line of a key file, of the given kind.
absl::StatusOr<Line> ParseKeyFile(absl::string_view text, const std::string& source,
                                  absl::string_view kind, size_t expected_bytes) {
  std::vector<absl::string_view> lines = ContentLines(text);
  if (lines.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", source, ": holds ", lines.size(), " key lines, not 1"));
  }
  if (!absl::StartsWith(lines[0], absl::StrCat(kind, " "))) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", source, ": is not a ", kind, " key"));
  }
  absl::StatusOr<Line> line = ParseLine(lines[0], expected_bytes);
  if (!line.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", source, ": key line ", line.status().message()));
  }
  return line;
}

std::string FormatLine(absl::string_view kind, absl::string_view id, const unsigned char* bytes,
                       size_t size) {
  return absl::StrCat(
      kind, " ", id, " ",
      absl::Base64Escape(absl::string_view(reinterpret_cast<const char*>(bytes), size)), "\n");
}

std::string SignedMessage(absl::string_view manifest_json) {
  return absl::StrCat(kSignedContext, manifest_json);
}

absl::Status ValidateKeyName(const std::string& name) {
  const bool safe = absl::c_all_of(name, [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  if (name.empty() || name.size() > kMaxKeyNameLength || !safe || name[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat("key name \"", absl::CHexEscape(name),
                                                   "\" is not 1 to 64 of A-Z a-z 0-9 . _ - (not "
                                                   "starting with '.')"));
  }
  return absl::OkStatus();
}

// Creates path with mode, refusing one that exists, and writes text to it durably. A file it
// could not finish is removed, so that the next try does not find it in the way.
absl::Status WriteNewFile(const std::string& path, absl::string_view text, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) return ErrnoStatus(errno, "create", path);
  // The umask may have taken bits away; the mode must be exactly this.
  absl::Status written = ::fchmod(fd.get(), mode) == 0 ? WriteAll(fd.get(), text, path)
                                                       : ErrnoStatus(errno, "chmod", path);
  if (written.ok() && ::fsync(fd.get()) != 0) written = ErrnoStatus(errno, "fsync", path);
  if (!written.ok()) ::unlink(path.c_str());
  return written;
}

struct SignatureLine {
  std::string id;
  std::string signature;
};

absl::StatusOr<std::vector<SignatureLine>> ParseSignatureFile(absl::string_view text) {
  if (text.size() > kMaxSignatureFileBytes) {
    return absl::DataLossError(absl::StrCat(
        "is ", text.size(), " bytes; a signature file is at most ", kMaxSignatureFileBytes));
  }
  std::vector<SignatureLine> signatures;
  int number = 0;
  for (absl::string_view line : ContentLines(text)) {
    ++number;
    absl::StatusOr<Line> parsed = ParseLine(line, crypto_sign_BYTES);
    if (parsed.ok() && parsed->kind != kSignatureKind) {
      parsed = absl::InvalidArgumentError(absl::StrCat("is not a ", kSignatureKind, " line"));
    }
    if (!parsed.ok()) {
      return absl::DataLossError(
          absl::StrCat("signature line ", number, " ", parsed.status().message()));
    }
    signatures.push_back({parsed->id, parsed->bytes});
  }
  if (signatures.empty()) return absl::FailedPreconditionError("holds no signature");
  return signatures;
}

bool SignatureMatches(const SignatureLine& line, const PublicKey& key, const std::string& message) {
  return crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(line.signature.data()),
                                     reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), key.bytes().data()) == 0;
}

absl::Status WithFile(const absl::Status& status, const std::string& path) {
  return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
}

// The whole file, unless it is larger than max bytes: a package is not trusted yet, and its
// manifest or signature file may be a gigabyte of anything, or a link to /dev/zero or a FIFO
// (O_NONBLOCK, so that opening one does not wait for a writer). At most max + 1 bytes are
// read, whatever the size said, since a file may grow after fstat.
absl::StatusOr<std::string> ReadBoundedFile(const std::string& path, size_t max) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return ErrnoStatus(errno, "read", path);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return ErrnoStatus(errno, "read", path);
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }

  std::string contents;
  char buffer[64 * 1024];
  for (;;) {
    const size_t want = std::min(sizeof buffer, max + 1 - contents.size());
    const ssize_t got = ::read(fd.get(), buffer, want);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoStatus(errno, "read", path);
    if (got == 0) return contents;
    contents.append(buffer, static_cast<size_t>(got));
    if (contents.size() > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is over ", max, " bytes; at most ", max, " are read"));
    }
  }
}

}  // namespace

std::string KeysDir(const std::string& config_dir) { return absl::StrCat(config_dir, "/keys"); }

absl::StatusOr<PublicKey> PublicKey::Parse(absl::string_view text, const std::string& source) {
  absl::StatusOr<Line> line = ParseKeyFile(text, source, kPublicKind, kBytes);
  if (!line.ok()) return line.status();

  PublicKey key;
  std::copy(line->bytes.begin(), line->bytes.end(), key.bytes_.begin());
  key.id_ = KeyIdOf(key.bytes_);
  key.source_ = source;
  if (key.id_ != line->id) {
    return absl::InvalidArgumentError(absl::StrCat("key file ", source, ": names key id ", line->id,
                                                   " but the key's id is ", key.id_));
  }
  return key;
}

std::string PublicKey::ToText() const {
  return FormatLine(kPublicKind, id_, bytes_.data(), bytes_.size());
}

absl::StatusOr<SecretKey> SecretKey::Generate() {
  if (absl::Status ready = InitSodium(); !ready.ok()) return ready;
  SecretKey key;
  std::array<unsigned char, PublicKey::kBytes> public_bytes;
  crypto_sign_keypair(public_bytes.data(), key.bytes_.data());
  key.id_ = KeyIdOf(public_bytes);
  return key;
}

absl::StatusOr<SecretKey> SecretKey::Parse(absl::string_view text, const std::string& source) {
  if (absl::Status ready = InitSodium(); !ready.ok()) return ready;
  absl::StatusOr<Line> line = ParseKeyFile(text, source, kSecretKind, kBytes);
  if (!line.ok()) return line.status();

  SecretKey key;
  std::copy(line->bytes.begin(), line->bytes.end(), key.bytes_.begin());
  sodium_memzero(line->bytes.data(), line->bytes.size());
  key.id_ = key.Public().id();
  if (key.id_ != line->id) {
    return absl::InvalidArgumentError(absl::StrCat("key file ", source, ": names key id ", line->id,
                                                   " but the key's id is ", key.id_));
  }
  // The key is its seed followed by its public half; halves that disagree (a damaged file)
  // would make signatures that no keyring ever verifies.
  std::array<unsigned char, PublicKey::kBytes> public_half;
  std::array<unsigned char, kBytes> derived;
  crypto_sign_seed_keypair(public_half.data(), derived.data(), key.bytes_.data());
  const bool whole = sodium_memcmp(derived.data(), key.bytes_.data(), kBytes) == 0;
  sodium_memzero(derived.data(), derived.size());
  if (!whole) {
    return absl::InvalidArgumentError(
        absl::StrCat("key file ", source,
                     ": its public half does not belong to its secret; the file is damaged"));
  }
  return key;
}

absl::StatusOr<SecretKey> SecretKey::Read(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return ErrnoStatus(errno, "read secret key", path);
  if ((info.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
    return absl::PermissionDeniedError(absl::StrCat("secret key ", path,
                                                    " may be read by group or others (mode ", mode,
                                                    "); chmod 600 it before signing with it"));
  }
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<SecretKey> key = Parse(*text, path);
  sodium_memzero(text->data(), text->size());
  return key;
}

SecretKey::SecretKey(SecretKey&& other) noexcept : id_(std::move(other.id_)), bytes_(other.bytes_) {
  sodium_memzero(other.bytes_.data(), other.bytes_.size());
}

SecretKey& SecretKey::operator=(SecretKey&& other) noexcept {
  if (this == &other) return *this;
  id_ = std::move(other.id_);
  bytes_ = other.bytes_;
  sodium_memzero(other.bytes_.data(), other.bytes_.size());
  return *this;
}

SecretKey::~SecretKey() { sodium_memzero(bytes_.data(), bytes_.size()); }

PublicKey SecretKey::Public() const {
  PublicKey key;
  crypto_sign_ed25519_sk_to_pk(key.bytes_.data(), bytes_.data());
  key.id_ = KeyIdOf(key.bytes_);
  return key;
}

std::string SecretKey::ToText() const {
  return FormatLine(kSecretKind, id_, bytes_.data(), bytes_.size());
}

std::string SecretKey::SignManifest(absl::string_view manifest_json) const {
  const std::string message = SignedMessage(manifest_json);
  unsigned char signature[crypto_sign_BYTES];
  crypto_sign_detached(signature, nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                       message.size(), bytes_.data());
  return FormatLine(kSignatureKind, id_, signature, sizeof signature);
}

absl::StatusOr<PublicKey> WriteKeyPair(const std::string& dir, const std::string& name) {
  if (absl::Status valid = ValidateKeyName(name); !valid.ok()) return valid;
  absl::StatusOr<SecretKey> key = SecretKey::Generate();
  if (!key.ok()) return key.status();
  if (absl::Status made = MakeDirs(dir, 0755); !made.ok()) return made;

  const std::string secret_path = absl::StrCat(dir, "/", name, kSecretKeyExtension);
  const std::string public_path = absl::StrCat(dir, "/", name, kPublicKeyExtension);
  std::string secret_text = key->ToText();
  absl::Status written = WriteNewFile(secret_path, secret_text, kSecretKeyMode);
  sodium_memzero(secret_text.data(), secret_text.size());
  if (!written.ok()) return written;

  const std::string public_text = key->Public().ToText();
  if (absl::Status published = WriteNewFile(public_path, public_text, kPublicKeyMode);
      !published.ok()) {
    ::unlink(secret_path.c_str());  // a secret without its public half is of no use
    return published;
  }
  return PublicKey::Parse(public_text, public_path);
}

absl::StatusOr<Keyring> Keyring::Load(const std::string& dir) {
  Keyring keyring;
  keyring.dir_ = dir;
  std::error_code error;
  fs::directory_iterator it(dir, error);
  if (error == std::errc::no_such_file_or_directory) return keyring;

  std::vector<std::string> files;
  for (fs::directory_iterator end; !error && it != end; it.increment(error)) {
    if (it->path().extension() == kPublicKeyExtension) files.push_back(it->path().string());
  }
  if (error) return ErrnoStatus(error.value(), "list trusted keys in", dir);
  std::sort(files.begin(), files.end());

  for (const std::string& file : files) {
    absl::StatusOr<std::string> text = ReadFile(file);
    if (!text.ok()) return text.status();
    absl::StatusOr<PublicKey> key = PublicKey::Parse(*text, file);
    if (!key.ok()) return key.status();
    keyring.keys_.push_back(*std::move(key));
  }
  return keyring;
}

const PublicKey* Keyring::Find(const std::string& id) const {
  auto found = absl::c_find_if(keys_, [&](const PublicKey& key) { return key.id() == id; });
  return found == keys_.end() ? nullptr : &*found;
}

Keyring Keyring::FromKeys(std::vector<PublicKey> keys, std::string dir) {
  Keyring keyring;
  keyring.dir_ = std::move(dir);
  keyring.keys_ = std::move(keys);
  return keyring;
}

absl::StatusOr<VerifiedSignature> VerifyManifestSignature(absl::string_view manifest_json,
                                                          absl::string_view signature_text,
                                                          const Keyring& keyring) {
  if (absl::Status ready = InitSodium(); !ready.ok()) return ready;
  if (keyring.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no trusted key in ", keyring.dir(), ": nothing can be verified"));
  }
  absl::StatusOr<std::vector<SignatureLine>> signatures = ParseSignatureFile(signature_text);
  if (!signatures.ok()) return signatures.status();

  const std::string message = SignedMessage(manifest_json);
  std::vector<std::string> untrusted;
  for (const SignatureLine& line : *signatures) {
    const PublicKey* key = keyring.Find(line.id);
    if (key == nullptr) {
      untrusted.push_back(line.id);
      continue;
    }
    // A trusted key's signature that fails means the manifest changed after signing: that
    // is tampering, whatever other lines say.
    if (!SignatureMatches(line, *key, message)) {
      return absl::UnauthenticatedError(absl::StrCat(
          "the signature by trusted key ", line.id, " (", key->source(),
          ") does not match the manifest: it was changed after signing, or the signature is "
          "damaged"));
    }
    return VerifiedSignature{line.id, key->source()};
  }
  return absl::PermissionDeniedError(
      absl::StrCat("signed only by key ", absl::StrJoin(untrusted, ", key "),
                   ", which is not trusted: no such key in ", keyring.dir()));
}

absl::StatusOr<SignedManifest> ReadSignedManifest(const std::string& folder,
                                                  const Keyring& keyring) {
  const std::string manifest_path = absl::StrCat(folder, "/", kManifestFile);
  const std::string signature_path = absl::StrCat(folder, "/", kSignatureFile);
  SignedManifest signed_manifest;
  absl::StatusOr<std::string> json = ReadBoundedFile(manifest_path, kMaxManifestBytes);
  if (!json.ok()) return json.status();
  signed_manifest.json = *std::move(json);

  absl::StatusOr<std::string> signature = ReadBoundedFile(signature_path, kMaxSignatureFileBytes);
  if (absl::IsNotFound(signature.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("unsigned: no ", signature_path, "; sign it with nehost-pkg sign"));
  }
  if (!signature.ok()) return signature.status();
  signed_manifest.signature = *std::move(signature);

  absl::StatusOr<VerifiedSignature> signer =
      VerifyManifestSignature(signed_manifest.json, signed_manifest.signature, keyring);
  if (!signer.ok()) return WithFile(signer.status(), signature_path);
  signed_manifest.signer = *std::move(signer);

  absl::StatusOr<Manifest> manifest = ParseManifest(signed_manifest.json);
  if (!manifest.ok()) return WithFile(manifest.status(), absl::StrCat("manifest ", manifest_path));
  signed_manifest.manifest = *std::move(manifest);
  return signed_manifest;
}

absl::Status SignPackage(const std::string& folder, const SecretKey& key) {
  std::string json;
  absl::StatusOr<Manifest> manifest = ReadManifest(folder, &json);
  if (!manifest.ok()) return manifest.status();

  const std::string signature_path = absl::StrCat(folder, "/", kSignatureFile);
  absl::StatusOr<std::string> existing = ReadFile(signature_path);
  if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();

  // Lines of other keys stay: a package may carry the signatures of several publishers. A
  // line that does not parse would fail every verify after this one, so nothing is signed.
  std::vector<SignatureLine> kept;
  if (existing.ok()) {
    absl::StatusOr<std::vector<SignatureLine>> lines = ParseSignatureFile(*existing);
    if (absl::IsDataLoss(lines.status())) {
      return absl::DataLossError(absl::StrCat(signature_path, ": ", lines.status().message(),
                                              "; repair or remove it, then sign again"));
    }
    if (lines.ok()) kept = *std::move(lines);  // else it holds no line at all
  }
  std::string text;
  for (const SignatureLine& line : kept) {
    if (line.id == key.id()) continue;
    absl::StrAppend(&text, FormatLine(kSignatureKind, line.id,
                                      reinterpret_cast<const unsigned char*>(line.signature.data()),
                                      line.signature.size()));
  }
  absl::StrAppend(&text, key.SignManifest(json));
  return WriteFileAtomically(signature_path, text);
}

}  // namespace nehost::installer
