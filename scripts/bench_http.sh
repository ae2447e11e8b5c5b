#!/usr/bin/env bash
# What the profile server (RPROF_HTTP) costs. A benchmark, not a test.
#   latency  on c_tests/many_stacks.c (4096 distinct allocation stacks at RPROF_HEAP_RATE=1,
#            a thread burning CPU along as many paths): the time curl takes for heap (the
#            first request, which loads the symbols, and the median of the next ROUNDS),
#            heap?debug=1, goroutine?debug=2, and profile?seconds=1 less its one second.
#   idle     c_tests/malloc_bench.c with 2 threads (a program that has threads anyway),
#            with an idle server against without one, in paired rounds: the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-9}
cargo build --release -q -p rprof
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cc -O2 -g -pthread -o "$work/many_stacks" c_tests/many_stacks.c
cc -O2 -pthread -o "$work/malloc_bench" c_tests/malloc_bench.c -ldl
cp target/release/librprof.so "$work/librprof.so"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

mkfifo "$work/in"
(cd "$work" && RPROF_HTTP=127.0.0.1:0 RPROF_HEAP_RATE=1 LD_PRELOAD="$work/librprof.so" \
  ./many_stacks <"$work/in" >"$work/out" 2>"$work/err") &
exec 3>"$work/in"
for _ in $(seq 100); do grep -q ready "$work/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's|.*serving profiles on http://\([^/]*\)/.*|\1|p' "$work/err")
url="http://$addr/debug/pprof"
t() { curl -s -o "$work/body" -w '%{time_total}\n' "$url/$1"; }
first=$(t heap)
heap=$(for _ in $(seq "$ROUNDS"); do t heap; done | median)
text=$(for _ in $(seq "$ROUNDS"); do t 'heap?debug=1'; done | median)
dump=$(for _ in $(seq "$ROUNDS"); do t 'goroutine?debug=2'; done | median)
cpu=$(for _ in $(seq 3); do t 'profile?seconds=1'; done | median)
curl -s "$url/heap?debug=1" -o "$work/text"
samples=$(head -1 "$work/text")
exec 3>&-
wait
printf 'latency on many_stacks (%s)\n' "$samples"
printf '  heap, first request (symbols loaded)  %8.1f ms\n' "$(awk "BEGIN{print $first*1000}")"
printf '  heap                                  %8.1f ms\n' "$(awk "BEGIN{print $heap*1000}")"
printf '  heap?debug=1                          %8.1f ms\n' "$(awk "BEGIN{print $text*1000}")"
printf '  goroutine?debug=2                     %8.1f ms\n' "$(awk "BEGIN{print $dump*1000}")"
printf '  profile?seconds=1, beyond its 1 s     %8.1f ms\n' "$(awk "BEGIN{print ($cpu-1)*1000}")"

ratios=()
for ((i = 0; i < ROUNDS; i++)); do
  a=$( { /usr/bin/time -f '%e' env LD_PRELOAD="$work/librprof.so" RPROF_OUT="$work/p" RPROF_HTTP=127.0.0.1:0 RPROF_LOG=off \
    "$work/malloc_bench" 3000000 2 >/dev/null; } 2>&1 | tail -1)
  b=$( { /usr/bin/time -f '%e' env LD_PRELOAD="$work/librprof.so" RPROF_OUT="$work/p" RPROF_LOG=off \
    "$work/malloc_bench" 3000000 2 >/dev/null; } 2>&1 | tail -1)
  ratios+=("$(awk "BEGIN{print $a/$b}")")
  rm -f "$work"/p.*
done
printf 'idle server: malloc_bench, 2 threads, with RPROF_HTTP / without: %.3f (median of %d paired rounds)\n' \
  "$(printf '%s\n' "${ratios[@]}" | median)" "$ROUNDS"
