#!/usr/bin/env bash
# Lock-profiling overhead: c_tests/lock_bench.c with and without librprof.so (block and
# mutex profiles at their defaults, all profiles on, as users run it): an uncontended
# lock/unlock loop and two threads contending for one mutex with tiny critical sections.
# Wall-time ratio, median of RUNS (default 5) interleaved runs. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
cargo build --release -q -p rprof
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/lock_bench" c_tests/lock_bench.c
cc -O2 -o "$work/run_measured" scripts/run_measured.c
lib=$PWD/target/release/librprof.so
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A wall
for ((i = 0; i < RUNS; i++)); do
  for mode in uncontended contended; do
    read -r w _ < <("$work/run_measured" "$work/lock_bench" "$mode")
    wall[plain.$mode]+="$w "
    read -r w _ < <("$work/run_measured" env LD_PRELOAD="$lib" RPROF_OUT="$work/p" "$work/lock_bench" "$mode")
    wall[rprof.$mode]+="$w "
    rm -f "$work"/p.*
  done
done
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
printf '%-12s %14s %14s %8s %8s\n' load "without (s)" "with rprof (s)" ratio target
for mode in uncontended contended; do
  a=$(med "${wall[plain.$mode]}"); b=$(med "${wall[rprof.$mode]}")
  target=1.10; [[ $mode == contended ]] && target=1.25
  printf '%-12s %14.3f %14.3f %8.3f %8s\n' "$mode" "$(awk "BEGIN{print $a/1e9}")" \
    "$(awk "BEGIN{print $b/1e9}")" "$(awk "BEGIN{print $b/$a}")" "<= $target"
done
echo "(uncontended: 20M lock/unlock in one thread; contended: 2 threads x 5M; median of $RUNS interleaved runs)"
