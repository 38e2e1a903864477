#define _GNU_SOURCE
/*
 * bench_worker - scoped_worker and scoped_thread against raw pthreads measured in the same run.
 *
 *   start+close    one cycle: start a worker (period one hour), close it; against
 *                  pthread_create + pthread_join of an empty thread.      target <= 1.3x
 *   close latency  close() of a worker idle in its one-hour wait: request, wake, on_stop, join;
 *                  against a raw thread in pthread_cond_timedwait: signal + join.
 *                                                                       target median < 100 us
 *   memory         heap bytes per live worker (mallinfo2 deltas over many live handles, and
 *                  malloc_usable_size of the handle), against a raw pthread; stacks excluded.
 *
 * Medians of REPEATS interleaved runs (each the mean of a batch), or of every sample for
 * latencies.
 * BENCH_QUICK=1 in the environment: fewer cycles (a smoke run). Takes ~5 s otherwise.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <scoped.h>

enum { REPEATS = 21, LIVE = 200 };

static int batch = 200;		/* cycles per timed run */
static int samples = 1000;	/* close-latency samples */

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double percentile(double *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[(int)(p * (n - 1))];
}

static void settle(void)
{
	nanosleep(&(struct timespec){ 0, 200000 }, NULL); /* let the new thread reach its wait */
}

/* ---- the subjects ----------------------------------------------------------------------- */

static void nothing(void *ctx) { (void)ctx; }

static scoped_worker *start_hourly(void)
{
	return scoped_worker_start(&(scoped_worker_config){
		.name = "bench", .period_ms = 3600u * 1000u, .tick = nothing, .on_stop = nothing });
}

static void *empty_thread(void *arg) { return arg; }

static void until_stopped(scoped_stop *stop, void *arg)
{
	(void)arg;
	while (!scoped_stop_sleep(stop, 3600u * 1000u))
		;
}

/* A raw thread parked in a one-hour CLOCK_MONOTONIC wait: what a worker is, by hand. */
struct raw {
	pthread_t tid;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
};

static void *raw_main(void *arg)
{
	struct raw *r = arg;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 3600;
	pthread_mutex_lock(&r->mu);
	while (!r->stop)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &until))
			break;
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static void raw_start(struct raw *r)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->mu, NULL);
	r->stop = 0;
	if (pthread_create(&r->tid, NULL, raw_main, r) != 0)
		abort();
}

static void raw_close(struct raw *r)
{
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->tid, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
}

/* ---- start+close cycles ------------------------------------------------------------------ */

static double cycle_pthread(void)
{
	double t0 = now_ns();
	for (int i = 0; i < batch; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, empty_thread, NULL) != 0)
			abort();
		pthread_join(t, NULL);
	}
	return (now_ns() - t0) / batch;
}

static double cycle_worker(void)
{
	double t0 = now_ns();
	for (int i = 0; i < batch; i++) {
		scoped(scoped_worker) w = start_hourly();
		if (!w)
			abort();
	}
	return (now_ns() - t0) / batch;
}

static double cycle_thread(void)
{
	double t0 = now_ns();
	for (int i = 0; i < batch; i++) {
		scoped(scoped_thread) t = scoped_thread_start("bench", until_stopped, NULL);
		if (!t)
			abort();
	}
	return (now_ns() - t0) / batch;
}

static double cycle_raw(void)
{
	double t0 = now_ns();
	for (int i = 0; i < batch; i++) {
		struct raw r;
		raw_start(&r);
		raw_close(&r);
	}
	return (now_ns() - t0) / batch;
}

/* Interleaved: each repeat runs every subject once, so load from other processes falls on all
 * of them alike. out[k] is subject k's median. */
static void run(double (*const cycle[])(void), int n, double *out)
{
	double v[8][REPEATS];
	for (int k = 0; k < n; k++)
		cycle[k](); /* warm up */
	for (int i = 0; i < REPEATS; i++)
		for (int k = 0; k < n; k++)
			v[k][i] = cycle[k]();
	for (int k = 0; k < n; k++)
		out[k] = median(v[k], REPEATS);
}

/* ---- close latency ------------------------------------------------------------------------ */

