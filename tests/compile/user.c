/* User code that includes <scoped.h> and uses every macro: scripts/matrix.sh compiles it with
 * each compiler and standard under -Wall -Wextra -Wpedantic -Werror, with no feature macros
 * (so a strict -std=c11 sees only ISO C plus what <pthread.h> always declares), and as C++. */
#include <scoped.h>
#include <string.h>

typedef struct conn conn;
void conn_close(conn *c);
SCOPED_ALLOC(conn_close) conn *conn_open(const char *addr);
SCOPED_DEFINE(conn, conn_close)

typedef struct { int *hits; } counter;
static void counter_clear(counter *c) { ++*c->hits; }
SCOPED_DEFINE_CLEAR(counter, counter_clear)

typedef struct { int held; } spin;
static void spin_lock(spin *s) { s->held = 1; }
static void spin_unlock(spin *s) { s->held = 0; }
SCOPED_DEFINE_GUARD(spin, spin, spin_lock, spin_unlock)

static void note(char *p) { (void)p; }
static void tick(void *ctx) { (void)ctx; }
static void body(scoped_stop *stop, void *arg)
{
	(void)arg;
	while (!scoped_stop_sleep(stop, 10))
		;
}

conn *open_checked(const char *addr);
conn *open_checked(const char *addr)
{
	scoped(conn) c = conn_open(addr);
	if (!c)
		return NULL;
	scoped_return(c);
}

int use_everything(const char *path, pthread_mutex_t *m, spin *s, int *hits);
int use_everything(const char *path, pthread_mutex_t *m, spin *s, int *hits)
{
	scoped(FILE) f = fopen(path, "r");
	scoped_free char *buf = (char *)malloc(16);
	scoped_fd int fd = -1;
	scoped_auto(counter) c = { hits };
	scoped_lock(m);
	scoped_guard(spin, s);
	scoped_defer(note, buf);
	scoped_with_trylock(m) { return 1; }
	scoped_with_lock(m) { break; }
	scoped_with_guard(spin, s) { (void)c; }
	scoped_worker_config cfg = { "user", 100, tick, NULL, NULL };
	scoped(scoped_worker) w = scoped_worker_start(&cfg);
	scoped(scoped_thread) t = scoped_thread_start("user", body, NULL);
	if (!f || !w || !t)
		return -1;
	scoped_worker_wake(w);
	FILE *g = scoped_take(f);
	fclose(g);
	int x = scoped_take_fd(fd);
	scoped_clear(&buf, free);
	return x + (int)scoped_live_count();
}
