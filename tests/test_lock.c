/* tests/test_lock.c - scoped/lock.h: mutex, rwlock and custom guards are really released. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>

#include <scoped.h>

/* Whether another thread could take the lock right now: the test that matters, since a
 * recursive or error-checking owner would see its own lock differently. */
static void *try_mutex(void *m)
{
	int err = pthread_mutex_trylock(m);
	if (err == 0)
		pthread_mutex_unlock(m);
	return (void *)(intptr_t)(err == 0);
}

static bool mutex_free_elsewhere(pthread_mutex_t *m)
{
	pthread_t t;
	void *ok;
	cr_assert_eq(pthread_create(&t, NULL, try_mutex, m), 0);
	pthread_join(t, &ok);
	return ok != NULL;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int locked_then_return(bool early)
{
	scoped_lock(&mu);
	cr_assert_not(mutex_free_elsewhere(&mu));
	if (early)
		return 1;
	return 2;
}

Test(lock, statement_form_unlocks_on_return_and_end)
{
	cr_assert_eq(locked_then_return(true), 1);
	cr_assert(mutex_free_elsewhere(&mu));
	cr_assert_eq(locked_then_return(false), 2);
	cr_assert(mutex_free_elsewhere(&mu));
	{
		scoped_lock(&mu);
		cr_assert_not(mutex_free_elsewhere(&mu));
	}
	cr_assert(mutex_free_elsewhere(&mu));
}

Test(lock, statement_form_unlocks_each_loop_iteration)
{
	for (int i = 0; i < 3; i++) {
		scoped_lock(&mu);
		cr_assert_not(mutex_free_elsewhere(&mu));
		if (i == 1)
			continue;
	}
	cr_assert(mutex_free_elsewhere(&mu));
}

Test(lock, evaluates_its_argument_once)
{
	pthread_mutex_t ms[2] = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER };
	int i = 0;
	{
		scoped_lock(&ms[i++]);
		cr_assert_eq(i, 1);
		cr_assert_not(mutex_free_elsewhere(&ms[0]));
	}
	cr_assert(mutex_free_elsewhere(&ms[0]));
	cr_assert(mutex_free_elsewhere(&ms[1]));
}

Test(lock, with_block_unlocks_on_fall_off_and_break)
{
	int runs = 0;
	scoped_with_lock(&mu) {
		runs++;
		cr_assert_not(mutex_free_elsewhere(&mu));
	}
	cr_assert(mutex_free_elsewhere(&mu));
	scoped_with_lock(&mu) {
		runs++;
		if (runs)
			break;
		cr_assert_fail("break did not leave the block");
	}
	cr_assert(mutex_free_elsewhere(&mu));
	cr_assert_eq(runs, 2, "the block runs exactly once");
}

static int with_block_return(void)
{
	scoped_with_lock(&mu) {
		return 7;
	}
	return 0;
}

Test(lock, with_block_unlocks_on_return)
{
	cr_assert_eq(with_block_return(), 7);
	cr_assert(mutex_free_elsewhere(&mu));
}

/* A second thread holds the mutex until told to let go. */
struct holder {
	pthread_mutex_t *m;
	sem_t locked, release;
};

static void *hold(void *arg)
{
	struct holder *h = arg;
	pthread_mutex_lock(h->m);
	sem_post(&h->locked);
	sem_wait(&h->release);
	pthread_mutex_unlock(h->m);
	return NULL;
}

Test(lock, trylock_block_skipped_when_held_elsewhere)
{
	struct holder h = { .m = &mu };
	sem_init(&h.locked, 0, 0);
	sem_init(&h.release, 0, 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, hold, &h), 0);
	sem_wait(&h.locked);

	int runs = 0;
	scoped_with_trylock(&mu) runs++;
	cr_assert_eq(runs, 0);

	sem_post(&h.release);
	pthread_join(t, NULL);
	scoped_with_trylock(&mu) {
		runs++;
		cr_assert_not(mutex_free_elsewhere(&mu));
	}
	cr_assert_eq(runs, 1);
	cr_assert(mutex_free_elsewhere(&mu));
	sem_destroy(&h.locked);
	sem_destroy(&h.release);
}

