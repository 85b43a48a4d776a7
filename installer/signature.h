// Ed25519 signatures over package manifests: the keys that make them, the keyring of trusted
// public keys that checks them, and the files all of them live in.
//
// What is signed is the exact bytes of manifest.json, never a re-serialisation: a manifest is
// parsed only after its bytes verified. The manifest lists every file's sha256, so a verified
// manifest vouches for every file of the package. The message signed is kSignedContext
// followed by those bytes, so that a signature over a manifest can never pass as a signature
// over anything else nehost may sign one day.
//
// Files, each line "KIND KEY-ID BASE64", lines starting with '#' ignored:
//
//   NAME.pub           nehost-ed25519-public KEY-ID BASE64(32-byte public key)
//   NAME.secret        nehost-ed25519-secret KEY-ID BASE64(64-byte libsodium secret key)
//   manifest.json.sig  nehost-ed25519-signature KEY-ID BASE64(64-byte signature), one line
//                      per signing key
//
// KEY-ID is the first 8 bytes of the public key's sha256 in lower-case hex: it names a key
// in messages and picks the trusted key a signature line claims. A secret key file is
// written 0600 and refused when group or others may read it; a SecretKey wipes its bytes
// when it goes, and nothing here logs one.
//
// Everything is stateless apart from the values returned, and safe from any thread. The
// Read/Load/Write calls block on the disk.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "installer/manifest.h"

namespace nehost::installer {

inline constexpr char kSignedContext[] = "nehost-manifest-v1\n";
inline constexpr char kPublicKeyExtension[] = ".pub";
inline constexpr char kSecretKeyExtension[] = ".secret";

// CONFIG/keys: where nehostd and nehost-pkg find the trusted public keys.
std::string KeysDir(const std::string& config_dir);

class PublicKey {
 public:
  static constexpr size_t kBytes = 32;

  // Parses the text of a .pub file; source names it in errors.
  static absl::StatusOr<PublicKey> Parse(absl::string_view text, const std::string& source);

  const std::string& id() const { return id_; }
  const std::array<unsigned char, kBytes>& bytes() const { return bytes_; }
  // The file it was read from, or empty.
  const std::string& source() const { return source_; }

  std::string ToText() const;

 private:
  friend class SecretKey;
  std::string id_;
  std::array<unsigned char, kBytes> bytes_{};
  std::string source_;
};

// Movable, not copyable: one copy of the secret in memory, wiped when it goes.
class SecretKey {
 public:
  static constexpr size_t kBytes = 64;

  static absl::StatusOr<SecretKey> Generate();
  // Parses the text of a .secret file; source names it in errors. The text is not quoted in
  // any error.
  static absl::StatusOr<SecretKey> Parse(absl::string_view text, const std::string& source);
  // Reads a .secret file, refusing one that group or others may read.
  static absl::StatusOr<SecretKey> Read(const std::string& path);

  SecretKey(SecretKey&& other) noexcept;
  SecretKey& operator=(SecretKey&& other) noexcept;
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  ~SecretKey();

  const std::string& id() const { return id_; }
  PublicKey Public() const;
  std::string ToText() const;

  // The signature line over manifest_json ("nehost-ed25519-signature ID BASE64").
  std::string SignManifest(absl::string_view manifest_json) const;

 private:
  SecretKey() = default;
  std::string id_;
  std::array<unsigned char, kBytes> bytes_{};
};

// Writes DIR/NAME.secret (0600, refused if it exists) and DIR/NAME.pub (0644). Returns the
// public key. NAME is 1 to 64 of [A-Za-z0-9._-], not starting with '.'.
absl::StatusOr<PublicKey> WriteKeyPair(const std::string& dir, const std::string& name);

// The trusted public keys: every *.pub file of a folder. Other files are ignored.
class Keyring {
 public:
  // A missing folder gives an empty keyring. A .pub file that does not parse is an error
  // naming it: a key an operator meant to trust must not be dropped without a word.
  static absl::StatusOr<Keyring> Load(const std::string& dir);

  const PublicKey* Find(const std::string& id) const;
  bool empty() const { return keys_.empty(); }
  const std::string& dir() const { return dir_; }

  // For tests and programs that hold keys in memory.
  static Keyring FromKeys(std::vector<PublicKey> keys, std::string dir = "(in memory)");

 private:
  std::string dir_;
  std::vector<PublicKey> keys_;
};

struct VerifiedSignature {
  std::string key_id;
  std::string key_source;  // the trusted .pub file
};

// Checks signature_text (manifest.json.sig) over manifest_json against the keyring:
//   FAILED_PRECONDITION  no trusted key at all, or no signature
//   DATA_LOSS            the signature file does not parse
//   UNAUTHENTICATED      a trusted key's signature does not match the manifest's bytes
//   PERMISSION_DENIED    signed only by keys the keyring does not hold
// Succeeds when one line by a trusted key verifies.
absl::StatusOr<VerifiedSignature> VerifyManifestSignature(absl::string_view manifest_json,
                                                          absl::string_view signature_text,
                                                          const Keyring& keyring);

// A manifest whose bytes verified, then parsed and validated.
struct SignedManifest {
  Manifest manifest;
  std::string json;       // manifest.json's bytes, as verified
  std::string signature;  // manifest.json.sig's bytes
  VerifiedSignature signer;
};

// Reads FOLDER/manifest.json and FOLDER/manifest.json.sig, verifies, then parses. Errors
// name the folder's file and the cause; a missing signature file is FAILED_PRECONDITION
// ("unsigned").
absl::StatusOr<SignedManifest> ReadSignedManifest(const std::string& folder,
                                                  const Keyring& keyring);

// Signs FOLDER/manifest.json with key: adds its line to FOLDER/manifest.json.sig, replacing
// an earlier line of the same key and keeping the others. The manifest is validated first,
// so that nobody signs what no installer would take.
absl::Status SignPackage(const std::string& folder, const SecretKey& key);

}  // namespace nehost::installer
