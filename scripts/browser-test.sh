#!/usr/bin/env bash
# The web UI's browser test (part of `make test`): headless Chromium from
# Debian's package (installed with apt-get when missing and running as
# root), playwright-core from npm (pinned in e2e/browser/package-lock.json),
# a phlox started here on free ports with known profiles. Screenshots and
# timings land in target/ui-test/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/ui-test
mkdir -p "$out"
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "browser test: installing Debian's chromium"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >"$out/apt.log" 2>&1 ||
    { apt-get update >/dev/null 2>&1 || true; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >"$out/apt.log" 2>&1 || true; }
fi
if [ ! -x "$chromium" ]; then
  echo "browser test: FAILED — no Chromium at $chromium and it could not be installed (needs root and apt-get: apt-get install chromium; see $out/apt.log), or set CHROMIUM=/path/to/chromium"
  exit 1
fi
if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "browser test: installing Debian's nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >"$out/apt-npm.log" 2>&1 ||
    { apt-get update >/dev/null 2>&1 || true; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >"$out/apt-npm.log" 2>&1 || true; }
fi
if ! command -v npm >/dev/null; then
  echo "browser test: FAILED — npm is not installed and could not be installed (needs root and apt-get: apt-get install nodejs npm; see $out/apt-npm.log)"
  exit 1
fi
(cd e2e/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
bin=${PHLOX_BIN:-target/debug/phlox}
data=$(mktemp -d)
log="$out/phlox.log"
"$bin" --data-dir "$data" --http-listen-address 127.0.0.1:0 --grpc-listen-address 127.0.0.1:0 --admin-listen-address 127.0.0.1:0 --log-format json >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
# The HTTP address from the "phlox is ready" log line.
http=""
for _ in $(seq 1 600); do
  http=$(grep -m1 '"phlox is ready"' "$log" | sed -n 's/.*"http":"\([^"]*\)".*/\1/p' || true)
  [ -n "$http" ] && break
  sleep 0.1
done
[ -n "$http" ] || { echo "browser test: phlox did not start; see $log"; exit 1; }
CHROMIUM="$chromium" node e2e/browser/ui.test.mjs "http://$http" "$out"
