/* src/thread.c - scoped_thread: a thread with a stop token, stopped and joined exactly once. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

_Thread_local struct scoped_thread *scoped__self;

/* --- the stop token ------------------------------------------------------------------- */

int scoped__cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);
	if (rc)
		return rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return rc;
}

int scoped__stop_init(struct scoped_stop *s)
{
	int rc = scoped__cond_init(&s->cv);
	if (rc)
		return rc;
	rc = pthread_mutex_init(&s->mu, NULL);
	if (rc)
		pthread_cond_destroy(&s->cv);
	return rc;
}

void scoped__deadline(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

bool scoped_stop_requested(const scoped_stop *stop)
{
	return stop && atomic_load_explicit(&stop->requested, memory_order_acquire);
}

bool scoped_stop_sleep(scoped_stop *stop, unsigned ms)
{
	if (!stop)
		return false;
	struct timespec until;
	scoped__deadline(&until, ms);
	pthread_mutex_lock(&stop->mu);
	while (!atomic_load(&stop->requested))
		if (pthread_cond_timedwait(&stop->cv, &stop->mu, &until) == ETIMEDOUT)
			break;
	bool stopped = atomic_load(&stop->requested);
	pthread_mutex_unlock(&stop->mu);
	return stopped;
}

/* --- life of a handle ----------------------------------------------------------------- */

struct scoped_thread *scoped__thread_alloc(size_t size, const char *name)
{
	struct scoped_thread *t = calloc(1, size);
	if (!t)
		return NULL;
	/* Keep whole UTF-8 characters when truncating. */
	size_t n = name ? strlen(name) : 0;
	if (n >= sizeof t->name) {
		n = sizeof t->name - 1;
		while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
			n--;
	}
	if (n)
		memcpy(t->name, name, n);
	return t;
}

static void destroy(struct scoped_thread *t)
{
	scoped__live_remove(t);
	pthread_cond_destroy(&t->stop.cv);
	pthread_mutex_destroy(&t->stop.mu);
	free(t);
}

/* Drops one reference; the caller holds stop.mu, which this releases. */
static void unref_unlock(struct scoped_thread *t)
{
	bool last = --t->refs == 0;
	pthread_mutex_unlock(&t->stop.mu);
	if (last)
		destroy(t);
}

static void request_locked(struct scoped_thread *t)
{
	atomic_store_explicit(&t->stop.requested, true, memory_order_release);
	pthread_cond_broadcast(&t->stop.cv);
}

static void set_name(const char *name)
{
	char short_name[16];
	size_t n = strlen(name);
	if (n >= sizeof short_name) {
		n = sizeof short_name - 1;
		while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(short_name, name, n);
	short_name[n] = '\0';
	pthread_setname_np(pthread_self(), short_name);
}

/* The thread's last act, also when fn leaves by pthread_exit(). */
static void finish(void *arg)
{
	struct scoped_thread *t = arg;
	scoped__self = NULL;
	pthread_mutex_lock(&t->stop.mu);
	atomic_store(&t->ended, true);
	pthread_cond_broadcast(&t->stop.cv);
	unref_unlock(t);
}

/* glibc's pthread_cleanup_push is built on setjmp; its own variables are never changed after it,
 * which GCC's -Wclobbered cannot see. */
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wclobbered"
#endif
static void *trampoline(void *arg)
{
	struct scoped_thread *t = arg;
	scoped__self = t;
	if (t->name[0])
		set_name(t->name);
	pthread_cleanup_push(finish, t);
	t->fn(&t->stop, t->arg);
	pthread_cleanup_pop(1);
	return NULL;
}
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic pop
#endif

int scoped__thread_spawn(struct scoped_thread *t)
{
	int rc = scoped__stop_init(&t->stop);
	if (rc) {
		free(t);
		return rc;
	}
	t->refs = 2; /* the owner and the thread */
	clock_gettime(CLOCK_MONOTONIC, &t->started);
	scoped__live_add(t);
	rc = pthread_create(&t->tid, NULL, trampoline, t);
	if (rc) {
		destroy(t);
		return rc;
	}
	return 0;
}

void scoped__thread_stop(struct scoped_thread *t)
{
	pthread_mutex_lock(&t->stop.mu);
	request_locked(t);
	if (scoped__self == t) {
		/* From the thread's own function: joining would wait for ourselves. Unless a
		 * stopper is already joining, let the thread reclaim itself when it returns. */
		if (!t->joining && !t->joined && !t->detached && !t->no_thread) {
			pthread_detach(pthread_self());
			t->detached = true;
		}
		pthread_mutex_unlock(&t->stop.mu);
		return;
	}
	t->refs++;
	for (;;) {
		if (t->no_thread || t->joined)
			break;
		if (t->detached || t->joining) {
			/* Someone else reclaims it: wait until it has ended. */
			while (!(t->detached ? atomic_load(&t->ended) : t->joined) && !t->no_thread)
				pthread_cond_wait(&t->stop.cv, &t->stop.mu);
			break;
		}
		t->joining = true;
		pthread_mutex_unlock(&t->stop.mu);
		pthread_join(t->tid, NULL);
		pthread_mutex_lock(&t->stop.mu);
		t->joining = false;
		t->joined = true;
		pthread_cond_broadcast(&t->stop.cv);
		break;
	}
	unref_unlock(t);
}

void scoped__thread_close(struct scoped_thread *t)
{
	if (scoped__self != t)
		scoped__thread_stop(t);
	pthread_mutex_lock(&t->stop.mu);
	if (scoped__self == t)
		request_locked(t);
	if (scoped__self == t && !t->joining && !t->joined && !t->detached && !t->no_thread) {
		pthread_detach(pthread_self());
		t->detached = true;
	}
	t->closed = true;
	unref_unlock(t);
}

/* --- the public face ------------------------------------------------------------------ */

scoped_thread *scoped_thread_start_at(const char *file, int line, const char *name,
				      void (*fn)(scoped_stop *stop, void *arg), void *arg)
{
	if (!fn) {
		errno = EINVAL;
		return NULL;
	}
	struct scoped_thread *t = scoped__thread_alloc(sizeof *t, name);
	if (!t) {
		errno = ENOMEM;
		return NULL;
	}
	t->fn = fn;
	t->arg = arg;
	t->kind = "thread";
	t->file = file;
	t->line = line;
	int rc = scoped__thread_spawn(t);
	if (rc) {
		errno = rc;
		return NULL;
	}
	return t;
}

scoped_thread *(scoped_thread_start)(const char *name, void (*fn)(scoped_stop *stop, void *arg),
				     void *arg)
{
	return scoped_thread_start_at(NULL, 0, name, fn, arg);
}

void scoped_thread_stop(scoped_thread *t)
{
	if (t)
		scoped__thread_stop(t);
}

void scoped_thread_close(scoped_thread *t)
{
	if (t)
		scoped__thread_close(t);
}
