#include "installer/signature.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/process.h"

namespace nehost::installer {
namespace {

namespace fs = std::filesystem;

using nehost::testing::ReadFileOrEmpty;
using nehost::testing::TempDir;
using nehost::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kManifest[] =
    R"({"version":"1.0","files":[{"path":"bin/x","sha256":")"
    R"(0000000000000000000000000000000000000000000000000000000000000000","mode":493}]})";

TEST(SecretKey, SignatureVerifiesOnlyTheExactBytes) {
  const SecretKey key = SecretKey::Generate().value();
  const Keyring keyring = Keyring::FromKeys({key.Public()});
  const std::string signature = key.SignManifest(kManifest);

  EXPECT_TRUE(VerifyManifestSignature(kManifest, signature, keyring).ok());
  // The same manifest, serialised again with a space: other bytes, so no longer signed.
  const std::string respaced = absl::StrCat(" ", kManifest);
  absl::StatusOr<VerifiedSignature> changed = VerifyManifestSignature(respaced, signature, keyring);
  EXPECT_EQ(changed.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(SecretKey, TextFormsRoundTripAndNameTheKeyId) {
  const SecretKey key = SecretKey::Generate().value();
  const std::string secret_text = key.ToText();
  const std::string public_text = key.Public().ToText();
  EXPECT_THAT(secret_text, StartsWith(absl::StrCat("nehost-ed25519-secret ", key.id(), " ")));
  EXPECT_THAT(public_text, StartsWith(absl::StrCat("nehost-ed25519-public ", key.id(), " ")));
  EXPECT_EQ(key.id().size(), 16u);

  absl::StatusOr<SecretKey> secret = SecretKey::Parse(secret_text, "k.secret");
  ASSERT_TRUE(secret.ok()) << secret.status();
  absl::StatusOr<PublicKey> public_key = PublicKey::Parse("# a comment\n" + public_text, "k.pub");
  ASSERT_TRUE(public_key.ok()) << public_key.status();
  EXPECT_EQ(public_key->id(), key.id());
  EXPECT_TRUE(VerifyManifestSignature(kManifest, secret->SignManifest(kManifest),
                                      Keyring::FromKeys({*public_key}))
                  .ok());
}

TEST(PublicKey, RefusesAKeyIdThatIsNotTheKeys) {
  const SecretKey key = SecretKey::Generate().value();
  std::string text = key.Public().ToText();
  text.replace(text.find(key.id()), 16, "0123456789abcdef");
  absl::StatusOr<PublicKey> parsed = PublicKey::Parse(text, "k.pub");
  EXPECT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("names key id 0123456789abcdef"));
}

TEST(PublicKey, RefusesTextThatIsNotAKey) {
  for (const std::string text :
       {"", "nehost-ed25519-public abc", "nehost-ed25519-secret 0123456789abcdef AAAA",
        "nehost-ed25519-public 0123456789abcdef not-base64!", "\xff\xfe"}) {
    absl::StatusOr<PublicKey> parsed = PublicKey::Parse(text, "k.pub");
    EXPECT_FALSE(parsed.ok()) << text;
    EXPECT_THAT(parsed.status().message(), HasSubstr("key file k.pub: ")) << text;
  }
}

TEST(SecretKey, RefusesAFileWhoseHalvesDisagree) {
  const SecretKey key = SecretKey::Generate().value();
  std::vector<std::string> words = absl::StrSplit(key.ToText(), ' ');
  ASSERT_EQ(words.size(), 3u);
  std::string bytes;
  ASSERT_TRUE(absl::Base64Unescape(words[2], &bytes));
  bytes[0] ^= 1;  // the seed; the public half, and so the id, stay as they were
  const std::string damaged = absl::StrCat(words[0], " ", words[1], " ", absl::Base64Escape(bytes));

  absl::StatusOr<SecretKey> parsed = SecretKey::Parse(damaged, "k.secret");
  EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << parsed.status();
  EXPECT_THAT(parsed.status().message(), HasSubstr("public half does not belong"));
}

TEST(SecretKey, ErrorsNeverQuoteTheSecret) {
  const SecretKey key = SecretKey::Generate().value();
  std::string text = key.ToText();
  const std::string encoded = text.substr(text.rfind(' ') + 1, 20);
  text.insert(text.rfind(' ') + 1, "!");  // no longer base64
  absl::StatusOr<SecretKey> parsed = SecretKey::Parse(text, "k.secret");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), Not(HasSubstr(encoded)));
}

