#!/usr/bin/env python3
"""Fast-path instruction budget, counted by callgrind (deterministic, no timing).

Runs pair_loop (a warm-up, then N malloc(32)/free pairs) under valgrind --tool=callgrind with
LD_PRELOAD=<allocator>, for N and 2N, and takes differences so start-up and exit cancel:
  loop      all instructions per loop iteration (the program's own 8 included)
  pair      loop minus the program's own 8: what one malloc+free pair costs a program under
            LD_PRELOAD (PLT jumps, TLS access and amortised slow paths included)
and, for mpcalloc, from the library's own symbols:
  malloc    instructions per malloc call inside the library, +1 for the caller's PLT jump
  free      the same for free (the entry's indirect jump plus free_unchecked)
  hit pair  malloc + free: the pair when both calls take the fast path

Usage: fastpath_budget.py PAIR_LOOP LIBMPCALLOC [--assert] [--peers] [--n N]
--peers also measures glibc, jemalloc, tcmalloc and mimalloc when installed (printed only).
--assert exits 1 unless malloc <= 12, free <= 15, hit pair <= 27 and the amortised pair
<= 27.5 (the slow-path refill may add at most half an instruction per pair).
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = {
    "glibc": "",
    "jemalloc": f"{LIBDIR}/libjemalloc.so.2",
    "tcmalloc": f"{LIBDIR}/libtcmalloc_minimal.so.4",
    "mimalloc": f"{LIBDIR}/libmimalloc.so.2",
}
BUDGET = {"malloc": 12.0, "free": 15.0, "hit": 27.0, "pair": 27.5}


def callgrind(loop, preload, n, tmp):
    """Profile of the pair_loop process (env execs it; valgrind follows with --trace-children)."""
    prefix = os.path.join(tmp, f"cg.{n}.")
    for f in glob.glob(prefix + "*"):
        os.remove(f)
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={prefix}%p",
           "env", f"LD_PRELOAD={preload}", loop, str(n), "32"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = sorted(glob.glob(prefix + "*"), key=os.path.getsize)
    return files[-1]


def self_costs(path):
    """Self cost per function name, and the program total."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", path], check=True,
                          capture_output=True, text=True).stdout
    costs, total = {}, 0
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?[^:\s]*:(\S+)\s+\[(.*)\]", line)
        if m:
            key = (m.group(2), os.path.basename(m.group(3)))
            costs[key] = costs.get(key, 0) + int(m.group(1).replace(",", ""))
    return costs, total


def lookup(costs, func, obj_part):
    return sum(v for (f, o), v in costs.items() if f == func and obj_part in o)


def measure(loop, preload, n, tmp, own=False):
    (ca, ta), (cb, tb) = (self_costs(callgrind(loop, preload, k, tmp)) for k in (n, 2 * n))
    prog = os.path.basename(loop)
    res = {"loop": (tb - ta) / n}
    # main's self cost includes the two PLT jumps per iteration (callgrind's --skip-plt=yes
    # charges a PLT stub to its caller); they belong to the pair, hence the + 2.
    res["pair"] = res["loop"] - (lookup(cb, "main", prog) - lookup(ca, "main", prog)) / n + 2
    if own:  # the split by symbol is meaningful only for mpcalloc (peers' malloc calls helpers)
        lib = os.path.basename(preload)
        mal = (lookup(cb, "malloc", lib) - lookup(ca, "malloc", lib)) / n
        # free jumps through the checked/unchecked pointer to free_unchecked: both count.
        fre = sum(lookup(cb, f, lib) - lookup(ca, f, lib)
                  for f in ("free", "mpcalloc::heap::free_unchecked(void*)")) / n
        if mal > 0 and fre > 0:
            res["malloc"], res["free"] = mal + 1, fre + 1  # +1: the caller's PLT jump
            res["hit"] = res["malloc"] + res["free"]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pair_loop")
    ap.add_argument("lib")
    ap.add_argument("--assert", dest="check", action="store_true")
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["mpcalloc"] = measure(args.pair_loop, os.path.abspath(args.lib), args.n, tmp, own=True)
        if args.peers:
            for name, path in PEERS.items():
                if path and not os.path.exists(path):
                    print(f"{name}: not installed, skipped")
                    continue
                rows[name] = measure(args.pair_loop, path, args.n, tmp)
    print(f"instructions per malloc(32)+free pair (callgrind, difference of N={args.n} and 2N runs)")
    print(f"{'allocator':10} {'pair':>7} {'loop':>7} {'malloc':>7} {'free':>7} {'hit pair':>9}")
    for name, r in rows.items():
        extra = "".join(f" {r[k]:7.2f}" for k in ("malloc", "free")) + f" {r['hit']:9.2f}" if "hit" in r else ""
        print(f"{name:10} {r['pair']:7.2f} {r['loop']:7.2f}{extra}")
    if not args.check:
        return 0
    ours = rows["mpcalloc"]
    if "hit" not in ours:
        print("FAILED: no malloc/free symbols of the library in the profile")
        return 1
    over = [f"{k} {ours[k]:.2f} > {b}" for k, b in BUDGET.items() if round(ours[k], 2) > b]
    print("budget (malloc <= 12, free <= 15, hit pair <= 27, amortised pair <= 27.5):",
          "EXCEEDED: " + ", ".join(over) if over else "met")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
