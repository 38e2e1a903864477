/* tests/test_statsd.c - the statsd sample: wire format, packet boundaries, lifecycle, errors.
 *
 * Every test binds its own loopback UDP socket and reads what the client sends with a bounded
 * poll(); nothing waits by sleeping. Packets are compared with what Go's buffered sender
 * would send for the same lines (go_sim below).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "statsd/statsd.h"

/* --- a loopback listener ---------------------------------------------------------------- */

typedef struct listener {
	int fd;
	char addr[64]; /* "127.0.0.1:port" or "[::1]:port" */
	int port;
} listener;

static listener listen_udp(int family)
{
	listener l = { .fd = -1 };
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return l;
	int big = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		sl = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof *a;
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		close(fd);
		return l;
	}
	l.fd = fd;
	if (family == AF_INET6) {
		l.port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(l.addr, sizeof l.addr, "[::1]:%d", l.port);
	} else {
		l.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(l.addr, sizeof l.addr, "127.0.0.1:%d", l.port);
	}
	return l;
}

/* One datagram into buf (NUL-terminated), or -1 when none came within timeout_ms. */
static int recv_packet(int fd, char *buf, size_t cap, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	ssize_t n = recv(fd, buf, cap - 1, 0);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return (int)n;
}

/* Asserts the next datagram is exactly want. */
static void expect_packet(int fd, const char *want)
{
	static char buf[70000];
	int n = recv_packet(fd, buf, sizeof buf, 2000);
	cr_assert_geq(n, 0, "no packet came; wanted \"%s\"", want);
	cr_assert_str_eq(buf, want);
}

/* Asserts no datagram is waiting. The client sends synchronously and loopback delivers
 * synchronously, so anything sent is already queued: a zero timeout is enough. */
static void expect_nothing(int fd)
{
	char buf[2048];
	int n = recv_packet(fd, buf, sizeof buf, 0);
	cr_assert_eq(n, -1, "unexpected packet \"%s\"", n >= 0 ? buf : "");
}

static statsd *open_to(const listener *l, const char *prefix, int flush_ms, int flush_bytes)
{
	statsd *s = statsd_open(&(statsd_config){
		.addr = l->addr, .prefix = prefix, .flush_ms = flush_ms, .flush_bytes = flush_bytes });
	cr_assert_not_null(s, "statsd_open(%s): %s", l->addr, strerror(errno));
	return s;
}

/* --- Go's BufferedSender.Send, to predict packets ----------------------------------------- */

typedef struct go_sim {
	size_t flush_bytes;
	char buf[70000];
	size_t len;
	char *packets[512];
	size_t count;
} go_sim;

static void go_sim_emit(go_sim *g)
{
	if (g->len == 0)
		return;
	cr_assert_lt(g->count, 512);
	g->packets[g->count++] = strndup(g->buf, g->len - 1); /* trailing '\n' trimmed */
	g->len = 0;
}

static void go_sim_add(go_sim *g, const char *line)
{
	size_t n = strlen(line);
	if (g->len > 0 && g->len + n + 1 >= g->flush_bytes)
		go_sim_emit(g);
	memcpy(g->buf + g->len, line, n);
	g->buf[g->len + n] = '\n';
	g->len += n + 1;
	if (g->len >= g->flush_bytes)
		go_sim_emit(g);
}

static void go_sim_expect(go_sim *g, int fd)
{
	for (size_t i = 0; i < g->count; i++) {
		expect_packet(fd, g->packets[i]);
		free(g->packets[i]);
	}
	g->count = 0;
	expect_nothing(fd);
}

/* --- wire format ------------------------------------------------------------------------- */

