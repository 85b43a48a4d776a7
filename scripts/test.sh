#!/usr/bin/env bash
# Builds nehost and runs the whole test suite (unit and integration) with CTest.
# Installs the Debian packages it needs first, when any is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cmake --preset default
cmake --build --preset default
ctest --preset default "$@"
