#!/usr/bin/env bash
# Makes the programs the tests compare against available, from Debian's
# packages (installed with apt-get when missing and running as root):
#   - prometheus: the recording-rules test's remote-write receiver;
#   - a JDK with `java` and `jfr` (openjdk-17-jdk-headless): the JFR tests
#     record a workload and compare the parser with `jfr print`;
#   - gcc and binutils (strip, nm, readelf, addr2line): the symbolization
#     test builds and strips programs and compares with `addr2line`;
#   - debuginfod (elfutils' server): the symbolization test serves the
#     debug files from it.
# Fails, naming what is missing and how to get it, when a tool is absent and
# cannot be installed: `make test` never passes by skipping a check.
set -uo pipefail

apt_updated=0
# apt_install PACKAGE...: installs with apt-get (update once, on the first failure).
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  # Keep a package's service from starting (no init system in CI containers).
  local policy=/usr/sbin/policy-rc.d created=0 rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local log=/tmp/phlox-apt-$1.log
  if ! apt-get install -y --no-install-recommends "$@" >"$log" 2>&1; then
    if [ "$apt_updated" = 0 ]; then
      apt-get update >>"$log" 2>&1 || true
      apt_updated=1
    fi
    apt-get install -y --no-install-recommends "$@" >>"$log" 2>&1 || rc=1
  fi
  [ "$created" = 1 ] && rm -f "$policy"
  return $rc
}

missing=()

if ! command -v prometheus >/dev/null 2>&1; then
  echo "prometheus: installing Debian's package"
  apt_install prometheus || true
fi
if command -v prometheus >/dev/null 2>&1; then
  echo "prometheus: $(prometheus --version 2>&1 | head -1)"
else
  missing+=("prometheus (Debian package 'prometheus'; apt-get install prometheus, as root)")
fi

jdk_ok() { command -v java >/dev/null 2>&1 && command -v jfr >/dev/null 2>&1; }
if ! jdk_ok; then
  echo "JDK: installing Debian's openjdk-17-jdk-headless (java and jfr)"
  apt_install openjdk-17-jdk-headless || true
  hash -r
fi
if jdk_ok; then
  echo "JDK: $(java -version 2>&1 | head -1), jfr at $(command -v jfr)"
else
  missing+=("a JDK 17+ with java and jfr on PATH (Debian package 'openjdk-17-jdk-headless')")
fi

for tool in gcc strip nm readelf addr2line; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool: installing Debian's gcc and binutils"
    apt_install gcc binutils || true
    hash -r
  fi
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool (Debian packages 'gcc', 'binutils')")
done
echo "binutils: $(addr2line --version 2>/dev/null | head -1)"

if ! command -v debuginfod >/dev/null 2>&1; then
  echo "debuginfod: installing Debian's package"
  apt_install debuginfod || true
  hash -r
fi
if command -v debuginfod >/dev/null 2>&1; then
  echo "debuginfod: $(debuginfod --version 2>&1 | head -1)"
else
  missing+=("debuginfod (Debian package 'debuginfod'; apt-get install debuginfod, as root)")
fi

if [ ${#missing[@]} -ne 0 ]; then
  echo "The tests need tools that are missing and could not be installed here (installing needs root and apt-get):"
  for m in "${missing[@]}"; do echo "  - $m"; done
  exit 1
fi
exit 0
