/* scoped/criterion.h - "no leaked threads after this test" in one line, for Criterion suites.
 *
 *	#include <scoped/criterion.h>
 *
 *	TestSuite(cache, .fini = scoped_cr_no_leaks);		// every test in the suite
 *	Test(cache, expiry, .fini = scoped_cr_no_leaks) { ... }	// or one test
 *
 *	Test(cache, close) {
 *		...
 *		scoped_cr_assert_no_leaks(200);			// or at a point of your choosing
 *	}
 *
 * The check waits up to SCOPED_CR_GRACE_MS (default 1000; define it before including to change)
 * for threads that are still ending, then fails the test and lists each leaked handle on stderr:
 * kind, name, the file:line that started it, and its age.
 *
 * Not included by scoped.h: it needs Criterion (-lcriterion).
 */
#ifndef SCOPED_CRITERION_H
#define SCOPED_CRITERION_H

#include <criterion/criterion.h>

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

/* For Test(..., .fini = scoped_cr_no_leaks) and TestSuite(..., .fini = scoped_cr_no_leaks). */
static inline void scoped_cr_no_leaks(void)
{
	scoped_cr_assert_no_leaks(SCOPED_CR_GRACE_MS);
}

#endif /* SCOPED_CRITERION_H */
