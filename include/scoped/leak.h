/* scoped/leak.h - goleak for C: which background threads are still running, and who started them.
 *
 * Every scoped_thread and scoped_worker is registered from start until its thread has ended,
 * with its kind, name, start site (file:line, recorded by the start macros) and age:
 *
 *	run_test_body();
 *	if (scoped_expect_no_leaks(500) != 0)	// waits up to 500 ms, then reports to stderr
 *		return 1;
 *
 *	$ SCOPED_LEAKCHECK=1 ./prog		// reports live handles to stderr at exit
 *	scoped: 1 live handle at exit
 *	scoped: live worker "flusher" started at src/app.c:42, age 3.017 s
 *
 * With Criterion, scoped/criterion.h makes it one line per test: scoped_cr_test(suite, name).
 *
 * Pitfalls:
 *  - A handle closed from inside its own thread ends a moment after close returns, and a
 *    thread whose stop was requested is live until its function returns: give a grace period.
 *  - The count covers this library's threads only, not raw pthreads.
 *  - In a fork() child, handles inherited from the parent have no thread and are not counted.
 */
#ifndef SCOPED_LEAK_H
#define SCOPED_LEAK_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Threads and workers started whose thread has not yet ended. */
size_t scoped_live_count(void);
/* Writes one line per live handle to out (kind, name, start site, age); returns how many. */
size_t scoped_live_report(FILE *out);
/* Waits up to grace_ms, retrying with backoff, for every handle to end. Returns 0 when none is
 * left; otherwise reports what is left to stderr and returns the count. */
size_t scoped_expect_no_leaks(unsigned grace_ms);

#ifdef __cplusplus
}
#endif

#endif /* SCOPED_LEAK_H */
