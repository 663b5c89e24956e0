"""Fast-path instruction budget, counted by callgrind (deterministic).

Runs pair_loop (N malloc(32)/free pairs) under valgrind --tool=callgrind with
LD_PRELOAD=<library>, for two values of N, and derives from the difference (so start-up
costs cancel):
  - malloc and free: instructions per call inside the library (self cost), plus 1 for the
    caller's PLT jump each;
  - per pair: allocator instructions per malloc+free pair, slow-path refills amortised,
    PLT jumps included;
  - loop: all instructions per iteration of the program's loop (what a peer comparison sees).
Usage: fastpath_budget.py PAIR_LOOP LIBMPCALLOC [--assert] [--peers]
With --assert, exits 1 when malloc > 12, free > 15 or the amortised pair > 27.5.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

N1, N2 = 100_000, 300_000


def callgrind(loop, preload, n, tmp):
    out = os.path.join(tmp, f"cg.{n}.%p")
    for f in glob.glob(os.path.join(tmp, f"cg.{n}.*")):
        os.remove(f)
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}",
           "env", f"LD_PRELOAD={preload}", loop, str(n), "32"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = sorted(glob.glob(os.path.join(tmp, f"cg.{n}.*")), key=os.path.getsize)
    return files[-1]  # the program (env exec'ed it; the largest profile)


def annotate(path, inclusive):
    args = ["callgrind_annotate", "--threshold=100"]
    if inclusive:
        args.append("--inclusive=yes")
    text = subprocess.run(args + [path], check=True, capture_output=True, text=True).stdout
    costs = {}
    total = 0
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S+):(\S+)", line)
        if m:
            costs.setdefault(m.group(3), int(m.group(1).replace(",", "")))
        m = re.match(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
    return costs, total


def measure(loop, preload, tmp):
    a = callgrind(loop, preload, N1, tmp)
    b = callgrind(loop, preload, N2, tmp)
    self_a, total_a = annotate(a, False)
    self_b, total_b = annotate(b, False)
    incl_a, _ = annotate(a, True)
    incl_b, _ = annotate(b, True)
    d = N2 - N1
    res = {"loop": (total_b - total_a) / d}
    if "malloc" in self_b and "free" in self_b:
        res["malloc"] = (self_b["malloc"] - self_a["malloc"]) / d + 1
        res["free"] = (self_b["free"] - self_a["free"]) / d + 1
        res["pair"] = ((incl_b["malloc"] + incl_b["free"]) - (incl_a["malloc"] + incl_a["free"])) / d + 2
    return res


def main():
    loop, lib = sys.argv[1], sys.argv[2]
    do_assert = "--assert" in sys.argv
    peers = {
        "glibc": "",
        "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "mimalloc": "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
    }
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure(loop, lib, tmp)
        print(f"mpcalloc: malloc {ours['malloc']:.2f}, free {ours['free']:.2f} instructions per call "
              f"(PLT included); {ours['pair']:.2f} per pair amortised; {ours['loop']:.2f} per loop iteration")
        if "--peers" in sys.argv:
            for name, path in peers.items():
                if path and not os.path.exists(path):
                    continue
                r = measure(loop, path, tmp)
                print(f"{name}: {r['loop']:.2f} instructions per loop iteration")
    if do_assert:
        ok = ours["malloc"] <= 12.0 and ours["free"] <= 15.0 and ours["pair"] <= 27.5
        print("budget: malloc <= 12, free <= 15, amortised pair <= 27.5:", "met" if ok else "EXCEEDED")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
