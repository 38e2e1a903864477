#define _GNU_SOURCE
/*
 * cache.c - a striped, chained hash table with per-item expiry, swept by a
 * scoped_worker in short lock holds. See cache.h for the contract.
 *
 * Layout: the `cache` handle (the wrapper) owns the janitor and points at the
 * inner table; the janitor's ctx is the inner table only. The table is
 * STRIPES stripes; a key's stripe is chosen by the top bits of its 64-bit
 * hash, its bucket within the stripe by the low bits. Each stripe has its own
 * spinlock, bucket array and item count, and grows on its own (so a resize
 * stalls one stripe, for 1/STRIPES of the items). Items are nodes with the
 * key inline. Expiry is an absolute CLOCK_MONOTONIC_COARSE time in ms (0:
 * never). Callbacks other than value_dup run with no lock held.
 */
#include "cache/cache.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
	STRIPE_BITS = 8,
	STRIPES = 1 << STRIPE_BITS,
	STRIPE_BUCKETS0 = 4,     /* initial buckets per stripe */
	SWEEP_BUCKETS = 64,	/* buckets swept per lock hold */
	SWEEP_NODES = 64,	/* or nodes visited per lock hold, whichever first */
};

typedef struct node {
	struct node *next;
	uint64_t hash;
	long long expire_ms;     /* 0: never */
	void *value;
	size_t keylen;
	char key[];
} node;

typedef struct stripe {
	atomic_int lock;
	size_t mask;             /* buckets - 1 */
	node **buckets;
	atomic_size_t count;     /* written under lock, read anywhere (relaxed) */
} stripe;

/* One stripe per cache line, so two threads on two stripes do not share one. */
typedef union stripe_slot {
	stripe s;
	char pad[64];
} stripe_slot;

/* The inner object: everything the janitor touches. */
typedef struct cache_inner {
	stripe_slot *stripes;
	long long default_ttl_ms;
	long long slack_ms;      /* coarse clock resolution, added to expiries */
	void (*value_free)(void *);
	void *(*value_dup)(const void *);
	void (*on_evicted)(const char *, void *, void *);
	void *arg;
	atomic_bool stopping;    /* the janitor's sweep gives up early */
} cache_inner;

/* The wrapper: what the caller holds. */
struct cache {
	cache_inner *in;
	scoped_worker *janitor;  /* NULL: none, or stopped and freed */
};

/* ---- helpers ---------------------------------------------------------- */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * A test-and-set lock: one atomic exchange to take it, a plain release store to drop it, so an
 * uncontended get costs one atomic operation. Holds are short (a lookup, a value_dup, a sweep
 * slice). A waiter spins briefly, then sleeps in short naps rather than sched_yield(): if the
 * holder was preempted, the waiter's core goes idle and the scheduler can move the holder onto
 * it, instead of the waiter yielding to nobody for a whole time slice.
 */
static inline void stripe_lock(stripe *s)
{
	for (;;) {
		if (!atomic_exchange_explicit(&s->lock, 1, memory_order_acquire))
			return;
		for (unsigned spins = 0;
		     atomic_load_explicit(&s->lock, memory_order_relaxed); spins++) {
			if (spins < 500)
				spin_pause();
			else
				nanosleep(&(struct timespec){ 0, 20000 }, NULL);
		}
	}
}

static inline void stripe_unlock(stripe *s)
{
	atomic_store_explicit(&s->lock, 0, memory_order_release);
}

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 31;
	x *= UINT64_C(0x9e3779b97f4a7c15);
	x ^= x >> 29;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 32;
	return x;
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

static inline uint64_t load32(const unsigned char *p)
{
	uint32_t w;
	memcpy(&w, p, 4);
	return w;
}

/* 8 bytes at a time, multiply-rotate per word; the last 1..8 bytes are read as (possibly
 * overlapping) whole words rather than byte by byte; one final mix. */
