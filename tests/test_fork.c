/* tests/test_fork.c - scoped/thread.h after fork(): handles inherited by a child have no thread;
 * closing them there neither hangs nor touches the parent's threads. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include <scoped.h>
#include <scoped/criterion.h>

#include "child.h"
#include "fault.h"
#include "helpers.h"

struct counter {
	atomic_int ticks;
	atomic_int stops;
};

static void tick(void *ctx) { atomic_fetch_add(&((struct counter *)ctx)->ticks, 1); }
static void on_stop(void *ctx) { atomic_fetch_add(&((struct counter *)ctx)->stops, 1); }

static void until_stopped(scoped_stop *stop, void *arg)
{
	atomic_int *finished = arg;
	while (!scoped_stop_sleep(stop, 3600 * 1000))
		;
	atomic_fetch_add(finished, 1);
}

TestSuite(fork, .fini = scoped_cr_no_leaks);

Test(fork, child_closes_inherited_handles_without_hanging)
{
	struct counter hourly = { 0 }, on_demand = { 0 };
	atomic_int finished = 0;
	scoped_worker *w1 = scoped_worker_start(&(scoped_worker_config){
		.name = "hourly", .period_ms = 3600000, .tick = tick, .on_stop = on_stop,
		.ctx = &hourly });
	scoped_worker *w2 = scoped_worker_start(&(scoped_worker_config){
		.name = "on-demand", .tick = tick, .on_stop = on_stop, .ctx = &on_demand });
	scoped_thread *t = scoped_thread_start("pump", until_stopped, &finished);
	cr_assert(w1 && w2 && t);
	cr_assert_eq(scoped_live_count(), 3);
	/* Each thread past its start before the fork: one still starting may be inside the
	 * allocator, and ASan's (GCC 12, clang 14) is not fork-safe. */
	cr_assert(wait_until(thread_named("hourly") && thread_named("on-demand") &&
				     thread_named("pump"),
			     5000));

	struct child ch = child_start();
	if (ch.pid == 0) {
		int code = 0;
		if (scoped_live_count() != 0)
			code |= 1; /* the child has none of these threads */
		scoped_worker_wake(w2); /* no thread to wake: must not block */
		scoped_thread_stop(t);
		scoped_worker_close(w1);
		scoped_worker_close(w2);
		scoped_thread_close(t);
		if (atomic_load(&hourly.stops) || atomic_load(&on_demand.stops) ||
		    atomic_load(&finished))
			code |= 2; /* the callbacks belong to the parent's threads */
		/* The child can still start and stop its own. */
		scoped_worker *mine = scoped_worker_start(&(scoped_worker_config){
			.name = "child", .tick = tick, .on_stop = on_stop, .ctx = &hourly });
		if (!mine)
			code |= 4;
		scoped_worker_close(mine);
		if (atomic_load(&hourly.stops) != 1 || scoped_live_count() != 0)
			code |= 8;
		child_done(ch, code);
	}
	int code = child_wait(ch, 10000);
	cr_assert_eq(code, 0, "child: %d", code);

	/* The parent's threads are untouched: still live, still ticking. */
	cr_assert_eq(scoped_live_count(), 3);
	scoped_worker_wake(w2);
	cr_assert(wait_until(atomic_load(&on_demand.ticks) == 1, 5000));
	scoped_worker_close(w1);
	scoped_worker_close(w2);
	scoped_thread_close(t);
	cr_assert_eq(atomic_load(&hourly.stops), 1);
	cr_assert_eq(atomic_load(&on_demand.stops), 1);
	cr_assert_eq(atomic_load(&finished), 1);
}

static void returns_at_once(scoped_stop *stop, void *arg)
{
	(void)stop;
	(void)arg;
}

