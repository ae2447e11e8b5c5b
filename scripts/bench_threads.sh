#!/usr/bin/env bash
# Thread creation cost: c_tests/thread_churn.c (20000 empty threads created and joined one
# at a time) without a preload, under librprof.so (all profiles on, as users run it: each
# thread gets its CPU timer, its counters and an alternate signal stack), and, with
# RPROF_BASE=<another build of librprof.so>, under that build too. Wall-time ratios, the
# median over RUNS (default 11) rounds of interleaved runs of each round's ratio.
# A benchmark, not a test: it judges nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-11}
N=${N:-20000}
cargo build --release -q -p rprof
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/thread_churn" c_tests/thread_churn.c
cc -O2 -o "$work/run_measured" scripts/run_measured.c
cp target/release/librprof.so "$work/librprof.so"
configs=(plain rprof)
if [[ -n ${RPROF_BASE:-} ]]; then
  cp "$RPROF_BASE" "$work/base.so"
  configs+=(base)
fi
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A wall
for ((i = 0; i < RUNS; i++)); do
  for c in "${configs[@]}"; do
    case $c in
      plain) pre=() ;;
      rprof) pre=(env LD_PRELOAD="$work/librprof.so" RPROF_OUT="$work/p") ;;
      base) pre=(env LD_PRELOAD="$work/base.so" RPROF_OUT="$work/p") ;;
    esac
    read -r w _ < <("$work/run_measured" "${pre[@]}" "$work/thread_churn" "$N")
    wall[$c]+="$w "
    rm -f "$work"/p.*
  done
done
paired() { # a b
  paste <(tr ' ' '\n' <<<"${wall[$1]}" | grep .) <(tr ' ' '\n' <<<"${wall[$2]}" | grep .) |
    awk '{print $1/$2}' | median
}
plain=$(tr ' ' '\n' <<<"${wall[plain]}" | grep . | median)
printf 'without rprof: %.2f us per create+join\n' "$(awk "BEGIN{print $plain/$N/1000}")"
printf 'rprof / without: %.3f\n' "$(paired rprof plain)"
if [[ -n ${RPROF_BASE:-} ]]; then
  printf 'base / without: %.3f\n' "$(paired base plain)"
  printf 'rprof / base: %.3f\n' "$(paired rprof base)"
fi
echo "($N threads created and joined one at a time; median over $RUNS rounds of each round's ratio)"
