/* samples/statsd/main.c - a buffered statsd client that cannot leak its flusher.
 *
 * In Go, go-statsd-client's buffered sender starts a goroutine that flushes every 300 ms; a
 * caller who forgets Close leaks the sender and the goroutine. Here the client is declared
 * with scoped(statsd): leaving the block stops the flusher, sends what is buffered and frees.
 * This demo plays the statsd daemon itself (a UDP socket on loopback) and prints what arrives.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "statsd/statsd.h"

static int threads(void)
{
	int n = 0;
	scoped(DIR) d = opendir("/proc/self/task");
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	return n;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Prints every packet waiting on fd (waiting at most wait_ms for the first); returns the count. */
static int show_packets(int fd, int wait_ms)
{
	static char buf[65536];
	int count = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, count ? 0 : wait_ms) == 1) {
		ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
		if (n < 0)
			break;
		buf[n] = '\0';
		int lines = 1;
		for (char *c = buf; *c; c++)
			lines += *c == '\n';
		count++;
		if (n < 200) {
			printf("    packet %d, %zd bytes, %d lines:\n", count, n, lines);
			for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
				printf("      %s\n", l);
		} else {
			const char *last = strrchr(buf, '\n');
			printf("    packet %d, %zd bytes, %d lines: %.*s ... %s\n", count, n, lines,
			       (int)strcspn(buf, "\n"), buf, last ? last + 1 : "");
		}
	}
	return count;
}

int main(void)
{
	/* 1. a stand-in for the statsd daemon */
	scoped_fd int daemon = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof a;
	if (daemon < 0 || bind(daemon, (struct sockaddr *)&a, alen) < 0 ||
	    getsockname(daemon, (struct sockaddr *)&a, &alen) < 0) {
		perror("listener");
		return 1;
	}
	char addr[32];
	snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
	printf("A UDP socket on %s plays the statsd daemon: it prints every packet it gets.\n\n", addr);

	/* 2. a block with a scoped client and a flusher that would wait a whole minute */
	printf("Threads in this process: %d.\n", threads());
	printf("Entering a block: scoped(statsd) s = statsd_open(.addr = \"%s\", .prefix = \"shop\",\n"
	       "                                                 .flush_ms = 60000);\n", addr);
	double left;
	{
		scoped(statsd) s = statsd_open(&(statsd_config){ .addr = addr, .prefix = "shop",
								  .flush_ms = 60000 });
		if (!s) {
			perror("statsd_open");
			return 1;
		}
		printf("  threads now: %d (the flusher runs, period one minute)\n", threads());
		statsd_count(s, "orders", 1, 1.0f);
		statsd_gauge(s, "cart_size", 3, 1.0f);
		statsd_timing_ms(s, "checkout", 182, 1.0f);
		statsd_set(s, "customers", "ada", 1.0f);
		printf("  sent 4 metrics (count, gauge, timing, set); packets received so far: %d\n",
		       show_packets(daemon, 0));
		printf("  (they are buffered: in Go, forgetting Close here would leak them, the sender\n"
		       "   and its goroutine)\n");
		printf("Leaving the block...\n");
		left = now_ms();
	} /* statsd_close: stop the flusher, final flush, close the socket, free */
	printf("  ...took %.2f ms: no waiting for the minute. Threads now: %d.\n", now_ms() - left,
	       threads());
	printf("  The daemon got:\n");
	show_packets(daemon, 1000);

	/* 3. packet boundaries: many metrics are packed into packets below 1432 bytes */
	printf("\nSending 300 counters through another scoped client, then leaving its block:\n");
	{
		scoped(statsd) s = statsd_open(&(statsd_config){ .addr = addr, .prefix = "shop" });
		if (!s) {
			perror("statsd_open");
			return 1;
		}
		char name[32];
		for (int i = 0; i < 300; i++) {
			snprintf(name, sizeof name, "item.%03d.views", i);
			statsd_count(s, name, i, 1.0f);
		}
	}
	printf("  The daemon got (each packet stays under flush_bytes = 1432):\n");
	show_packets(daemon, 1000);
	return 0;
}
