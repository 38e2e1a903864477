/* tests/stress/stress.c - scoped threads and workers under load (make stress).
 *
 *  cycles     STRESS_CYCLES (100000) worker start/close cycles, back to back
 *  herd       STRESS_HERD (1000) workers alive at once, closed in random order, three rounds:
 *             threads back to baseline, RSS growth under STRESS_RSS_KB (1024; 0: unchecked)
 *             after the first round
 *  stampede   64 threads stop the same worker at once, STRESS_ROUNDS (200) times: on_stop
 *             runs once, exactly one join
 *  self       stop and close from tick and from on_stop, STRESS_SELF (20000) times each
 *
 * Prints the figures and ends with "N passed, N failed"; exits 1 when any check failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <scoped.h>

#include "fault.h"
#include "helpers.h"

static int passed, failed;

#define CHECK(cond, ...)                                                                    \
	do {                                                                                \
		if (cond) {                                                                 \
			passed++;                                                           \
		} else {                                                                    \
			failed++;                                                           \
			printf("  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
			printf(__VA_ARGS__);                                                \
			printf("\n");                                                       \
		}                                                                           \
	} while (0)

static long env_long(const char *name, long def)
{
	const char *v = getenv(name);
	return v && *v ? strtol(v, NULL, 10) : def;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, resident = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* wait_until without the millisecond naps, for the short waits of the tight loops below. */
#define spin_until(cond, ms)                                                                \
	__extension__({                                                                     \
		long long spin_end_ = now_ms() + (ms);                                      \
		while (!(cond) && now_ms() < spin_end_)                                     \
			sched_yield();                                                      \
		(cond);                                                                     \
	})

static double secs_since(long long start_ms) { return (double)(now_ms() - start_ms) / 1000.0; }

struct counter {
	atomic_int ticks;
	atomic_int stops;
};

static void tick(void *ctx) { atomic_fetch_add(&((struct counter *)ctx)->ticks, 1); }
static void on_stop(void *ctx) { atomic_fetch_add(&((struct counter *)ctx)->stops, 1); }

/* --- 100,000 start/close cycles -------------------------------------------------------- */

static void cycles(int base_threads)
{
	long n = env_long("STRESS_CYCLES", 100000);
	struct counter c = { 0 };
	long fails = 0;
	long rss0 = rss_kb();
	long long t0 = now_ms();
	for (long i = 0; i < n; i++) {
		scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
			.name = "cycle", .period_ms = 1000, .tick = tick, .on_stop = on_stop,
			.ctx = &c });
		if (!w)
			fails++;
		if (i % 8 == 0)
			scoped_worker_wake(w); /* some close while a tick is due */
	}
	double s = secs_since(t0);
	printf("cycles: %ld worker start/close cycles in %.2f s (%.1f us each), RSS %+ld kB\n", n,
	       s, s * 1e6 / (double)n, rss_kb() - rss0);
	CHECK(fails == 0, "%ld starts failed", fails);
	CHECK(atomic_load(&c.stops) == n - fails, "on_stop ran %d times for %ld workers",
	      atomic_load(&c.stops), n - fails);
	CHECK(wait_until(thread_count() == base_threads, 2000), "%d threads, %d before",
	      thread_count(), base_threads);
	CHECK(scoped_live_count() == 0, "%zu live handles", scoped_live_count());
}

/* --- a herd of 1,000 ------------------------------------------------------------------- */

static unsigned long long rng = 0x9E3779B97F4A7C15ULL;
static unsigned long long next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int herd_round(long n, struct counter *c, scoped_worker **w)
{
	int made = 0;
	for (long i = 0; i < n; i++) {
		w[i] = scoped_worker_start(&(scoped_worker_config){
			.name = "herd", .period_ms = 50, .tick = tick, .on_stop = on_stop,
			.ctx = c });
		made += w[i] != NULL;
	}
	for (long i = n - 1; i > 0; i--) { /* Fisher-Yates: a random closing order */
		long j = (long)(next_rand() % (unsigned long long)(i + 1));
		scoped_worker *tmp = w[i];
		w[i] = w[j];
		w[j] = tmp;
	}
	for (long i = 0; i < n; i++)
		scoped_worker_close(w[i]);
	return made;
}

static void herd(int base_threads)
{
	long n = env_long("STRESS_HERD", 1000);
	scoped_worker **w = calloc((size_t)n, sizeof *w);
	struct counter c = { 0 };
	long long t0 = now_ms();
	long rss_start = rss_kb();
	int made = herd_round(n, &c, w);
	CHECK(made == n, "%d of %ld workers started: %s", made, n, strerror(errno));
	CHECK(wait_until(thread_count() == base_threads, 5000), "%d threads, %d before",
	      thread_count(), base_threads);
	/* The first round sizes the allocator's and the thread library's caches; later rounds must
	 * not grow the process. */
	long rss1 = rss_kb();
	for (int r = 0; r < 2; r++)
		made += herd_round(n, &c, w);
	long rss2 = rss_kb();
	CHECK(atomic_load(&c.stops) == made, "on_stop ran %d times for %d workers",
	      atomic_load(&c.stops), made);
	CHECK(wait_until(thread_count() == base_threads, 5000), "%d threads, %d before",
	      thread_count(), base_threads);
	CHECK(scoped_live_count() == 0, "%zu live handles", scoped_live_count());
	long limit_kb = env_long("STRESS_RSS_KB", 1024); /* 0: not checked (sanitizers) */
	CHECK(limit_kb == 0 || rss2 - rss1 < limit_kb, "RSS grew by %ld kB", rss2 - rss1);
	printf("herd: 3 rounds of %ld workers alive at once, closed in random order, in %.2f s; "
	       "RSS %+ld kB after round 1, %+ld kB over rounds 2-3\n",
	       n, secs_since(t0), rss1 - rss_start, rss2 - rss1);
	free(w);
}

