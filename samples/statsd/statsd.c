/* statsd.c - the buffered statsd client: see statsd.h for the contract.
 *
 * Two objects, as go-cache's wrapped return has it: the caller holds `statsd` (the wrapper);
 * the flusher thread holds only `statsd_core` (the inner object: socket, buffers, locks). The
 * wrapper's close stops the flusher first, so nothing else points at the core when it is
 * freed.
 *
 * A metric is checked and its number formatted without a lock, then written straight into the
 * packet its thread is filling, under that packet's shard mutex. A full packet joins the ready
 * queue and the thread that filled it sends it at once, with no lock held. (Go hands it to a
 * goroutine instead; measured here, on two busy cores, the wake-ups cost more than the send.)
 * The flusher sends what the period found. `inflight` counts sends in progress, so that stop
 * closes the socket only after the last one.
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
	struct packet *next; /* in the spare or the ready list */
	size_t len;
	char data[];
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
/* initial-exec: the sample library is linked statically; under -fPIC the default model would
 * call __tls_get_addr on every metric. */
#define STATSD_TLS _Thread_local __attribute__((tls_model("initial-exec")))

static STATSD_TLS uint64_t rng_state;
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

/* --- the core: buffers and socket ------------------------------------------------------- */

/* Lines are buffered per shard, each shard with its own mutex, and a thread always uses the
 * same shard: two threads sending at once then never fight over one lock or one cache line.
 * Each packet holds lines of one shard: for each thread's lines, the packets Go would make. */
enum { SHARDS = 8 };

struct shard {
	_Alignas(64) pthread_mutex_t mu;
	struct packet *cur; /* being filled; NULL until first used */
};

typedef struct statsd_core {
	struct shard shards[SHARDS];
	pthread_mutex_t mu;    /* the rest: spare, inflight, fd closing, errors; after a shard's */
	pthread_cond_t idle;   /* broadcast when inflight drops to 0 and when state becomes STOPPED */
	struct packet *spare;  /* sent packets, ready for reuse */
	struct packet *ready, **ready_end; /* full packets waiting to be sent, oldest first */
	struct packet *sending; /* being sent by some thread, without a lock */
	unsigned ready_count;
	unsigned inflight;     /* sends outside the locks */
	atomic_int state;      /* written under mu; read under a shard's mu, or as a hint */
	int fd;
	int final_err;	       /* errno of the final flush, 0 when it went fine */
	int last_errno;
	unsigned long long send_errors;
	size_t flush_bytes;
	size_t prefix_len;     /* with its dot; 0 without a prefix */
	struct statsd_core *live_prev, *live_next; /* every open core, for fork() */
	char prefix[];	       /* "prefix." */
} statsd_core;

struct statsd {
	statsd_core *core;
	scoped_worker *flusher; /* NULL when flush_ms < 0 */
};

static STATSD_TLS unsigned my_shard_plus1; /* 0: not chosen yet */
static atomic_uint shard_seq;

static struct shard *shard_of_this_thread(statsd_core *c)
{
	if (!my_shard_plus1)
		my_shard_plus1 = atomic_fetch_add_explicit(&shard_seq, 1, memory_order_relaxed) % SHARDS + 1;
	return &c->shards[my_shard_plus1 - 1];
}

/* --- fork ------------------------------------------------------------------------------
 * The live list lets fork() hand the child consistent clients: before fork every open core's
 * locks are taken (shards first, then mu, the order used everywhere), so no other thread is
 * half way through a buffer. In the child an inherited client is stopped: its lines are the
 * parent's, which the parent sends, so the child neither sends them nor accepts new ones
 * (EPIPE); closing it just frees. The child opens its own client if it wants one.
 */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static statsd_core *live_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void before_fork(void)
{
	pthread_mutex_lock(&live_mu);
	for (statsd_core *c = live_head; c; c = c->live_next) {
		for (int i = 0; i < SHARDS; i++)
			pthread_mutex_lock(&c->shards[i].mu);
		pthread_mutex_lock(&c->mu);
	}
}

