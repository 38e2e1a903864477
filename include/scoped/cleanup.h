/* scoped/cleanup.h - close resources when their variable leaves scope.
 *
 * C has no destructors, but GCC and Clang have __attribute__((cleanup(fn))): when the variable
 * goes out of scope, by any path (falling off the end, return, break, continue, goto out of the
 * block), the compiler calls fn(&variable). This header wraps that attribute so each resource
 * type is registered once and used in one word:
 *
 *	typedef struct conn conn;
 *	void conn_close(conn *c);		// accepts NULL
 *	SCOPED_DEFINE(conn, conn_close)
 *
 *	int send_hello(const char *addr)
 *	{
 *		scoped(conn) c = conn_open(addr);
 *		if (!c)
 *			return -1;		// c is NULL: nothing to close
 *		if (conn_write(c, "hello") < 0)
 *			return -1;		// conn_close(c) runs here
 *		return 0;			// ... and here
 *	}
 *
 * Ownership moves out with scoped_take(): the variable is left NULL, so scope exit does nothing
 * (and the compiler can delete the cleanup entirely):
 *
 *	conn *conn_open_checked(const char *addr)
 *	{
 *		scoped(conn) c = conn_open(addr);
 *		if (!c || conn_handshake(c) < 0)
 *			return NULL;		// a half-opened c is closed
 *		return scoped_take(c);		// the caller owns it now
 *	}
 *
 * Cleanups run in reverse order of declaration, like C++ destructors.
 *
 * Pitfalls:
 *  - Declare and initialize in one statement, where the resource is acquired. A cleanup variable
 *    declared at the top of a function and assigned later is cleaned up in declaration order, not
 *    acquisition order: if it is declared before a scoped_lock() but filled while the lock is
 *    held, it is closed *after* the unlock, outside the lock that protected it. An uninitialized
 *    one is closed with garbage when an early return leaves before the assignment.
 *  - One variable per declaration: `scoped(T) a = x, b = y;` makes b a `T`, not a `T *`.
 *  - Never jump *into* the scope of a cleanup variable with goto or switch: clang rejects it,
 *    but GCC (12) accepts a goto silently and warns about a switch only with -Wall; either way
 *    the initialization is skipped and the cleanup then runs on garbage.
 *  - longjmp(), exit() and _exit() leave without running cleanups. pthread_exit() and
 *    pthread_cancel() run them only in code built with -fexceptions.
 *  - The value is what is closed: writing `v = other;` without closing v first leaks the old one.
 *    Use scoped_clear() to close early.
 */
#ifndef SCOPED_CLEANUP_H
#define SCOPED_CLEANUP_H

#if defined(__has_attribute)
#  if !__has_attribute(cleanup)
#    error "scoped needs __attribute__((cleanup)): build with GCC (>= 4) or Clang (>= 3.3)"
#  endif
#elif !defined(__GNUC__)
#  error "scoped needs __attribute__((cleanup)): build with GCC (>= 4) or Clang (>= 3.3)"
#endif

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* --- mechanism -------------------------------------------------------------------------- */

#define SCOPED__CAT2(a, b) a##b
#define SCOPED__CAT(a, b) SCOPED__CAT2(a, b)
/* A name no other expansion uses: one per macro call, even on the same line. */
#define SCOPED__UNIQUE(prefix) SCOPED__CAT(SCOPED__CAT(scoped__, prefix), __COUNTER__)

/* `unused`: clang before 17 calls a variable that is only read by its cleanup unused. */
#define SCOPED__CLEANUP(fn) __attribute__((cleanup(fn), unused))

/* GNU __typeof__: GCC and Clang accept it in every C and C++ mode, pedantic or not. */
#define SCOPED__TYPEOF(x) __typeof__(x)

/* Identity functions whose result must be used: a take whose result is dropped loses the
 * resource, so the compiler says so. The pointer's bytes are copied, not cast: its result is a
 * plain void *, which scoped_take() casts back without dropping a qualifier (-Wcast-qual). */
__attribute__((warn_unused_result, always_inline)) static inline void *
scoped__must_use_ptr(const volatile void *p)
{
	void *r;
	__builtin_memcpy(&r, &p, sizeof r);
	return r;
}

__attribute__((warn_unused_result, always_inline)) static inline int scoped__must_use_int(int fd)
{
	return fd;
}

/* --- registering a type -------------------------------------------------------------------
 *   SCOPED_DEFINE(T, close_fn)		T is a typedef name; close_fn(T *) runs when not NULL
 *   SCOPED_DEFINE_CLEAR(T, clear_fn)	clear_fn(T *) runs on the value itself, always
 */

#define SCOPED_DEFINE(T, close_fn)                                                          \
	__attribute__((unused)) static inline void scoped__close_##T(T **scoped__p)         \
	{                                                                                   \
		if (*scoped__p)                                                             \
			close_fn(*scoped__p);                                               \
	}

#define SCOPED_DEFINE_CLEAR(T, clear_fn)                                                    \
	__attribute__((unused)) static inline void scoped__clear_##T(T *scoped__p)          \
	{                                                                                   \
		clear_fn(scoped__p);                                                        \
	}

