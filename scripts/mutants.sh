#!/usr/bin/env bash
# Checks the test suite itself: applies each deliberate breakage in scripts/mutants/ (a
# patch of a few lines, its first line saying what it breaks) to a scratch clone of HEAD,
# one at a time, runs the whole suite, and prints which breakages it caught and by which
# tests. Not part of the suite (about a minute a breakage); run it after changing tests.
#
#   scripts/mutants.sh              every breakage
#   scripts/mutants.sh heap block   those whose file name contains one of the words
#
# The scratch clone and its target directory live in $RPROF_MUTANTS_DIR (default
# ${TMPDIR:-/tmp}/rprof-mutants) and are kept between runs so that builds are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${RPROF_MUTANTS_DIR:-${TMPDIR:-/tmp}/rprof-mutants}
src=$work/src
mkdir -p "$work"
[ -d "$src/.git" ] || git clone -q "$root" "$src"
git -C "$src" fetch -q "$root" HEAD
git -C "$src" checkout -q --detach --force FETCH_HEAD
git -C "$src" clean -qfdx
export CARGO_TARGET_DIR=$work/target

patches=()
for p in "$root"/scripts/mutants/*.patch; do
  if [ $# -eq 0 ]; then
    patches+=("$p")
  else
    for word in "$@"; do
      case $(basename "$p") in *"$word"*) patches+=("$p"); break ;; esac
    done
  fi
done
[ ${#patches[@]} -gt 0 ] || { echo "no breakage matches: $*" >&2; exit 2; }

# Runs the suite in the clone; its output goes to $1.
suite() {
  (cd "$src" && export RPROF_EMBED=0 && cargo build --release --workspace -q \
    && cargo test --release --workspace) >"$1" 2>&1
}

echo "baseline: the suite on HEAD without a breakage" >&2
if ! suite "$work/baseline.log"; then
  echo "the suite fails on HEAD itself (see $work/baseline.log): fix that first" >&2
  exit 1
fi

caught=0
rows=()
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  what=$(head -n 1 "$p")
  git -C "$src" checkout -q --force -- .
  if ! git -C "$src" apply "$p"; then
    rows+=("| $name | $what | does not apply to HEAD | |")
    continue
  fi
  log=$work/$name.log
  echo "$name: $what" >&2
  start=$(date +%s)
  if suite "$log"; then
    rows+=("| $name | $what | **no** | |")
  elif grep -q '^error\(\[E[0-9]*\]\)\?:' "$log" && ! grep -q '^test ' "$log"; then
    # A breakage that does not build tests nothing: it is not counted as caught.
    rows+=("| $name | $what | **does not build** | see $log |")
  else
    caught=$((caught + 1))
    by=$(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' | sort -u | head -n 4 | paste -sd, - | sed 's/,/, /g')
    rows+=("| $name | $what | yes | $by |")
  fi
  echo "  $(($(date +%s) - start)) s" >&2
done
git -C "$src" checkout -q --force -- .

echo
echo "| breakage | what it breaks | caught | first failing tests |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$caught of ${#patches[@]} breakages caught"
