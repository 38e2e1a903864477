/* tests/test_cache_model.c - the cache checked against a model while 4 threads hammer it and
 * the janitor sweeps every millisecond. Run under `make tsan` too: no race may be reported.
 *
 * Each thread owns keys no other thread touches and checks every result on them exactly
 * against its model; expiry is judged with the clock read around each call, and an item whose
 * expiry falls inside that window may be seen either way (once seen absent it stays absent).
 * All threads also share keys, where only what holds under any interleaving is checked: a value
 * read is whole and was stored under that key; each call fails only with its documented errno.
 * The cache owns the values: each is freed exactly once (counted), and none is left at close.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <scoped.h>
#include <scoped/criterion.h>

#include "cache/cache.h"
#include "helpers.h"

TestSuite(cache_model, .fini = scoped_cr_no_leaks);

enum { THREADS = 4, OWN_KEYS = 24, SHARED_KEYS = 8, RUN_MS = 1500 };
#define MAGIC 0x5ca1ab1eu

/* --- values: counted, self-describing -------------------------------------------------- */

struct value {
	uint32_t magic;
	uint32_t writer;
	uint64_t seq;
	char key[24];
};

static atomic_long values_live;	/* made and not yet freed, the cache's and ours */
static atomic_long evictions;

static struct value *value_new(const char *key, uint32_t writer, uint64_t seq)
{
	struct value *v = malloc(sizeof *v);
	if (!v)
		abort();
	v->magic = MAGIC;
	v->writer = writer;
	v->seq = seq;
	snprintf(v->key, sizeof v->key, "%s", key);
	atomic_fetch_add(&values_live, 1);
	return v;
}

static void value_free(void *p)
{
	struct value *v = p;
	if (v->magic != MAGIC)
		abort(); /* freed twice, or never a value */
	v->magic = 0xdeadu;
	free(v);
	atomic_fetch_sub(&values_live, 1);
}

static void *value_dup(const void *p)
{
	const struct value *v = p;
	if (v->magic != MAGIC)
		abort();
	struct value *copy = malloc(sizeof *copy);
	if (copy) {
		*copy = *v;
		atomic_fetch_add(&values_live, 1);
	}
	return copy;
}

static void on_evicted(const char *key, void *value, void *arg)
{
	(void)arg;
	const struct value *v = value;
	if (v->magic != MAGIC || strcmp(v->key, key) != 0)
		abort(); /* evicted under another key, or a dead value */
	atomic_fetch_add(&evictions, 1);
}

/* --- the model of one owned key -------------------------------------------------------- */

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

struct model {
	bool present;		/* stored, and not known to have expired */
	uint64_t seq;
	long long set_start, set_end; /* ns, around the call that stored it */
	long long ttl_ms;	/* < 0: never */
};

enum verdict { LIVE, GONE, EITHER };

static long long slack_ns; /* the coarse clock's resolution, twice, plus a millisecond */

/* Whether a call that ran between start and end (ns) must see the item live, must not, or may
 * do either: the cache never expires an item before ttl_ms, and then within two coarse ticks. */
static enum verdict judge(const struct model *m, long long start, long long end)
{
	if (!m->present)
		return GONE;
	if (m->ttl_ms < 0)
		return LIVE;
	long long ttl_ns = m->ttl_ms * 1000000LL;
	if (end + 1000000LL < m->set_start + ttl_ns)
		return LIVE;
	if (start > m->set_end + ttl_ns + slack_ns)
		return GONE;
	return EITHER;
}

/* -1: CACHE_NO_EXPIRATION; 0: CACHE_DEFAULT_TTL, the cache's 5 ms (DEFAULT_MS) */
enum { DEFAULT_MS = 5, NTTLS = 5 };
static const long long ttls[NTTLS] = { -1, 0, 3, 10, 40 };
static long long effective(long long ttl) { return ttl == 0 ? DEFAULT_MS : ttl; }

struct worker_state {
	cache *c;
	uint32_t id;
	uint64_t rng;
	uint64_t seq;
	struct model own[OWN_KEYS];
	char failure[256];	/* the first failed check, for the test thread to report */
	long checks, either, ops;
	long long deadline_ms;
};

static uint64_t rnd(struct worker_state *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng;
}

#define FAIL_IF(w, cond, ...)                                                               \
	do {                                                                                \
		(w)->checks++;                                                              \
		if ((cond) && !(w)->failure[0]) {                                           \
			snprintf((w)->failure, sizeof (w)->failure, __VA_ARGS__);           \
			return;                                                             \
		}                                                                           \
	} while (0)

