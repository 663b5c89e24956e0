#!/usr/bin/env bash
# What memcheck does with mpcalloc (docs/USAGE.md, Valgrind): who owns malloc, and that the
# leak, the read after free, the write past a block and the double free are reported whoever
# owns it, and the program runs on to its end (no abort: memcheck's malloc does not either).
# Usage: run_memcheck.sh CASE PROBE [LIBMPCALLOC_SO]
set -uo pipefail
case_name=$1 probe=$2 lib=${3:-}
# By default memcheck puts its own malloc in place of mpcalloc's wherever a loaded object
# exports it (libmpcalloc.a linked into the executable, libmpcalloc.so linked or preloaded).
# With --soname-synonyms=somalloc=NONE it still does for the executable; with
# somalloc=nouserintercepts it leaves mpcalloc alone, and in a static executable it cannot
# replace anything: there mpcalloc keeps malloc and describes its blocks to memcheck with client
# requests. Exit 77 (skip) when valgrind is not installed.
command -v valgrind >/dev/null || { echo "SKIP: valgrind not installed"; exit 77; }
fail() { echo "FAIL ($case_name): $*"; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() {  # run [valgrind options...]: memcheck's report and the probe's output in $out
  env ${lib:+LD_PRELOAD=$lib} valgrind --leak-check=full --error-exitcode=0 "$@" "$probe" >"$out" 2>&1 ||
    fail "valgrind $* $probe exited $?: $(tail -5 "$out")"
}
expect_reports() {
  grep -q '1,000 bytes in 1 blocks are definitely lost' "$out" || fail "the leak was not reported: $(cat "$out")"
  grep -q 'Invalid read of size 1' "$out" || fail "the read after free was not reported: $(cat "$out")"
  grep -q 'Invalid write of size 1' "$out" || fail "the write past the block was not reported: $(cat "$out")"
  grep -q 'Invalid free()' "$out" || fail "the double free was not reported: $(cat "$out")"
  grep -q '^probe done$' "$out" || fail "the probe did not run to its end: $(cat "$out")"
  # A static glibc makes memcheck report its own start-up code as well: count elsewhere only.
  [[ $case_name == static ]] || grep -q 'ERROR SUMMARY: 4 errors from 4 contexts' "$out" ||
    fail "other errors reported: $(cat "$out")"
}
expect_memcheck_owns_malloc() {
  grep -q '^mpcalloc mapped_bytes 0$' "$out" || fail "mpcalloc served allocations: $(grep '^mpcalloc' "$out")"
  expect_reports
  echo "ok ($case_name): memcheck's malloc in use; leak, read after free, write past the block, double free reported"
}
expect_mpcalloc_owns_malloc() {
  grep -Eq '^mpcalloc mapped_bytes [1-9][0-9]*$' "$out" || fail "mpcalloc did not serve allocations: $(cat "$out")"
  expect_reports
  echo "ok ($case_name): mpcalloc's malloc in use; leak, read after free, write past the block, double free reported"
}

case $case_name in
  archive | shared | preload) run; expect_memcheck_owns_malloc ;;
  archive_none) run --soname-synonyms=somalloc=NONE; expect_memcheck_owns_malloc ;;
  shared_none) run --soname-synonyms=somalloc=NONE; expect_mpcalloc_owns_malloc ;;
  archive_nouserintercepts | shared_nouserintercepts | preload_nouserintercepts)
    run --soname-synonyms=somalloc=nouserintercepts; expect_mpcalloc_owns_malloc ;;
  static) run; expect_mpcalloc_owns_malloc ;;
  *) fail "unknown case" ;;
esac
