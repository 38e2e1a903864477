#!/bin/sh
# scripts/deps.sh build|test|ci - install what the build, the tests (make test) or everything
# make check runs (ci) need, when missing.
# As root on Debian: apt-get install -y. Otherwise: print the exact command and fail.
set -eu
what=${1:-test}
need=""

has_cmd() { command -v "$1" >/dev/null 2>&1; }
has_header() { printf '#include <%s>\n' "$1" | ${CC:-gcc} -E -x c - >/dev/null 2>&1; }

has_cmd gcc || need="$need gcc"
has_cmd make || need="$need make"
if [ "$what" != build ]; then
	has_header criterion/criterion.h || need="$need libcriterion-dev"
	has_cmd clang || need="$need clang"
	has_cmd pkg-config || need="$need pkg-config"
	has_cmd node || need="$need nodejs"
	has_cmd npm || need="$need npm"
fi
if [ "$what" = ci ]; then
	has_cmd clang-19 || need="$need clang-19"
	# libFuzzer and the sanitizer runtimes come apart from the compilers.
	has_rt() { ls /usr/lib/llvm-"$1"/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1; }
	has_rt 14 || need="$need libclang-rt-14-dev"
	has_rt 19 || need="$need libclang-rt-19-dev"
	has_cmd g++ || need="$need g++"
	has_cmd valgrind || need="$need valgrind"
fi

if [ -n "$need" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "scoped: missing:$need" >&2
		echo "scoped: run as root: apt-get update && apt-get install -y$need" >&2
		exit 1
	fi
	echo "scoped: installing:$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq $need >/dev/null
fi
# The real statsd daemon (npm package), for the statsd sample's integration test.
if [ "$what" != build ] && [ -x scripts/install-statsd.sh ]; then
	scripts/install-statsd.sh
fi
exit 0
