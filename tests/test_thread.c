/* tests/test_thread.c - scoped/thread.h: scoped_thread, its stop token, and scope exit. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <scoped.h>
#include <scoped/criterion.h>

#include "fault.h"
#include "helpers.h"

/* After a join the kernel may list the exited thread in /proc/self/task for a moment longer
 * (it clears the joined tid before it reaps the task): a bounded wait, not a sleep. */
#define assert_threads_back_to(n)                                                           \
	cr_assert(wait_until(thread_count() == (n), 2000), "%d threads, want %d",            \
		  thread_count(), (n))

/* A thread function that runs until stopped, recording what it saw. */
struct probe {
	atomic_int started;
	atomic_int finished;
	atomic_bool early;	/* scoped_stop_sleep returned true */
	char name[16];
	scoped_thread *self;	/* for the stop-from-inside tests, */
	int self_action;	/* 1: stop itself, 2: close itself, */
	pthread_barrier_t go;	/* passed once self is set (helgrind sees a barrier, not atomics) */
};

static void run_until_stopped(scoped_stop *stop, void *arg)
{
	struct probe *p = arg;
	pthread_getname_np(pthread_self(), p->name, sizeof p->name);
	atomic_fetch_add(&p->started, 1);
	while (!scoped_stop_sleep(stop, 3600 * 1000))
		;
	atomic_store(&p->early, true);
	atomic_fetch_add(&p->finished, 1);
}

TestSuite(thread, .fini = scoped_cr_no_leaks);

Test(thread, runs_fn_with_arg_and_stop_joins_it)
{
	struct probe p = { 0 };
	int before = thread_count();
	scoped_thread *t = scoped_thread_start("probe", run_until_stopped, &p);
	cr_assert_not_null(t, "%s", strerror(errno));
	cr_assert(wait_until(atomic_load(&p.started) == 1, 5000));
	cr_assert_eq(thread_count(), before + 1);
	cr_assert_eq(atomic_load(&p.finished), 0);
	scoped_thread_stop(t);
	cr_assert_eq(atomic_load(&p.finished), 1, "stop returned before fn did");
	cr_assert(atomic_load(&p.early));
	assert_threads_back_to(before);
	scoped_thread_stop(t); /* repeatable: the handle stays valid */
	scoped_thread_stop(t);
	scoped_thread_close(t);
}

/* Criterion asserts only on the test's own thread: this records, the test checks. */
struct token_seen {
	atomic_int phase;
	bool requested_at_start, slept_full, full_sleep_said_stop, stop_sleep_said_stop;
	long long full_ms, stopped_ms;
};

static void check_token(scoped_stop *stop, void *arg)
{
	struct token_seen *s = arg;
	s->requested_at_start = scoped_stop_requested(stop);
	/* No stop requested: the sleep runs its course and says so. */
	long long t0 = now_ms();
	s->full_sleep_said_stop = scoped_stop_sleep(stop, 20);
	s->full_ms = now_ms() - t0;
	atomic_store(&s->phase, 1);
	while (!scoped_stop_requested(stop))
		scoped_stop_sleep(stop, 1000);
	/* Once requested, a sleep returns true at once. */
	t0 = now_ms();
	s->stop_sleep_said_stop = scoped_stop_sleep(stop, 3600 * 1000);
	s->stopped_ms = now_ms() - t0;
	atomic_store(&s->phase, 2);
}

Test(thread, stop_token_and_interruptible_sleep)
{
	struct token_seen s = { 0 };
	scoped(scoped_thread) t = scoped_thread_start("token", check_token, &s);
	cr_assert_not_null(t);
	cr_assert(wait_until(atomic_load(&s.phase) == 1, 5000));
	scoped_thread_stop(t);
	cr_assert_eq(atomic_load(&s.phase), 2);
	cr_assert_not(s.requested_at_start);
	cr_assert_not(s.full_sleep_said_stop);
	cr_assert_geq(s.full_ms, 19);
	cr_assert(s.stop_sleep_said_stop);
	cr_assert_lt(s.stopped_ms, 1000);
}

Test(thread, stop_of_an_hour_long_sleep_is_prompt)
{
	struct probe p = { 0 };
	scoped_thread *t = scoped_thread_start("sleeper", run_until_stopped, &p);
	cr_assert_not_null(t);
	cr_assert(wait_until(atomic_load(&p.started) == 1, 5000));
	long long t0 = now_ms();
	scoped_thread_close(t);
	cr_assert_lt(now_ms() - t0, 1000, "close waited for the sleep");
	cr_assert_eq(atomic_load(&p.finished), 1);
}