static void after_fork_parent(void)
{
	for (statsd_core *c = live_head; c; c = c->live_next) {
		pthread_mutex_unlock(&c->mu);
		for (int i = SHARDS; i-- > 0;)
			pthread_mutex_unlock(&c->shards[i].mu);
	}
	pthread_mutex_unlock(&live_mu);
}

static void after_fork_child(void)
{
	for (statsd_core *c = live_head; c; c = c->live_next) {
		atomic_store_explicit(&c->state, STOPPED, memory_order_relaxed);
		c->inflight = 0; /* the threads that were sending are not in this process */
		pthread_cond_init(&c->idle, NULL); /* a waiter's thread is gone too */
		pthread_mutex_unlock(&c->mu);
		for (int i = SHARDS; i-- > 0;)
			pthread_mutex_unlock(&c->shards[i].mu);
	}
	pthread_mutex_unlock(&live_mu);
}

static void register_atfork(void)
{
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

static void live_add(statsd_core *c)
{
	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&live_mu);
	c->live_prev = NULL;
	c->live_next = live_head;
	if (live_head)
		live_head->live_prev = c;
	live_head = c;
	pthread_mutex_unlock(&live_mu);
}

static void live_remove(statsd_core *c)
{
	pthread_mutex_lock(&live_mu);
	if (c->live_prev)
		c->live_prev->live_next = c->live_next;
	else
		live_head = c->live_next;
	if (c->live_next)
		c->live_next->live_prev = c->live_prev;
	pthread_mutex_unlock(&live_mu);
}

static void core_free(statsd_core *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	for (int i = 0; i < SHARDS; i++) {
		free(c->shards[i].cur);
		pthread_mutex_destroy(&c->shards[i].mu);
	}
	struct packet *lists[] = { c->spare, c->ready, c->sending };
	for (int i = 0; i < 3; i++)
		for (struct packet *p = lists[i], *next; p; p = next) {
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

/* Called with c->mu held. */
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

/* Called with the shard's mu held and sh->cur not empty: queues sh->cur to be sent and gives
 * the shard a fresh packet. Returns how many packets wait. When no fresh packet can be made,
 * sends sh->cur right here instead and returns 0; a failure of that send is counted in
 * send_errors and, when err is not NULL, left in *err. */
static unsigned queue_packet(statsd_core *c, struct shard *sh, int *err)
{
	pthread_mutex_lock(&c->mu);
	struct packet *fresh = c->spare;
	if (fresh)
		c->spare = fresh->next;
	else
		fresh = packet_new(c->flush_bytes);
	if (!fresh) {
		if (send_datagram(c->fd, sh->cur->data, sh->cur->len - 1) < 0) {
			note_send_error(c, errno);
			if (err)
				*err = errno;
		}
		pthread_mutex_unlock(&c->mu);
		sh->cur->len = 0;
		return 0;
	}
	struct packet *full = sh->cur;
	full->next = NULL;
	*c->ready_end = full;
	c->ready_end = &full->next;
	unsigned waiting = ++c->ready_count;
	pthread_mutex_unlock(&c->mu);
	fresh->len = 0;
	sh->cur = fresh;
	return waiting;
}

/* Ends a send counted in inflight: records err, recycles p (when not NULL). */
static void send_done(statsd_core *c, struct packet *p, int err)
{
	pthread_mutex_lock(&c->mu);
	if (err)
		note_send_error(c, err);
	if (p) {
		for (struct packet **pp = &c->sending; *pp; pp = &(*pp)->next)
			if (*pp == p) {
				*pp = p->next;
				break;
			}
		p->len = 0;
		p->next = c->spare;
		c->spare = p;
	}
	if (--c->inflight == 0 && atomic_load_explicit(&c->state, memory_order_relaxed) != RUNNING)
		pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->mu);
}

/* Sends every queued packet, oldest first, without holding a lock while sending. Returns 0 or
 * the first failed send's errno. Safe from several threads at once. */
static int send_ready(statsd_core *c)
{
	int first = 0;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		struct packet *p = c->ready;
		if (!p) {
			pthread_mutex_unlock(&c->mu);
			return first;
		}
		c->ready = p->next;
		if (!c->ready)
			c->ready_end = &c->ready;
		c->ready_count--;
		p->next = c->sending;
		c->sending = p;
		c->inflight++; /* the socket stays open until this send is done */
		int fd = c->fd;
		pthread_mutex_unlock(&c->mu);
		int err = send_datagram(fd, p->data, p->len - 1) < 0 ? errno : 0; /* no last '\n' */
		send_done(c, p, err);
		if (err && !first)
			first = err;
	}
}

