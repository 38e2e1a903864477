/* tests/shim/criterion/logging.h - the TSan build's stand-in for <criterion/logging.h>
 * (see criterion.h in this directory). Messages go to the runner's own stderr, even while a
 * test has redirected its stderr; info messages only with --verbose, as with Criterion. */
#ifndef CRSHIM_LOGGING_H
#define CRSHIM_LOGGING_H

#include <stdbool.h>
#include <stddef.h>

enum criterion_severity {
	CR_LOG_INFO,
	CR_LOG_WARNING,
	CR_LOG_ERROR,
};

void cr_log(enum criterion_severity severity, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define cr_log_info(...) cr_log(CR_LOG_INFO, __VA_ARGS__)
#define cr_log_warn(...) cr_log(CR_LOG_WARNING, __VA_ARGS__)
#define cr_log_error(...) cr_log(CR_LOG_ERROR, __VA_ARGS__)

#endif /* CRSHIM_LOGGING_H */