Test(statsd, formats_every_type_with_prefix)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, "app", -1, 0);
	cr_assert_eq(statsd_count(s, "hits", 1, 1.0f), 0);
	cr_assert_eq(statsd_count(s, "misses", -3, 1.0f), 0);
	cr_assert_eq(statsd_gauge(s, "queue", 28, 1.0f), 0);
	cr_assert_eq(statsd_timing_ms(s, "glork", 320, 1.0f), 0);
	cr_assert_eq(statsd_set(s, "users", "bob@example.com", 1.0f), 0);
	expect_nothing(lfd); /* buffered */
	cr_assert_eq(statsd_flush(s), 0);
	expect_packet(lfd, "app.hits:1|c\napp.misses:-3|c\napp.queue:28|g\napp.glork:320|ms\n"
			   "app.users:bob@example.com|s");
	cr_assert_eq(statsd_flush(s), 0, "an empty flush sends nothing and succeeds");
	expect_nothing(lfd);
}

Test(statsd, formats_without_prefix_and_extreme_values)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, -1, 0);
	cr_assert_eq(statsd_count(s, "zero", 0, 1.0f), 0);
	cr_assert_eq(statsd_gauge(s, "max", LLONG_MAX, 1.0f), 0);
	cr_assert_eq(statsd_gauge(s, "min", LLONG_MIN, 1.0f), 0);
	cr_assert_eq(statsd_timing_ms(s, "a.b-c_d e", 7, 2.0f), 0); /* rate >= 1: no |@ */
	cr_assert_eq(statsd_flush(s), 0);
	expect_packet(lfd, "zero:0|c\nmax:9223372036854775807|g\nmin:-9223372036854775808|g\n"
			   "a.b-c_d e:7|ms");
}

/* A rate < 1 is sampled: retry until the metric is kept (missing it 40 / rate times in a row
 * has a probability of e^-40). */
static void expect_rate(int lfd, statsd *s, float rate, const char *want)
{
	int tries = (int)(40.0f / rate) + 1;
	for (int i = 0; i < tries; i++) {
		cr_assert_eq(statsd_count(s, "r", 1, rate), 0);
		cr_assert_eq(statsd_flush(s), 0);
		char buf[256];
		if (recv_packet(lfd, buf, sizeof buf, 0) >= 0) {
			cr_assert_str_eq(buf, want);
			return;
		}
	}
	cr_assert_fail("rate %g: never sent in %d tries", (double)rate, tries);
}

Test(statsd, rate_is_printed_like_go_with_six_decimals)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, -1, 0);
	expect_rate(lfd, s, 0.5f, "r:1|c|@0.500000");
	expect_rate(lfd, s, 0.1f, "r:1|c|@0.100000");
	expect_rate(lfd, s, 0.999999f, "r:1|c|@0.999999"); /* go-statsd-client's own test */
	expect_rate(lfd, s, 0.25f, "r:1|c|@0.250000");
	expect_rate(lfd, s, 0.0078125f, "r:1|c|@0.007812"); /* exact half: to even, as Go */
	expect_rate(lfd, s, 0.0234375f, "r:1|c|@0.023438");
	expect_rate(lfd, s, 0.99999994f, "r:1|c|@1.000000");
}

Test(statsd, rate_samples_client_side)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, -1, 0);
	int kept = 0;
	for (int i = 0; i < 2000; i++) {
		cr_assert_eq(statsd_count(s, "r", 1, 0.5f), 0, "a sampled-out metric still returns 0");
		cr_assert_eq(statsd_flush(s), 0);
		char buf[256];
		if (recv_packet(lfd, buf, sizeof buf, 0) >= 0) {
			cr_assert_str_eq(buf, "r:1|c|@0.500000");
			kept++;
		}
	}
	/* Binomial(2000, 0.5): mean 1000, sd 22; the bounds are 9 sd away. */
	cr_assert(kept > 800 && kept < 1200, "kept %d of 2000 at rate 0.5", kept);

	cr_assert_eq(statsd_count(s, "never", 1, 0.0f), 0);
	cr_assert_eq(statsd_count(s, "never", 1, -1.0f), 0);
	cr_assert_eq(statsd_flush(s), 0);
	expect_nothing(lfd);
}

/* --- packet boundaries ----------------------------------------------------------------------- */