Test(thread, null_is_fine_everywhere)
{
	scoped_thread_stop(NULL);
	scoped_thread_close(NULL);
	cr_assert_not(scoped_stop_requested(NULL));
	cr_assert_not(scoped_stop_sleep(NULL, 10));
	scoped(scoped_thread) t = NULL;
	(void)t;
}

Test(thread, null_fn_is_einval_and_starts_nothing)
{
	int before = thread_count();
	errno = 0;
	scoped_thread *t = scoped_thread_start("x", NULL, NULL);
	cr_assert_null(t);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(thread_count(), before);
	cr_assert_eq(scoped_live_count(), 0);
}

Test(thread, failures_leave_nothing_behind)
{
	struct probe p = { 0 };
	int before = thread_count();
	long allocs = fault_live_allocs();

	fault_arm(FAULT_ALLOC, 1, 0);
	errno = 0;
	cr_assert_null(scoped_thread_start("nomem", run_until_stopped, &p));
	cr_assert_eq(errno, ENOMEM);

	fault_arm(FAULT_THREAD, 1, EAGAIN);
	errno = 0;
	cr_assert_null(scoped_thread_start("again", run_until_stopped, &p));
	cr_assert_eq(errno, EAGAIN);
	fault_disarm();

	cr_assert_eq(thread_count(), before);
	cr_assert_eq(scoped_live_count(), 0);
	cr_assert_eq(atomic_load(&p.started), 0);
	cr_assert_eq(fault_live_allocs(), allocs, "a failed start freed what it allocated");

	scoped(scoped_thread) t = scoped_thread_start("after", run_until_stopped, &p);
	cr_assert_not_null(t, "a failure must not poison later starts");
}

Test(thread, name_is_set_and_truncated_to_15_bytes)
{
	struct probe a = { 0 }, b = { 0 };
	{
		scoped(scoped_thread) t1 = scoped_thread_start("short", run_until_stopped, &a);
		scoped(scoped_thread) t2 = scoped_thread_start("a-very-long-thread-name-indeed",
							       run_until_stopped, &b);
		cr_assert(wait_until(atomic_load(&a.started) && atomic_load(&b.started), 5000));
	}
	cr_assert_str_eq(a.name, "short");
	cr_assert_str_eq(b.name, "a-very-long-thr");
}

/* --- scope exit, by every path -------------------------------------------------------- */

static int inside;

static void count_inside(void) { inside = thread_count(); }

static int leave_by_return(struct probe *p)
{
	scoped(scoped_thread) t = scoped_thread_start("ret", run_until_stopped, p);
	cr_assert_not_null(t);
	cr_assert(wait_until(atomic_load(&p->started) == 1, 5000));
	count_inside();
	return 7;
}

Test(thread, leaving_scope_by_return_stops_it)
{
	struct probe p = { 0 };
	int before = thread_count();
	cr_assert_eq(leave_by_return(&p), 7);
	cr_assert_eq(inside, before + 1);
	assert_threads_back_to(before);
	cr_assert_eq(atomic_load(&p.finished), 1);
}

Test(thread, leaving_scope_by_break_stops_it)
{
	struct probe p = { 0 };
	int before = thread_count();
	for (int i = 0; i < 10; i++) {
		scoped(scoped_thread) t = scoped_thread_start("brk", run_until_stopped, &p);
		cr_assert_not_null(t);
		cr_assert(wait_until(atomic_load(&p.started) == 1, 5000));
		count_inside();
		break;
	}
	cr_assert_eq(inside, before + 1);
	assert_threads_back_to(before);
	cr_assert_eq(atomic_load(&p.finished), 1);
}

Test(thread, leaving_scope_by_goto_stops_it)
{
	struct probe p = { 0 };
	int before = thread_count();
	{
		scoped(scoped_thread) t = scoped_thread_start("goto", run_until_stopped, &p);
		cr_assert_not_null(t);
		cr_assert(wait_until(atomic_load(&p.started) == 1, 5000));
		count_inside();
		goto out;
	}
out:
	cr_assert_eq(inside, before + 1);
	assert_threads_back_to(before);
	cr_assert_eq(atomic_load(&p.finished), 1);
}

Test(thread, leaving_scope_at_its_end_stops_it)
{
	struct probe p = { 0 };
	int before = thread_count();
	{
		scoped(scoped_thread) t = scoped_thread_start("end", run_until_stopped, &p);
		cr_assert_not_null(t);
		cr_assert(wait_until(atomic_load(&p.started) == 1, 5000));
		count_inside();
	}
	cr_assert_eq(inside, before + 1);
	assert_threads_back_to(before);
	cr_assert_eq(atomic_load(&p.finished), 1);
}

