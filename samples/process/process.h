/* process/process.h - the article's Process, twice: with a sender that leaks, then scoped.
 *
 * Process opens a buffered statsd sender (which starts a flushing thread), maybe sends, and
 * returns. process_leaky() forgets statsd_close() on its early return: the flushing thread
 * keeps running and keeps the sender alive after Process is gone, as the goroutine does in Go.
 * process_scoped() declares the sender with scoped(statsd): every return stops the thread, runs
 * the final flush, joins it and frees the sender.
 */
#ifndef SAMPLES_PROCESS_H
#define SAMPLES_PROCESS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Called inside Process, while the sender is open: the demo draws the live state from it. */
typedef void process_observer(const char *moment);
void process_set_observer(process_observer *fn);

/* Opens a sender to addr ("host:port"), sends `events` counts, returns 0 (-1 with errno when
 * the sender cannot be opened). With events == 0, process_leaky returns without closing. */
int process_leaky(const char *addr, int events);
int process_scoped(const char *addr, int events);

#ifdef __cplusplus
}
#endif

#endif