TEST(WriteKeyPair, WritesASecretOnlyItsOwnerMayReadAndNeverOverwrites) {
  TempDir dir;
  absl::StatusOr<PublicKey> key = WriteKeyPair(dir / "keys", "release");
  ASSERT_TRUE(key.ok()) << key.status();

  struct stat secret {};
  ASSERT_EQ(::stat((dir / "keys/release.secret").c_str(), &secret), 0);
  EXPECT_EQ(secret.st_mode & 0777, 0600u);
  struct stat published {};
  ASSERT_EQ(::stat((dir / "keys/release.pub").c_str(), &published), 0);
  EXPECT_EQ(published.st_mode & 0777, 0644u);
  EXPECT_TRUE(SecretKey::Read(dir / "keys/release.secret").ok());

  const std::string before = ReadFileOrEmpty(dir / "keys/release.secret");
  absl::StatusOr<PublicKey> again = WriteKeyPair(dir / "keys", "release");
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
  EXPECT_EQ(ReadFileOrEmpty(dir / "keys/release.secret"), before);
}

// keygen writes into the current folder by default: $HOME or /tmp must keep their modes.
TEST(WriteKeyPair, LeavesTheModeOfAnExistingFolder) {
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 01777), 0);
  ASSERT_TRUE(WriteKeyPair(dir.path(), "release").ok());

  struct stat folder {};
  ASSERT_EQ(::stat(dir.path().c_str(), &folder), 0);
  EXPECT_EQ(folder.st_mode & 07777, 01777u);
}

TEST(WriteKeyPair, RefusesNamesThatAreNotPlain) {
  TempDir dir;
  for (const std::string name : {"", "../x", ".hidden", "a/b", "r\xe9lease"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(WriteKeyPair(dir.path(), name).status())) << name;
  }
}

TEST(SecretKey, ReadRefusesAFileOthersMayRead) {
  TempDir dir;
  ASSERT_TRUE(WriteKeyPair(dir.path(), "k").ok());
  ASSERT_EQ(::chmod((dir / "k.secret").c_str(), 0644), 0);
  absl::StatusOr<SecretKey> read = SecretKey::Read(dir / "k.secret");
  EXPECT_TRUE(absl::IsPermissionDenied(read.status())) << read.status();
  EXPECT_THAT(read.status().message(), HasSubstr("mode 0644"));
}

TEST(Keyring, LoadsEveryPublicKeyAndNamesABadOne) {
  TempDir dir;
  EXPECT_TRUE(Keyring::Load(dir / "missing").value().empty());

  absl::StatusOr<PublicKey> first = WriteKeyPair(dir / "keys", "first");
  absl::StatusOr<PublicKey> second = WriteKeyPair(dir / "keys", "second");
  ASSERT_TRUE(first.ok() && second.ok());
  absl::StatusOr<Keyring> keyring = Keyring::Load(dir / "keys");
  ASSERT_TRUE(keyring.ok()) << keyring.status();
  EXPECT_NE(keyring->Find(first->id()), nullptr);
  EXPECT_NE(keyring->Find(second->id()), nullptr);
  EXPECT_EQ(keyring->Find(second->id())->source(), dir / "keys/second.pub");

  WriteFileOrDie(dir / "keys/broken.pub", "nehost-ed25519-public nonsense\n");
  absl::StatusOr<Keyring> broken = Keyring::Load(dir / "keys");
  EXPECT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), HasSubstr(dir / "keys/broken.pub"));
}

