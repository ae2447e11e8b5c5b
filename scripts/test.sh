#!/usr/bin/env bash
# The whole test suite: builds the library and tools (release), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
cargo test --release --workspace
