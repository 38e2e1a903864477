/* tests/test_cancel.c - scope cleanups on thread cancellation, pthread_exit and longjmp.
 *
 * Built with -fexceptions (tests/extra.mk): then pthread_cancel() and pthread_exit() unwind the
 * thread's stack and run every cleanup on the way, as C++ destructors would be. longjmp() does
 * not unwind: it skips them, and the leak checker shows what was left. See docs/reliability.md
 * for what happens without -fexceptions.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <scoped.h>
#include <scoped/criterion.h>

#include "helpers.h"

/* tests/extra.mk builds this file with -fexceptions; scripts/matrix.sh only checks its syntax,
 * without it. A build without it fails the tests that need it, saying why. */
#ifdef __EXCEPTIONS
#  define WITH_EXCEPTIONS 1
#else
#  define WITH_EXCEPTIONS 0
#endif
#define need_exceptions()                                                                   \
	cr_assert(WITH_EXCEPTIONS, "tests/test_cancel.c must be built with -fexceptions")

/* ThreadSanitizer cannot follow a thread cancelled inside one of its interceptors (pause(),
 * sleep()...): the cleanups then run with its interceptors disabled, it misses their locking,
 * and reports races that are not there (google/sanitizers issue 646). Under TSan the "pause"
 * victim waits in pthread_testcancel() instead, which TSan does not intercept. */

TestSuite(cancel, .fini = scoped_cr_no_leaks);

struct counter {
	atomic_int ticks;
	atomic_int stops;
};

static void tick(void *ctx) { atomic_fetch_add(&((struct counter *)ctx)->ticks, 1); }
static void on_stop(void *ctx) { atomic_fetch_add(&((struct counter *)ctx)->stops, 1); }

/* What the victim thread holds, and how it ends. */
struct hold {
	struct counter c;
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* waited on with mu held: a cancellation point */
	atomic_int ready;
	atomic_int freed;		/* the scoped_defer cleanup ran */
	int how;			/* 0: cancelled in pause(), 1: cancelled in pthread_cond_wait,
					 * 2: pthread_exit two frames down */
};

static void mark_freed(atomic_int *p) { atomic_fetch_add(p, 1); }

static void exit_from_deep(struct hold *h)
{
	scoped_free char *scratch = malloc(64); /* freed on the way out too */
	(void)scratch;
	pthread_exit(h);
}

static void *victim(void *arg)
{
	struct hold *h = arg;
	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
		.name = "held", .period_ms = 1, .tick = tick, .on_stop = on_stop, .ctx = &h->c });
	scoped(FILE) f = fopen("/dev/null", "r");
	scoped_defer(mark_freed, &h->freed);
	if (!w || !f)
		return NULL;
	scoped_lock(&h->mu);
	atomic_store(&h->ready, 1);
	if (h->how == 2) {
		while (atomic_load(&h->ready) != 2) /* the test has seen what it holds */
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		exit_from_deep(h);
	}
	for (;;) {
		if (h->how == 1) {
			pthread_cond_wait(&h->cv, &h->mu); /* never signalled */
		} else if (UNDER_TSAN) {
			pthread_testcancel();
			sched_yield();
		} else {
			pause();
		}
	}
	return NULL;
}

static void run_victim(int how)
{
	need_exceptions();
	struct hold h = { .how = how };
	pthread_mutex_init(&h.mu, NULL);
	pthread_cond_init(&h.cv, NULL);
	int fds = fd_count(), threads = thread_count();
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, victim, &h), 0);
	cr_assert(wait_until(atomic_load(&h.ready), 5000));
	cr_assert(wait_until(atomic_load(&h.c.ticks) > 0, 5000)); /* the worker is running */
	cr_assert_eq(scoped_live_count(), 1);
	cr_assert_eq(fd_count(), fds + 1);
	if (how != 2)
		cr_assert_eq(pthread_cancel(th), 0);
	else
		atomic_store(&h.ready, 2);
	void *ret = NULL;
	cr_assert_eq(pthread_join(th, &ret), 0);
	cr_assert_eq(ret, how == 2 ? (void *)&h : PTHREAD_CANCELED);

	/* Every cleanup ran, in the victim thread, on its way out. */
	cr_assert_eq(atomic_load(&h.freed), 1, "scoped_defer did not run");
	cr_assert_eq(atomic_load(&h.c.stops), 1, "the worker was not stopped (%d on_stop)",
		     atomic_load(&h.c.stops));
	cr_assert_eq(scoped_live_count(), 0);
	cr_assert_eq(fd_count(), fds, "the FILE was not closed");
	cr_assert_eq(pthread_mutex_trylock(&h.mu), 0, "the lock is still held");
	pthread_mutex_unlock(&h.mu);
	cr_assert(wait_until(thread_count() == threads, 2000));
	pthread_cond_destroy(&h.cv);
	pthread_mutex_destroy(&h.mu);
}