/* --- 64 threads stop one worker -------------------------------------------------------- */

enum { STOPPERS = 64 };

struct stampede {
	pthread_barrier_t go;
	scoped_worker *w;
	atomic_int returned;
};

static void *stopper(void *arg)
{
	struct stampede *s = arg;
	pthread_barrier_wait(&s->go);
	scoped_worker_stop(s->w);
	atomic_fetch_add(&s->returned, 1);
	return NULL;
}

static void stampede(int base_threads)
{
	long rounds = env_long("STRESS_ROUNDS", 200);
	long long t0 = now_ms();
	long bad_stops = 0, bad_joins = 0, bad_returns = 0;
	for (long r = 0; r < rounds; r++) {
		struct counter c = { 0 };
		struct stampede s = { .returned = 0 };
		pthread_barrier_init(&s.go, NULL, STOPPERS);
		s.w = scoped_worker_start(&(scoped_worker_config){
			.name = "stampede", .period_ms = (r & 1) ? 1 : 0, .tick = tick,
			.on_stop = on_stop, .ctx = &c });
		if (!s.w) {
			bad_stops++;
			continue;
		}
		unsigned long joins = fault_joins();
		pthread_t th[STOPPERS];
		for (int i = 0; i < STOPPERS; i++)
			pthread_create(&th[i], NULL, stopper, &s);
		for (int i = 0; i < STOPPERS; i++)
			pthread_join(th[i], NULL);
		bad_returns += atomic_load(&s.returned) != STOPPERS;
		bad_stops += atomic_load(&c.stops) != 1;
		bad_joins += fault_joins() - joins != STOPPERS + 1; /* ours, and the library's one */
		scoped_worker_close(s.w);
		pthread_barrier_destroy(&s.go);
	}
	printf("stampede: %ld rounds of %d threads stopping one worker at once in %.2f s\n", rounds,
	       STOPPERS, secs_since(t0));
	CHECK(bad_returns == 0, "%ld rounds where a stopper did not return", bad_returns);
	CHECK(bad_stops == 0, "%ld rounds where on_stop did not run exactly once", bad_stops);
	CHECK(bad_joins == 0, "%ld rounds without exactly one join", bad_joins);
	CHECK(wait_until(thread_count() == base_threads, 2000), "%d threads, %d before",
	      thread_count(), base_threads);
}

/* --- stop and close from the worker's own callbacks ------------------------------------ */

struct self {
	scoped_worker *w;
	int action;		/* 0 stop from tick, 1 close from tick, 2 stop from on_stop,
				 * 3 close from on_stop */
	atomic_int done;
	atomic_int stops;
};

static void self_tick(void *ctx)
{
	struct self *s = ctx;
	if (s->action == 0)
		scoped_worker_stop(s->w);
	else if (s->action == 1)
		scoped_worker_close(s->w);
	if (s->action < 2)
		atomic_store(&s->done, 1);
}

static void self_on_stop(void *ctx)
{
	struct self *s = ctx;
	atomic_fetch_add(&s->stops, 1);
	if (s->action == 2)
		scoped_worker_stop(s->w);
	else if (s->action == 3)
		scoped_worker_close(s->w);
	if (s->action >= 2)
		atomic_store(&s->done, 1);
}

static void self_stop(int base_threads)
{
	static const char *what[] = { "stop from tick", "close from tick", "stop from on_stop",
				      "close from on_stop" };
	long n = env_long("STRESS_SELF", 20000);
	for (int action = 0; action < 4; action++) {
		long long t0 = now_ms();
		long bad = 0;
		for (long i = 0; i < n; i++) {
			struct self s = { .action = action };
			s.w = scoped_worker_start(&(scoped_worker_config){
				.name = "self", .tick = self_tick, .on_stop = self_on_stop,
				.ctx = &s });
			if (!s.w) {
				bad++;
				continue;
			}
			if (action < 2)
				scoped_worker_wake(s.w);
			else
				scoped_worker_stop(s.w); /* on_stop then stops or closes itself */
			if (!spin_until(atomic_load(&s.done), 5000)) {
				bad++;
				break;
			}
			if (action == 0)
				scoped_worker_close(s.w); /* stopped from inside: still ours */
			else if (action == 2)
				scoped_worker_close(s.w);
			/* 1 and 3: closed from inside; the thread frees the handle itself. The stack
			 * struct s must outlive it: wait until nothing is live. */
			if (!spin_until(scoped_live_count() == 0, 5000)) {
				bad++;
				break;
			}
			bad += atomic_load(&s.stops) != 1;
		}
		printf("self: %ld x %s in %.2f s\n", n, what[action], secs_since(t0));
		CHECK(bad == 0, "%s: %ld bad cycles", what[action], bad);
	}
	CHECK(wait_until(thread_count() == base_threads, 2000), "%d threads, %d before",
	      thread_count(), base_threads);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* One cycle first: a sanitizer's runtime may start a thread of its own on first use. */
	struct counter warm = { 0 };
	scoped_worker_close(scoped_worker_start(&(scoped_worker_config){ .name = "warm-up",
		.tick = tick, .ctx = &warm }));
	int base = thread_count();
	long long t0 = now_ms();
	cycles(base);
	herd(base);
	stampede(base);
	self_stop(base);
	CHECK(scoped_expect_no_leaks(1000) == 0, "handles left");
	printf("stress: %.2f s in all\n%d passed, %d failed\n", secs_since(t0), passed, failed);
	return failed != 0;
}
