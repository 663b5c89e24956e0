#!/usr/bin/env bash
# run_mpcalloc_run.sh CASE SCRIPT LIBRARY ENV_PROBE [MPI_PROBE]: checks mpcalloc-run (SCRIPT)
# against LIBRARY. Cases: help, bad_flags, options, stats, mpi. Exit 77 = skipped.
set -uo pipefail
case_name=$1
run=$(realpath "$2")
lib=$(realpath "$3")
probe=$4
mpi_probe=${5:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$run" ] || fail "no executable script at $run"
# mpcalloc-run preloads the library by its SONAME file, beside the real file.
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ -n "$soname" ] || fail "$lib has no SONAME"
preloaded=$(dirname "$lib")/$soname

# The variables mpcalloc-run may set; cleared so the caller's environment cannot leak in.
unset MPCALLOC_CHECK MPCALLOC_VERBOSE MPCALLOC_STATS MPCALLOC_NUMA MPCALLOC_CACHE_MAX LD_PRELOAD
vars=(MPCALLOC_CHECK MPCALLOC_VERBOSE MPCALLOC_STATS MPCALLOC_NUMA MPCALLOC_CACHE_MAX LD_PRELOAD)

# expect_env "FLAGS..." -- NAME=VALUE...: runs the probe under mpcalloc-run FLAGS and checks
# the probe saw each NAME=VALUE, and that its malloc came from the library.
expect_env() {
  local flags=() out want
  while [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  out=$("$run" "${flags[@]}" -- "$probe" "${vars[@]}" 2>"$work/err") ||
    fail "mpcalloc-run ${flags[*]}: exit $?: $(cat "$work/err")"
  grep -qxF "malloc=$preloaded" <<<"$out" ||
    fail "mpcalloc-run ${flags[*]}: malloc is not mpcalloc's: $(head -1 <<<"$out")"
  for want in "$@"; do
    grep -qxF "$want" <<<"$out" || fail "mpcalloc-run ${flags[*]}: want $want, probe saw: $(tr '\n' ' ' <<<"$out")"
  done
  echo "ok: mpcalloc-run ${flags[*]:-(no flags)} -> $*"
}

case $case_name in
  help)
    out=$("$run" --help 2>"$work/err") || fail "--help exited $?"
    [ -s "$work/err" ] && fail "--help wrote to stderr: $(cat "$work/err")"
    grep -q '^Usage: mpcalloc-run \[options\] \[--\] PROGRAM' <<<"$out" || fail "no usage line: $out"
    for opt in --stats --stats=json --stats=json:FILE --stats=text:FILE --check --numa=MODE \
               --cache-max=SIZE --verbose --help; do
      grep -qF -- "  $opt " <<<"$out" || fail "--help does not document $opt"
    done
    out=$("$run" -h) || fail "-h exited $?"
    grep -q '^Usage:' <<<"$out" || fail "-h printed no usage"
    out=$("$run" --version) || fail "--version exited $?"
    [[ $out =~ ^mpcalloc-run\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version printed '$out'"
    echo "ok: --help, -h, --version ($out)"
    ;;
  bad_flags)
    # Each: exit 2, nothing on stdout, one line on stderr naming the problem; never runs a program.
    check_bad() {  # check_bad WORD_IN_MESSAGE ARGS...
      local word=$1 rc
      shift
      "$run" "$@" >"$work/out" 2>"$work/err"
      rc=$?
      [ "$rc" -eq 2 ] || fail "mpcalloc-run $*: exit $rc, want 2 (stderr: $(cat "$work/err"))"
      [ -s "$work/out" ] && fail "mpcalloc-run $*: wrote to stdout: $(cat "$work/out")"
      [ "$(wc -l <"$work/err")" -eq 1 ] || fail "mpcalloc-run $*: want one line on stderr, got: $(cat "$work/err")"
      grep -q "^mpcalloc-run: .*$word" "$work/err" || fail "mpcalloc-run $*: message lacks '$word': $(cat "$work/err")"
      echo "ok: mpcalloc-run $* -> exit 2: $(cat "$work/err")"
    }
    check_bad "unknown option '--bogus'" --bogus "$probe"
    check_bad "unknown option '-x'" -x "$probe"
    check_bad "bad NUMA mode 'fast'" --numa=fast "$probe"
    check_bad "bad NUMA mode ''" --numa= "$probe"
    check_bad "needs a value" --numa "$probe"
    check_bad "bad size '12X'" --cache-max=12X "$probe"
    check_bad "bad size '-1'" --cache-max=-1 "$probe"
    check_bad "bad size ''" --cache-max= "$probe"
    check_bad "needs a value" --cache-max "$probe"
    check_bad "unknown stats format" --stats=xml "$probe"
    check_bad "unknown stats format 'xml'" --stats=xml:out.txt "$probe"
    check_bad "no file name" --stats=json: "$probe"
    check_bad "no program to run"
    check_bad "no program to run" --check
    check_bad "no program to run" --check --
    check_bad "program not found: 'no-such-program-here'" -- no-such-program-here
    ;;
  options)
    expect_env -- "MPCALLOC_CHECK=<unset>" "MPCALLOC_VERBOSE=<unset>" "MPCALLOC_STATS=<unset>" \
      "MPCALLOC_NUMA=<unset>" "MPCALLOC_CACHE_MAX=<unset>" "LD_PRELOAD=$preloaded"
    expect_env --check --verbose -- MPCALLOC_CHECK=1 MPCALLOC_VERBOSE=1 "MPCALLOC_STATS=<unset>"
    expect_env --stats -- MPCALLOC_STATS=1
    expect_env --stats=text -- MPCALLOC_STATS=1
    expect_env --stats=json -- MPCALLOC_STATS=json
    expect_env --stats=json:run.%p.json -- "MPCALLOC_STATS=json:run.%p.json"
    expect_env --stats=text:run.%p.txt -- "MPCALLOC_STATS=text:run.%p.txt"
    expect_env --stats=:out.txt -- "MPCALLOC_STATS=text:out.txt"
    expect_env --stats:out.txt -- "MPCALLOC_STATS=text:out.txt"
    expect_env --stats=json:dir/a:b.json -- "MPCALLOC_STATS=json:dir/a:b.json"
    for mode in auto off strict interleave; do
      expect_env --numa=$mode -- MPCALLOC_NUMA=$mode
    done
    for size in 0 4096 64K 512M 2G 64MiB 1g; do
      expect_env --cache-max=$size -- MPCALLOC_CACHE_MAX=$size
    done
    # The library is prepended to a preload already there (found by the loader: libm).
    other=$(realpath /lib/x86_64-linux-gnu/libm.so.6 2>/dev/null || true)
    if [ -n "$other" ]; then
      out=$(LD_PRELOAD=$other "$run" -- "$probe" LD_PRELOAD) || fail "run with LD_PRELOAD=$other"
      grep -qxF "LD_PRELOAD=$preloaded:$other" <<<"$out" || fail "LD_PRELOAD not prepended: $out"
      echo "ok: library prepended to an existing LD_PRELOAD"
    fi
    # The program's own arguments pass through untouched, options-looking ones included.
    out=$("$run" --check -- "$probe" "a b" --stats "" 2>&1) || fail "arguments pass-through"
    for want in "a b=<unset>" "--stats=<unset>" "=<unset>"; do
      grep -qxF -- "$want" <<<"$out" || fail "program arguments changed (want '$want'): $out"
    done
    echo "ok: program arguments passed through"
    # The first non-option word is the program even without --.
    out=$("$run" --check "$probe" MPCALLOC_CHECK) || fail "run without --"
    grep -qx "MPCALLOC_CHECK=1" <<<"$out" || fail "run without --: $out"
    echo "ok: program found without --"
    ;;
  stats)
    command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
    # json_fields FILE: the field names of mpcalloc's JSON statistics in FILE, or fails.
    json_fields() {
      python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))["mpcalloc"]
