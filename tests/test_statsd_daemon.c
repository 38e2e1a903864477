/* tests/test_statsd_daemon.c - the statsd sample against the real statsd daemon (npm "statsd").
 *
 * Starts `node stats.js config.js` on free loopback ports (UDP for metrics, TCP for its
 * management interface), sends known counters, gauges, timings and sets through a
 * scoped(statsd) that then leaves scope, and reads the daemon's own totals: the management
 * commands `counters`, `gauges` and `timers`, and for sets (which have no management command)
 * the console backend's final flush when the daemon gets SIGTERM.
 *
 * stats.js is found at $STATSD_JS, else at build/npm/node_modules/statsd/stats.js (installed
 * by scripts/install-statsd.sh); node at $NODE, else on PATH. The test skips only when node is
 * absent (and under valgrind, which would trace node: see the skip message); with node present
 * and statsd not installed, it fails and says how to install it.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "statsd/statsd.h"

#ifndef SCOPED_SRCDIR
#define SCOPED_SRCDIR "."
#endif

/* --- finding node and stats.js ------------------------------------------------------------ */

static int find_node(char *out, size_t size)
{
	const char *env = getenv("NODE");
	if (env && *env) {
		snprintf(out, size, "%s", env);
		return access(out, X_OK);
	}
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		for (int i = 0; i < 2; i++) {
			snprintf(out, size, "%.*s/%s", (int)n, p, i == 0 ? "node" : "nodejs");
			if (n > 0 && access(out, X_OK) == 0)
				return 0;
		}
		p += n + (p[n] == ':');
	}
	return -1;
}

static void find_stats_js(char *out, size_t size)
{
	const char *env = getenv("STATSD_JS");
	if (env && *env)
		snprintf(out, size, "%s", env);
	else
		snprintf(out, size, "%s/build/npm/node_modules/statsd/stats.js", SCOPED_SRCDIR);
}

/* A port the kernel says is free right now (bound, read, released). */
static int free_port(int type)
{
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof a;
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, l), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* --- the daemon ----------------------------------------------------------------------------- */

typedef struct statsd_daemon {
	pid_t pid;
	int port, mgmt_port;
	char dir[64], config[128], log[128];
} daemon_t;

static void daemon_start(daemon_t *d, const char *node, const char *stats_js)
{
	snprintf(d->dir, sizeof d->dir, "/tmp/scoped-statsd-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir), "mkdtemp: %s", strerror(errno));
	snprintf(d->config, sizeof d->config, "%s/config.js", d->dir);
	snprintf(d->log, sizeof d->log, "%s/out.log", d->dir);
	d->port = free_port(SOCK_DGRAM);
	d->mgmt_port = free_port(SOCK_STREAM);
	FILE *f = fopen(d->config, "w");
	cr_assert_not_null(f);
	/* no flush during the test (totals accumulate); the console backend prints the final one */
	fprintf(f,
		"{\n  port: %d, address: \"127.0.0.1\",\n  mgmt_port: %d, mgmt_address: \"127.0.0.1\",\n"
		"  flushInterval: 3600000,\n  backends: [ \"./backends/console\" ],\n"
		"  console: { prettyprint: false }\n}\n",
		d->port, d->mgmt_port);
	cr_assert_eq(fclose(f), 0);

	int out = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(out, 0);
	char *argv[] = { (char *)node, (char *)stats_js, d->config, NULL };
	pid_t parent = getpid();
	d->pid = fork();
	cr_assert_geq(d->pid, 0, "fork: %s", strerror(errno));
	if (d->pid == 0) {
		/* the daemon dies with this test, even when an assertion ends it early */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(out, 1);
		dup2(out, 2);
		execv(node, argv);
		_exit(127);
	}
	close(out);
}

/* Sends one management command; the reply up to its "END" line, in buf. -1 when not up. */
static int mgmt(const daemon_t *d, const char *cmd, char *buf, size_t size)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)d->mgmt_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		close(fd);
		return -1;
	}
	char line[64];
	int n = snprintf(line, sizeof line, "%s\n", cmd);
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	size_t len = 0;
	buf[0] = '\0';
	while (!strstr(buf, "END\n") && len < size - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 3000) != 1)
			break;
		ssize_t r = read(fd, buf + len, size - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
	}
	close(fd);
	return strstr(buf, "END\n") ? 0 : -1;
}

