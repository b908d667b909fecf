#!/usr/bin/env bash
# Makes Debian's `prometheus` (the recording-rules integration test's
# receiver) available: already on PATH, or installed with apt-get when this
# runs as root. Never fails: without it, the test says so and uses a minimal
# remote-write receiver instead.
set -u
if command -v prometheus >/dev/null 2>&1; then
  echo "prometheus: $(prometheus --version 2>&1 | head -1)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "prometheus: not installed and cannot install it here (needs root and apt-get); the recording-rules test will use its minimal receiver"
  exit 0
fi
echo "prometheus: installing Debian's package"
# Keep the package's service from starting (no init system in CI containers).
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created=1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends prometheus >/tmp/phlox-apt-prometheus.log 2>&1; then
  apt-get update >/dev/null 2>&1 || true
  apt-get install -y --no-install-recommends prometheus >/tmp/phlox-apt-prometheus.log 2>&1 ||
    echo "prometheus: apt-get install failed (see /tmp/phlox-apt-prometheus.log); the test will use its minimal receiver"
fi
[ "$created" = 1 ] && rm -f "$policy"
command -v prometheus >/dev/null 2>&1 && echo "prometheus: $(prometheus --version 2>&1 | head -1)"
exit 0
