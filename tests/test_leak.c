/* tests/test_leak.c - scoped/leak.h and scoped/criterion.h: the live registry, reports,
 * SCOPED_LEAKCHECK at exit, and -fanalyzer's compile-time leak warnings (SCOPED_ALLOC). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <scoped.h>
#define SCOPED_CR_GRACE_MS 200 /* the leaky child tests below wait this long */
#include <scoped/criterion.h>

#include "helpers.h"

#ifndef SCOPED_SRCDIR
#  define SCOPED_SRCDIR "."
#endif

static void nothing(void *ctx) { (void)ctx; }

static void until_stopped(scoped_stop *stop, void *arg)
{
	(void)arg;
	while (!scoped_stop_sleep(stop, 3600 * 1000))
		;
}

/* Reads a whole stream (rewound) into buf. */
static const char *slurp(FILE *f, char *buf, size_t size)
{
	fflush(f);
	rewind(f);
	size_t n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	return buf;
}

Test(leak, counts_live_handles_and_reports_their_start_site, .fini = scoped_cr_no_leaks)
{
	cr_assert_eq(scoped_live_count(), 0);
	scoped_worker_config cfg = { .name = "janitor", .period_ms = 3600000, .tick = nothing };
	int line = __LINE__ + 1; /* one line each: compilers differ on multi-line macro calls */
	scoped(scoped_worker) w = scoped_worker_start(&cfg);
	scoped(scoped_thread) t = scoped_thread_start("pump", until_stopped, NULL);
	cr_assert(w && t);
	cr_assert_eq(scoped_live_count(), 2);

	char buf[2048], want[256];
	FILE *f = tmpfile();
	cr_assert_not_null(f);
	cr_assert_eq(scoped_live_report(f), 2);
	slurp(f, buf, sizeof buf);
	fclose(f);
	snprintf(want, sizeof want, "scoped: live worker \"janitor\" started at %s:%d, age ",
		 __FILE__, line);
	cr_assert_not_null(strstr(buf, want), "want %s in:\n%s", want, buf);
	snprintf(want, sizeof want, "scoped: live thread \"pump\" started at %s:%d, age ",
		 __FILE__, line + 1);
	cr_assert_not_null(strstr(buf, want), "want %s in:\n%s", want, buf);

	scoped_thread_stop(t);
	cr_assert_eq(scoped_live_count(), 1, "a stopped thread is not live");
	scoped_worker_close(scoped_take(w));
	cr_assert_eq(scoped_live_count(), 0);
	cr_assert_eq(scoped_live_report(NULL), 0);
}

Test(leak, expect_no_leaks_is_immediate_when_clean)
{
	long long t0 = now_ms();
	cr_assert_eq(scoped_expect_no_leaks(5000), 0);
	cr_assert_lt(now_ms() - t0, 1000);
}

/* The first tick can come before the starting thread has stored the handle: read it
 * atomically and skip that tick when it is not there yet. */
static void close_myself(void *ctx)
{
	_Atomic(scoped_worker *) *self = ctx;
	scoped_worker *me = atomic_exchange(self, NULL);
	if (me)
		scoped_worker_close(me);
}

Test(leak, expect_no_leaks_waits_for_threads_that_are_ending)
{
	/* A worker that closes itself from its tick ends a moment after: the grace covers it. */
	static _Atomic(scoped_worker *) w;
	scoped_worker *started = scoped_worker_start(&(scoped_worker_config){
		.name = "self-closing", .period_ms = 1, .tick = close_myself, .ctx = &w });
	cr_assert_not_null(started);
	atomic_store(&w, started);
	cr_assert_eq(scoped_expect_no_leaks(5000), 0);
}

Test(leak, expect_no_leaks_reports_what_is_left, .init = cr_redirect_stderr)
{
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "forgotten", .period_ms = 3600000, .tick = nothing });
	cr_assert_not_null(w);
	long long t0 = now_ms();
	cr_assert_eq(scoped_expect_no_leaks(50), 1);
	long long took = now_ms() - t0;
	cr_assert_geq(took, 45, "gave up before the grace period: %lld ms", took);
	char buf[2048];
	slurp(cr_get_redirected_stderr(), buf, sizeof buf);
	cr_assert_not_null(strstr(buf, "scoped: 1 live handle after 50 ms"), "%s", buf);
	cr_assert_not_null(strstr(buf, "worker \"forgotten\" started at " __FILE__), "%s", buf);
	scoped_worker_close(w);
	cr_assert_eq(scoped_expect_no_leaks(0), 0);
}