/* --- rwlock ------------------------------------------------------------------------------ */

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

static void *try_write(void *arg)
{
	int err = pthread_rwlock_trywrlock(arg);
	if (err == 0)
		pthread_rwlock_unlock(arg);
	return (void *)(intptr_t)(err == 0);
}

static void *try_read(void *arg)
{
	int err = pthread_rwlock_tryrdlock(arg);
	if (err == 0)
		pthread_rwlock_unlock(arg);
	return (void *)(intptr_t)(err == 0);
}

static bool elsewhere(void *(*fn)(void *), pthread_rwlock_t *l)
{
	pthread_t t;
	void *ok;
	cr_assert_eq(pthread_create(&t, NULL, fn, l), 0);
	pthread_join(t, &ok);
	return ok != NULL;
}

Test(lock, rdlock_shares_and_is_released)
{
	{
		scoped_rdlock(&rw);
		cr_assert(elsewhere(try_read, &rw));
		cr_assert_not(elsewhere(try_write, &rw));
	}
	cr_assert(elsewhere(try_write, &rw));
}

Test(lock, wrlock_excludes_and_is_released)
{
	{
		scoped_wrlock(&rw);
		cr_assert_not(elsewhere(try_read, &rw));
	}
	cr_assert(elsewhere(try_write, &rw));
	scoped_with_wrlock(&rw) cr_assert_not(elsewhere(try_read, &rw));
	scoped_with_rdlock(&rw) cr_assert_not(elsewhere(try_write, &rw));
	cr_assert(elsewhere(try_write, &rw));
}

/* --- guards for other lock types: a spinlock and a semaphore ------------------------------- */

SCOPED_DEFINE_GUARD(spin, pthread_spinlock_t, pthread_spin_lock, pthread_spin_unlock)
SCOPED_DEFINE_GUARD(sem, sem_t, sem_wait, sem_post)

static int sem_value(sem_t *s)
{
	int v;
	sem_getvalue(s, &v);
	return v;
}

static void *try_spin(void *arg)
{
	int err = pthread_spin_trylock(arg);
	if (err == 0)
		pthread_spin_unlock(arg);
	return (void *)(intptr_t)(err == 0);
}

Test(lock, guard_for_a_spinlock)
{
	pthread_spinlock_t s;
	pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE);
	pthread_t t;
	void *ok;
	for (int i = 0; i < 2; i++) {
		scoped_guard(spin, &s);
		pthread_create(&t, NULL, try_spin, (void *)&s);
		pthread_join(t, &ok);
		cr_assert_null(ok);
	}
	pthread_create(&t, NULL, try_spin, (void *)&s);
	pthread_join(t, &ok);
	cr_assert_not_null(ok);
	pthread_spin_destroy(&s);
}

static int sem_guarded(sem_t *s, bool early)
{
	scoped_guard(sem, s);
	if (early)
		return sem_value(s);
	return sem_value(s) + 10;
}

Test(lock, guard_for_a_semaphore)
{
	sem_t s;
	sem_init(&s, 0, 2);
	cr_assert_eq(sem_guarded(&s, true), 1);
	cr_assert_eq(sem_value(&s), 2);
	cr_assert_eq(sem_guarded(&s, false), 11);
	cr_assert_eq(sem_value(&s), 2);
	scoped_with_guard(sem, &s) {
		cr_assert_eq(sem_value(&s), 1);
		break;
	}
	cr_assert_eq(sem_value(&s), 2);
	sem_destroy(&s);
}

/* --- a failed lock is not silent ------------------------------------------------------------ */

Test(lock, failed_lock_aborts_with_a_message, .signal = SIGABRT)
{
	pthread_mutexattr_t a;
	pthread_mutex_t m;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(&m, &a);
	scoped_lock(&m);
	scoped_lock(&m); /* EDEADLK: relocking an error-checking mutex */
	cr_assert_fail("the second lock returned");
}
