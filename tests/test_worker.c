/* tests/test_worker.c - scoped/thread.h: scoped_worker, periodic ticks, wake, on_stop, close. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
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

/* The inner object: all the worker thread touches. Criterion asserts stay on the test thread. */
struct counter {
	atomic_int ticks;
	atomic_int stops;
	atomic_int ticks_after_stop;	/* must stay 0: on_stop is last */
	atomic_llong first_tick_ms;
	pthread_t tick_thread, stop_thread;
	char name[16];
	scoped_worker *self;		/* for the from-inside tests */
	int self_action;		/* 1: stop from tick, 2: close from tick, 3: close from on_stop */
	atomic_int self_done;
};

static void tick(void *ctx)
{
	struct counter *c = ctx;
	if (atomic_load(&c->stops))
		atomic_fetch_add(&c->ticks_after_stop, 1);
	long long zero = 0;
	atomic_compare_exchange_strong(&c->first_tick_ms, &zero, now_ms());
	c->tick_thread = pthread_self();
	pthread_getname_np(pthread_self(), c->name, sizeof c->name);
	atomic_fetch_add(&c->ticks, 1);
	if (c->self_action == 1 || c->self_action == 2) {
		if (c->self_action == 1)
			scoped_worker_stop(c->self);
		else
			scoped_worker_close(c->self);
		atomic_store(&c->self_done, 1);
	}
}

static void on_stop(void *ctx)
{
	struct counter *c = ctx;
	int action = c->self_action; /* read before the count lets the test go on */
	c->stop_thread = pthread_self();
	atomic_fetch_add(&c->stops, 1);
	if (action == 3) {
		scoped_worker_close(c->self);
		atomic_store(&c->self_done, 1);
	}
}

#define HOUR_MS (3600u * 1000u)

TestSuite(worker, .fini = scoped_cr_no_leaks);

Test(worker, bad_config_is_einval_and_starts_nothing)
{
	int before = thread_count();
	errno = 0;
	cr_assert_null(scoped_worker_start(NULL));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(scoped_worker_start(&(scoped_worker_config){ .name = "notick",
								    .period_ms = 10 }));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(thread_count(), before);
	cr_assert_eq(scoped_live_count(), 0);
}

Test(worker, start_failures_leave_nothing_behind)
{
	struct counter c = { 0 };
	scoped_worker_config cfg = { .name = "fail", .tick = tick, .on_stop = on_stop, .ctx = &c };
	int before = thread_count();
	long allocs = fault_live_allocs();
	fault_arm(FAULT_ALLOC, 1, 0);
	errno = 0;
	cr_assert_null(scoped_worker_start(&cfg));
	cr_assert_eq(errno, ENOMEM);
	fault_arm(FAULT_THREAD, 1, EAGAIN);
	errno = 0;
	cr_assert_null(scoped_worker_start(&cfg));
	cr_assert_eq(errno, EAGAIN);
	fault_arm(FAULT_THREAD, 1, EPERM); /* whatever pthread_create says is passed on */
	errno = 0;
	cr_assert_null(scoped_worker_start(&cfg));
	cr_assert_eq(errno, EPERM);
	fault_disarm();
	cr_assert_eq(fault_live_allocs(), allocs, "a failed start freed what it allocated");
	cr_assert_eq(thread_count(), before);
	cr_assert_eq(scoped_live_count(), 0);
	cr_assert_eq(atomic_load(&c.stops), 0, "on_stop ran for a worker that never started");
}

Test(worker, ticks_about_every_period)
{
	/* Loose bounds: a shared machine, maybe valgrind. Timing claims live in tests/bench. */
	struct counter c = { 0 };
	long long t0 = now_ms();
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "ten-ms", .period_ms = 10, .tick = tick, .ctx = &c });
	cr_assert_not_null(w);
	cr_assert(wait_until(now_ms() - t0 >= 300, 1000));
	scoped_worker_close(w);
	long long window = now_ms() - t0; /* 300 ms, or more on a busy machine */
	int n = atomic_load(&c.ticks);
	cr_assert_geq(n, getenv("VALGRIND") ? 3 : 10, "%d ticks in %lld ms", n, window);
	cr_assert_leq(n, window / 10 + 1, "%d ticks in %lld ms: faster than the period", n, window);
	cr_assert_geq(atomic_load(&c.first_tick_ms) - t0, 9, "the first tick is one period in");
}

