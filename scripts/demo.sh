#!/usr/bin/env bash
# Builds nehost and runs the demo on the embedded default: nehostd hosts the nehost-filter
# beside it as org.nehost.filter, and nehostctl finds it by name, adds a domain rule that the
# filter's DNS proxy then answers itself, asks for a flow verdict, survives a kill -9 of the
# extension, and stops everything. All state lives in a temporary folder; DNS is served on
# 127.0.0.1 only, on a port of its own (DEMO_DNS_PORT, default 53535).
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
dns_port=${DEMO_DNS_PORT:-53535}
build/bin/nehostd --config-dir "$demo/etc" --runtime-dir "$demo/run" --state-dir "$demo/state" \
  --default-dns-listen "127.0.0.1:$dns_port" 2>"$demo/nehostd.log" &
nehostd_pid=$!

# nehostd binds its socket before anything else; the lookup waits for the filter to start.
for _ in $(seq 100); do [[ -S "$demo/run/nehostd.sock" ]] && break; sleep 0.05; done

step ctl lookup org.nehost.filter
step ctl status org.nehost.filter
step ctl rules add org.nehost.filter ads.example.com
step ctl rules add org.nehost.filter tracker.example --suffix
step ctl rules list org.nehost.filter
printf '\n\033[1m$ dig @127.0.0.1 -p %s ads.example.com   # answered by the filter itself\033[0m\n' "$dns_port"
dig @127.0.0.1 -p "$dns_port" +tries=1 +time=2 ads.example.com | grep -E 'status:|^ads' ||
  echo "(no DNS answer: is 127.0.0.1:$dns_port taken? set DEMO_DNS_PORT)"
step ctl flows add org.nehost.filter no-telnet --deny --protocol tcp --port 23
step ctl evaluate org.nehost.filter --protocol tcp --direction outbound --address 192.0.2.10 --port 23
step ctl stats org.nehost.filter

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