static inline uint64_t hash_key(const char *key, size_t len)
{
	const unsigned char *p = (const unsigned char *)key;
	uint64_t h = UINT64_C(0x6a09e667f3bcc908) ^ (len * UINT64_C(0xc2b2ae3d27d4eb4f));
	size_t n = len;
	while (n > 8) {
		h = (h ^ load64(p)) * UINT64_C(0x9e3779b97f4a7c15);
		h = (h << 27) | (h >> 37);
		p += 8;
		n -= 8;
	}
	uint64_t w;
	if (n == 8)
		w = load64(p);
	else if (n >= 4)
		w = load32(p) | load32(p + n - 4) << 32;
	else if (n > 0)
		w = (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
	else
		w = 0;
	h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
	return mix64(h);
}

static inline stripe *stripe_of(const cache_inner *in, uint64_t h)
{
	return &in->stripes[h >> (64 - STRIPE_BITS)].s;
}

/* The link that points at key's node, or at the NULL ending its chain. */
static inline node **find_link(stripe *s, uint64_t h, const char *key, size_t len)
{
	node **link = &s->buckets[h & s->mask];
	for (node *n = *link; n; link = &n->next, n = *link)
		if (n->hash == h && n->keylen == len && memcmp(n->key, key, len) == 0)
			return link;
	return link;
}

static inline bool expired(const node *n, long long now)
{
	return n->expire_ms != 0 && now > n->expire_ms;
}

/* The same, reading the clock only for an item that can expire. */
static inline bool expired_now(const node *n)
{
	return n->expire_ms != 0 && now_ms() > n->expire_ms;
}

static long long expiry_for(const cache_inner *in, long long ttl_ms)
{
	if (ttl_ms == CACHE_DEFAULT_TTL)
		ttl_ms = in->default_ttl_ms;
	if (ttl_ms <= 0)
		return 0;
	long long now = now_ms();
	if (ttl_ms > LLONG_MAX - now - in->slack_ms)
		return 0;  /* beyond the end of time: never */
	return now + ttl_ms + in->slack_ms;
}

/* Doubles the stripe's buckets; on allocation failure keeps the old ones. */
static void stripe_grow(stripe *s)
{
	size_t nb = (s->mask + 1) * 2;
	node **b = calloc(nb, sizeof *b);
	if (!b)
		return;
	for (size_t i = 0; i <= s->mask; i++) {
		node *n = s->buckets[i];
		while (n) {
			node *next = n->next;
			node **slot = &b[n->hash & (nb - 1)];
			n->next = *slot;
			*slot = n;
			n = next;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->mask = nb - 1;
}

static void count_add(stripe *s, long d)
{
	size_t v = atomic_load_explicit(&s->count, memory_order_relaxed);
	atomic_store_explicit(&s->count, v + (size_t)d, memory_order_relaxed);
}

/* Runs on_evicted then value_free for each node of a detached list, frees it. */
static size_t evict_list(const cache_inner *in, node *list)
{
	size_t k = 0;
	while (list) {
		node *next = list->next;
		if (in->on_evicted)
			in->on_evicted(list->key, list->value, in->arg);
		if (in->value_free && list->value)
			in->value_free(list->value);
		free(list);
		list = next;
		k++;
	}
	return k;
}

/* Removes expired items in slices: lock one stripe, unlink the expired items
 * of up to SWEEP_BUCKETS buckets (SWEEP_NODES nodes), unlock, evict them. */
static size_t sweep(cache_inner *in, bool stoppable)
{
	size_t removed = 0;
	for (size_t si = 0; si < STRIPES; si++) {
		stripe *s = &in->stripes[si].s;
		size_t b = 0;
		for (;;) {
			if (stoppable && atomic_load_explicit(&in->stopping, memory_order_relaxed))
				return removed;
			node *dead = NULL;
			long long now = now_ms();
			size_t visited = 0, unlinked = 0;
			stripe_lock(s);
			if (atomic_load_explicit(&s->count, memory_order_relaxed) == 0)
				b = s->mask + 1;
			size_t end = b + SWEEP_BUCKETS;
			/* Ask for the slice's first nodes all at once: the misses overlap instead of
			 * following one another, and the lock is held that much shorter. */
			for (size_t p = b; p <= s->mask && p < end; p++)
				if (s->buckets[p])
					__builtin_prefetch(s->buckets[p]);
			for (; b <= s->mask && b < end && visited < SWEEP_NODES; b++) {
				node **link = &s->buckets[b];
				while (*link) {
					node *n = *link;
					visited++;
					if (expired(n, now)) {
						*link = n->next;
						n->next = dead;
						dead = n;
						unlinked++;
					} else {
						link = &n->next;
					}
				}
			}
			if (unlinked)
				count_add(s, -(long)unlinked);
			bool done = b > s->mask;
			stripe_unlock(s);
			removed += evict_list(in, dead);
			if (done)
				break;
		}
	}
	return removed;
}

static void janitor_tick(void *ctx)
{
	sweep(ctx, true);
}

static void inner_free(cache_inner *in)
{
	if (!in)
		return;
	if (in->stripes) {
		for (size_t si = 0; si < STRIPES; si++) {
			stripe *s = &in->stripes[si].s;
			if (!s->buckets)
				continue;
			for (size_t b = 0; b <= s->mask; b++) {
				node *n = s->buckets[b];
				while (n) {
					node *next = n->next;
					if (in->value_free && n->value)
						in->value_free(n->value);
					free(n);
					n = next;
				}
			}
			free(s->buckets);
		}
		free(in->stripes);
	}
	free(in);
}

/* ---- public ----------------------------------------------------------- */

cache *cache_new(const cache_config *cfg)
{
	if (!cfg || (cfg->value_free && !cfg->value_dup)) {
		errno = EINVAL;
		return NULL;
	}
	cache_inner *in = calloc(1, sizeof *in);
	cache *c = calloc(1, sizeof *c);
	if (!in || !c)
		goto fail;
	in->stripes = aligned_alloc(sizeof(stripe_slot), STRIPES * sizeof(stripe_slot));
	if (!in->stripes)
		goto fail;
	memset(in->stripes, 0, STRIPES * sizeof(stripe_slot));
	for (size_t si = 0; si < STRIPES; si++) {
		stripe *s = &in->stripes[si].s;
		atomic_init(&s->lock, 0);
		atomic_init(&s->count, 0);
		s->mask = STRIPE_BUCKETS0 - 1;
		s->buckets = calloc(STRIPE_BUCKETS0, sizeof *s->buckets);
		if (!s->buckets)
			goto fail;
	}
	struct timespec res;
	in->slack_ms = 1;
	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
		in->slack_ms = (long long)res.tv_sec * 1000 + (res.tv_nsec + 999999) / 1000000;
	in->default_ttl_ms = cfg->default_ttl_ms;
	in->value_free = cfg->value_free;
	in->value_dup = cfg->value_dup;
	in->on_evicted = cfg->on_evicted;
	in->arg = cfg->arg;
	atomic_init(&in->stopping, false);
	c->in = in;
	if (cfg->cleanup_ms > 0) {
		unsigned period = cfg->cleanup_ms > UINT_MAX ? UINT_MAX : (unsigned)cfg->cleanup_ms;
		/* Wrapped return: the janitor gets the inner object, never `c`. */
		c->janitor = scoped_worker_start(&(scoped_worker_config){
			.name = "cache-janitor",
			.period_ms = period,
			.tick = janitor_tick,
			.ctx = in,
		});
		if (!c->janitor)
			goto fail;
	}
	return c;
fail:;
	int e = errno;
	inner_free(in);
	free(c);
	errno = e ? e : ENOMEM;
	return NULL;
}

void cache_stop(cache *c)
{
	if (!c)
		return;
	atomic_store(&c->in->stopping, true);
	if (c->janitor)
		scoped_worker_stop(c->janitor);
}

void cache_close(cache *c)
{
	if (!c)
		return;
	int e = errno;
	cache_stop(c);
	scoped_worker_close(c->janitor);
	inner_free(c->in);
	free(c);
	errno = e;
}

enum store_mode { STORE_SET, STORE_ADD, STORE_REPLACE };

static int store(cache *c, const char *key, void *value, long long ttl_ms,
				 enum store_mode mode)
{
	if (!c || !key) {
		errno = EINVAL;
		return -1;
	}
	cache_inner *in = c->in;
	size_t len = strlen(key);
	uint64_t h = hash_key(key, len);
	stripe *s = stripe_of(in, h);
	long long expire = expiry_for(in, ttl_ms);
	node *spare = NULL;
	for (;;) {
		stripe_lock(s);
		node **link = find_link(s, h, key, len);
		node *n = *link;
		if (n) {
			bool live = mode == STORE_SET || !expired_now(n);
			if ((mode == STORE_ADD && live) || (mode == STORE_REPLACE && !live)) {
				stripe_unlock(s);
				free(spare);
				errno = live ? EEXIST : ENOENT;
				return -1;
			}
			void *old = n->value;
			n->value = value;
			n->expire_ms = expire;
			stripe_unlock(s);
			free(spare);
			if (in->value_free && old && old != value)
				in->value_free(old);
			return 0;
		}
		if (mode == STORE_REPLACE) {
			stripe_unlock(s);
			free(spare);
			errno = ENOENT;
			return -1;
		}
		if (spare) {
			spare->value = value;
			spare->expire_ms = expire;
			spare->next = NULL;
			*link = spare;
			size_t cnt = atomic_load_explicit(&s->count, memory_order_relaxed) + 1;
			atomic_store_explicit(&s->count, cnt, memory_order_relaxed);
			if (cnt > s->mask + 1)
				stripe_grow(s);
			stripe_unlock(s);
			return 0;
		}
		stripe_unlock(s);
		spare = malloc(sizeof *spare + len + 1);
		if (!spare) {
			errno = ENOMEM;
			return -1;
		}
		spare->hash = h;
		spare->keylen = len;
		memcpy(spare->key, key, len + 1);
	}
}

int cache_set(cache *c, const char *key, void *value, long long ttl_ms)
{
	return store(c, key, value, ttl_ms, STORE_SET);
}

int cache_add(cache *c, const char *key, void *value, long long ttl_ms)
{
	return store(c, key, value, ttl_ms, STORE_ADD);
}

int cache_replace(cache *c, const char *key, void *value, long long ttl_ms)
{
	return store(c, key, value, ttl_ms, STORE_REPLACE);
}

bool cache_get(cache *c, const char *key, void **value)
{
	if (!c || !key) {
		errno = EINVAL;
		return false;
	}
	cache_inner *in = c->in;
	size_t len = strlen(key);
	uint64_t h = hash_key(key, len);
	stripe *s = stripe_of(in, h);
	stripe_lock(s);
	node *n = *find_link(s, h, key, len);
	if (!n || expired_now(n)) {
		stripe_unlock(s);
		errno = ENOENT;
		return false;
	}
	void *v = n->value;
	if (value && v && in->value_dup) {
		v = in->value_dup(v);
		if (!v) {
			stripe_unlock(s);
			errno = ENOMEM;
			return false;
		}
	}
	stripe_unlock(s);
	if (value)
		*value = v;
	return true;
}

bool cache_delete(cache *c, const char *key)
{
	if (!c || !key) {
		errno = EINVAL;
		return false;
	}
	cache_inner *in = c->in;
	size_t len = strlen(key);
	uint64_t h = hash_key(key, len);
	stripe *s = stripe_of(in, h);
	stripe_lock(s);
	node **link = find_link(s, h, key, len);
	node *n = *link;
	bool live = false;
	if (n) {
		*link = n->next;
		n->next = NULL;
		count_add(s, -1);
		live = !expired_now(n);
	}
	stripe_unlock(s);
	evict_list(in, n);
	if (!live)
		errno = ENOENT;
	return live;
}

size_t cache_delete_expired(cache *c)
{
	if (!c) {
		errno = EINVAL;
		return 0;
	}
	return sweep(c->in, false);
}

size_t cache_count(const cache *c)
{
	if (!c)
		return 0;
	size_t total = 0;
	for (size_t si = 0; si < STRIPES; si++)
		total += atomic_load_explicit(&c->in->stripes[si].s.count, memory_order_relaxed);
	return total;
}
