#!/bin/sh
# build_deb (ctest): package joint with CPack as a Debian package, install it with apt-get,
# build and run programs against it, then remove it again.
#
#   build_deb.sh CPACK BUILD_DIR SOURCE_DIR GENERATOR VERSION SONAME CMAKE
#
#   1. cpack -G DEB from BUILD_DIR; check the package's fields (name, version, a libc6
#      dependency with a minimum version, from dpkg-shlibdeps) and its file list;
#   2. apt-get install ./joint_VERSION_ARCH.deb (as root, or through sudo -n);
#   3. dpkg -L: library, SONAME link, headers, CMake package, pkg-config file, bin/joint and
#      its manual pages (joint.1, joint-bench.1);
#   4. a find_package(joint) project (tests/c/consumer) and a pkg-config build of
#      consumer.c against /usr, run with LD_LIBRARY_PATH unset; `joint --version`;
#   5. apt-get purge joint, and check that its files are gone.
# Exits 77 (ctest: skipped) only when neither root nor password-less sudo is available.
set -eu

cpack=$1 build=$2 src=$3 generator=$4 version=$5 soname=$6 cmake=$7

fail() {
    echo "build_deb: FAIL: $*" >&2
    exit 1
}
step() { printf '\n== %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "build_deb: skipped: installing a package needs root or password-less sudo"
    exit 77
fi
if dpkg-query -W -f='${Status}' joint 2>/dev/null | grep -q "install ok installed"; then
    fail "a joint package is already installed; this test would remove it (apt-get purge joint first)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/joint-deb.XXXXXX")
installed=0
cleanup() {
    if [ $installed -eq 1 ]; then
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq joint >/dev/null ||
            echo "build_deb: WARNING: apt-get purge joint failed; remove it by hand" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
# The programs must find libjoint where the package put it, not through the environment.
unset LD_LIBRARY_PATH

step "cpack -G DEB"
(cd "$tmp" && "$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg")
arch=$(dpkg --print-architecture)
deb="$tmp/pkg/joint_${version}_${arch}.deb"
[ -f "$deb" ] || { ls -l "$tmp/pkg" >&2; fail "no $deb"; }
dpkg-deb --info "$deb"
[ "$(dpkg-deb -f "$deb" Package)" = joint ] || fail "Package is not joint"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version is not $version"
[ -n "$(dpkg-deb -f "$deb" Maintainer)" ] || fail "no Maintainer"
dpkg-deb -f "$deb" Description | grep -q "joint command-line tool" || fail "Description lacks the long description"
dpkg-deb -f "$deb" Depends | grep -Eq 'libc6 \(>= [0-9.]+\)' ||
    fail "Depends lacks libc6 (>= VERSION): $(dpkg-deb -f "$deb" Depends)"

step "apt-get install $deb"
installed=1
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb"

step "dpkg -L joint"
files=$(dpkg -L joint)
echo "$files"
has() { echo "$files" | grep -Eq "$1" || fail "dpkg -L joint lacks $1"; }
has "^/usr/lib/(.*/)?libjoint\.so\.$version\$"
has "^/usr/lib/(.*/)?$soname\$"
has "^/usr/lib/(.*/)?libjoint\.so\$"
has "^/usr/lib/(.*/)?libjoint\.a\$"
has "^/usr/include/joint\.h\$"
has "^/usr/include/joint\.hpp\$"
has "^/usr/include/joint/context\.hpp\$"
has "^/usr/lib/(.*/)?cmake/joint/jointConfig\.cmake\$"
has "^/usr/lib/(.*/)?cmake/joint/jointConfigVersion\.cmake\$"
has "^/usr/lib/(.*/)?pkgconfig/joint\.pc\$"
has "^/usr/bin/joint\$"
has "^/usr/share/man/man1/joint\.1(\.gz)?\$"
has "^/usr/share/man/man1/joint-bench\.1(\.gz)?\$"
has "^/usr/share/doc/joint/LICENSE-MIT\$"
libdir=$(dirname "$(echo "$files" | grep -E "/libjoint\.so\.$version\$")")

step "joint --version"
out=$(/usr/bin/joint --version)
echo "$out"
[ "$out" = "joint $version" ] || fail "joint --version printed '$out', want 'joint $version'"

step "find_package(joint) project against /usr"
major_minor=${version%.*}
major=${version%%.*}
minor=${major_minor#*.}
"$cmake" -S "$src/tests/c/consumer" -B "$tmp/consumer" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DJOINT_EXPECTED_VERSION="$version" -DJOINT_EXPECTED_MAJOR_MINOR="$major_minor" \
    -DJOINT_OTHER_MINOR="$major.$((minor + 1))"
grep -q "^joint_DIR:PATH=$libdir/cmake/joint\$" "$tmp/consumer/CMakeCache.txt" ||
    fail "find_package(joint) did not find the package's config in $libdir/cmake/joint"
"$cmake" --build "$tmp/consumer"
"$tmp/consumer/consumer_shared" shared "$libdir/"
"$tmp/consumer/consumer_static" static
"$tmp/consumer/consumer_default" shared "$libdir/"

step "pkg-config build against /usr"
unset PKG_CONFIG_PATH
[ "$(pkg-config --modversion joint)" = "$version" ] || fail "pkg-config --modversion joint"
[ "$(pkg-config --variable=prefix joint)" = /usr ] ||
    fail "joint.pc: prefix is $(pkg-config --variable=prefix joint), want /usr"
# shellcheck disable=SC2046
"${CC:-cc}" -o "$tmp/pc_shared" "$src/tests/c/consumer/consumer.c" $(pkg-config --cflags --libs joint) -ldl
"$tmp/pc_shared" shared "$libdir/"

step "apt-get purge joint"
$as_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq joint
installed=0
if dpkg-query -W -f='${Status}' joint 2>/dev/null | grep -q "install ok installed"; then
    fail "joint is still installed"
fi
[ ! -e /usr/include/joint.h ] && [ ! -e /usr/bin/joint ] && [ ! -e "$libdir/$soname" ] ||
    fail "files of the package are left after apt-get remove"

echo
echo "build_deb: ok"
