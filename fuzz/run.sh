#!/usr/bin/env bash
# Runs ledgit's fuzz targets with libFuzzer on the stable toolchain (`cargo fuzz run -s none`).
# Usage: fuzz/run.sh SECONDS [TARGET...]   (default: every target, one after the other)
# Each target starts from the committed seeds (fuzz/seeds/TARGET) and keeps what it finds in
# fuzz/corpus/TARGET (not committed); a crash is saved in fuzz/artifacts/TARGET and fails the run.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "fuzzing $t for ${seconds}s"
  cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout=1 -rss_limit_mb=1024 -print_final_stats=1 2>&1 |
    grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added|==[0-9]+==|SUMMARY|Done [0-9]+ runs)|cov:' | tail -6
done
