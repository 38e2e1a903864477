#define _GNU_SOURCE
/* tests/test_cache.c - samples/cache: go-cache's semantics, the janitor, value lifetime. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "helpers.h"

/* ---- a tracked, reference-counted value -------------------------------------------------- */

enum { MAGIC = 0x5ca1ab1e };

typedef struct tval {
	atomic_int refs;
	atomic_int magic;
	int id;
} tval;

static atomic_int live_vals;	/* tvals not yet freed */

/* Checks made off the test thread (Criterion asserts belong to the test thread). */
static atomic_int bad;
static const char *_Atomic bad_what;
#define CHECK(cond, what)                                                                   \
	do {                                                                                \
		if (!(cond)) {                                                              \
			atomic_fetch_add(&bad, 1);                                          \
			atomic_store(&bad_what, (what));                                    \
		}                                                                           \
	} while (0)
#define cr_assert_no_bad() cr_assert_eq(atomic_load(&bad), 0, "%s", atomic_load(&bad_what))

static tval *tval_new(int id)
{
	tval *v = malloc(sizeof *v);
	if (!v)
		abort();
	atomic_init(&v->refs, 1);
	atomic_init(&v->magic, MAGIC);
	v->id = id;
	atomic_fetch_add(&live_vals, 1);
	return v;
}

/* value_dup taking a reference: get hands out the same object, one more count. */
static void *tval_ref(const void *p)
{
	tval *v = (tval *)(uintptr_t)p;
	CHECK(atomic_load(&v->magic) == MAGIC, "dup of a freed value");
	atomic_fetch_add(&v->refs, 1);
	return v;
}

static void tval_unref(void *p)
{
	tval *v = p;
	CHECK(atomic_load(&v->magic) == MAGIC, "free of a freed value");
	if (atomic_fetch_sub(&v->refs, 1) == 1) {
		atomic_store(&v->magic, 0);
		atomic_fetch_sub(&live_vals, 1);
		free(v);
	}
}

static void *dup_str(const void *p)
{
	return strdup(p);
}

/* ---- an event log for on_evicted / value_free -------------------------------------------- */

enum { LOG_MAX = 64 };

typedef struct ev_log {
	pthread_mutex_t mu;
	int n;
	char kind[LOG_MAX];	/* 'E' on_evicted, 'F' value_free */
	char key[LOG_MAX][32];
	void *value[LOG_MAX];
	pthread_t thread[LOG_MAX];
	cache *c;		/* set when the callback must call back into the cache */
	int reentered;		/* on_evicted called cache_* and got answers */
} ev_log;

static ev_log the_log = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void log_add(ev_log *lg, char kind, const char *key, void *value)
{
	pthread_mutex_lock(&lg->mu);
	if (lg->n < LOG_MAX) {
		lg->kind[lg->n] = kind;
		snprintf(lg->key[lg->n], sizeof lg->key[0], "%s", key ? key : "");
		lg->value[lg->n] = value;
		lg->thread[lg->n] = pthread_self();
		lg->n++;
	}
	pthread_mutex_unlock(&lg->mu);
}

static int log_count(ev_log *lg, char kind)
{
	pthread_mutex_lock(&lg->mu);
	int k = 0;
	for (int i = 0; i < lg->n; i++)
		k += lg->kind[i] == kind;
	pthread_mutex_unlock(&lg->mu);
	return k;
}

static void on_evicted_log(const char *key, void *value, void *arg)
{
	ev_log *lg = arg;
	log_add(lg, 'E', key, value);
	if (lg->c) {
		/* No lock is held: calling back into the cache, even the same key, must work. */
		void *v;
		bool got = cache_get(lg->c, key, &v);
		if (got)
			free(v);
		cache_count(lg->c);
		pthread_mutex_lock(&lg->mu);
		lg->reentered++;
		pthread_mutex_unlock(&lg->mu);
	}
}

static void value_free_log(void *value)
{
	log_add(&the_log, 'F', NULL, value);
	free(value);
}

static void reset_log(void)
{
	pthread_mutex_lock(&the_log.mu);
	the_log.n = 0;
	the_log.c = NULL;
	the_log.reentered = 0;
	pthread_mutex_unlock(&the_log.mu);
}

