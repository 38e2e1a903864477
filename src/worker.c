/* src/worker.c - scoped_worker: a periodic job on a scoped thread, woken early on demand. */
#define _GNU_SOURCE
#include <errno.h>

#include "internal.h"

struct scoped_worker {
	struct scoped_thread thread;	/* first: a worker is a thread */
	unsigned period_ms;
	void (*tick)(void *ctx);
	void (*on_stop)(void *ctx);
	void *ctx;
	bool woken;			/* under thread.stop.mu */
};

static bool before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* The next tick is one period after the last one was due; ticks missed while a slow tick ran are
 * dropped, not run back to back. */
static void advance(struct timespec *next, unsigned period_ms)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	next->tv_sec += period_ms / 1000;
	next->tv_nsec += (long)(period_ms % 1000) * 1000000L;
	if (next->tv_nsec >= 1000000000L) {
		next->tv_sec++;
		next->tv_nsec -= 1000000000L;
	}
	if (before(next, &now))
		scoped__deadline(next, period_ms);
}

static void worker_main(scoped_stop *stop, void *arg)
{
	struct scoped_worker *w = arg;
	struct timespec next;
	scoped__deadline(&next, w->period_ms);
	pthread_mutex_lock(&stop->mu);
	/* A wake accepted before stop was requested is owed its tick: it runs before on_stop.
	 * (wake refuses once stop is requested, so this adds at most one tick.) */
	while (!atomic_load(&stop->requested) || w->woken) {
		if (w->woken) {
			w->woken = false;
		} else if (w->period_ms == 0) {
			pthread_cond_wait(&stop->cv, &stop->mu);
			continue;
		} else if (pthread_cond_timedwait(&stop->cv, &stop->mu, &next) == ETIMEDOUT) {
			advance(&next, w->period_ms);
			if (atomic_load(&stop->requested))
				break;
		} else {
			continue;
		}
		pthread_mutex_unlock(&stop->mu);
		w->tick(w->ctx);
		pthread_mutex_lock(&stop->mu);
	}
	pthread_mutex_unlock(&stop->mu);
	if (w->on_stop)
		w->on_stop(w->ctx);
}

scoped_worker *scoped_worker_start_at(const char *file, int line, const scoped_worker_config *cfg)
{
	if (!cfg || !cfg->tick) {
		errno = EINVAL;
		return NULL;
	}
	struct scoped_worker *w =
		(struct scoped_worker *)scoped__thread_alloc(sizeof *w, cfg->name);
	if (!w) {
		errno = ENOMEM;
		return NULL;
	}
	w->period_ms = cfg->period_ms;
	w->tick = cfg->tick;
	w->on_stop = cfg->on_stop;
	w->ctx = cfg->ctx;
	w->thread.fn = worker_main;
	w->thread.arg = w;
	w->thread.kind = "worker";
	w->thread.file = file;
	w->thread.line = line;
	int rc = scoped__thread_spawn(&w->thread);
	if (rc) {
		errno = rc;
		return NULL;
	}
	return w;
}

scoped_worker *(scoped_worker_start)(const scoped_worker_config *cfg)
{
	return scoped_worker_start_at(NULL, 0, cfg);
}

void scoped_worker_wake(scoped_worker *w)
{
	if (!w)
		return;
	struct scoped_thread *t = &w->thread;
	pthread_mutex_lock(&t->stop.mu);
	if (!atomic_load(&t->stop.requested) && !t->no_thread) {
		w->woken = true;
		pthread_cond_broadcast(&t->stop.cv);
	}
	pthread_mutex_unlock(&t->stop.mu);
}

void scoped_worker_stop(scoped_worker *w)
{
	if (w)
		scoped__thread_stop(&w->thread);
}

void scoped_worker_close(scoped_worker *w)
{
	if (w)
		scoped__thread_close(&w->thread);
}
