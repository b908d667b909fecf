#!/usr/bin/env bash
# Runs the Rust tests with cargo-nextest when it is installed, else cargo test.
set -euo pipefail
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --profile ci "$@"
fi
exec cargo test "$@"
