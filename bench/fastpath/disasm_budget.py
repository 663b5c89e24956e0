#!/usr/bin/env python3
"""Fast-path instruction counts read from the disassembly (nothing runs): the hit paths of the
exported malloc and free of libmpcalloc.so, on x86-64 and aarch64.

A hit path is the shortest path through a function's branches from its entry to a return, or
to an indirect jump: free's jump through g_free is followed into free_unchecked (where it
points without MPCALLOC_CHECK). Slow paths leave by direct jumps to other functions (the tail
calls to malloc_slow/free_slow), so they are never the shortest way to a return. Each hit path
must read the thread pointer (x86-64 %fs, aarch64 tpidr_el0), or the count is rejected. The
counts leave out the caller's PLT stub (x86-64: 1 jump; aarch64: 4 instructions).

Usage: disasm_budget.py OBJDUMP LIBRARY [--malloc N] [--free N] [--show]
Exits 1 if a hit path is not found or a count exceeds its budget.
"""
import argparse
import heapq
import re
import subprocess
import sys

# An indirect jump at the end of a hit path continues in this function (mangled names).
FOLLOW = {"free": "_ZN8mpcalloc4heap14free_uncheckedEPv"}

HEADER = re.compile(r"^([0-9a-f]+) <([^>]+)>:$")
LINE = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")


def functions(objdump, lib):
    """name -> list of (address, mnemonic, operands), from objdump -d."""
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", lib], check=True,
                          capture_output=True, text=True).stdout
    funcs, cur = {}, None
    for line in text.splitlines():
        m = HEADER.match(line)
        if m:
            cur = funcs.setdefault(m.group(2), [])
            continue
        m = LINE.match(line)
        if m and cur is not None:
            # Drop objdump's comments: "// ..." (aarch64) and " # ..." (x86-64; aarch64
            # immediates are "#0x..." with no space after the "#").
            ops = re.sub(r"\s#\s.*$", "", m.group(3).split("//")[0])
            cur.append((int(m.group(1), 16), m.group(2), ops.strip()))
    return funcs


def kind(mnemonic, ops):
    """'ret', 'indirect', 'jump', 'cond' (with a direct target) or 'plain'."""
    m = mnemonic
    if m in ("ret", "retq"):
        return "ret"
    if m in ("jmp", "jmpq") and ops.startswith("*") or m == "br":
        return "indirect"
    if m in ("jmp", "jmpq", "b"):
        return "jump"
    if (m.startswith("j") and m not in ("jmp", "jmpq")) or m.startswith("b.") or \
            m in ("cbz", "cbnz", "tbz", "tbnz"):
        return "cond"
    return "plain"


def target(ops):
    """The direct branch target address in an operand list, or None."""
    m = re.search(r"(?:^|[ ,])([0-9a-f]+) <", ops + " ")
    return int(m.group(1), 16) if m else None


def shortest_hit_path(insns):
    """The fewest instructions from the entry to a ret or an indirect jump (inclusive)."""
    index = {a: i for i, (a, _, _) in enumerate(insns)}
    best = {0: 1}
    queue = [(1, 0, [0])]
    while queue:
        cost, i, path = heapq.heappop(queue)
        if cost > best.get(i, cost):
            continue
        addr, mnem, ops = insns[i]
        k = kind(mnem, ops)
        if k in ("ret", "indirect"):
            return [insns[j] for j in path], k
        nexts = []
        if k in ("jump", "cond"):
            t = target(ops)
            if t in index:
                nexts.append(index[t])
        if k in ("cond", "plain") and i + 1 < len(insns):
            nexts.append(i + 1)
        for j in nexts:
            if cost + 1 < best.get(j, 1 << 30):
                best[j] = cost + 1
                heapq.heappush(queue, (cost + 1, j, path + [j]))
    return None, None


def hit_path(funcs, name):
    path, end = shortest_hit_path(funcs[name])
    if path is None:
        return None
    if end == "indirect":
        if name not in FOLLOW or FOLLOW[name] not in funcs:
            return None
        rest = hit_path(funcs, FOLLOW[name])
        return None if rest is None else [(name, i) for i in path] + rest
    return [(name, i) for i in path]


def reads_thread_pointer(path):
    return any("%fs:" in ops or "tpidr_el0" in ops for _, (_, _, ops) in path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("objdump")
    ap.add_argument("lib")
    ap.add_argument("--malloc", type=int)
    ap.add_argument("--free", type=int)
    ap.add_argument("--show", action="store_true", help="print the instructions of each path")
    args = ap.parse_args()
    funcs = functions(args.objdump, args.lib)
    failed = False
    for name, budget in (("malloc", args.malloc), ("free", args.free)):
        path = hit_path(funcs, name) if name in funcs else None
        if path is None:
            print(f"{name}: FAILED: no hit path found in {args.lib}")
            failed = True
            continue
        if not reads_thread_pointer(path):
            print(f"{name}: FAILED: the shortest path reads no thread pointer: not the hit path")
            failed = True
        n = len(path)
        verdict = "" if budget is None else f" (budget {budget}: {'met' if n <= budget else 'EXCEEDED'})"
        print(f"{name} hit path: {n} instructions{verdict}")
        if args.show or (budget is not None and n > budget):
            for func, (addr, mnem, ops) in path:
                print(f"  {addr:8x}  {mnem:6} {ops:40}  ({func})")
        failed |= budget is not None and n > budget
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
