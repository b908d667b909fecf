#!/usr/bin/env bash
# `make conformance`: the third-party compatibility corpus (kept beside the
# clone, never copied into it; PEER_FIXTURES overrides its place) through
# target/debug/conformance, with the known divergences of
# e2e/conformance-known.txt. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${PEER_FIXTURES:-../shared/peer-fixtures} # repo-paths: outside-ok (the corpus is not part of make test)
if [ ! -f "$corpus/MANIFEST.tsv" ]; then
  echo "conformance: no corpus at $corpus (MANIFEST.tsv missing): set PEER_FIXTURES=DIR"
  exit 1
fi
exec target/debug/conformance "$corpus" e2e/conformance-known.txt
