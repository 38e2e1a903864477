/* tests/fuzz/fuzz_cache.c - libFuzzer target: a random sequence of cache operations checked
 * against a model (an array of key/value pairs), in the mode where the cache owns its values.
 * Every result and errno must match the model; on_evicted runs once per live delete; at the end
 * cache_count matches, and after cache_close every value has been freed exactly once (counted
 * here; ASan and LeakSanitizer see the rest).
 *
 * Input: a stream of operations, each [op][key][value]: op % 8 picks set, add, replace, get,
 * delete, delete_expired, count or a get without a value pointer; a key byte below 200 names
 * one of 32 short keys, otherwise (byte - 200) raw bytes follow as the key (NUL read as 1).
 * Items never expire here (default TTL "never", or an hour): expiry is tests/test_cache_model.c's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_ITEMS = 4096, MAX_KEY = 64 };

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_cache: %s\n", what);
		abort();
	}
}

/* Values: a heap int with a tag, counted so a double free or a leak shows. */
struct value {
	uint32_t tag;
	int v;
};
#define TAG 0xCAC4Eu

static long live_values;
static long evicted;

static void *value_new(int v)
{
	struct value *p = malloc(sizeof *p);
	check(p != NULL, "malloc");
	p->tag = TAG;
	p->v = v;
	live_values++;
	return p;
}

static void value_free(void *p)
{
	struct value *x = p;
	check(x->tag == TAG, "value freed twice or never made");
	x->tag = 0;
	free(x);
	live_values--;
}

static void *value_dup(const void *p)
{
	const struct value *x = p;
	check(x->tag == TAG, "value_dup on a dead value");
	return value_new(x->v);
}

static void on_evicted(const char *key, void *value, void *arg)
{
	(void)key;
	(void)arg;
	check(((struct value *)value)->tag == TAG, "on_evicted on a dead value");
	evicted++;
}

struct item {
	char key[MAX_KEY + 1];
	int v;
};

static struct item model[MAX_ITEMS];
static size_t nmodel;

static struct item *find(const char *key)
{
	for (size_t i = 0; i < nmodel; i++)
		if (strcmp(model[i].key, key) == 0)
			return &model[i];
	return NULL;
}

static void drop(struct item *it) { *it = model[--nmodel]; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nmodel = 0;
	live_values = 0;
	evicted = 0;
	long deletes = 0;
	bool hour = size > 0 && (data[0] & 1);
	cache *c = cache_new(&(cache_config){ .default_ttl_ms = hour ? 3600000 : 0,
					      .value_free = value_free, .value_dup = value_dup,
					      .on_evicted = on_evicted });
	check(c != NULL, "cache_new");
	size_t pos = 1;
	while (pos + 2 <= size) {
		int op = data[pos++] % 8;
		char key[MAX_KEY + 1];
		unsigned kb = data[pos++];
		if (kb < 200) {
			snprintf(key, sizeof key, "k%u", kb % 32);
		} else {
			size_t len = kb - 200;
			if (len > size - pos)
				len = size - pos;
			for (size_t i = 0; i < len; i++)
				key[i] = data[pos + i] ? (char)data[pos + i] : 1;
			key[len] = '\0';
			pos += len;
		}
		int v = pos < size ? data[pos++] : 0;
		long long ttl = (v & 1) ? CACHE_NO_EXPIRATION : CACHE_DEFAULT_TTL;
		struct item *it = find(key);
		errno = 0;
		switch (op) {
		case 0:
		case 1:
		case 2: {
			if (!it && nmodel == MAX_ITEMS)
				break;
			void *val = value_new(v);
			int rc = op == 0   ? cache_set(c, key, val, ttl)
				 : op == 1 ? cache_add(c, key, val, ttl)
					   : cache_replace(c, key, val, ttl);
			if (op == 1 && it) {
				check(rc == -1 && errno == EEXIST, "add over an item: not EEXIST");
				value_free(val); /* still ours */
			} else if (op == 2 && !it) {
				check(rc == -1 && errno == ENOENT, "replace of nothing: not ENOENT");
				value_free(val);
			} else {
				check(rc == 0, "set/add/replace failed");
				if (!it) {
					it = &model[nmodel++];
					strcpy(it->key, key);
				}
				it->v = v;
			}
			break;
		}
		case 3:
		case 7: {
			void *out = NULL;
			bool got = cache_get(c, key, op == 3 ? &out : NULL);
			check(got == (it != NULL), "get disagrees with the model");
			if (!got)
				check(errno == ENOENT, "get of nothing: not ENOENT");
			if (got && op == 3) {
				check(((struct value *)out)->v == it->v, "get: another value");
				value_free(out); /* a copy: ours */
			}
			break;
		}
		case 4: {
			bool was = cache_delete(c, key);
			check(was == (it != NULL), "delete disagrees with the model");
			if (!was)
				check(errno == ENOENT, "delete of nothing: not ENOENT");
			if (it) {
				drop(it);
				deletes++;
			}
			break;
		}
		case 5:
			check(cache_delete_expired(c) == 0, "delete_expired removed a live item");
			break;
		default:
			check(cache_count(c) == nmodel, "count disagrees with the model");
			break;
		}
	}
	check(cache_count(c) == nmodel, "count disagrees with the model at the end");
	check(evicted == deletes, "on_evicted did not run once per delete");
	check(live_values == (long)nmodel, "values held by the cache differ from the model");
	cache_close(c);
	check(live_values == 0, "cache_close left values, or freed one twice");
	return 0;
}
