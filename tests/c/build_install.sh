#!/bin/sh
# build_install (ctest): install joint into a temporary prefix and consume it three ways.
#
#   build_install.sh CMAKE BUILD_DIR SOURCE_DIR GENERATOR BUILD_TYPE LIBDIR VERSION SONAME CARGO_TARGET_DIR
#
#   1. cmake --install BUILD_DIR --prefix TMP/prefix, and check the installed files
#      (headers — joint.h, joint.hpp and its parts under joint/ —, libjoint.a,
#      libjoint.so.VERSION + SONAME and dev links, CMake package, pkg-config file);
#   2. a CMake project using find_package(joint) with CMAKE_PREFIX_PATH (tests/c/consumer):
#      joint::shared, joint::static and joint::joint, plus SameMinorVersion checks, run from
#      its build tree and again installed (its INSTALL_RPATH is joint's libdir);
#   3. pkg-config with PKG_CONFIG_PATH: shared (with -Wl,-rpath from pkg-config's libdir),
#      static through Libs.private, and the C++ wrapper (consumer.cpp, when $CXX or c++ is
#      there);
#   4. a CMake project vendoring joint with add_subdirectory (tests/c/consumer_subdir),
#      sharing this build's cargo target directory so nothing is recompiled.
# Every program built is run, with LD_LIBRARY_PATH unset, and must report the expected
# linkage (and for shared builds, a libjoint.so loaded from the prefix).
set -eu
unset LD_LIBRARY_PATH

cmake=$1 build=$2 src=$3 generator=$4 build_type=$5 libdir=$6 version=$7 soname=$8 cargo_target=$9

tmp=$(mktemp -d "${TMPDIR:-/tmp}/joint-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
lib="$prefix/$libdir"

step() { printf '\n== %s\n' "$*"; }
fail() {
    echo "build_install: FAIL: $*" >&2
    exit 1
}

step "cmake --install into $prefix"
"$cmake" --install "$build" --prefix "$prefix"

step "installed files"
for f in include/joint.h include/joint.hpp "$libdir/libjoint.a" "$libdir/libjoint.so.$version" \
    "$libdir/cmake/joint/jointConfig.cmake" "$libdir/cmake/joint/jointConfigVersion.cmake" \
    "$libdir/pkgconfig/joint.pc"; do
    [ -f "$prefix/$f" ] || fail "missing $f"
done
[ -L "$lib/$soname" ] && [ "$(readlink "$lib/$soname")" = "libjoint.so.$version" ] ||
    fail "$soname must be a symlink to libjoint.so.$version"
[ -L "$lib/libjoint.so" ] && [ "$(readlink "$lib/libjoint.so")" = "$soname" ] ||
    fail "libjoint.so must be a symlink to $soname"
cmp -s "$src/include/joint.h" "$prefix/include/joint.h" || fail "installed joint.h differs"
cmp -s "$src/include/joint.hpp" "$prefix/include/joint.hpp" || fail "installed joint.hpp differs"
diff -r "$src/include/joint" "$prefix/include/joint" || fail "installed include/joint/ differs"
grep -q "^prefix=$prefix\$" "$lib/pkgconfig/joint.pc" || fail "joint.pc: prefix is not $prefix"
ls -l "$lib"

major_minor=${version%.*}
major=${version%%.*}
minor=${major_minor#*.}
other_minor="$major.$((minor + 1))"

step "find_package(joint) consumer"
"$cmake" -S "$src/tests/c/consumer" -B "$tmp/consumer" -G "$generator" \
    -DCMAKE_BUILD_TYPE="$build_type" -DCMAKE_PREFIX_PATH="$prefix" \
    -DJOINT_EXPECTED_VERSION="$version" -DJOINT_EXPECTED_MAJOR_MINOR="$major_minor" \
    -DJOINT_OTHER_MINOR="$other_minor"
"$cmake" --build "$tmp/consumer"
"$tmp/consumer/consumer_shared" shared "$lib/"
"$tmp/consumer/consumer_static" static
"$tmp/consumer/consumer_default" shared "$lib/"
"$cmake" --install "$tmp/consumer" --prefix "$tmp/app"
"$tmp/app/bin/consumer_shared" shared "$lib/"

step "pkg-config consumer"
export PKG_CONFIG_PATH="$lib/pkgconfig"
pc_version=$(pkg-config --modversion joint)
[ "$pc_version" = "$version" ] || fail "pkg-config --modversion joint: $pc_version, want $version"
pkg-config --static --libs joint | grep -q -- '-lpthread' || fail "Libs.private lacks Rust's native libraries"
cc=${CC:-cc}
# shared: the usual one-liner (plus an rpath, since the prefix is not a system directory)
# shellcheck disable=SC2046
"$cc" -o "$tmp/pc_shared" "$src/tests/c/consumer/consumer.c" $(pkg-config --cflags --libs joint) \
    -Wl,-rpath,"$(pkg-config --variable=libdir joint)" -ldl
"$tmp/pc_shared" shared "$lib/"
# static: Libs.private brings the system libraries; -Bstatic picks libjoint.a over the .so
# shellcheck disable=SC2046
"$cc" -o "$tmp/pc_static" "$src/tests/c/consumer/consumer.c" $(pkg-config --cflags joint) \
    $(pkg-config --static --libs joint | sed 's/-ljoint/-Wl,-Bstatic -ljoint -Wl,-Bdynamic/') -ldl
"$tmp/pc_static" static
# C++: the installed joint.hpp must find every part it includes in the prefix
cxx=${CXX:-$(command -v c++ || true)}
if [ -n "$cxx" ]; then
    # shellcheck disable=SC2046
    "$cxx" -std=c++17 -Wall -Wextra -Werror -o "$tmp/pc_cpp" "$src/tests/c/consumer/consumer.cpp" \
        $(pkg-config --cflags --libs joint) -Wl,-rpath,"$lib"
    "$tmp/pc_cpp"
else
    echo "build_install: no C++ compiler: the C++ consumer is not built"
fi

step "add_subdirectory consumer"
"$cmake" -S "$src/tests/c/consumer_subdir" -B "$tmp/vendored" -G "$generator" \
    -DCMAKE_BUILD_TYPE="$build_type" -DJOINT_SOURCE_DIR="$src" -DJOINT_CARGO_TARGET_DIR="$cargo_target"
"$cmake" --build "$tmp/vendored"
"$tmp/vendored/consumer_vendored" static
[ ! -e "$tmp/vendored/joint/tests" ] || fail "the vendored build configured joint's tests"
if grep -q 'libjoint' "$tmp/vendored/joint/cmake_install.cmake"; then
    fail "the vendored build would install joint (JOINT_INSTALL should default to OFF)"
fi

echo
echo "build_install: ok"
