#!/usr/bin/env bash
# Installs the Debian 12 packages that nehost's build, tests and demo need.
# Idempotent: packages already present are left alone, and apt is not touched at all when
# nothing is missing. Run as root (or with sudo available) on Debian 12.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make pkg-config
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libboost-dev libboost-filesystem-dev libboost-program-options-dev
  libsystemd-dev libspdlog-dev libsodium-dev libgtest-dev libgmock-dev
  libarchive-dev libbenchmark-dev
  # peers the tests and benchmarks run against: a DNS client, servers and a load generator
  systemd bind9-dnsutils dnsmasq-base dnsperf
  # the DNS parsing benchmark measures ldns against nehost's own parser; clang builds the
  # libFuzzer targets
  libldns-dev clang libclang-rt-14-dev
  # draws the upgrade benchmark's timeline
  gnuplot-nox
  # the .deb: CPack takes its dependencies from dpkg-shlibdeps; the test installs it with dpkg
  dpkg-dev
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi

echo "setup: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
