#!/usr/bin/env bash
# Builds everything, profiles the demo program c_tests/cpu_split.c (two functions burning
# CPU 3:1 under one caller) with `rprof run`, and shows its top functions with `rprof top`.
set -euo pipefail
cd "$(dirname "$0")/.."
# The command finds the library beside it: no embedded copy (crates/cli/build.rs).
RPROF_EMBED=0 cargo build --release
out=target/demo
mkdir -p "$out"
rm -f "$out"/rprof.*.pb.gz
cc -O2 -g -o "$out/cpu_split" c_tests/cpu_split.c
target/release/rprof run -o "$out/rprof" -- "$out/cpu_split" 800
echo
profile=$(ls "$out"/rprof.*.cpu.pb.gz)
target/release/rprof top "$profile"
if command -v go >/dev/null; then
  echo
  echo "The same file in go tool pprof:"
  go tool pprof -top "$out/cpu_split" "$profile"
fi
