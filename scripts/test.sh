#!/usr/bin/env bash
# Runs Brisk's whole test suite on a fresh machine: installs what the build and the tests need
# when it is missing, then builds and tests every crate, example and behaviour test, with the
# RocksDB state backend, S3 checkpoint storage and the Kafka, Redis, PostgreSQL, RabbitMQ,
# Parquet and Avro connectors enabled.
set -euo pipefail
cd "$(dirname "$0")/.."

# RocksDB's Rust bindings are generated with bindgen, which needs libclang (and g++ to build
# RocksDB itself); the web UI is tested in headless Chromium; moto (below) is installed with pip.
missing=()
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The Redis, PostgreSQL and RabbitMQ connectors' tests start their own servers on 127.0.0.1.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || missing+=(rabbitmq-server)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if ((${#missing[@]})); then
  echo "==> installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}"
  fi
fi

# Checkpoints in S3-compatible object stores are tested against moto's local S3 server.
if ! python3 -c "import moto.server, flask" >/dev/null 2>&1; then
  echo "==> installing moto[server] (a local S3-compatible server for the tests)"
  # Debian's Python refuses user installs unless told the system packages stay untouched.
  python3 -m pip install --quiet --user 'moto[server]' 2>/dev/null ||
    python3 -m pip install --quiet 'moto[server]' 2>/dev/null ||
    python3 -m pip install --quiet --user --break-system-packages 'moto[server]'
fi

echo "==> building (workspace, all targets, RocksDB backend, S3 checkpoint storage, Kafka, Redis, PostgreSQL, RabbitMQ, Parquet, Avro)"
cargo build --workspace --all-targets --features rocksdb,s3,kafka,redis,postgres,rabbitmq,parquet,avro --locked

echo "==> testing"
cargo test --workspace --features rocksdb,s3,kafka,redis,postgres,rabbitmq,parquet,avro --locked
