#!/usr/bin/env bash
# The whole test suite: builds the library and tools (release), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The push tests' receiver decodes with packages of its own (PyPI's opentelemetry-proto
# and grpcio-tools' protoc), installed once under target/ and never into the system.
py=target/test-tools/py
if ! PYTHONPATH=$py python3 -c 'import grpc_tools.protoc, opentelemetry.proto.collector.profiles.v1development' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    --target "$py" 'opentelemetry-proto==1.45.2' 'grpcio-tools==1.85.4' \
    || echo "scripts/test.sh: could not install the push receiver's Python packages; the push tests skip" >&2
fi
# The command finds the library beside it here: no embedded copy (see crates/cli/build.rs;
# tests/cli.rs checks the embedded one with `cargo install`).
export RPROF_EMBED=0
cargo build --release --workspace
cargo test --release --workspace
