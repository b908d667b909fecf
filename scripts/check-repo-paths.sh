#!/usr/bin/env bash
# Fails when a tracked test, script or Makefile rule refers to a path outside
# the repository, so that `make test` in any clone reads nothing but the clone.
# Part of `make test`. Looks at:
#   - every tracked Rust file, shell/Python/JS script, Makefile and .ci/ file,
#     for the places our machines keep third-party data (the shared folder beside the clone, /work/)
#     and for absolute paths to a home or a session directory;
#   - every `env!("CARGO_MANIFEST_DIR")` joined with a relative path, resolved
#     against its crate's directory: it must stay inside the repository.
# A line may opt out with the marker `repo-paths: outside-ok` — reserved for
# the separate compatibility-corpus target, which is not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
marker='repo-paths: outside-ok'
failures=0
report() { echo "FAIL $1: $2"; failures=$((failures + 1)); }

mapfile -t files < <(git ls-files -- '*.rs' '*.sh' '*.py' '*.mjs' '*.js' '*.toml' 'Makefile' '*/Makefile' '.ci/*' |
  grep -v '^testdata/')

# 1. Known outside locations, spelled in any way.
pattern='(\.\./)+shared(/|\b)|(^|[^[:alnum:]_.-])/work/|/root/(src|work)/|shared/(captures|peer-fixtures|spec|design)/'
for f in "${files[@]}"; do
  [ "$f" = scripts/check-repo-paths.sh ] && continue
  while IFS= read -r hit; do
    [[ $hit == *"$marker"* ]] && continue
    report "$f:${hit%%:*}" "refers to a path outside the repository: ${hit#*:}"
  done < <(grep -nE "$pattern" "$f" || true)
done

# 2. CARGO_MANIFEST_DIR + "relative path": resolve it against the crate dir.
for f in "${files[@]}"; do
  case $f in *.rs) ;; *) continue ;; esac
  grep -q 'CARGO_MANIFEST_DIR' "$f" || continue
  # The crate directory: the nearest Cargo.toml above the file.
  dir=$(dirname "$f")
  while [ "$dir" != . ] && [ ! -f "$dir/Cargo.toml" ]; do dir=$(dirname "$dir"); done
  while IFS= read -r hit; do
    line=${hit%%:*}
    text=${hit#*:}
    [[ $text == *"$marker"* ]] && continue
    rel=$(sed -nE 's/.*CARGO_MANIFEST_DIR"?\)?,? *"([^"]*)".*/\1/p' <<<"$text")
    [ -n "$rel" ] || rel=$(sed -nE 's/.*CARGO_MANIFEST_DIR.*\.join\("([^"]*)"\).*/\1/p' <<<"$text")
    [ -n "$rel" ] || continue
    resolved=$(realpath -m "$root/$dir/${rel#/}")
    case $resolved/ in
      "$root"/*) ;;
      *) report "$f:$line" "CARGO_MANIFEST_DIR + \"$rel\" resolves to $resolved, outside the repository" ;;
    esac
  done < <(grep -nE 'CARGO_MANIFEST_DIR' "$f")
done

if [ "$failures" -ne 0 ]; then
  echo "repo paths: $failures reference(s) outside the repository; tests must read only the repository (test data goes to testdata/)"
  exit 1
fi
echo "repo paths: ${#files[@]} tracked files checked, nothing refers outside the repository"
