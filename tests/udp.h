/* tests/udp.h - a loopback UDP socket standing in for a statsd daemon. */
#ifndef SCOPED_TESTS_UDP_H
#define SCOPED_TESTS_UDP_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>

/* Binds 127.0.0.1 on a free port and writes "127.0.0.1:port" to addr. A blocking recv gives
 * up after 2 s, so a missing packet fails a test instead of hanging it; the receive buffer is
 * large so that bursts are not dropped before the test reads them. */
static inline int udp_listener(char *addr, size_t size)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(addr, size, "127.0.0.1:%u", ntohs(sa.sin_port));
	int rcvbuf = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

#endif
