/* statsd/statsd.h - a buffered statsd client whose flusher cannot outlive its scope.
 *
 *	#include "statsd/statsd.h"
 *
 *	int handle_request(void)
 *	{
 *		scoped(statsd) st = statsd_open(&(statsd_config){ .addr = "127.0.0.1:8125",
 *								  .prefix = "web" });
 *		if (!st)
 *			return -1;			// errno says why (see ERRORS)
 *		statsd_count(st, "requests", 1, 1.0f);	// buffered: "web.requests:1|c"
 *		statsd_timing_ms(st, "latency", 12, 0.1f); // sent one time in ten, "|@0.100000"
 *		return 0;	// scope exit: stop the flusher, send what is buffered, close, free
 *	}
 *
 * This is go-statsd-client's buffered sender (github.com/cactus/go-statsd-client) in C, with
 * the same bytes on the wire, minus its leak: in Go, a caller who forgets Close leaves the
 * flushing goroutine running, and it keeps the sender alive forever. Here the flusher is a
 * scoped_worker that holds only the inner object, and leaving the scope of the handle stops
 * it, runs the final flush and frees everything.
 *
 * WIRE FORMAT. One line per metric: `[prefix.]name:value|type[|@rate]`, type c (count),
 * g (gauge), ms (timing) or s (set). Lines are joined by '\n' with no trailing newline. A
 * packet is sent every flush_ms (when not empty), and before a line would take the buffer
 * (counting one '\n' per line, as Go does) to flush_bytes or more; a line too long for any
 * packet goes out alone, at once. So a packet of several lines is at most flush_bytes - 2
 * bytes long.
 *
 * SAMPLING. With rate < 1 the metric is sent with probability rate (else dropped, and the
 * call still returns 0) and carries `|@rate` with six decimals, as Go's
 * strconv.AppendFloat(rate, 'f', 6, 32) prints it: 0.5f gives `|@0.500000`. With rate >= 1
 * it is always sent, with no `|@`. rate <= 0 drops every metric. A NaN rate is EINVAL.
 *
 * THREADS. Every call may be made from many threads at once. Each thread fills its own
 * buffer (one of 8, each behind its own mutex), so senders do not contend, and a packet never
 * holds part of a line. A full packet is sent at once by the thread that filled it, without
 * any lock held; the flusher thread sends what is left each period.
 *
 * ERRORS. Functions return 0, or -1 and set errno; statsd_open returns NULL and sets errno,
 * having closed every socket and freed everything it made.
 *  EINVAL	a NULL config or addr; addr not "host:port" or "[ipv6]:port" with a numeric
 *		port 1..65535; a prefix or name that is empty or contains ':', '|', '@', '#' or a
 *		control character ('\n', '\r', ...); a set value that is empty or contains ':', '|'
 *		or a control character; flush_bytes < 0 or > 65507; a NaN rate.
 *  ENXIO	the host name does not resolve (getaddrinfo EAI_NONAME / EAI_NODATA).
 *  EAGAIN	temporary name resolution failure (EAI_AGAIN), or no thread could be started.
 *  EIO		name resolution failed for good (EAI_FAIL). Other getaddrinfo failures: EINVAL,
 *		ENOMEM (EAI_MEMORY), or errno itself (EAI_SYSTEM).
 *  ENOMEM	out of memory (statsd_open; a metric when its thread's first buffer or a line
 *		too long for the stack cannot be allocated).
 *  EPIPE	the client was stopped (statsd_stop, being closed, or inherited by fork()):
 *		nothing is sent.
 *  others	statsd_flush, statsd_stop and a line sent alone report send()'s errno (for
 *		example ECONNREFUSED when nothing listens on a local port, EMSGSIZE).
 * A packet flushed in the background, or by another call's full buffer, that fails to send
 * is lost (UDP statsd is fire-and-forget) but never silently: statsd_send_errors counts it.
 *
 * PITFALLS.
 *  - A negative gauge is read by statsd as a decrement of the gauge ("-5|g"), as in Go.
 *  - "localhost" resolves to IPv4 first, as Go's ResolveUDPAddr does: a statsd daemon listens
 *    on 0.0.0.0 by default, and a client sending to ::1 would be refused.
 *  - The handle is freed by statsd_close (scope exit): use statsd_stop to end it early and
 *    keep the handle valid; later sends fail with EPIPE.
 *  - fork(): in the child an inherited client is stopped. Its buffered lines are the parent's
 *    (the parent sends them), so the child sends nothing, new sends fail with EPIPE, and
 *    statsd_close just frees, without hanging. Open a new client in the child.
 *  - The host name is resolved once, by statsd_open (as go-statsd-client's simple sender).
 */
#ifndef SAMPLES_STATSD_H
#define SAMPLES_STATSD_H

#include <stddef.h>

#include <scoped.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct statsd statsd;

typedef struct statsd_config {
	const char *addr;   /* "host:port", "127.0.0.1:8125", "[::1]:8125", "localhost:8125" */
	const char *prefix; /* NULL: none; else every name is sent as "prefix.name" */
	int flush_ms;	    /* 0: 300; > 0: that period; < 0: no thread, flushes are the caller's */
	int flush_bytes;    /* 0: 1432 (safe on a LAN; 512 over the internet); at most 65507 */
} statsd_config;

/* Stops (as statsd_stop) and frees. NULL is fine. Scope exit calls it. */
void statsd_close(statsd *s);

/* A connected UDP socket to cfg->addr and, unless cfg->flush_ms < 0, a flusher thread. */
statsd *statsd_open(const statsd_config *cfg) SCOPED_ALLOC(statsd_close);

/* name:value|c, name:value|g, name:value|ms, name:value|s. Return 0 also when sampled out. */
int statsd_count(statsd *s, const char *name, long long value, float rate);
int statsd_gauge(statsd *s, const char *name, long long value, float rate);
int statsd_timing_ms(statsd *s, const char *name, long long value, float rate);
int statsd_set(statsd *s, const char *name, const char *value, float rate);

/* Sends what is buffered now. 0 when nothing was buffered. */
int statsd_flush(statsd *s);

/* Go's Close: the final flush, then the flusher stops and the socket closes. The handle stays
 * valid: later sends fail with EPIPE. Repeatable and safe from many threads at once; every
 * caller returns after the final flush. Returns -1 with the final flush's errno when it failed
 * (the first caller only). */
int statsd_stop(statsd *s);

/* Packets that could not be sent since statsd_open; *last_errno (when not NULL) gets the
 * latest failure's errno, or 0. */
unsigned long long statsd_send_errors(statsd *s, int *last_errno);

SCOPED_DEFINE(statsd, statsd_close)

#ifdef __cplusplus
}
#endif

#endif /* SAMPLES_STATSD_H */
