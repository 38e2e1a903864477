/* statsd.c - the buffered statsd client: see statsd.h for the contract.
 *
 * Two objects, as go-cache's wrapped return has it: the caller holds `statsd` (the wrapper);
 * the flusher thread holds only `statsd_core` (the inner object: socket, buffer, lock). The
 * wrapper's close stops the flusher first, so nothing else points at the core when it is
 * freed.
 *
 * A metric is formatted outside the lock into a stack buffer, then copied into the packet
 * being filled under the mutex. A full packet is swapped for a spare and sent outside the
 * lock; `inflight` counts such sends so that stop closes the socket only after the last one.
 */
#define _GNU_SOURCE
#include "statsd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { STATSD_DEFAULT_FLUSH_MS = 300, STATSD_DEFAULT_FLUSH_BYTES = 1432, STATSD_MAX_BYTES = 65507 };
enum { RUNNING, STOPPING, STOPPED };

/* One packet: lines, each followed by '\n' (Go's buffer); the last '\n' is not sent. */
struct packet {
	struct packet *next; /* in the spare list */
	size_t len;
	char data[];
};

typedef struct statsd_core {
	pthread_mutex_t mu;
	pthread_cond_t idle;   /* broadcast when inflight drops to 0 and when state becomes STOPPED */
	struct packet *cur;    /* being filled; never NULL */
	struct packet *spare;  /* sent packets, ready for reuse */
	unsigned inflight;     /* packets being sent outside the lock */
	atomic_int state;      /* written under mu; read without it only as a hint */
	int fd;
	int final_err;	       /* errno of the final flush, 0 when it went fine */
	int last_errno;
	unsigned long long send_errors;
	size_t flush_bytes;
	size_t prefix_len;     /* with its dot; 0 without a prefix */
	char prefix[];	       /* "prefix." */
} statsd_core;

struct statsd {
	statsd_core *core;
	scoped_worker *flusher; /* NULL when flush_ms < 0 */
};

/* --- checks and formatting -------------------------------------------------------------- */

/* Bytes that would break a line: statsd splits on '\n', ':' and '|'; '@' and '#' start a
 * sample rate and tags. Control characters are refused too. */
static inline bool bad_name_char(unsigned char c)
{
	return c < 0x20 || c == 0x7f || c == ':' || c == '|' || c == '@' || c == '#';
}

static inline bool bad_value_char(unsigned char c)
{
	return c < 0x20 || c == 0x7f || c == ':' || c == '|';
}

/* Length of a valid name, or 0 (empty or a bad byte). */
static size_t name_len(const char *name)
{
	size_t n = 0;
	for (; name[n]; n++)
		if (bad_name_char((unsigned char)name[n]))
			return 0;
	return n;
}

static size_t value_len(const char *value)
{
	size_t n = 0;
	for (; value[n]; n++)
		if (bad_value_char((unsigned char)value[n]))
			return 0;
	return n;
}

/* Decimal digits of v, written backwards ending at end; returns the first byte. */
static char *format_ll(char *end, long long v)
{
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	char *p = end;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	return p;
}

/* "|@" and rate with six decimals, rounded half to even on the exact value: what Go's
 * strconv.AppendFloat(float64(rate), 'f', 6, 32) prints. A float's 24-bit mantissa times 1e6
 * is exact in a double, so the rounding below is exact too. 0 < rate < 1 here. */
static size_t format_rate(char *out, float rate)
{
	double scaled = (double)rate * 1e6;
	unsigned long long n = (unsigned long long)scaled;
	double frac = scaled - (double)n;
	if (frac > 0.5 || (frac == 0.5 && (n & 1)))
		n++;
	char tmp[32];
	char *end = tmp + sizeof tmp;
	char *p = end;
	for (int i = 0; i < 6; i++) {
		*--p = (char)('0' + n % 10);
		n /= 10;
	}
	*--p = '.';
	p = format_ll(p, (long long)n);
	out[0] = '|';
	out[1] = '@';
	size_t len = (size_t)(end - p);
	memcpy(out + 2, p, len);
	return len + 2;
}