/* A cache that owns strdup'ed strings and logs its callbacks. */
static cache *log_cache(long long default_ttl_ms, long long cleanup_ms)
{
	reset_log();
	cache *c = cache_new(&(cache_config){
		.default_ttl_ms = default_ttl_ms,
		.cleanup_ms = cleanup_ms,
		.value_free = value_free_log,
		.value_dup = dup_str,
		.on_evicted = on_evicted_log,
		.arg = &the_log,
	});
	cr_assert(c, "cache_new: %s", strerror(errno));
	return c;
}

/* get, compare to a string, free the copy */
static bool get_is(cache *c, const char *key, const char *want)
{
	void *v = NULL;
	if (!cache_get(c, key, &v))
		return false;
	bool same = strcmp(v, want) == 0;
	free(v);
	return same;
}

static bool absent(cache *c, const char *key)
{
	errno = 0;
	return !cache_get(c, key, NULL) && errno == ENOENT;
}

/* ---- basics -------------------------------------------------------------------------------- */

Test(cache, set_get_overwrite_count)
{
	scoped(cache) c = log_cache(0, 0);
	cr_assert(absent(c, "a"));
	cr_assert_eq(cache_set(c, "a", strdup("1"), CACHE_DEFAULT_TTL), 0);
	cr_assert_eq(cache_set(c, "b", strdup("2"), CACHE_NO_EXPIRATION), 0);
	cr_assert_eq(cache_set(c, "", strdup("empty"), 0), 0);
	cr_assert(get_is(c, "a", "1"));
	cr_assert(get_is(c, "b", "2"));
	cr_assert(get_is(c, "", "empty"));
	cr_assert_eq(cache_count(c), 3);
	cr_assert(cache_get(c, "a", NULL), "NULL out-pointer: presence only");

	cr_assert_eq(cache_set(c, "a", strdup("1bis"), 0), 0);
	cr_assert(get_is(c, "a", "1bis"));
	cr_assert_eq(cache_count(c), 3);
	cr_assert_eq(log_count(&the_log, 'E'), 0, "overwrite never runs on_evicted");
	cr_assert_eq(log_count(&the_log, 'F'), 1, "the old value is freed");
}

Test(cache, get_hands_out_a_copy_the_caller_owns)
{
	scoped(cache) c = log_cache(0, 0);
	char *orig = strdup("hello");
	cr_assert_eq(cache_set(c, "k", orig, 0), 0);
	void *v = NULL;
	cr_assert(cache_get(c, "k", &v));
	cr_assert_neq(v, orig);
	cr_assert_str_eq(v, "hello");
	cr_assert(cache_delete(c, "k"));	/* the cache frees orig; our copy lives on */
	cr_assert_str_eq(v, "hello");
	free(v);
}

Test(cache, setting_the_same_pointer_again_does_not_free_it)
{
	scoped(cache) c = log_cache(0, 0);
	char *s = strdup("x");
	cr_assert_eq(cache_set(c, "k", s, 0), 0);
	cr_assert_eq(cache_set(c, "k", s, 0), 0);
	cr_assert_eq(log_count(&the_log, 'F'), 0);
	cr_assert(get_is(c, "k", "x"));
}

Test(cache, many_keys_grow_and_stay_findable)
{
	scoped(cache) c = cache_new(&(cache_config){ 0 });
	cr_assert(c);
	enum { N = 20000 };
	char key[32];
	for (intptr_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "key-%ld", (long)i);
		cr_assert_eq(cache_add(c, key, (void *)(i + 1), 0), 0);
	}
	cr_assert_eq(cache_count(c), N);
	for (intptr_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "key-%ld", (long)i);
		void *v;
		cr_assert(cache_get(c, key, &v), "%s", key);
		cr_assert_eq((intptr_t)v, i + 1, "without value_dup the stored pointer comes back");
	}
	for (intptr_t i = 0; i < N; i += 2) {
		snprintf(key, sizeof key, "key-%ld", (long)i);
		cr_assert(cache_delete(c, key));
	}
	cr_assert_eq(cache_count(c), N / 2);
}

/* ---- expiry ------------------------------------------------------------------------------- */

