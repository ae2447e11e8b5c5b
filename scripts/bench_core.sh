#!/usr/bin/env bash
# What rprof costs a program that asked for nothing in particular, beside a preload that
# only forwards malloc, free and the mutex calls (scripts/bench_reference.c built with
# FORWARD_MALLOC and FORWARD_LOCKS, no thread): the floor any interposer starts from.
#   putc       a single-threaded putc loop to /dev/null (c_tests/core_bench.c);
#   mutex      a single-threaded uncontended lock/unlock loop (c_tests/lock_bench.c);
#   processes  a shell loop running /bin/true 200 times (every process preloaded);
#   fork       a fork + _exit + wait loop (c_tests/core_bench.c).
# putc, mutex and fork are timed inside the program (loop_ns=, fork_ns=): the cost per
# call. putc and mutex are also timed as whole processes ("… process" rows), which adds
# what a process pays once: loading the library and, having recorded CPU samples,
# symbolizing and writing its files at exit.
# rprof runs with its defaults (all four profiles); for processes, also dormant
# (RPROF_PROGRAMS naming no program, as `rprof run --only` leaves the others). Each figure is the median over RUNS
# (default 9) rounds of interleaved runs of each round's ratio, which cancels most of the
# host's drift; for processes, also the time added per process. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-9}
PUTC=${PUTC:-100000000}
LOCKS=${LOCKS:-50000000}
FORKS=${FORKS:-2000}
PROCS=200
# RPROF_LIB names another build of the library to measure (default: this checkout's).
if [[ -z ${RPROF_LIB:-} ]]; then
  cargo build --release -q -p rprof
  RPROF_LIB=target/release/librprof.so
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/core_bench" c_tests/core_bench.c
cc -O2 -pthread -o "$work/lock_bench" c_tests/lock_bench.c -ldl
cc -O2 -o "$work/run_measured" scripts/run_measured.c
cc -O2 -shared -fPIC -pthread -DFORWARD_LOCKS -DFORWARD_MALLOC -o "$work/forward.so" \
  scripts/bench_reference.c -ldl
# A copy, so that a rebuild during the run does not change what is measured.
cp "$RPROF_LIB" "$work/librprof.so"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
loads=(putc mutex processes fork)
configs=(plain forward rprof)
declare -A wall
for ((i = 0; i < RUNS; i++)); do
  for load in "${loads[@]}"; do
    case $load in
      putc) cmd=("$work/core_bench" putc "$PUTC") ;;
      mutex) cmd=("$work/lock_bench" uncontended "$LOCKS") ;;
      processes) cmd=(sh -c "i=0; while [ \$i -lt $PROCS ]; do /bin/true; i=\$((i+1)); done") ;;
      fork) cmd=("$work/core_bench" fork "$FORKS") ;;
    esac
    these=("${configs[@]}")
    [ "$load" = processes ] && these+=(dormant)
    for c in "${these[@]}"; do
      case $c in
        dormant) pre=(env LD_PRELOAD="$work/librprof.so" RPROF_OUT="$work/p" RPROF_PROGRAMS=no-such-program) ;;
        plain) pre=(env) ;;
        forward) pre=(env LD_PRELOAD="$work/forward.so") ;;
        rprof) pre=(env LD_PRELOAD="$work/librprof.so" RPROF_OUT="$work/p") ;;
      esac
      if [ "$load" = processes ]; then
        read -r w _ < <(cd "$work" && "$work/run_measured" "${pre[@]}" "${cmd[@]}")
      else
        start=$(date +%s%N)
        err=$(cd "$work" && "${pre[@]}" "${cmd[@]}" 2>&1 >/dev/null)
        end=$(date +%s%N)
        w=$(sed -n 's/^\(loop\|fork\)_ns=//p' <<<"$err")
        [ "$load" = fork ] || wall[$c.$load-process]+="$((end - start)) "
      fi
      wall[$c.$load]+="$w "
      rm -f "$work"/p.*
    done
  done
done
col() { tr ' ' '\n' <<<"${wall[$1.$2]}" | grep .; }
ratio() { paste <(col "$1" "$3") <(col "$2" "$3") | awk '{print $1/$2}' | median; }
printf '%-14s %12s %14s %14s %14s %8s\n' load "glibc (s)" "forward/glibc" "rprof/glibc" "rprof/forward" target
for load in putc putc-process mutex mutex-process processes fork; do
  a=$(col plain "$load" | median)
  case $load in putc | mutex) target="<= 1.05" ;; fork) target="<= 1.2" ;; *) target="" ;; esac
  printf '%-14s %12.3f %14.3f %14.3f %14.3f %8s\n' "$load" "$(awk "BEGIN{print $a/1e9}")" \
    "$(ratio forward plain "$load")" "$(ratio rprof plain "$load")" "$(ratio rprof forward "$load")" "$target"
done
added=$(paste <(col rprof processes) <(col forward processes) |
  awk -v n=$((PROCS + 1)) '{print ($1-$2)/n/1e6}' | median)
printf 'processes: %.3f ms added per process beside forwarding (target <= 0.3)\n' "$added"
dormant=$(paste <(col dormant processes) <(col forward processes) |
  awk -v n=$((PROCS + 1)) '{print ($1-$2)/n/1e6}' | median)
printf 'processes: %.3f ms added per dormant process (RPROF_PROGRAMS matching none) beside forwarding\n' "$dormant"
echo "(median over $RUNS rounds of each round's ratio; putc: $PUTC calls, mutex: $LOCKS pairs,"
echo " processes: sh running /bin/true $PROCS times, fork: $FORKS forks, its glibc column the time of one fork)"
putc_fixed=$(paste <(col rprof putc-process) <(col rprof putc) <(col forward putc-process) <(col forward putc) |
  awk '{print (($1-$2)-($3-$4))/1e6}' | median)
printf 'putc process: %.1f ms paid once beyond the loop, beside forwarding (load, exit, files)\n' "$putc_fixed"