Test(statsd, packets_split_like_go_before_reaching_flush_bytes)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	const int fb = 64;
	scoped(statsd) s = open_to(&l, "p", -1, fb);
	static go_sim g;
	g = (go_sim){ .flush_bytes = (size_t)fb };
	for (int i = 0; i < 300; i++) {
		char name[32], line[64];
		snprintf(name, sizeof name, "m%d", i * 37 % 1000);
		long long v = (long long)i * i - 500;
		snprintf(line, sizeof line, "p.%s:%lld|c", name, v);
		cr_assert_eq(statsd_count(s, name, v, 1.0f), 0);
		go_sim_add(&g, line);
	}
	go_sim_emit(&g); /* the explicit flush */
	cr_assert_eq(statsd_flush(s), 0);
	go_sim_expect(&g, lfd);
}

Test(statsd, default_flush_bytes_is_1432)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, -1, 0);
	static go_sim g;
	g = (go_sim){ .flush_bytes = 1432 };
	size_t longest = 0;
	for (int i = 0; i < 800; i++) {
		char name[32], line[64];
		snprintf(name, sizeof name, "service.metric.%d", i);
		snprintf(line, sizeof line, "%s:%d|ms", name, i);
		cr_assert_eq(statsd_timing_ms(s, name, i, 1.0f), 0);
		go_sim_add(&g, line);
	}
	go_sim_emit(&g);
	cr_assert_eq(statsd_flush(s), 0);
	cr_assert_geq(g.count, 10);
	for (size_t i = 0; i < g.count; i++) {
		size_t n = strlen(g.packets[i]);
		longest = n > longest ? n : longest;
		cr_assert_leq(n, 1430, "a packet of several lines stays under flush_bytes - 1");
	}
	cr_assert_geq(longest, 1400, "packets are filled");
	go_sim_expect(&g, lfd);
}

Test(statsd, a_line_too_long_for_a_packet_goes_out_alone)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	const int fb = 32;
	scoped(statsd) s = open_to(&l, NULL, -1, fb);
	cr_assert_eq(statsd_count(s, "a", 1, 1.0f), 0); /* "a:1|c": buffered */
	expect_nothing(lfd);
	char name[128];
	memset(name, 'x', 100);
	name[100] = '\0';
	cr_assert_eq(statsd_count(s, name, 2, 1.0f), 0);
	expect_packet(lfd, "a:1|c"); /* flushed first */
	char want[160];
	snprintf(want, sizeof want, "%s:2|c", name);
	expect_packet(lfd, want); /* then the long line, alone, at once */
	expect_nothing(lfd);

	/* exactly at the limit: a 31-byte line plus its '\n' reaches 32, so it goes alone too */
	memset(name, 'y', 26);
	name[26] = '\0'; /* 26 + ":1|c" = 30 bytes: buffered (30 + 1 < 32) */
	cr_assert_eq(statsd_count(s, name, 1, 1.0f), 0);
	expect_nothing(lfd);
	name[26] = 'y';
	name[27] = '\0'; /* 31 bytes: flush the 30, then alone */
	cr_assert_eq(statsd_count(s, name, 1, 1.0f), 0);
	char want30[160], want31[160];
	snprintf(want31, sizeof want31, "%s:1|c", name);
	name[26] = '\0';
	snprintf(want30, sizeof want30, "%s:1|c", name);
	expect_packet(lfd, want30);
	expect_packet(lfd, want31);
	expect_nothing(lfd);

	/* a line too long for a prefix-less stack buffer takes the heap path */
	static char huge[5000];
	memset(huge, 'h', sizeof huge - 1);
	cr_assert_eq(statsd_set(s, "big", huge, 1.0f), 0);
	static char want_huge[5100];
	snprintf(want_huge, sizeof want_huge, "big:%s|s", huge);
	expect_packet(lfd, want_huge);

	/* longer than any UDP datagram: refused by the kernel, and the caller is told */
	static char giant[70000];
	memset(giant, 'g', sizeof giant - 1);
	errno = 0;
	cr_assert_eq(statsd_set(s, "giant", giant, 1.0f), -1);
	cr_assert_eq(errno, EMSGSIZE);
	int last = 0;
	cr_assert_eq(statsd_send_errors(s, &last), 1);
	cr_assert_eq(last, EMSGSIZE);
	expect_nothing(lfd);
}

