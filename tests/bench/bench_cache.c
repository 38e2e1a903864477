#define _GNU_SOURCE
/*
 * bench_cache - samples/cache against a plain baseline measured in the same run: one
 * pthread_rwlock over a chained hash map (FNV-1a), which is go-cache's design in C.
 *
 *   ns per get / set, 1 and 2 threads (2 threads: wall time / total ops, like Go's RunParallel),
 *   medians of REPEATS runs, and the ratio cache / baseline (< 1: the cache is faster).
 *   The longest reader stall while 1M expired items are swept (cache: sliced sweep; baseline:
 *   one write lock for the whole sweep, as go-cache's DeleteExpired).
 *
 * Reference on this machine: go-cache ~15.6 ns per Get, ~38.5 ns per Set.
 * BENCH_QUICK=1 in the environment: fewer ops (a smoke run). Takes ~30 s otherwise.
 * BENCH_ONLY=ops or BENCH_ONLY=stall runs one half.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"

enum { KEYS = 1024, REPEATS = 7, STALL_RUNS = 3, SWEEP_ITEMS = 1000000, LIVE_KEYS = 1000 };

static long ops = 2000000;

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the baseline: rwlock + chained hash map ------------------------------------------------ */

typedef struct bnode {
	struct bnode *next;
	uint64_t hash;
	long long expire_ms;	/* 0: never */
	void *value;
	char key[];
} bnode;

typedef struct base {
	pthread_rwlock_t rw;
	bnode **buckets;
	size_t mask, count;
} base;

static uint64_t fnv1a(const char *s)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
	return h;
}

static base *base_new(void)
{
	base *b = calloc(1, sizeof *b);
	if (!b)
		abort();
	pthread_rwlock_init(&b->rw, NULL);
	b->mask = 1023;
	b->buckets = calloc(b->mask + 1, sizeof *b->buckets);
	if (!b->buckets)
		abort();
	return b;
}

static void base_free(base *b)
{
	for (size_t i = 0; i <= b->mask; i++)
		for (bnode *n = b->buckets[i], *next; n; n = next) {
			next = n->next;
			free(n);
		}
	free(b->buckets);
	pthread_rwlock_destroy(&b->rw);
	free(b);
}

static bnode **base_find(base *b, uint64_t h, const char *key)
{
	bnode **link = &b->buckets[h & b->mask];
	for (; *link; link = &(*link)->next)
		if ((*link)->hash == h && strcmp((*link)->key, key) == 0)
			break;
	return link;
}

static void base_grow(base *b)
{
	size_t nb = (b->mask + 1) * 2;
	bnode **nbk = calloc(nb, sizeof *nbk);
	if (!nbk)
		return;
	for (size_t i = 0; i <= b->mask; i++)
		for (bnode *n = b->buckets[i], *next; n; n = next) {
			next = n->next;
			n->next = nbk[n->hash & (nb - 1)];
			nbk[n->hash & (nb - 1)] = n;
		}
	free(b->buckets);
	b->buckets = nbk;
	b->mask = nb - 1;
}

static void base_set(base *b, const char *key, void *value, long long ttl_ms)
{
	uint64_t h = fnv1a(key);
	long long exp = ttl_ms > 0 ? mono_ms() + ttl_ms : 0;
	pthread_rwlock_wrlock(&b->rw);
	bnode **link = base_find(b, h, key);
	if (*link) {
		(*link)->value = value;
		(*link)->expire_ms = exp;
	} else {
		size_t len = strlen(key);
		bnode *n = malloc(sizeof *n + len + 1);
		if (!n)
			abort();
		n->next = NULL;
		n->hash = h;
		n->expire_ms = exp;
		n->value = value;
		memcpy(n->key, key, len + 1);
		*link = n;
		if (++b->count > b->mask + 1)
			base_grow(b);
	}
	pthread_rwlock_unlock(&b->rw);
}

static bool base_get(base *b, const char *key, void **value)
{
	uint64_t h = fnv1a(key);
	pthread_rwlock_rdlock(&b->rw);
	bnode *n = *base_find(b, h, key);
	bool ok = n && (n->expire_ms == 0 || mono_ms() <= n->expire_ms);
	if (ok)
		*value = n->value;
	pthread_rwlock_unlock(&b->rw);
	return ok;
}

