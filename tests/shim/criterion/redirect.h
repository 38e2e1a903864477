/* tests/shim/criterion/redirect.h - the TSan build's stand-in for <criterion/redirect.h>
 * (see criterion.h in this directory).
 *
 *	Test(s, t, .init = cr_redirect_stderr) {
 *		...					// what the test writes to fd 2
 *		FILE *f = cr_get_redirected_stderr();	// reads it back, from the start
 *	}
 *
 * The redirected stream is a temporary file: fflush(stderr) is done by the getter, and the
 * FILE it returns has its own read position (rewind() it to read again). */
#ifndef CRSHIM_REDIRECT_H
#define CRSHIM_REDIRECT_H

#include <stdio.h>

#include "criterion.h"

void cr_redirect_stdout(void);
void cr_redirect_stderr(void);
FILE *cr_get_redirected_stdout(void);
FILE *cr_get_redirected_stderr(void);

#endif /* CRSHIM_REDIRECT_H */