/* --- declaring a scoped variable ----------------------------------------------------------
 *   scoped(T) v = ctor(...);		T *v, closed at scope exit when not NULL
 *   scoped_auto(T) v = ...;		a T value, clear_fn(&v) at scope exit
 *   scoped_free char *s = malloc(n);	free(s) at scope exit
 *   scoped_fd int fd = open(...);	close(fd) at scope exit when fd >= 0, errno kept
 *   scoped_with(fn) T v = ...;		fn(&v) at scope exit: the raw attribute, spelled once
 */

#define scoped(T) SCOPED__CLEANUP(scoped__close_##T) T *
#define scoped_auto(T) SCOPED__CLEANUP(scoped__clear_##T) T
#define scoped_with(fn) SCOPED__CLEANUP(fn)
#define scoped_free SCOPED__CLEANUP(scoped__free)
#define scoped_fd SCOPED__CLEANUP(scoped__close_fd)

/* Any pointer variable: read its bytes as a void * (all object pointers share a representation
 * on the platforms that have the cleanup attribute). */
static inline void scoped__free(void *pp)
{
	void *p;
	__builtin_memcpy(&p, pp, sizeof p);
	free(p);
}

static inline void scoped__close_fd(const int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

/* --- moving ownership ---------------------------------------------------------------------
 *   scoped_take(v)		yields v and leaves it NULL; the result must be used
 *   scoped_take_fd(fd)		yields fd and leaves it -1; the result must be used
 *   scoped_return(v)		return scoped_take(v);
 *   scoped_clear(&v, close_fn)	closes v now when not NULL and leaves it NULL; repeatable
 * Each evaluates its argument once.
 */

#define scoped__take_value(v)                                                               \
	__extension__({                                                                     \
		SCOPED__TYPEOF(v) *scoped__pp = &(v);                                       \
		SCOPED__TYPEOF(v) scoped__val = *scoped__pp;                                \
		*scoped__pp = NULL;                                                         \
		scoped__val;                                                                \
	})

/* The outermost expression must be the must-use call itself: clang does not look through a
 * cast written inside a macro. So under clang's C the result is a void *, which converts to
 * the destination implicitly (the GCC builds check that the types match); elsewhere it is cast
 * back to the variable's own type. */
#if defined(__clang__) && !defined(__cplusplus)
#  define scoped_take(v) scoped__must_use_ptr(scoped__take_value(v))
#else
#  define scoped_take(v) ((SCOPED__TYPEOF(v))scoped__must_use_ptr(scoped__take_value(v)))
#endif

#define scoped_take_fd(fd)                                                                  \
	scoped__must_use_int(__extension__({                                                \
		int *scoped__pfd = &(fd);                                                   \
		int scoped__val = *scoped__pfd;                                             \
		*scoped__pfd = -1;                                                          \
		scoped__val;                                                                \
	}))

#define scoped_return(v) return scoped_take(v)

/* NULL first, then close: a close_fn that reaches the variable again sees it already gone. */
#define scoped_clear(pv, close_fn)                                                          \
	do {                                                                                \
		SCOPED__TYPEOF(*(pv)) *scoped__pv = (pv);                                   \
		SCOPED__TYPEOF(*(pv)) scoped__val = *scoped__pv;                            \
		*scoped__pv = NULL;                                                         \
		if (scoped__val)                                                            \
			close_fn(scoped__val);                                              \
	} while (0)

/* --- defer --------------------------------------------------------------------------------
 *   scoped_defer(fn, arg);	calls fn(arg) at scope exit
 * fn takes one pointer argument (any pointee type; its return value is ignored). The call goes
 * through a type-erased pointer, which every ABI with this attribute passes identically; clang's
 * -fsanitize=function is told so.
 */

struct scoped__defer {
	void (*fn)(void);
	void *arg;
};

#if defined(__clang__) && __clang_major__ >= 17
__attribute__((no_sanitize("function")))
#endif
static inline void scoped__run_defer(const struct scoped__defer *d)
{
	((void (*)(void *))d->fn)(d->arg);
}

#define scoped_defer(fn, arg)                                                               \
	SCOPED__CLEANUP(scoped__run_defer)                                                  \
	const struct scoped__defer SCOPED__UNIQUE(defer_) = { (void (*)(void))(fn),          \
							     (void *)(arg) }

/* --- compile-time leak warnings -----------------------------------------------------------
 *   SCOPED_ALLOC(close_fn)	on a constructor's declaration: its result must be used, and
 *				GCC 11+ -fanalyzer reports a result that is never closed.
 * close_fn must be declared before the constructor.
 */

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && !defined(__cplusplus)
#  define SCOPED_ALLOC(close_fn) __attribute__((malloc(close_fn, 1), warn_unused_result))
#else
#  define SCOPED_ALLOC(close_fn) __attribute__((warn_unused_result))
#endif

#endif /* SCOPED_CLEANUP_H */