static size_t base_delete_expired(base *b)
{
	size_t k = 0;
	long long now = mono_ms();
	pthread_rwlock_wrlock(&b->rw);
	for (size_t i = 0; i <= b->mask; i++)
		for (bnode **link = &b->buckets[i]; *link;) {
			bnode *n = *link;
			if (n->expire_ms && now > n->expire_ms) {
				*link = n->next;
				free(n);
				b->count--;
				k++;
			} else {
				link = &n->next;
			}
		}
	pthread_rwlock_unlock(&b->rw);
	return k;
}

/* ---- one interface over both ---------------------------------------------------------------- */

typedef struct target {
	const char *name;
	cache *c;
	base *b;
} target;

static char *keys[KEYS];

static inline void t_set(const target *t, const char *key, void *v, long long ttl)
{
	if (t->c) {
		if (cache_set(t->c, key, v, ttl) != 0)
			abort();
	} else {
		base_set(t->b, key, v, ttl);
	}
}

static inline bool t_get(const target *t, const char *key, void **v)
{
	return t->c ? cache_get(t->c, key, v) : base_get(t->b, key, v);
}

typedef struct job {
	const target *t;
	int op;			/* 0 get, 1 set, 2 set with a ttl */
	bool one_key;		/* "foo" every time, as go-cache's benchmarks */
	unsigned seed;
	long n;
	atomic_int *ready;
	atomic_bool *go;
	long sink;
} job;

static void *run_job(void *arg)
{
	job *j = arg;
	atomic_fetch_add(j->ready, 1);
	while (!atomic_load_explicit(j->go, memory_order_acquire))
		;
	unsigned x = j->seed;
	long sink = 0;
	for (long i = 0; i < j->n; i++) {
		x = x * 1664525u + 1013904223u;
		const char *k = j->one_key ? "foo" : keys[(x >> 16) & (KEYS - 1)];
		if (j->op == 0) {
			void *v;
			sink += t_get(j->t, k, &v);
		} else {
			t_set(j->t, k, (void *)(intptr_t)i, j->op == 2 ? 3600000 : CACHE_NO_EXPIRATION);
		}
	}
	j->sink = sink;
	return NULL;
}

/* ns per op: one thread inline, or several started together (wall / total ops). */
static double measure(const target *t, int op, bool one_key, int threads)
{
	atomic_int ready = 0;
	atomic_bool go = false;
	job jobs[2];
	pthread_t th[2];
	long per = ops / threads;
	for (int i = 0; i < threads; i++)
		jobs[i] = (job){ .t = t, .op = op, .one_key = one_key, .seed = 12345u + 777u * (unsigned)i, .n = per,
				 .ready = &ready, .go = &go };
	if (threads == 1) {
		atomic_store(&go, true);
		double t0 = now_ns();
		run_job(&jobs[0]);
		return (now_ns() - t0) / (double)per;
	}
	for (int i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, run_job, &jobs[i]) != 0)
			abort();
	while (atomic_load(&ready) < threads)
		;
	double t0 = now_ns();
	atomic_store_explicit(&go, true, memory_order_release);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	return (now_ns() - t0) / (double)(per * threads);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median_of(double *r, int n)
{
	qsort(r, (size_t)n, sizeof r[0], cmp_double);
	return r[n / 2];
}

/* Runs alternate between the two targets, so both see the same noise from a shared machine. */
static void median_pair(const target *a, const target *b, int op, bool one_key, int threads,
			double *ma, double *mb)
{
	double ra[REPEATS], rb[REPEATS];
	for (int i = 0; i < REPEATS; i++) {
		ra[i] = measure(a, op, one_key, threads);
		rb[i] = measure(b, op, one_key, threads);
	}
	*ma = median_of(ra, REPEATS);
	*mb = median_of(rb, REPEATS);
}

static void fill(const target *t, long long ttl)
{
	for (int i = 0; i < KEYS; i++)
		t_set(t, keys[i], (void *)(intptr_t)i, ttl);
	t_set(t, "foo", (void *)(intptr_t)1, ttl);
}

/* ---- reader stall during a sweep ------------------------------------------------------------ */

