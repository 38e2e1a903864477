/* tests/test_fault.c - every allocation, thread, condition variable and socket that a
 * constructor makes is made to fail in turn (tests/fault.h): the constructor returns NULL with
 * the errno of that failure and leaves no thread, no allocation and no descriptor behind.
 * Calls that allocate after construction fail cleanly too, and the handle stays usable. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <scoped.h>
#include <scoped/criterion.h>

#include "cache/cache.h"
#include "fault.h"
#include "helpers.h"
#include "process/process.h"
#include "statsd/statsd.h"
#include "udp.h"

static void disarm(void)
{
	fault_disarm();
	scoped_cr_no_leaks();
}

TestSuite(fault, .fini = disarm);

/* --- what each constructor is ---------------------------------------------------------- */

static void wait_for_stop(scoped_stop *stop, void *arg)
{
	(void)arg;
	while (!scoped_stop_sleep(stop, 3600u * 1000u))
		;
}

static void nop(void *ctx) { (void)ctx; }

static void *own_dup(const void *v)
{
	int *p = malloc(sizeof *p);
	if (p)
		*p = *(const int *)v;
	return p;
}

static void own_free(void *v) { free(v); }

struct ctor {
	const char *what;
	void *(*open)(void);
	void (*close)(void *);
};

static void *open_thread(void) { return scoped_thread_start("fault", wait_for_stop, NULL); }
static void close_thread(void *h) { scoped_thread_close(h); }

static void *open_worker(void)
{
	return scoped_worker_start(&(scoped_worker_config){ .name = "fault", .period_ms = 1000,
							    .tick = nop, .on_stop = nop });
}
static void close_worker(void *h) { scoped_worker_close(h); }

static void *open_statsd(void)
{
	return statsd_open(&(statsd_config){ .addr = "127.0.0.1:8125", .prefix = "app" });
}
static void *open_statsd_unthreaded(void)
{
	return statsd_open(&(statsd_config){ .addr = "127.0.0.1:8125", .flush_ms = -1 });
}
static void close_statsd(void *h) { statsd_close(h); }

static void *open_cache(void)
{
	return cache_new(&(cache_config){ .default_ttl_ms = 1000, .cleanup_ms = 1000 });
}
static void *open_cache_owning(void)
{
	return cache_new(&(cache_config){ .cleanup_ms = 50, .value_free = own_free,
					  .value_dup = own_dup });
}
static void *open_cache_unthreaded(void) { return cache_new(&(cache_config){ 0 }); }
static void close_cache(void *h) { cache_close(h); }

static const struct ctor ctors[] = {
	{ "scoped_thread_start", open_thread, close_thread },
	{ "scoped_worker_start", open_worker, close_worker },
	{ "statsd_open (flusher)", open_statsd, close_statsd },
	{ "statsd_open (flush_ms < 0)", open_statsd_unthreaded, close_statsd },
	{ "cache_new (janitor)", open_cache, close_cache },
	{ "cache_new (owning values)", open_cache_owning, close_cache },
	{ "cache_new (no janitor)", open_cache_unthreaded, close_cache },
};

static const char *kind_name[FAULT_KINDS] = { "allocation", "pthread_create",
					      "pthread_cond_init", "socket" };
static const int kind_errno[FAULT_KINDS] = { ENOMEM, EAGAIN, ENOMEM, EMFILE };

/* --- the sweep ------------------------------------------------------------------------- */

struct tally {
	unsigned long faults;
};

