/* tests/test_cleanup.c - scoped/cleanup.h: every exit path, order, moves, free, fd, defer. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>

#include <scoped.h>

#include "helpers.h"

#if UNDER_ASAN || UNDER_TSAN /* the sanitizer owns the allocator */
#  include <sanitizer/allocator_interface.h>
static size_t heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
static size_t heap_in_use(void) { return mallinfo2().uordblks; }
#endif

/* A resource that records its closing in a log, so tests can see what closed, and in what order. */
typedef struct res {
	char name;
} res;

static char closed[64];
static size_t nclosed;

static void res_close(res *r)
{
	closed[nclosed++] = r->name;
	closed[nclosed] = '\0';
	free(r);
}
SCOPED_DEFINE(res, res_close)

static res *res_open(char name)
{
	res *r = malloc(sizeof *r);
	cr_assert_not_null(r);
	r->name = name;
	return r;
}

static void reset(void)
{
	nclosed = 0;
	closed[0] = '\0';
}

TestSuite(cleanup, .init = reset);

Test(cleanup, end_of_block_closes)
{
	{
		scoped(res) a = res_open('a');
		cr_assert_str_empty(closed);
		(void)a;
	}
	cr_assert_str_eq(closed, "a");
}

static int leave_by_return(bool early)
{
	scoped(res) a = res_open('a');
	if (early)
		return 1;
	scoped(res) b = res_open('b');
	(void)a, (void)b;
	return 2;
}

Test(cleanup, return_closes_what_was_declared)
{
	cr_assert_eq(leave_by_return(true), 1);
	cr_assert_str_eq(closed, "a");
	reset();
	cr_assert_eq(leave_by_return(false), 2);
	cr_assert_str_eq(closed, "ba");
}

static char name_of_fresh(void)
{
	scoped(res) a = res_open('n');
	return a->name; /* read before the cleanup frees a: ASan would see a use after free */
}

Test(cleanup, return_value_is_computed_before_cleanup)
{
	cr_assert_eq(name_of_fresh(), 'n');
	cr_assert_str_eq(closed, "n");
}

Test(cleanup, break_closes)
{
	for (int i = 0; i < 10; i++) {
		scoped(res) a = res_open((char)('0' + i));
		(void)a;
		if (i == 2)
			break;
	}
	cr_assert_str_eq(closed, "012");
}

Test(cleanup, continue_closes_each_iteration)
{
	for (int i = 0; i < 4; i++) {
		scoped(res) a = res_open((char)('0' + i));
		(void)a;
		if (i % 2)
			continue;
		cr_assert_eq(nclosed, (size_t)i);
	}
	cr_assert_str_eq(closed, "0123");
}

Test(cleanup, goto_out_closes)
{
	int tries = 0;
again:
	{
		scoped(res) a = res_open('g');
		(void)a;
		if (tries++ < 2)
			goto again;
		goto out;
	}
out:
	cr_assert_str_eq(closed, "ggg");
}

Test(cleanup, nested_blocks_close_in_reverse_order)
{
	{
		scoped(res) a = res_open('a');
		{
			scoped(res) b = res_open('b');
			scoped(res) c = res_open('c');
			(void)b, (void)c;
		}
		cr_assert_str_eq(closed, "cb");
		scoped(res) d = res_open('d');
		(void)a, (void)d;
	}
	cr_assert_str_eq(closed, "cbda");
}

Test(cleanup, switch_case_block_closes)
{
	for (int i = 0; i < 2; i++) {
		switch (i) {
		case 0: {
			scoped(res) a = res_open('s');
			(void)a;
			break;
		}
		default:
			break;
		}
	}
	cr_assert_str_eq(closed, "s");
}

Test(cleanup, null_is_not_closed)
{
	{
		scoped(res) a = NULL;
		(void)a;
	}
	cr_assert_eq(nclosed, 0);
}

static res *make_pair_first(void)
{
	scoped(res) a = res_open('a');
	scoped(res) b = res_open('b');
	(void)b;
	return scoped_take(a);
}

Test(cleanup, take_moves_ownership_out)
{
	res *a = make_pair_first();
	cr_assert_str_eq(closed, "b");
	cr_assert_eq(a->name, 'a');
	res_close(a);
}

static res *returned(void)
{
	scoped(res) r = res_open('r');
	scoped_return(r);
}

Test(cleanup, scoped_return_moves_ownership_out)
{
	res *r = returned();
	cr_assert_eq(nclosed, 0);
	{
		scoped(res) owner = r;
		(void)owner;
	}
	cr_assert_str_eq(closed, "r");
}

Test(cleanup, take_evaluates_its_argument_once)
{
	res *slots[3] = { res_open('0'), res_open('1'), res_open('2') };
	int i = 0;
	res *got = scoped_take(slots[i++]);
	cr_assert_eq(i, 1);
	cr_assert_eq(got->name, '0');
	cr_assert_null(slots[0]);
	cr_assert_not_null(slots[1]);
	res_close(got);
	res_close(slots[1]);
	res_close(slots[2]);
}

