// launch_check_bench: what nehostd's check before each launch costs (supervisor/verification.h).
//
// Builds a signed package of a real binary (nehost-filter) in a temporary prefix, then times,
// in rounds that alternate:
//   - signed: reading the keys, the manifest and its signature, checking the Ed25519 signature
//     and finding the executable's sha256 (ExpectSignedExecutable), the step an upgrade does
//     without nehostd's lock;
//   - cached: opening the executable and finding its digest by file identity (the
//     ExecutableCache hit that every restart and upgrade launch takes);
//   - cold: hashing the whole binary, as the first launch of a new binary does.
// Prints p50 and p99 of each, in microseconds.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/log.h"
#include "installer/package.h"
#include "installer/signature.h"
#include "supervisor/verification.h"

namespace nehost::bench {
namespace {

namespace fs = std::filesystem;

constexpr char kProgram[] = "launch_check_bench";
constexpr char kUsage[] =
    "usage: launch_check_bench [--rounds N]\n"
    "\n"
    "Times nehostd's check before a launch on a signed package of nehost-filter: the signed\n"
    "manifest (keys, signature, sha256 lookup), a cached digest (open, fstat, cache hit) and a\n"
    "cold hash of the whole binary. Prints p50/p99 in microseconds. --rounds: 200 by default.\n";

struct Figures {
  std::vector<double> signed_us;
  std::vector<double> cached_us;
  std::vector<double> cold_us;
};

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(fraction * values.size()));
  return values[index];
}

template <typename Step>
double TimeUs(Step step) {
  const absl::Time start = absl::Now();
  step();
  return absl::ToDoubleMicroseconds(absl::Now() - start);
}

absl::Status Run(int rounds) {
  const std::string dir =
      fs::temp_directory_path() / absl::StrCat("nehost-launch-check-", getpid());
  const std::string prefix = dir + "/prefix";
  const std::string config = dir + "/etc";
  absl::StatusOr<installer::PublicKey> key = installer::WriteKeyPair(dir + "/signing", "bench");
  if (!key.ok()) return key.status();
  fs::create_directories(config + "/keys");
  fs::copy_file(dir + "/signing/bench.pub", config + "/keys/bench.pub");

  installer::BuildSpec spec{.version = "1.0.0",
                            .out_dir = dir + "/pkg",
                            .files = {{"bin/nehost-filter", NEHOST_FILTER_PATH}},
                            .services = {{"org.nehost.filter", "bin/nehost-filter"}}};
  if (absl::StatusOr<installer::Manifest> built = installer::BuildPackage(spec); !built.ok()) {
    return built.status();
  }
  absl::StatusOr<installer::SecretKey> secret =
      installer::SecretKey::Read(dir + "/signing/bench.secret");
  if (!secret.ok()) return secret.status();
  if (absl::Status signed_ = installer::SignPackage(spec.out_dir, *secret); !signed_.ok()) {
    return signed_;
  }
  absl::StatusOr<installer::Keyring> keyring = installer::Keyring::Load(config + "/keys");
  if (!keyring.ok()) return keyring.status();
  if (auto installed = installer::Install(spec.out_dir, prefix, *keyring); !installed.ok()) {
    return installed.status();
  }

  const std::string binary = prefix + "/versions/1.0.0/bin/nehost-filter";
  struct stat info {};
  ::stat(binary.c_str(), &info);
  supervisor::ExecutableCache cache;
  Figures figures;
  absl::Status failed;
  for (int i = 0; i < rounds && failed.ok(); ++i) {
    absl::StatusOr<supervisor::ExpectedExecutable> expected;
    figures.signed_us.push_back(TimeUs([&] {
      expected = supervisor::ExpectSignedExecutable(prefix, "1.0.0", "bin/nehost-filter",
                                                    config + "/keys");
    }));
    if (!expected.ok()) failed = expected.status();
    figures.cached_us.push_back(TimeUs([&] {
      absl::StatusOr<supervisor::OpenedExecutable> opened = cache.Open(binary, *expected);
      if (!opened.ok()) failed = opened.status();
    }));
    if (i % 10 == 0) {
      figures.cold_us.push_back(TimeUs([&] {
        if (absl::StatusOr<std::string> digest = Sha256File(binary); !digest.ok()) {
          failed = digest.status();
        }
      }));
    }
  }
  fs::remove_all(dir);
  if (!failed.ok()) return failed;

  std::printf("binary: nehost-filter, %lld bytes; %d rounds (cold: every 10th)\n",
              static_cast<long long>(info.st_size), rounds);
  std::printf("%-8s %10s %10s\n", "check", "p50_us", "p99_us");
  for (const auto& [name, values] :
       {std::pair{"signed", &figures.signed_us}, std::pair{"cached", &figures.cached_us},
        std::pair{"cold", &figures.cold_us}}) {
    std::printf("%-8s %10.1f %10.1f\n", name, Percentile(*values, 0.5), Percentile(*values, 0.99));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace nehost::bench

int main(int argc, char** argv) {
  int rounds = 200;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help") {
      std::fputs(nehost::bench::kUsage, stdout);
      return 0;
    }
    if (flag == "--rounds" && i + 1 < argc && absl::SimpleAtoi(argv[i + 1], &rounds) &&
        rounds > 0 && rounds <= 100000) {
      ++i;
      continue;
    }
    std::fprintf(stderr, "%s: bad argument '%s'\n%s", nehost::bench::kProgram, argv[i],
                 nehost::bench::kUsage);
    return 2;
  }
  nehost::InitLogging(nehost::bench::kProgram, nehost::LogVerbosity::kQuiet);
  absl::Status ran = nehost::bench::Run(rounds);
  if (!ran.ok()) {
    std::fprintf(stderr, "%s: %s\n", nehost::bench::kProgram, std::string(ran.message()).c_str());
    return 1;
  }
  return 0;
}
