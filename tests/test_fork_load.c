/* tests/test_fork_load.c - fork() while workers tick: the child closes every inherited handle
 * without hanging, and the parent's workers keep ticking. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <scoped.h>
#include <scoped/criterion.h>

#include "cache/cache.h"
#include "child.h"
#include "helpers.h"
#include "udp.h"
#include "statsd/statsd.h"

TestSuite(fork_load, .fini = scoped_cr_no_leaks);

enum { WORKERS = 6, FORKS = 30 };

struct counter {
	atomic_int ticks;
	atomic_int stops;
};

static void tick(void *ctx) { atomic_fetch_add(&((struct counter *)ctx)->ticks, 1); }
static void on_stop(void *ctx) { atomic_fetch_add(&((struct counter *)ctx)->stops, 1); }

Test(fork_load, fork_while_workers_tick)
{
	struct counter c[WORKERS] = { 0 };
	scoped_worker *w[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		w[i] = scoped_worker_start(&(scoped_worker_config){
			.name = "ticking", .period_ms = 1 + (unsigned)i % 3, .tick = tick,
			.on_stop = on_stop, .ctx = &c[i] });
		cr_assert_not_null(w[i]);
	}
	/* Every worker is past its start before the first fork: a thread still starting may be
	 * inside the allocator, and ASan's (clang 14) is not fork-safe: the child's first
	 * allocation would then wait forever for a lock held by a thread the child lacks. */
	for (int i = 0; i < WORKERS; i++)
		cr_assert(wait_until(atomic_load(&c[i].ticks) > 0, 5000));
	long long worst_ms = 0;
	for (int f = 0; f < FORKS; f++) {
		int before[WORKERS];
		for (int i = 0; i < WORKERS; i++)
			before[i] = atomic_load(&c[i].ticks);
		long long t0 = now_ms();
		struct child ch = child_start();
		if (ch.pid == 0) {
			int code = scoped_live_count() != 0;
			int stops[WORKERS];
			for (int i = 0; i < WORKERS; i++)
				stops[i] = atomic_load(&c[i].stops);
			/* Half are stopped first, half closed directly, in a shuffled order. */
			for (int i = 0; i < WORKERS; i++) {
				int k = (i * 5 + f) % WORKERS;
				scoped_worker_wake(w[k]);
				if (k & 1)
					scoped_worker_stop(w[k]);
				scoped_worker_close(w[k]);
			}
			for (int i = 0; i < WORKERS; i++)
				if (atomic_load(&c[i].stops) != stops[i])
					code |= 2; /* on_stop belongs to the parent's threads */
			/* The child can run workers of its own. */
			struct counter mine = { 0 };
			scoped_worker *own = scoped_worker_start(&(scoped_worker_config){
				.name = "child", .period_ms = 1, .tick = tick, .on_stop = on_stop,
				.ctx = &mine });
			if (!own || !wait_until(atomic_load(&mine.ticks) >= 2, 5000))
				code |= 4;
			scoped_worker_close(own);
			if (atomic_load(&mine.stops) != 1 || scoped_live_count() != 0)
				code |= 8;
			child_done(ch, code);
		}
		int status = child_wait(ch, CHILD_MS);
		cr_assert_eq(status, 0, "fork %d: child %s (status %d)", f,
			     status == -1 ? "hung" : "failed", status);
		if (now_ms() - t0 > worst_ms)
			worst_ms = now_ms() - t0;
		/* Every parent worker is still ticking. */
		for (int i = 0; i < WORKERS; i++)
			cr_assert(wait_until(atomic_load(&c[i].ticks) > before[i] + 1, 5000),
				  "fork %d: worker %d stopped ticking", f, i);
	}
	cr_assert_eq(scoped_live_count(), WORKERS);
	for (int i = 0; i < WORKERS; i++) {
		scoped_worker_close(w[i]);
		cr_assert_eq(atomic_load(&c[i].stops), 1);
	}
	cr_log_info("%d forks under %d ticking workers; slowest child %lld ms", FORKS, WORKERS,
		    worst_ms);
}

/* The samples' handles: a statsd client flushing every millisecond while another thread sends,
 * and a cache swept every millisecond while another thread writes. */
struct load {
	statsd *st;
	cache *ca;
	atomic_bool done;
	atomic_long ops;
};

static void *busy(void *arg)
{
	struct load *l = arg;
	char key[16];
	for (long i = 0; !atomic_load(&l->done); i++) {
		statsd_count(l->st, "load", 1, 1.0f);
		snprintf(key, sizeof key, "k%ld", i % 64);
		cache_set(l->ca, key, (void *)(i + 1), 1 + i % 3);
		cache_get(l->ca, key, NULL);
		atomic_fetch_add(&l->ops, 1);
	}
	return NULL;
}

Test(fork_load, child_closes_busy_statsd_and_cache)
{
	char addr[64];
	scoped_fd int rx = udp_listener(addr, sizeof addr);
	static struct load l; /* static: the sender must not outlive a failed test's stack */
	atomic_store(&l.done, false);
	l.st = statsd_open(&(statsd_config){ .addr = addr, .flush_ms = 1, .flush_bytes = 128 });
	l.ca = cache_new(&(cache_config){ .default_ttl_ms = 2, .cleanup_ms = 1 });
	cr_assert(l.st && l.ca);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, busy, &l), 0);
	for (int f = 0; f < FORKS; f++) {
		long ops = atomic_load(&l.ops);
		struct child ch = child_start();
		if (ch.pid == 0) {
			statsd_close(l.st);
			cache_close(l.ca);
			child_done(ch, scoped_live_count() != 0);
		}
		int status = child_wait(ch, CHILD_MS);
		cr_assert_eq(status, 0, "fork %d: child %s (status %d)", f,
			     status == -1 ? "hung closing statsd/cache" : "failed", status);
		cr_assert(wait_until(atomic_load(&l.ops) > ops + 10, 5000),
			  "fork %d: the parent's sender stopped", f);
	}
	atomic_store(&l.done, true);
	pthread_join(th, NULL);
	cr_assert_eq(statsd_stop(l.st), 0);
	statsd_close(l.st);
	cache_close(l.ca);
}
