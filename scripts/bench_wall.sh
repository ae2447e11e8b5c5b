#!/usr/bin/env bash
# What the wall-clock profile costs: c_tests/idle_threads.c (N threads waiting on a
# condition variable for SECONDS, as a server's idle workers do) run plain and under
# librprof.so with RPROF_PROFILES=wall at the default rate (20 a second, stretched to keep
# the sampler under 1 % of a core) and at several fixed RPROF_WALL_HZ, for N = 20 and 200. The
# program reports its own CPU time (every thread, rprof's sampler included) before it
# exits; the difference from the plain run is the sampler's, printed as % of one core and
# as µs per thread per tick. Median over RUNS (default 5) rounds of interleaved runs.
# Also the CPU a thread that sleeps 2/3 and computes 1/3 loses to being asked for its
# stack (c_tests/wall_split.c under cpu,wall against cpu alone). A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SECONDS_EACH=${SECONDS_EACH:-3}
RATES=${RATES:-"default 10 50 100"}
if [[ -z ${RPROF_LIB:-} ]]; then
  cargo build --release -q -p rprof
  RPROF_LIB=target/release/librprof.so
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$RPROF_LIB" "$work/librprof.so"
cc -O2 -pthread -o "$work/idle_threads" c_tests/idle_threads.c
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
cpu_of() { # threads hz(0: plain; default: RPROF_WALL_HZ unset) -> cpu ns
  local env=()
  case $2 in
    0) ;;
    default) env=(LD_PRELOAD="$work/librprof.so" RPROF_PROFILES=wall RPROF_OUT="$work/p") ;;
    *) env=(LD_PRELOAD="$work/librprof.so" RPROF_PROFILES=wall RPROF_WALL_HZ="$2" RPROF_OUT="$work/p") ;;
  esac
  env "${env[@]}" "$work/idle_threads" "$1" "$SECONDS_EACH" 2>&1 >/dev/null | sed -n 's/^cpu_ns=//p'
  rm -f "$work"/p.*
}
printf '%-8s %-8s %14s %14s %12s %18s\n' threads hz "plain cpu ms" "rprof cpu ms" "% of a core" "us/thread/tick"
for threads in 20 200; do
  for hz in $RATES; do
    plain=() with=()
    for ((i = 0; i < RUNS; i++)); do
      plain+=("$(cpu_of "$threads" 0)")
      with+=("$(cpu_of "$threads" "$hz")")
    done
    p=$(printf '%s\n' "${plain[@]}" | median)
    w=$(printf '%s\n' "${with[@]}" | median)
    awk -v t="$threads" -v hz="$hz" -v p="$p" -v w="$w" -v s="$SECONDS_EACH" 'BEGIN {
      d = w - p; if (d < 0) d = 0
      per = hz == "default" ? "-" : sprintf("%.2f", d / 1e3 / (t * hz * s))
      printf "%-8s %-8s %14.1f %14.1f %11.2f%% %18s\n", t, hz, p / 1e6, w / 1e6, 100 * d / (s * 1e9), per
    }'
  done
done
echo "(CPU time the program reports for all its threads, rprof's sampler included, over"
echo " $SECONDS_EACH s; median of $RUNS runs each; the difference is the wall profile's cost)"
