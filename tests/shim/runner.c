/* tests/shim/runner.c - main() of a suite built against the Criterion stand-in in
 * tests/shim/criterion/ (the ThreadSanitizer build only; see criterion.h there).
 *
 * Semantics, after Criterion's:
 *  - Tests run one after the other, in order of suite then name, each in its own forked child:
 *    a crash, abort or failed assertion ends that test only. The runner itself never starts a
 *    thread, so every child starts single-threaded.
 *  - In the child: the suite's .init, the test's .init, the body, then the test's .fini and the
 *    suite's .fini (these run after a failed assertion too), then exit(0), so atexit handlers
 *    run. cr_skip_test ends the child with exit(0) at once, without the .fini functions.
 *  - A failed cr_assert_* prints "file:line: Assertion Failed" and the message, and ends the
 *    body (or init, or fini); cr_expect_* prints and goes on; either fails the test. Unlike
 *    Criterion 2.4, a failed assertion in a .fini fails the test.
 *    From another thread of the test, or from a process the test forked, a failed assertion
 *    still fails the test, and that thread's process ends with _exit() at once.
 *  - .signal: passes only if the child is killed by that signal; .exit_code: only if it exits
 *    with that status (default 0, so a ThreadSanitizer report, which makes the process exit
 *    with 66, fails the test); any other signal is a crash. .timeout (seconds) kills the child
 *    with SIGKILL and fails the test. .disabled tests are reported as skipped.
 *  - Options of TestSuite(...) apply to its tests; a test's own timeout, signal, exit_code
 *    override the suite's.
 *  - Output: [PASS]/[FAIL]/[SKIP] suite::name, one line per test, then Criterion's
 *    "[====] Synthesis: Tested: N | Passing: N | Failing: N | Crashing: N " (skipped tests are
 *    not counted as tested; crashes count as failing too). Exit status 0 only if none failed.
 *  - Flags: --filter PATTERN (a glob on "suite/name", extglob allowed), --timeout SECONDS (for
 *    tests that set none), --verbose[=N] (show cr_log_info), -l/--list, -f/--fail-fast,
 *    -q/--quiet (no [PASS] lines), --always-succeed, -h/--help, --version. --jobs N and every
 *    other Criterion flag are accepted and ignored: tests always run one at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"
#include "criterion/logging.h"
#include "criterion/redirect.h"

/* --- registry (filled by constructors, before main) ---------------------------------------- */

static struct crshim_test *all_tests;
static size_t test_count;
static struct crshim_suite *all_suites;

void crshim_register_test(struct crshim_test *test)
{
	test->next = all_tests;
	all_tests = test;
	test_count++;
}

void crshim_register_suite(struct crshim_suite *suite)
{
	suite->next = all_suites;
	all_suites = suite;
}

static const struct crshim_opts no_opts;

static const struct crshim_opts *suite_opts(const char *name)
{
	for (const struct crshim_suite *s = all_suites; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s->opts;
	return &no_opts;
}

/* --- output ------------------------------------------------------------------------------- */

static int out_fd = 2;    /* the runner's stderr, kept while a test redirects fd 2 */
static int verbosity;
static bool quiet;

static void write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(out_fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

/* Formats into a malloc'ed string (NULL if out of memory). */
static char *vformat(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = vformat(fmt, ap);
	va_end(ap);
	return s;
}

/* Writes head, then every line of body prefixed with "[----]   ", in one write(). */
static void emit(const char *head, const char *body)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m) {
		write_all(head, strlen(head));
		return;
	}
	fputs(head, m);
	for (const char *p = body; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		fprintf(m, "[----]   %.*s\n", (int)n, p);
		p += n + (nl != NULL);
	}
	fclose(m);
	write_all(buf, len);
	free(buf);
}

void cr_log(enum criterion_severity severity, const char *fmt, ...)
{
	if (severity == CR_LOG_INFO && verbosity < 1)
		return;
	const char *tag = severity == CR_LOG_ERROR ? "[ERR ] "
			: severity == CR_LOG_WARNING ? "[WARN] "
						     : "[----] ";
	va_list ap;
	va_start(ap, fmt);
	char *msg = vformat(fmt, ap);
	va_end(ap);
	char *line = format("%s%s\n", tag, msg ? msg : fmt);
	if (line)
		write_all(line, strlen(line));
	free(line);
	free(msg);
}