/* One close, timed in microseconds: raw (1) or worker (0), idle in its one-hour wait. */
static double close_us(int raw)
{
	struct raw r;
	scoped_worker *w = NULL;
	if (raw)
		raw_start(&r);
	else if (!(w = start_hourly()))
		abort();
	settle();
	double t0 = now_ns();
	if (raw)
		raw_close(&r);
	else
		scoped_worker_close(w);
	return (now_ns() - t0) / 1000;
}

/* Samples alternate between the two; prints both, returns worker / raw medians in m. */
static void latency(double m[2])
{
	double *v[2] = { malloc(sizeof(double) * (size_t)samples),
			 malloc(sizeof(double) * (size_t)samples) };
	if (!v[0] || !v[1])
		abort();
	for (int i = 0; i < samples; i++)
		for (int raw = 1; raw >= 0; raw--)
			v[raw][i] = close_us(raw);
	static const char *what[] = { "scoped_worker_close", "raw: signal + pthread_join" };
	for (int k = 1; k >= 0; k--) {
		double p90 = percentile(v[k], samples, 0.9);
		m[k] = median(v[k], samples);
		printf("  %-34s median %7.1f us   p90 %7.1f us\n", what[k], m[k], p90);
		free(v[k]);
	}
}

/* ---- memory ------------------------------------------------------------------------------- */

static size_t heap_in_use(void)
{
	return mallinfo2().uordblks;
}

static void memory(void)
{
	static scoped_worker *w[LIVE];
	static struct raw parked[LIVE];

	size_t h0 = heap_in_use();
	for (int i = 0; i < LIVE; i++)
		if (!(w[i] = start_hourly()))
			abort();
	size_t h1 = heap_in_use();
	size_t usable = malloc_usable_size(w[0]);
	for (int i = 0; i < LIVE; i++)
		scoped_worker_close(w[i]);

	size_t r0 = heap_in_use();
	for (int i = 0; i < LIVE; i++)
		raw_start(&parked[i]);
	size_t r1 = heap_in_use();
	for (int i = 0; i < LIVE; i++)
		raw_close(&parked[i]);

	double per_worker = (double)(h1 - h0) / LIVE, per_raw = (double)(r1 - r0) / LIVE;
	printf("  heap per live worker                 %7.0f B   (handle: malloc_usable_size %zu B)\n",
	       per_worker, usable);
	printf("  heap per live raw pthread            %7.0f B   (glibc's own per-thread heap use)\n",
	       per_raw);
	printf("  => the library adds                  %7.0f B per worker, beyond the stack\n",
	       per_worker - per_raw);
}

int main(void)
{
	if (getenv("BENCH_QUICK")) {
		batch = 20;
		samples = 30;
	}
	printf("bench_worker: medians of %d runs x %d cycles; latency: median of %d closes\n",
	       REPEATS, batch, samples);

	static double (*const cycles[])(void) = { cycle_pthread, cycle_raw, cycle_worker,
						  cycle_thread };
	double m[4];
	run(cycles, 4, m);
	double base = m[0], raw = m[1], worker = m[2], thread = m[3];
	printf("start+close, per cycle:\n");
	printf("  pthread_create+join, empty thread    %7.1f us   1.00x (baseline)\n", base / 1e3);
	printf("  raw thread parked in cond wait       %7.1f us   %4.2fx\n", raw / 1e3, raw / base);
	printf("  scoped_worker (period 1 h)           %7.1f us   %4.2fx   target <= 1.30x %s\n",
	       worker / 1e3, worker / base, worker / base <= 1.3 ? "ok" : "MISSED");
	printf("  scoped_thread (waits on stop)        %7.1f us   %4.2fx\n", thread / 1e3,
	       thread / base);

	printf("close latency (thread idle in a one-hour wait):\n");
	double lm[2];
	latency(lm);
	double lat = lm[0], lat_raw = lm[1];
	printf("  ratio scoped/raw                     %7.2fx   target median < 100 us %s\n",
	       lat / lat_raw, lat < 100 ? "ok" : "MISSED");

	printf("memory (%d live handles):\n", LIVE);
	memory();
	return 0;
}
