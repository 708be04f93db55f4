#!/usr/bin/env bash
# Runs Brisk's whole test suite on a fresh machine: installs what the build and the tests need
# when it is missing, then builds and tests every crate, example and behaviour test, with the
# RocksDB state backend enabled.
set -euo pipefail
cd "$(dirname "$0")/.."

# RocksDB's Rust bindings are generated with bindgen, which needs libclang (and g++ to build
# RocksDB itself).
missing=()
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}"
  fi
fi

echo "==> building (workspace, all targets, RocksDB backend)"
cargo build --workspace --all-targets --features rocksdb --locked

echo "==> testing"
cargo test --workspace --features rocksdb --locked
