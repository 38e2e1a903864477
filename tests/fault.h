/* tests/fault.h - fault injection for the tests, by link-time interposition (ld --wrap).
 *
 * A suite linked with tests/fault.o and -Wl,--wrap=malloc,... (see tests/extra.mk) has every
 * call that its own objects, libscoped.a and libsamples.a make to malloc, calloc, realloc,
 * aligned_alloc, free, pthread_create, pthread_join, pthread_cond_init and socket routed
 * through fault.c.
 * Calls made inside libc itself (getaddrinfo's allocations, fopen's) are not seen.
 *
 *	fault_arm(FAULT_ALLOC, 3, 0);		// the 3rd allocation from now fails (ENOMEM)
 *	cache *c = cache_new(&cfg);		// NULL, errno == ENOMEM
 *	fault_disarm();
 *
 * Only calls made by the thread that armed are counted and failed, so background threads (a
 * janitor, a flusher) cannot shift the count. Live allocations are counted in every thread.
 */
#ifndef SCOPED_TESTS_FAULT_H
#define SCOPED_TESTS_FAULT_H

enum fault_kind {
	FAULT_ALLOC,	/* malloc, calloc, realloc, aligned_alloc: NULL, errno ENOMEM */
	FAULT_THREAD,	/* pthread_create: returns err (default EAGAIN) */
	FAULT_COND,	/* pthread_cond_init: returns err (default ENOMEM) */
	FAULT_SOCKET,	/* socket: -1, errno err (default EMFILE) */
	FAULT_KINDS
};

/* From now on, count calls of kind k made by this thread; the n-th (1-based) fails once with
 * err (0: the default above). n == 0 counts without failing. Other kinds keep their state. */
void fault_arm(enum fault_kind k, unsigned long n, int err);
/* Stops counting and failing, for every kind. */
void fault_disarm(void);
/* Calls of kind k counted since it was last armed (the failed one included). */
unsigned long fault_calls(enum fault_kind k);
/* Whether the armed failure of kind k has happened. */
int fault_fired(enum fault_kind k);
/* Allocations made through the wrappers and not yet freed, in every thread. */
long fault_live_allocs(void);
/* Total failures injected since the program started (for the figures). */
unsigned long fault_injected(void);
/* pthread_join calls made since the program started, in every thread: the library promises
 * exactly one per thread, whoever stops it. */
unsigned long fault_joins(void);

#endif