TEST(VerifyManifestSignature, SaysWhatIsWrong) {
  const SecretKey key = SecretKey::Generate().value();
  const SecretKey stranger = SecretKey::Generate().value();
  const Keyring keyring = Keyring::FromKeys({key.Public()}, "/etc/nehost/keys");

  absl::StatusOr<VerifiedSignature> untrusted =
      VerifyManifestSignature(kManifest, stranger.SignManifest(kManifest), keyring);
  EXPECT_TRUE(absl::IsPermissionDenied(untrusted.status()));
  EXPECT_THAT(untrusted.status().message(),
              HasSubstr(absl::StrCat("signed only by key ", stranger.id(),
                                     ", which is not trusted: no such key in /etc/nehost/keys")));

  absl::StatusOr<VerifiedSignature> garbled =
      VerifyManifestSignature(kManifest, "nehost-ed25519-signature zz\n", keyring);
  EXPECT_TRUE(absl::IsDataLoss(garbled.status()));
  EXPECT_THAT(garbled.status().message(), HasSubstr("signature line 1"));

  EXPECT_TRUE(absl::IsFailedPrecondition(VerifyManifestSignature(kManifest, "", keyring).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(
      VerifyManifestSignature(kManifest, key.SignManifest(kManifest), Keyring::FromKeys({}))
          .status()));
}

TEST(SignPackage, RefusesToAddToASignatureFileThatDoesNotParse) {
  TempDir dir;
  WriteFileOrDie(dir / "manifest.json", kManifest);
  WriteFileOrDie(dir / "manifest.json.sig", "not a signature\n");

  absl::Status signed_status = SignPackage(dir.path(), SecretKey::Generate().value());
  EXPECT_TRUE(absl::IsDataLoss(signed_status)) << signed_status;
  EXPECT_THAT(signed_status.message(), HasSubstr("signature line 1"));
  EXPECT_EQ(ReadFileOrEmpty(dir / "manifest.json.sig"), "not a signature\n");
}

TEST(SignPackage, ReplacesItsOwnLineAndKeepsOthers) {
  TempDir dir;
  WriteFileOrDie(dir / "bin/x", "x");
  WriteFileOrDie(dir / "manifest.json",
                 absl::StrCat(R"({"version":"1.0","files":[{"path":"bin/x","sha256":")",
                              Sha256File(dir / "bin/x").value(), R"("}]})"));
  const SecretKey first = SecretKey::Generate().value();
  const SecretKey second = SecretKey::Generate().value();
  ASSERT_TRUE(SignPackage(dir.path(), first).ok());
  ASSERT_TRUE(SignPackage(dir.path(), second).ok());
  ASSERT_TRUE(SignPackage(dir.path(), first).ok());

  const std::string signatures = ReadFileOrEmpty(dir / "manifest.json.sig");
  EXPECT_EQ(std::count(signatures.begin(), signatures.end(), '\n'), 2);
  for (const SecretKey* key : {&first, &second}) {
    absl::StatusOr<SignedManifest> read =
        ReadSignedManifest(dir.path(), Keyring::FromKeys({key->Public()}));
    EXPECT_TRUE(read.ok()) << read.status();
  }
}

TEST(ReadSignedManifest, RefusesAHugeManifestWithoutReadingIt) {
  TempDir dir;
  WriteFileOrDie(dir / "manifest.json", std::string((16 << 20) + 1, ' '));
  WriteFileOrDie(dir / "manifest.json.sig", "");
  absl::StatusOr<SignedManifest> read =
      ReadSignedManifest(dir.path(), Keyring::FromKeys({SecretKey::Generate()->Public()}));
  EXPECT_TRUE(absl::IsInvalidArgument(read.status())) << read.status();
  EXPECT_THAT(read.status().message(), HasSubstr("at most 16777216 are read"));
}

// A folder package is anyone's folder: its manifest may be no file at all. Neither may make
// the reader run out of memory or wait forever.
TEST(ReadSignedManifest, RefusesAManifestThatIsNotARegularFile) {
  TempDir dir;
  const Keyring keyring = Keyring::FromKeys({SecretKey::Generate()->Public()});
  WriteFileOrDie(dir / "manifest.json.sig", "");
  ASSERT_EQ(::symlink("/dev/zero", (dir / "manifest.json").c_str()), 0);
  absl::StatusOr<SignedManifest> endless = ReadSignedManifest(dir.path(), keyring);
  EXPECT_TRUE(absl::IsInvalidArgument(endless.status())) << endless.status();
  EXPECT_THAT(endless.status().message(), HasSubstr("not a regular file"));

  ASSERT_EQ(::unlink((dir / "manifest.json").c_str()), 0);
  ASSERT_EQ(::mkfifo((dir / "manifest.json").c_str(), 0600), 0);
  absl::StatusOr<SignedManifest> fifo = ReadSignedManifest(dir.path(), keyring);
  EXPECT_TRUE(absl::IsInvalidArgument(fifo.status())) << fifo.status();
  EXPECT_THAT(fifo.status().message(), HasSubstr("not a regular file"));
}

TEST(SignPackage, RefusesAManifestNoInstallerWouldTake) {
  TempDir dir;
  WriteFileOrDie(dir / "manifest.json", R"({"version":"../1"})");
  EXPECT_FALSE(SignPackage(dir.path(), SecretKey::Generate().value()).ok());
  EXPECT_FALSE(fs::exists(dir / "manifest.json.sig"));
}

}  // namespace
}  // namespace nehost::installer
