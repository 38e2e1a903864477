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
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <scoped.h>

#include "cache/cache.h"
#include "helpers.h"

/* Built as a Criterion suite (`make tsan` runs it against tests/shim), or with
 * -DCACHE_MODEL_MAIN as a plain program, which `make race` (tests/extra.mk) runs under TSan with
 * no test framework at all. */
#ifdef CACHE_MODEL_MAIN
static int failures;
#  define REQUIRE(cond, ...)                                                                \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
			fprintf(stderr, __VA_ARGS__);                                       \
			fprintf(stderr, "\n");                                              \
			failures++;                                                         \
			return;                                                             \
		}                                                                           \
	} while (0)
#  define LOG(...) (printf(__VA_ARGS__), printf("\n"))
#else
#  include <criterion/criterion.h>
#  include <scoped/criterion.h>
#  define REQUIRE(cond, ...) cr_assert(cond, __VA_ARGS__)
#  define LOG(...) cr_log_info(__VA_ARGS__)
TestSuite(cache_model, .fini = scoped_cr_no_leaks);
#endif

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

/* The cache sets expiries from the precise clock (rounded up to the ms) and reads the coarse
 * one, which never runs ahead of it: an item is never seen expired before its ttl_ms, so the
 * model requires it live whenever the call ended before set_start + ttl (early_ns = 0). The
 * coarse clock can lag by several ticks on a loaded VM, so an item may be seen live a little
 * after its ttl: it must be gone when the call began late_ns after it. */
static long long early_ns, late_ns;

/* Whether a call that ran between start and end (ns) must see the item live, must not, or may
 * do either. */
static enum verdict judge(const struct model *m, long long start, long long end)
{
	if (!m->present)
		return GONE;
	if (m->ttl_ms < 0)
		return LIVE;
	long long ttl_ns = m->ttl_ms * 1000000LL;
	if (end + early_ns < m->set_start + ttl_ns)
		return LIVE;
	if (start > m->set_end + ttl_ns + late_ns)
		return GONE;
	return EITHER;
}

/* -1: CACHE_NO_EXPIRATION; 0: CACHE_DEFAULT_TTL, the cache's 5 ms (DEFAULT_MS) */
enum { DEFAULT_MS = 5, NTTLS = 6 };
static const long long ttls[NTTLS] = { -1, 0, 3, 10, 40, 100 };
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

static void four_threads_and_the_janitor_against_the_model(void)
{
	struct timespec res;
	clock_getres(CLOCK_MONOTONIC_COARSE, &res);
	long long res_ns = (long long)res.tv_sec * 1000000000LL + res.tv_nsec;
	early_ns = 0;
	late_ns = 5 * res_ns + 2000000LL;
	atomic_store(&values_live, 0);
	atomic_store(&evictions, 0);

	cache *c = cache_new(&(cache_config){ .default_ttl_ms = DEFAULT_MS, .cleanup_ms = 1,
					      .value_free = value_free, .value_dup = value_dup,
					      .on_evicted = on_evicted });
	REQUIRE(c != NULL, "cache_new: %s", strerror(errno));
	static struct worker_state ws[THREADS];
	pthread_t th[THREADS];
	long long t0 = now_ms();
	for (uint32_t i = 0; i < THREADS; i++) {
		ws[i] = (struct worker_state){
			.c = c, .id = i, .deadline_ms = t0 + RUN_MS,
			.rng = 0x9E3779B97F4A7C15ULL * (i + 1) ^ (uint64_t)t0,
		};
		REQUIRE(pthread_create(&th[i], NULL, hammer, &ws[i]) == 0, "thread %u", i);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	long checks = 0, either = 0, ops = 0;
	for (int i = 0; i < THREADS; i++) {
		REQUIRE(ws[i].failure[0] == '\0', "thread %d: %s", i, ws[i].failure);
		checks += ws[i].checks;
		either += ws[i].either;
		ops += ws[i].ops;
	}
	long evicted = atomic_load(&evictions);
	cache_close(c);
	REQUIRE(atomic_load(&values_live) == 0, "%ld values leaked or freed twice",
		atomic_load(&values_live));
	LOG("%ld ops on %d threads in %lld ms: %ld checks, %ld reads at an expiry edge, "
		    "%ld evictions", ops, THREADS, now_ms() - t0, checks, either, evicted);
}

/* The janitor alone must remove what expires, with on_evicted, while nobody reads. */
static void janitor_sweeps_everything_that_expires(void)
{
	atomic_store(&values_live, 0);
	atomic_store(&evictions, 0);
	cache *c = cache_new(&(cache_config){ .cleanup_ms = 1, .value_free = value_free,
					      .value_dup = value_dup, .on_evicted = on_evicted });
	REQUIRE(c != NULL, "cache_new: %s", strerror(errno));
	char key[24];
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof key, "e%d", i);
		int rc = cache_set(c, key, value_new(key, 0, (uint64_t)i), 1 + i % 5);
		REQUIRE(rc == 0, "%s", key);
	}
	REQUIRE(cache_set(c, "stays", value_new("stays", 0, 0), CACHE_NO_EXPIRATION) == 0,
		"%s", strerror(errno));
	REQUIRE(wait_until(atomic_load(&evictions) == 2000, 5000), "%ld of 2000 evicted",
		atomic_load(&evictions));
	REQUIRE(cache_count(c) == 1, "%zu items", cache_count(c));
	REQUIRE(cache_get(c, "stays", NULL), "the item without expiry is gone");
	cache_close(c);
	REQUIRE(atomic_load(&values_live) == 0, "%ld values left", atomic_load(&values_live));
}

