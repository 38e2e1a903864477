/* tests/test_compile.c - what the compiler says about code that uses the headers: moves whose
 * result is dropped, leaks -fanalyzer reports, the #error without the cleanup attribute, and
 * zero cost (scoped(FILE) compiles to the same code as the hand-written fclose). The snippets
 * live in tests/compile/; each test runs a compiler on one and reads what it printed. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SCOPED_CC
#  define SCOPED_CC "cc"
#endif
#define SNIPPETS SCOPED_SRCDIR "/tests/compile/"
#define INCLUDES " -I" SCOPED_SRCDIR "/include "

/* Runs cmd (stderr folded into stdout); returns its exit status, output in out. */
static int run(const char *cmd, char *out, size_t size)
{
	char full[2048];
	snprintf(full, sizeof full, "%s 2>&1", cmd);
	FILE *p = popen(full, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	size_t n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	return pclose(p);
}

static int compile(const char *cc, const char *flags, const char *snippet, char *out, size_t size)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "%s %s" INCLUDES "-c " SNIPPETS "%s -o /dev/null", cc, flags,
		 snippet);
	return run(cmd, out, size);
}

static char out[1 << 16];

Test(compile, dropping_a_take_is_an_error_under_werror)
{
	const char *flags = "-std=c11 -Wall -Werror";
	cr_assert_neq(compile(SCOPED_CC, flags, "take_unused.c", out, sizeof out), 0, "%s", out);
	cr_assert_not_null(strstr(out, "unused-result"), "%s", out);
	cr_assert_neq(compile(SCOPED_CC, flags, "take_fd_unused.c", out, sizeof out), 0, "%s", out);
	cr_assert_not_null(strstr(out, "unused-result"), "%s", out);
}

Test(compile, dropping_a_constructor_result_is_an_error_under_werror)
{
	const char *flags = "-std=c11 -Wall -Werror";
	cr_assert_neq(compile(SCOPED_CC, flags, "ctor_unused.c", out, sizeof out), 0, "%s", out);
	cr_assert_not_null(strstr(out, "unused-result"), "%s", out);
}

Test(compile, headers_refuse_a_compiler_without_cleanup)
{
	/* Pretend the attribute is missing: the header must stop with a clear #error. */
	cr_assert_neq(compile("gcc", "'-D__has_attribute(x)=0'", "scoped_ok.c", out, sizeof out),
		      0);
	cr_assert_not_null(strstr(out, "#error"), "%s", out);
	cr_assert_not_null(strstr(out, "GCC"), "%s", out);
	cr_assert_not_null(strstr(out, "Clang"), "%s", out);
}

static int gcc_major(void)
{
	char v[64];
	if (run("gcc -dumpversion", v, sizeof v) != 0)
		return 0;
	return atoi(v);
}

Test(compile, analyzer_reports_a_handle_never_closed)
{
	if (gcc_major() < 11)
		cr_skip_test("gcc -fanalyzer with malloc(dealloc) needs GCC 11 or later");
	compile("gcc", "-std=c11 -fanalyzer", "leaky.c", out, sizeof out);
	cr_assert_not_null(strstr(out, "leak of 'c'") ? out : strstr(out, "leak of \xe2\x80\x98" "c"),
			   "expected a leak report:\n%s", out);
	cr_assert_not_null(strstr(out, "-Wanalyzer-malloc-leak"), "%s", out);
}

Test(compile, analyzer_is_silent_on_scoped_handles)
{
	if (gcc_major() < 11)
		cr_skip_test("gcc -fanalyzer with malloc(dealloc) needs GCC 11 or later");
	cr_assert_eq(compile("gcc", "-std=c11 -fanalyzer -Werror", "scoped_ok.c", out, sizeof out),
		     0, "%s", out);
	cr_assert_null(strstr(out, "warning"), "%s", out);
}

/* One function's assembly, from its label to its .size directive, with local label numbers
 * (.L12, .LBB0_3) erased so that two functions can be compared. */
