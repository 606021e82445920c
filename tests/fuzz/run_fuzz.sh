#!/bin/sh
# run_fuzz.sh: builds frame_fuzz with clang++ in its own build tree and runs
# it for a while (default 30 s; FUZZ_SECONDS overrides). Exits non-zero if
# the fuzzer finds a crash, a leak or a sanitizer error.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-30}
cxx=${FUZZ_CXX:-clang++}

cmake -S "$root/tests/fuzz" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target frame_fuzz

# The corpus persists between runs in the build tree; crash inputs are
# written there too, so a failure can be replayed with `frame_fuzz <file>`.
corpus=$build/corpus
mkdir -p "$corpus"
cd "$build"
exec ./frame_fuzz -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
  "$corpus"
