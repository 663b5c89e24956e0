#!/usr/bin/env python3
"""The demo's runs (scripts/demo builds, then calls this): the threaded and MPI solvers under each
allocator, then a short Python part; one table against glibc; exit 1 on a failure or mismatch."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = [("jemalloc", f"{LIBDIR}/libjemalloc.so.2"), ("tcmalloc", f"{LIBDIR}/libtcmalloc_minimal.so.4"),
         ("mimalloc", f"{LIBDIR}/libmimalloc.so.2")]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Failed(Exception):
    pass


def run(cmd, env, tmp, name):
    """Runs cmd; returns (wall s, cpu s, peak RSS KiB, stdout, stderr) of the process and its
    waited-for children (wait4's rusage)."""
    out_path, err_path = os.path.join(tmp, name + ".out"), os.path.join(tmp, name + ".err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.monotonic()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - start
        p.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = open(out_path).read(), open(err_path).read()
    if p.returncode != 0:
        raise Failed(f"{name}: exit status {p.returncode}\n{stderr[-2000:]}")
    if "cannot be preloaded" in stderr:
        raise Failed(f"{name}: the library was not preloaded: {stderr.strip().splitlines()[0]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, stdout, stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="solver steps (threaded and MPI jobs)")
    ap.add_argument("--py-objects", type=int, default=300000, help="Python part size (0: skip)")
    ap.add_argument("--allocators", help="comma-separated subset, e.g. glibc,mpcalloc (default: all installed)")
    args = ap.parse_args()

    lib = os.path.join(args.build, "libmpcalloc.so")
    solver = os.path.join(args.build, "tools", "demo_solver")
    mpi_solver = os.path.join(args.build, "tools", "demo_mpi_solver")
    for path in (lib, solver):
        if not os.path.exists(path):
            raise Failed(f"{path} is missing: build the release preset first")
    allocators = [("glibc", ""), ("mpcalloc", lib)] + [(n, p) for n, p in PEERS if os.path.exists(p)]
    missing = [n for n, p in PEERS if not os.path.exists(p)]
    if args.allocators:
        wanted = args.allocators.split(",")
        allocators = [(n, p) for n, p in allocators if n in wanted]
        missing = [n for n in missing if n in wanted]
        if [n for n, _ in allocators[:2]] != ["glibc", "mpcalloc"]:
            raise Failed("--allocators must include glibc and mpcalloc (the table's reference and subject)")
    mpirun = shutil.which("mpirun")

    base_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("MPCALLOC_")}
    jobs = [("threads", f"{args.threads} threads x {args.steps} steps, work arrays 4-64 MiB remeshed each step")]
    if mpirun and os.path.exists(mpi_solver):
        jobs.append(("MPI", f"2 ranks x {args.steps} steps, 256 KiB halos allocated each step"))
    py = args.py_objects > 0
    if py:
        jobs.append(("Python", f"{args.py_objects} small objects in 4 threads, PYTHONMALLOC=malloc"))

    results = {}  # (job, allocator) -> (wall, cpu, rss KiB)
    checksums = {}
    stats_text = ""
    with tempfile.TemporaryDirectory() as tmp:
        for job, _ in jobs:
            names = allocators if job != "Python" else allocators[:2]
            print(f"  {job:<8}", end="", flush=True)
            for name, path in names:
                env = dict(base_env)
                tag = f"{job}.{name}"
                if job == "threads":
                    cmd = [solver, str(args.threads), str(args.steps)]
                    if path:
                        env["LD_PRELOAD"] = path
                    if name == "mpcalloc":
                        env["MPCALLOC_STATS"] = "1"
                elif job == "MPI":
                    # The ranks report their CPU time and peak RSS themselves (summed): the
                    # launcher's own would hide them. Under mpcalloc each rank leaves its stats
                    # file, which proves it ran there.
                    cmd = [mpirun, "--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1"]
                    if os.geteuid() == 0:
                        cmd.append("--allow-run-as-root")
                    cmd += ["-np", "2"]
                    if path:
                        cmd += ["-x", f"LD_PRELOAD={path}"]
                    if name == "mpcalloc":
                        cmd += ["-x", f"MPCALLOC_STATS=json:{tmp}/rank.%p.json"]
                    cmd += [mpi_solver, str(args.steps)]
                else:
                    cmd = [sys.executable, os.path.join(ROOT, "tools", "demo_workload.py"), str(args.py_objects)]
                    env["PYTHONMALLOC"] = "malloc"
                    if path:
                        env["LD_PRELOAD"] = path
                wall, cpu, rss, out, err = run(cmd, env, tmp, tag)
                if job == "MPI":
                    line = next((l for l in err.splitlines() if l.startswith("ranks: cpu_s ")), None)
                    if line is None:
                        raise Failed(f"{tag}: no 'ranks:' line on stderr:\n{err[-2000:]}")
                    cpu, rss = float(line.split()[2]), float(line.split()[4])
                    if name == "mpcalloc":
                        files = [f for f in os.listdir(tmp) if f.startswith("rank.")]
                        if len(files) != 2:
                            raise Failed(f"{tag}: {len(files)} ranks wrote mpcalloc stats, want 2: was it preloaded?")
                if job == "threads" and name == "mpcalloc":
                    stats_text = "\n".join(l for l in err.splitlines() if l.startswith("mpcalloc:"))
                    if "mapped_bytes" not in stats_text:
                        raise Failed(f"{tag}: no mpcalloc statistics on stderr: was it preloaded?\n{err[-2000:]}")
                checksum = out.strip()
                if not checksum.startswith("checksum "):
                    raise Failed(f"{tag}: no checksum printed:\n{out[-500:]}")
                first = checksums.setdefault(job, (name, checksum))
                if checksum != first[1]:
                    raise Failed(f"MISMATCH in the {job} job: {first[0]} printed '{first[1]}', {name} '{checksum}'")
                results[(job, name)] = (wall, cpu, rss)
                print(f" {name} {wall:.1f}s", end="", flush=True)
            print(flush=True)

    print()
    for job, what in jobs:
        print(f"  {job}: {what}")
    print()
    print(f"  {'job':<8} {'allocator':<9} {'wall s':>7} {'CPU s':>7} {'peak RSS MiB':>12}"
          f"   {'wall':>5} {'CPU':>5} {'RSS':>5}  <- ratio to glibc (below 1: faster, smaller)")
    for job, _ in jobs:
        g = results[(job, "glibc")]
        for name, _ in allocators:
            if (job, name) not in results:
                continue
            w, c, r = results[(job, name)]
            ratio = lambda a, b: f"{a / b:5.2f}" if b > 0 else "    -"
            mark = "*" if name == "mpcalloc" else " "
            print(f" {mark}{job:<8} {name:<9} {w:7.2f} {c:7.2f} {r / 1024:12.1f}"
                  f"   {ratio(w, g[0])} {ratio(c, g[1])} {ratio(r, g[2])}")
    print()
    print("  CPU s is user + system time (MPI: both ranks'); peak RSS MiB, MPI: both ranks' peaks added.")
    for job, (_, checksum) in checksums.items():
        n = sum(1 for (j, _) in results if j == job)
        print(f"  {job}: {checksum} (identical under all {n} allocators)")
    if missing:
        print(f"  not installed, so not compared: {', '.join(missing)} (./scripts/install-deps installs them)")
    if not mpirun or not os.path.exists(mpi_solver):
        why = "mpirun not found" if not mpirun else f"{mpi_solver} not built (no MPI at configure time)"
        print(f"  {why}: the MPI job was skipped (./scripts/install-deps installs Open MPI)")
    print()
    print("mpcalloc statistics at the exit of the threaded job (MPCALLOC_STATS=1):")
    print(stats_text)


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        sys.exit(1)