Test(leak, criterion_helper_passes_a_clean_test, .fini = scoped_cr_no_leaks)
{
	{
		scoped(scoped_thread) t = scoped_thread_start("clean", until_stopped, NULL);
		cr_assert_not_null(t);
	}
	scoped_cr_assert_no_leaks(0); /* t was closed at the end of its block */
}

/* --- SCOPED_LEAKCHECK=1: run this binary again, one test, with the variable set ---------- */

/* Does nothing unless run by the test below: then it leaks a worker on purpose. */
Test(leakcheck_child, leaks_a_worker)
{
	if (!getenv("SCOPED_TEST_LEAK_CHILD"))
		return;
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "leaked-at-exit", .period_ms = 3600000, .tick = nothing });
	cr_assert_not_null(w);
	/* No close: the library's exit hook must report it. */
}

/* The Criterion helpers on tests that leak: run by the tests below, each must fail. */
Test(leakcheck_child, fini_fails_a_leaky_test, .fini = scoped_cr_no_leaks)
{
	if (!getenv("SCOPED_TEST_LEAK_CHILD"))
		return;
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "leaked-in-test", .period_ms = 3600000, .tick = nothing });
	cr_assert_not_null(w);
}

scoped_cr_test(leakcheck_child, scoped_cr_test_fails_a_leaky_test)
{
	if (!getenv("SCOPED_TEST_LEAK_CHILD"))
		return;
	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){
		.name = "leaked-in-body", .period_ms = 3600000, .tick = nothing });
	cr_assert_not_null(w);
}

static int run_child_test(const char *test, const char *leakcheck, char *out, size_t size)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	cr_assert_gt(n, 0);
	exe[n] = '\0';
	char cmd[8192];
	snprintf(cmd, sizeof cmd,
		 /* BXFI_MAP would make the child a Criterion worker of ours */
		 "env -u BXFI_MAP SCOPED_TEST_LEAK_CHILD=1 SCOPED_LEAKCHECK=%s "
		 "ASAN_OPTIONS=detect_leaks=0 "
		 "'%s' --filter 'leakcheck_child/%s' --jobs 1 2>&1",
		 leakcheck, exe, test);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t got = fread(out, 1, size - 1, p);
	out[got] = '\0';
	return pclose(p);
}

Test(leak, leakcheck_env_reports_live_handles_at_exit)
{
	static char out[1 << 16];
	run_child_test("leaks_a_worker", "1", out, sizeof out);
	cr_assert_not_null(strstr(out, "scoped: 1 live handle at exit"), "%s", out);
	cr_assert_not_null(strstr(out, "worker \"leaked-at-exit\" started at " __FILE__), "%s",
			   out);
	run_child_test("leaks_a_worker", "0", out, sizeof out);
	cr_assert_null(strstr(out, "live handle"), "reported without SCOPED_LEAKCHECK:\n%s", out);
}

Test(leak, criterion_fini_helper_fails_the_run_when_a_test_leaks)
{
	static char out[1 << 16];
	int status = run_child_test("fini_fails_a_leaky_test", "0", out, sizeof out);
	cr_assert_neq(status, 0, "the run passed:\n%s", out);
	cr_assert_not_null(strstr(out, "1 scoped thread(s) leaked"), "%s", out);
	cr_assert_not_null(strstr(out, "worker \"leaked-in-test\" started at " __FILE__), "%s",
			   out);
}

Test(leak, scoped_cr_test_fails_a_test_that_leaks)
{
	static char out[1 << 16];
	int status = run_child_test("scoped_cr_test_fails_a_leaky_test", "0", out, sizeof out);
	cr_assert_neq(status, 0, "the run passed:\n%s", out);
	cr_assert_not_null(strstr(out, "Failing: 1"), "%s", out);
	cr_assert_not_null(strstr(out, "worker \"leaked-in-body\" started at " __FILE__), "%s",
			   out);
}

