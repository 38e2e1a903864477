/*
 * cache.h - an in-memory key/value cache with expiry and a janitor thread,
 * with the semantics of Go's patrickmn/go-cache.
 *
 *     scoped(cache) c = cache_new(&(cache_config){
 *         .default_ttl_ms = 5 * 60 * 1000,      // items live 5 minutes by default
 *         .cleanup_ms     = 10 * 60 * 1000,     // a janitor sweeps every 10 minutes
 *         .value_free     = free,               // the cache owns what you store...
 *         .value_dup      = my_strdup,          // ...and hands out copies
 *     });
 *     if (!c) return -1;                        // errno says why
 *     cache_set(c, "foo", strdup("bar"), CACHE_DEFAULT_TTL);
 *     void *v;
 *     if (cache_get(c, "foo", &v)) { puts(v); free(v); }
 *     // leaving the scope stops the janitor, joins it and frees every item
 *
 * The story. go-cache's New starts a janitor goroutine. If that goroutine held
 * the cache, a forgotten cache would never be collected and the goroutine would
 * run forever. So go-cache returns a wrapper; the janitor holds only the inner
 * object; a finalizer on the wrapper stops the janitor. Here the wrapper is
 * the `cache *` you get, the janitor (a scoped_worker) is handed only the inner
 * table, and `scoped(cache)` is the finalizer: it runs at the end of the
 * scope, every time, instead of "some time after the last reference is gone".
 *
 * Semantics (go-cache's, unless said otherwise):
 *  - An item expires ttl_ms after it was set. CACHE_DEFAULT_TTL (0) uses the
 *    cache's default_ttl_ms; CACHE_NO_EXPIRATION (-1, any negative) never
 *    expires; default_ttl_ms <= 0 means the default is "never".
 *    Time is CLOCK_MONOTONIC_COARSE (a few ms per tick): an item is never seen
 *    expired before ttl_ms has passed, and may stay visible up to two ticks
 *    longer (8 ms on a 250 Hz kernel).
 *  - An expired item is absent for get, add and replace at once, before any
 *    sweep removes it.
 *  - set overwrites; add fails with EEXIST when a live item exists; replace
 *    fails with ENOENT when none does. An expired item is overwritten by
 *    set/add like any other item.
 *  - on_evicted(key, value, arg) runs when an item is deleted (cache_delete)
 *    or removed because it expired (janitor or cache_delete_expired), on the
 *    thread that removed it, with no lock held (it may call the cache). It
 *    does not run for overwrites, nor in cache_close. Then value_free(value).
 *  - cache_count counts stored items, including expired items that no sweep
 *    has removed yet, like go-cache's ItemCount. It is O(stripes), not exact
 *    under concurrent writes. Call cache_delete_expired first for live items.
 *
 * Values and their lifetime. A value is a `void *`. Two modes:
 *  - The cache does not own values (value_free == NULL): it stores and hands
 *    back your pointer, and never frees it. Integers cast to pointers, static
 *    strings, objects whose lifetime you manage elsewhere.
 *  - The cache owns values (value_free != NULL): then value_dup is required
 *    (cache_new fails with EINVAL without it), and cache_get hands out
 *    value_dup(value), made under the item's lock. What you get is yours,
 *    valid however the cache changes meanwhile (another thread deleting or
 *    overwriting the item, the janitor expiring it, cache_close), and you
 *    release it with value_free when done. value_dup may copy (strdup) or
 *    take a reference: for a reference-counted object, value_dup increments
 *    the count and returns the same pointer, value_free decrements it.
 *    A value handed to the cache is owned by it on success only: when set,
 *    add or replace fail, the value is still yours.
 *  This rule makes a dangling pointer impossible by construction: the cache
 *  never hands out a pointer that it might free.
 *
 * Beyond go-cache:
 *  - The table is split in 256 stripes, each with its own lock and its own
 *    growth; the janitor sweeps at most 512 slots (64 removals) per lock
 *    hold, about a microsecond, and runs on_evicted and value_free after
 *    unlocking, so no reader waits for a whole sweep (go-cache holds its one
 *    write lock for all of it). A get costs one atomic operation when nobody
 *    else holds its stripe.
 *  - cache_stop stops the janitor only; the cache stays usable (as a cache
 *    without janitor). cache_close stops the janitor, frees every item, and
 *    the cache. Scope exit runs cache_close.
 *
 * Pitfalls:
 *  - value_dup runs under a stripe lock: keep it short and do not call the
 *    cache from it. value_free and on_evicted run with no lock held.
 *  - The key passed to on_evicted is valid during the call only.
 *  - cache_close must be the last call on the handle; no other thread may
 *    still use it (stop your users first, as with any free), and never from a
 *    callback. cache_stop from on_evicted is fine (it does not self-join).
 *  - Setting the same pointer again for a key does not free it; setting a
 *    different pointer frees the old one (value_free) without on_evicted.
 *  - fork(): a child may close an inherited cache (its janitor is the
 *    parent's and is not touched), but should not use it: a stripe that
 *    another parent thread held at the fork stays locked in the child.
 *
 * All functions are thread-safe except cache_close. Errors: -1 (or NULL, or
 * false) with errno: EINVAL for NULL arguments or a bad config, ENOMEM,
 * EEXIST (add), ENOENT (replace, and get/delete finding nothing live).
 */
