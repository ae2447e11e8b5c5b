#!/usr/bin/env bash
# Heap-profiling overhead: c_tests/malloc_bench.c (random sizes 16-1040 B, a window of live
# blocks per thread: WINDOW, default 4000, about 2 MB that stays in cache; 200000 gives a
# 100 MB heap that misses it anyway) with and without librprof.so at the default rate (all
# profiles on, as users run it), 1 and 2 threads; wall-time and peak-RSS ratios over RUNS
# (default 7) rounds of interleaved runs. Where Debian's libjemalloc2 is installed, also jemalloc alone, with its
# own sampling profiler (prof:true, lg_prof_sample:19 = 512 KiB), and under rprof; where
# heaptrack is installed, heaptrack on glibc. Each ratio is against the same allocator
# without a profiler. Then the in-process rows: 1 and 2 threads in step, each alternating,
# within one process, between the linked malloc/free and glibc's own (the hooks' cost
# alone, nearly free of the host's drift). Last, where valgrind is installed, callgrind's count of
# instructions per malloc/free pair of the loop (hooks and sampling included) for glibc,
# the forwarding preload and rprof: exact and repeatable, whatever the host's noise.
# A benchmark, not a test: it judges nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
OPS=${OPS:-3000000}
WINDOW=${WINDOW:-4000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/malloc_bench" c_tests/malloc_bench.c -ldl
cc -O2 -o "$work/run_measured" scripts/run_measured.c
je=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2

cc -O2 -shared -fPIC -DFORWARD_MALLOC -o "$work/forward.so" scripts/bench_reference.c
# RPROF_LIB names another build of the library to measure. A copy, so that a rebuild
# during the run does not change what is measured.
if [[ -z ${RPROF_LIB:-} ]]; then
  cargo build --release -q -p rprof
  RPROF_LIB=target/release/librprof.so
fi
cp "$RPROF_LIB" "$work/librprof.so"
lib=$work/librprof.so
configs=(glibc forward rprof rprof-unsampled)
[[ -f $je ]] && configs+=(jemalloc jemalloc+prof jemalloc+rprof)
command -v heaptrack >/dev/null && configs+=(heaptrack)

run() { # config threads
  local cmd=("$work/malloc_bench" "$OPS" "$2" "$WINDOW")
  case $1 in
    glibc) "$work/run_measured" "${cmd[@]}" ;;
    forward) "$work/run_measured" env LD_PRELOAD="$work/forward.so" "${cmd[@]}" ;;
    rprof) "$work/run_measured" env LD_PRELOAD="$lib" RPROF_OUT="$work/p" "${cmd[@]}" ;;
    rprof-unsampled) "$work/run_measured" env LD_PRELOAD="$lib" RPROF_OUT="$work/p" RPROF_HEAP_RATE=0 \
      "${cmd[@]}" ;;
    jemalloc) "$work/run_measured" env LD_PRELOAD="$je" "${cmd[@]}" ;;
    jemalloc+prof) "$work/run_measured" env LD_PRELOAD="$je" \
      MALLOC_CONF=prof:true,lg_prof_sample:19,prof_prefix:"$work/jeprof" "${cmd[@]}" ;;
    jemalloc+rprof) "$work/run_measured" env LD_PRELOAD="$lib $je" RPROF_OUT="$work/p" "${cmd[@]}" ;;
    heaptrack) (cd "$work" && "$work/run_measured" heaptrack -o "$work/ht" "${cmd[@]}") ;;
  esac
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A wall rss
for threads in 1 2; do
  for ((i = 0; i < RUNS; i++)); do
    for c in "${configs[@]}"; do
      read -r w r < <(run "$c" "$threads")
      wall[$c.$threads]+="$w "
      rss[$c.$threads]+="$r "
      rm -f "$work"/p.* "$work"/jeprof.* "$work"/ht*
    done
  done
done

# In-process: rounds through the linked malloc/free and through glibc's own, back to back
# in each thread of one process, 1 and 2 threads in step (malloc_bench paired): the hooks'
# cost (sampling included) nearly free of the host's drift. Normalised by the same figure
# without a preload.
declare -A inproc
for threads in 1 2; do
  for ((i = 0; i < RUNS; i++)); do
    for c in glibc forward rprof rprof-unsampled; do
      case $c in
        glibc) pre=() ;;
        forward) pre=(env LD_PRELOAD="$work/forward.so") ;;
        rprof) pre=(env LD_PRELOAD="$lib" RPROF_OUT="$work/p") ;;
        rprof-unsampled) pre=(env LD_PRELOAD="$lib" RPROF_OUT="$work/p" RPROF_HEAP_RATE=0) ;;
      esac
      inproc[$c.$threads]+="$("${pre[@]}" "$work/malloc_bench" paired "$((2 * OPS))" "$WINDOW" "$threads") "
      rm -f "$work"/p.*
    done
  done