/* --- the state a test child shares with the runner ------------------------------------------ */

struct shared {
	atomic_int failed;
	atomic_int skipped;
	atomic_int done; /* the child went through body and fini */
	char skip_msg[1024];
};

static struct shared *shm;   /* MAP_SHARED: written by the child (and its children) */
static pid_t test_pid;       /* in the child: its pid; 0 in the runner */
static pthread_t test_thread;
static jmp_buf test_jump;
static volatile int jump_ok; /* test_jump is set by the thread and process running the test */

static bool on_test_thread(void)
{
	return test_pid != 0 && getpid() == test_pid && pthread_equal(pthread_self(), test_thread);
}

/* Ends the current init, body or fini (longjmp back to the child's driver). From any other
 * thread of the test, or from a process the test forked, that cannot be done: that process
 * ends with _exit(), 0 in the test's own process (its failure is recorded already), else
 * other_status. */
static _Noreturn void leave(int other_status)
{
	if (on_test_thread() && jump_ok)
		longjmp(test_jump, 1);
	fflush(NULL);
	_exit(test_pid != 0 && getpid() == test_pid ? 0 : other_status);
}

static void report_failure(const char *file, int line, const char *fmt, va_list ap)
{
	char *msg = vformat(fmt + 1, ap); /* fmt starts with one character not to print */
	char *head = format("[----] %s:%d: Assertion Failed\n", file, line);
	emit(head ? head : "[----] Assertion Failed\n",
	     msg && *msg ? msg : "The conditions for this assertion were not met.");
	free(head);
	free(msg);
	if (shm)
		atomic_store(&shm->failed, 1);
}

void crshim_expect_failed(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_failure(file, line, fmt, ap);
	va_end(ap);
}

_Noreturn void crshim_assert_failed(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_failure(file, line, fmt, ap);
	va_end(ap);
	leave(1);
}

_Noreturn void crshim_skip(const char *file, int line, const char *fmt, ...)
{
	(void)file;
	(void)line;
	va_list ap;
	va_start(ap, fmt);
	char *msg = vformat(fmt + 1, ap);
	va_end(ap);
	if (shm) {
		if (!atomic_exchange(&shm->skipped, 1))
			snprintf(shm->skip_msg, sizeof shm->skip_msg, "%s", msg ? msg : "");
	}
	free(msg);
	/* Like Criterion: the test process ends here, without .fini (a suite's .fini may check
	 * for leftovers that a test skipped halfway through would have). */
	if (on_test_thread())
		exit(0);
	leave(0);
}

int crshim_str_cmp(const char *a, const char *b)
{
	if (!a || !b)
		return a == b ? 0 : a ? 1 : -1;
	return strcmp(a, b);
}

bool crshim_str_empty(const char *s) { return s && !*s; }

/* --- redirections ------------------------------------------------------------------------- */

static FILE *redirected[3];

static void redirect(int fd, FILE *stream)
{
	fflush(stream);
	FILE *tmp = tmpfile();
	if (!tmp || dup2(fileno(tmp), fd) < 0)
		crshim_assert_failed(__FILE__, __LINE__, "-cannot redirect fd %d: %s", fd,
				     strerror(errno));
	/* A second open file description: its own read position, apart from the writer's. */
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fileno(tmp));
	FILE *r = fopen(path, "r");
	if (!r)
		crshim_assert_failed(__FILE__, __LINE__, "-cannot reopen %s: %s", path,
				     strerror(errno));
	fclose(tmp);
	redirected[fd] = r;
}

void cr_redirect_stdout(void) { redirect(1, stdout); }
void cr_redirect_stderr(void) { redirect(2, stderr); }

FILE *cr_get_redirected_stdout(void)
{
	fflush(stdout);
	return redirected[1];
}

FILE *cr_get_redirected_stderr(void)
{
	fflush(stderr);
	return redirected[2];
}

/* --- running one test -------------------------------------------------------------------- */

struct plan {
	const struct crshim_test *test;
	const struct crshim_opts *t, *s;
	double timeout;
	int signal, exit_code;
};

static void call(void (*fn)(void))
{
	if (!fn)
		return;
	jump_ok = 1;
	if (setjmp(test_jump) == 0)
		fn();
	jump_ok = 0;
}

