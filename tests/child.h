/* tests/child.h - fork a child that answers with one byte on a pipe.
 *
 * The byte, not the exit status, is the answer: under valgrind a child's status is memcheck's
 * (its exit-time leak check lists the parent's threads' memory as lost in the child), and under
 * TSan the parent's unjoined threads count as leaked. There the child leaves by exec instead
 * (/bin/true is not traced: scripts/run-tests.sh). A child that hangs is killed.
 */
#ifndef SCOPED_TESTS_CHILD_H
#define SCOPED_TESTS_CHILD_H

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

enum { CHILD_MS = 10000 };	/* a child still running then has hung */

struct child {
	pid_t pid;
	int fd; /* the parent's read end, or the child's write end */
};

/* Returns twice, as fork() does: test c.pid == 0 for the child. */
static inline struct child child_start(void)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	struct child c = { .pid = fork() };
	cr_assert_neq(c.pid, -1, "fork: %s", strerror(errno));
	c.fd = c.pid == 0 ? p[1] : p[0];
	close(c.pid == 0 ? p[0] : p[1]);
	if (c.pid == 0)
		alarm(CHILD_MS / 1000); /* a hang becomes a failure, not a stuck suite */
	return c;
}

/* In the child: answer code (0-255) and end. */
static inline _Noreturn void child_done(struct child c, int code)
{
	unsigned char b = (unsigned char)code;
	if (write(c.fd, &b, 1) != 1)
		_exit(120);
	if (getenv("VALGRIND") || UNDER_TSAN)
		execl("/bin/true", "true", (char *)NULL);
	_exit(code);
}

/* In the parent: the child's answer; -1 when it had not ended after ms (it is killed then),
 * -2 when it ended without one. */
static inline int child_wait(struct child c, int ms)
{
	int status = 0;
	long long end = now_ms() + ms;
	while (waitpid(c.pid, &status, WNOHANG) == 0) {
		if (now_ms() > end) {
			kill(c.pid, SIGKILL);
			waitpid(c.pid, &status, 0);
			close(c.fd);
			return -1;
		}
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	unsigned char b;
	int code = read(c.fd, &b, 1) == 1 ? b : -2;
	close(c.fd);
	return code;
}

#endif
