#define _GNU_SOURCE
/*
 * samples/cache - go-cache's TTL cache in C. Its janitor thread is stopped by scope exit.
 *
 * go-cache hands its caller a wrapper and gives the janitor goroutine only the inner object, so
 * a finalizer on the wrapper can stop the janitor. Here `scoped(cache) c = cache_new(...)` is
 * that finalizer: leaving the scope stops the janitor, joins it and frees every item.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"

static pthread_t main_thread;

static int threads_alive(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static long long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void nap_ms(long ms)
{
	nanosleep(&(struct timespec){ ms / 1000, (ms % 1000) * 1000000L }, NULL);
}

static void *copy_string(const void *s)
{
	return strdup(s);
}

static void on_evicted(const char *key, void *value, void *arg)
{
	(void)arg;
	printf("   [%s] on_evicted(\"%s\", \"%s\")\n",
	       pthread_equal(pthread_self(), main_thread) ? "main thread" : "janitor thread", key,
	       (const char *)value);
}

static const char *errno_name(int e)
{
	return e == ENOENT ? "ENOENT" : e == EEXIST ? "EEXIST" : strerror(e);
}

static void show_get(cache *c, const char *key)
{
	void *v;
	if (cache_get(c, key, &v)) {
		printf("   get \"%s\" -> \"%s\"\n", key, (char *)v);
		free(v);	/* get hands out a copy (value_dup): ours to free */
	} else {
		printf("   get \"%s\" -> not found (%s)\n", key, errno_name(errno));
	}
}

static int demo(void)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	printf("1. cache_new: items live 150 ms by default; a janitor thread sweeps every 400 ms.\n");
	scoped(cache) c = cache_new(&(cache_config){
		.default_ttl_ms = 150,
		.cleanup_ms = 400,
		.value_free = free,		/* the cache owns the strings we store */
		.value_dup = copy_string,	/* and hands out copies */
		.on_evicted = on_evicted,
	});
	if (!c) {
		perror("cache_new");
		return 1;
	}
	printf("   threads in this process: %d (main + janitor)\n\n", threads_alive());

	printf("2. set \"session:alice\" (default ttl, 150 ms) and \"motd\" (never expires).\n");
	if (cache_set(c, "session:alice", strdup("logged in"), CACHE_DEFAULT_TTL) != 0 ||
	    cache_set(c, "motd", strdup("hello"), CACHE_NO_EXPIRATION) != 0) {
		perror("cache_set");
		return 1;
	}
	show_get(c, "session:alice");
	char *dup = strdup("again");
	if (cache_add(c, "motd", dup, CACHE_NO_EXPIRATION) != 0) {
		printf("   add \"motd\" -> refused (%s): a live item exists; set would overwrite\n",
		       errno_name(errno));
		free(dup);	/* refused: still ours */
	}
	printf("\n");

	while (cache_get(c, "session:alice", NULL))
		nap_ms(5);
	printf("3. %lld ms after the set:\n", ms_since(&t0));
	show_get(c, "session:alice");
	printf("   count = %zu: expired items are invisible at once, but stay stored until a\n"
	       "   sweep removes them (go-cache's ItemCount counts them too)\n\n",
	       cache_count(c));

	printf("4. waiting for the janitor's sweep (its first tick is 400 ms after cache_new)...\n");
	for (int i = 0; i < 300 && cache_count(c) > 1; i++)
		nap_ms(5);
	printf("   at %lld ms: count = %zu\n", ms_since(&t0), cache_count(c));
	show_get(c, "motd");
	printf("\n   cache_delete(\"motd\") runs on_evicted on the caller's thread:\n");
	cache_delete(c, "motd");
	printf("\n5. leaving the scope: no cache_close call in this function, yet scoped(cache)\n"
	       "   runs it now: it stops the janitor, joins it and frees every item.\n");
	return 0;
}

int main(void)
{
	main_thread = pthread_self();
	printf("samples/cache: go-cache's TTL cache in C, its janitor stopped by scope exit\n\n");
	int rc = demo();
	for (int i = 0; i < 100 && threads_alive() > 1; i++)
		nap_ms(1);	/* the kernel drops a joined thread from /proc a moment later */
	printf("   threads in this process after the scope: %d (main only)\n", threads_alive());
	return rc;
}
