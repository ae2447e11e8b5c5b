#!/usr/bin/env bash
# Checks the Debian package as a user would use it (root, with apt; CI runs it): builds it
# (scripts/package.sh), installs it with apt, profiles a program through the library's
# bare name and through `rprof run` from another directory, then removes the package and
# checks that nothing of it is left.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fail() { echo "package_check: $*" >&2; exit 1; }
scripts/package.sh >/dev/null
deb=$(ls "$root"/target/debian/rprof_*.deb | tail -1)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "$deb" >/dev/null
files=$(dpkg -L rprof | while read -r f; do [ -d "$f" ] || echo "$f"; done)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -g -o "$work/cpu_split" c_tests/cpu_split.c
cd "$work"
export HOME=$work XDG_CACHE_HOME=$work/cache
[ "$(rprof lib)" = /usr/lib/x86_64-linux-gnu/librprof.so ] || fail "rprof lib says $(rprof lib)"
rprof --version | grep -q '^rprof ' || fail "no version"
env -u RPROF_LIB LD_PRELOAD=librprof.so RPROF_OUT=bare ./cpu_split 200 >/dev/null 2>"$work/err"
ls bare.*.cpu.pb.gz >/dev/null || fail "LD_PRELOAD=librprof.so wrote no profile: $(cat "$work/err")"
rprof run -o viarun ./cpu_split 100 >/dev/null 2>&1 || fail "rprof run failed"
rprof top viarun.*.cpu.pb.gz | grep -q burn_three || fail "rprof top shows no burn_three"
[ ! -e "$work/cache/rprof" ] || fail "the packaged rprof wrote to the user's cache"
cd "$root"
apt-get purge -y -qq rprof >/dev/null
for f in $files; do [ ! -e "$f" ] || fail "$f is left after removal"; done
echo "package_check: $(basename "$deb") installs, profiles by the bare name and rprof run, and leaves nothing when removed"
