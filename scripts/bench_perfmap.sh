#!/usr/bin/env bash
# What naming JIT code from a large perf map costs at a dump: c_tests/jit_loop.c run for
# 0.3 s of CPU with 0 and with 100,000 extra perf-map lines, with and without rprof, in
# paired rounds. The cost of the map at the exit dump is
#   (rprof with 100k − plain with 100k) − (rprof with 0 − plain with 0),
# the program's own writing of the lines cancelling out. Prints medians in ms.
#   scripts/bench_perfmap.sh [ROUNDS]      (RPROF_LIB= another librprof.so)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-9}
lib=${RPROF_LIB:-$PWD/target/release/librprof.so}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -g -fomit-frame-pointer -o "$work/jit_loop" c_tests/jit_loop.c
ms() { # ms LIB EXTRA: wall ms of one run
  local t0 t1
  t0=$(date +%s%N)
  if [ "$1" = plain ]; then
    "$work/jit_loop" 0.3 "$2" >/dev/null 2>&1
  else
    (cd "$work" && RPROF_PROFILES=cpu LD_PRELOAD="$1" ./jit_loop 0.3 "$2" >/dev/null 2>&1)
  fi
  t1=$(date +%s%N)
  rm -f /tmp/perf-*.map "$work"/rprof.*.pb.gz
  echo $(( (t1 - t0) / 1000 ))
}
declare -a p0 r0 p1 r1
for i in $(seq "$rounds"); do
  p0+=("$(ms plain 0)"); r0+=("$(ms "$lib" 0)")
  p1+=("$(ms plain 100000)"); r1+=("$(ms "$lib" 100000)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_p0=$(median "${p0[@]}"); m_r0=$(median "${r0[@]}"); m_p1=$(median "${p1[@]}"); m_r1=$(median "${r1[@]}")
echo "workload: jit_loop, 0.3 s of CPU, $rounds paired rounds, medians (µs of wall time)"
printf '%-28s %10s %10s\n' "" plain rprof
printf '%-28s %10s %10s\n' "perf map of 1 line" "$m_p0" "$m_r0"
printf '%-28s %10s %10s\n' "perf map of 100,001 lines" "$m_p1" "$m_r1"
cost=$(( (m_r1 - m_p1) - (m_r0 - m_p0) ))
echo "reading and naming from the 100,001-line map at the exit dump: ${cost} µs"
