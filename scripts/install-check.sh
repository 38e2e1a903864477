#!/bin/sh
# scripts/install-check.sh - install into a scratch DESTDIR with PREFIX=/usr, then build a
# two-line program against it with pkg-config alone, statically and shared, and run it.
set -eu
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
make --no-print-directory -s CFG=gcc install DESTDIR="$dest" PREFIX=/usr >/dev/null
cat >"$dest/hello.c" <<'C'
#include <scoped.h>
int main(void) { scoped(FILE) f = fopen("/dev/null", "r"); return !f || scoped_live_count(); }
C
export PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_LIBDIR="$dest/usr/lib/pkgconfig"
flags=$(pkg-config --cflags --libs scoped)
gcc -std=c11 -Wall -Wextra -Wpedantic -Werror "$dest/hello.c" $flags -o "$dest/hello"
LD_LIBRARY_PATH="$dest/usr/lib" "$dest/hello"
readelf -d "$dest/hello" | grep -q 'libscoped.so.0'
gcc -std=c11 "$dest/hello.c" $(pkg-config --cflags scoped) -o "$dest/hello-static" \
    "$dest/usr/lib/libscoped.a" -pthread
"$dest/hello-static"
undefined=$(nm -D --defined-only "$dest/usr/lib/libscoped.so" | awk '{print $3}' | grep -v '^scoped_[a-z]' || true)
[ -z "$undefined" ] || { echo "install-check: unexpected exports: $undefined"; exit 1; }
make --no-print-directory -s CFG=gcc uninstall DESTDIR="$dest" PREFIX=/usr
left=$(find "$dest/usr" -type f | wc -l)
[ "$left" -eq 0 ] || { echo "install-check: uninstall left $left files"; exit 1; }
echo "install-check: pkg-config build (shared and static) ran; exports are scoped_* only; uninstall clean"