/* --- the flusher --------------------------------------------------------------------------- */

Test(statsd, flushes_every_flush_ms)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	long long t0 = now_ms();
	scoped(statsd) s = open_to(&l, NULL, 200, 0);
	cr_assert_eq(statsd_count(s, "tick", 1, 1.0f), 0);
	if (now_ms() - t0 < 150)
		expect_nothing(lfd);
	expect_packet(lfd, "tick:1|c");
	cr_assert_geq(now_ms() - t0, 150, "sent by the period, not at once");
	cr_assert_eq(statsd_gauge(s, "tock", 2, 1.0f), 0);
	expect_packet(lfd, "tock:2|g"); /* and again */
}

/* A full packet does not wait for the period: it goes out as soon as the next line would not
 * fit; the partly filled one waits for the period (an hour here) or scope exit. */
Test(statsd, full_packets_go_out_at_once_partial_ones_wait)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	static go_sim g;
	g = (go_sim){ .flush_bytes = 1432 };
	{
		scoped(statsd) s = open_to(&l, NULL, 3600 * 1000, 0);
		for (int i = 0; i < 200; i++) { /* 200 * 19 bytes: two full packets and a part */
			char name[32], line[64];
			snprintf(name, sizeof name, "full.metric.%03d", i);
			snprintf(line, sizeof line, "%s:1|c", name);
			cr_assert_eq(statsd_count(s, name, 1, 1.0f), 0);
			go_sim_add(&g, line);
		}
		cr_assert_eq(g.count, 2);
		for (size_t i = 0; i < g.count; i++) {
			expect_packet(lfd, g.packets[i]);
			free(g.packets[i]);
		}
		g.count = 0;
		expect_nothing(lfd);
	}
	go_sim_emit(&g); /* scope exit */
	go_sim_expect(&g, lfd);
}

struct busy_arg {
	statsd *s;
	atomic_bool stop;
};

static void *busy_sender(void *p)
{
	struct busy_arg *a = p;
	while (!atomic_load(&a->stop))
		statsd_count(a->s, "busy", 1, 1.0f);
	return NULL;
}

/* Another thread filling and sending packets nonstop: this thread's partly filled buffer still
 * goes out within about a period. */
Test(statsd, a_busy_sender_does_not_starve_a_quiet_one)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, 100, 0);
	struct busy_arg a = { .s = s };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, busy_sender, &a), 0);
	cr_assert_eq(statsd_gauge(s, "quiet", 7, 1.0f), 0);
	static char buf[2048];
	bool seen = false;
	for (long long end = now_ms() + 3000; !seen && now_ms() < end;) {
		if (recv_packet(lfd, buf, sizeof buf, 100) >= 0)
			seen = strstr(buf, "quiet:7|g") != NULL;
	}
	atomic_store(&a.stop, true);
	pthread_join(th, NULL);
	cr_assert(seen, "the quiet thread's gauge never came");
}

Test(statsd, default_flush_ms_is_300)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	long long t0 = now_ms();
	scoped(statsd) s = open_to(&l, NULL, 0, 0);
	cr_assert_eq(statsd_count(s, "d", 1, 1.0f), 0);
	expect_packet(lfd, "d:1|c");
	long long took = now_ms() - t0;
	cr_assert(took >= 250 && took < 2000, "first flush after %lld ms", took);
}

Test(statsd, no_thread_when_flush_ms_is_negative)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	int before = thread_count();
	{
		scoped(statsd) s = open_to(&l, NULL, -1, 0);
		cr_assert_eq(thread_count(), before);
		scoped(statsd) t = open_to(&l, NULL, 1000, 0);
		cr_assert_eq(thread_count(), before + 1, "one flusher thread");
	}
	cr_assert(wait_until(thread_count() == before, 2000), "the flusher is gone after scope exit");
}

/* --- stop, close, scope exit ----------------------------------------------------------------- */

