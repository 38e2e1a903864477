/* Dropping scoped_take()'s result loses the resource: this must not compile with -Werror. */
#include <scoped.h>

void drop(void);
void drop(void)
{
	scoped(FILE) f = fopen("/dev/null", "r");
	scoped_take(f);
}
