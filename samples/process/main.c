/* samples/process - the article's story, run live.
 *
 * 1. process_leaky(): a buffered sender is opened and never closed. Inside Process the stack
 *    variable points at the sender and so does its flushing thread; after Process the stack
 *    variable is gone, the thread is still running, and both leak.
 * 2. process_scoped(): the same with scoped(statsd). Leaving Process stops the thread, runs the
 *    final flush (the packet arrives), joins it and frees the sender.
 * Every picture is drawn from live state: the threads in /proc/self/task, the library's
 * registry of live handles, and the packets a local UDP socket received.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <scoped.h>

#include "process/process.h"

/* Names of this process's threads other than the main one, comma separated. */
static int other_threads(char *names, size_t size)
{
	int n = 0;
	size_t used = 0;
	names[0] = '\0';
	scoped(DIR) d = opendir("/proc/self/task");
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == getpid())
			continue;
		char path[300], comm[32] = "?";
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
		scoped(FILE) f = fopen(path, "r");
		if (f && fgets(comm, sizeof comm, f))
			comm[strcspn(comm, "\n")] = '\0';
		used += (size_t)snprintf(names + used, size - used, "%s\"%s\"", n ? ", " : "", comm);
		if (used >= size)
			used = size - 1;
		n++;
	}
	return n;
}

/* The registry's report, indented, into buf. */
static size_t registry(char *buf, size_t size)
{
	buf[0] = '\0';
	FILE *m = fmemopen(buf, size, "w");
	if (!m)
		return 0;
	size_t n = scoped_live_report(m);
	fclose(m);
	return n;
}

/* A new thread names itself as it starts: give it a moment (bounded) before reading. */
static int named_threads(char *names, size_t size)
{
	int n = other_threads(names, size);
	for (int i = 0; i < 200 && strstr(names, "\"process\""); i++) {
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		n = other_threads(names, size);
	}
	return n;
}

/* Each line of text, indented. */
static void print_indented(const char *text, const char *indent)
{
	for (const char *eol; *text; text = eol + 1) {
		eol = strchr(text, '\n');
		if (!eol)
			eol = text + strlen(text) - 1;
		printf("%s%.*s\n", indent, (int)(eol - text), text);
		if (!eol[1])
			break;
	}
}

static void draw(const char *moment, bool in_process, bool scoped_version)
{
	char names[256], report[1024];
	int threads = named_threads(names, sizeof names);
	size_t live = registry(report, sizeof report);
	bool running = live > 0;

	printf("\n  -- %s --\n", moment);
	printf("     threads besides main (/proc/self/task): %d %s\n", threads, names);
	printf("     live handles (scoped_live_report): %zu\n", live);
	print_indented(report, "       ");
	printf("\n");
	const char *stack = in_process ? "s ─────────►" : "(returned)  ";
	const char *sender = running ? "statsd ──► inner" : "(freed)         ";
	const char *thread = running ? "◄── flusher thread (running)" : "    (no thread)";
	printf("     Process's stack    heap                   background\n");
	printf("     %s %s %s\n", stack, sender, thread);
	if (!in_process && running)
		printf("     Nothing on any stack points at the sender, but the running thread does:\n"
		       "     it will never be stopped or freed. %s\n",
		       scoped_version ? "" : "This is the leak.");
	if (!in_process && !running)
		printf("     Scope exit stopped the thread, flushed, joined and freed the sender.\n");
}

static bool in_scoped;
static void observer(const char *moment)
{
	draw(moment, true, in_scoped);
}

/* A local UDP socket standing in for the statsd daemon. */
static int listen_udp(char *addr, size_t size)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -1;
	snprintf(addr, size, "127.0.0.1:%d", ntohs(sa.sin_port));
	return fd;
}

static void show_packets(int fd)
{
	char buf[2048];
	ssize_t n;
	int packets = 0;
	while ((n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
		buf[n] = '\0';
		printf("     packet received by the daemon, %zd bytes:\n", n);
		print_indented(buf, "       ");
		packets++;
	}
	if (!packets)
		printf("     no packet received yet\n");
}

int main(void)
{
	char addr[64];
	scoped_fd int daemon = listen_udp(addr, sizeof addr);
	if (daemon < 0) {
		perror("process: udp socket");
		return 1;
	}
	process_set_observer(observer);

	printf("1. Process with a sender it forgets to close (process_leaky)\n");
	if (process_leaky(addr, 0) < 0) {
		perror("process_leaky");
		return 1;
	}
	draw("after process_leaky returned", false, false);

	printf("\n2. The same Process with scoped(statsd) (process_scoped)\n");
	in_scoped = true;
	size_t leaked = scoped_live_count();
	if (process_scoped(addr, 3) < 0) {
		perror("process_scoped");
		return 1;
	}
	printf("\n  -- after process_scoped returned --\n");
	printf("     live handles: %zu (the %zu from step 1 is still leaked; none from step 2)\n",
	       scoped_live_count(), leaked);
	show_packets(daemon);
	printf("\n  The final flush happened at scope exit, before process_scoped returned.\n");
	return 0;
}
