#!/usr/bin/env bash
# Builds the Debian package target/debian/rprof_<version>_amd64.deb with cargo-deb
# (installed with `cargo install cargo-deb` if missing): /usr/bin/rprof, librprof.so in
# /usr/lib/x86_64-linux-gnu/ (so that LD_PRELOAD=librprof.so works by its bare name) and
# the README. The command is built without an embedded library (RPROF_EMBED=0): it uses
# the package's, and writes nothing outside the package's files.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb
RPROF_EMBED=0 cargo build --release --workspace
cargo deb -p rprof-cli --no-build --no-strip --output target/debian/
ls target/debian/rprof_*.deb
