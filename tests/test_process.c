/* tests/test_process.c - samples/process: the leaky Process leaks its flushing thread, the
 * scoped one leaves nothing behind and its final flush arrives; gcc -fanalyzer sees the leak. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <scoped.h>

#include "helpers.h"
#include "process/process.h"
#include "udp.h"

static int threads_inside, live_inside;
static void count_inside(const char *moment)
{
	(void)moment;
	threads_inside = thread_count();
	live_inside = (int)scoped_live_count();
}

Test(process, scoped_process_stops_its_thread_and_flushes)
{
	char addr[64], buf[256];
	scoped_fd int fd = udp_listener(addr, sizeof addr);
	int threads = thread_count();
	process_set_observer(count_inside);
	cr_assert_eq(process_scoped(addr, 2), 0);
	cr_assert_eq(threads_inside, threads + 1, "the flusher runs inside Process");
	cr_assert_eq(live_inside, 1);
	cr_assert_eq(scoped_live_count(), 0, "nothing is live after Process");
	cr_assert_eq(thread_count(), threads, "the thread was joined before Process returned");
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
	cr_assert_gt(n, 0, "the final flush arrived");
	buf[n] = '\0';
	cr_assert_str_eq(buf, "process.events:1|c\nprocess.events:1|c");
}

Test(process, scoped_process_early_return_also_closes)
{
	char addr[64];
	scoped_fd int fd = udp_listener(addr, sizeof addr);
	int threads = thread_count();
	process_set_observer(count_inside);
	cr_assert_eq(process_scoped(addr, 0), 0);
	cr_assert_eq(live_inside, 1);
	cr_assert_eq(scoped_live_count(), 0);
	cr_assert_eq(thread_count(), threads);
}

Test(process, leaky_process_closes_on_its_normal_path)
{
	char addr[64];
	scoped_fd int fd = udp_listener(addr, sizeof addr);
	int threads = thread_count();
	cr_assert_eq(process_leaky(addr, 1), 0);
	cr_assert_eq(scoped_live_count(), 0);
	cr_assert_eq(thread_count(), threads);
}

Test(process, bad_address_fails_cleanly)
{
	int fds = fd_count();
	errno = 0;
	cr_assert_eq(process_scoped("no-port", 1), -1);
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(process_leaky("no-port", 0), -1);
	cr_assert_eq(fd_count(), fds);
}

/* Run in the demo binary, not here: the leak is real, and this process must stay clean for
 * valgrind and LeakSanitizer. */
Test(process, demo_shows_the_leaked_thread_with_its_start_site)
{
	char cmd[512], out[1 << 14];
	snprintf(cmd, sizeof cmd, "ASAN_OPTIONS=detect_leaks=0 SCOPED_LEAKCHECK=1 %s/samples/process 2>&1", SCOPED_BUILDDIR);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	cr_assert_eq(pclose(p), 0, "%s", out);
	cr_assert_not_null(strstr(out, "This is the leak."), "%s", out);
	cr_assert_not_null(strstr(out, "1 live handle at exit"), "%s", out);
	cr_assert_not_null(strstr(out, "live worker \"statsd\" started at samples/statsd/statsd.c:"),
			   "%s", out);
}

Test(process, analyzer_reports_the_leaky_process_only)
{
	char v[16] = "";
	FILE *g = popen("gcc -dumpversion", "r");
	cr_assert_not_null(g);
	cr_assert_not_null(fgets(v, sizeof v, g));
	pclose(g);
	if (atoi(v) < 11)
		cr_skip_test("gcc -fanalyzer with malloc(dealloc) needs GCC 11 or later");
	char cmd[512], out[1 << 15];
	snprintf(cmd, sizeof cmd, "%s",
		 "gcc -std=c11 -fanalyzer -I" SCOPED_SRCDIR "/include -I" SCOPED_SRCDIR "/samples -c "
		 SCOPED_SRCDIR "/samples/process/process.c -o /dev/null 2>&1");
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(out, 1, sizeof out - 1, p);
	out[n] = '\0';
	pclose(p);
	cr_assert_not_null(strstr(out, "leak of"), "%s", out);
	cr_assert_not_null(strstr(out, "process_leaky"), "%s", out);
	cr_assert_not_null(strstr(out, "-Wanalyzer-malloc-leak"), "%s", out);
	cr_assert_null(strstr(out, "process_scoped"), "nothing in process_scoped:\n%s", out);
}