Test(fork, child_closes_a_handle_whose_thread_ended_but_was_not_joined)
{
	int threads = thread_count();
	scoped_thread *t = scoped_thread_start("ended", returns_at_once, NULL);
	cr_assert_not_null(t);
	cr_assert(wait_until(scoped_live_count() == 0, 5000));
	/* and gone from the kernel: no longer inside the allocator (ASan's is not fork-safe) */
	cr_assert(wait_until(thread_count() == threads, 5000));
	struct child ch = child_start();
	if (ch.pid == 0) {
		unsigned long before = fault_joins();
		scoped_thread_stop(t); /* the parent's pthread_t: joining it here would be wrong */
		scoped_thread_close(t);
		child_done(ch, fault_joins() != before);
	}
	int code = child_wait(ch, 10000);
	cr_assert_eq(code, 0, "child: %d", code);
	unsigned long joins = fault_joins();
	scoped_thread_close(t); /* the parent still joins it, once */
	cr_assert_eq(fault_joins(), joins + 1);
}

/* Another thread starts and closes workers while the test forks: the registry and the handles'
 * locks must be consistent in every child. */
static void *churn(void *arg)
{
	atomic_bool *done = arg;
	struct counter c = { 0 };
	while (!atomic_load(done)) {
		scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
			.name = "churn", .period_ms = 1, .tick = tick, .on_stop = on_stop, .ctx = &c });
		scoped_worker_wake(w);
	}
	return NULL;
}

/* Older ASan runtimes (GCC 12's, clang 14's) do not lock their allocator across fork(): a child
 * forked while another thread allocates can hang inside ASan itself. */
#if UNDER_ASAN && !(defined(__clang__) && __clang_major__ >= 15)
#  define OLD_ASAN 1
#endif

Test(fork, fork_while_workers_start_and_stop)
{
#ifdef OLD_ASAN
	cr_skip_test("this ASan runtime's allocator is not fork-safe while other threads allocate");
#endif
	static atomic_bool done;
	atomic_store(&done, false);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, churn, &done), 0);
	int forks = getenv("VALGRIND") ? 3 : 20;
	for (int i = 0; i < forks; i++) {
		struct child ch = child_start();
		if (ch.pid == 0) {
			struct counter c = { 0 };
			int code = scoped_live_count() != 0;
			scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
				.name = "child", .tick = tick, .on_stop = on_stop, .ctx = &c });
			scoped_worker_wake(w);
			scoped_worker_close(w);
			if (!w || atomic_load(&c.stops) != 1)
				code |= 2;
			child_done(ch, code);
		}
		int code = child_wait(ch, 10000);
		cr_assert_eq(code, 0, "child %d: %d", i, code);
	}
	atomic_store(&done, true);
	pthread_join(th, NULL);
}

/* fork() from a worker's own tick: in the child, that thread is the one left. */
struct forker {
	atomic_int status;	/* child's exit status + 1 */
	scoped_worker *w;
};

static void fork_from_tick(void *ctx)
{
	struct forker *f = ctx;
	int p[2];
	if (pipe(p) != 0) {
		atomic_store(&f->status, 101);
		return;
	}
	struct child ch = { .pid = fork() };
	ch.fd = ch.pid == 0 ? p[1] : p[0];
	close(ch.pid == 0 ? p[0] : p[1]);
	if (ch.pid == 0) {
		alarm(10);
		/* This thread is the worker's: it is live, and closing it from here returns. */
		int code = scoped_live_count() != 1;
		scoped_worker_close(f->w);
		child_done(ch, code);
	}
	atomic_store(&f->status, ch.pid < 0 ? 100 : child_wait(ch, 10000) + 1);
}

Test(fork, fork_from_inside_a_tick)
{
	struct forker f = { 0 };
	f.w = scoped_worker_start(&(scoped_worker_config){ .name = "forker", .tick = fork_from_tick,
							   .ctx = &f });
	cr_assert_not_null(f.w);
	scoped_worker_wake(f.w);
	cr_assert(wait_until(atomic_load(&f.status) != 0, 15000));
	cr_assert_eq(atomic_load(&f.status), 1, "child exit status %d", atomic_load(&f.status) - 1);
	scoped_worker_close(f.w);
}
