/* tests/helpers.h - small helpers shared by the Criterion suites. */
#ifndef SCOPED_TESTS_HELPERS_H
#define SCOPED_TESTS_HELPERS_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The sanitizer this build runs under, 0 or 1 each: GCC says so with __SANITIZE_*__, clang with
 * __has_feature. Tests whose subject a sanitizer changes (the allocator, fork, cancellation)
 * ask here. */
#if defined(__SANITIZE_ADDRESS__)
#  define UNDER_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define UNDER_ASAN 1
#  endif
#endif
#ifndef UNDER_ASAN
#  define UNDER_ASAN 0
#endif
#if defined(__SANITIZE_THREAD__)
#  define UNDER_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define UNDER_TSAN 1
#  endif
#endif
#ifndef UNDER_TSAN
#  define UNDER_TSAN 0
#endif

/* Entries in a /proc/self directory (minus . and ..): threads in "task", descriptors in "fd". */
static inline int proc_self_count(const char *dir)
{
	char path[64] = "/proc/self/";
	size_t n = 0;
	while (path[n])
		n++;
	for (size_t i = 0; dir[i] && n < sizeof path - 1; i++)
		path[n++] = dir[i];
	path[n] = '\0';
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int count = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			count++;
	closedir(d);
	return count - (dir[0] == 'f'); /* the fd of this very listing */
}

static inline int thread_count(void) { return proc_self_count("task"); }

/* Whether one of this process's threads is called name (/proc/self/task/ * /comm). A scoped
 * thread names itself first thing, so this also says it is past its start. */
static inline bool thread_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	bool found = false;
	for (struct dirent *e; d && !found && (e = readdir(d)) != NULL;) {
		char path[300], comm[32] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (f && fgets(comm, sizeof comm, f))
			comm[strcspn(comm, "\n")] = '\0';
		if (f)
			fclose(f);
		found = strcmp(comm, name) == 0;
	}
	if (d)
		closedir(d);
	return found;
}
static inline int fd_count(void) { return proc_self_count("fd"); }

static inline long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll cond (an expression) every millisecond for at most ms: a bounded wait, not a sleep. */
#define wait_until(cond, ms)                                                                \
	__extension__({                                                                     \
		long long wait_until_end_ = now_ms() + (ms);                                \
		while (!(cond) && now_ms() < wait_until_end_)                               \
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);                  \
		(cond);                                                                     \
	})

#endif
