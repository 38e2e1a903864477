/* tests/fuzz/fuzz_statsd.c - libFuzzer target: statsd names, values, prefixes, rates and packet
 * sizes. Every metric is either refused with EINVAL (and only when statsd.h says it must be) or
 * arrives, byte for byte as formatted here independently, in a packet no bigger than
 * flush_bytes allows, on a loopback UDP socket this target owns.
 *
 * Input: [flush_bytes selector][flags] then NUL-separated fields: the prefix (when flags & 1),
 * then pairs (metric, value). A metric field's first byte picks the type (low 2 bits) and the
 * rate (next 3 bits); the rest is the name. A value field is the set value, or up to 8 bytes of
 * a signed integer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "statsd/statsd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_METRICS = 16, MAX_LINE = 8192 };

static int rx = -1;
static char addr[64];

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_statsd: %s\n", what);
		abort();
	}
}

static void setup(void)
{
	rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	check(rx >= 0, "socket");
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	check(bind(rx, (struct sockaddr *)&sa, sizeof sa) == 0, "bind");
	socklen_t len = sizeof sa;
	check(getsockname(rx, (struct sockaddr *)&sa, &len) == 0, "getsockname");
	int big = 8 << 20;
	if (setsockopt(rx, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
		setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sa.sin_port));
}

static bool good_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || c == ':' || c == '|' || c == '@' || c == '#')
			return false;
	}
	return true;
}

static bool good_value(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || c == ':' || c == '|')
			return false;
	}
	return true;
}

static const float rates[8] = { 1.0f, 2.0f, 0.0f, -1.0f, NAN, 0.5f, 0.999999f, 1e-7f };
static const char *const types[4] = { "c", "g", "ms", "s" };

struct expected {
	char line[MAX_LINE];
	size_t len;
	bool optional;	/* sampled: may be missing */
};

static struct expected want[MAX_METRICS];

/* The next NUL-terminated field of data (a copy, in buf), or NULL at the end. */
static const char *field(const uint8_t *data, size_t size, size_t *pos, char *buf, size_t cap)
{
	if (*pos >= size)
		return NULL;
	size_t n = 0;
	while (*pos < size && data[*pos] != 0 && n + 1 < cap)
		buf[n++] = (char)data[(*pos)++];
	buf[n] = '\0';
	while (*pos < size && data[*pos] != 0) /* too long: the rest is dropped */
		(*pos)++;
	(*pos)++;
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (rx < 0)
		setup();
	if (size < 2)
		return 0;
	char junk[65536];
	while (recv(rx, junk, sizeof junk, 0) > 0) /* nothing left from an earlier input */
		;
	int fb = data[0] < 2 ? data[0] : data[0] * 6;
	size_t limit = fb ? (size_t)fb : 1432;
	size_t pos = 2;
	static char prefix[1024], name[2048], value[2048];
	const char *pfx = NULL;
	if (data[1] & 1)
		pfx = field(data, size, &pos, prefix, sizeof prefix);

	errno = 0;
	statsd *s = statsd_open(&(statsd_config){ .addr = addr, .prefix = pfx, .flush_ms = -1,
						  .flush_bytes = fb });
	if (pfx && !good_name(pfx)) {
		check(!s && errno == EINVAL, "a bad prefix was not refused with EINVAL");
		return 0;
	}
	check(s != NULL, "statsd_open failed");

	int n = 0;
	while (n < MAX_METRICS && field(data, size, &pos, name, sizeof name)) {
		unsigned sel = (unsigned char)name[0];
		const char *nm = name[0] ? name + 1 : name;
		const char *type = types[sel & 3];
		float rate = rates[(sel >> 2) & 7];
		if (!field(data, size, &pos, value, sizeof value))
			value[0] = '\0';
		char digits[32];
		long long iv = 0;
		if (sel % 4 != 3) {
			size_t vl = strlen(value);
			uint64_t u = 0;
			memcpy(&u, value, vl < 8 ? vl : 8);
			iv = (long long)u;
			snprintf(digits, sizeof digits, "%lld", iv);
		}
		errno = 0;
		int rc;
		switch (sel & 3) {
		case 0: rc = statsd_count(s, nm, iv, rate); break;
		case 1: rc = statsd_gauge(s, nm, iv, rate); break;
		case 2: rc = statsd_timing_ms(s, nm, iv, rate); break;
		default: rc = statsd_set(s, nm, value, rate); break;
		}
		bool valid = good_name(nm) && (sel % 4 != 3 || good_value(value)) && !isnan(rate);
		if (!valid) {
			check(rc == -1 && errno == EINVAL, "a bad metric was not refused (EINVAL)");
			continue;
		}
		check(rc == 0, "a good metric was refused");
		if (rate <= 0.0f)
			continue; /* dropped, by definition */
		struct expected *e = &want[n++];
		int len = snprintf(e->line, sizeof e->line, "%s%s%s:%s|%s", pfx ? pfx : "",
				   pfx ? "." : "", nm, sel % 4 == 3 ? value : digits, type);
		if (rate < 1.0f)
			len += snprintf(e->line + len, sizeof e->line - (size_t)len, "|@%.6f",
					(double)rate);
		e->len = (size_t)len;
		e->optional = rate < 1.0f;
	}
	check(statsd_flush(s) == 0, "statsd_flush failed");
	check(statsd_send_errors(s, NULL) == 0, "a packet could not be sent");
	statsd_close(s);

	/* Read the packets back: lines in order, none missing unless sampled, each packet within
	 * its size unless it is one line too long for any packet. */
	static char pkt[65536];
	int next = 0;
	ssize_t got;
	while ((got = recv(rx, pkt, sizeof pkt, 0)) >= 0) {
		size_t plen = (size_t)got;
		size_t lines = 1;
		for (size_t i = 0; i < plen; i++)
			lines += pkt[i] == '\n';
		check(plen > 0 && pkt[plen - 1] != '\n', "an empty packet, or a trailing newline");
		check(plen + 2 <= limit || (lines == 1 && plen + 1 >= limit),
		      "a packet larger than flush_bytes allows");
		size_t at = 0;
		while (at < plen) {
			const char *nl = memchr(pkt + at, '\n', plen - at);
			size_t ll = nl ? (size_t)(nl - (pkt + at)) : plen - at;
			while (next < n && want[next].optional &&
			       !(want[next].len == ll && memcmp(want[next].line, pkt + at, ll) == 0))
				next++; /* sampled out */
			check(next < n, "an unexpected line arrived");
			check(want[next].len == ll && memcmp(want[next].line, pkt + at, ll) == 0,
			      "a line arrived different from what was sent");
			next++;
			at += ll + 1;
		}
	}
	while (next < n && want[next].optional)
		next++;
	check(next == n, "a line was lost");
	return 0;
}
