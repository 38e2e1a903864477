/* Compiled by tests/test_compile.c at -O2: the two functions must be the same machine code. */
#include <scoped.h>

int with_scoped(const char *path);
int by_hand(const char *path);

int with_scoped(const char *path)
{
	scoped(FILE) f = fopen(path, "r");
	if (!f)
		return -1;
	return fgetc(f);
}

int by_hand(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	int c = fgetc(f);
	fclose(f);
	return c;
}
