/* C++ code calling the samples' C libraries (compiled with -x c++): their functions must keep
 * C linkage, or the link against libsamples.a fails with mangled names. */
#include "cache/cache.h"
#include "statsd/statsd.h"

int use_samples(void);
int use_samples(void)
{
	statsd_config sc = {};
	sc.addr = "127.0.0.1:8125";
	scoped(statsd) s = statsd_open(&sc);
	cache_config cc = {};
	scoped(cache) c = cache_new(&cc);
	if (!s || !c)
		return -1;
	return statsd_count(s, "n", 1, 1.0f) + cache_set(c, "k", c, CACHE_DEFAULT_TTL);
}
