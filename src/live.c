/* src/live.c - the registry of handles: leak reports, SCOPED_LEAKCHECK, and fork(). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include <scoped/leak.h>

#include "internal.h"

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct scoped_thread *live_head;	/* every allocated handle, newest first */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* --- fork ----------------------------------------------------------------------------
 * Before fork, take the registry lock and every handle's lock, so the child inherits them in a
 * consistent state. In the child only the forking thread exists: every other handle loses its
 * thread, and the references held by threads that are gone are dropped.
 */

/* Takes t out of the list; live_mu is held. */
static void unlink_locked(struct scoped_thread *t)
{
	if (t->live_prev)
		t->live_prev->live_next = t->live_next;
	else
		live_head = t->live_next;
	if (t->live_next)
		t->live_next->live_prev = t->live_prev;
}

static void before_fork(void)
{
	pthread_mutex_lock(&live_mu);
	for (struct scoped_thread *t = live_head; t; t = t->live_next)
		pthread_mutex_lock(&t->stop.mu);
}

static void after_fork_parent(void)
{
	for (struct scoped_thread *t = live_head; t; t = t->live_next)
		pthread_mutex_unlock(&t->stop.mu);
	pthread_mutex_unlock(&live_mu);
}

static void after_fork_child(void)
{
	struct scoped_thread *next;
	for (struct scoped_thread *t = live_head; t; t = next) {
		next = t->live_next;
		/* This thread took every lock in before_fork, so it may release them. Waiters on the
		 * condition were the parent's other threads, which the child lacks: start it anew. */
		pthread_mutex_unlock(&t->stop.mu);
		scoped__cond_init(&t->stop.cv);
		bool mine = t == scoped__self; /* fork() was called from this handle's function */
		t->joining = false;
		if (mine) {
			t->refs = !t->closed + 1;
			t->detached = t->closed;
			continue;
		}
		/* Even an ended thread is not ours to join: its pthread_t is the parent's. */
		t->no_thread = true;
		atomic_store(&t->ended, true);
		t->refs = !t->closed;
		if (t->refs == 0) { /* closed from its own thread, which the child lacks */
			unlink_locked(t);
			free(t);
		}
	}
	pthread_mutex_unlock(&live_mu);
}

static void register_atfork(void)
{
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

/* --- the registry ---------------------------------------------------------------------- */

void scoped__live_add(struct scoped_thread *t)
{
	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&live_mu);
	t->live_prev = NULL;
	t->live_next = live_head;
	if (live_head)
		live_head->live_prev = t;
	live_head = t;
	pthread_mutex_unlock(&live_mu);
}

void scoped__live_remove(struct scoped_thread *t)
{
	pthread_mutex_lock(&live_mu);
	unlink_locked(t);
	pthread_mutex_unlock(&live_mu);
}

size_t scoped_live_count(void)
{
	size_t n = 0;
	pthread_mutex_lock(&live_mu);
	for (struct scoped_thread *t = live_head; t; t = t->live_next)
		n += !atomic_load(&t->ended);
	pthread_mutex_unlock(&live_mu);
	return n;
}

size_t scoped_live_report(FILE *out)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	size_t n = 0;
	pthread_mutex_lock(&live_mu);
	for (struct scoped_thread *t = live_head; t; t = t->live_next) {
		if (atomic_load(&t->ended))
			continue;
		n++;
		if (!out)
			continue;
		double age = (double)(now.tv_sec - t->started.tv_sec) +
			     (double)(now.tv_nsec - t->started.tv_nsec) / 1e9;
		fprintf(out, "scoped: live %s \"%s\" started at %s:%d, age %.3f s%s\n", t->kind,
			t->name[0] ? t->name : "(unnamed)", t->file ? t->file : "?", t->line, age,
			atomic_load(&t->stop.requested) ? " (stopping)" : "");
	}
	pthread_mutex_unlock(&live_mu);
	return n;
}

size_t scoped_expect_no_leaks(unsigned grace_ms)
{
	struct timespec end, now;
	scoped__deadline(&end, grace_ms);
	long wait_ns = 100000; /* 0.1 ms, doubling up to 50 ms */
	for (;;) {
		if (scoped_live_count() == 0)
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left_ns = (long)(end.tv_sec - now.tv_sec) * 1000000000L +
			       (end.tv_nsec - now.tv_nsec);
		if (left_ns <= 0)
			break;
		struct timespec nap = { 0, wait_ns < left_ns ? wait_ns : left_ns };
		nanosleep(&nap, NULL);
		if (wait_ns < 50000000L)
			wait_ns *= 2;
	}
	size_t n = scoped_live_count();
	if (n) {
		fprintf(stderr, "scoped: %zu live handle%s after %u ms\n", n, n == 1 ? "" : "s",
			grace_ms);
		n = scoped_live_report(stderr);
	}
	return n;
}

/* --- SCOPED_LEAKCHECK=1 ----------------------------------------------------------------- */

static void report_at_exit(void)
{
	size_t n = scoped_live_count();
	if (n) {
		fprintf(stderr, "scoped: %zu live handle%s at exit\n", n, n == 1 ? "" : "s");
		scoped_live_report(stderr);
	}
}

__attribute__((constructor)) static void leakcheck_init(void)
{
	const char *v = getenv("SCOPED_LEAKCHECK");
	if (v && *v && strcmp(v, "0") != 0)
		atexit(report_at_exit);
}
