/* Dropping scoped_take_fd()'s result leaks the descriptor: must not compile with -Werror. */
#include <fcntl.h>
#include <scoped.h>

void drop(void);
void drop(void)
{
	scoped_fd int fd = open("/dev/null", O_RDONLY);
	scoped_take_fd(fd);
}
