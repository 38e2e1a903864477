/* The same as leaky.c with scoped(conn): gcc -fanalyzer must stay silent. */
#include <scoped.h>

typedef struct conn conn;
void conn_close(conn *c);
SCOPED_ALLOC(conn_close) conn *conn_open(const char *addr);
int conn_send(conn *c, const char *msg);
SCOPED_DEFINE(conn, conn_close)

int open_and_close(const char *addr);
int open_and_close(const char *addr)
{
	scoped(conn) c = conn_open(addr);
	if (!c)
		return -1;
	return conn_send(c, "hello");
}

conn *open_and_move(const char *addr);
conn *open_and_move(const char *addr)
{
	scoped(conn) c = conn_open(addr);
	if (!c || conn_send(c, "hello") < 0)
		return NULL;
	scoped_return(c);
}