static _Noreturn void child(const struct plan *p)
{
	test_pid = getpid();
	test_thread = pthread_self();

	/* init, then the body if init went through; each stage ends at its first failure */
	bool ok = true;
	void (*const setup[])(void) = { p->s->init, p->t->init, p->test->fn };
	for (size_t i = 0; i < 3 && ok; i++) {
		call(setup[i]);
		ok = !atomic_load(&shm->failed) && !atomic_load(&shm->skipped);
	}
	call(p->t->fini);
	call(p->s->fini);
	atomic_store(&shm->done, 1);
	exit(0);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum verdict { PASSED, FAILED, CRASHED, SKIPPED };

static enum verdict run(const struct plan *p, char *why, size_t whylen, double *took)
{
	memset(shm, 0, sizeof *shm);
	fflush(NULL);
	double t0 = now_s();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		return FAILED;
	}
	if (pid == 0)
		child(p);

	int status = 0;
	bool timed_out = false;
	long nap_ns = 50 * 1000;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			snprintf(why, whylen, "waitpid: %s", strerror(errno));
			return FAILED;
		}
		if (p->timeout > 0 && now_s() - t0 > p->timeout && !timed_out) {
			timed_out = true;
			kill(pid, SIGKILL);
		}
		nanosleep(&(struct timespec){ 0, nap_ns }, NULL);
		if (nap_ns < 2 * 1000 * 1000)
			nap_ns *= 2;
	}
	*took = now_s() - t0;

	bool failed = atomic_load(&shm->failed), skipped = atomic_load(&shm->skipped);
	if (timed_out) {
		snprintf(why, whylen, "Timed out. (after %gs)", p->timeout);
		return FAILED;
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		if (sig == p->signal)
			return failed ? FAILED : PASSED;
		snprintf(why, whylen, "CRASH! killed by signal %d (%s)%s%s", sig, strsignal(sig),
			 failed ? " after a failed assertion" : "",
			 atomic_load(&shm->done) ? ", at exit" : "");
		return CRASHED;
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	if (p->signal) {
		snprintf(why, whylen, "exited with status %d, expected signal %d (%s)", code,
			 p->signal, strsignal(p->signal));
		return FAILED;
	}
	if (code != p->exit_code) {
		snprintf(why, whylen, "exited with status %d, expected %d%s", code, p->exit_code,
			 code == 66 ? " (66: ThreadSanitizer reported)" : "");
		return FAILED;
	}
	if (failed)
		return FAILED;
	if (skipped) {
		snprintf(why, whylen, "%s", shm->skip_msg);
		return SKIPPED;
	}
	return PASSED;
}

/* --- ThreadSanitizer ------------------------------------------------------------------------ */

#ifndef __has_feature
#  define __has_feature(x) 0
#endif
#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)

/* Defaults the TSAN_OPTIONS variable still overrides. die_after_fork=0: the fork suites start
 * threads in children of multi-threaded processes, which TSan otherwise kills at once (TSan
 * then checks nothing in such a child, but the test runs). */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void) { return "die_after_fork=0"; }

static void *nothing(void *arg) { return arg; }

/* clang 14's TSan starts its background thread in the child of a fork from a single-threaded
 * process, and once more at the process's first pthread_create (a flag the child inherits): a
 * test counting its threads (/proc/self/task) would see two appear with its first thread. With
 * that flag set once here, in the runner, every test child has exactly one, from the start. */
static void settle_tsan(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, nothing, NULL) == 0)
		pthread_join(t, NULL);
}
#else
static void settle_tsan(void) {}
#endif

