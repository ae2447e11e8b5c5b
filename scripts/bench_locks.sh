#!/usr/bin/env bash
# Lock-profiling overhead: c_tests/lock_bench.c with and without librprof.so (block and
# mutex profiles at their defaults, all profiles on, as users run it):
#   uncontended  a lock/unlock loop in a single-threaded program;
#   threaded     the same loop in a thread of a program that has threads;
#   contended    two threads contending for one mutex with tiny critical sections.
# Beside rprof, two reference preloads (scripts/bench_reference.c) show the floor any
# profiler of this kind starts from: an idle helper thread alone, and a helper thread plus
# lock/unlock shims that only forward. Last, the CPU a thread spends per blocking wait
# (c_tests/sem_pingpong.c: sem_wait released after about 1 ms), without and with rprof:
# what the spin before a wait and the timing around it cost. Wall-time ratios over RUNS (default 9) rounds of
# interleaved runs; then the in-process row: the uncontended loop alternating, within one
# process, between the linked symbols and glibc's own functions (the hooks' cost alone,
# nearly free of the host's drift). A benchmark, not a test: it judges nothing.
# RPROF_LIB names another build of the library to measure (an earlier one, say).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-9}
# Long enough (about a second) that rprof's fixed start and exit cost (about 10 ms: the
# collector thread, writing four files) stays out of the per-call overhead measured here.
UNCONTENDED=${UNCONTENDED:-100000000}
CONTENDED=${CONTENDED:-20000000}
cargo build --release -q -p rprof
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/lock_bench" c_tests/lock_bench.c -ldl
cc -O2 -pthread -o "$work/sem_pingpong" c_tests/sem_pingpong.c
WAITS=${WAITS:-500}
cc -O2 -o "$work/run_measured" scripts/run_measured.c
cc -O2 -shared -fPIC -pthread -DHELPER_THREAD -o "$work/thread.so" scripts/bench_reference.c
cc -O2 -shared -fPIC -pthread -DHELPER_THREAD -DFORWARD_LOCKS -o "$work/forward.so" \
  scripts/bench_reference.c -ldl
# A copy, so that a rebuild during the run does not change what is measured.
cp "${RPROF_LIB:-target/release/librprof.so}" "$work/librprof.so"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# WAITS_ONLY=1: only the CPU per blocking wait.
modes=(uncontended threaded contended)
[[ ${WAITS_ONLY:-0} == 1 ]] && modes=()
configs=(plain thread forward rprof)
declare -A wall
for ((i = 0; i < RUNS; i++)); do
  for mode in "${modes[@]}"; do
    for c in "${configs[@]}"; do
      case $c in
        plain) pre=() ;;
        thread) pre=(env LD_PRELOAD="$work/thread.so") ;;
        forward) pre=(env LD_PRELOAD="$work/forward.so") ;;
        rprof) pre=(env LD_PRELOAD="$work/librprof.so" RPROF_OUT="$work/p") ;;
      esac
      n=$UNCONTENDED; [[ $mode == contended ]] && n=$CONTENDED
      read -r w _ < <("$work/run_measured" "${pre[@]}" "$work/lock_bench" "$mode" "$n")
      wall[$c.$mode]+="$w "
      rm -f "$work"/p.*
    done
  done
done
# In-process: rounds through the linked symbols and through glibc's own functions, back
# to back in one thread of one process (lock_bench paired): the hooks' per-call cost alone.
declare -A inproc
for ((i = 0; i < RUNS && ${#modes[@]} > 0; i++)); do
  for c in plain forward rprof; do
    case $c in
      plain) pre=() ;;
      forward) pre=(env LD_PRELOAD="$work/forward.so") ;;
      rprof) pre=(env LD_PRELOAD="$work/librprof.so" RPROF_OUT="$work/p") ;;
    esac
    inproc[$c]+="$("${pre[@]}" "$work/lock_bench" paired "$UNCONTENDED") "
    rm -f "$work"/p.*
  done
done
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
# The host's speed drifts over seconds; a ratio is the median over rounds of each round's
# ratio (runs seconds apart), which cancels most of that drift.
paired() { # config mode
  paste <(tr ' ' '\n' <<<"${wall[$1.$2]}" | grep .) <(tr ' ' '\n' <<<"${wall[plain.$2]}" | grep .) |
    awk '{print $1/$2}' | median
}
[[ ${#modes[@]} -gt 0 ]] && printf '%-12s %12s %14s %16s %10s %8s\n' load "without (s)" "helper thread" "thread+forward" rprof target
for mode in "${modes[@]}"; do
  a=$(med "${wall[plain.$mode]}")
  target=1.10; [[ $mode == contended ]] && target=1.25
  printf '%-12s %12.3f %14.3f %16.3f %10.3f %8s\n' "$mode" "$(awk "BEGIN{print $a/1e9}")" \
    "$(paired thread "$mode")" "$(paired forward "$mode")" "$(paired rprof "$mode")" "<= $target"
done
# Without a preload the ratio measures a call through the PLT against one through a
# pointer; the hooks' cost is the ratio beyond that.
if [[ ${#modes[@]} -gt 0 ]]; then
base=$(med "${inproc[plain]}")
printf '%-12s %12s %14s %16.3f %10.3f %8s\n' "in-process" "-" "-" \
  "$(awk "BEGIN{print $(med "${inproc[forward]}")/$base}")" \
  "$(awk "BEGIN{print $(med "${inproc[rprof]}")/$base}")" "<= 1.10"
echo "(ratios to the program without a preload, median over $RUNS rounds of each round's ratio;"
echo " $UNCONTENDED lock/unlock pairs, or 2 threads x $CONTENDED; in-process: the uncontended"
echo " loop in a thread, 41 rounds alternating hooked and glibc's own calls, median of $RUNS runs)"
fi
# CPU per blocking wait: rounds alternate without and with rprof; the thread's own CPU
# time (CLOCK_THREAD_CPUTIME_ID) over WAITS waits, median of the rounds.
declare -A waitcpu
for ((i = 0; i < RUNS; i++)); do
  for c in plain rprof; do
    case $c in
      plain) pre=() ;;
      rprof) pre=(env LD_PRELOAD="$work/librprof.so" RPROF_OUT="$work/p") ;;
    esac
    v=$("${pre[@]}" "$work/sem_pingpong" "$WAITS" 2>&1 >/dev/null | sed -n 's/^cpu_per_wait_ns=//p')
    waitcpu[$c]+="$v "
    rm -f "$work"/p.*
  done
done
wp=$(med "${waitcpu[plain]}")
wr=$(med "${waitcpu[rprof]}")
printf '\nCPU per blocking wait (sem_wait released after ~1 ms): without %.1f us, rprof %.1f us, added %.1f us\n' \
  "$(awk "BEGIN{print $wp/1000}")" "$(awk "BEGIN{print $wr/1000}")" "$(awk "BEGIN{print ($wr-$wp)/1000}")"
echo "(median of $RUNS rounds of $WAITS waits each, the waiting thread's own CPU time)"