/* Fails the n-th call of kind k, for every n the constructor makes; checks the result. */
static void sweep(const struct ctor *c, enum fault_kind k, int err, struct tally *tally)
{
	int threads = thread_count(), fds = fd_count();
	long allocs = fault_live_allocs();

	fault_arm(k, 0, 0); /* a dry run counts the calls */
	void *h = c->open();
	unsigned long calls = fault_calls(k);
	fault_disarm();
	cr_assert_not_null(h, "%s: %s", c->what, strerror(errno));
	c->close(h);
	cr_assert(wait_until(thread_count() == threads, 2000), "%s: dry run left a thread", c->what);
	cr_assert_eq(fault_live_allocs(), allocs, "%s: dry run leaked", c->what);

	for (unsigned long n = 1; n <= calls; n++) {
		errno = 0;
		fault_arm(k, n, err);
		h = c->open();
		int e = errno;
		int fired = fault_fired(k);
		fault_disarm();
		if (h)
			c->close(h);
		cr_assert(fired, "%s: %s call %lu of %lu was not made", c->what, kind_name[k], n,
			  calls);
		cr_assert_null(h, "%s succeeded although %s call %lu of %lu failed", c->what,
			       kind_name[k], n, calls);
		cr_assert_eq(e, err ? err : kind_errno[k], "%s, %s call %lu failed: errno %s",
			     c->what, kind_name[k], n, strerror(e));
		cr_assert(wait_until(thread_count() == threads, 2000),
			  "%s, %s call %lu failed: %d threads left (was %d)", c->what, kind_name[k],
			  n, thread_count(), threads);
		cr_assert_eq(fd_count(), fds, "%s, %s call %lu failed: %d fds left (was %d)",
			     c->what, kind_name[k], n, fd_count(), fds);
		cr_assert_eq(fault_live_allocs(), allocs,
			     "%s, %s call %lu failed: %ld allocations left", c->what, kind_name[k],
			     n, fault_live_allocs() - allocs);
		cr_assert_eq(scoped_live_count(), 0);
		tally->faults++;
	}
}

Test(fault, every_constructor_fails_cleanly_at_every_call)
{
	struct tally tally = { 0 };
	for (size_t i = 0; i < sizeof ctors / sizeof ctors[0]; i++)
		for (int k = 0; k < FAULT_KINDS; k++)
			sweep(&ctors[i], (enum fault_kind)k, 0, &tally);
	cr_log_info("constructors: %lu faults injected", tally.faults);
	cr_assert_gt(tally.faults, 250); /* cache_new alone allocates 259 times */
}

Test(fault, pthread_create_error_is_passed_on)
{
	struct tally tally = { 0 };
	sweep(&ctors[0], FAULT_THREAD, EPERM, &tally);
	sweep(&ctors[1], FAULT_THREAD, EPERM, &tally);
	sweep(&ctors[2], FAULT_THREAD, EPERM, &tally);
	sweep(&ctors[4], FAULT_SOCKET, ENFILE, &tally);
	sweep(&ctors[2], FAULT_SOCKET, EACCES, &tally);
	cr_assert_eq(tally.faults, 4);
}

/* The counts the sweep relies on: if a constructor stops making one of these calls, the
 * sweep above would pass without testing anything. */
Test(fault, constructors_make_the_calls_the_sweep_fails)
{
	static const struct {
		size_t ctor;
		enum fault_kind k;
		unsigned long min;
	} expect[] = {
		{ 0, FAULT_ALLOC, 1 },	{ 0, FAULT_THREAD, 1 }, { 0, FAULT_COND, 1 },
		{ 1, FAULT_ALLOC, 1 },	{ 1, FAULT_THREAD, 1 }, { 1, FAULT_COND, 1 },
		{ 2, FAULT_ALLOC, 3 },	{ 2, FAULT_THREAD, 1 }, { 2, FAULT_COND, 2 },
		{ 2, FAULT_SOCKET, 1 }, { 3, FAULT_THREAD, 0 }, { 4, FAULT_ALLOC, 259 },
		{ 4, FAULT_THREAD, 1 }, { 6, FAULT_THREAD, 0 },
	};
	for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
		const struct ctor *c = &ctors[expect[i].ctor];
		fault_arm(expect[i].k, 0, 0);
		void *h = c->open();
		unsigned long calls = fault_calls(expect[i].k);
		fault_disarm();
		cr_assert_not_null(h);
		c->close(h);
		if (expect[i].min == 0)
			cr_assert_eq(calls, 0, "%s: %lu %s calls", c->what, calls,
				     kind_name[expect[i].k]);
		else
			cr_assert_geq(calls, expect[i].min, "%s: %lu %s calls", c->what, calls,
				      kind_name[expect[i].k]);
	}
}

/* The article's Process, scoped: whatever fails inside it, it returns (0, or -1 with that
 * failure's errno) and leaves nothing behind. */
