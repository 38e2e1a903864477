/* scoped/lock.h - locks held until the end of a scope or a block.
 *
 *	void account_add(account *a, long n)
 *	{
 *		scoped_lock(&a->mu);			// locked from here ...
 *		if (n < 0)
 *			return;				// ... unlocked here
 *		a->balance += n;
 *	}						// ... and here
 *
 *	scoped_with_lock(&a->mu) {			// locked for this block only
 *		if (a->closed)
 *			break;				// leaves the block, unlocked
 *		a->balance += n;
 *	}
 *
 *	scoped_with_trylock(&a->mu) {			// runs only if the lock was free
 *		flush(a);
 *	}
 *
 * Forms:
 *   scoped_lock(m);				pthread_mutex_t *m until scope exit
 *   scoped_rdlock(rw); scoped_wrlock(rw);	pthread_rwlock_t *rw until scope exit
 *   scoped_with_lock(m) { ... }		the mutex for one block
 *   scoped_with_trylock(m) { ... }		the block runs only when trylock succeeded
 *   scoped_with_rdlock(rw) { ... }, scoped_with_wrlock(rw) { ... }
 *   SCOPED_DEFINE_GUARD(name, T, lock_fn, unlock_fn)	a guard for any lock type
 *   scoped_guard(name, p);			lock_fn(p) now, unlock_fn(p) at scope exit
 *   scoped_with_guard(name, p) { ... }		the same for one block
 *
 * Pitfalls:
 *  - The block forms are loops underneath: `break` and `continue` inside one leave that block,
 *    not an enclosing loop.
 *  - Cleanup variables declared *before* scoped_lock() are released *after* the unlock: declare
 *    what the lock protects after taking it.
 *  - A failed pthread_mutex_lock / pthread_rwlock_*lock (EDEADLK, EAGAIN, EINVAL: bugs in the
 *    caller) prints the error and aborts: running the block unlocked would be silent corruption.
 *    A failed trylock is not an error: the block just does not run.
 *  - The rwlock forms exist when <pthread.h> declares rwlocks (POSIX 2001: define
 *    _POSIX_C_SOURCE >= 200112L or _GNU_SOURCE under a strict -std=c11).
 */
#ifndef SCOPED_LOCK_H
#define SCOPED_LOCK_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

/* C++17's <mutex> declares std::scoped_lock, whose constructors are spelled like the
 * scoped_lock() macro below: read it first, so that its include guard keeps a later
 * #include <mutex> from meeting the macro. extern "C++": users may include us in extern "C". */
#if defined(__cplusplus) && defined(__has_include)
#  if __has_include(<mutex>)
extern "C++" {
#    include <mutex>
}
#  endif
#endif

__attribute__((noreturn, cold, unused)) static void scoped__lock_failed(const char *what, int err)
{
	fprintf(stderr, "scoped: %s failed: %s\n", what, strerror(err));
	abort();
}

/* --- guards for any lock type --------------------------------------------------------------
 * A guard is a pointer to the lock; NULL means "not held", so its cleanup does nothing. The
 * `once` field drives the block forms' one-pass for loop. */

#define SCOPED_DEFINE_GUARD(name, T, lock_fn, unlock_fn)                                     \
	struct scoped__guard_##name {                                                       \
		T *lock;                                                                    \
		int once;                                                                   \
	};                                                                                  \
	__attribute__((unused)) static inline T *scoped__guard_lock_##name(T *scoped__l)    \
	{                                                                                   \
		lock_fn(scoped__l);                                                         \
		return scoped__l;                                                           \
	}                                                                                   \
	__attribute__((unused)) static inline void scoped__guard_unlock_##name(             \
		const struct scoped__guard_##name *scoped__g)                               \
	{                                                                                   \
		if (scoped__g->lock)                                                        \
			unlock_fn(scoped__g->lock);                                         \
	}

#define SCOPED__GUARD_VAR(name, id, acquire)                                                 \
	SCOPED__CLEANUP(scoped__guard_unlock_##name) struct scoped__guard_##name id = { acquire, 1 }

#define scoped_guard(name, p)                                                               \
	SCOPED__GUARD_VAR(name, SCOPED__UNIQUE(guard_), scoped__guard_lock_##name(p))

#define SCOPED__WITH(name, id, acquire)                                                      \
	for (SCOPED__GUARD_VAR(name, id, acquire); id.lock && id.once; id.once = 0)

#define scoped_with_guard(name, p)                                                          \
	SCOPED__WITH(name, SCOPED__UNIQUE(guard_), scoped__guard_lock_##name(p))

/* --- pthread mutex ----------------------------------------------------------------------- */

static inline void scoped__mutex_lock(pthread_mutex_t *m)
{
	int err = pthread_mutex_lock(m);
	if (err)
		scoped__lock_failed("pthread_mutex_lock", err);
}

static inline void scoped__mutex_unlock(pthread_mutex_t *m)
{
	int err = pthread_mutex_unlock(m);
	if (err)
		scoped__lock_failed("pthread_mutex_unlock", err);
}

SCOPED_DEFINE_GUARD(scoped__mutex, pthread_mutex_t, scoped__mutex_lock, scoped__mutex_unlock)

/* NULL when the mutex is busy: the guard then holds nothing and the block is skipped. */
static inline pthread_mutex_t *scoped__mutex_trylock(pthread_mutex_t *m)
{
	return pthread_mutex_trylock(m) == 0 ? m : NULL;
}

#define scoped_lock(m) scoped_guard(scoped__mutex, m)
#define scoped_with_lock(m) scoped_with_guard(scoped__mutex, m)
#define scoped_with_trylock(m)                                                              \
	SCOPED__WITH(scoped__mutex, SCOPED__UNIQUE(guard_), scoped__mutex_trylock(m))

/* --- pthread rwlock ---------------------------------------------------------------------- */
#ifdef PTHREAD_RWLOCK_INITIALIZER

static inline void scoped__rwlock_rdlock(pthread_rwlock_t *rw)
{
	int err = pthread_rwlock_rdlock(rw);
	if (err)
		scoped__lock_failed("pthread_rwlock_rdlock", err);
}

static inline void scoped__rwlock_wrlock(pthread_rwlock_t *rw)
{
	int err = pthread_rwlock_wrlock(rw);
	if (err)
		scoped__lock_failed("pthread_rwlock_wrlock", err);
}

static inline void scoped__rwlock_unlock(pthread_rwlock_t *rw)
{
	int err = pthread_rwlock_unlock(rw);
	if (err)
		scoped__lock_failed("pthread_rwlock_unlock", err);
}

SCOPED_DEFINE_GUARD(scoped__rd, pthread_rwlock_t, scoped__rwlock_rdlock, scoped__rwlock_unlock)
SCOPED_DEFINE_GUARD(scoped__wr, pthread_rwlock_t, scoped__rwlock_wrlock, scoped__rwlock_unlock)

#define scoped_rdlock(rw) scoped_guard(scoped__rd, rw)
#define scoped_wrlock(rw) scoped_guard(scoped__wr, rw)
#define scoped_with_rdlock(rw) scoped_with_guard(scoped__rd, rw)
#define scoped_with_wrlock(rw) scoped_with_guard(scoped__wr, rw)

#endif /* PTHREAD_RWLOCK_INITIALIZER */

#endif /* SCOPED_LOCK_H */
