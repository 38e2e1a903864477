/* scoped/libc.h - the C library's and POSIX's own handle types, registered for scoped(T).
 *
 *	scoped(FILE) f = fopen(path, "r");	// fclose(f) at scope exit when not NULL
 *	scoped(DIR) d = opendir(path);		// closedir(d) at scope exit when not NULL
 *
 * (scoped_free and scoped_fd, for malloc'd memory and file descriptors, live in cleanup.h.)
 *
 * One line per type, and each has a test in tests/test_libc.c: add both together.
 *
 * Pitfall: fclose() reports write errors of buffered data. Scope exit cannot return them, so
 * when the data matters, close explicitly and check: `if (fclose(scoped_take(f)) != 0) ...`.
 */
#ifndef SCOPED_LIBC_H
#define SCOPED_LIBC_H

#include <dirent.h>
#include <stdio.h>

#include "cleanup.h"

/* Adapters: scope exit ignores these results (see the pitfall above). */
static inline void scoped__fclose(FILE *f) { (void)fclose(f); }
static inline void scoped__closedir(DIR *d) { (void)closedir(d); }

SCOPED_DEFINE(FILE, scoped__fclose)
SCOPED_DEFINE(DIR, scoped__closedir)

#endif /* SCOPED_LIBC_H */
