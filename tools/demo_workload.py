"""The demo's main job: a Python program that builds, transforms and sorts a few million
small objects (tuples, strings, dicts, lists) in several threads, the way data-processing
scripts do. Prints a checksum that must not depend on the allocator."""
import hashlib
import sys
import threading

N = int(sys.argv[1]) if len(sys.argv) > 1 else 600_000
THREADS = 4
results = [None] * THREADS


def work(tid: int) -> None:
    rows = [{"id": i, "name": f"item-{tid}-{i * 7919 % N}", "tags": [i % 7, i % 11, tid]}
            for i in range(N // THREADS)]
    index = {}
    for row in rows:
        index.setdefault(row["name"][-3:], []).append(row["id"])
    rows.sort(key=lambda r: (r["name"], r["id"]))
    words = " ".join(r["name"] for r in rows[:50_000]).split()
    h = hashlib.sha256()
    for key in sorted(index):
        h.update(key.encode())
        h.update(str(sum(index[key])).encode())
    h.update(str(len(words)).encode())
    h.update(rows[0]["name"].encode() + rows[-1]["name"].encode())
    results[tid] = h.hexdigest()


threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("checksum", hashlib.sha256("".join(results).encode()).hexdigest()[:16])
