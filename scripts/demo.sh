#!/usr/bin/env bash
# Builds nehost and runs the demo on the embedded default: nehostd hosts the nehost-filter
# beside it as org.nehost.filter, and nehostctl finds it by name, adds a rule, survives a
# kill -9 of the extension, and stops everything. All state lives in a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default --target nehostd nehost-filter nehostctl

demo=$(mktemp -d /tmp/nehost-demo-XXXXXX)
nehostd_pid=""
cleanup() {
  if [[ -n "$nehostd_pid" ]] && kill -0 "$nehostd_pid" 2>/dev/null; then
    kill -TERM "$nehostd_pid"
    wait "$nehostd_pid" || true
  fi
  rm -rf "$demo"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
ctl() { build/bin/nehostctl --runtime-dir "$demo/run" "$@"; }

echo "demo folder: $demo (config, runtime and state folders; removed at the end)"
build/bin/nehostd --config-dir "$demo/etc" --runtime-dir "$demo/run" --state-dir "$demo/state" \
  2>"$demo/nehostd.log" &
nehostd_pid=$!

# nehostd binds its socket before anything else; the lookup waits for the filter to start.
for _ in $(seq 100); do [[ -S "$demo/run/nehostd.sock" ]] && break; sleep 0.05; done

step ctl lookup org.nehost.filter
step ctl status org.nehost.filter
step ctl rules add org.nehost.filter ads.example.com
step ctl rules add org.nehost.filter tracker.example --suffix
step ctl rules list org.nehost.filter

pid=$(ctl lookup org.nehost.filter --json | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
printf '\n\033[1m$ kill -9 %s   # the extension crashes\033[0m\n' "$pid"
kill -9 "$pid"
step ctl lookup org.nehost.filter
step ctl rules list org.nehost.filter
step ctl list

printf '\n\033[1m$ kill -TERM %s   # nehostd stops its services, then itself\033[0m\n' "$nehostd_pid"
kill -TERM "$nehostd_pid"
wait "$nehostd_pid"
nehostd_pid=""

printf '\n\033[1mnehostd log:\033[0m\n'
cat "$demo/nehostd.log"