Test(fault, process_scoped_leaves_nothing_whatever_fails)
{
	unsigned long faults = 0;
	for (int k = 0; k < FAULT_KINDS; k++) {
		int threads = thread_count(), fds = fd_count();
		long allocs = fault_live_allocs();
		fault_arm((enum fault_kind)k, 0, 0);
		cr_assert_eq(process_scoped("127.0.0.1:8125", 3), 0);
		unsigned long calls = fault_calls((enum fault_kind)k);
		fault_disarm();
		for (unsigned long n = 1; n <= calls; n++) {
			errno = 0;
			fault_arm((enum fault_kind)k, n, 0);
			int rc = process_scoped("127.0.0.1:8125", 3);
			int e = errno;
			fault_disarm();
			cr_assert(rc == 0 || (rc == -1 && e == kind_errno[k]),
				  "%s call %lu failed: rc %d, errno %s", kind_name[k], n, rc,
				  strerror(e));
			cr_assert(wait_until(thread_count() == threads, 2000));
			cr_assert_eq(fd_count(), fds);
			cr_assert_eq(fault_live_allocs(), allocs, "%s call %lu failed: %ld left",
				     kind_name[k], n, fault_live_allocs() - allocs);
			faults++;
		}
	}
	cr_assert_geq(faults, 7);
	cr_log_info("process_scoped: %lu faults injected", faults);
}

/* --- the cache after construction ------------------------------------------------------ */

static int *boxed(int v)
{
	int *p = malloc(sizeof *p);
	cr_assert_not_null(p);
	*p = v;
	return p;
}

Test(fault, cache_set_add_get_under_allocation_failure)
{
	long allocs = fault_live_allocs();
	cache *c = cache_new(&(cache_config){ .cleanup_ms = 5, .value_free = own_free,
					      .value_dup = own_dup });
	cr_assert_not_null(c);
	enum { KEYS = 3000 };
	unsigned long grow_failures = 0;
	char key[32];
	for (int i = 0; i < KEYS; i++) {
		snprintf(key, sizeof key, "key-%d", i);
		int *v = boxed(i);
		/* The node cannot be made: the value stays ours, nothing is stored. */
		fault_arm(FAULT_ALLOC, 1, 0);
		errno = 0;
		int rc = (i & 1) ? cache_add(c, key, v, CACHE_NO_EXPIRATION)
				 : cache_set(c, key, v, CACHE_NO_EXPIRATION);
		int e = errno;
		fault_disarm();
		cr_assert_eq(rc, -1);
		cr_assert_eq(e, ENOMEM);
		cr_assert_not(cache_get(c, key, NULL));
		/* The node is made, growing the table fails: the item is stored all the same. */
		fault_arm(FAULT_ALLOC, 2, 0);
		rc = cache_set(c, key, v, CACHE_NO_EXPIRATION);
		grow_failures += (unsigned long)fault_fired(FAULT_ALLOC);
		fault_disarm();
		cr_assert_eq(rc, 0, "%s: %s", key, strerror(errno));
	}
	cr_assert_gt(grow_failures, 0, "no table growth was failed");
	cr_assert_eq(cache_count(c), KEYS);

	/* value_dup's allocation fails: get says ENOMEM, the item stays. */
	void *out = NULL;
	fault_arm(FAULT_ALLOC, 1, 0);
	errno = 0;
	bool got = cache_get(c, "key-7", &out);
	int e = errno;
	fault_disarm();
	cr_assert_not(got);
	cr_assert_eq(e, ENOMEM);
	cr_assert(cache_get(c, "key-7", &out));
	cr_assert_eq(*(int *)out, 7);
	free(out);

	/* replace and a set over an existing key allocate nothing. */
	int *v8 = boxed(-1), *v9 = boxed(-2);
	fault_arm(FAULT_ALLOC, 0, 0);
	cr_assert_eq(cache_replace(c, "key-8", v8, CACHE_NO_EXPIRATION), 0);
	cr_assert_eq(cache_set(c, "key-9", v9, CACHE_NO_EXPIRATION), 0);
	cr_assert_eq(fault_calls(FAULT_ALLOC), 0);
	fault_disarm();

	cache_close(c);
	cr_assert_eq(fault_live_allocs(), allocs, "%ld allocations left",
		     fault_live_allocs() - allocs);
	cr_log_info("cache: %d failed inserts, %lu failed table growths", KEYS, grow_failures);
}