static void own_op(struct worker_state *w, int k)
{
	char key[24];
	snprintf(key, sizeof key, "t%u-k%d", w->id, k);
	struct model *m = &w->own[k];
	int op = (int)(rnd(w) % 6);
	long long ttl = ttls[rnd(w) % NTTLS];
	long long start = now_ns();
	switch (op) {
	case 0: /* set */
	case 1: { /* add */
		struct value *v = value_new(key, w->id, ++w->seq);
		long long pass = ttl < 0 ? CACHE_NO_EXPIRATION : ttl;
		errno = 0;
		int rc = op == 0 ? cache_set(w->c, key, v, pass) : cache_add(w->c, key, v, pass);
		int e = errno;
		long long end = now_ns();
		enum verdict was = judge(m, start, end);
		if (op == 0) {
			FAIL_IF(w, rc != 0, "set %s: %s", key, strerror(e));
		} else {
			FAIL_IF(w, was == LIVE && !(rc == -1 && e == EEXIST),
				"add %s over a live item: rc %d errno %s", key, rc, strerror(e));
			FAIL_IF(w, was == GONE && rc != 0, "add %s over nothing: %s", key,
				strerror(e));
			FAIL_IF(w, rc == -1 && e != EEXIST, "add %s: errno %s", key, strerror(e));
		}
		if (rc == 0)
			*m = (struct model){ true, w->seq, start, end, effective(ttl) };
		else
			value_free(v);
		break;
	}
	case 2: { /* replace */
		struct value *v = value_new(key, w->id, ++w->seq);
		errno = 0;
		int rc = cache_replace(w->c, key, v, ttl < 0 ? CACHE_NO_EXPIRATION : ttl);
		int e = errno;
		long long end = now_ns();
		enum verdict was = judge(m, start, end);
		FAIL_IF(w, was == LIVE && rc != 0, "replace %s (live): %s", key, strerror(e));
		FAIL_IF(w, was == GONE && !(rc == -1 && e == ENOENT),
			"replace %s (absent): rc %d errno %s", key, rc, strerror(e));
		FAIL_IF(w, rc == -1 && e != ENOENT, "replace %s: errno %s", key, strerror(e));
		if (rc == 0) {
			*m = (struct model){ true, w->seq, start, end, effective(ttl) };
		} else {
			value_free(v);
			m->present = false;
		}
		break;
	}
	case 3:
	case 4: { /* get */
		void *out = NULL;
		errno = 0;
		bool got = cache_get(w->c, key, &out);
		int e = errno;
		long long end = now_ns();
		enum verdict was = judge(m, start, end);
		w->either += was == EITHER;
		FAIL_IF(w, was == LIVE && !got, "get %s (live, ttl %lld): %s", key, m->ttl_ms,
			strerror(e));
		FAIL_IF(w, was == GONE && got, "get %s found an item that is gone", key);
		FAIL_IF(w, !got && e != ENOENT, "get %s: errno %s", key, strerror(e));
		if (got) {
			struct value *v = out;
			FAIL_IF(w, v->magic != MAGIC || strcmp(v->key, key) != 0 ||
					   v->seq != m->seq,
				"get %s: value %s #%llu, model #%llu", key, v->key,
				(unsigned long long)v->seq, (unsigned long long)m->seq);
			value_free(v);
		} else {
			m->present = false; /* expired: stays so */
		}
		break;
	}
	default: { /* delete */
		errno = 0;
		bool was_live = cache_delete(w->c, key);
		int e = errno;
		long long end = now_ns();
		enum verdict was = judge(m, start, end);
		FAIL_IF(w, was == LIVE && !was_live, "delete %s (live): %s", key, strerror(e));
		FAIL_IF(w, was == GONE && was_live, "delete %s found an item that is gone", key);
		FAIL_IF(w, !was_live && e != ENOENT, "delete %s: errno %s", key, strerror(e));
		m->present = false;
		break;
	}
	}
}

