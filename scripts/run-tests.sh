#!/bin/sh
# scripts/run-tests.sh BIN... - run Criterion suites, then print one total line:
# "N passed, N failed" (and skipped). VALGRIND=1 runs each under memcheck.
# Exits non-zero when any suite fails, and also when a sanitizer or valgrind reported anything,
# or a test crashed in its .init/.fini: Criterion counts those tests as passed.
set -u
passed=0 failed=0 skipped=0 status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
vg=""
if [ "${VALGRIND:-0}" = 1 ]; then
	vg="valgrind -q --trace-children=yes --leak-check=full --errors-for-leak-kinds=all"
	vg="$vg --error-exitcode=99 --suppressions=tests/valgrind.supp"
fi
for t in "$@"; do
	echo "== $t"
	# --jobs 1: the suites count threads and measure timing; keep them off each other's core.
	$vg "$t" --jobs 1 >"$log" 2>&1
	rc=$?
	cat "$log"
	line=$(grep -a 'Synthesis:' "$log" | tail -1)
	n=$(echo "$line" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p')
	p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
	s=$(grep -ac '\[SKIP\]' "$log" || true)
	reports=$(grep -aE 'ERROR: (Address|Leak|Memory)Sanitizer|WARNING: ThreadSanitizer|runtime error:|crashed during its setup or teardown|^==[0-9]+== [A-Z]' "$log" | head -5)
	if [ -n "$reports" ]; then
		echo "!! $t: reports in the output:"
		echo "$reports"
		rc=${rc#0}; rc=${rc:-98}
	fi
	if [ -z "$n" ] || [ "$rc" -ne 0 ]; then
		failed=$((failed + ${n:-1} - ${p:-0}))
		[ -z "$n" ] || [ "$n" -ne "${p:-0}" ] || failed=$((failed + 1))
		status=1
		echo "!! $t failed (exit $rc)"
	else
		failed=$((failed + n - p))
	fi
	passed=$((passed + ${p:-0}))
	skipped=$((skipped + s))
done
echo
echo "$passed passed, $failed failed, $skipped skipped"
[ -z "${SCOPED_TOTALS:-}" ] || echo "$passed $failed $skipped" >>"$SCOPED_TOTALS"
exit $status
