/* scoped_take of a pointer to const, built with -Wcast-qual: the move must not cast the
 * qualifier away behind the user's back. */
#include <scoped.h>

void use(const char *name);
void give(void);
void give(void)
{
	scoped_free const char *name = (const char *)malloc(8);
	use(scoped_take(name));
}
