/* process/process.c - the two Processes. `make demo` also compiles this file with
 * gcc -fanalyzer, which reports the leak in process_leaky() at compile time. */
#define _GNU_SOURCE
#include "process.h"

#include "statsd/statsd.h"

static process_observer *observer;

void process_set_observer(process_observer *fn)
{
	observer = fn;
}

static void observe(const char *moment)
{
	if (observer)
		observer(moment);
}

int process_leaky(const char *addr, int events)
{
	statsd *s = statsd_open(&(statsd_config){ .addr = addr, .prefix = "process" });
	if (!s)
		return -1;
	observe("inside process_leaky");
	if (events == 0)
		return 0; /* the bug: statsd_close(s) is forgotten on this path */
	for (int i = 0; i < events; i++)
		statsd_count(s, "events", 1, 1.0f);
	statsd_close(s);
	return 0;
}

int process_scoped(const char *addr, int events)
{
	scoped(statsd) s = statsd_open(&(statsd_config){ .addr = addr, .prefix = "process" });
	if (!s)
		return -1;
	observe("inside process_scoped");
	if (events == 0)
		return 0; /* scope exit: stop, final flush, join, free */
	for (int i = 0; i < events; i++)
		statsd_count(s, "events", 1, 1.0f);
	return 0;
}
