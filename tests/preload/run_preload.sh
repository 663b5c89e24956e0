#!/usr/bin/env bash
# run_preload.sh CASE LIBRARY SOURCE_DIR [PROGRAM]: runs a real program with and without
# LD_PRELOAD=LIBRARY and fails if the outputs differ or the preloaded run fails.
# Exit 77 = skipped (a tool is missing). TEST_EMULATOR (cross builds): the command that runs
# target programs (cxx case only).
set -uo pipefail
case_name=$1
lib=$(realpath "$2")
src=$(realpath "$3")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

need() { command -v "$1" >/dev/null 2>&1 || { echo "SKIP: $1 not installed"; exit 77; }; }
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$lib" ] || fail "no library at $lib"

# proven NAME DIR: every process that ran under mpcalloc wrote its JSON statistics into DIR
# (MPCALLOC_STATS=json:DIR/%p.json); at least one did, and allocated through mpcalloc.
proven() {
  local name=$1 dir=$2
  python3 - "$dir" <<'PY' || fail "$name: no proof that mpcalloc was the allocator (stats in $dir)"
import json, os, sys
d = sys.argv[1]
files = sorted(os.listdir(d))
stats = [json.load(open(os.path.join(d, f)))["mpcalloc"] for f in files]
used = [s for s in stats if s["mapped_bytes"] > 0 and s["heap_count"] > 0]
print(f"  {len(files)} process(es) wrote mpcalloc stats, {len(used)} allocated through it")
sys.exit(0 if used else 1)
PY
}

# compare NAME CMD...: runs CMD twice (glibc, then mpcalloc) and compares stdout; the mpcalloc
# run must prove it ran under mpcalloc (its processes write their statistics to files).
compare() {
  local name=$1
  shift
  "$@" >"$work/$name.glibc" 2>"$work/$name.glibc.err" || fail "$name failed without preload: $(tail -5 "$work/$name.glibc.err")"
  mkdir -p "$work/$name.stats"
  LD_PRELOAD=$lib MPCALLOC_STATS="json:$work/$name.stats/%p.json" "$@" >"$work/$name.mpc" 2>"$work/$name.mpc.err" ||
    fail "$name failed under mpcalloc: $(tail -5 "$work/$name.mpc.err")"
  if grep -q 'cannot be preloaded' "$work/$name.mpc.err"; then
    fail "$name: the dynamic loader did not preload $lib: $(grep -m1 'cannot be preloaded' "$work/$name.mpc.err")"
  fi
  if ! cmp -s "$work/$name.glibc" "$work/$name.mpc"; then
    diff "$work/$name.glibc" "$work/$name.mpc" | head -20
    fail "$name: output differs under mpcalloc"
  fi
  proven "$name" "$work/$name.stats"
  echo "ok: $name ($(wc -l <"$work/$name.mpc") lines identical)"
}

case $case_name in
  python)
    need python3
    compare python /usr/bin/python3 "$src/churn.py"
    # PYTHONMALLOC=malloc sends every object (not only those over 512 bytes) to malloc.
    compare python-all-malloc env PYTHONMALLOC=malloc /usr/bin/python3 "$src/churn.py"
    ;;
  sqlite)
    need sqlite3
    {
      echo "create table t(id integer primary key, name text, v real);"
      echo "begin;"
      echo "with recursive c(x) as (select 1 union all select x+1 from c where x < 100000)"
      echo "  insert into t select x, 'name' || (x * 7919 % 100000), x * 0.5 from c;"
      echo "commit;"
      echo "create index t_name on t(name);"
      echo "select count(*), sum(v) from t where name like 'name1%';"
      echo "select name, id from t order by name limit 5;"
      echo "select count(distinct substr(name, 1, 6)) from t;"
      echo "delete from t where id % 3 = 0; vacuum;"
      echo "select count(*), min(id), max(id) from t;"
    } >q.sql
    compare sqlite bash -c "rm -f db.sqlite && sqlite3 db.sqlite < q.sql"
    ;;
  git)
    need git
    export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@e GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@e
    export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
    cat >gitjob.sh <<'JOB'
set -e
rm -rf repo && git init -q -b main repo && cd repo
for i in $(seq 1 300); do printf 'file %s\n%s\n' "$i" "$(seq 1 $((i % 50)))" >"f$i.txt"; done
git add . && git commit -qm first
for i in $(seq 1 300 | awk 'NR % 7 == 0'); do echo "change" >>"f$i.txt"; done
git commit -qam second
git gc -q --aggressive
git fsck --full 2>&1
git log --stat --format='%H %s' | md5sum
git rev-list --all --objects | sort | md5sum
JOB
    compare git bash gitjob.sh
    ;;
  gxx)
    need g++
    # The compiler, assembler and linker run under mpcalloc: the object file must be
    # byte-identical to the one written under glibc, and the linked program must print the same.
    compare gxx bash -c "g++ -O2 -c '$src/hello.cpp' -o hello.o && md5sum hello.o && g++ -o hello hello.o && ./hello"
    grep -q '^sum [0-9]' "$work/gxx.mpc" || fail "compiled program printed no sum: $(cat "$work/gxx.mpc")"
    ;;
  redis)
    # A multi-threaded server (its background threads free what the main thread allocated),
    # reached only through a Unix socket in the work directory: no TCP port is opened.
    need redis-server
    need redis-cli
    need redis-benchmark
    cat >redisjob.sh <<'JOB'