scoped_cr_test(leak, scoped_cr_test_passes_a_clean_test)
{
	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
		.name = "closed-at-body-end", .period_ms = 3600000, .tick = nothing });
	cr_assert_not_null(w);
	cr_assert_eq(scoped_live_count(), 1);
}

/* --- compile time: SCOPED_ALLOC and gcc -fanalyzer ------------------------------------- */

static int gcc_major(void)
{
	FILE *p = popen("gcc -dumpversion 2>/dev/null", "r");
	if (!p)
		return 0;
	int major = 0;
	if (fscanf(p, "%d", &major) != 1)
		major = 0;
	pclose(p);
	return major;
}

/* Compiles src with gcc -fanalyzer; returns what gcc printed. */
static const char *analyze(const char *src, char *out, size_t size)
{
	char path[] = "/tmp/scoped-analyzer-XXXXXX.c";
	int fd = mkstemps(path, 2);
	cr_assert_geq(fd, 0, "%s", strerror(errno));
	FILE *f = fdopen(fd, "w");
	fputs(src, f);
	fclose(f);
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
		 "gcc -std=c11 -Wall -fanalyzer -I'%s/include' -c '%s' -o /dev/null 2>&1",
		 SCOPED_SRCDIR, path);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	pclose(p);
	unlink(path);
	return out;
}

#define SNIPPET_HEAD                                                                        \
	"#include <scoped.h>\n"                                                             \
	"static void tick(void *ctx) { (void)ctx; }\n"                                      \
	"static void fn(scoped_stop *s, void *a) { (void)s; (void)a; }\n"

Test(leak, analyzer_reports_a_worker_never_closed_but_not_a_scoped_one, .timeout = 60)
{
	if (getenv("VALGRIND")) /* memcheck would trace the compiler: minutes, and proves nothing */
		cr_skip_test("compiler checks do not run under valgrind");
	if (gcc_major() < 11)
		cr_skip_test("gcc -fanalyzer with malloc(dealloc) needs GCC 11");
	static char out[1 << 16];

	analyze(SNIPPET_HEAD
		"int leaky(void) {\n"
		"	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){\n"
		"		.name = \"j\", .period_ms = 10, .tick = tick });\n"
		"	if (!w)\n"
		"		return -1;\n"
		"	return 0;\n"
		"}\n"
		"int leaky_thread(void) {\n"
		"	scoped_thread *t = scoped_thread_start(\"t\", fn, 0);\n"
		"	return t ? 0 : -1;\n"
		"}\n",
		out, sizeof out);
	cr_assert_not_null(strstr(out, "leak of 'w'") ? out : strstr(out, "leak of \xe2\x80\x98w"),
			   "no leak reported for the worker:\n%s", out);
	cr_assert_not_null(strstr(out, "leak of 't'") ? out : strstr(out, "leak of \xe2\x80\x98t"),
			   "no leak reported for the thread:\n%s", out);

	analyze(SNIPPET_HEAD
		"int fine(void) {\n"
		"	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){\n"
		"		.name = \"j\", .period_ms = 10, .tick = tick });\n"
		"	if (!w)\n"
		"		return -1;\n"
		"	return 0;\n"
		"}\n"
		"int fine_thread(void) {\n"
		"	scoped(scoped_thread) t = scoped_thread_start(\"t\", fn, 0);\n"
		"	return t ? 0 : -1;\n"
		"}\n"
		"scoped_worker *moved(void) {\n"
		"	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){\n"
		"		.tick = tick });\n"
		"	scoped_return(w);\n"
		"}\n"
		"void closed(void) {\n"
		"	scoped_worker *w = scoped_worker_start(&(scoped_worker_config){\n"
		"		.tick = tick });\n"
		"	scoped_worker_close(w);\n"
		"}\n",
		out, sizeof out);
	cr_assert_null(strstr(out, "warning"), "false positive:\n%s", out);
}
