/* scoped/criterion.h - "no leaked threads after this test" in one line, for Criterion suites.
 *
 *	#include <scoped/criterion.h>
 *
 *	scoped_cr_test(cache, expiry, .timeout = 5) {		// Test(...) plus the check
 *		scoped(cache) c = cache_new(...);
 *		...
 *	}							// c is closed, then checked
 *
 *	TestSuite(cache, .fini = scoped_cr_no_leaks);		// or: every test of a suite
 *	Test(cache, stop, .fini = scoped_cr_no_leaks) { ... }	// or: one test
 *
 *	scoped_cr_assert_no_leaks(200);				// or: at any point
 *
 * Each waits up to SCOPED_CR_GRACE_MS (default 1000; define it before including to change) for
 * threads that are still ending, then lists every leaked handle on stderr (kind, name, the
 * file:line that started it, age) and fails.
 *
 * Pitfalls:
 *  - Criterion (2.4) reports a failed assertion in a .fini function but still counts the test
 *    as passed. So scoped_cr_no_leaks() aborts the test process instead: the run fails, and
 *    Criterion says the test "crashed during its setup or teardown". scoped_cr_test() checks in
 *    the test itself and fails it cleanly: prefer it.
 *  - scoped_cr_assert_no_leaks() inside a test body runs before the body's own scoped(...)
 *    variables are closed: put them in an inner block, or use scoped_cr_test().
 *
 * Not included by scoped.h: it needs Criterion (-lcriterion).
 */
#ifndef SCOPED_CRITERION_H
#define SCOPED_CRITERION_H

#include <stdlib.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "cleanup.h"
#include "leak.h"

#ifndef SCOPED_CR_GRACE_MS
#  define SCOPED_CR_GRACE_MS 1000
#endif

#define scoped_cr_assert_no_leaks(grace_ms)                                                 \
	do {                                                                                \
		size_t scoped__left = scoped_expect_no_leaks(grace_ms);                     \
		cr_assert_eq(scoped__left, 0, "%zu scoped thread(s) leaked (listed on stderr)", \
			     scoped__left);                                                 \
	} while (0)

/* Test(...) whose body runs first, scope cleanups included, and then the check. */
#define scoped_cr_test(...)                                                                 \
	static void SCOPED__CAT(scoped__cr_body_, __LINE__)(void);                          \
	Test(__VA_ARGS__)                                                                   \
	{                                                                                   \
		SCOPED__CAT(scoped__cr_body_, __LINE__)();                                  \
		scoped_cr_assert_no_leaks(SCOPED_CR_GRACE_MS);                              \
	}                                                                                   \
	static void SCOPED__CAT(scoped__cr_body_, __LINE__)(void)

/* For Test(..., .fini = scoped_cr_no_leaks) and TestSuite(..., .fini = scoped_cr_no_leaks). */
static inline void scoped_cr_no_leaks(void)
{
	size_t left = scoped_expect_no_leaks(SCOPED_CR_GRACE_MS);
	if (left) {
		cr_log_error("%zu scoped thread(s) leaked (listed on stderr)", left);
		abort(); /* a failed assertion here would not fail the test (see above) */
	}
}

#endif /* SCOPED_CRITERION_H */
