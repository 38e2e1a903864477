/* C++ (compiled with -x c++) that includes <scoped.h> first, inside extern "C" as C headers
 * often are, and then the standard <mutex>: C++17's std::scoped_lock has constructors spelled
 * like the scoped_lock() macro, so <mutex> must not be read after the macro is defined. */
extern "C" {
#include <scoped.h>
}
#include <mutex>

int both_locks(pthread_mutex_t *m);
int both_locks(pthread_mutex_t *m)
{
	static std::mutex sm;
	std::scoped_lock<std::mutex> held(sm);
	scoped_lock(m);
	return 0;
}
