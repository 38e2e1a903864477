#!/bin/sh
# scripts/matrix.sh - every compiler and standard, -Wall -Wextra -Wpedantic -Werror:
# the library, the samples and the tests (syntax only), user code that includes <scoped.h>
# (also as C++17), and a full build + run of the suite with clang-19 in -std=c2x.
set -u
fail=0 runs=0
# -fexceptions: tests/test_cancel.c needs it (see tests/extra.mk); it changes no warning.
flags="-Wall -Wextra -Wpedantic -Werror -pthread -fexceptions -Iinclude -Isamples -Itests"
flags="$flags -DSCOPED_SRCDIR=\"$PWD\" -DSCOPED_BUILDDIR=\"$PWD/build\""
files="$(ls src/*.c samples/*/*.c tests/test_*.c) tests/compile/user.c"

try() {
	runs=$((runs + 1))
	if ! out=$("$@" 2>&1); then
		echo "FAIL: $*"; echo "$out" | head -20; fail=$((fail + 1))
	fi
}

for cc in gcc clang-14 clang-19; do
	command -v $cc >/dev/null || { echo "matrix: $cc missing (scripts/deps.sh ci)"; exit 1; }
	for std in c11 gnu11 c2x; do
		echo "matrix: $cc -std=$std"
		for f in $files; do try $cc -std=$std $flags -fsyntax-only "$f"; done
	done
done
for cxx in g++ clang++ clang++-19; do
	command -v $cxx >/dev/null || { echo "matrix: $cxx missing"; exit 1; }
	echo "matrix: $cxx -std=c++17"
	try $cxx -x c++ -std=c++17 $flags -fsyntax-only tests/compile/user.c
done
echo "matrix: $runs compilations, $fail failed"
[ $fail -eq 0 ] || exit 1
echo "matrix: full suite with clang-19 -std=c2x"
exec make --no-print-directory CFG=clang19-c2x CC=clang-19 STD=c2x _run-tests