/* cache.h's "an item is never seen expired before ttl_ms has passed", where the coarse clock
 * lags most: once the cache added one clock resolution of slack to a coarse reading, and an
 * item set while the clock lagged by more was seen expired up to 4 ms early (fixed in
 * expiry_for, which now reads the precise clock). */
static void cache_never_expires_an_item_early(void)
{
	enum { K = 64, TTL_MS = 10, RUN_MS = 1500 };
	char keys[K][12];
	long long set_start[K];
	bool gone[K];
	cache *c = cache_new(&(cache_config){ 0 });
	REQUIRE(c != NULL, "cache_new: %s", strerror(errno));
	int early = 0, n = 0;
	long long earliest = 1LL << 62;
	/* The bug showed within a few seconds on an idle machine: rounds run until an early
	 * expiry shows or RUN_MS has passed. */
	long long t0 = now_ms();
	for (int r = 0; early == 0 && now_ms() < t0 + RUN_MS; r++) {
		/* Each set follows a short sleep of varying length: a CPU back from idle is where
		 * the coarse clock lags most. Then every item is polled until it is gone. */
		for (int k = 0; k < K; k++) {
			snprintf(keys[k], sizeof keys[k], "%d", k);
			nanosleep(&(struct timespec){ 0, (long)((r * 31 + k * 7919) % 250) * 1000L },
				  NULL);
			set_start[k] = now_ns();
			cache_set(c, keys[k], (void *)1, TTL_MS);
			gone[k] = false;
		}
		for (int left = K; left > 0;) {
			for (int k = 0; k < K; k++) {
				if (gone[k] || cache_get(c, keys[k], NULL))
					continue;
				long long age = now_ns() - set_start[k];
				gone[k] = true;
				left--;
				n++;
				early += age < TTL_MS * 1000000LL;
				if (age < earliest)
					earliest = age;
			}
		}
	}
	cache_close(c);
	REQUIRE(early == 0, "ttl %d ms: %d of %d items seen expired before %d ms had passed, "
		"the earliest %.3f ms after the set began", TTL_MS, early, n, TTL_MS,
		(double)earliest / 1e6);
}

#ifdef CACHE_MODEL_MAIN
int main(void)
{
	int run = 0;
	run++, four_threads_and_the_janitor_against_the_model();
	run++, janitor_sweeps_everything_that_expires();
	run++, cache_never_expires_an_item_early();
	if (scoped_expect_no_leaks(1000) != 0)
		failures++;
	printf("%d passed, %d failed\n", run - failures, failures);
	return failures != 0;
}
#else
Test(cache_model, four_threads_and_the_janitor_against_the_model)
{
	four_threads_and_the_janitor_against_the_model();
}

Test(cache_model, janitor_sweeps_everything_that_expires)
{
	janitor_sweeps_everything_that_expires();
}

Test(cache_model, cache_never_expires_an_item_early)
{
	cache_never_expires_an_item_early();
}
#endif
