#!/usr/bin/env bash
# Builds the harness and the library with clang's libFuzzer (+ UBSan) and fuzzes.
# Usage: run_libfuzzer.sh SOURCE_ROOT BUILD_DIR [libFuzzer args...]   (exit 77: no libFuzzer)
set -uo pipefail
root=$1
out=$2
shift 2
command -v clang++ >/dev/null || { echo "SKIP: no clang++"; exit 77; }
mkdir -p "$out"
bin="$out/fuzz_api_libfuzzer"
if ! clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,undefined -fno-sanitize-recover=undefined \
    -DMPCALLOC_OVERRIDE=0 -fno-exceptions -I"$root/include" -I"$root/src" \
    "$root/tests/fuzz/fuzz_api.cpp" "$root"/src/*/*.cpp -o "$bin" -lpthread 2>"$out/build.log"; then
  if grep -q "libclang_rt.fuzzer\|cannot find" "$out/build.log"; then
    echo "SKIP: libFuzzer runtime not installed (libclang-rt-14-dev)"
    exit 77
  fi
  cat "$out/build.log"
  exit 1
fi
mkdir -p "$out/corpus"
# -error_exitcode: libFuzzer exits 77 on a finding by default, which ctest would read as "skipped".
exec "$bin" "$out/corpus" -max_len=4096 -rss_limit_mb=4096 -error_exitcode=1 -timeout=60 "${@:--runs=200000}"
