/* scoped.h - resources, locks and background threads released when their scope ends.
 *
 *	#include <scoped.h>
 *
 *	scoped(FILE) f = fopen(path, "r");		// fclose at scope exit
 *	scoped_lock(&mu);				// unlock at scope exit
 *	scoped(scoped_worker) w = scoped_worker_start(&(scoped_worker_config){
 *		.name = "flusher", .period_ms = 300, .tick = flush, .ctx = inner });
 *							// stop, final flush, join, free
 *
 * The macro layer (cleanup.h, lock.h, libc.h) is header-only. Threads, workers and the leak
 * checker (thread.h, leak.h) link with -lscoped (pkg-config --cflags --libs scoped).
 * Each header opens with how to use it and its pitfalls.
 */
#ifndef SCOPED_H
#define SCOPED_H

#include "scoped/cleanup.h"
#include "scoped/lock.h"
#include "scoped/libc.h"
#include "scoped/thread.h"
#include "scoped/leak.h"

#endif /* SCOPED_H */
