/* tests/test_libc.c - scoped/libc.h: one test per registered type. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <scoped.h>

#include "helpers.h"

Test(libc, FILE_is_closed_and_flushed)
{
	char path[] = "/tmp/scoped-test-XXXXXX";
	scoped_fd int tmp = mkstemp(path);
	cr_assert_geq(tmp, 0);
	int before = fd_count();
	{
		scoped(FILE) f = fopen(path, "w");
		cr_assert_not_null(f);
		cr_assert_eq(fd_count(), before + 1);
		fputs("buffered until fclose", f);
	}
	cr_assert_eq(fd_count(), before);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, (off_t)strlen("buffered until fclose"));
	unlink(path);
}

Test(libc, FILE_null_is_fine)
{
	int before = fd_count();
	{
		scoped(FILE) f = fopen("/nonexistent/scoped", "r");
		cr_assert_null(f);
	}
	cr_assert_eq(fd_count(), before);
}

static FILE *open_checked(const char *path)
{
	scoped(FILE) f = fopen(path, "r");
	if (!f || fgetc(f) == EOF)
		return NULL;
	rewind(f);
	scoped_return(f);
}

Test(libc, FILE_moves_out_of_a_function)
{
	int before = fd_count();
	FILE *f = open_checked("/etc/hostname");
	if (!f)
		f = open_checked("/proc/self/status");
	cr_assert_not_null(f);
	cr_assert_eq(fd_count(), before + 1);
	fclose(f);
	cr_assert_null(open_checked("/dev/null"), "an empty file is refused");
	cr_assert_eq(fd_count(), before, "and closed");
}

Test(libc, DIR_is_closed)
{
	int before = fd_count();
	for (int i = 0; i < 3; i++) {
		scoped(DIR) d = opendir("/");
		cr_assert_not_null(d);
		cr_assert_eq(fd_count(), before + 1);
	}
	cr_assert_eq(fd_count(), before);
	{
		scoped(DIR) d = opendir("/nonexistent/scoped");
		cr_assert_null(d);
	}
	cr_assert_eq(fd_count(), before);
}