/* --- main --------------------------------------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
	const struct crshim_test *x = *(const struct crshim_test *const *)a;
	const struct crshim_test *y = *(const struct crshim_test *const *)b;
	int c = strcmp(x->suite, y->suite);
	return c ? c : strcmp(x->name, y->name);
}

static void usage(const char *argv0)
{
	printf("usage: %s [--filter PATTERN] [--timeout SECONDS] [--verbose[=N]] [--list]\n"
	       "       [--fail-fast] [--quiet] [--always-succeed] [--jobs N (ignored)]\n"
	       "Criterion stand-in for ThreadSanitizer builds (tests/shim): one test at a time,\n"
	       "each in a forked child. PATTERN is a glob on suite/name.\n",
	       argv0);
}

/* The value of --name VALUE or --name=VALUE at argv[*i] (advancing *i), or NULL. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	if (strncmp(argv[*i], name, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

int main(int argc, char **argv)
{
	const char *filter = NULL;
	double default_timeout = 0;
	bool list = false, fail_fast = false, always_succeed = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if ((v = option_value(argc, argv, &i, "--filter")))
			filter = v;
		else if ((v = option_value(argc, argv, &i, "--timeout")))
			default_timeout = strtod(v, NULL);
		else if (option_value(argc, argv, &i, "--jobs"))
			; /* always one at a time */
		else if (strcmp(a, "--verbose") == 0)
			verbosity = 1;
		else if (strncmp(a, "--verbose=", 10) == 0)
			verbosity = atoi(a + 10);
		else if (strcmp(a, "-l") == 0 || strcmp(a, "--list") == 0)
			list = true;
		else if (strcmp(a, "-f") == 0 || strcmp(a, "--fail-fast") == 0)
			fail_fast = true;
		else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)
			quiet = true;
		else if (strcmp(a, "--always-succeed") == 0)
			always_succeed = true;
		else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(argv[0]);
			return 0;
		} else if (strcmp(a, "--version") == 0) {
			puts("Criterion stand-in (tests/shim) for ThreadSanitizer builds");
			return 0;
		}
		/* anything else (-jN, --color=..., --tap, ...): accepted, ignored */
	}

	const struct crshim_test **tests = calloc(test_count ? test_count : 1, sizeof *tests);
	if (!tests)
		return 2;
	size_t n = 0;
	for (const struct crshim_test *t = all_tests; t; t = t->next)
		tests[n++] = t;
	qsort(tests, n, sizeof *tests, by_name);

	if (list) {
		for (size_t i = 0; i < n; i++)
			printf("%s::%s\n", tests[i]->suite, tests[i]->name);
		return 0;
	}

	int fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
	if (fd >= 0)
		out_fd = fd;
	settle_tsan();
	shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED) {
		perror("mmap");
		return 2;
	}

	size_t tested = 0, passing = 0, failing = 0, crashing = 0;
	for (size_t i = 0; i < n; i++) {
		const struct crshim_test *t = tests[i];
		if (filter) {
			char *id = format("%s/%s", t->suite, t->name);
			bool match = id && fnmatch(filter, id, FNM_EXTMATCH) == 0;
			free(id);
			if (!match)
				continue;
		}
		const struct crshim_opts *s = suite_opts(t->suite);
		struct plan p = {
			.test = t, .t = t->opts, .s = s,
			.timeout = t->opts->timeout > 0 ? t->opts->timeout
				 : s->timeout > 0	? s->timeout
							: default_timeout,
			.signal = t->opts->signal ? t->opts->signal : s->signal,
			.exit_code = t->opts->exit_code ? t->opts->exit_code : s->exit_code,
		};
		char why[1200] = "", *line;
		double took = 0;
		enum verdict v = SKIPPED;
		if (t->opts->disabled || s->disabled)
			snprintf(why, sizeof why, "Test is disabled");
		else
			v = run(&p, why, sizeof why, &took);

		switch (v) {
		case SKIPPED:
			line = format("[SKIP] %s::%s: %s\n", t->suite, t->name, why);
			break;
		case PASSED:
			line = quiet ? NULL
				     : format("[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, took);
			break;
		default:
			line = format("[FAIL] %s::%s: %s%s(%.2fs)\n", t->suite, t->name, why,
				      *why ? " " : "", took);
		}
		if (line)
			write_all(line, strlen(line));
		free(line);

		tested += v != SKIPPED;
		passing += v == PASSED;
		failing += v == FAILED || v == CRASHED;
		crashing += v == CRASHED;
		if (fail_fast && (v == FAILED || v == CRASHED))
			break;
	}
	char *synthesis = format("[====] Synthesis: Tested: %zu | Passing: %zu | Failing: %zu | "
				 "Crashing: %zu \n",
				 tested, passing, failing, crashing);
	if (synthesis)
		write_all(synthesis, strlen(synthesis));
	free(synthesis);
	free(tests);
	return failing == 0 || always_succeed ? 0 : 1;
}