typedef struct stall {
	const target *t;
	atomic_bool stop, running;
	atomic_int phase;	/* 0: the reader alone (control), 1: during the sweep */
	double max_ns[2];
	long slow[2];		/* gets over 100 us */
} stall;

static void *stall_reader(void *arg)
{
	stall *s = arg;
	char key[32];
	atomic_store(&s->running, true);
	for (long i = 0; !atomic_load_explicit(&s->stop, memory_order_relaxed); i++) {
		snprintf(key, sizeof key, "live-%ld", i % LIVE_KEYS);
		void *v;
		double t0 = now_ns();
		if (!t_get(s->t, key, &v))
			abort();
		double d = now_ns() - t0;
		/* a get that ends during the sweep counts for the sweep */
		int ph = atomic_load_explicit(&s->phase, memory_order_relaxed);
		if (d > s->max_ns[ph])
			s->max_ns[ph] = d;
		if (d > 100e3)
			s->slow[ph]++;
	}
	return NULL;
}

typedef struct stall_result {
	double max_ms, quiet_max_ms, sweep_ms;
	long slow;
} stall_result;

static stall_result stall_run(const target *t)
{
	char key[32];
	for (long i = 0; i < SWEEP_ITEMS; i++) {
		snprintf(key, sizeof key, "exp-%ld", i);
		t_set(t, key, (void *)(intptr_t)i, 20);
	}
	for (long i = 0; i < LIVE_KEYS; i++) {
		snprintf(key, sizeof key, "live-%ld", i);
		t_set(t, key, (void *)(intptr_t)i, CACHE_NO_EXPIRATION);
	}
	/* every exp- item has expired once the last one set has */
	long long until = mono_ms() + 5000;
	void *v;
	snprintf(key, sizeof key, "exp-%d", SWEEP_ITEMS - 1);
	while (t_get(t, key, &v) && mono_ms() < until)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);

	stall s = { .t = t };
	pthread_t th;
	if (pthread_create(&th, NULL, stall_reader, &s) != 0)
		abort();
	while (!atomic_load(&s.running))
		;
	/* the control: the reader alone for 100 ms shows the machine's noise floor */
	nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
	atomic_store(&s.phase, 1);
	double t0 = now_ns();
	size_t removed = t->c ? cache_delete_expired(t->c) : base_delete_expired(t->b);
	double sweep_ms = (now_ns() - t0) / 1e6;
	atomic_store(&s.stop, true);
	pthread_join(th, NULL);
	if (removed != SWEEP_ITEMS) {
		fprintf(stderr, "%s: swept %zu of %d\n", t->name, removed, SWEEP_ITEMS);
		exit(1);
	}
	return (stall_result){ .max_ms = s.max_ns[1] / 1e6, .quiet_max_ms = s.max_ns[0] / 1e6,
			       .sweep_ms = sweep_ms, .slow = s.slow[1] };
}

