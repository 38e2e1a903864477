/* src/internal.h - what thread.c, worker.c and live.c share. Not installed.
 *
 * One struct scoped_thread carries a thread's whole life; a worker embeds one as its first
 * member, and the stop token is the thread's first member, so each converts to the others.
 *
 * Lifetime is a reference count, changed under stop.mu: one reference for the owner (dropped by
 * close), one for the thread (dropped when its function has returned), one for each caller inside
 * stop. Whoever drops the last one frees. So a thread that closes its own handle from a callback
 * frees it itself when done, and a concurrent stopper never sees it freed under its feet.
 *
 * Lock order: live registry lock, then a handle's stop.mu. Nothing takes the registry lock
 * while holding a handle's lock.
 */
#ifndef SCOPED_INTERNAL_H
#define SCOPED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include <scoped/thread.h>

struct scoped_stop {
	pthread_mutex_t mu;
	pthread_cond_t cv;		/* CLOCK_MONOTONIC; every state change broadcasts */
	atomic_bool requested;
};

struct scoped_thread {
	struct scoped_stop stop;	/* first: a scoped_stop * is the thread */
	void (*fn)(scoped_stop *stop, void *arg);
	void *arg;
	pthread_t tid;

	/* under stop.mu */
	unsigned refs;
	bool joining;			/* a stopper is inside pthread_join */
	bool joined;
	bool detached;			/* stopped or closed from its own thread */
	bool closed;			/* the owner's reference is gone */
	bool no_thread;			/* inherited across fork(): nothing to join */
	atomic_bool ended;		/* fn has returned (read without the lock by live.c) */

	/* the live registry (live.c), under its lock; the rest is immutable */
	struct scoped_thread *live_prev, *live_next;
	const char *kind;		/* "thread" or "worker" */
	const char *file;
	int line;
	struct timespec started;	/* CLOCK_MONOTONIC */
	char name[32];
};

/* Creates the thread behind t, which the caller allocated with scoped__thread_alloc() and
 * filled (fn, arg, kind, file, line, name). 0, or an errno value with t freed. */
int scoped__thread_spawn(struct scoped_thread *t);
struct scoped_thread *scoped__thread_alloc(size_t size, const char *name);
void scoped__thread_stop(struct scoped_thread *t);
void scoped__thread_close(struct scoped_thread *t);
int scoped__stop_init(struct scoped_stop *s);	/* mu and cv (CLOCK_MONOTONIC); 0 or errno */
int scoped__cond_init(pthread_cond_t *cv);	/* a CLOCK_MONOTONIC condition; 0 or errno */
void scoped__deadline(struct timespec *ts, unsigned ms);	/* now + ms, CLOCK_MONOTONIC */

/* The registry. */
void scoped__live_add(struct scoped_thread *t);
void scoped__live_remove(struct scoped_thread *t);

/* The handle whose function this thread runs, or NULL. */
extern _Thread_local struct scoped_thread *scoped__self;

#endif /* SCOPED_INTERNAL_H */
