#!/usr/bin/env bash
# CPU-profiling overhead: wall time of a CPU-bound c_test (c_tests/cpu_split.c) with and
# without librprof.so, runs interleaved, median of RUNS (default 7) each, at 100 Hz and
# 1000 Hz requested; also the achieved rate of signals and of (overrun-weighted) samples
# per CPU second. The library has a fixed cost at exit (symbolizing, which means parsing
# the debug info of every object with samples: about 0.1 s when libc6-dbg is installed),
# measured from short runs (40 units, ~50 ms) and shown on its own; the last column is
# the ratio without it, i.e. the cost of sampling itself. A benchmark, not a test: it judges nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
UNITS=${UNITS:-4000}
cargo build --release -q -p rprof
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -g -o "$work/cpu_split" c_tests/cpu_split.c
lib=$PWD/target/release/librprof.so

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A times
log="$work/log"
run() { # mode units
  local t0
  t0=$(now_ns)
  if [[ $1 == off* ]]; then
    "$work/cpu_split" "$2" >/dev/null 2>&1
  else
    LD_PRELOAD=$lib RPROF_CPU_HZ=${1#fixed} RPROF_OUT="$work/p$1" RPROF_LOG=info \
      "$work/cpu_split" "$2" >/dev/null 2>>"$log.$1"
  fi
  times[$1]+="$(( $(now_ns) - t0 )) "
}
for ((i = 0; i < RUNS; i++)); do
  run off "$UNITS"; run 100 "$UNITS"; run 1000 "$UNITS"
  run offfixed 40; run fixed100 40
done

med_of() { tr ' ' '\n' <<<"${times[$1]}" | grep . | median; }
base=$(med_of off)
fixed=$(awk "BEGIN{print $(med_of fixed100) - $(med_of offfixed)}")
printf '%-10s %12s %8s %12s %14s %14s\n' "requested" "median wall" "ratio" "less fixed" "signals/cpu-s" "samples/cpu-s"
printf '%-10s %10.3f s %8s %12s %14s %14s\n' "none" "$(awk "BEGIN{print $base/1e9}")" "1.000" "1.000" "-" "-"
for mode in 100 1000; do
  med=$(med_of $mode)
  cpu=$(sed -n 's/^cpu_ns=//p' "$log.$mode" | awk '{t += $1} END {print t / 1e9}')
  sig=$(sed -n 's/.*cpu: \([0-9]*\) SIGPROF.*/\1/p' "$log.$mode" | awk '{t += $1} END {print t}')
  smp=$(sed -n 's/.*standing for \([0-9]*\) samples.*/\1/p' "$log.$mode" | awk '{t += $1} END {print t}')
  printf '%-10s %10.3f s %8.3f %12.3f %14.0f %14.0f\n' "${mode} Hz" "$(awk "BEGIN{print $med/1e9}")" \
    "$(awk "BEGIN{print $med/$base}")" "$(awk "BEGIN{print ($med-$fixed)/$base}")" \
    "$(awk "BEGIN{print $sig/$cpu}")" "$(awk "BEGIN{print $smp/$cpu}")"
done
printf 'fixed cost at 100 Hz of a 50 ms run (load, symbolizing, writing): %.1f ms\n' "$(awk "BEGIN{print $fixed/1e6}")"
echo "(median of $RUNS interleaved runs of cpu_split $UNITS; targets: <= 1.01 at 100 Hz, <= 1.05 at 1000 Hz)"