/* --- statsd after construction --------------------------------------------------------- */

/* Reads every datagram waiting; returns the lines, joined by '\n', in *out (size bytes). */
static size_t drain(int fd, char *out, size_t size)
{
	size_t used = 0;
	char buf[65536];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n < 0)
			break;
		cr_assert_lt(used + (size_t)n + 1, size);
		if (used)
			out[used++] = '\n';
		memcpy(out + used, buf, (size_t)n);
		used += (size_t)n;
	}
	out[used] = '\0';
	return used;
}

Test(fault, statsd_sends_under_allocation_failure)
{
	long allocs = fault_live_allocs();
	char addr[64];
	scoped_fd int rx = udp_listener(addr, sizeof addr);
	statsd *s = statsd_open(&(statsd_config){ .addr = addr, .flush_ms = -1,
						  .flush_bytes = 64 });
	cr_assert_not_null(s);

	/* The first line of a thread needs a packet: that allocation fails, nothing is kept. */
	fault_arm(FAULT_ALLOC, 1, 0);
	errno = 0;
	int rc = statsd_count(s, "lost", 1, 1.0f);
	int e = errno;
	fault_disarm();
	cr_assert_eq(rc, -1);
	cr_assert_eq(e, ENOMEM);

	/* A full packet needs a fresh one: when that fails, the full one is sent in place and the
	 * line is buffered all the same. */
	char want[4096] = "", got[4096];
	size_t wlen = 0;
	unsigned long fired = 0;
	cr_assert_eq(statsd_gauge(s, "m0", 0, 1.0f), 0);
	wlen += (size_t)snprintf(want, sizeof want, "m0:0|g");
	for (int i = 1; i < 40; i++) {
		char name[16];
		snprintf(name, sizeof name, "m%d", i);
		fault_arm(FAULT_ALLOC, 1, 0);
		rc = statsd_gauge(s, name, i, 1.0f);
		fired += (unsigned long)fault_fired(FAULT_ALLOC);
		fault_disarm();
		cr_assert_eq(rc, 0, "%s: %s", name, strerror(errno));
		wlen += (size_t)snprintf(want + wlen, sizeof want - wlen, "\n%s:%d|g", name, i);
	}
	cr_assert_gt(fired, 0);

	/* A line too long for any packet is formatted on the heap past 512 bytes. */
	char longname[700];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	fault_arm(FAULT_ALLOC, 1, 0);
	errno = 0;
	rc = statsd_count(s, longname, 1, 1.0f);
	e = errno;
	fault_disarm();
	cr_assert_eq(rc, -1);
	cr_assert_eq(e, ENOMEM);

	/* The flush needs a fresh packet too: without one it sends the buffered one in place. */
	fault_arm(FAULT_ALLOC, 1, 0);
	rc = statsd_flush(s);
	fired += (unsigned long)fault_fired(FAULT_ALLOC);
	fault_disarm();
	cr_assert_eq(rc, 0, "statsd_flush: %s", strerror(errno));
	drain(rx, got, sizeof got);
	cr_assert_str_eq(got, want);
	cr_assert_eq(statsd_send_errors(s, NULL), 0);
	statsd_close(s);
	cr_assert_eq(fault_live_allocs(), allocs, "%ld allocations left",
		     fault_live_allocs() - allocs);
	cr_log_info("statsd: %lu packet allocations failed, all lines delivered", fired);
}

/* Live allocations are counted in every thread: a worker that allocates and frees on its own
 * thread is balanced once closed. */
static void churn(void *ctx)
{
	atomic_int *n = ctx;
	free(malloc(64));
	atomic_fetch_add(n, 1);
}

Test(fault, allocations_are_counted_across_threads)
{
	long allocs = fault_live_allocs();
	atomic_int ticks = 0;
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){ .name = "churn",
		.period_ms = 1, .tick = churn, .ctx = &ticks });
	cr_assert_not_null(w);
	cr_assert_eq(fault_live_allocs(), allocs + 1);
	cr_assert(wait_until(atomic_load(&ticks) >= 10, 5000));
	scoped_worker_close(w);
	cr_assert_eq(fault_live_allocs(), allocs);
}
