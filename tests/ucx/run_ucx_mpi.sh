#!/usr/bin/env bash
# run_ucx_mpi.sh PROBE: a 2-rank Open MPI job with the UCX PML forced (any UCX transport: no
# InfiniBand is needed) running PROBE (ucx_mpi_probe.c). Exit 77 where the UCX PML cannot run.
set -uo pipefail
probe=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
skip() { echo "SKIP: $*"; exit 77; }
command -v mpirun >/dev/null || skip "mpirun not installed"
command -v ompi_info >/dev/null && ! ompi_info 2>/dev/null | grep -q 'MCA pml: ucx' &&
  skip "this Open MPI has no UCX PML (ompi_info lists no 'MCA pml: ucx')"
flags=(-np 2 --oversubscribe)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
# Open MPI's UCX PML only accepts InfiniBand-class devices by default; 'any' lets it run over
# whatever UCX finds here (shared memory, TCP), which is enough for the memory hooks.
flags+=(--mca pml ucx --mca pml_ucx_tls any --mca pml_ucx_devices any)
# Cache budget 0: every freed huge block is unmapped, so the job exercises the hooks.
mpirun "${flags[@]}" -x MPCALLOC_CACHE_MAX=0 "$probe" >"$work/out" 2>&1
rc=$?
cat "$work/out"
if [ "$rc" -ne 0 ] && grep -q 'PML ucx cannot be selected' "$work/out"; then
  skip "Open MPI's UCX PML cannot be selected on this machine, even with pml_ucx_tls=any"
fi
[ "$rc" -eq 0 ] || { echo "FAIL: mpirun ${flags[*]} exited $rc"; exit 1; }
grep -q '^PASS: 2 ranks over UCX, 0 errors$' "$work/out" || { echo "FAIL: no PASS line from rank 0"; exit 1; }