done

base_of() { case $1 in jemalloc*) echo jemalloc ;; *) echo glibc ;; esac; }
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
# The host's speed drifts over seconds; a ratio is the median over rounds of each round's
# ratio (runs seconds apart), which cancels most of that drift.
paired() { # values base-values
  paste <(tr ' ' '\n' <<<"$1" | grep .) <(tr ' ' '\n' <<<"$2" | grep .) | awk '{print $1/$2}' | median
}
printf '%-16s %7s %10s %10s %8s %8s %10s\n' config threads "wall (s)" "time ratio" "vs fwd" "RSS (MB)" "RSS ratio"
for threads in 1 2; do
  for c in "${configs[@]}"; do
    b=$(base_of "$c")
    w=$(med "${wall[$c.$threads]}")
    r=$(med "${rss[$c.$threads]}")
    vs=-
    [[ $b == glibc ]] && vs=$(printf '%.3f' "$(paired "${wall[$c.$threads]}" "${wall[forward.$threads]}")")
    printf '%-16s %7s %10.3f %10.3f %8s %8.1f %10.3f\n' "$c" "$threads" \
      "$(awk "BEGIN{print $w/1e9}")" "$(paired "${wall[$c.$threads]}" "${wall[$b.$threads]}")" "$vs" \
      "$(awk "BEGIN{print $r/1024}")" "$(paired "${rss[$c.$threads]}" "${rss[$b.$threads]}")"
  done
done
for threads in 1 2; do
  inbase=$(med "${inproc[glibc.$threads]}")
  infwd=$(med "${inproc[forward.$threads]}")
  for c in forward rprof rprof-unsampled; do
    printf '%-16s %7s %10s %10.3f %8.3f %8s %10s\n' "$c" "in-proc$threads" "-" \
      "$(awk "BEGIN{print $(med "${inproc[$c.$threads]}")/$inbase}")" \
      "$(awk "BEGIN{print $(med "${inproc[$c.$threads]}")/$infwd}")" "-" "-"
  done
done
echo "(malloc_bench: $OPS ops per thread, window $WINDOW blocks per thread; ratios: median over $RUNS"
echo " rounds of interleaved runs of each round's ratio; 'forward' only forwards malloc/free to"
echo " glibc, the floor for any interposer; in-procN: 41 rounds alternating linked and glibc's own"
echo " calls in each of N threads in step, median of $RUNS runs; rprof-unsampled: RPROF_HEAP_RATE=0, the hooks'"
echo " unsampled paths alone, exact counts kept; target: time <= 1.05 x forward)"

# Instructions per pair: the loop's inclusive count (callgrind) at 2N and at N operations,
# differenced so that start-up and exit cancel out.
if command -v valgrind >/dev/null; then
  n=200000
  per_pair() { # config
    local counts=() ops pre
    case $1 in
      glibc) pre=() ;;
      forward) pre=(env LD_PRELOAD="$work/forward.so") ;;
      rprof) pre=(env LD_PRELOAD="$lib" RPROF_OUT="$work/p") ;;
      rprof-unsampled) pre=(env LD_PRELOAD="$lib" RPROF_OUT="$work/p" RPROF_HEAP_RATE=0) ;;
    esac
    for ops in "$n" "$((2 * n))"; do
      "${pre[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
        "$work/malloc_bench" "$ops" 1 "$WINDOW" >/dev/null 2>&1
      counts+=("$(callgrind_annotate --inclusive=yes "$work/cg.out" 2>/dev/null |
        awk '/:worker /{gsub(",", "", $1); print $1; exit}')")
      rm -f "$work"/cg.out* "$work"/p.*
    done
    awk "BEGIN{printf \"%.1f\", (${counts[1]} - ${counts[0]}) / $n}"
  }
  g=$(per_pair glibc) f=$(per_pair forward) r=$(per_pair rprof) u=$(per_pair rprof-unsampled)
  printf '%-16s %12s %14s %22s %22s\n' callgrind "glibc" "forward" "rprof" "rprof-unsampled"
  printf '%-16s %12s %14s %22s %22s\n' "instr/pair" "$g" "$f ($(awk "BEGIN{printf \"%+.1f\", $f - $g}"))" \
    "$r ($(awk "BEGIN{printf \"%+.1f\", $r - $f}") vs fwd)" "$u ($(awk "BEGIN{printf \"%+.1f\", $u - $f}") vs fwd)"
fi
