#!/usr/bin/env bash
# What symbolizing at exit and pinning before dlclose cost large programs: each command
# with and without librprof.so (all profiles on, as users run it), interleaved over RUNS
# (default 5) rounds; wall time and peak RSS medians, and the median of each round's
# difference. Rows:
#   rustc hello.rs   the real rustc of this toolchain (librustc_driver: 150 MB, 165 k symbols)
#   python (DWARF)   a Python whose libpython carries DWARF (PYTHON, else the first pyenv
#                    one found that has it), on a small CPU-bound script
#   python no aranges  the same with .debug_aranges removed from a copy of its libpython
#                    (objcopy), as LLVM builds objects
#   dlopen rate 1    c_tests/dlopen_loop.c: 3000 passes of dlopen, 150 allocations in the
#                    plugin, dlclose, at RPROF_HEAP_RATE=1 (every allocation sampled and
#                    pinned before its library is unloaded)
# RPROF_LIB names another build of the library to measure. A benchmark, not a test: it
# judges nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z ${RPROF_LIB:-} ]]; then
  cargo build --release -q -p rprof
  RPROF_LIB=target/release/librprof.so
fi
# A copy, so that a rebuild during the run does not change what is measured.
cp "$RPROF_LIB" "$work/librprof.so"
lib=$work/librprof.so
cc -O2 -o "$work/run_measured" scripts/run_measured.c
cc -O2 -shared -fPIC -Ic_tests -o "$work/plugin.so" c_tests/plugin.c
cc -O2 -Ic_tests -o "$work/dlopen_loop" c_tests/dlopen_loop.c -ldl

rows=()
declare -A cmd
rustc_bin="$(rustc --print sysroot)/bin/rustc"
echo 'fn main() { println!("hello"); }' >"$work/hello.rs"
rows+=("rustc hello.rs")
cmd["rustc hello.rs"]="$rustc_bin -o $work/hello $work/hello.rs"

libpython_of() { # python: its libpython3*.so.1.0
  local libdir
  libdir=$("$1" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")' 2>/dev/null) || return 1
  ls "$libdir"/libpython3*.so.1.0 2>/dev/null | head -1
}
has_dwarf() { # python
  local so sections
  so=$(libpython_of "$1") || return 1
  [[ -n $so ]] || return 1
  # Read whole (not `| grep -q`: under pipefail, readelf's SIGPIPE would fail the test).
  sections=$(readelf -S "$so" 2>/dev/null) || return 1
  [[ $sections == *.debug_info* ]]
}
python=${PYTHON:-}
if [[ -z $python ]]; then
  for p in "$HOME"/.pyenv/versions/*/bin/python3; do
    if [[ -x $p ]] && has_dwarf "$p"; then python=$p; break; fi
  done
fi
if [[ -n $python ]]; then
  # CPU-bound with a small heap (about 8 MB peak), so what symbolizing at exit adds shows
  # in the peak RSS rather than under the program's own.
  echo 'print(sum(i * i for i in range(3000000)))' >"$work/work.py"
  rows+=("python (DWARF)")
  cmd["python (DWARF)"]="$python $work/work.py"
  # The same libpython without .debug_aranges, as LLVM builds it: the units' own ranges
  # say where an address is.
  so=$(libpython_of "$python")
  mkdir -p "$work/no-aranges"
  if objcopy --remove-section .debug_aranges "$so" "$work/no-aranges/$(basename "$so")"; then
    rows+=("python no aranges")
    cmd["python no aranges"]="env LD_LIBRARY_PATH=$work/no-aranges $python $work/work.py"
  fi
else
  echo "(no Python with DWARF in its libpython found: set PYTHON to measure one)"
fi
rows+=("dlopen rate 1")
cmd["dlopen rate 1"]="$work/dlopen_loop $work/plugin.so 150 3000"

declare -A wall rss
for ((i = 0; i < RUNS; i++)); do
  for r in "${rows[@]}"; do
    read -ra c <<<"${cmd[$r]}"
    extra=()
    [[ $r == "dlopen rate 1" ]] && extra=(RPROF_HEAP_RATE=1)
    read -r w m < <("$work/run_measured" "${c[@]}")
    wall[$r.bare]+="$w "
    rss[$r.bare]+="$m "
    read -r w m < <("$work/run_measured" env LD_PRELOAD="$lib" RPROF_OUT="$work/p" "${extra[@]}" "${c[@]}")
    wall[$r.rprof]+="$w "
    rss[$r.rprof]+="$m "
    rm -f "$work"/p.*
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
med() { tr ' ' '\n' <<<"$1" | grep . | median; }
pairwise() { # op values base-values: the median of each round's a-b or a/b
  paste <(tr ' ' '\n' <<<"$2" | grep .) <(tr ' ' '\n' <<<"$3" | grep .) |
    awk -v op="$1" '{print (op == "-" ? $1 - $2 : $1 / $2)}' | median
}
printf '%-18s %9s %9s %9s %7s %9s %9s %9s\n' workload "bare ms" "rprof ms" "+ms" ratio "bare MB" "rprof MB" "+MB"
for r in "${rows[@]}"; do
  wb=${wall[$r.bare]} wr=${wall[$r.rprof]} mb=${rss[$r.bare]} mr=${rss[$r.rprof]}
  printf '%-18s %9.1f %9.1f %9.1f %7.3f %9.1f %9.1f %9.1f\n' "$r" \
    "$(awk "BEGIN{print $(med "$wb")/1e6}")" "$(awk "BEGIN{print $(med "$wr")/1e6}")" \
    "$(awk "BEGIN{print $(pairwise - "$wr" "$wb")/1e6}")" "$(pairwise / "$wr" "$wb")" \
    "$(awk "BEGIN{print $(med "$mb")/1024}")" "$(awk "BEGIN{print $(med "$mr")/1024}")" \
    "$(awk "BEGIN{print $(pairwise - "$mr" "$mb")/1024}")"
done
echo "(medians over $RUNS interleaved rounds; +ms, ratio and +MB: the median of each round's"
echo " difference or ratio; peak RSS is wait4's ru_maxrss; library: $RPROF_LIB)"
[[ -n $python ]] && echo "(python: $python)"
echo "(targets: rustc hello.rs at most +10 ms and +10 MB, python at most +10 MB)"