Test(statsd, scope_exit_flushes_stops_and_frees)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	int fds = fd_count();
	long long t0 = now_ms();
	{
		scoped(statsd) s = open_to(&l, "svc", 3600 * 1000, 0); /* a one-hour period */
		cr_assert_eq(statsd_count(s, "requests", 3, 1.0f), 0);
		cr_assert_eq(statsd_set(s, "users", "alice", 1.0f), 0);
		expect_nothing(lfd);
	}
	cr_assert_lt(now_ms() - t0, 1000, "leaving scope does not wait for the period");
	expect_packet(lfd, "svc.requests:3|c\nsvc.users:alice|s");
	cr_assert_eq(fd_count(), fds, "the socket is closed");
}

Test(statsd, stop_is_final_flush_then_sends_fail_with_epipe)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	int fds = fd_count();
	scoped(statsd) s = open_to(&l, NULL, 3600 * 1000, 0);
	cr_assert_eq(statsd_count(s, "last", 9, 1.0f), 0);
	cr_assert_eq(statsd_stop(s), 0);
	expect_packet(lfd, "last:9|c");
	cr_assert_eq(fd_count(), fds, "stop closes the socket");
	cr_assert_eq(statsd_stop(s), 0, "repeatable");
	errno = 0;
	cr_assert_eq(statsd_count(s, "late", 1, 1.0f), -1);
	cr_assert_eq(errno, EPIPE);
	errno = 0;
	cr_assert_eq(statsd_set(s, "late", "x", 0.5f), -1, "refused before sampling");
	cr_assert_eq(errno, EPIPE);
	errno = 0;
	cr_assert_eq(statsd_flush(s), -1);
	cr_assert_eq(errno, EPIPE);
	expect_nothing(lfd);
}

Test(statsd, stop_without_thread_flushes_too)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	statsd *s = open_to(&l, NULL, -1, 0);
	cr_assert_eq(statsd_gauge(s, "g", 1, 1.0f), 0);
	cr_assert_eq(statsd_stop(s), 0);
	expect_packet(lfd, "g:1|g");
	statsd_close(s);
	statsd_close(NULL);
	errno = 0;
	cr_assert_eq(statsd_stop(NULL), -1);
	cr_assert_eq(errno, EINVAL);
}

Test(statsd, close_keeps_errno)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	statsd *s = open_to(&l, NULL, 50, 0);
	errno = ERANGE;
	statsd_close(s);
	cr_assert_eq(errno, ERANGE);
}

/* --- errors --------------------------------------------------------------------------------- */

