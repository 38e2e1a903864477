/* A SCOPED_ALLOC constructor's result must be used, on every compiler. */
#include <scoped.h>

typedef struct conn conn;
void conn_close(conn *c);
SCOPED_ALLOC(conn_close) conn *conn_open(const char *addr);

void drop(void);
void drop(void)
{
	conn_open("x");
}
