/* gcc -fanalyzer must report the handle that open_and_forget() never closes.
 * (GCC 12's analyzer treats a pointer passed to an out-of-line function as possibly stored,
 * so it reports leaks of handles that are never handed to anything else.) */
#include <scoped.h>

typedef struct conn conn;
void conn_close(conn *c);
SCOPED_ALLOC(conn_close) conn *conn_open(const char *addr);
SCOPED_DEFINE(conn, conn_close)

int open_and_forget(const char *addr);
int open_and_forget(const char *addr)
{
	conn *c = conn_open(addr);
	if (!c)
		return -1;
	return 0; /* leak: c is never closed */
}