static void shared_op(struct worker_state *w, int k)
{
	char key[24];
	snprintf(key, sizeof key, "shared-%d", k);
	int op = (int)(rnd(w) % 7);
	long long ttl = ttls[rnd(w) % NTTLS];
	errno = 0;
	switch (op) {
	case 0:
	case 1:
	case 2: {
		struct value *v = value_new(key, w->id, ++w->seq);
		long long pass = ttl < 0 ? CACHE_NO_EXPIRATION : ttl;
		int rc = op == 0   ? cache_set(w->c, key, v, pass)
			 : op == 1 ? cache_add(w->c, key, v, pass)
				   : cache_replace(w->c, key, v, pass);
		int e = errno;
		FAIL_IF(w, rc == -1 && !((op == 1 && e == EEXIST) || (op == 2 && e == ENOENT)),
			"op %d on %s: %s", op, key, strerror(e));
		FAIL_IF(w, op == 0 && rc != 0, "set %s: %s", key, strerror(e));
		if (rc != 0)
			value_free(v);
		break;
	}
	case 3:
	case 4: {
		void *out = NULL;
		bool got = cache_get(w->c, key, &out);
		int e = errno;
		FAIL_IF(w, !got && e != ENOENT, "get %s: %s", key, strerror(e));
		if (got) {
			struct value *v = out;
			FAIL_IF(w, v->magic != MAGIC || strcmp(v->key, key) != 0 ||
					   v->writer >= THREADS,
				"get %s: a torn or foreign value (%s, writer %u)", key, v->key,
				v->writer);
			value_free(v);
		}
		break;
	}
	case 5: {
		bool live = cache_delete(w->c, key);
		int e = errno;
		FAIL_IF(w, !live && e != ENOENT, "delete %s: %s", key, strerror(e));
		break;
	}
	default:
		if (rnd(w) % 64 == 0)
			cache_delete_expired(w->c);
		else
			(void)cache_count(w->c);
		break;
	}
}

static void *hammer(void *arg)
{
	struct worker_state *w = arg;
	/* Bounded by time, not count, so that items live through their TTLs; a short pause now
	 * and then lets expiries fall between calls. */
	for (long i = 0; !w->failure[0]; i++) {
		if (i % 256 == 0) {
			if (now_ms() >= w->deadline_ms)
				break;
			nanosleep(&(struct timespec){ 0, 200000 }, NULL);
		}
		w->ops++;
		uint64_t r = rnd(w);
		if (r % 4 == 0)
			shared_op(w, (int)((r >> 8) % SHARED_KEYS));
		else
			own_op(w, (int)((r >> 8) % OWN_KEYS));
	}
	return NULL;
}

Test(cache_model, four_threads_and_the_janitor_against_the_model)
{
	struct timespec res;
	clock_getres(CLOCK_MONOTONIC_COARSE, &res);
	slack_ns = 2 * ((long long)res.tv_sec * 1000000000LL + res.tv_nsec) + 2000000LL;
	atomic_store(&values_live, 0);
	atomic_store(&evictions, 0);

	cache *c = cache_new(&(cache_config){ .default_ttl_ms = DEFAULT_MS, .cleanup_ms = 1,
					      .value_free = value_free, .value_dup = value_dup,
					      .on_evicted = on_evicted });
	cr_assert_not_null(c);
	static struct worker_state ws[THREADS];
	pthread_t th[THREADS];
	long long t0 = now_ms();
	for (uint32_t i = 0; i < THREADS; i++) {
		ws[i] = (struct worker_state){ .c = c, .id = i, .deadline_ms = t0 + RUN_MS,
					       .rng = 0x9E3779B97F4A7C15ULL * (i + 1) ^ (uint64_t)t0 };
		cr_assert_eq(pthread_create(&th[i], NULL, hammer, &ws[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	long checks = 0, either = 0, ops = 0;
	for (int i = 0; i < THREADS; i++) {
		cr_expect_eq(ws[i].failure[0], '\0', "thread %d: %s", i, ws[i].failure);
		checks += ws[i].checks;
		either += ws[i].either;
		ops += ws[i].ops;
	}
	long evicted = atomic_load(&evictions);
	cache_close(c);
	cr_assert_eq(atomic_load(&values_live), 0, "%ld values leaked or freed twice",
		     atomic_load(&values_live));
	cr_log_info("%ld ops on %d threads in %lld ms: %ld checks, %ld reads at an expiry edge, "
		    "%ld evictions", ops, THREADS, now_ms() - t0, checks, either, evicted);
}

/* The janitor alone must remove what expires, with on_evicted, while nobody reads. */
Test(cache_model, janitor_sweeps_everything_that_expires)
{
	atomic_store(&values_live, 0);
	atomic_store(&evictions, 0);
	cache *c = cache_new(&(cache_config){ .cleanup_ms = 1, .value_free = value_free,
					      .value_dup = value_dup, .on_evicted = on_evicted });
	cr_assert_not_null(c);
	char key[24];
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof key, "e%d", i);
		cr_assert_eq(cache_set(c, key, value_new(key, 0, (uint64_t)i), 1 + i % 5), 0);
	}
	cr_assert_eq(cache_set(c, "stays", value_new("stays", 0, 0), CACHE_NO_EXPIRATION), 0);
	cr_assert(wait_until(atomic_load(&evictions) == 2000, 5000), "%ld of 2000 evicted",
		  atomic_load(&evictions));
	cr_assert_eq(cache_count(c), 1);
	cr_assert(cache_get(c, "stays", NULL));
	cache_close(c);
	cr_assert_eq(atomic_load(&values_live), 0);
}