/* A per-thread xorshift64* generator: sampling must not take a lock. */
static _Thread_local uint64_t rng_state;
static atomic_ullong rng_seq;

static float random01(void)
{
	uint64_t x = rng_state;
	if (x == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&rng_state ^
		    (atomic_fetch_add(&rng_seq, 1) * 0x9E3779B97F4A7C15ULL);
		if (x == 0)
			x = 0x2545F4914F6CDD1DULL;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	/* 24 random bits: a float in [0, 1) with the resolution of Go's rand.Float32 */
	return (float)((x * 0x2545F4914F6CDD1DULL) >> 40) * (1.0f / 16777216.0f);
}

/* --- the core: buffer and socket -------------------------------------------------------- */

static void core_free(statsd_core *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->cur);
	for (struct packet *p = c->spare, *next; p; p = next) {
		next = p->next;
		free(p);
	}
	pthread_cond_destroy(&c->idle);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

SCOPED_DEFINE(statsd_core, core_free)

static struct packet *packet_new(size_t capacity)
{
	struct packet *p = malloc(sizeof *p + capacity);
	if (p) {
		p->next = NULL;
		p->len = 0;
	}
	return p;
}

/* Called with mu held. */
static void note_send_error(statsd_core *c, int err)
{
	c->send_errors++;
	c->last_errno = err;
}

/* Sends data as one datagram; 0, or -1 with errno. */
static int send_datagram(int fd, const char *data, size_t len)
{
	for (;;) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n >= 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/* Called with mu held and cur not empty. Hands back the full packet, to be sent without the
 * lock and then given to packet_done(); cur is a fresh one. When no spare can be made, sends
 * cur right here under the lock and returns NULL (*err: its errno, or 0). */
static struct packet *take_packet(statsd_core *c, int *err)
{
	struct packet *fresh = c->spare;
	if (fresh)
		c->spare = fresh->next;
	else
		fresh = packet_new(c->flush_bytes);
	*err = 0;
	if (!fresh) {
		if (send_datagram(c->fd, c->cur->data, c->cur->len - 1) < 0) {
			*err = errno;
			note_send_error(c, errno);
		}
		c->cur->len = 0;
		return NULL;
	}
	struct packet *full = c->cur;
	fresh->len = 0;
	c->cur = fresh;
	c->inflight++;
	return full;
}

/* Sends a packet from take_packet() outside the lock; takes mu back. 0, or its errno. */
static int send_packet(statsd_core *c, int fd, struct packet *p)
{
	int err = 0;
	if (send_datagram(fd, p->data, p->len - 1) < 0)
		err = errno;
	pthread_mutex_lock(&c->mu);
	if (err)
		note_send_error(c, err);
	p->len = 0;
	p->next = c->spare;
	c->spare = p;
	if (--c->inflight == 0 && atomic_load_explicit(&c->state, memory_order_relaxed) != RUNNING)
		pthread_cond_broadcast(&c->idle);
	return err;
}

/* Sends what is buffered; 0, or -1 with the send's errno. */
static int core_flush(statsd_core *c)
{
	int err = 0;
	pthread_mutex_lock(&c->mu);
	if (c->cur->len > 0) {
		int fd = c->fd;
		struct packet *full = take_packet(c, &err);
		if (full) {
			pthread_mutex_unlock(&c->mu);
			err = send_packet(c, fd, full);
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* The flusher: runs on the worker thread, touches only the core. */
static void flusher_tick(void *ctx)
{
	core_flush(ctx);
}

static void flusher_final(void *ctx)
{
	statsd_core *c = ctx;
	int err = core_flush(c) < 0 ? errno : 0;
	pthread_mutex_lock(&c->mu);
	c->final_err = err;
	pthread_mutex_unlock(&c->mu);
}

/* Adds one line (len bytes, no '\n'), following Go's BufferedSender.Send. */
static int core_add(statsd_core *c, const char *line, size_t len)
{
	size_t need = len + 1; /* with its '\n' */
	int err = 0;
	pthread_mutex_lock(&c->mu);
	if (atomic_load_explicit(&c->state, memory_order_relaxed) != RUNNING) {
		pthread_mutex_unlock(&c->mu);
		errno = EPIPE;
		return -1;
	}
	int fd = c->fd;
	struct packet *full = NULL;
	if (c->cur->len > 0 && c->cur->len + need >= c->flush_bytes)
		full = take_packet(c, &err); /* the line would reach flush_bytes: send first */
	if (need < c->flush_bytes) {
		memcpy(c->cur->data + c->cur->len, line, len);
		c->cur->data[c->cur->len + len] = '\n';
		c->cur->len += need;
		if (full) {
			pthread_mutex_unlock(&c->mu);
			send_packet(c, fd, full); /* counted in send_errors; this line is buffered */
		}
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	/* Too long for any packet: it goes out alone, now. */
	c->inflight++;
	pthread_mutex_unlock(&c->mu);
	if (full) {
		send_packet(c, fd, full);
		pthread_mutex_unlock(&c->mu);
	}
	err = send_datagram(fd, line, len) < 0 ? errno : 0;
	pthread_mutex_lock(&c->mu);
	if (err)
		note_send_error(c, err);
	if (--c->inflight == 0 && atomic_load_explicit(&c->state, memory_order_relaxed) != RUNNING)
		pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->mu);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* --- metrics ---------------------------------------------------------------------------- */

enum { LINE_STACK = 256 };

/* Formats [prefix.]name:value|type[|@rate] and adds it. value is text (sval) or ival. */
static int emit(statsd *s, const char *name, long long ival, const char *sval, const char *type,
		size_t type_len, float rate)
{
	if (!s || !name || rate != rate) { /* rate != rate: NaN */
		errno = EINVAL;
		return -1;
	}
	size_t nlen = name_len(name);
	size_t vlen;
	char digits[24];
	const char *vtext;
	if (sval) {
		vlen = value_len(sval);
		vtext = sval;
	} else {
		vtext = format_ll(digits + sizeof digits, ival);
		vlen = (size_t)(digits + sizeof digits - vtext);
	}
	if (nlen == 0 || vlen == 0) {
		errno = EINVAL;
		return -1;
	}
	statsd_core *c = s->core;
	if (atomic_load_explicit(&c->state, memory_order_relaxed) != RUNNING) {
		errno = EPIPE;
		return -1;
	}
	char ratebuf[40];
	size_t rlen = 0;
	if (rate < 1.0f) {
		if (!(random01() < rate))
			return 0; /* sampled out */
		rlen = format_rate(ratebuf, rate);
	}

	size_t len = c->prefix_len + nlen + 1 + vlen + type_len + rlen;
	char stack[LINE_STACK];
	scoped_free char *heap = NULL;
	char *line = stack;
	if (len > sizeof stack) {
		heap = malloc(len);
		if (!heap)
			return -1;
		line = heap;
	}
	char *p = line;
	memcpy(p, c->prefix, c->prefix_len);
	p += c->prefix_len;
	memcpy(p, name, nlen);
	p += nlen;
	*p++ = ':';
	memcpy(p, vtext, vlen);
	p += vlen;
	memcpy(p, type, type_len);
	p += type_len;
	memcpy(p, ratebuf, rlen);
	return core_add(c, line, len);
}

int statsd_count(statsd *s, const char *name, long long value, float rate)
{
	return emit(s, name, value, NULL, "|c", 2, rate);
}

int statsd_gauge(statsd *s, const char *name, long long value, float rate)
{
	return emit(s, name, value, NULL, "|g", 2, rate);
}

int statsd_timing_ms(statsd *s, const char *name, long long value, float rate)
{
	return emit(s, name, value, NULL, "|ms", 3, rate);
}

int statsd_set(statsd *s, const char *name, const char *value, float rate)
{
	if (!value) {
		errno = EINVAL;
		return -1;
	}
	return emit(s, name, 0, value, "|s", 2, rate);
}

/* --- lifecycle -------------------------------------------------------------------------- */

int statsd_flush(statsd *s)
{
	if (!s) {
		errno = EINVAL;
		return -1;
	}
	if (atomic_load_explicit(&s->core->state, memory_order_relaxed) != RUNNING) {
		errno = EPIPE;
		return -1;
	}
	return core_flush(s->core);
}

int statsd_stop(statsd *s)
{
	if (!s) {
		errno = EINVAL;
		return -1;
	}
	statsd_core *c = s->core;
	pthread_mutex_lock(&c->mu);
	while (atomic_load_explicit(&c->state, memory_order_relaxed) == STOPPING)
		pthread_cond_wait(&c->idle, &c->mu);
	if (atomic_load_explicit(&c->state, memory_order_relaxed) == STOPPED) {
		pthread_mutex_unlock(&c->mu);
		return 0;
	}
	atomic_store_explicit(&c->state, STOPPING, memory_order_relaxed); /* sends now fail */
	pthread_mutex_unlock(&c->mu);

	if (s->flusher)
		scoped_worker_stop(s->flusher); /* its on_stop is the final flush */
	else
		flusher_final(c);

	pthread_mutex_lock(&c->mu);
	while (c->inflight > 0)
		pthread_cond_wait(&c->idle, &c->mu);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	int err = c->final_err;
	atomic_store_explicit(&c->state, STOPPED, memory_order_relaxed);
	pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->mu);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

void statsd_close(statsd *s)
{
	if (!s)
		return;
	int saved = errno;
	statsd_stop(s);
	scoped_worker_close(s->flusher);
	core_free(s->core);
	free(s);
	errno = saved;
}

unsigned long long statsd_send_errors(statsd *s, int *last_errno)
{
	if (!s) {
		if (last_errno)
			*last_errno = 0;
		return 0;
	}
	pthread_mutex_lock(&s->core->mu);
	unsigned long long n = s->core->send_errors;
	if (last_errno)
		*last_errno = s->core->last_errno;
	pthread_mutex_unlock(&s->core->mu);
	return n;
}

/* --- opening ---------------------------------------------------------------------------- */

static int gai_errno(int rc)
{
	switch (rc) {
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY:
#endif
		return ENXIO;
	case EAI_AGAIN:
		return EAGAIN;
	case EAI_FAIL:
		return EIO;
	case EAI_MEMORY:
		return ENOMEM;
	case EAI_SYSTEM:
		return errno ? errno : EIO;
	default:
		return EINVAL;
	}
}

/* Splits "host:port" or "[v6]:port" into host (NUL-terminated copy) and a numeric port. */
static int parse_addr(const char *addr, char *host, size_t host_size, char *port, bool *v6)
{
	const char *h = addr, *h_end, *colon;
	*v6 = false;
	if (addr[0] == '[') {
		h = addr + 1;
		h_end = strchr(h, ']');
		if (!h_end || h_end[1] != ':')
			return -1;
		colon = h_end + 1;
		*v6 = true;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
			return -1; /* no port, or an IPv6 literal without brackets */
		h_end = colon;
	}
	size_t hlen = (size_t)(h_end - h);
	if (hlen == 0 || hlen >= host_size)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	const char *pp = colon + 1;
	size_t plen = strlen(pp);
	if (plen == 0 || plen > 5 || strspn(pp, "0123456789") != plen)
		return -1;
	long val = strtol(pp, NULL, 10);
	if (val < 1 || val > 65535)
		return -1;
	memcpy(port, pp, plen + 1);
	return 0;
}

/* A connected UDP socket, IPv4 preferred as Go's ResolveUDPAddr does; -1 with errno. */
static int connect_udp(const char *addr)
{
	char host[256], port[8];
	bool v6;
	struct in6_addr a6;
	if (parse_addr(addr, host, sizeof host, port, &v6) < 0 ||
	    (v6 && inet_pton(AF_INET6, host, &a6) != 1)) {
		errno = EINVAL;
		return -1;
	}
	struct addrinfo hints = { .ai_family = v6 ? AF_INET6 : AF_UNSPEC,
				  .ai_socktype = SOCK_DGRAM,
				  .ai_protocol = IPPROTO_UDP,
				  .ai_flags = AI_NUMERICSERV | (v6 ? AI_NUMERICHOST : 0) };
	struct addrinfo *res = NULL;
	errno = 0;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		errno = gai_errno(rc);
		return -1;
	}
	int err = ENXIO;
	int fd = -1;
	for (int pass = 0; pass < 2 && fd < 0; pass++) {
		for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
			if ((ai->ai_family == AF_INET) != (pass == 0))
				continue;
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd < 0) {
				err = errno;
				continue;
			}
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
				err = errno;
				close(fd);
				fd = -1;
			}
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		errno = err;
	return fd;
}

statsd *statsd_open(const statsd_config *cfg)
{
	if (!cfg || !cfg->addr || cfg->flush_bytes < 0 || cfg->flush_bytes > STATSD_MAX_BYTES) {
		errno = EINVAL;
		return NULL;
	}
	size_t plen = 0;
	if (cfg->prefix) {
		plen = name_len(cfg->prefix);
		if (plen == 0) {
			errno = EINVAL;
			return NULL;
		}
	}
	size_t flush_bytes = cfg->flush_bytes ? (size_t)cfg->flush_bytes : STATSD_DEFAULT_FLUSH_BYTES;
	int flush_ms = cfg->flush_ms ? cfg->flush_ms : STATSD_DEFAULT_FLUSH_MS;

	scoped_fd int fd = connect_udp(cfg->addr);
	if (fd < 0)
		return NULL;

	scoped(statsd_core) c = calloc(1, sizeof *c + plen + 2);
	if (!c)
		return NULL;
	c->fd = -1;
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
#ifdef PTHREAD_MUTEX_ADAPTIVE_NP
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP); /* spin briefly: short holds */
#endif
	int rc = pthread_mutex_init(&c->mu, &ma);
	pthread_mutexattr_destroy(&ma);
	if (rc == 0) {
		rc = pthread_cond_init(&c->idle, NULL);
		if (rc != 0)
			pthread_mutex_destroy(&c->mu);
	}
	if (rc != 0) {
		free(scoped_take(c)); /* nothing else was set up */
		errno = rc;
		return NULL;
	}
	c->cur = packet_new(flush_bytes);
	if (!c->cur)
		return NULL;
	c->flush_bytes = flush_bytes;
	if (plen) {
		memcpy(c->prefix, cfg->prefix, plen);
		c->prefix[plen] = '.';
		c->prefix_len = plen + 1;
	}
	atomic_init(&c->state, RUNNING);
	c->fd = scoped_take_fd(fd); /* from here core_free closes it */

	scoped_free statsd *s = malloc(sizeof *s);
	if (!s)
		return NULL;
	s->flusher = NULL;
	if (flush_ms > 0) {
		s->flusher = scoped_worker_start(&(scoped_worker_config){ .name = "statsd",
									  .period_ms = (unsigned)flush_ms,
									  .tick = flusher_tick,
									  .on_stop = flusher_final,
									  .ctx = c });
		if (!s->flusher)
			return NULL;
	}
	s->core = scoped_take(c);
	return scoped_take(s);
}
