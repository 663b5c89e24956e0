#!/usr/bin/env bash
# run_install_test.sh BUILD_DIR CONSUMER_SRC CC CXX: installs the build into a temporary prefix,
# checks the tree, then builds and runs tests/install/consumer with find_package and with
# pkg-config, linked (shared and static) and preloaded (LD_PRELOAD and bin/mpcalloc-run).
set -uo pipefail
build=$(realpath "$1")
consumer_src=$(realpath "$2")
cc=$3
cxx=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v pkg-config >/dev/null || { echo "SKIP: pkg-config not installed (scripts/install-deps)"; exit 77; }

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  fail "cmake --install: $(tail -5 "$work/install.log")"

# The tree: versioned shared library with its SONAME, archive, header, script, package files.
for f in lib/libmpcalloc.so.0 lib/libmpcalloc.a include/mpcalloc/mpcalloc.h bin/mpcalloc-run \
         lib/cmake/mpcalloc/mpcallocConfig.cmake lib/cmake/mpcalloc/mpcallocConfigVersion.cmake \
         lib/cmake/mpcalloc/mpcallocTargets.cmake lib/pkgconfig/mpcalloc.pc; do
  [ -e "$prefix/$f" ] || fail "not installed: $f (installed: $(cd "$prefix" && find . -type f -o -type l | sort | tr '\n' ' '))"
done
[ -L "$prefix/lib/libmpcalloc.so" ] && [ -L "$prefix/lib/libmpcalloc.so.0" ] ||
  fail "libmpcalloc.so and libmpcalloc.so.0 should be symlinks to the versioned file"
real=$(basename "$(realpath "$prefix/lib/libmpcalloc.so")")
[[ $real =~ ^libmpcalloc\.so\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "real file is $real, want libmpcalloc.so.X.Y.Z"
soname=$(readelf -d "$prefix/lib/$real" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libmpcalloc.so.0 ] || fail "SONAME is '$soname', want libmpcalloc.so.0"
[ -x "$prefix/bin/mpcalloc-run" ] || fail "bin/mpcalloc-run is not executable"
echo "ok: install tree ($real, SONAME $soname)"

# run_consumer DIR LABEL LINKED_PROGRAMS...: runs the linked programs built in DIR, then
# consumer_plain (not linked) without mpcalloc (must fail), preloaded, and under mpcalloc-run.
run_consumer() {
  local dir=$1 label=$2 prog out
  shift 2
  for prog in "$@"; do
    [ -x "$dir/$prog" ] || fail "$label: $prog not built"
    out=$("$dir/$prog" 2>&1) || fail "$label: $prog: $out"
    echo "ok: $label $prog: ${out#ok: }"
  done
  out=$("$dir/consumer_plain" 2>&1) && fail "$label: consumer_plain passed without mpcalloc loaded: $out"
  out=$(LD_PRELOAD=$prefix/lib/libmpcalloc.so "$dir/consumer_plain" 2>&1) ||
    fail "$label: consumer_plain under LD_PRELOAD: $out"
  echo "ok: $label LD_PRELOAD consumer_plain: ${out#ok: }"
  out=$("$prefix/bin/mpcalloc-run" -- "$dir/consumer_plain" 2>&1) ||
    fail "$label: consumer_plain under mpcalloc-run: $out"
  # The installed script preloads the installed library, not the build tree's.
  [[ $out == *"$(realpath "$prefix")/lib/libmpcalloc.so"* ]] ||
    fail "$label: mpcalloc-run did not preload the installed library: $out"
  echo "ok: $label mpcalloc-run consumer_plain: ${out#ok: }"
}

# 1. CMake: find_package(mpcalloc) with the prefix on CMAKE_PREFIX_PATH.
cmake -S "$consumer_src" -B "$work/cmake" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" >"$work/cmake.log" 2>&1 ||
  fail "consumer configure (find_package): $(tail -20 "$work/cmake.log")"
cmake --build "$work/cmake" >"$work/cmake-build.log" 2>&1 ||
  fail "consumer build (find_package): $(tail -20 "$work/cmake-build.log")"
[ "$(cat "$work/cmake/preload_path.txt")" = "$prefix/lib/libmpcalloc.so.0" ] ||
  fail "mpcalloc_PRELOAD_LIBRARY is $(cat "$work/cmake/preload_path.txt")"
run_consumer "$work/cmake" find_package consumer_shared consumer_cxx consumer_static

# 2. pkg-config, from CMake (pkg_check_modules) and from a plain compiler command line.
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --modversion mpcalloc)" = "$(sed -n 's/^Version: //p' "$prefix/lib/pkgconfig/mpcalloc.pc")" ] ||
  fail "pkg-config --modversion mpcalloc: $(pkg-config --modversion mpcalloc 2>&1)"
cmake -S "$consumer_src" -B "$work/pc" -DCMAKE_BUILD_TYPE=Release -DCONSUMER_WITH=pkgconfig \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" >"$work/pc.log" 2>&1 ||
  fail "consumer configure (pkg-config): $(tail -20 "$work/pc.log")"
cmake --build "$work/pc" >"$work/pc-build.log" 2>&1 ||
  fail "consumer build (pkg-config): $(tail -20 "$work/pc-build.log")"
run_consumer "$work/pc" pkg-config consumer_shared consumer_cxx

mkdir -p "$work/cli"
libdir=$(pkg-config --variable=libdir mpcalloc)
version=$(pkg-config --modversion mpcalloc)
# shellcheck disable=SC2046 # word splitting of pkg-config's flags is intended
"$cc" -O2 -o "$work/cli/consumer_shared" -DCONSUMER_LINKED=1 -DEXPECTED_VERSION="\"$version\"" \
  "$consumer_src/consumer.c" $(pkg-config --cflags --libs mpcalloc) -Wl,-rpath,"$libdir" ||
  fail "cc with pkg-config --cflags --libs mpcalloc"
out=$("$work/cli/consumer_shared" 2>&1) || fail "pkg-config command line, shared: $out"
echo "ok: cc \$(pkg-config --cflags --libs mpcalloc): ${out#ok: }"
# The archive, with what it needs from pkg-config's Libs.private.
# shellcheck disable=SC2046
"$cc" -O2 -o "$work/cli/consumer_static" -DCONSUMER_LINKED=1 -DCONSUMER_STATIC=1 \
  -DEXPECTED_VERSION="\"$version\"" "$consumer_src/consumer.c" $(pkg-config --cflags mpcalloc) \
  $(pkg-config --static --libs mpcalloc | sed 's/-lmpcalloc/-Wl,-Bstatic -lmpcalloc -Wl,-Bdynamic/') ||
  fail "cc with pkg-config --static --libs mpcalloc"
out=$("$work/cli/consumer_static" 2>&1) || fail "pkg-config command line, static: $out"
echo "ok: cc \$(pkg-config --static --libs mpcalloc), archive: ${out#ok: }"
echo "PASS: install tree, find_package, pkg-config, linked and preloaded"