/* Queues what every shard buffered, then sends all that waits; 0, or -1 with the first failed
 * send's errno. */
static int core_flush(statsd_core *c)
{
	int first = 0;
	for (int i = 0; i < SHARDS; i++) {
		struct shard *sh = &c->shards[i];
		pthread_mutex_lock(&sh->mu);
		if (sh->cur && sh->cur->len > 0)
			queue_packet(c, sh, &first);
		pthread_mutex_unlock(&sh->mu);
	}
	int err = send_ready(c);
	if (!err)
		err = first;
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* The flusher: runs on the worker thread and touches only the core. */
static void flusher_tick(void *ctx)
{
	core_flush(ctx);
}

static void flusher_final(void *ctx)
{
	statsd_core *c = ctx;
	if (atomic_load_explicit(&c->state, memory_order_relaxed) == STOPPED)
		return; /* inherited across fork(): the parent sends these lines */
	int err = core_flush(c) < 0 ? errno : 0;
	pthread_mutex_lock(&c->mu);
	c->final_err = err;
	pthread_mutex_unlock(&c->mu);
}

/* After a caller queued a full packet: it sends it now (and any other waiting), as Go's
 * sender does before adding the line that would overflow. Failures are counted in
 * send_errors: the caller's own line is buffered, so its call succeeds. */
static void after_queue(statsd_core *c, unsigned waiting)
{
	if (waiting > 0)
		send_ready(c);
}

/* --- metrics ---------------------------------------------------------------------------- */

/* The pieces of one line: prefix, name, ':', value, type, rate. */
struct line {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
	const char *type;
	size_t type_len;
	const char *rate;
	size_t rate_len;
	size_t len;
};

static inline void write_line(char *p, const statsd_core *c, const struct line *l)
{
	memcpy(p, c->prefix, c->prefix_len);
	p += c->prefix_len;
	memcpy(p, l->name, l->name_len);
	p += l->name_len;
	*p++ = ':';
	memcpy(p, l->value, l->value_len);
	p += l->value_len;
	memcpy(p, l->type, l->type_len);
	p += l->type_len;
	memcpy(p, l->rate, l->rate_len);
}

/* A line too long for any packet (len + 1 >= flush_bytes): what is buffered goes first, then
 * the line alone, now, from this thread; its send's errno is the caller's. */
static int send_alone(statsd_core *c, struct shard *sh, const struct line *l)
{
	char stack[512];
	scoped_free char *heap = NULL;
	char *buf = stack;
	if (l->len > sizeof stack) {
		heap = malloc(l->len);
		if (!heap)
			return -1;
		buf = heap;
	}
	write_line(buf, c, l);

	pthread_mutex_lock(&sh->mu);
	if (atomic_load_explicit(&c->state, memory_order_relaxed) != RUNNING) {
		pthread_mutex_unlock(&sh->mu);
		errno = EPIPE;
		return -1;
	}
	if (sh->cur && sh->cur->len > 0)
		queue_packet(c, sh, NULL);
	pthread_mutex_lock(&c->mu);
	int fd = c->fd;
	c->inflight++; /* the socket stays open until this send is done */
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_unlock(&sh->mu);
	send_ready(c); /* the earlier lines first */
	int err = send_datagram(fd, buf, l->len) < 0 ? errno : 0;
	send_done(c, NULL, err);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* Adds one line to this thread's shard, following Go's BufferedSender.Send: when the line
 * (with its '\n') would take the packet to flush_bytes or more, the packet goes first. */
static int add_line(statsd_core *c, const struct line *l)
{
	struct shard *sh = shard_of_this_thread(c);
	size_t need = l->len + 1;
	if (need >= c->flush_bytes)
		return send_alone(c, sh, l);
	unsigned waiting = 0;
	pthread_mutex_lock(&sh->mu);
	if (atomic_load_explicit(&c->state, memory_order_relaxed) != RUNNING) {
		pthread_mutex_unlock(&sh->mu);
		errno = EPIPE;
		return -1;
	}
	struct packet *cur = sh->cur;
	if (!cur) {
		cur = sh->cur = packet_new(c->flush_bytes);
		if (!cur) {
			pthread_mutex_unlock(&sh->mu);
			return -1;
		}
	} else if (cur->len > 0 && cur->len + need >= c->flush_bytes) {
		waiting = queue_packet(c, sh, NULL);
		cur = sh->cur;
	}
	write_line(cur->data + cur->len, c, l);
	cur->data[cur->len + l->len] = '\n';
	cur->len += need;
	pthread_mutex_unlock(&sh->mu);
	after_queue(c, waiting);
	return 0;
}

/* Checks and adds [prefix.]name:value|type[|@rate]; the value is text (sval) or ival. */
static int emit(statsd *s, const char *name, long long ival, const char *sval, const char *type,
		size_t type_len, float rate)
{
	if (!s || !name || rate != rate) { /* rate != rate: NaN */
		errno = EINVAL;
		return -1;
	}
	char digits[24];
	char ratebuf[16];
	struct line l = { .name = name, .name_len = name_len(name), .type = type, .type_len = type_len };
	if (sval) {
		l.value = sval;
		l.value_len = value_len(sval);
	} else {
		l.value = format_ll(digits + sizeof digits, ival);
		l.value_len = (size_t)(digits + sizeof digits - l.value);
	}
	if (l.name_len == 0 || l.value_len == 0) {
		errno = EINVAL;
		return -1;
	}
	statsd_core *c = s->core;
	if (atomic_load_explicit(&c->state, memory_order_relaxed) != RUNNING) {
		errno = EPIPE; /* checked again under the lock: this one makes it deterministic */
		return -1;
	}
	if (rate < 1.0f) {
		if (!(random01() < rate))
			return 0; /* sampled out */
		l.rate = ratebuf;
		l.rate_len = format_rate(ratebuf, rate);
	} else {
		l.rate = "";
	}
	l.len = c->prefix_len + l.name_len + 1 + l.value_len + l.type_len + l.rate_len;
	return add_line(c, &l);
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
	live_remove(s->core);
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

/* A core with its locks ready and room for a prefix of plen bytes and its dot; NULL with errno
 * and nothing left behind on failure. */
static statsd_core *core_new(size_t plen)
{
	size_t size = (sizeof(statsd_core) + plen + 1 + 63) / 64 * 64; /* aligned_alloc wants this */
	statsd_core *c = aligned_alloc(64, size);
	if (!c)
		return NULL;
	memset(c, 0, size);
	c->fd = -1;
	c->ready_end = &c->ready;
	atomic_init(&c->state, RUNNING);
	pthread_mutexattr_t ma;
	int rc = pthread_mutexattr_init(&ma);
	if (rc != 0)
		goto fail_free;
#ifdef PTHREAD_MUTEX_ADAPTIVE_NP
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP); /* spin briefly: short holds */
#endif
	int shards = 0;
	for (; shards < SHARDS; shards++)
		if ((rc = pthread_mutex_init(&c->shards[shards].mu, &ma)) != 0)
			goto fail_shards;
	if ((rc = pthread_mutex_init(&c->mu, &ma)) != 0)
		goto fail_shards;
	if ((rc = pthread_cond_init(&c->idle, NULL)) != 0)
		goto fail_mu;
	pthread_mutexattr_destroy(&ma);
	return c;

fail_mu:
	pthread_mutex_destroy(&c->mu);
fail_shards:
	while (shards-- > 0)
		pthread_mutex_destroy(&c->shards[shards].mu);
	pthread_mutexattr_destroy(&ma);
fail_free:
	free(c);
	errno = rc;
	return NULL;
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

	scoped(statsd_core) c = core_new(plen);
	if (!c)
		return NULL;
	c->flush_bytes = flush_bytes;
	if (plen) {
		memcpy(c->prefix, cfg->prefix, plen);
		c->prefix[plen] = '.';
		c->prefix_len = plen + 1;
	}
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
	live_add(s->core);
	return scoped_take(s);
}
