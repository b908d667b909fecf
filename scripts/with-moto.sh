#!/usr/bin/env bash
# Runs a command with the test environment: a local S3-compatible server
# (moto, pinned) on a free loopback port (PHLOX_TEST_S3_ENDPOINT, for the S3
# conformance tests) and a Python with the Pyroscope SDK (pyroscope-io,
# pinned; PHLOX_TEST_PYTHON, for the SDK end-to-end test). Installs
# python3/venv with apt-get when the machine lacks them; packages go to $VENV.
set -euo pipefail
VENV=${VENV:-.venv}
MOTO_VERSION=${MOTO_VERSION:-5.2.5}
PYROSCOPE_IO_VERSION=${PYROSCOPE_IO_VERSION:-1.4.0}
want="moto=$MOTO_VERSION pyroscope-io=$PYROSCOPE_IO_VERSION"

if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi
if [ ! -x "$VENV/bin/moto_server" ] || [ "$(cat "$VENV/.versions" 2>/dev/null)" != "$want" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" "pyroscope-io==$PYROSCOPE_IO_VERSION"
  echo "$want" > "$VENV/.versions"
fi

port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true; rm -f "$log"' EXIT

endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  if "$VENV/bin/python" - "$endpoint" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/phlox-test", method="PUT")
urllib.request.urlopen(req, timeout=2)
PY
  sleep 0.2
done
echo "moto S3 server on $endpoint (bucket phlox-test)"
export PHLOX_TEST_S3_ENDPOINT="$endpoint" PHLOX_TEST_S3_BUCKET=phlox-test PHLOX_TEST_REQUIRE_S3=1
# For tests that start a moto of their own (the cluster in a box, on its bridge).
export PHLOX_TEST_MOTO_SERVER="$(cd "$VENV/bin" && pwd)/moto_server"
export PHLOX_TEST_PYTHON="$(cd "$(dirname "$VENV/bin/python")" && pwd)/python" PHLOX_TEST_REQUIRE_PYTHON=1
"$@"
