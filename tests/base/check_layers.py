"""Checks the include graph of src/: a file in layer L may include only headers of L or of
layers below it (arch < os < base < source < chunks < heap < api). Prints each offending line
and exits 1 on any violation. `--self-test` checks the checker on a scratch tree."""
import os
import re
import sys
import tempfile

LAYERS = ["arch", "os", "base", "source", "chunks", "heap", "api"]
INCLUDE = re.compile(r'^\s*#\s*include\s*"([A-Za-z0-9_]+)/[^"]+"')


def violations(src):
    bad = []
    for layer in LAYERS:
        folder = os.path.join(src, layer)
        if not os.path.isdir(folder):
            continue
        for root, _, files in os.walk(folder):
            for name in sorted(files):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, src)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m or m.group(1) not in LAYERS:
                            continue  # system headers, the public include/ tree
                        if LAYERS.index(m.group(1)) > LAYERS.index(layer):
                            bad.append(f"{rel}:{n}: {line.strip()}   "
                                       f"(layer {layer} may not include {m.group(1)}/)")
    return bad


def self_test():
    with tempfile.TemporaryDirectory() as d:
        for layer in ("arch", "os", "chunks", "heap"):
            os.makedirs(os.path.join(d, layer))
        with open(os.path.join(d, "heap", "ok.h"), "w") as f:
            f.write('#include "os/x.h"\n#include "heap/y.h"\n#include <atomic>\n'
                    '#include "mpcalloc/mpcalloc.h"\n#include "arch/arch.h"\n')
        with open(os.path.join(d, "os", "ok.h"), "w") as f:
            f.write('#include "arch/arch.h"\n')
        with open(os.path.join(d, "arch", "ok.h"), "w") as f:
            f.write('#include "arch/generic.h"\n#include <cstdint>\n')
        if violations(d):
            print("self-test: a legal include was reported")
            return 1
        with open(os.path.join(d, "os", "bad.h"), "w") as f:
            f.write('// fine\n#include "heap/heap.h"\n')
        os.makedirs(os.path.join(d, "chunks", "sub"))
        with open(os.path.join(d, "chunks", "sub", "bad.cpp"), "w") as f:
            f.write('  #  include "api/api_common.h"\n')
        with open(os.path.join(d, "arch", "bad.h"), "w") as f:
            f.write('#include "arch/generic.h"\n#include "os/os_memory.h"\n')
        found = violations(d)
        want = ['os/bad.h:2: #include "heap/heap.h"', 'chunks/sub/bad.cpp:1: #  include "api/',
                'arch/bad.h:2: #include "os/os_memory.h"']
        if len(found) != 3 or not all(any(v.startswith(w) for v in found) for w in want):
            print("self-test: upward includes not reported as expected:", found)
            return 1
    print("self-test: ok")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        print("usage: check_layers.py SRC_DIR | --self-test")
        sys.exit(2)
    found = violations(sys.argv[1])
    for v in found:
        print(v)
    print(f"{len(found)} layer violations")
    sys.exit(1 if found else 0)
