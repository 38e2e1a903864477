#define _GNU_SOURCE
/*
 * cache.c - a striped hash table with per-item expiry, swept by a scoped_worker in short lock
 * holds. See cache.h for the contract.
 *
 * Layout: the `cache` handle (the wrapper) owns the janitor and points at the inner table; the
 * janitor's ctx is the inner table only. The table is STRIPES stripes; a key's stripe is chosen
 * by the top bits of its 64-bit hash. Each stripe has its own lock, item count and slot array,
 * and grows on its own (a resize stalls one stripe, for 1/STRIPES of the items).
 *
 * A stripe is open addressing with linear probing. A slot holds the key's hash, the item's
 * expiry and a pointer to its node (value, key inline); a hash of 0 marks an empty slot.
 * Keeping hash and expiry in the slot array means a lookup skips other keys' nodes, an expired
 * item is recognized without touching its node, and a sweep or a resize reads one contiguous
 * array: the janitor's lock holds are a few hundred nanoseconds. Deletion shifts the following
 * entries of the cluster back (no tombstones). When growing a stripe fails for lack of memory,
 * items that find no slot go on the stripe's overflow list (a plain linked list, empty in
 * normal operation) and move into slots at the next successful growth. Expiry is an absolute CLOCK_MONOTONIC time in
 * ms (0: never), set from the precise clock and checked against the coarse one. Callbacks other than value_dup run with no lock held.
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
	STRIPE_SLOTS0 = 8,	/* initial slots per stripe (a power of two) */
	SWEEP_SLOTS = 512,	/* slots examined per lock hold */
	SWEEP_REMOVALS = 64,	/* or items removed per lock hold, whichever first */
};

typedef struct node {
	struct node *next;	/* on the overflow list, or a detached list of evicted nodes */
	void *value;
	long long expire_ms;	/* on the overflow list only: there the node has no slot */
	size_t keylen;
	char key[];
} node;

typedef struct slot {
	uint64_t hash;		/* 0: empty */
	long long expire_ms;	/* 0: never */
	node *n;
} slot;

typedef struct stripe {
	atomic_int lock;
	size_t mask;		/* slots - 1 */
	slot *slots;
	atomic_size_t count;	/* items, in slots or overflow; written under lock, read anywhere */
	node *overflow;		/* items that found no slot because growing failed (no memory) */
	size_t spilled;		/* items on the overflow list */
} stripe;

/* One stripe per cache line, so two threads on two stripes do not share one. */
typedef union stripe_line {
	stripe s;
	char pad[64];
} stripe_line;

/* The inner object: everything the janitor touches. */
typedef struct cache_inner {
	stripe_line *stripes;
	long long default_ttl_ms;
	void (*value_free)(void *);
	void *(*value_dup)(const void *);
	void (*on_evicted)(const char *, void *, void *);
	void *arg;
	atomic_bool stopping;	/* the janitor's sweep gives up early */
} cache_inner;

/* The wrapper: what the caller holds. */
struct cache {
	cache_inner *in;
	scoped_worker *janitor;	/* NULL: none */
};

/* ---- helpers ------------------------------------------------------------------------------ */

/* Reads use the cheap coarse clock; expiries are set from the precise one, rounded up. The
 * coarse clock never runs ahead of the precise one (it can lag it by a few ticks on a busy VM),
 * so an item is never seen expired before its TTL has passed; it may live a few ms longer. */
static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long precise_ms_ceil(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000;
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

/* The key's hash; never 0, which marks an empty slot. */
static inline uint64_t key_hash(const char *key, size_t len)
{
	uint64_t h = hash_key(key, len);
	return h ? h : 1;
}

/* The slot holding key, or NULL. */
static inline slot *find(stripe *s, uint64_t h, const char *key, size_t len)
{
	for (size_t i = h & s->mask;; i = (i + 1) & s->mask) {
		slot *sl = &s->slots[i];
		if (sl->hash == 0)
			return NULL;
		if (sl->hash == h && sl->n->keylen == len && memcmp(sl->n->key, key, len) == 0)
			return sl;
	}
}

/* Places an entry known to be absent; the stripe has a free slot. */
static inline void place(slot *slots, size_t mask, slot e)
{
	size_t i = e.hash & mask;
	while (slots[i].hash != 0)
		i = (i + 1) & mask;
	slots[i] = e;
}

/* Empties slot i and shifts back the entries of its cluster that probed past it. */
static void remove_at(stripe *s, size_t i)
{
	size_t mask = s->mask;
	for (size_t j = (i + 1) & mask; s->slots[j].hash != 0; j = (j + 1) & mask) {
		size_t home = s->slots[j].hash & mask;
		/* the entry at j may move to i unless its home lies cyclically in (i, j] */
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			s->slots[i] = s->slots[j];
			i = j;
		}
	}
	s->slots[i] = (slot){ 0 };
}

/* Where an item lives: a slot, or the overflow list. */
typedef struct ref {
	node *n;
	long long *expire_ms;	/* in the slot, or in the node on the overflow list */
	slot *sl;		/* NULL: on the overflow list, */
	node **link;		/* at this link */
} ref;