/* --- stop and close from inside, and from many threads -------------------------------- */

static void stop_myself(scoped_stop *stop, void *arg)
{
	struct probe *p = arg;
	pthread_barrier_wait(&p->go);
	if (p->self_action == 1)
		scoped_thread_stop(p->self); /* must return, not join itself */
	else
		scoped_thread_close(p->self); /* must return; the handle is gone after */
	atomic_store(&p->early, scoped_stop_requested(stop));
	atomic_fetch_add(&p->finished, 1);
}

Test(thread, stop_from_its_own_fn_returns_and_thread_is_reclaimed)
{
	struct probe p = { .self_action = 1 };
	int before = thread_count();
	unsigned long joins = fault_joins();
	pthread_barrier_init(&p.go, NULL, 2);
	scoped_thread *t = scoped_thread_start("selfstop", stop_myself, &p);
	cr_assert_not_null(t);
	p.self = t;
	pthread_barrier_wait(&p.go);
	cr_assert(wait_until(atomic_load(&p.finished) == 1, 5000));
	cr_assert(atomic_load(&p.early), "stop from inside did not request stop");
	cr_assert(wait_until(thread_count() == before, 5000), "the detached thread lingers");
	scoped_thread_stop(t); /* already reclaimed: returns without joining */
	scoped_thread_close(t);
	cr_assert_eq(fault_joins(), joins, "a detached thread was joined");
	pthread_barrier_destroy(&p.go);
}

Test(thread, close_from_its_own_fn_frees_when_done)
{
	struct probe p = { .self_action = 2 };
	int before = thread_count();
	pthread_barrier_init(&p.go, NULL, 2);
	scoped_thread *t = scoped_thread_start("selfclose", stop_myself, &p);
	cr_assert_not_null(t);
	p.self = t;
	pthread_barrier_wait(&p.go);
	cr_assert(wait_until(atomic_load(&p.finished) == 1, 5000));
	cr_assert(atomic_load(&p.early));
	cr_assert(wait_until(thread_count() == before && scoped_live_count() == 0, 5000));
	/* The handle's memory: asan / valgrind report it if the thread did not free it. */
	pthread_barrier_destroy(&p.go);
}

struct crowd {
	scoped_thread *t;
	struct probe *p;
	pthread_barrier_t go;
	atomic_int ok;
};

static void *stopper(void *arg)
{
	struct crowd *c = arg;
	pthread_barrier_wait(&c->go);
	scoped_thread_stop(c->t);
	if (atomic_load(&c->p->finished) == 1)
		atomic_fetch_add(&c->ok, 1); /* returned only after the thread ended */
	return NULL;
}

Test(thread, stop_from_many_threads_joins_exactly_once)
{
	for (int round = 0; round < 20; round++) {
		struct probe p = { 0 };
		struct crowd c = { .p = &p };
		c.t = scoped_thread_start("crowd", run_until_stopped, &p);
		cr_assert_not_null(c.t);
		unsigned long joins = fault_joins();
		pthread_barrier_init(&c.go, NULL, 8);
		pthread_t th[8];
		for (int i = 0; i < 8; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, stopper, &c), 0);
		for (int i = 0; i < 8; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&c.go);
		cr_assert_eq(atomic_load(&c.ok), 8);
		/* this test's 8 joins of its stoppers, and the library's one */
		cr_assert_eq(fault_joins(), joins + 8 + 1);
		scoped_thread_close(c.t);
		cr_assert_eq(fault_joins(), joins + 8 + 1);
	}
}

Test(thread, plain_function_form_works_too)
{
	struct probe p = { 0 };
	scoped(scoped_thread) t = (scoped_thread_start)("plain", run_until_stopped, &p);
	cr_assert_not_null(t);
	cr_assert(wait_until(atomic_load(&p.started) == 1, 5000));
}

static void exit_early(scoped_stop *stop, void *arg)
{
	(void)stop;
	atomic_store((atomic_int *)arg, 1);
	pthread_exit(NULL);
}

Test(thread, fn_leaving_by_pthread_exit_still_ends_cleanly)
{
	atomic_int ran = 0;
	int before = thread_count();
	scoped_thread *t = scoped_thread_start("exits", exit_early, &ran);
	cr_assert_not_null(t);
	cr_assert(wait_until(scoped_live_count() == 0, 5000), "the handle never ended");
	cr_assert_eq(atomic_load(&ran), 1);
	scoped_thread_close(t); /* joins once, frees: asan and valgrind check the memory */
	assert_threads_back_to(before);
}