Test(worker, period_zero_ticks_only_when_woken)
{
	struct counter c = { 0 };
	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
		.name = "on-demand", .period_ms = 0, .tick = tick, .ctx = &c });
	cr_assert_not_null(w);
	struct timespec pause = { 0, 30 * 1000000 };
	nanosleep(&pause, NULL); /* nothing to await: proving an absence */
	cr_assert_eq(atomic_load(&c.ticks), 0);
	scoped_worker_wake(w);
	cr_assert(wait_until(atomic_load(&c.ticks) == 1, 5000));
	scoped_worker_wake(w);
	cr_assert(wait_until(atomic_load(&c.ticks) == 2, 5000));
}

Test(worker, wake_ticks_well_before_the_period)
{
	struct counter c = { 0 };
	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
		.name = "hourly", .period_ms = HOUR_MS, .tick = tick, .ctx = &c });
	cr_assert_not_null(w);
	long long t0 = now_ms();
	scoped_worker_wake(w);
	cr_assert(wait_until(atomic_load(&c.ticks) == 1, 5000));
	cr_assert_lt(now_ms() - t0, 1000);
}

Test(worker, a_wake_before_stop_still_ticks_before_on_stop)
{
	/* wake returned on a running worker: its tick is owed, even when close comes at once. */
	for (int round = 0; round < 20; round++) {
		struct counter c = { 0 };
		scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
			.name = "woken", .period_ms = 0, .tick = tick, .on_stop = on_stop, .ctx = &c });
		cr_assert_not_null(w);
		scoped_worker_wake(w);
		scoped_worker_close(w);
		cr_assert_eq(atomic_load(&c.ticks), 1, "round %d: the wake was lost", round);
		cr_assert_eq(atomic_load(&c.ticks_after_stop), 0);
		cr_assert_eq(atomic_load(&c.stops), 1);
	}
}

Test(worker, on_stop_runs_once_on_the_worker_thread_after_the_last_tick)
{
	struct counter c = { 0 };
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "flusher", .period_ms = 1, .tick = tick, .on_stop = on_stop, .ctx = &c });
	cr_assert_not_null(w);
	cr_assert(wait_until(atomic_load(&c.ticks) >= 3, 5000));
	scoped_worker_stop(w);
	cr_assert_eq(atomic_load(&c.stops), 1, "stop returned before on_stop ran");
	int ticks = atomic_load(&c.ticks);
	scoped_worker_stop(w); /* idempotent */
	scoped_worker_wake(w); /* a no-op on a stopped worker */
	scoped_worker_stop(w);
	scoped_worker_close(w);
	cr_assert_eq(atomic_load(&c.stops), 1);
	cr_assert_eq(atomic_load(&c.ticks), ticks);
	cr_assert_eq(atomic_load(&c.ticks_after_stop), 0);
	cr_assert(pthread_equal(c.tick_thread, c.stop_thread));
	cr_assert_not(pthread_equal(c.stop_thread, pthread_self()));
	cr_assert_str_eq(c.name, "flusher");
}

Test(worker, on_stop_runs_even_when_stopped_before_any_tick)
{
	struct counter c = { 0 };
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "quick", .period_ms = HOUR_MS, .tick = tick, .on_stop = on_stop, .ctx = &c });
	cr_assert_not_null(w);
	scoped_worker_close(w);
	cr_assert_eq(atomic_load(&c.stops), 1);
	cr_assert_eq(atomic_load(&c.ticks), 0);
}

Test(worker, closing_an_hourly_worker_is_prompt)
{
	struct counter c = { 0 };
	int before = thread_count();
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "hourly", .period_ms = HOUR_MS, .tick = tick, .on_stop = on_stop, .ctx = &c });
	cr_assert_not_null(w);
	cr_assert(wait_until(thread_count() == before + 1, 5000));
	long long t0 = now_ms();
	scoped_worker_close(w);
	cr_assert_lt(now_ms() - t0, 1000, "close waited for the period");
	assert_threads_back_to(before);
	cr_assert_eq(atomic_load(&c.stops), 1);
}

Test(worker, null_is_fine_everywhere)
{
	scoped_worker_wake(NULL);
	scoped_worker_stop(NULL);
	scoped_worker_close(NULL);
}

/* --- from inside ------------------------------------------------------------------------ */