Test(statsd, bad_names_values_and_rates_are_einval_and_send_nothing)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, -1, 0);
	const char *bad[] = { "", "a:b", "a|b", "a@b", "a#b", "a\nb", "a\rb", "tab\there", "\x7f" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		errno = 0;
		cr_assert_eq(statsd_count(s, bad[i], 1, 1.0f), -1, "name \"%s\"", bad[i]);
		cr_assert_eq(errno, EINVAL);
		errno = 0;
		cr_assert_eq(statsd_gauge(s, bad[i], 1, 0.5f), -1, "checked before sampling");
		cr_assert_eq(errno, EINVAL);
		errno = 0;
		cr_assert_eq(statsd_set(s, bad[i], "v", 1.0f), -1);
		cr_assert_eq(errno, EINVAL);
	}
	const char *bad_values[] = { "", "a|b", "a\nb", "a:b", "x\r" };
	for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
		errno = 0;
		cr_assert_eq(statsd_set(s, "set", bad_values[i], 1.0f), -1, "value \"%s\"", bad_values[i]);
		cr_assert_eq(errno, EINVAL);
	}
	errno = 0;
	cr_assert_eq(statsd_set(s, "set", NULL, 1.0f), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(statsd_count(s, NULL, 1, 1.0f), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(statsd_timing_ms(NULL, "t", 1, 1.0f), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(statsd_count(s, "n", 1, NAN), -1);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_eq(statsd_flush(NULL), -1);
	cr_assert_eq(errno, EINVAL);

	cr_assert_eq(statsd_flush(s), 0);
	expect_nothing(lfd);
	cr_assert_eq(statsd_set(s, "emails", "bob@example.com", 1.0f), 0, "'@' is fine in a value");
	cr_assert_eq(statsd_flush(s), 0);
	expect_packet(lfd, "emails:bob@example.com|s");
}

Test(statsd, bad_config_is_einval_and_leaks_nothing)
{
	int fds = fd_count();
	errno = 0;
	cr_assert_null(statsd_open(NULL));
	cr_assert_eq(errno, EINVAL);
	const char *bad_addr[] = { NULL,	      "",	     "localhost",    "localhost:",
				   ":8125",	      "host:0",	     "host:65536",   "host:abc",
				   "host:-1",	      "host:+80",    "::1:8125",     "[::1]8125",
				   "[::1]:",	      "[]:8125",     "[::1:8125",    "127.0.0.1:8125x",
				   "[127.0.0.1]:8125" };
	for (size_t i = 0; i < sizeof bad_addr / sizeof bad_addr[0]; i++) {
		errno = 0;
		statsd *s = statsd_open(&(statsd_config){ .addr = bad_addr[i] });
		cr_assert_null(s, "addr \"%s\"", bad_addr[i] ? bad_addr[i] : "(null)");
		cr_assert_eq(errno, EINVAL, "addr \"%s\": %s", bad_addr[i] ? bad_addr[i] : "(null)",
			     strerror(errno));
	}
	const char *bad_prefix[] = { "", "a:b", "a|b", "a@b", "a#b", "a\nb" };
	for (size_t i = 0; i < sizeof bad_prefix / sizeof bad_prefix[0]; i++) {
		errno = 0;
		cr_assert_null(statsd_open(&(statsd_config){ .addr = "127.0.0.1:8125",
							       .prefix = bad_prefix[i] }));
		cr_assert_eq(errno, EINVAL, "prefix \"%s\"", bad_prefix[i]);
	}
	int bad_bytes[] = { -1, 65508, INT_MAX };
	for (size_t i = 0; i < sizeof bad_bytes / sizeof bad_bytes[0]; i++) {
		errno = 0;
		cr_assert_null(statsd_open(&(statsd_config){ .addr = "127.0.0.1:8125",
							       .flush_bytes = bad_bytes[i] }));
		cr_assert_eq(errno, EINVAL);
	}
	cr_assert_eq(fd_count(), fds);
}

Test(statsd, unresolvable_host_is_enxio)
{
	int fds = fd_count();
	errno = 0;
	cr_assert_null(statsd_open(&(statsd_config){ .addr = "no-such-host.invalid:8125" }));
	/* ENXIO: the name does not exist; EAGAIN only where no DNS server answers at all */
	cr_assert(errno == ENXIO || errno == EAGAIN, "errno %d (%s)", errno, strerror(errno));
	cr_assert_eq(fd_count(), fds);
}

Test(statsd, send_failures_are_counted_and_reported_by_flush)
{
	listener l = listen_udp(AF_INET);
	close(l.fd); /* nothing listens there now: loopback answers "port unreachable" */
	scoped(statsd) s = open_to(&l, NULL, -1, 0);
	int last = -1;
	cr_assert_eq(statsd_send_errors(s, &last), 0);
	cr_assert_eq(last, 0);
	int failed = 0;
	for (int i = 0; i < 20 && !failed; i++) {
		cr_assert_eq(statsd_count(s, "lost", 1, 1.0f), 0);
		if (statsd_flush(s) < 0) {
			cr_assert_eq(errno, ECONNREFUSED);
			failed = 1;
		}
	}
	cr_assert(failed, "a refused packet is reported");
	cr_assert_geq(statsd_send_errors(s, &last), 1);
	cr_assert_eq(last, ECONNREFUSED);
}

/* --- addresses -------------------------------------------------------------------------------- */

Test(statsd, ipv6_literal)
{
	listener l = listen_udp(AF_INET6);
	if (l.fd < 0)
		cr_skip_test("no IPv6 loopback here");
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, -1, 0);
	cr_assert_eq(statsd_count(s, "six", 6, 1.0f), 0);
	cr_assert_eq(statsd_flush(s), 0);
	expect_packet(lfd, "six:6|c");
}

Test(statsd, host_name_prefers_ipv4)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	char addr[64];
	snprintf(addr, sizeof addr, "localhost:%d", l.port);
	scoped(statsd) s = statsd_open(&(statsd_config){ .addr = addr, .flush_ms = -1 });
	cr_assert_not_null(s, "%s: %s", addr, strerror(errno));
	cr_assert_eq(statsd_count(s, "named", 1, 1.0f), 0);
	cr_assert_eq(statsd_flush(s), 0);
	expect_packet(lfd, "named:1|c");
}

