#!/usr/bin/env bash
# Benchmarks on the shared inputs (../shared/bench): generates them once into bench-data/
# (ignored by git), builds release binaries and runs each job several times, printing the
# median and best wall time, throughput and peak memory.
# Usage: scripts/bench.sh [RUNS]; BRISK_BENCH_ROCKSDB=1 adds the RocksDB runs (builds the
# `rocksdb` feature: a long first build).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
data="${BRISK_BENCH_DATA:-bench-data}"
gen="${BRISK_BENCH_GEN:-../shared/bench/gen_data.py}"
if [[ ! -f "$data/words.txt" || ! -f "$data/events.csv" ]]; then
  echo "==> generating benchmark inputs into $data (a few minutes)"
  python3 "$gen" "$data"
fi
features=()
backends=(hashmap)
if [[ "${BRISK_BENCH_ROCKSDB:-0}" == 1 ]]; then
  features=(--features rocksdb)
  backends=(hashmap rocksdb)
fi
cargo build --release --locked "${features[@]}" --example word_count --example window_agg
cargo bench --locked "${features[@]}" --no-run --bench window_latency --bench state_rmw
bin="${CARGO_TARGET_DIR:-target}/release/examples"
words=27700269
events=10000000
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

measure() { # name, records, command...
  local name="$1" n="$2"; shift 2
  local times=() rss=0
  for _ in $(seq "$runs"); do
    local out tmp
    tmp=$(mktemp)
    /usr/bin/time -o "$tmp" -f "%e %M" "$@" >/dev/null 2>/dev/null
    out=$(tail -1 "$tmp")
    rm -f "$tmp"
    times+=("${out% *}")
    (( ${out#* } > rss )) && rss=${out#* }
  done
  python3 - "$name" "$n" "$rss" "${times[@]}" <<'PY'
import statistics, sys
name, n, rss, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [float(t) for t in sys.argv[4:]]
med, best = statistics.median(times), min(times)
print(f"{name:<44} median {med:6.2f} s ({n / med / 1e6:5.2f} M/s)   best {best:6.2f} s ({n / best / 1e6:5.2f} M/s)   peak RSS {rss / 1024:5.0f} MB")
PY
}

for p in 1 2; do
  for mode in streaming batch; do
    measure "WordCount $mode p=$p" "$words" \
      "$bin/word_count" --input "$data/words.txt" --parallelism "$p" --execution-mode "$mode" --discard
  done
done
for backend in "${backends[@]}"; do
  measure "Window 10s tumbling p=2 $backend" "$events" \
    "$bin/window_agg" --input "$data/events.csv" --parallelism 2 --discard --state-backend "$backend" --state-dir "$scratch"
  measure "Window p=2 $backend, checkpoint every 1s" "$events" \
    "$bin/window_agg" --input "$data/events.csv" --parallelism 2 --discard --state-backend "$backend" --state-dir "$scratch" \
    --checkpoint-interval 1s --checkpoint-dir "$scratch/checkpoints"
  if [[ "$backend" == rocksdb ]]; then
    echo "execution.checkpointing.incremental: true" > "$scratch/incremental.yaml"
    measure "Window p=2 rocksdb, incremental checkpoint every 1s" "$events" \
      "$bin/window_agg" --input "$data/events.csv" --parallelism 2 --discard --state-backend rocksdb --state-dir "$scratch" \
      --checkpoint-interval 1s --checkpoint-dir "$scratch/checkpoints" --config "$scratch/incremental.yaml"
  fi
  cargo bench --locked "${features[@]}" --bench state_rmw -- "$data/words.txt" 2 "$backend" 2>/dev/null | tail -1
done
for interval in 200ms 10ms; do
  cargo bench --locked "${features[@]}" --bench window_latency -- "$data/events.csv" 2 hashmap "$interval" 2>/dev/null | tail -1
done
echo "recovery after injected failures (window p=2, checkpoints every 1s, 3 failures):"
"$bin/window_agg" --input "$data/events.csv" --parallelism 2 --discard --checkpoint-interval 1s \
  --checkpoint-dir "$scratch/recovery" --inject-failures 3 2>&1 | grep -E '^(recovery|injected)'