Test(cancel, pthread_cancel_in_pause_runs_cleanups) { run_victim(0); }
Test(cancel, pthread_cancel_in_cond_wait_unlocks_and_runs_cleanups) { run_victim(1); }
Test(cancel, pthread_exit_runs_cleanups_of_every_frame) { run_victim(2); }

/* A cancel requested while cancellation is disabled is acted on at the next cancellation point
 * once enabled again: the cleanups run then. */
static void *disabled_then_enabled(void *arg)
{
	struct hold *h = arg;
	int old;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
		.name = "deferred", .tick = tick, .on_stop = on_stop, .ctx = &h->c });
	atomic_store(&h->ready, 1);
	while (atomic_load(&h->ready) != 2) /* the test has called pthread_cancel */
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
	pthread_testcancel();
	(void)w;
	return NULL;
}

Test(cancel, cancel_pending_while_disabled_runs_cleanups_when_acted_on)
{
	need_exceptions();
	struct hold h = { 0 };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, disabled_then_enabled, &h), 0);
	cr_assert(wait_until(atomic_load(&h.ready) == 1, 5000));
	cr_assert_eq(pthread_cancel(th), 0);
	atomic_store(&h.ready, 2);
	void *ret = NULL;
	cr_assert_eq(pthread_join(th, &ret), 0);
	cr_assert_eq(ret, PTHREAD_CANCELED);
	cr_assert_eq(atomic_load(&h.c.stops), 1);
	cr_assert_eq(scoped_live_count(), 0);
}

/* --- longjmp skips cleanups -------------------------------------------------------------- */

static jmp_buf jump;
static scoped_worker *volatile skipped; /* the handle longjmp left behind, to clean up */

static void leave_by_longjmp(struct counter *c)
{
	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
		.name = "skipped-by-longjmp", .period_ms = 3600000, .tick = tick, .on_stop = on_stop,
		.ctx = c });
	skipped = w;
	longjmp(jump, 1); /* no cleanup runs: w is never closed */
}

Test(cancel, longjmp_skips_cleanups_and_the_leak_checker_says_so)
{
	static struct counter c;
	atomic_store(&c.stops, 0);
	if (setjmp(jump) == 0)
		leave_by_longjmp(&c);
	cr_assert_not_null(skipped);
	cr_assert_eq(atomic_load(&c.stops), 0, "a cleanup ran across longjmp");

	/* The leak checker reports the live worker, with its name and start site. */
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	cr_assert_not_null(out);
	size_t n = scoped_live_report(out);
	fclose(out);
	cr_assert_eq(n, 1);
	cr_assert(strstr(text, "worker \"skipped-by-longjmp\""), "report: %s", text);
	cr_assert(strstr(text, "test_cancel.c:"), "report: %s", text);
	cr_log_info("after longjmp: %s", text);
	free(text);
	cr_assert_eq(scoped_expect_no_leaks(10), 1);

	/* Clean up by hand, so the suite itself stays leak-free. */
	scoped_worker_close(skipped);
	skipped = NULL;
	cr_assert_eq(atomic_load(&c.stops), 1);
	cr_assert_eq(scoped_live_count(), 0);
}

/* --- a scoped thread's own function ending in pthread_exit ------------------------------ *
 * thread.h allows it: the thread still ends cleanly (it was reported live forever before
 * src/thread.c ran its end in a pthread cleanup handler), and the handles the function held are
 * closed on the way out. */
static void exits(scoped_stop *stop, void *arg)
{
	(void)stop;
	struct counter *c = arg;
	scoped(scoped_worker) inner = scoped_worker_start(&(scoped_worker_config){
		.name = "inner", .tick = tick, .on_stop = on_stop, .ctx = c });
	if (inner)
		pthread_exit(NULL);
}

Test(cancel, scoped_thread_function_ending_in_pthread_exit)
{
	need_exceptions();
	struct counter c = { 0 };
	scoped_thread *t = scoped_thread_start("exits", exits, &c);
	cr_assert_not_null(t);
	cr_assert_eq(scoped_expect_no_leaks(2000), 0, "the thread ended by pthread_exit is live");
	cr_assert_eq(atomic_load(&c.stops), 1, "the worker its function held was not closed");
	scoped_thread_close(t);
	cr_assert_eq(scoped_live_count(), 0);
}