Test(cache, get_treats_expired_as_absent_before_any_sweep)
{
	scoped(cache) c = log_cache(0, 0);	/* no janitor */
	long long t0 = now_ms();
	cr_assert_eq(cache_set(c, "short", strdup("s"), 30), 0);
	cr_assert_eq(cache_set(c, "forever", strdup("f"), CACHE_NO_EXPIRATION), 0);
	bool early = get_is(c, "short", "s");
	cr_assert(early || now_ms() - t0 >= 30, "visible until its ttl has passed");
	cr_assert(wait_until(absent(c, "short"), 2000), "expired item still visible");
	cr_assert_geq(now_ms() - t0, 30, "expired early");
	cr_assert(get_is(c, "forever", "f"));
	cr_assert_eq(cache_count(c), 2, "count includes expired items not swept (go-cache)");
	cr_assert_eq(log_count(&the_log, 'E'), 0, "nothing swept yet");

	cr_assert_eq(cache_delete_expired(c), 1);
	cr_assert_eq(cache_count(c), 1);
	cr_assert_eq(log_count(&the_log, 'E'), 1);
	cr_assert_str_eq(the_log.key[0], "short");
	cr_assert_eq(the_log.kind[0], 'E', "on_evicted runs before value_free");
	cr_assert_eq(the_log.kind[1], 'F');
	cr_assert_eq(the_log.value[0], the_log.value[1]);
	cr_assert_eq(cache_delete_expired(c), 0);
}

Test(cache, default_ttl_and_per_item_ttl)
{
	scoped(cache) c = log_cache(30, 0);
	cr_assert_eq(cache_set(c, "default", strdup("d"), CACHE_DEFAULT_TTL), 0);
	cr_assert_eq(cache_set(c, "never", strdup("n"), CACHE_NO_EXPIRATION), 0);
	cr_assert_eq(cache_set(c, "long", strdup("l"), 60 * 60 * 1000), 0);
	cr_assert_eq(cache_set(c, "huge", strdup("h"), 0x7fffffffffffffffLL), 0);
	cr_assert(wait_until(absent(c, "default"), 2000));
	cr_assert(get_is(c, "never", "n"));
	cr_assert(get_is(c, "long", "l"));
	cr_assert(get_is(c, "huge", "h"), "a ttl beyond the clock's range never expires");
}

Test(cache, default_ttl_zero_or_negative_means_never)
{
	for (long long d = 0; d >= -1; d--) {
		scoped(cache) c = log_cache(d, 0);
		cr_assert_eq(cache_set(c, "k", strdup("v"), CACHE_DEFAULT_TTL), 0);
		cr_assert_eq(cache_set(c, "short", strdup("s"), 1), 0);
		cr_assert(wait_until(absent(c, "short"), 2000));
		cr_assert(get_is(c, "k", "v"));
		cr_assert_eq(cache_delete_expired(c), 1);
	}
}

/* ---- add / replace ------------------------------------------------------------------------ */

Test(cache, add_fails_with_eexist_on_a_live_item)
{
	scoped(cache) c = log_cache(0, 0);
	cr_assert_eq(cache_add(c, "k", strdup("1"), 0), 0);
	char *mine = strdup("2");
	errno = 0;
	cr_assert_eq(cache_add(c, "k", mine, 0), -1);
	cr_assert_eq(errno, EEXIST);
	cr_assert_str_eq(mine, "2", "on failure the value is still the caller's");
	free(mine);
	cr_assert(get_is(c, "k", "1"));

	cr_assert_eq(cache_set(c, "e", strdup("old"), 10), 0);
	cr_assert(wait_until(absent(c, "e"), 2000));
	cr_assert_eq(cache_add(c, "e", strdup("new"), 0), 0, "an expired item does not block add");
	cr_assert(get_is(c, "e", "new"));
	cr_assert_eq(log_count(&the_log, 'E'), 0, "replacing an expired item is an overwrite");
	cr_assert_eq(log_count(&the_log, 'F'), 1);
}