#ifndef SAMPLES_CACHE_H
#define SAMPLES_CACHE_H

#include <scoped.h>
#include <stdbool.h>
#include <stddef.h>

#define CACHE_DEFAULT_TTL   0LL
#define CACHE_NO_EXPIRATION (-1LL)

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cache cache;

typedef struct cache_config {
	long long default_ttl_ms;   /* <= 0: items without a ttl never expire */
	long long cleanup_ms;       /* janitor period; <= 0: no janitor thread */
	void (*value_free)(void *value);        /* the cache owns values (needs value_dup) */
	void *(*value_dup)(const void *value);  /* what cache_get hands out; NULL result: ENOMEM */
	void (*on_evicted)(const char *key, void *value, void *arg); /* delete, expiry */
	void *arg;                  /* passed to on_evicted */
} cache_config;

/* Stops the janitor, frees every item (value_free, no on_evicted) and the
 * cache. NULL is fine. Scope exit calls it for scoped(cache). */
void cache_close(cache *c);

/* A new cache, with a janitor thread when cleanup_ms > 0 (period clamped to
 * UINT_MAX ms). NULL with errno EINVAL (cfg NULL, value_free without
 * value_dup), ENOMEM, EAGAIN; nothing is left behind on failure. */
SCOPED_ALLOC(cache_close) cache *cache_new(const cache_config *cfg);

/* Stores value under a copy of key, replacing any item (the old value is
 * freed with value_free, on_evicted does not run). ttl_ms: CACHE_DEFAULT_TTL,
 * CACHE_NO_EXPIRATION or milliseconds. 0, or -1 with errno (EINVAL, ENOMEM). */
int cache_set(cache *c, const char *key, void *value, long long ttl_ms);

/* Like cache_set, only when no live item has key: else -1 with EEXIST. */
int cache_add(cache *c, const char *key, void *value, long long ttl_ms);

/* Like cache_set, only when a live item has key: else -1 with ENOENT. */
int cache_replace(cache *c, const char *key, void *value, long long ttl_ms);

/* true when a live item has key; then *value (when value is not NULL) gets
 * the value, or value_dup(value) when the cache owns values: yours to
 * value_free. false with errno ENOENT (absent or expired), EINVAL, ENOMEM
 * (value_dup returned NULL). */
bool cache_get(cache *c, const char *key, void **value);

/* Removes the item with key, running on_evicted then value_free. true when it
 * was live; false with ENOENT when there was none or it had expired (an
 * expired item is removed too, with on_evicted, as go-cache does). */
bool cache_delete(cache *c, const char *key);

/* Removes every expired item now (on_evicted, value_free for each), in short
 * lock holds. Returns how many it removed. */
size_t cache_delete_expired(cache *c);

/* Stored items, including expired ones not swept yet (go-cache's ItemCount). */
size_t cache_count(const cache *c);

/* Stops the janitor and joins it; repeatable; the cache stays usable. */
void cache_stop(cache *c);

SCOPED_DEFINE(cache, cache_close)

#ifdef __cplusplus
}
#endif

#endif /* SAMPLES_CACHE_H */
