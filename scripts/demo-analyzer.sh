#!/bin/sh
# scripts/demo-analyzer.sh - the compile-time half of the Process story: gcc -fanalyzer reads
# samples/process/process.c and reports the sender that process_leaky() never closes.
set -u
echo
echo "================ gcc -fanalyzer samples/process/process.c ================"
major=$(gcc -dumpversion 2>/dev/null | cut -d. -f1)
if [ "${major:-0}" -lt 11 ]; then
	echo "skipped: gcc -fanalyzer with malloc(dealloc) needs GCC 11 or later (have ${major:-none})"
	exit 0
fi
out=$(gcc -std=c11 -fanalyzer -Iinclude -Isamples -c samples/process/process.c -o /dev/null 2>&1)
echo "$out" | grep -E 'warning:|^ +[0-9]+ \|' | head -4
if echo "$out" | grep -q 'Wanalyzer-malloc-leak'; then
	echo "The leak is found at compile time, at the return that forgets statsd_close();"
	echo "process_scoped(), which declares the sender with scoped(statsd), gets no warning."
else
	echo "demo-analyzer: expected a leak warning" >&2
	exit 1
fi
