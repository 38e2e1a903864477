#!/bin/sh
# scripts/run-tests.sh BIN... - run Criterion suites, then print one total line:
# "N passed, N failed" (and skipped). VALGRIND=1 runs each under memcheck (helgrind, drd: that tool).
# Exits non-zero when any suite fails, and also when a sanitizer or valgrind reported anything,
# or a test crashed in its .init/.fini: Criterion counts those tests as passed.
set -u
passed=0 failed=0 skipped=0 status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
vg=""
# VALGRIND=1: memcheck; VALGRIND=helgrind or drd: that tool (make helgrind / make drd).
# Children are traced (Criterion runs each test in a re-executed copy of the suite), except
# programs the suites start that are not ours to check: compilers and shells (/bin, /usr/bin),
# node (the statsd daemon test) and the demo binaries (run for their output by test_process).
case "${VALGRIND:-0}" in
0 | "") ;;
*)
	vg="valgrind -q --trace-children=yes --error-exitcode=99 --suppressions=tests/valgrind.supp"
	vg="$vg --trace-children-skip=/bin/*,/usr/bin/*,/usr/local/bin/*,*/node,*/nodejs,*/samples/*"
	export STATSD_TEST_UNDER_VALGRIND=1 # node is not traced: test_statsd_daemon may run
	case "$VALGRIND" in
	helgrind | drd) vg="$vg --tool=$VALGRIND" ;;
	*) vg="$vg --leak-check=full --errors-for-leak-kinds=all" ;;
	esac
	;;
esac
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
