#!/usr/bin/env python3
# Checks the Spack recipe under a stub of Spack's API: declarations, cmake_args per variant.
"""Imports packaging/spack/package.py under a stub of Spack's API (tests/packaging/stub) and
checks what it declares and the cmake arguments it gives for several variant settings, then
configures the project with those arguments. Usage: check_spack_recipe.py SOURCE_DIR."""
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

src = os.path.abspath(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "stub"))
import spack.package as sp  # noqa: E402  (the stub)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


spec_ = importlib.util.spec_from_file_location("mpcalloc_recipe", os.path.join(src, "packaging/spack/package.py"))
recipe = importlib.util.module_from_spec(spec_)
spec_.loader.exec_module(recipe)
cls = recipe.Mpcalloc
check(issubclass(cls, sp.CMakePackage), "Mpcalloc is a CMakePackage")
check((cls.__doc__ or "").strip() != "", "the recipe has a description (docstring)")

by_kind = {}
for d in cls.directives:
    by_kind.setdefault(d.kind, []).append(d)
versions = {d.args[0]: d.kwargs for d in by_kind.get("version", [])}
check(versions.get("main", {}).get("branch") == "main", f"version('main', branch='main') declared: {versions}")
check(hasattr(cls, "git"), "the recipe says where to clone from (git attribute)")

# Variants and their defaults.
want_variants = {"tests": False, "static": True, "override": True}
for name, default in want_variants.items():
    check(name in cls.variants, f"variant {name!r} declared")
    check(cls.variants.get(name, {}).get("default") is default, f"variant {name!r} defaults to {default}")
    check(bool(cls.variants.get(name, {}).get("description")), f"variant {name!r} has a description")

# Build dependencies: CMake at least as new as the project's cmake_minimum_required.
cmakelists = open(os.path.join(src, "CMakeLists.txt")).read()
min_cmake = re.search(r"cmake_minimum_required\(VERSION ([0-9.]+)\)", cmakelists).group(1)
deps = {d.args[0]: d.kwargs for d in by_kind.get("depends_on", [])}
check(f"cmake@{min_cmake}:" in deps, f"depends_on('cmake@{min_cmake}:') (CMakeLists.txt wants {min_cmake}): {list(deps)}")
check(deps.get(f"cmake@{min_cmake}:", {}).get("type") == "build", "cmake is a build dependency")
check(deps.get("googletest", {}).get("when") == "+tests", "googletest only with +tests")
darwin = [d for d in by_kind.get("conflicts", []) if d.args and d.args[0] == "platform=darwin"]
check(bool(darwin), "conflicts with platform=darwin (Linux-only allocator)")

# Every -D the recipe passes must be an option or cache variable of the project.
known = set(re.findall(r"option\((MPCALLOC_[A-Z_]+)", cmakelists))
known |= set(re.findall(r"set\((MPCALLOC_[A-Z_]+) [^)]*CACHE", cmakelists))


def args_for(**variants):
    values = dict(want_variants)
    values.update(variants)
    return cls(sp.FakeSpec(values)).cmake_args()


cases = [
    ({}, {"MPCALLOC_BUILD_TESTS": "BOOL=OFF", "MPCALLOC_BUILD_STATIC": "BOOL=ON", "MPCALLOC_OVERRIDE": "BOOL=ON"}),
    ({"tests": True}, {"MPCALLOC_BUILD_TESTS": "BOOL=ON", "MPCALLOC_BUILD_STATIC": "BOOL=ON"}),
    ({"static": False, "override": False},
     {"MPCALLOC_BUILD_TESTS": "BOOL=OFF", "MPCALLOC_BUILD_STATIC": "BOOL=OFF", "MPCALLOC_OVERRIDE": "BOOL=OFF"}),
]
for variants, want in cases:
    args = args_for(**variants)
    label = " ".join(("+" if v else "~") + k for k, v in variants.items()) or "(defaults)"
    parsed = {}
    for a in args:
        m = re.fullmatch(r"-D([A-Za-z0-9_]+):([A-Z]+=.*)", a)
        check(m is not None, f"{label}: {a!r} is a -DNAME:TYPE=VALUE argument")
        if m:
            parsed[m.group(1)] = m.group(2)
    for name, value in want.items():
        check(parsed.get(name) == value, f"{label}: {name}:{value} (got {parsed.get(name)})")
    # Always the sanitizer-free release library, never the benchmarks.
    check(parsed.get("MPCALLOC_SANITIZER") == "STRING=", f"{label}: MPCALLOC_SANITIZER empty")
    check(parsed.get("MPCALLOC_BUILD_BENCH") == "BOOL=OFF", f"{label}: MPCALLOC_BUILD_BENCH off")
    for name in parsed:
        check(name in known, f"{label}: {name} is an option of CMakeLists.txt")
    print(f"ok: {label}: {' '.join(args)}")

# The arguments really configure the project: ~static leaves no static library target.
with tempfile.TemporaryDirectory() as build:
    args = args_for(static=False)
    r = subprocess.run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release"] + args,
                       capture_output=True, text=True)
    check(r.returncode == 0, f"cmake configure with {args}: {r.stdout[-2000:]}{r.stderr[-2000:]}")
    if r.returncode == 0:
        targets = subprocess.run(["cmake", "--build", build, "--target", "help"], capture_output=True, text=True).stdout
        check(re.search(r"\bmpcalloc\b", targets) is not None, "the configured project has the mpcalloc target")
        check("mpcalloc_static" not in targets, "~static: no mpcalloc_static target")
        print("ok: cmake configures with the ~static arguments (no mpcalloc_static target)")

if failures:
    print(f"FAIL: {len(failures)} check(s) failed")
    sys.exit(1)
print("PASS: Spack recipe imports under the stub; variants map to the project's options")
