/* samples/basics - a short tour of the macro layer. Each resource says when it is closed, so
 * the output shows what runs at scope exit, and in which order. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <scoped.h>

/* A resource type of our own, registered once. */
typedef struct res {
	char name[16];
} res;

static void res_close(res *r)
{
	printf("    close %s\n", r->name);
	free(r);
}
SCOPED_DEFINE(res, res_close)

SCOPED_ALLOC(res_close) static res *res_open(const char *name)
{
	res *r = malloc(sizeof *r);
	if (!r)
		return NULL;
	snprintf(r->name, sizeof r->name, "%s", name);
	printf("    open  %s\n", name);
	return r;
}

static int early_return(bool fail)
{
	scoped(res) a = res_open("a");
	scoped(res) b = res_open("b");
	if (!a || !b || fail) {
		printf("    return -1 (early)\n");
		return -1;
	}
	printf("    return 0\n");
	return 0;
}

static res *open_pair_keep_first(void)
{
	scoped(res) first = res_open("first");
	scoped(res) second = res_open("second");
	if (!first || !second)
		return NULL;
	printf("    move 'first' out to the caller\n");
	scoped_return(first);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static bool mutex_is_free(void)
{
	if (pthread_mutex_trylock(&mu) != 0)
		return false;
	pthread_mutex_unlock(&mu);
	return true;
}

static void say(const char *what)
{
	printf("    deferred: %s\n", what);
}

int main(void)
{
	printf("1. Leaving a scope closes what it declared, newest first:\n");
	{
		scoped(res) a = res_open("a");
		scoped(res) b = res_open("b");
		(void)a, (void)b;
		printf("    end of block\n");
	}

	printf("\n2. Every way out runs the cleanups: return ...\n");
	early_return(true);
	printf("   ... break and continue, once per iteration:\n");
	for (int i = 0; i < 3; i++) {
		char name[8];
		snprintf(name, sizeof name, "loop%d", i);
		scoped(res) r = res_open(name);
		(void)r;
		if (i == 0) {
			printf("    continue\n");
			continue;
		}
		if (i == 1) {
			printf("    break\n");
			break;
		}
	}

	printf("\n3. scoped_take / scoped_return move ownership: nothing is closed twice:\n");
	{
		scoped(res) kept = open_pair_keep_first();
		printf("    caller now owns '%s'\n", kept ? kept->name : "(none)");
	}

	printf("\n4. Memory, descriptors, FILE, and a deferred call:\n");
	{
		scoped_free char *msg = strdup("heap string");
		scoped_fd int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		scoped(FILE) f = fopen("/dev/null", "w");
		scoped_defer(say, "runs first, as the newest cleanup");
		printf("    have %s, fd %d and a FILE: all released at the brace\n",
		       msg ? msg : "(no memory)", fd);
		(void)f;
	}

	printf("\n5. Locks: held until scope exit, or for one block:\n");
	{
		scoped_lock(&mu);
		printf("    inside scoped_lock: mutex free? %s\n", mutex_is_free() ? "yes" : "no");
	}
	printf("    after the scope:     mutex free? %s\n", mutex_is_free() ? "yes" : "no");
	scoped_with_lock(&mu) {
		printf("    inside scoped_with_lock: mutex free? %s; break\n",
		       mutex_is_free() ? "yes" : "no");
		break;
	}
	printf("    after the block:         mutex free? %s\n", mutex_is_free() ? "yes" : "no");
	return 0;
}