/* --- threads -------------------------------------------------------------------------------- */

enum { SENDERS = 4, PER_SENDER = 2000 };

struct sender_arg {
	statsd *s;
	int id;
	int failures;
};

static void *sender(void *p)
{
	struct sender_arg *a = p;
	char name[16];
	snprintf(name, sizeof name, "t%d", a->id);
	for (int v = 1; v <= PER_SENDER; v++)
		if (statsd_count(a->s, name, v, 1.0f) != 0)
			a->failures++;
	return NULL;
}

/* Reads packets until the totals are reached (or 3 s pass), checking every line. */
static void check_totals(int lfd, size_t flush_bytes)
{
	long long sums[SENDERS] = { 0 };
	int lines[SENDERS] = { 0 };
	const long long want = (long long)PER_SENDER * (PER_SENDER + 1) / 2;
	int total = 0;
	static char buf[70000];
	while (total < SENDERS * PER_SENDER) {
		int n = recv_packet(lfd, buf, sizeof buf, 3000);
		cr_assert_geq(n, 0, "only %d of %d lines came", total, SENDERS * PER_SENDER);
		cr_assert_lt((size_t)n, flush_bytes - 1, "packet of %d bytes", n);
		cr_assert_neq(buf[n - 1], '\n', "no trailing newline");
		for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			int id, len = 0;
			long long v;
			cr_assert_eq(sscanf(line, "t%d:%lld|c%n", &id, &v, &len), 2, "line \"%s\"", line);
			cr_assert_eq(line[len], '\0', "line \"%s\"", line);
			cr_assert(id >= 0 && id < SENDERS && v >= 1 && v <= PER_SENDER, "line \"%s\"", line);
			sums[id] += v;
			lines[id]++;
			total++;
		}
	}
	for (int i = 0; i < SENDERS; i++) {
		cr_assert_eq(lines[i], PER_SENDER, "sender %d: %d lines", i, lines[i]);
		cr_assert_eq(sums[i], want, "sender %d: sum %lld", i, sums[i]);
	}
	expect_nothing(lfd);
}

static void run_senders(statsd *s)
{
	pthread_t th[SENDERS];
	struct sender_arg args[SENDERS];
	for (int i = 0; i < SENDERS; i++) {
		args[i] = (struct sender_arg){ .s = s, .id = i };
		cr_assert_eq(pthread_create(&th[i], NULL, sender, &args[i]), 0);
	}
	for (int i = 0; i < SENDERS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(args[i].failures, 0);
	}
}

Test(statsd, many_threads_whole_lines_exact_totals)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	{
		scoped(statsd) s = open_to(&l, NULL, -1, 512);
		run_senders(s);
	}
	check_totals(lfd, 512);
}

Test(statsd, many_threads_with_a_busy_flusher)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	{
		scoped(statsd) s = open_to(&l, NULL, 1, 0);
		run_senders(s);
	}
	check_totals(lfd, 1432);
}

struct stopper_arg {
	statsd *s;
	int rc;
};

static void *stopper(void *p)
{
	struct stopper_arg *a = p;
	a->rc = statsd_stop(a->s);
	return NULL;
}