int main(void)
{
	const char *quick = getenv("BENCH_QUICK");
	if (quick && *quick == '1')
		ops = 200000;
	for (int i = 0; i < KEYS; i++) {
		char k[32];
		snprintf(k, sizeof k, "key-%d", i);
		keys[i] = strdup(k);
		if (!keys[i])
			abort();
	}

	const char *only = getenv("BENCH_ONLY");
	bool do_ops = !only || strcmp(only, "stall") != 0;
	bool do_stall = !only || strcmp(only, "ops") != 0;
	cache *c = cache_new(&(cache_config){ 0 });
	if (!c) {
		perror("cache_new");
		return 1;
	}
	base *b = base_new();
	target tc = { "cache", c, NULL }, tb = { "rwlock+map", NULL, b };
	if (!do_ops)
		goto stall;

	printf("bench_cache: %d keys, %ld ops per run, median of %d runs; ns per op\n", KEYS, ops,
	       REPEATS);
	printf("(2 thr: wall time / total ops; 1 key: \"foo\" as go-cache's benchmarks; 1024 keys:\n"
	       " random; ttl: items expire in 1 h, so each get reads the clock; baseline: one\n"
	       " pthread_rwlock + chained map)\n\n");
	printf("%-32s %10s %12s %8s\n", "", "cache", "rwlock+map", "ratio");

	static const struct {
		const char *what;
		int op;
		bool one_key;
		long long fill_ttl;
	} rows[] = {
		{ "get 1 key", 0, true, CACHE_NO_EXPIRATION },
		{ "get 1 key, ttl", 0, true, 3600000 },
		{ "get 1024 keys", 0, false, CACHE_NO_EXPIRATION },
		{ "get 1024 keys, ttl", 0, false, 3600000 },
		{ "set 1 key", 1, true, CACHE_NO_EXPIRATION },
		{ "set 1 key, ttl", 2, true, 3600000 },
		{ "set 1024 keys", 1, false, CACHE_NO_EXPIRATION },
		{ "set 1024 keys, ttl", 2, false, 3600000 },
	};
	for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
		for (int threads = 1; threads <= 2; threads++) {
			fill(&tc, rows[r].fill_ttl);
			fill(&tb, rows[r].fill_ttl);
			double nc, nb;
			median_pair(&tc, &tb, rows[r].op, rows[r].one_key, threads, &nc, &nb);
			char label[64];
			snprintf(label, sizeof label, "%s, %d thr", rows[r].what, threads);
			printf("%-32s %10.1f %12.1f %8.2f\n", label, nc, nb, nc / nb);
		}
	printf("\ngo-cache on this machine (1 key, 1 goroutine): ~15.6 ns per Get, ~38.5 ns per Set\n");
stall:
	cache_close(c);
	base_free(b);
	if (!do_stall)
		goto out;

	printf("\nreader stall while %d expired items are swept (reader: gets on %d live keys)\n",
	       SWEEP_ITEMS, LIVE_KEYS);
	c = cache_new(&(cache_config){ 0 });
	b = base_new();
	if (!c) {
		perror("cache_new");
		return 1;
	}
	tc.c = c;
	tb.b = b;
	/* vCPU steal on a shared machine stalls any thread for milliseconds now and then: the
	 * control (the same reader before the sweep starts) shows it; medians of STALL_RUNS runs */
	double cmax[STALL_RUNS], bmax[STALL_RUNS], cq[STALL_RUNS], bq[STALL_RUNS];
	double csw[STALL_RUNS], bsw[STALL_RUNS], cslow[STALL_RUNS], bslow[STALL_RUNS];
	for (int i = 0; i < STALL_RUNS; i++) {
		stall_result rc = stall_run(&tc), rb = stall_run(&tb);
		cmax[i] = rc.max_ms, cq[i] = rc.quiet_max_ms, csw[i] = rc.sweep_ms;
		cslow[i] = (double)rc.slow;
		bmax[i] = rb.max_ms, bq[i] = rb.quiet_max_ms, bsw[i] = rb.sweep_ms;
		bslow[i] = (double)rb.slow;
		printf("  run %d: longest get %8.3f ms (cache), %8.3f ms (rwlock+map); control %.3f ms,"
		       " %.3f ms\n", i + 1, rc.max_ms, rb.max_ms, rc.quiet_max_ms, rb.quiet_max_ms);
	}
	double cm = median_of(cmax, STALL_RUNS);
	printf("median of %d runs:\n", STALL_RUNS);
	printf("%-12s longest get %8.3f ms, gets over 100 us: %4.0f, sweep took %7.1f ms\n",
	       "cache", cm, median_of(cslow, STALL_RUNS), median_of(csw, STALL_RUNS));
	printf("%-12s longest get %8.3f ms, gets over 100 us: %4.0f, sweep took %7.1f ms\n",
	       "rwlock+map", median_of(bmax, STALL_RUNS), median_of(bslow, STALL_RUNS),
	       median_of(bsw, STALL_RUNS));
	printf("control, the reader alone for 100 ms before each sweep: longest get %.3f ms (cache),"
	       " %.3f ms (rwlock+map)\n", median_of(cq, STALL_RUNS), median_of(bq, STALL_RUNS));
	printf("target: longest get < 1 ms during the sweep: %s\n", cm < 1.0 ? "met" : "MISSED");
	cache_close(c);
	base_free(b);
out:
	for (int i = 0; i < KEYS; i++)
		free(keys[i]);
	return 0;
}