Test(cleanup, take_works_on_any_pointer_type)
{
	const char *s = "x";
	const char *t = scoped_take(s);
	cr_assert_null(s);
	cr_assert_eq(*t, 'x');
	int v = 5, *p = &v;
	int *q = scoped_take(p);
	cr_assert_null(p);
	cr_assert_eq(*q, 5);
}

Test(cleanup, clear_closes_now_and_is_repeatable)
{
	scoped(res) a = res_open('a');
	scoped_clear(&a, res_close);
	cr_assert_null(a);
	cr_assert_str_eq(closed, "a");
	scoped_clear(&a, res_close);
	cr_assert_str_eq(closed, "a");
}

Test(cleanup, clear_evaluates_its_argument_once)
{
	res *slots[2] = { res_open('0'), res_open('1') };
	int i = 0;
	scoped_clear(&slots[i++], res_close);
	cr_assert_eq(i, 1);
	cr_assert_str_eq(closed, "0");
	res_close(slots[1]);
}

/* --- scoped_auto ------------------------------------------------------------------------- */

typedef struct counter {
	int *hits;
} counter;

static void counter_clear(counter *c)
{
	++*c->hits;
}
SCOPED_DEFINE_CLEAR(counter, counter_clear)

Test(cleanup, auto_clears_the_value)
{
	int hits = 0;
	for (int i = 0; i < 3; i++) {
		scoped_auto(counter) c = { &hits };
		(void)c;
	}
	cr_assert_eq(hits, 3);
}

/* --- scoped_with --------------------------------------------------------------------------- */

static int with_seen;
static void with_fn(int *v)
{
	with_seen = *v;
}

Test(cleanup, with_runs_any_function_on_the_variable)
{
	{
		scoped_with(with_fn) int v = 1;
		v = 42;
		(void)v;
	}
	cr_assert_eq(with_seen, 42);
}

/* --- scoped_free ----------------------------------------------------------------------------- */

Test(cleanup, free_releases_memory)
{
	size_t before = heap_in_use();
	for (int i = 0; i < 100; i++) {
		scoped_free char *s = malloc(1000);
		cr_assert_not_null(s);
		memset(s, 'x', 1000);
	}
	cr_assert_lt(heap_in_use(), before + 1000);
}

Test(cleanup, free_of_null_is_fine)
{
	scoped_free void *p = NULL;
	(void)p;
}

Test(cleanup, free_after_take_does_nothing)
{
	char *kept;
	{
		scoped_free char *s = strdup("kept");
		kept = scoped_take(s);
	}
	cr_assert_str_eq(kept, "kept"); /* ASan / valgrind would flag a use after free */
	free(kept);
}

/* --- scoped_fd ------------------------------------------------------------------------------- */

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

Test(cleanup, fd_is_closed_at_scope_exit)
{
	int seen;
	{
		scoped_fd int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		cr_assert_geq(fd, 0);
		seen = fd;
	}
	cr_assert_not(fd_is_open(seen));
}

Test(cleanup, fd_minus_one_is_not_closed)
{
	errno = 0;
	{
		scoped_fd int fd = -1;
		(void)fd;
	}
	cr_assert_eq(errno, 0, "close(-1) would have set EBADF");
}

Test(cleanup, fd_close_preserves_errno)
{
	{
		scoped_fd int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		cr_assert_geq(fd, 0);
		close(fd); /* the scope's close will now fail with EBADF */
		errno = EIO;
	}
	cr_assert_eq(errno, EIO);
}

Test(cleanup, take_fd_moves_it_out)
{
	int kept;
	{
		scoped_fd int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		kept = scoped_take_fd(fd);
		cr_assert_eq(fd, -1);
	}
	cr_assert(fd_is_open(kept));
	close(kept);
}

/* --- scoped_defer ---------------------------------------------------------------------------- */

static void defer_mark(res *r)
{
	closed[nclosed++] = r->name;
	closed[nclosed] = '\0';
}

Test(cleanup, defer_runs_at_scope_exit_in_order)
{
	res x = { 'x' }, y = { 'y' };
	{
		scoped_defer(defer_mark, &x);
		scoped_defer(defer_mark, &y);
		scoped(res) a = res_open('a');
		(void)a;
		cr_assert_str_empty(closed);
	}
	cr_assert_str_eq(closed, "ayx");
}

Test(cleanup, defer_takes_functions_with_results)
{
	int before = fd_count();
	{
		FILE *f = tmpfile();
		cr_assert_not_null(f);
		cr_assert_eq(fd_count(), before + 1);
		scoped_defer(fclose, f);
	}
	cr_assert_eq(fd_count(), before);
}
