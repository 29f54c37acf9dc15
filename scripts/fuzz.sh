#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (default 60 s each, or
# the first argument, or FUZZ_SECONDS), starting from the corpus checked in
# under fuzz/corpus/ (new inputs go to a temporary folder, so the checked-in
# corpus stays small). A crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/. Needs the nightly toolchain; installs cargo-fuzz
# when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-${FUZZ_SECONDS:-60}}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: the nightly toolchain is missing; rustup toolchain install nightly" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --quiet --locked cargo-fuzz
# Safe Rust: libFuzzer's coverage and our assertions, without a sanitizer
# (which would double the build for no finding safe code can make).
cargo +nightly fuzz build --sanitizer none
total=0
for target in $(cargo +nightly fuzz list); do
  work=$(mktemp -d)
  log=$(mktemp)
  if ! cargo +nightly fuzz run --sanitizer none "$target" "$work" "corpus/$target" -- \
      -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "scripts/fuzz.sh: $target failed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "scripts/fuzz.sh: $target: ${runs:-?} runs in ${secs} s, no failure"
  total=$((total + ${runs:-0}))
  rm -rf "$work" "$log"
done
echo "scripts/fuzz.sh: $total runs in all"
