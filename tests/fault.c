/* tests/fault.c - the interposer behind tests/fault.h. Linked only into suites that ask for it
 * with -Wl,--wrap=... (tests/extra.mk): there, __real_x is libc's x and __wrap_x is called
 * instead of x from every statically linked object. */
#define _GNU_SOURCE
#include "fault.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
void __real_free(void *p);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __real_pthread_cond_init(pthread_cond_t *cv, const pthread_condattr_t *attr);
int __real_socket(int domain, int type, int protocol);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
void __wrap_free(void *p);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_cond_init(pthread_cond_t *cv, const pthread_condattr_t *attr);
int __wrap_socket(int domain, int type, int protocol);

static const int default_err[FAULT_KINDS] = {
	[FAULT_ALLOC] = ENOMEM,
	[FAULT_THREAD] = EAGAIN,
	[FAULT_COND] = ENOMEM,
	[FAULT_SOCKET] = EMFILE,
};

struct kind_state {
	atomic_bool armed;
	atomic_ulong calls;
	atomic_ulong target;	/* 0: count only */
	atomic_bool fired;
	int err;
	pthread_t owner;	/* only this thread's calls count */
};

static struct kind_state kinds[FAULT_KINDS];
static atomic_long live_allocs;
static atomic_ulong injected;

void fault_arm(enum fault_kind k, unsigned long n, int err)
{
	struct kind_state *s = &kinds[k];
	atomic_store(&s->armed, false);
	s->owner = pthread_self();
	s->err = err ? err : default_err[k];
	atomic_store(&s->calls, 0);
	atomic_store(&s->target, n);
	atomic_store(&s->fired, false);
	atomic_store(&s->armed, true);
}

void fault_disarm(void)
{
	for (int k = 0; k < FAULT_KINDS; k++)
		atomic_store(&kinds[k].armed, false);
}

unsigned long fault_calls(enum fault_kind k) { return atomic_load(&kinds[k].calls); }
int fault_fired(enum fault_kind k) { return atomic_load(&kinds[k].fired); }
long fault_live_allocs(void) { return atomic_load(&live_allocs); }
unsigned long fault_injected(void) { return atomic_load(&injected); }

/* Counts this call when it is the owner's; the error to fail it with, or 0. */
static int should_fail(enum fault_kind k)
{
	struct kind_state *s = &kinds[k];
	if (!atomic_load_explicit(&s->armed, memory_order_acquire) ||
	    !pthread_equal(s->owner, pthread_self()))
		return 0;
	unsigned long n = atomic_fetch_add(&s->calls, 1) + 1;
	if (n != atomic_load(&s->target))
		return 0;
	atomic_store(&s->fired, true);
	atomic_fetch_add(&injected, 1);
	return s->err;
}

static void *counted(void *p)
{
	if (p)
		atomic_fetch_add_explicit(&live_allocs, 1, memory_order_relaxed);
	return p;
}

void *__wrap_malloc(size_t size)
{
	int err = should_fail(FAULT_ALLOC);
	if (err) {
		errno = err;
		return NULL;
	}
	return counted(__real_malloc(size));
}

void *__wrap_calloc(size_t n, size_t size)
{
	int err = should_fail(FAULT_ALLOC);
	if (err) {
		errno = err;
		return NULL;
	}
	return counted(__real_calloc(n, size));
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
	int err = should_fail(FAULT_ALLOC);
	if (err) {
		errno = err;
		return NULL;
	}
	return counted(__real_aligned_alloc(align, size));
}

void *__wrap_realloc(void *p, size_t size)
{
	int err = should_fail(FAULT_ALLOC);
	if (err) {
		errno = err;
		return NULL; /* p is untouched, as with a real failure */
	}
	void *q = __real_realloc(p, size);
	if (!p)
		return counted(q);
	if (!q && size == 0)
		atomic_fetch_sub_explicit(&live_allocs, 1, memory_order_relaxed);
	return q;
}

void __wrap_free(void *p)
{
	if (p)
		atomic_fetch_sub_explicit(&live_allocs, 1, memory_order_relaxed);
	__real_free(p);
}

static atomic_ulong joins;

int __real_pthread_join(pthread_t t, void **ret);
int __wrap_pthread_join(pthread_t t, void **ret);
int __wrap_pthread_join(pthread_t t, void **ret)
{
	atomic_fetch_add_explicit(&joins, 1, memory_order_relaxed);
	return __real_pthread_join(t, ret);
}

unsigned long fault_joins(void) { return atomic_load(&joins); }

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	int err = should_fail(FAULT_THREAD);
	if (err)
		return err;
	return __real_pthread_create(t, attr, fn, arg);
}

int __wrap_pthread_cond_init(pthread_cond_t *cv, const pthread_condattr_t *attr)
{
	int err = should_fail(FAULT_COND);
	if (err)
		return err;
	return __real_pthread_cond_init(cv, attr);
}

int __wrap_socket(int domain, int type, int protocol)
{
	int err = should_fail(FAULT_SOCKET);
	if (err) {
		errno = err;
		return -1;
	}
	return __real_socket(domain, type, protocol);
}
