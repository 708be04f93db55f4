#!/usr/bin/env bash
# Benchmarks on the shared inputs (../shared/bench): generates them once into bench-data/
# (ignored by git), builds release binaries and runs each job several times, printing the
# median and best wall time, throughput and peak memory. Usage: scripts/bench.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
data="${BRISK_BENCH_DATA:-bench-data}"
gen="${BRISK_BENCH_GEN:-../shared/bench/gen_data.py}"
if [[ ! -f "$data/words.txt" ]]; then
  echo "==> generating benchmark inputs into $data (a few minutes)"
  python3 "$gen" "$data" words
fi
cargo build --release --locked --example word_count
bin="${CARGO_TARGET_DIR:-target}/release/examples/word_count"
words=27700269

measure() { # name, words, command...
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
print(f"{name:<32} median {med:6.2f} s ({n / med / 1e6:5.2f} M/s)   best {best:6.2f} s ({n / best / 1e6:5.2f} M/s)   peak RSS {rss / 1024:5.0f} MB")
PY
}

for p in 1 2; do
  for mode in streaming batch; do
    measure "WordCount $mode p=$p" "$words" \
      "$bin" --input "$data/words.txt" --parallelism "$p" --execution-mode "$mode" --discard
  done
done
