#!/usr/bin/env bash
# `make test`: every stage runs, whatever failed before it, and the failures
# are listed together at the end (exit 1 if any). Stages:
#   build        the phlox and phlox-operator binaries (the e2e tests, the
#                manifest validation and the browser test run them)
#   tools        Prometheus and a JDK, installed when missing (or a failure
#                naming what is missing)
#   rust         every Rust test of the workspace, with a local moto S3
#                server and the Python SDK (scripts/with-moto.sh); tests that
#                need a tool fail instead of skipping (PHLOX_TEST_REQUIRE_*)
#   k8s          scripts/k8s-validate.sh
#   browser      scripts/browser-test.sh
#   repo-paths   scripts/check-repo-paths.sh
# STAGES="rust k8s" runs a subset.
set -uo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
STAGES=${STAGES:-build tools rust k8s browser repo-paths}

passed=()
failed=()
stage() {
  local name=$1
  shift
  case " $STAGES " in *" $name "*) ;; *) return 0 ;; esac
  echo
  echo "=== make test: $name"
  local start=$SECONDS
  if "$@"; then
    passed+=("$name")
    echo "=== make test: $name passed ($((SECONDS - start)) s)"
  else
    failed+=("$name")
    echo "=== make test: $name FAILED ($((SECONDS - start)) s)"
  fi
}

stage build "$CARGO" build --bin phlox --bin phlox-operator
stage tools scripts/ensure-test-tools.sh
stage rust env PHLOX_TEST_REQUIRE_PROMETHEUS=1 PHLOX_TEST_REQUIRE_JDK=1 PHLOX_TEST_REQUIRE_UNSHARE=1 \
  VENV="${VENV:-.venv}" scripts/with-moto.sh scripts/cargo-test.sh --workspace
stage k8s scripts/k8s-validate.sh
stage browser scripts/browser-test.sh
stage repo-paths scripts/check-repo-paths.sh

echo
echo "=== make test: ${#passed[@]} stage(s) passed${passed[*]:+ (${passed[*]})}, ${#failed[@]} failed${failed[*]:+ (${failed[*]})}"
[ ${#failed[@]} -eq 0 ]