Test(cache, replace_fails_with_enoent_without_a_live_item)
{
	scoped(cache) c = log_cache(0, 0);
	char *mine = strdup("x");
	errno = 0;
	cr_assert_eq(cache_replace(c, "k", mine, 0), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(cache_count(c), 0);

	cr_assert_eq(cache_set(c, "k", strdup("1"), 0), 0);
	cr_assert_eq(cache_replace(c, "k", mine, 0), 0);
	cr_assert(get_is(c, "k", "x"));

	cr_assert_eq(cache_set(c, "e", strdup("old"), 10), 0);
	cr_assert(wait_until(absent(c, "e"), 2000));
	char *late = strdup("late");
	errno = 0;
	cr_assert_eq(cache_replace(c, "e", late, 0), -1, "an expired item cannot be replaced");
	cr_assert_eq(errno, ENOENT);
	free(late);
}

/* ---- delete / on_evicted ------------------------------------------------------------------ */

Test(cache, delete_runs_on_evicted_then_value_free)
{
	scoped(cache) c = log_cache(0, 0);
	char *v = strdup("v");
	cr_assert_eq(cache_set(c, "k", v, 0), 0);
	cr_assert(cache_delete(c, "k"));
	cr_assert_eq(the_log.n, 2);
	cr_assert_eq(the_log.kind[0], 'E');
	cr_assert_str_eq(the_log.key[0], "k");
	cr_assert_eq(the_log.value[0], v);
	cr_assert(pthread_equal(the_log.thread[0], pthread_self()), "on the deleting thread");
	cr_assert_eq(the_log.kind[1], 'F');
	cr_assert_eq(the_log.value[1], v);
	cr_assert_eq(cache_count(c), 0);

	errno = 0;
	cr_assert_not(cache_delete(c, "k"));
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(the_log.n, 2);
}

Test(cache, delete_of_an_expired_item_removes_it_and_says_false)
{
	scoped(cache) c = log_cache(0, 0);
	cr_assert_eq(cache_set(c, "k", strdup("v"), 5), 0);
	cr_assert(wait_until(absent(c, "k"), 2000));
	errno = 0;
	cr_assert_not(cache_delete(c, "k"));
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(log_count(&the_log, 'E'), 1, "go-cache runs OnEvicted for it too");
	cr_assert_eq(cache_count(c), 0);
}

Test(cache, on_evicted_may_call_back_into_the_cache)
{
	scoped(cache) c = log_cache(0, 0);
	the_log.c = c;
	cr_assert_eq(cache_set(c, "k", strdup("v"), 0), 0);
	cr_assert_eq(cache_set(c, "x", strdup("v"), 5), 0);
	cr_assert(cache_delete(c, "k"));
	cr_assert(wait_until(absent(c, "x"), 2000));
	cr_assert_eq(cache_delete_expired(c), 1);
	cr_assert_eq(the_log.reentered, 2, "no lock is held during on_evicted");
}

/* ---- the janitor -------------------------------------------------------------------------- */

Test(cache, janitor_evicts_expired_items_on_its_thread)
{
	scoped(cache) c = log_cache(0, 5);
	the_log.c = c;
	for (int i = 0; i < 10; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(cache_set(c, key, strdup("v"), i < 5 ? 10 : CACHE_NO_EXPIRATION), 0);
	}
	cr_assert(wait_until(cache_count(c) == 5, 3000), "janitor did not sweep: %zu",
		  cache_count(c));
	cr_assert(wait_until(log_count(&the_log, 'F') == 5, 1000));
	cr_assert_eq(log_count(&the_log, 'E'), 5);
	pthread_mutex_lock(&the_log.mu);
	for (int i = 0; i < the_log.n; i++)
		cr_assert_not(pthread_equal(the_log.thread[i], pthread_self()),
			      "expiry callbacks run on the janitor");
	pthread_mutex_unlock(&the_log.mu);
	cr_assert_eq(the_log.reentered, 5);
	cr_assert(get_is(c, "k7", "v"));
}

Test(cache, no_janitor_thread_when_cleanup_is_not_positive)
{
	int before = thread_count();
	for (long long p = 0; p >= -1; p--) {
		scoped(cache) c = log_cache(10, p);
		cr_assert_eq(thread_count(), before);
	}
}

static void use_a_cache(int *inside)
{
	scoped(cache) c = log_cache(10, 1000);
	*inside = thread_count();
	cr_assert_eq(cache_set(c, "k", strdup("v"), 0), 0);
}	/* no cache_close: leaving the scope stops the janitor and frees everything */

Test(cache, scope_exit_stops_the_janitor)
{
	int before = thread_count();
	int inside = 0;
	use_a_cache(&inside);
	cr_assert_eq(inside, before + 1, "one janitor thread inside");
	cr_assert(wait_until(thread_count() == before, 3000), "janitor gone after the scope");
	cr_assert_eq(log_count(&the_log, 'F'), 1, "its item freed");
	cr_assert_eq(log_count(&the_log, 'E'), 0, "close is not an eviction");

	for (int i = 0; i < 3; i++) {
		scoped(cache) c = log_cache(10, 1000);
		cr_assert(wait_until(thread_count() == before + 1, 3000));
		if (i == 1)
			break;
	}
	cr_assert(wait_until(thread_count() == before, 3000), "break leaves the scope too");
}

Test(cache, close_is_prompt_with_a_long_period)
{
	long long t0 = now_ms();
	{
		scoped(cache) c = log_cache(0, 60 * 60 * 1000);
	}
	cr_assert_lt(now_ms() - t0, 1000, "closing waited for the period");
}

Test(cache, stop_keeps_the_cache_usable)
{
	int before = thread_count();
	scoped(cache) c = log_cache(0, 5);
	cr_assert_eq(thread_count(), before + 1);
	cache_stop(c);
	cache_stop(c);
	/* the kernel reaps a joined thread's /proc entry a moment after the join */
	cr_assert(wait_until(thread_count() == before, 3000), "stop joined the janitor");
	cr_assert_eq(cache_set(c, "k", strdup("v"), 5), 0);
	cr_assert(wait_until(absent(c, "k"), 2000));
	cr_assert_eq(cache_count(c), 1, "no janitor any more");
	cr_assert_eq(cache_delete_expired(c), 1);
	cr_assert_eq(cache_set(c, "k2", strdup("v"), 0), 0);
	cr_assert(get_is(c, "k2", "v"));
}

static atomic_int stops_from_janitor;

static void stop_on_evicted(const char *key, void *value, void *arg)
{
	(void)key;
	(void)value;
	cache **cp = arg;
	cache_stop(*cp);	/* on the janitor's own thread: must not self-join */
	atomic_fetch_add(&stops_from_janitor, 1);
}

Test(cache, stop_from_on_evicted_on_the_janitor_returns)
{
	int before = thread_count();
	scoped(cache) c = NULL;
	c = cache_new(&(cache_config){ .cleanup_ms = 2, .on_evicted = stop_on_evicted, .arg = &c });
	cr_assert(c);
	cr_assert_eq(cache_set(c, "a", NULL, 3), 0);
	cr_assert_eq(cache_set(c, "b", NULL, 3), 0);
	cr_assert(wait_until(atomic_load(&stops_from_janitor) >= 1, 3000));
	cr_assert(wait_until(thread_count() == before, 3000), "the janitor ended itself");
	cr_assert_eq(cache_set(c, "c", NULL, 0), 0, "the cache stays usable");
}

Test(cache, sweep_of_many_items_in_slices)
{
	scoped(cache) c = cache_new(&(cache_config){ .default_ttl_ms = 5 });
	cr_assert(c);
	enum { N = 100000 };
	char key[32];
	for (intptr_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "%ld", (long)i);
		cr_assert_eq(cache_set(c, key, (void *)i, i % 10 ? CACHE_DEFAULT_TTL : -1), 0);
	}
	cr_assert(wait_until(absent(c, "99999"), 2000), "the last one set");
	cr_assert_eq(cache_delete_expired(c), N - N / 10);
	cr_assert_eq(cache_count(c), N / 10);
	for (intptr_t i = 0; i < N; i += 10) {
		snprintf(key, sizeof key, "%ld", (long)i);
		void *v;
		cr_assert(cache_get(c, key, &v), "%s lost by the sweep", key);
		cr_assert_eq((intptr_t)v, i);
	}
}