static void from_inside(int action)
{
	struct counter c = { .self_action = action };
	int before = thread_count();
	unsigned long joins = fault_joins();
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "self", .period_ms = 0, .tick = tick, .on_stop = on_stop, .ctx = &c });
	cr_assert_not_null(w);
	c.self = w;
	if (action == 3)
		scoped_worker_stop(w); /* on_stop closes it: this stop joins, then it is freed */
	else
		scoped_worker_wake(w); /* the tick stops or closes it */
	cr_assert(wait_until(atomic_load(&c.self_done) == 1, 5000));
	cr_assert(wait_until(atomic_load(&c.stops) == 1, 5000));
	cr_assert(wait_until(thread_count() == before && scoped_live_count() == 0, 5000));
	if (action == 1) {
		scoped_worker_stop(w); /* the thread detached itself: nothing to join */
		scoped_worker_close(w);
		cr_assert_eq(fault_joins(), joins);
	}
	cr_assert_eq(atomic_load(&c.stops), 1);
}

Test(worker, stop_from_tick_returns_and_thread_reclaims_itself) { from_inside(1); }
Test(worker, close_from_tick_frees_after_the_thread_is_done) { from_inside(2); }
Test(worker, close_from_on_stop_while_someone_joins) { from_inside(3); }

struct crowd {
	scoped_worker *w;
	struct counter *c;
	pthread_barrier_t go;
	atomic_int ok;
};

static void *stopper(void *arg)
{
	struct crowd *cr = arg;
	pthread_barrier_wait(&cr->go);
	scoped_worker_stop(cr->w);
	if (atomic_load(&cr->c->stops) == 1)
		atomic_fetch_add(&cr->ok, 1);
	return NULL;
}

Test(worker, stop_from_many_threads_at_once)
{
	for (int round = 0; round < 20; round++) {
		struct counter c = { 0 };
		struct crowd cr = { .c = &c };
		cr.w = scoped_worker_start(&(scoped_worker_config){
			.name = "crowd", .period_ms = 1, .tick = tick, .on_stop = on_stop, .ctx = &c });
		cr_assert_not_null(cr.w);
		unsigned long joins = fault_joins();
		pthread_barrier_init(&cr.go, NULL, 6);
		pthread_t th[6];
		for (int i = 0; i < 6; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, stopper, &cr), 0);
		for (int i = 0; i < 6; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&cr.go);
		cr_assert_eq(atomic_load(&cr.ok), 6, "a stopper returned before the thread ended");
		/* this test's 6 joins of its stoppers, and the library's one */
		cr_assert_eq(fault_joins(), joins + 6 + 1);
		scoped_worker_close(cr.w);
		cr_assert_eq(atomic_load(&c.stops), 1);
	}
}

/* --- moving a worker out: the wrapped return ------------------------------------------- */

static scoped_worker *start_janitor(struct counter *c, int *inside)
{
	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
		.name = "janitor", .period_ms = HOUR_MS, .tick = tick, .on_stop = on_stop, .ctx = c });
	if (!w)
		return NULL;
	*inside = thread_count();
	scoped_return(w); /* scope exit now closes nothing: the caller owns it */
}

Test(worker, scoped_take_moves_it_out_and_the_callers_scope_stops_it)
{
	struct counter c = { 0 };
	int before = thread_count(), inside = 0;
	{
		scoped(scoped_worker) w = start_janitor(&c, &inside);
		cr_assert_not_null(w);
		cr_assert_eq(inside, before + 1);
		cr_assert_eq(thread_count(), before + 1, "the move stopped the worker");
		cr_assert_eq(atomic_load(&c.stops), 0);
		scoped_worker_wake(w);
		cr_assert(wait_until(atomic_load(&c.ticks) == 1, 5000));
	}
	cr_assert_eq(atomic_load(&c.stops), 1);
	assert_threads_back_to(before);
}

Test(worker, plain_function_form_works_too)
{
	struct counter c = { 0 };
	scoped_worker_config cfg = { .name = NULL, .tick = tick, .ctx = &c };
	scoped(scoped_worker) w = (scoped_worker_start)(&cfg);
	cr_assert_not_null(w);
	cfg.tick = NULL; /* the config was copied */
	scoped_worker_wake(w);
	cr_assert(wait_until(atomic_load(&c.ticks) == 1, 5000));
}