/* The number after "'key': " in util.inspect output, or nan when absent. */
static double inspect_number(const char *text, const char *key)
{
	char pat[128];
	snprintf(pat, sizeof pat, "'%s': ", key);
	const char *p = strstr(text, pat);
	return p ? strtod(p + strlen(pat), NULL) : NAN;
}

static double counter(const daemon_t *d, const char *key)
{
	static char buf[65536];
	if (mgmt(d, "counters", buf, sizeof buf) < 0)
		return NAN;
	return inspect_number(buf, key);
}

static void daemon_stop(daemon_t *d)
{
	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	int status;
	pid_t pid = d->pid;
	if (!wait_until(waitpid(pid, &status, WNOHANG) == pid, 5000)) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	d->pid = 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* --- the test ------------------------------------------------------------------------------- */

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

Test(statsd_daemon, real_statsd_counts_what_a_scoped_client_sent, .timeout = 60)
{
	char node[512], stats_js[512];
	if (find_node(node, sizeof node) < 0)
		cr_skip_test("node is not installed: the real statsd daemon cannot run here");
	const char *preload = getenv("LD_PRELOAD");
	if (preload && strstr(preload, "vgpreload") && !getenv("STATSD_TEST_UNDER_VALGRIND"))
		cr_skip_test("under valgrind --trace-children=yes node itself would be traced: add "
			     "--trace-children-skip='*/node,*/nodejs' and set "
			     "STATSD_TEST_UNDER_VALGRIND=1 to run this test under valgrind");
	find_stats_js(stats_js, sizeof stats_js);
	cr_assert_eq(access(stats_js, R_OK), 0,
		     "statsd is not installed at %s: run scripts/install-statsd.sh (or set STATSD_JS)",
		     stats_js);

	daemon_t d = { 0 };
	daemon_start(&d, node, stats_js);
	char addr[64];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", d.port);

	/* Up means: the management port answers and a probe sent over UDP was counted. */
	{
		scoped(statsd) probe = statsd_open(&(statsd_config){ .addr = addr, .flush_ms = -1 });
		cr_assert_not_null(probe);
		bool up = false;
		for (long long end = now_ms() + 15000; !up && now_ms() < end;) {
			statsd_count(probe, "it.probe", 1, 1.0f);
			statsd_flush(probe);
			up = counter(&d, "it.probe") >= 1;
			if (!up)
				nanosleep(&(struct timespec){ 0, 50 * 1000000 }, NULL); /* poll interval */
		}
		if (!up) {
			daemon_stop(&d);
			cr_assert_fail("statsd did not come up; its output:\n%s", slurp(d.log));
		}
	}

	{
		scoped(statsd) s = statsd_open(&(statsd_config){ .addr = addr, .prefix = "it" });
		cr_assert_not_null(s, "statsd_open: %s", strerror(errno));
		for (int i = 0; i < 500; i++) /* ~8 KB of lines: several packets */
			cr_assert_eq(statsd_count(s, "requests", 1, 1.0f), 0);
		cr_assert_eq(statsd_count(s, "errors", 5, 1.0f), 0);
		cr_assert_eq(statsd_count(s, "errors", -2, 1.0f), 0);
		cr_assert_eq(statsd_gauge(s, "queue", 10, 1.0f), 0);
		cr_assert_eq(statsd_gauge(s, "queue", 42, 1.0f), 0);
		cr_assert_eq(statsd_gauge(s, "level", 100, 1.0f), 0);
		cr_assert_eq(statsd_gauge(s, "level", -30, 1.0f), 0); /* statsd: a decrement */
		cr_assert_eq(statsd_timing_ms(s, "latency", 30, 1.0f), 0);
		cr_assert_eq(statsd_timing_ms(s, "latency", 10, 1.0f), 0);
		cr_assert_eq(statsd_timing_ms(s, "latency", 20, 1.0f), 0);
		cr_assert_eq(statsd_set(s, "users", "alice", 1.0f), 0);
		cr_assert_eq(statsd_set(s, "users", "bob@example.com", 1.0f), 0);
		cr_assert_eq(statsd_set(s, "users", "alice", 1.0f), 0);
		for (int i = 0; i < 400; i++)
			cr_assert_eq(statsd_count(s, "sampled", 1, 0.5f), 0);
	} /* scope exit: the final flush, and the flusher thread is gone */

	static char buf[65536];
	cr_assert(wait_until(counter(&d, "it.requests") == 500, 5000),
		  "the daemon counted %g requests, not 500", counter(&d, "it.requests"));
	cr_assert_eq(mgmt(&d, "counters", buf, sizeof buf), 0);
	cr_assert_eq(inspect_number(buf, "statsd.bad_lines_seen"), 0, "every line parsed:\n%s", buf);
	cr_assert_eq(inspect_number(buf, "it.errors"), 3);
	double sampled = inspect_number(buf, "it.sampled");
	/* each kept line counts 1 / 0.5 = 2; Binomial(400, 0.5) stays in 200 +- 80 (8 sd) */
	cr_assert(sampled >= 240 && sampled <= 560 && (long)sampled % 2 == 0,
		  "sampled total %g (kept %g of 400 at rate 0.5)", sampled, sampled / 2);
	/* every line arrived whole: the daemon's line count is exactly what was sent */
	double lines = inspect_number(buf, "it.probe") + 500 + 2 + 4 + 3 + 3 + sampled / 2;
	cr_assert_eq(inspect_number(buf, "statsd.metrics_received"), lines, "%s", buf);
	cr_assert_geq(inspect_number(buf, "statsd.packets_received"), 6, "8 KB came in packets");

	cr_assert_eq(mgmt(&d, "gauges", buf, sizeof buf), 0);
	cr_assert_eq(inspect_number(buf, "it.queue"), 42, "%s", buf);
	cr_assert_eq(inspect_number(buf, "it.level"), 70, "a negative gauge is a decrement: %s", buf);

	cr_assert_eq(mgmt(&d, "timers", buf, sizeof buf), 0);
	const char *t = strstr(buf, "'it.latency': [");
	cr_assert_not_null(t, "%s", buf);
	long ms[3];
	char *end;
	t += strlen("'it.latency': [");
	for (int i = 0; i < 3; i++) {
		ms[i] = strtol(t, &end, 10);
		cr_assert_neq(end, t, "%s", buf);
		t = end + strspn(end, " ,\n");
	}
	cr_assert_eq(*t, ']', "exactly three timings: %s", buf);
	qsort(ms, 3, sizeof ms[0], cmp_long);
	cr_assert(ms[0] == 10 && ms[1] == 20 && ms[2] == 30);

	/* Sets: the console backend prints them at the daemon's final flush (on SIGTERM). */
	daemon_stop(&d);
	const char *log = slurp(d.log);
	cr_assert_not_null(log);
	const char *sets = strstr(log, "'it.users': [");
	cr_assert_not_null(sets, "no set in the daemon's final flush:\n%s", log);
	const char *close_bracket = strchr(sets, ']');
	cr_assert_not_null(close_bracket);
	size_t n = (size_t)(close_bracket - sets);
	char users[256];
	snprintf(users, sizeof users, "%.*s", (int)(n < 255 ? n : 255), sets);
	cr_assert(strstr(users, "'alice'") && strstr(users, "'bob@example.com'"), "%s", users);
	cr_assert_eq(strstr(strstr(users, "'alice'") + 1, "'alice'"), NULL, "a set: alice once");

	unlink(d.config);
	unlink(d.log);
	rmdir(d.dir);
}