set -euo pipefail
sock=$PWD/redis.sock
rm -f "$sock" redis.log
# timeout: the server never outlives a test that ctest killed.
env MPCALLOC_STATS=1 timeout 120 redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no \
  --daemonize no --enable-debug-command local --io-threads 2 --lazyfree-lazy-user-del yes \
  --loglevel warning >redis.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
cli() { redis-cli -s "$sock" "$@"; }
for _ in $(seq 1 100); do cli ping >/dev/null 2>&1 && break; sleep 0.1; done
cli ping
awk 'BEGIN { for (i = 0; i < 30000; i++) {
  printf "SET key:%d %s\n", i, sprintf("%0" (i % 300 + 1) "d", i);
  printf "HSET h:%d f1 %d f2 v%d\n", i % 500, i, i * 7;
  printf "RPUSH l:%d item%d\n", i % 200, i;
  printf "SADD s:%d m%d\n", i % 100, i % 1000;
  printf "ZADD z %d m%d\n", (i * 7919) % 100003, i % 5000 } }' |
  cli --pipe | tail -1 | sed 's/.*errors: \([0-9]*\).*/errors \1/'
cli dbsize
cli debug digest
cli get key:12345 | md5sum
cli hgetall h:42 | md5sum
cli lrange l:7 0 -1 | md5sum
cli zrange z 0 50 withscores | md5sum
cli sort l:3 alpha limit 0 5
redis-benchmark -s "$sock" -q -n 20000 -c 8 -P 16 -r 10000 -t set,get,lpush,lpop,hset,sadd >/dev/null
cli del l:1 l:2 l:3 h:1 h:2
cli flushall async
cli dbsize
cli shutdown nosave >/dev/null 2>&1 || true
wait "$pid" || true
trap - EXIT
JOB
    compare redis bash redisjob.sh
    grep -q '^errors 0$' "$work/redis.mpc" || fail "redis --pipe reported errors: $(head -3 "$work/redis.mpc")"
    # The server itself ran under mpcalloc: it printed mpcalloc's statistics when it exited.
    grep -q '^mpcalloc: stats' redis.log || fail "redis-server did not run under mpcalloc: $(tail -5 redis.log)"
    echo "ok: redis-server ran under mpcalloc ($(grep -c '^mpcalloc:   remote_frees' redis.log) stats block)"
    ;;
  perl)
    need perl
    compare perl perl "$src/churn.pl"
    ;;
  mpi)
    need mpicc
    need mpirun
    mpicc -O2 -o mpi_ring "$src/mpi_ring.c" || fail "mpicc failed"
    mpirun_flags=(--allow-run-as-root --oversubscribe -np 2)
    mpirun "${mpirun_flags[@]}" ./mpi_ring >mpi.glibc 2>mpi.glibc.err || fail "mpirun without preload: $(tail -3 mpi.glibc.err)"
    mpirun "${mpirun_flags[@]}" -x LD_PRELOAD="$lib" -x MPCALLOC_STATS=1 ./mpi_ring >mpi.mpc 2>mpi.mpc.err ||
      fail "mpirun under mpcalloc: $(tail -5 mpi.mpc.err)"
    cmp -s mpi.glibc mpi.mpc || fail "MPI output differs: $(cat mpi.glibc) vs $(cat mpi.mpc)"
    # Both ranks really ran under mpcalloc: each printed its statistics.
    ranks=$(grep -c '^mpcalloc: stats' mpi.mpc.err)
    [ "$ranks" -ge 2 ] || fail "expected mpcalloc stats from 2 ranks, got $ranks"
    echo "ok: mpi ($(cat mpi.mpc); stats from $ranks ranks)"
    ;;
  stats)
    # The preload really takes effect: the library prints its statistics at exit.
    out=$(MPCALLOC_STATS=1 LD_PRELOAD=$lib /usr/bin/python3 -c "x = [bytes(5000) for _ in range(1000)]" 2>&1)
    echo "$out" | grep -q '^mpcalloc:   mapped_bytes = [1-9]' || fail "no mpcalloc stats: $out"
    out=$(MPCALLOC_VERBOSE=1 LD_PRELOAD=$lib /bin/true 2>&1)
    echo "$out" | grep -q 'MPCALLOC_CACHE_MAX=' || fail "MPCALLOC_VERBOSE printed nothing: $out"
    # MPCALLOC_CONF sets several options; an individual variable wins over it.
    out=$(MPCALLOC_CONF="cache_max=32M,decay_ms=200" MPCALLOC_DECAY_MS=300 MPCALLOC_VERBOSE=1 LD_PRELOAD=$lib /bin/true 2>&1)
    echo "$out" | grep -q 'MPCALLOC_CACHE_MAX=33554432$' || fail "MPCALLOC_CONF not applied: $out"
    echo "$out" | grep -q 'MPCALLOC_DECAY_MS=300$' || fail "the variable should win over MPCALLOC_CONF: $out"
    # Bad values and misspelt names are not silent: one warning line each, defaults kept.
    out=$(MPCALLOC_CACHE_MAX=abc MPCALLOC_CAHCE_MAX=1 MPCALLOC_VERBOSE=1 LD_PRELOAD=$lib /bin/true 2>&1)
    echo "$out" | grep -q '^mpcalloc: warning: MPCALLOC_CACHE_MAX=abc: expected a size' || fail "no warning for a bad value: $out"
    echo "$out" | grep -q '^mpcalloc: warning: unknown option MPCALLOC_CAHCE_MAX' || fail "no warning for a misspelt name: $out"
    echo "$out" | grep -q 'MPCALLOC_CACHE_MAX=67108864$' || fail "default not kept: $out"
    [ "$(echo "$out" | grep -c warning)" = 2 ] || fail "expected exactly 2 warning lines: $out"
    out=$(LD_PRELOAD=$lib /bin/true 2>&1)
    [ -z "$out" ] || fail "a clean environment must print nothing: $out"
    # JSON statistics into a file per process (%p), parsed by python3's json.
    mkdir -p jstats
    MPCALLOC_STATS="json:$work/jstats/s.%p.json" LD_PRELOAD=$lib /usr/bin/python3 -c "x = [bytes(5000) for _ in range(1000)]" ||
      fail "python3 under MPCALLOC_STATS=json:PATH failed"
    proven stats-json "$work/jstats"
    echo "ok: stats, verbose, MPCALLOC_CONF, warnings, JSON stats file"
    ;;
  check)
    # Real programs run clean with every free checked.
    compare python-checked env MPCALLOC_CHECK=1 PYTHONMALLOC=malloc /usr/bin/python3 "$src/churn.py"
    compare perl-checked env MPCALLOC_CHECK=1 perl "$src/churn.pl"
    ;;
  cxx)
    # Our own C++ program (threads, containers, frees by other threads). In cross builds it
    # runs under the emulator (TEST_EMULATOR, e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu"),
    # and the variables go into the emulated program's environment only (-E): in qemu's own,
    # the host's loader would try to preload the target's library into qemu itself.
    prog=$(realpath "$4")
    mkdir -p churn.stats
    vars=(LD_PRELOAD="$lib" MPCALLOC_STATS="json:$work/churn.stats/%p.json")
    if [[ -n ${TEST_EMULATOR:-} ]]; then
      read -ra emu <<<"$TEST_EMULATOR"
      command -v "${emu[0]}" >/dev/null || { echo "SKIP: no ${emu[0]}"; exit 77; }
      plain=("${emu[@]}" "$prog")
      preloaded=("${emu[@]}")
      for v in "${vars[@]}"; do preloaded+=(-E "$v"); done
      preloaded+=("$prog")
    else
      plain=("$prog")
      preloaded=(env "${vars[@]}" "$prog")
    fi
    "${plain[@]}" >churn.glibc 2>churn.glibc.err || fail "churn_cxx failed without preload: $(tail -5 churn.glibc.err)"
    "${preloaded[@]}" >churn.mpc 2>churn.mpc.err || fail "churn_cxx failed under mpcalloc: $(tail -5 churn.mpc.err)"
    if grep -q 'cannot be preloaded' churn.mpc.err; then
      fail "churn_cxx: not preloaded: $(grep -m1 'cannot be preloaded' churn.mpc.err)"
    fi
    if ! cmp -s churn.glibc churn.mpc; then
      diff churn.glibc churn.mpc | head -20
      fail "churn_cxx: output differs under mpcalloc"
    fi
    grep -q '^total [0-9]' churn.mpc || fail "churn_cxx printed no total: $(tail -3 churn.mpc)"
    proven churn_cxx churn.stats
    # Blocks went back to other threads' heaps through the remote-free lists.
    python3 -c 'import json, glob, sys; sys.exit(0 if any(json.load(open(f))["mpcalloc"]["remote_frees"] > 0 for f in glob.glob("churn.stats/*.json")) else 1)' ||
      fail "churn_cxx: no remote frees in the statistics"
    echo "ok: churn_cxx ($(wc -l <churn.mpc) lines identical)${TEST_EMULATOR:+ under $TEST_EMULATOR}"
    ;;
  *)
    fail "unknown case $case_name"
    ;;
esac