Test(statsd, stop_from_many_threads_at_once)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, 5, 0);
	cr_assert_eq(statsd_count(s, "x", 1, 1.0f), 0);
	pthread_t th[6];
	struct stopper_arg args[6];
	for (int i = 0; i < 6; i++) {
		args[i] = (struct stopper_arg){ .s = s };
		cr_assert_eq(pthread_create(&th[i], NULL, stopper, &args[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(args[i].rc, 0);
	}
	expect_packet(lfd, "x:1|c");
	errno = 0;
	cr_assert_eq(statsd_count(s, "x", 1, 1.0f), -1);
	cr_assert_eq(errno, EPIPE);
}

struct racer_arg {
	statsd *s;
	long long sent; /* lines accepted (returned 0) */
	int bad_errno;
};

static void *racer(void *p)
{
	struct racer_arg *a = p;
	while (a->sent < 20000) {
		if (statsd_count(a->s, "race", 1, 1.0f) != 0) {
			if (errno != EPIPE)
				a->bad_errno = errno;
			break;
		}
		a->sent++;
	}
	return NULL;
}

/* Every line accepted before stop arrives, and a send after stop is refused, not lost. */
Test(statsd, stop_while_sending_loses_nothing_accepted)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, 1, 0);
	pthread_t th[2];
	struct racer_arg args[2] = { { .s = s }, { .s = s } };
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, racer, &args[i]), 0);
	static char buf[2048];
	long long got = 0;
	int n = recv_packet(lfd, buf, sizeof buf, 2000); /* they are sending: stop under their feet */
	cr_assert_geq(n, 0);
	cr_assert_eq(statsd_stop(s), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(args[i].bad_errno, 0, "%s", strerror(args[i].bad_errno));
	}
	do {
		for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			cr_assert_str_eq(line, "race:1|c");
			got++;
		}
	} while (recv_packet(lfd, buf, sizeof buf, 0) >= 0);
	cr_assert_eq(got, args[0].sent + args[1].sent);
}

/* --- fork ----------------------------------------------------------------------------------- */

/* In a child, the inherited client is stopped: it sends nothing (its lines are the parent's),
 * refuses new ones with EPIPE, and closing it neither hangs nor sends. The parent's client goes
 * on, and each of its lines arrives once. The child answers through a pipe: under valgrind its
 * exit status is memcheck's, and it leaves by exec so that memcheck does not list the parent's
 * threads' memory as lost in it. */
Test(statsd, a_forked_child_neither_sends_nor_hangs)
{
	listener l = listen_udp(AF_INET);
	scoped_fd int lfd = l.fd;
	scoped(statsd) s = open_to(&l, NULL, 3600 * 1000, 0);
	cr_assert_eq(statsd_count(s, "before_fork", 1, 1.0f), 0);
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		alarm(10);
		unsigned char ok = statsd_count(s, "child", 1, 1.0f) == -1 && errno == EPIPE &&
				   statsd_flush(s) == -1 && errno == EPIPE && statsd_stop(s) == 0;
		statsd_close(s);
		if (write(p[1], &ok, 1) != 1)
			_exit(2);
		const char *preload = getenv("LD_PRELOAD");
		if (getenv("VALGRIND") || (preload && strstr(preload, "vgpreload")))
			execl("/bin/true", "true", (char *)NULL);
		_exit(0);
	}
	close(p[1]);
	unsigned char ok = 0;
	struct pollfd pf = { .fd = p[0], .events = POLLIN };
	cr_assert_eq(poll(&pf, 1, 10000), 1, "the child hung");
	cr_assert_eq(read(p[0], &ok, 1), 1, "the child died without a word");
	close(p[0]);
	waitpid(pid, NULL, 0);
	cr_assert(ok, "in the child: a send is not EPIPE, or flush/stop misbehaved");
	expect_nothing(lfd);
	cr_assert_eq(statsd_count(s, "after_fork", 2, 1.0f), 0);
	cr_assert_eq(statsd_flush(s), 0);
	expect_packet(lfd, "before_fork:1|c\nafter_fork:2|c");
	expect_nothing(lfd);
}