static void body_of(const char *text, const char *fn, char *body, size_t size)
{
	char start[128], end[128];
	snprintf(start, sizeof start, "\n%s:", fn); /* clang adds a comment after the label */
	snprintf(end, sizeof end, "\t.size\t%s,", fn);
	const char *p = strstr(text, start), *e;
	cr_assert_not_null(p, "no %s in\n%s", fn, text);
	p = strchr(p + strlen(start), '\n');
	e = p ? strstr(p, end) : NULL;
	cr_assert_not_null(e, "no end of %s in\n%s", fn, text);
	size_t n = 0;
	while (p < e && n < size - 1) {
		body[n++] = *p;
		if (p[0] == '.' && p[1] == 'L') {
			body[n++] = 'L';
			for (p += 2; *p == '_' || isalnum((unsigned char)*p); p++)
				;
		} else {
			p++;
		}
	}
	body[n] = '\0';
}

Test(compile, scoped_file_costs_nothing_at_O2)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "%s -std=c11 -O2 -fno-asynchronous-unwind-tables" INCLUDES "-S " SNIPPETS
		 "zero_cost.c -o -",
		 SCOPED_CC);
	cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
	static char a[8192], b[8192];
	body_of(out, "with_scoped", a, sizeof a);
	body_of(out, "by_hand", b, sizeof b);
	cr_assert_str_eq(a, b, "scoped(FILE):\n%s\nhand-written fclose:\n%s", a, b);
	cr_assert_not_null(strstr(a, "fclose"), "%s", a);
}

Test(compile, cxx17_std_mutex_after_scoped_h)
{
	const char *flags = "-x c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror";
	cr_assert_eq(compile("g++", flags, "cxx_std_mutex.c", out, sizeof out), 0, "%s", out);
	cr_assert_eq(compile("clang++", flags, "cxx_std_mutex.c", out, sizeof out), 0, "%s", out);
}

Test(compile, user_code_is_clean_under_wcast_qual)
{
	/* A common strict flag: the moves must not cast qualifiers away behind the user's back. */
	const char *c = "-std=c11 -Wall -Wextra -Wpedantic -Wcast-qual -Werror";
	const char *cxx = "-x c++ -std=c++17 -Wall -Wextra -Wpedantic -Wcast-qual -Werror";
	cr_assert_eq(compile("gcc", c, "user.c", out, sizeof out), 0, "%s", out);
	cr_assert_eq(compile("clang", c, "user.c", out, sizeof out), 0, "%s", out);
	cr_assert_eq(compile("g++", cxx, "user.c", out, sizeof out), 0, "%s", out);
	cr_assert_eq(compile("clang++", cxx, "user.c", out, sizeof out), 0, "%s", out);
	cr_assert_eq(compile("gcc", c, "take_const.c", out, sizeof out), 0, "%s", out);
	cr_assert_eq(compile("clang", c, "take_const.c", out, sizeof out), 0, "%s", out);
	cr_assert_eq(compile("g++", cxx, "take_const.c", out, sizeof out), 0, "%s", out);
	cr_assert_eq(compile("clang++", cxx, "take_const.c", out, sizeof out), 0, "%s", out);
}

Test(compile, samples_keep_c_linkage_in_cxx)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "g++ -x c++ -std=c++17 -Wall -Wextra -Werror" INCLUDES "-I" SCOPED_SRCDIR
		 "/samples -c " SNIPPETS "cxx_samples.c -o %s/cxx_samples.o && nm -u %s/cxx_samples.o",
		 SCOPED_BUILDDIR, SCOPED_BUILDDIR);
	cr_assert_eq(run(cmd, out, sizeof out), 0, "%s", out);
	const char *want[] = { " statsd_open\n", " statsd_count\n", " statsd_close\n",
			       " cache_new\n", " cache_set\n", " cache_close\n" };
	for (size_t i = 0; i < sizeof want / sizeof *want; i++)
		cr_assert_not_null(strstr(out, want[i]), "no C symbol%s in:\n%s", want[i], out);
}