static inline bool lookup(stripe *s, uint64_t h, const char *key, size_t len, ref *r)
{
	slot *sl = find(s, h, key, len);
	if (sl) {
		*r = (ref){ .n = sl->n, .expire_ms = &sl->expire_ms, .sl = sl };
		return true;
	}
	if (__builtin_expect(s->overflow != NULL, 0))
		for (node **link = &s->overflow; *link; link = &(*link)->next) {
			node *n = *link;
			if (n->keylen == len && memcmp(n->key, key, len) == 0) {
				*r = (ref){ .n = n, .expire_ms = &n->expire_ms, .link = link };
				return true;
			}
		}
	return false;
}

/* Takes the item out of the stripe; its node is the caller's. */
static void unlink_ref(stripe *s, const ref *r)
{
	if (r->sl) {
		remove_at(s, (size_t)(r->sl - s->slots));
	} else {
		*r->link = r->n->next;
		s->spilled--;
	}
	r->n->next = NULL;
	size_t v = atomic_load_explicit(&s->count, memory_order_relaxed);
	atomic_store_explicit(&s->count, v - 1, memory_order_relaxed);
}

static inline bool expired(long long expire_ms, long long now)
{
	return expire_ms != 0 && now > expire_ms;
}

/* The same, reading the clock only for an item that can expire. */
static inline bool expired_now(long long expire_ms)
{
	return expire_ms != 0 && now_ms() > expire_ms;
}

static long long expiry_for(const cache_inner *in, long long ttl_ms)
{
	if (ttl_ms == CACHE_DEFAULT_TTL)
		ttl_ms = in->default_ttl_ms;
	if (ttl_ms <= 0)
		return 0;
	long long now = precise_ms_ceil();
	if (ttl_ms > LLONG_MAX - now)
		return 0;	/* beyond the end of time: never */
	return now + ttl_ms;
}

/* Doubles the stripe's slots and moves overflow items into them while a quarter stays free;
 * on allocation failure keeps everything as it is. Reads the slot array, not the nodes. */
static void stripe_grow(stripe *s)
{
	size_t n = (s->mask + 1) * 2;
	slot *ns = calloc(n, sizeof *ns);
	if (!ns)
		return;
	for (size_t i = 0; i <= s->mask; i++)
		if (s->slots[i].hash != 0)
			place(ns, n - 1, s->slots[i]);
	free(s->slots);
	s->slots = ns;
	s->mask = n - 1;
	size_t used = atomic_load_explicit(&s->count, memory_order_relaxed) - s->spilled;
	while (s->overflow && used + 1 < n - n / 4) {
		node *o = s->overflow;
		s->overflow = o->next;
		o->next = NULL;
		place(ns, n - 1, (slot){ .hash = key_hash(o->key, o->keylen),
					 .expire_ms = o->expire_ms, .n = o });
		s->spilled--;
		used++;
	}
}

static void count_add(stripe *s, long d)
{
	size_t v = atomic_load_explicit(&s->count, memory_order_relaxed);
	atomic_store_explicit(&s->count, v + (size_t)d, memory_order_relaxed);
}

/* Runs on_evicted then value_free for a removed node, and frees it. */
static void evict(const cache_inner *in, node *n)
{
	if (in->on_evicted)
		in->on_evicted(n->key, n->value, in->arg);
	if (in->value_free && n->value)
		in->value_free(n->value);
	free(n);
}

/*
 * Removes expired items in slices: lock one stripe, examine up to SWEEP_SLOTS slots (removing
 * at most SWEEP_REMOVALS items), unlock, then run the callbacks and free the removed nodes.
 * Only the slot array is touched under the lock (the removed nodes are noted in an array on
 * the stack, so their cache lines are not fetched). A removal shifts a later entry into the current
 * slot, so the slot is examined again. Writers between slices may shift entries past the
 * sweep's position; such an item is left for the next sweep.
 */
