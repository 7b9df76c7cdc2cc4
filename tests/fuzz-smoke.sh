#!/usr/bin/env bash
# A short run of each fuzz target (fuzz/fuzz_targets) from the seed corpus, so a
# regression the fuzzers know how to find fails the suite. Built on stable Rust with
# LLVM's coverage instrumentation for libFuzzer (what cargo-fuzz passes), for the host
# target so build scripts stay uninstrumented. Usage: tests/fuzz-smoke.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-60}
TARGET=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --release --target "$TARGET" --quiet
[ -d corpus/tiff ] && [ -d corpus/jp2 ] || bash make-seeds.sh
mkdir -p artifacts
for t in tiff jp2; do
  # A copy of the seeds: the run adds what it finds, and the next run starts afresh.
  work=$(mktemp -d)
  cp corpus/$t/* "$work"/
  echo "fuzz smoke: $t for ${SECS} s"
  status=0
  "target/$TARGET/release/$t" -max_total_time="$SECS" -seed=1 -rss_limit_mb=512 -timeout=10 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="artifacts/$t-" "$work" \
    >"$work.log" 2>&1 || status=$?
  grep -a -E "^(Done|stat::number_of_executed_units|==|SUMMARY)|panicked" "$work.log" || true
  [ "$status" = 0 ] || tail -40 "$work.log"
  rm -f "$work.log"
  rm -rf "$work"
  [ "$status" = 0 ] || { echo "fuzz target $t failed (see fuzz/artifacts/)"; exit 1; }
done
