"""Checks the include graph of src/: a file in layer L may include only headers of L or of
layers below it (os < base < source < chunks < heap < api). Exit 1 and list offenders."""
import os
import re
import sys
import tempfile

LAYERS = ["os", "base", "source", "chunks", "heap", "api"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z]+)/[^"]+"')


def violations(src):
    bad = []
    for layer in LAYERS:
        folder = os.path.join(src, layer)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if m and m.group(1) in LAYERS and LAYERS.index(m.group(1)) > LAYERS.index(layer):
                        bad.append(f"{layer}/{name}:{n}: includes {m.group(1)}/ (a higher layer)")
    return bad


def self_test():
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "os"))
        os.makedirs(os.path.join(d, "heap"))
        with open(os.path.join(d, "heap", "ok.h"), "w") as f:
            f.write('#include "os/x.h"\n')
        if violations(d):
            print("self-test: a legal include was reported")
            return 1
        with open(os.path.join(d, "os", "bad.h"), "w") as f:
            f.write('#include "heap/heap.h"\n')
        if len(violations(d)) != 1:
            print("self-test: an upward include was not reported")
            return 1
    print("self-test: ok")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    found = violations(sys.argv[1])
    for v in found:
        print(v)
    print(f"{len(found)} layer violations")
    sys.exit(1 if found else 0)