static size_t sweep(cache_inner *in, bool stoppable)
{
	size_t removed = 0;
	for (size_t si = 0; si < STRIPES; si++) {
		stripe *s = &in->stripes[si].s;
		size_t i = 0;
		for (bool done = false; !done;) {
			if (stoppable && atomic_load_explicit(&in->stopping, memory_order_relaxed))
				return removed;
			node *dead[SWEEP_REMOVALS], *dead_overflow = NULL;
			long long now = now_ms();
			size_t examined = 0, unlinked = 0, spilled_dead = 0;
			stripe_lock(s);
			if (atomic_load_explicit(&s->count, memory_order_relaxed) == 0)
				i = s->mask + 1;
			while (i <= s->mask && examined < SWEEP_SLOTS && unlinked < SWEEP_REMOVALS) {
				slot *sl = &s->slots[i];
				examined++;
				if (sl->hash != 0 && expired(sl->expire_ms, now)) {
					dead[unlinked++] = sl->n;
					remove_at(s, i);
				} else {
					i++;
				}
			}
			done = i > s->mask;
			if (done && s->overflow)	/* only after a failed growth: rare and short */
				for (node **link = &s->overflow; *link;) {
					node *n = *link;
					if (expired(n->expire_ms, now)) {
						*link = n->next;
						n->next = dead_overflow;
						dead_overflow = n;
						s->spilled--;
						spilled_dead++;
					} else {
						link = &n->next;
					}
				}
			if (unlinked + spilled_dead)
				count_add(s, -(long)(unlinked + spilled_dead));
			stripe_unlock(s);
			for (size_t k = 0; k < unlinked; k++)
				evict(in, dead[k]);
			while (dead_overflow) {
				node *n = dead_overflow;
				dead_overflow = n->next;
				evict(in, n);
			}
			removed += unlinked + spilled_dead;
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
			if (!s->slots)
				continue;
			for (size_t i = 0; i <= s->mask; i++) {
				node *n = s->slots[i].n;
				if (s->slots[i].hash == 0)
					continue;
				if (in->value_free && n->value)
					in->value_free(n->value);
				free(n);
			}
			free(s->slots);
			while (s->overflow) {
				node *n = s->overflow;
				s->overflow = n->next;
				if (in->value_free && n->value)
					in->value_free(n->value);
				free(n);
			}
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
	in->stripes = aligned_alloc(sizeof(stripe_line), STRIPES * sizeof(stripe_line));
	if (!in->stripes)
		goto fail;
	memset(in->stripes, 0, STRIPES * sizeof(stripe_line));
	for (size_t si = 0; si < STRIPES; si++) {
		stripe *s = &in->stripes[si].s;
		atomic_init(&s->lock, 0);
		atomic_init(&s->count, 0);
		s->mask = STRIPE_SLOTS0 - 1;
		s->slots = calloc(STRIPE_SLOTS0, sizeof *s->slots);
		if (!s->slots)
			goto fail;
	}
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

/* Where key lives: its length, hash and stripe. false with EINVAL for a NULL cache or key. */
struct place {
	size_t len;
	uint64_t h;
	stripe *s;
};

static inline bool locate(const cache *c, const char *key, struct place *p)
{
	if (!c || !key) {
		errno = EINVAL;
		return false;
	}
	p->len = strlen(key);
	p->h = key_hash(key, p->len);
	p->s = stripe_of(c->in, p->h);
	return true;
}

static int store(cache *c, const char *key, void *value, long long ttl_ms,
				 enum store_mode mode)
{
	struct place p;
	if (!locate(c, key, &p))
		return -1;
	cache_inner *in = c->in;
	stripe *s = p.s;
	long long expire = expiry_for(in, ttl_ms);
	node *spare = NULL;
	for (;;) {
		stripe_lock(s);
		ref r;
		if (lookup(s, p.h, key, p.len, &r)) {
			bool live = mode == STORE_SET || !expired_now(*r.expire_ms);
			if ((mode == STORE_ADD && live) || (mode == STORE_REPLACE && !live)) {
				stripe_unlock(s);
				free(spare);
				errno = live ? EEXIST : ENOENT;
				return -1;
			}
			void *old = r.n->value;
			r.n->value = value;
			*r.expire_ms = expire;
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
			/* Keep a quarter of the slots free, so probes stay short. When growing
			 * fails, use the old slots while one stays free (probes end there), then
			 * the overflow list. */
			size_t cnt = atomic_load_explicit(&s->count, memory_order_relaxed) + 1;
			if (cnt - s->spilled >= (s->mask + 1) - (s->mask + 1) / 4 || s->spilled)
				stripe_grow(s);
			spare->value = value;
			spare->next = NULL;
			if (cnt - s->spilled < s->mask + 1) {
				place(s->slots, s->mask,
				      (slot){ .hash = p.h, .expire_ms = expire, .n = spare });
			} else {
				spare->expire_ms = expire;
				spare->next = s->overflow;
				s->overflow = spare;
				s->spilled++;
			}
			atomic_store_explicit(&s->count, cnt, memory_order_relaxed);
			stripe_unlock(s);
			return 0;
		}
		stripe_unlock(s);
		spare = malloc(sizeof *spare + p.len + 1);
		if (!spare) {
			errno = ENOMEM;
			return -1;
		}
		spare->keylen = p.len;
		memcpy(spare->key, key, p.len + 1);
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
	struct place p;
	if (!locate(c, key, &p))
		return false;
	cache_inner *in = c->in;
	stripe *s = p.s;
	stripe_lock(s);
	ref r;
	if (!lookup(s, p.h, key, p.len, &r) || expired_now(*r.expire_ms)) {
		stripe_unlock(s);
		errno = ENOENT;
		return false;
	}
	void *v = r.n->value;
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
	struct place p;
	if (!locate(c, key, &p))
		return false;
	cache_inner *in = c->in;
	stripe *s = p.s;
	stripe_lock(s);
	ref r;
	node *n = NULL;
	bool live = false;
	if (lookup(s, p.h, key, p.len, &r)) {
		n = r.n;
		live = !expired_now(*r.expire_ms);
		unlink_ref(s, &r);
	}
	stripe_unlock(s);
	if (n)
		evict(in, n);
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