/* Random operations against a model: deletions shift entries within a stripe's probe
 * clusters, and nothing may be lost or duplicated by it. */
Test(cache, random_operations_match_a_model)
{
	scoped(cache) c = cache_new(&(cache_config){ 0 });
	cr_assert(c);
	enum { K = 3000, OPS = 200000 };
	static intptr_t model[K];	/* 0: absent */
	memset(model, 0, sizeof model);
	size_t live = 0;
	unsigned x = 42;
	char key[32];
	for (long op = 1; op <= OPS; op++) {
		x = x * 1103515245u + 12345u;
		int k = (int)((x >> 8) % K);
		snprintf(key, sizeof key, "m%d", k);
		void *v;
		switch ((x >> 24) % 5) {
		case 0:
			cr_assert_eq(cache_set(c, key, (void *)op, 0), 0);
			live += model[k] == 0;
			model[k] = op;
			break;
		case 1:
			cr_assert_eq(cache_add(c, key, (void *)op, 0), model[k] ? -1 : 0, "%s", key);
			if (!model[k]) {
				model[k] = op;
				live++;
			}
			break;
		case 2:
			cr_assert_eq(cache_replace(c, key, (void *)op, 0), model[k] ? 0 : -1);
			if (model[k])
				model[k] = op;
			break;
		case 3:
			cr_assert_eq(cache_delete(c, key), model[k] != 0, "%s", key);
			live -= model[k] != 0;
			model[k] = 0;
			break;
		default:
			cr_assert_eq(cache_get(c, key, &v), model[k] != 0, "%s", key);
			if (model[k])
				cr_assert_eq((intptr_t)v, model[k]);
		}
		if (op % 20000 == 0)
			cr_assert_eq(cache_count(c), live);
	}
	for (int k = 0; k < K; k++) {
		snprintf(key, sizeof key, "m%d", k);
		void *v = NULL;
		cr_assert_eq(cache_get(c, key, &v), model[k] != 0, "%s", key);
		if (model[k])
			cr_assert_eq((intptr_t)v, model[k]);
	}
}