assert d["peak_mapped_bytes"] > 0, d
print(" ".join(sorted(d)))' "$1"
    }
    # --stats: the text report on stderr at exit.
    "$run" --stats -- "$probe" >"$work/out" 2>"$work/err" || fail "--stats run failed: $(cat "$work/err")"
    grep -q '^mpcalloc: stats$' "$work/err" || fail "--stats printed no stats: $(cat "$work/err")"
    grep -Eq '^mpcalloc:   peak_mapped_bytes = [1-9][0-9]*' "$work/err" ||
      fail "--stats: no peak_mapped_bytes > 0: $(cat "$work/err")"
    lines=$(grep -c '^mpcalloc:   ' "$work/err")
    "$run" -- "$probe" >"$work/out" 2>"$work/err" || fail "plain run failed"
    grep -q 'mpcalloc: stats' "$work/err" && fail "stats printed without --stats"
    echo "ok: --stats printed $lines stats lines on stderr; none without it"
    # --stats=json: one JSON object on stderr.
    "$run" --stats=json -- "$probe" >"$work/out" 2>"$work/err" || fail "--stats=json run failed"
    fields=$(json_fields "$work/err") || fail "--stats=json: stderr is not mpcalloc's JSON: $(cat "$work/err")"
    echo "ok: --stats=json: JSON on stderr ($fields)"
    # --stats=json:FILE and text:FILE, %p = the program's pid.
    mkdir -p "$work/st"
    "$run" --stats=json:"$work/st/run.%p.json" -- "$probe" >"$work/out" 2>"$work/err" ||
      fail "--stats=json:FILE run failed: $(cat "$work/err")"
    pid=$(sed -n 's/^pid=//p' "$work/out")
    [ -f "$work/st/run.$pid.json" ] || fail "--stats=json:run.%p.json: no run.$pid.json ($(ls "$work/st"))"
    [ -s "$work/err" ] && fail "--stats=json:FILE also wrote to stderr: $(cat "$work/err")"
    json_fields "$work/st/run.$pid.json" >/dev/null || fail "run.$pid.json is not mpcalloc's JSON"
    "$run" --stats=:"$work/st/run.%p.txt" -- "$probe" >"$work/out" 2>"$work/err" || fail "--stats=:FILE run failed"
    pid=$(sed -n 's/^pid=//p' "$work/out")
    grep -q '^mpcalloc: stats$' "$work/st/run.$pid.txt" 2>/dev/null ||
      fail "--stats=:run.%p.txt: no text stats in run.$pid.txt ($(ls "$work/st"))"
    echo "ok: --stats=json:run.%p.json and --stats=:run.%p.txt wrote one file each, named with the pid"
    # --verbose: the library prints the options in effect, as the flags set them, with no
    # warning (every variable mpcalloc-run sets is one the library knows).
    "$run" --verbose --check --cache-max=64M --numa=interleave --stats=json:"$work/st/v.%p.json" \
      -- "$probe" >"$work/out" 2>"$work/err" || fail "--verbose run failed: $(cat "$work/err")"
    for want in MPCALLOC_CHECK=1 MPCALLOC_CACHE_MAX=67108864 MPCALLOC_NUMA=interleave; do
      grep -q "$want" "$work/err" || fail "--verbose: the library does not report $want: $(cat "$work/err")"
    done
    grep -qi 'warning' "$work/err" && fail "the library warned about what mpcalloc-run set: $(grep -i warning "$work/err")"
    echo "ok: --verbose: the library runs with MPCALLOC_CHECK=1, CACHE_MAX=64M, NUMA=interleave, no warning"
    ;;
  mpi)
    [ -n "$mpi_probe" ] || { echo "SKIP: MPI not found at configure time"; exit 77; }
    command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed"; exit 77; }
    flags=(-np 2)
    [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
    flags+=(--oversubscribe)
    mpirun "${flags[@]}" "$run" --stats -- "$mpi_probe" >"$work/out" 2>"$work/err" ||
      fail "mpirun ${flags[*]} mpcalloc-run --stats -- mpi_probe: $(tail -5 "$work/err")"
    grep -qx 'ranks=2 mpcalloc_ranks=2 data_ok_ranks=2' "$work/out" ||
      fail "not every rank ran under mpcalloc with correct data: $(cat "$work/out")"
    ranks=$(grep -c '^mpcalloc: stats$' "$work/err")
    [ "$ranks" -eq 2 ] || fail "want stats from 2 ranks, got $ranks: $(tail -5 "$work/err")"
    echo "ok: mpirun ${flags[*]} mpcalloc-run --stats -- mpi_probe: $(cat "$work/out"), stats from $ranks ranks"
    # One JSON file per rank through %p.
    mkdir -p "$work/st"
    mpirun "${flags[@]}" "$run" --stats=json:"$work/st/rank.%p.json" -- "$mpi_probe" >"$work/out" 2>"$work/err" ||
      fail "mpirun ... mpcalloc-run --stats=json:FILE: $(tail -5 "$work/err")"
    files=$(find "$work/st" -name 'rank.*.json' | wc -l)
    [ "$files" -eq 2 ] || fail "want 2 rank.%p.json files, got $files: $(ls "$work/st")"
    if command -v python3 >/dev/null; then
      for f in "$work"/st/rank.*.json; do
        python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["mpcalloc"]["peak_mapped_bytes"] > 0' "$f" ||
          fail "$(basename "$f") is not mpcalloc's JSON: $(head -c 300 "$f")"
      done
    fi
    echo "ok: --stats=json:rank.%p.json under mpirun: $files files of JSON stats"
    ;;
  *)
    fail "unknown case $case_name"
    ;;
esac
