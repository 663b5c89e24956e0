# Spack recipe for mpcalloc: a CMake build of the release library (no sanitizers), with
# variants for the test suite, the static archive and the malloc overrides.
import os

from spack.package import *


class Mpcalloc(CMakePackage):
    """Per-thread-heap malloc replacement for HPC codes (MPI + threads): libmpcalloc.so to
    link or LD_PRELOAD (bin/mpcalloc-run does the latter), libmpcalloc.a, the mpcalloc.h API,
    a CMake package (find_package(mpcalloc)) and mpcalloc.pc."""

    # The project has no public address yet: point MPCALLOC_GIT at a clone (path or URL), or
    # build a local checkout with `spack dev-build` / `spack develop`.
    git = os.environ.get("MPCALLOC_GIT", "")

    version("main", branch="main")

    variant("tests", default=False, description="Build the test suite (needs GoogleTest)")
    variant("static", default=True, description="Build and install libmpcalloc.a too")
    variant(
        "override",
        default=True,
        description="Export malloc/free/new/delete (off: only the mpcalloc_* functions)",
    )

    depends_on("c", type="build")
    depends_on("cxx", type="build")
    depends_on("cmake@3.25:", type="build")
    depends_on("googletest", type="build", when="+tests")

    # Linux only: /proc, mremap, sched_getaffinity, ELF symbol interposition.
    conflicts("platform=darwin", msg="mpcalloc relies on Linux (mremap, /proc, ELF interposition)")
    conflicts("platform=windows", msg="mpcalloc relies on Linux (mremap, /proc, ELF interposition)")

    def cmake_args(self):
        return [
            self.define_from_variant("MPCALLOC_BUILD_TESTS", "tests"),
            self.define_from_variant("MPCALLOC_BUILD_STATIC", "static"),
            self.define_from_variant("MPCALLOC_OVERRIDE", "override"),
            # The release library only: no benchmarks (they want jemalloc, tcmalloc, ...) and
            # no sanitizer build (a sanitizer owns malloc, so nothing would be installed).
            self.define("MPCALLOC_BUILD_BENCH", False),
            self.define("MPCALLOC_SANITIZER", ""),
        ]
