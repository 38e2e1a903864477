/* scoped/thread.h - background threads that stop when their scope ends.
 *
 * A scoped_thread is C++20's std::jthread for C: its function receives a stop token, and leaving
 * the scope of a scoped(scoped_thread) variable requests stop, wakes the thread and joins it.
 *
 *	static void pump(scoped_stop *stop, void *arg)
 *	{
 *		while (!scoped_stop_sleep(stop, 100))	// true at once on stop
 *			poll_queue(arg);
 *	}
 *
 *	scoped(scoped_thread) t = scoped_thread_start("pump", pump, q);
 *	if (!t)
 *		return -1;				// errno says why
 *	...						// stopped and joined at scope exit
 *
 * A scoped_worker is the common case done for you: a periodic job (a janitor, a flusher) that
 * ticks every period_ms, can be woken early, and runs a final on_stop once, on its own thread:
 *
 *	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
 *		.name = "flusher", .period_ms = 300,
 *		.tick = flush, .on_stop = flush, .ctx = buf });
 *	...
 *	scoped_worker_wake(w);			// buffer is full: flush soon
 *
 * The go-cache pattern: give the thread only the inner object (ctx), and give the caller a
 * handle that owns the thread; when the handle closes, the thread stops and the inner object can
 * be freed. Move a handle out of a function with scoped_take() / scoped_return().
 *
 * stop vs close:
 *  - scoped_*_stop() is Go's Close: request stop, wake the thread, wait for it to end (on_stop
 *    included). Idempotent and safe from many threads at once: every caller returns after the
 *    thread has ended, and exactly one of them joins it. The handle stays valid; later wake and
 *    stop calls do nothing.
 *  - scoped_*_close() stops and then frees the handle: it is what scope exit runs. NULL is fine.
 *    It must be the last call on the handle: nobody may use it afterwards.
 *  - Stop is prompt: a condition variable on CLOCK_MONOTONIC wakes the thread, so closing a
 *    worker whose period is an hour takes microseconds. A scoped_thread's function must cooperate:
 *    check scoped_stop_requested() or wait with scoped_stop_sleep(); stop waits for it to return.
 *
 * Threading rules:
 *  - fn, tick and on_stop run on the handle's own thread. They may call wake, stop and close on
 *    their own handle: stop and close then return at once (no self-join); the thread finishes
 *    its function and is reclaimed by itself. After close from inside, do not touch the handle.
 *  - Two threads that each stop the other from their callbacks wait for each other forever, as
 *    two pthread_join()s would: stop other handles from outside their callbacks.
 *  - fn may return or call pthread_exit(); do not pthread_cancel() a scoped thread.
 *  - The new thread inherits the starting thread's signal mask: block signals before starting if
 *    the thread must not receive them.
 *  - Thread names (pthread_setname_np) are truncated to 15 bytes; leak reports keep 31.
 *  - exit() does not run scope cleanups: stop or close handles before exiting.
 *
 * fork(): in a child, handles inherited from the parent have no thread. Closing them frees the
 * child's copy without hanging and without touching the parent's threads; tick and on_stop do not
 * run in the child. Only the thread that called fork() exists in the child.
 *
 * Errors: the start functions return NULL and set errno: EINVAL for a NULL config, tick or fn;
 * EAGAIN (or pthread_create's error) when no thread can be made; ENOMEM when memory runs out.
 * Nothing is left behind on failure.
 *
 * Leak reports: the start macros record __FILE__:__LINE__ (see scoped/leak.h). They are variadic,
 * so a compound-literal config with commas passes straight through. The plain functions exist
 * too: (scoped_thread_start)(name, fn, arg) calls the function and records no call site.
 * Compile time: the start functions carry SCOPED_ALLOC, so gcc -fanalyzer (GCC 11+) reports a
 * handle kept in a plain pointer and never closed; scoped(...) handles are not reported. The
 * analyzer stops tracking a pointer once it is passed to another function (wake included).
 */
#ifndef SCOPED_THREAD_H
#define SCOPED_THREAD_H

#include <stdbool.h>
#include <stddef.h>

#include "cleanup.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct scoped_stop scoped_stop;		/* a stop token, handed to the thread's fn */
typedef struct scoped_thread scoped_thread;	/* like C++20 std::jthread */
typedef struct scoped_worker scoped_worker;	/* a periodic background job */

typedef struct scoped_worker_config {
	const char *name;		/* thread name and leak reports; NULL is fine */
	unsigned period_ms;		/* tick every period_ms, the first one period in;
					 * 0: only when woken */
	void (*tick)(void *ctx);	/* required; runs on the worker thread */
	void (*on_stop)(void *ctx);	/* optional; runs once on the worker thread, last */
	void *ctx;			/* the inner object: the only thing the thread touches */
} scoped_worker_config;

/* --- closing (declared first: the constructors name them) ------------------------------ */

void scoped_thread_stop(scoped_thread *t);	/* request stop, wake, join; repeatable */
void scoped_thread_close(scoped_thread *t);	/* stop, then free; NULL is fine */
void scoped_worker_stop(scoped_worker *w);	/* on_stop runs exactly once; joins; repeatable */
void scoped_worker_close(scoped_worker *w);	/* stop, then free; NULL is fine */

/* --- threads ---------------------------------------------------------------------------- */

/* Runs fn(stop, arg) on a new thread. */
SCOPED_ALLOC(scoped_thread_close)
scoped_thread *scoped_thread_start_at(const char *file, int line, const char *name,
				      void (*fn)(scoped_stop *stop, void *arg), void *arg);
SCOPED_ALLOC(scoped_thread_close)
scoped_thread *(scoped_thread_start)(const char *name, void (*fn)(scoped_stop *stop, void *arg),
				     void *arg);
#define scoped_thread_start(...) scoped_thread_start_at(__FILE__, __LINE__, __VA_ARGS__)

/* True once stop has been requested. NULL: false. */
bool scoped_stop_requested(const scoped_stop *stop);
/* Sleeps up to ms milliseconds; returns true (at once) when stop is requested. */
bool scoped_stop_sleep(scoped_stop *stop, unsigned ms);

/* --- workers ---------------------------------------------------------------------------- */

/* Starts a worker; *cfg is copied. */
SCOPED_ALLOC(scoped_worker_close)
scoped_worker *scoped_worker_start_at(const char *file, int line, const scoped_worker_config *cfg);
SCOPED_ALLOC(scoped_worker_close)
scoped_worker *(scoped_worker_start)(const scoped_worker_config *cfg);
#define scoped_worker_start(...) scoped_worker_start_at(__FILE__, __LINE__, __VA_ARGS__)

/* Runs tick soon, without waiting for the period; a wake that returned before stop was
 * requested runs its tick before on_stop. On a stopped worker or NULL: nothing. */
void scoped_worker_wake(scoped_worker *w);

SCOPED_DEFINE(scoped_thread, scoped_thread_close)
SCOPED_DEFINE(scoped_worker, scoped_worker_close)

#ifdef __cplusplus
}
#endif

#endif /* SCOPED_THREAD_H */
