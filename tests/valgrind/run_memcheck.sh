#!/usr/bin/env bash
# What memcheck does with mpcalloc (docs/USAGE.md, Valgrind): who owns malloc, whether the leak
# and the read after free are reported. Usage: run_memcheck.sh CASE PROBE [LIBMPCALLOC_SO]
set -uo pipefail
case_name=$1 probe=$2 lib=${3:-}
# By default memcheck puts its own malloc in place of mpcalloc's: for libmpcalloc.a linked into
# the executable (also with --soname-synonyms=somalloc=NONE, which matches the executable), for
# libmpcalloc.so linked or preloaded; then it reports both errors. With
# somalloc=nouserintercepts mpcalloc keeps malloc and memcheck sees no heap block at all.
# Exit 77 (skip) when valgrind is not installed.
command -v valgrind >/dev/null || { echo "SKIP: valgrind not installed"; exit 77; }
fail() { echo "FAIL ($case_name): $*"; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() {  # run [valgrind options...]: memcheck's report and the probe's output in $out
  env ${lib:+LD_PRELOAD=$lib} valgrind --leak-check=full --error-exitcode=0 "$@" "$probe" >"$out" 2>&1 ||
    fail "valgrind $* $probe exited $?: $(tail -5 "$out")"
}
expect_memcheck_owns_malloc() {
  grep -q '^mpcalloc mapped_bytes 0$' "$out" || fail "mpcalloc served allocations: $(grep '^mpcalloc' "$out")"
  grep -q 'definitely lost: 1,000 bytes in 1 blocks' "$out" || fail "the leak was not reported: $(cat "$out")"
  grep -q 'Invalid read of size 1' "$out" || fail "the read after free was not reported: $(cat "$out")"
  echo "ok ($case_name): memcheck's malloc in use, leak and read after free reported"
}

case $case_name in
  archive) run; expect_memcheck_owns_malloc ;;
  archive_none) run --soname-synonyms=somalloc=NONE; expect_memcheck_owns_malloc ;;
  shared | preload) run; expect_memcheck_owns_malloc ;;
  archive_nouserintercepts)
    run --soname-synonyms=somalloc=nouserintercepts
    grep -Eq '^mpcalloc mapped_bytes [1-9][0-9]*$' "$out" || fail "mpcalloc did not serve allocations: $(cat "$out")"
    grep -q 'definitely lost' "$out" && fail "memcheck reported a leak it cannot see: $(cat "$out")"
    grep -q 'Invalid read' "$out" && fail "memcheck reported a read it cannot see: $(cat "$out")"
    echo "ok ($case_name): mpcalloc's malloc in use, memcheck blind to the heap (no leak, no invalid read reported)"
    ;;
  *) fail "unknown case" ;;
esac
