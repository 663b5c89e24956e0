#!/usr/bin/env python3
"""malloc_info's XML (run by malloc_info_probe) parses, has glibc's shape, and its numbers are
mpcalloc's statistics of the same moment; options != 0 and a NULL stream give -1 / EINVAL."""
import errno
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

probe = sys.argv[1]
# Cross builds: the probe runs under the emulator (e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu").
run = subprocess.run(os.environ.get("TEST_EMULATOR", "").split() + [probe], capture_output=True,
                     text=True, timeout=60)
out = run.stdout
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


if run.returncode != 0:
    sys.exit(f"FAIL: probe exited {run.returncode}\n{out}{run.stderr}")

lines = out.splitlines()
stats = json.loads(next(l for l in lines if l.startswith('{"mpcalloc"')))["mpcalloc"]
check(f"RC 0" in lines, "malloc_info(0, fp) did not return 0")
xml = out[out.index("XML-BEGIN\n") + len("XML-BEGIN\n"):out.index("XML-END\n")]
root = ET.fromstring(xml)  # raises on malformed XML


def attrs(parent, tag, type_):
    found = [e for e in parent.findall(tag) if e.get("type") == type_]
    check(len(found) == 1, f"<{parent.tag}> has {len(found)} <{tag} type={type_}> (want 1)")
    return {k: int(v) for k, v in found[0].attrib.items() if k != "type"} if found else {}


check(root.tag == "malloc" and root.get("version") == "1", f"root is <{root.tag} {root.attrib}>")
heaps = root.findall("heap")
places = stats["places"]
check([h.get("nr") for h in heaps] == [str(i) for i in range(len(heaps))], "heap nr not 0, 1, ...")
check(len(heaps) == len(places), f"{len(heaps)} <heap> for {len(places)} places in the stats")
sum_system = sum_rest = 0
for h, place in zip(heaps, places):
    check(h.find("sizes") is not None, f"heap {h.get('nr')} has no <sizes>")
    fast, rest = attrs(h, "total", "fast"), attrs(h, "total", "rest")
    cur, mx = attrs(h, "system", "current"), attrs(h, "system", "max")
    total, mprotect = attrs(h, "aspace", "total"), attrs(h, "aspace", "mprotect")
    check(fast == {"count": 0, "size": 0}, f"heap fast {fast}")
    check(rest.get("size") == place["cached_bytes"], f"heap rest {rest} vs place {place}")
    check(cur.get("size") == place["mapped_bytes"] - place["huge_bytes"], f"heap system {cur} vs {place}")
    check(mx.get("size") == stats["peak_mapped_bytes"], f"heap system max {mx}")
    check(total.get("size") == cur.get("size") == mprotect.get("size"), "heap aspace != system")
    sum_system += cur.get("size", 0)
    sum_rest += rest.get("size", 0)

rest, mmap = attrs(root, "total", "rest"), attrs(root, "total", "mmap")
cur, mx = attrs(root, "system", "current"), attrs(root, "system", "max")
check(attrs(root, "total", "fast") == {"count": 0, "size": 0}, "total fast not 0")
check(mmap == {"count": stats["huge_count"], "size": stats["huge_bytes"]}, f"mmap {mmap} vs stats {stats}")
check(rest.get("size") == stats["cached_bytes"] == sum_rest, f"rest {rest} vs cached {stats['cached_bytes']}")
check(cur.get("size") == stats["mapped_bytes"] - stats["huge_bytes"] == sum_system,
      f"system {cur} vs mapped - huge in stats {stats}")
check(mx.get("size") == stats["peak_mapped_bytes"], f"system max {mx}")
check(attrs(root, "aspace", "total").get("size") == cur.get("size"), "aspace total != system")
# What the probe holds must show: three huge blocks (4, 5, 9 MiB), one freed (3 MiB) in the cache.
check(mmap.get("count") == 3 and mmap.get("size", 0) >= 18 << 20, f"mmap {mmap}: the 3 live huge blocks")
check(rest.get("size", 0) >= 3 << 20, f"rest {rest}: the freed 3 MiB block is cached")
check(cur.get("size", 0) > 0, "no segments for the small and medium blocks")

for name in ("OPTIONS1", "NULLFP"):
    line = next((l for l in lines if l.startswith(name + " ")), "")
    check(line == f"{name} -1 {errno.EINVAL}", f"{name}: '{line}' (want -1 and errno EINVAL)")

if failures:
    print(xml)
    sys.exit("FAIL:\n  " + "\n  ".join(failures))
print(f"ok: {len(heaps)} heap(s), mmap {mmap}, system {cur['size']}, rest {rest['size']}")