/* ---- errors ------------------------------------------------------------------------------- */

Test(cache, null_arguments_are_einval)
{
	errno = 0;
	cr_assert_null(cache_new(NULL));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(cache_new(&(cache_config){ .value_free = free }),
		       "owning values without value_dup would hand out pointers it may free");
	cr_assert_eq(errno, EINVAL);

	scoped(cache) c = cache_new(&(cache_config){ 0 });
	cr_assert(c);
	int x;
	errno = 0;
	cr_assert_eq(cache_set(NULL, "k", &x, 0), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(cache_set(c, NULL, &x, 0), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(cache_add(c, NULL, &x, 0), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(cache_replace(NULL, "k", &x, 0), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_not(cache_get(c, NULL, NULL));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_not(cache_get(NULL, "k", NULL));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_not(cache_delete(c, NULL));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(cache_delete_expired(NULL), 0);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(cache_count(NULL), 0);
	cache_stop(NULL);
	cache_close(NULL);
	cr_assert_eq(cache_count(c), 0);
}

static void *dup_fails(const void *p)
{
	(void)p;
	return NULL;
}

Test(cache, failing_value_dup_is_enomem)
{
	scoped(cache) c = cache_new(&(cache_config){ .value_free = free, .value_dup = dup_fails });
	cr_assert(c);
	cr_assert_eq(cache_set(c, "k", strdup("v"), 0), 0);
	void *v = (void *)&v;
	errno = 0;
	cr_assert_not(cache_get(c, "k", &v));
	cr_assert_eq(errno, ENOMEM);
	cr_assert_eq(v, (void *)&v, "out-pointer untouched on failure");
	cr_assert(cache_get(c, "k", NULL), "presence needs no copy");
}

Test(cache, close_preserves_errno)
{
	cache *c = cache_new(&(cache_config){ .cleanup_ms = 10 });
	cr_assert(c);
	errno = EBADF;
	cache_close(c);
	cr_assert_eq(errno, EBADF);
}

/*
 * Allocation failure: in plain builds this executable interposes malloc/calloc/realloc/
 * aligned_alloc/free (over glibc's __libc_* functions) and fails the n-th allocation made by the
 * test thread while armed. Each failing call must report ENOMEM and leave nothing allocated.
 * Sanitizers own the allocator: those builds skip this test (LSan checks leaks there).
 */
#if !UNDER_ASAN && !UNDER_TSAN
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static _Thread_local bool fail_armed;
static _Thread_local long fail_countdown;	/* allocations left before the failing one */
static _Thread_local long fail_net;		/* allocations minus frees while armed */

static bool fail_now(void)
{
	if (!fail_armed)
		return false;
	if (fail_countdown-- == 0)
		return true;
	fail_net++;
	return false;
}

void *malloc(size_t n)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	if (p && fail_armed)
		fail_net--;
	return __libc_realloc(p, n);
}

void *aligned_alloc(size_t align, size_t n)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_memalign(align, n);
}

void free(void *p)
{
	if (p && fail_armed)
		fail_net--;
	__libc_free(p);
}

static void arm(long countdown)
{
	fail_countdown = countdown;
	fail_net = 0;
	fail_armed = true;
}

static void disarm(void)
{
	fail_armed = false;
}

/* Whether this executable's malloc is the one called (valgrind, for one, replaces it). */
static bool interposed(void)
{
	void *(*volatile m)(size_t) = malloc;
	arm(0);
	void *p = m(16);
	disarm();
	free(p);
	return p == NULL;
}

Test(cache, every_allocation_failure_leaves_nothing)
{
	if (!interposed())
		cr_skip_test("malloc is replaced by a tool in this run");
	int threads = thread_count();
	bool made = false;
	for (long n = 0; n < 2000 && !made; n++) {
		for (long long cleanup = 0; cleanup <= 50; cleanup += 50) {
			arm(n);
			errno = 0;
			cache *c = cache_new(&(cache_config){ .cleanup_ms = cleanup });
			int e = errno;
			long net = fail_net;
			disarm();
			if (c) {
				made = cleanup == 50;
				cache_close(c);
				continue;
			}
			cr_assert(e == ENOMEM || (cleanup && e == EAGAIN),
				  "allocation %ld failed: errno %d", n, e);
			cr_assert_eq(net, 0, "allocation %ld failed: %ld blocks left", n, net);
			cr_assert(wait_until(thread_count() == threads, 3000),
				  "a thread was left behind");
		}
	}
	cr_assert(made, "cache_new never succeeded");

	scoped(cache) c = cache_new(&(cache_config){ .value_free = free, .value_dup = dup_str });
	cr_assert(c);
	char *mine = strdup("mine");
	arm(0);
	errno = 0;
	int rc = cache_set(c, "k", mine, 0);	/* the node allocation fails */
	int e = errno;
	long net = fail_net;
	disarm();
	cr_assert_eq(rc, -1);
	cr_assert_eq(e, ENOMEM);
	cr_assert_eq(net, 0);
	cr_assert_eq(cache_count(c), 0);
	cr_assert_str_eq(mine, "mine", "the value stays the caller's");
	cr_assert_eq(cache_set(c, "k", mine, 0), 0);

	/* Growing a stripe fails: sets go on in the old slots while one stays free, then on the
	 * stripe's overflow list; the next successful growth moves them into slots. Lookups,
	 * deletes and sweeps find them either way. */
	enum { G = 3000 };
	size_t expiring = 0, deleted = 0;
	for (int i = 0; i < G; i++) {
		char key[16];
		snprintf(key, sizeof key, "g%d", i);
		char *v = strdup("v");
		cr_assert(v);
		arm(1);	/* the node allocation succeeds, every grow fails */
		rc = cache_set(c, key, v, i % 3 == 0 ? 10 : CACHE_NO_EXPIRATION);
		disarm();
		cr_assert_eq(rc, 0, "%s", key);
		expiring += i % 3 == 0;
	}
	cr_assert_eq(cache_count(c), G + 1);
	for (int i = 0; i < G; i++) {
		char key[16];
		snprintf(key, sizeof key, "g%d", i);
		if (i % 3 != 0)
			cr_assert(get_is(c, key, "v"), "%s", key);
		if (i % 5 == 1) {
			cache_delete(c, key);
			deleted++;
			expiring -= i % 3 == 0;
		}
	}
	cr_assert(wait_until(absent(c, "g0"), 2000));
	cr_assert(wait_until(absent(c, "g2997"), 2000));
	cr_assert_eq(cache_delete_expired(c), expiring);
	cr_assert_eq(cache_count(c), G + 1 - deleted - expiring);
	for (int i = 0; i < 1000; i++) {	/* memory is back: stripes grow */
		char key[16];
		snprintf(key, sizeof key, "h%d", i);
		cr_assert_eq(cache_set(c, key, strdup("w"), 0), 0);
	}
	for (int i = 0; i < G; i++) {
		char key[16];
		snprintf(key, sizeof key, "g%d", i);
		bool want = i % 3 != 0 && i % 5 != 1;
		cr_assert_eq(cache_get(c, key, NULL), want, "%s", key);
	}
	cr_assert_eq(cache_count(c), G + 1 - deleted - expiring + 1000);
}
#else
Test(cache, every_allocation_failure_leaves_nothing)
{
	cr_skip_test("the sanitizer owns malloc in this build");
}
#endif

/* ---- threads: value lifetime under concurrent eviction ------------------------------------ */

typedef struct hammer {
	cache *c;
	int id;
	atomic_bool *go;
	long gets, hits;
} hammer;

enum { KEYS = 64, THREADS = 8, ROUNDS = 4000 };

static void *hammer_run(void *arg)
{
	hammer *h = arg;
	unsigned seed = (unsigned)h->id * 2654435761u;
	while (!atomic_load(h->go))
		sched_yield();
	char key[16];
	for (int r = 0; r < ROUNDS; r++) {
		seed = seed * 1103515245u + 12345u;
		int k = (int)((seed >> 8) % KEYS);
		snprintf(key, sizeof key, "k%d", k);
		switch ((seed >> 20) % 8) {
		case 0: {
			tval *v = tval_new(k);
			if (cache_set(h->c, key, v, 1 + (seed >> 24) % 3) != 0)
				tval_unref(v);
			break;
		}
		case 1: {
			tval *v = tval_new(k);
			if (cache_add(h->c, key, v, CACHE_NO_EXPIRATION) != 0) {
				CHECK(errno == EEXIST, "add: errno");
				tval_unref(v);
			}
			break;
		}
		case 2: {
			tval *v = tval_new(k);
			if (cache_replace(h->c, key, v, 2) != 0) {
				CHECK(errno == ENOENT, "replace: errno");
				tval_unref(v);
			}
			break;
		}
		case 3:
			cache_delete(h->c, key);
			break;
		case 4:
			if (h->id == 0)
				cache_delete_expired(h->c);
			break;
		default: {
			void *p;
			h->gets++;
			if (cache_get(h->c, key, &p)) {
				tval *v = p;
				h->hits++;
				sched_yield();	/* let others evict it meanwhile */
				CHECK(atomic_load(&v->magic) == MAGIC, "value freed under its user");
				CHECK(v->id == k, "value of another key");
				tval_unref(v);
			}
		}
		}
	}
	return NULL;
}

static atomic_int evictions;

static void count_eviction(const char *key, void *value, void *arg)
{
	(void)arg;
	tval *v = value;
	CHECK(atomic_load(&v->magic) == MAGIC, "on_evicted: freed value");
	CHECK(key[0] == 'k', "on_evicted: key");
	atomic_fetch_add(&evictions, 1);
}

Test(cache, many_threads_values_outlive_eviction, .timeout = 30)
{
	atomic_store(&live_vals, 0);
	int before = thread_count();
	{
		scoped(cache) c = cache_new(&(cache_config){
			.default_ttl_ms = 3,
			.cleanup_ms = 1,
			.value_free = tval_unref,
			.value_dup = tval_ref,
			.on_evicted = count_eviction,
		});
		cr_assert(c);
		atomic_bool go = false;
		pthread_t th[THREADS];
		hammer hs[THREADS];
		for (int i = 0; i < THREADS; i++) {
			hs[i] = (hammer){ .c = c, .id = i, .go = &go };
			cr_assert_eq(pthread_create(&th[i], NULL, hammer_run, &hs[i]), 0);
		}
		atomic_store(&go, true);
		long gets = 0, hits = 0;
		for (int i = 0; i < THREADS; i++) {
			pthread_join(th[i], NULL);
			gets += hs[i].gets;
			hits += hs[i].hits;
		}
		cr_assert_gt(hits, 0, "no get hit in %ld gets", gets);
		cr_assert_gt(atomic_load(&evictions), 0);
		cr_assert_leq(cache_count(c), KEYS);
	}
	cr_assert_no_bad();
	cr_assert_eq(atomic_load(&live_vals), 0, "every value freed exactly once");
	cr_assert(wait_until(thread_count() == before, 3000));
}

/* A reader keeps its value while the janitor expires the item and frees the cache's reference. */
Test(cache, value_survives_janitor_eviction)
{
	atomic_store(&live_vals, 0);
	scoped(cache) c = cache_new(&(cache_config){
		.cleanup_ms = 1,
		.value_free = tval_unref,
		.value_dup = tval_ref,
	});
	cr_assert(c);
	cr_assert_eq(cache_set(c, "k", tval_new(7), 5), 0);
	void *p;
	cr_assert(cache_get(c, "k", &p));
	tval *v = p;
	cr_assert(wait_until(cache_count(c) == 0, 3000), "janitor did not evict");
	cr_assert_eq(atomic_load(&v->magic), MAGIC);
	cr_assert_eq(v->id, 7);
	cr_assert_eq(atomic_load(&live_vals), 1, "only the reader's reference is left");
	tval_unref(v);
	cr_assert_eq(atomic_load(&live_vals), 0);
	cr_assert_no_bad();
}
