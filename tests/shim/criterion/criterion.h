/* tests/shim/criterion/criterion.h - a small stand-in for Criterion's <criterion/criterion.h>,
 * used only by the ThreadSanitizer build (make tsan).
 *
 * Why: Criterion's BoxFort maps an identity-mapped "inheritable arena" that collides with
 * TSan's shadow memory, so a Criterion binary under TSan dies before running anything
 * (Snaipe/Criterion#274). This shim keeps the suites' sources unchanged: the tsan build puts
 * -Itests/shim first on the include path and links build/tsan/obj/tests/shim/runner.o instead
 * of -lcriterion.
 *
 * What it offers is what the suites use: Test(suite, name, options...), TestSuite(suite,
 * options...) with .init .fini .timeout .signal .exit_code .disabled .description, the classic
 * cr_assert_* / cr_expect_* macros (each with an optional printf-style message whose format is
 * a string literal), cr_assert_fail, cr_expect_fail, cr_skip_test; <criterion/logging.h> and
 * <criterion/redirect.h> hold the rest. tests/shim/runner.c is the main(): every test runs
 * alone in a forked child, sequentially; see there for the semantics.
 */
#ifndef CRSHIM_CRITERION_H
#define CRSHIM_CRITERION_H

/* What Criterion's own header brings in, which suites may rely on. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "logging.h"

/* --- tests and suites ------------------------------------------------------------------------ */

/* Options of Test(...) and TestSuite(...). crshim_lead_ is never set by users: it lets the
 * option list be empty ({ .crshim_lead_ = 0, } is valid C11, { } is not). */
struct crshim_opts {
	int crshim_lead_;
	void (*init)(void);
	void (*fini)(void);
	double timeout;   /* seconds; 0: none */
	int signal;       /* the test passes only if it is killed by this signal */
	int exit_code;    /* the test passes only if its process exits with this status */
	bool disabled;    /* reported as skipped, not run */
	const char *description;
};

struct crshim_test {
	const char *suite, *name, *file;
	int line;
	void (*fn)(void);
	const struct crshim_opts *opts;
	struct crshim_test *next;
};

struct crshim_suite {
	const char *name;
	const struct crshim_opts *opts;
	struct crshim_suite *next;
};

void crshim_register_test(struct crshim_test *test);
void crshim_register_suite(struct crshim_suite *suite);

#define CRSHIM_ID_(kind, suite, name) crshim_##kind##_##suite##__##name

/* Test(suite, name, .option = value, ...) { body } */
#define Test(...) CRSHIM_TEST_(__VA_ARGS__, )
#define CRSHIM_TEST_(suite, name, ...)                                                      \
	static void CRSHIM_ID_(fn, suite, name)(void);                                      \
	static const struct crshim_opts CRSHIM_ID_(opts, suite, name) = {                   \
		.crshim_lead_ = 0, __VA_ARGS__                                              \
	};                                                                                  \
	static struct crshim_test CRSHIM_ID_(test, suite, name) = {                         \
		#suite, #name, __FILE__, __LINE__, CRSHIM_ID_(fn, suite, name),             \
		&CRSHIM_ID_(opts, suite, name), NULL                                        \
	};                                                                                  \
	__attribute__((constructor)) static void CRSHIM_ID_(reg, suite, name)(void)         \
	{                                                                                   \
		crshim_register_test(&CRSHIM_ID_(test, suite, name));                       \
	}                                                                                   \
	static void CRSHIM_ID_(fn, suite, name)(void)

/* TestSuite(suite, .option = value, ...); options every test of the suite inherits. */
#define TestSuite(...) CRSHIM_SUITE_(__VA_ARGS__, )
#define CRSHIM_SUITE_(suite, ...)                                                           \
	static const struct crshim_opts crshim_sopts_##suite = { .crshim_lead_ = 0,         \
								 __VA_ARGS__ };             \
	static struct crshim_suite crshim_suite_##suite;                                    \
	__attribute__((constructor)) static void crshim_sreg_##suite(void)                  \
	{                                                                                   \
		crshim_register_suite(&crshim_suite_##suite);                               \
	}                                                                                   \
	static struct crshim_suite crshim_suite_##suite = { #suite, &crshim_sopts_##suite, NULL }

/* --- failing, skipping ------------------------------------------------------------------------
 * Every format reaching these starts with one extra character that is not printed: messages
 * are passed as "-" FORMAT, so that an empty message is still a non-empty format literal. */

#define CRSHIM_PRINTF_(f, a) __attribute__((format(printf, f, a)))

/* Prints the failure; fails the test and ends it (.fini still runs). */
_Noreturn void crshim_assert_failed(const char *file, int line, const char *fmt, ...)
	CRSHIM_PRINTF_(3, 4);
/* Prints the failure; fails the test, which goes on. */
void crshim_expect_failed(const char *file, int line, const char *fmt, ...) CRSHIM_PRINTF_(3, 4);
/* Ends the test as skipped (.fini still runs). */
_Noreturn void crshim_skip(const char *file, int line, const char *fmt, ...) CRSHIM_PRINTF_(3, 4);

int crshim_str_cmp(const char *a, const char *b); /* NULL sorts first, equal only to NULL */
bool crshim_str_empty(const char *s);             /* NULL is not empty */

#define cr_skip_test(...) crshim_skip(__FILE__, __LINE__, "-" __VA_ARGS__)
#define cr_assert_fail(...) crshim_assert_failed(__FILE__, __LINE__, "-" __VA_ARGS__)
#define cr_expect_fail(...) crshim_expect_failed(__FILE__, __LINE__, "-" __VA_ARGS__)

/* --- the optional message: dispatch on the number of arguments ---------------------------- *
 * CRSHIM_HASn_(args...) is 0 when there are exactly n arguments (the operands), M when more
 * (operands, then a format literal and its arguments). Up to 32 arguments in all. */
#define CRSHIM_ARG33_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, \
		      _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30,  \
		      _31, _32, N, ...)                                                      \
	N
#define CRSHIM_HAS1_(...)                                                                   \
	CRSHIM_ARG33_(__VA_ARGS__, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, \
		      M, M, M, M, M, M, M, M, M, M, M, 0, _)
#define CRSHIM_HAS2_(...)                                                                   \
	CRSHIM_ARG33_(__VA_ARGS__, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, \
		      M, M, M, M, M, M, M, M, M, M, 0, 0, _)
#define CRSHIM_HAS3_(...)                                                                   \
	CRSHIM_ARG33_(__VA_ARGS__, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, \
		      M, M, M, M, M, M, M, M, M, 0, 0, 0, _)
#define CRSHIM_CAT_(a, b) a##b
#define CRSHIM_CAT(a, b) CRSHIM_CAT_(a, b)

/* The check itself: on failure, the user's message if any, else the default text. */
#define CRSHIM_CHECK_0(fail, cond, text)                                                    \
	do {                                                                                \
		if (!(cond))                                                                \
			fail(__FILE__, __LINE__, "-%s", text);                              \
	} while (0)
#define CRSHIM_CHECK_M(fail, cond, text, ...)                                               \
	do {                                                                                \
		if (!(cond))                                                                \
			fail(__FILE__, __LINE__, "-" __VA_ARGS__);                          \
	} while (0)

/* One operand: (fail, shape, "x as written", x [, format, args...]). The text is made where
 * the user's arguments are still unexpanded (a macro in the condition is shown as written). */
#define CRSHIM_UNARY_(fail, shape, str, ...)                                                \
	CRSHIM_CAT(CRSHIM_UNARY_, CRSHIM_HAS1_(__VA_ARGS__))(fail, shape, str, __VA_ARGS__)
#define CRSHIM_UNARY_0(fail, shape, str, x)                                                 \
	CRSHIM_CHECK_0(fail, CRSHIM_IS_##shape(x), CRSHIM_SAYS_##shape(str))
#define CRSHIM_UNARY_M(fail, shape, str, x, ...)                                            \
	CRSHIM_CHECK_M(fail, CRSHIM_IS_##shape(x), "", __VA_ARGS__)

#define CRSHIM_IS_holds(x) (x)
#define CRSHIM_SAYS_holds(s) "The expression " s " is false."
#define CRSHIM_IS_fails(x) !(x)
#define CRSHIM_SAYS_fails(s) "The expression " s " is true."
#define CRSHIM_IS_null(x) ((x) == NULL)
#define CRSHIM_SAYS_null(s) s " is not null."
#define CRSHIM_IS_nonnull(x) ((x) != NULL)
#define CRSHIM_SAYS_nonnull(s) s " is null."
#define CRSHIM_IS_empty(x) crshim_str_empty(x)
#define CRSHIM_SAYS_empty(s) s " is not empty."
#define CRSHIM_IS_nonempty(x) (!crshim_str_empty(x))
#define CRSHIM_SAYS_nonempty(s) s " is empty."

/* Two operands compared with op: (fail, op, a, b [, format, args...]) */
#define CRSHIM_BINARY_(fail, op, ...)                                                       \
	CRSHIM_CAT(CRSHIM_BINARY_, CRSHIM_HAS2_(__VA_ARGS__))(fail, op, __VA_ARGS__)
#define CRSHIM_BINARY_0(fail, op, a, b)                                                     \
	CRSHIM_CHECK_0(fail, (a)op(b), "The expression (" #a ") " #op " (" #b ") is false.")
#define CRSHIM_BINARY_M(fail, op, a, b, ...) CRSHIM_CHECK_M(fail, (a)op(b), "", __VA_ARGS__)

/* Two strings compared with op: (fail, op, a, b [, format, args...]) */
#define CRSHIM_STRING_(fail, op, ...)                                                       \
	CRSHIM_CAT(CRSHIM_STRING_, CRSHIM_HAS2_(__VA_ARGS__))(fail, op, __VA_ARGS__)
#define CRSHIM_STRING_0(fail, op, a, b)                                                     \
	CRSHIM_CHECK_0(fail, crshim_str_cmp((a), (b)) op 0,                                  \
		       "The expression (as strings) (" #a ") " #op " (" #b ") is false.")
#define CRSHIM_STRING_M(fail, op, a, b, ...)                                                \
	CRSHIM_CHECK_M(fail, crshim_str_cmp((a), (b)) op 0, "", __VA_ARGS__)

/* Memory: (fail, op, a, b, size [, format, args...]) */
#define CRSHIM_ARR_(fail, op, ...)                                                          \
	CRSHIM_CAT(CRSHIM_ARR_, CRSHIM_HAS3_(__VA_ARGS__))(fail, op, __VA_ARGS__)
#define CRSHIM_ARR_0(fail, op, a, b, n)                                                     \
	CRSHIM_CHECK_0(fail, memcmp((a), (b), (n)) op 0,                                     \
		       "The expression (as arrays of " #n " bytes) (" #a ") " #op " (" #b        \
		       ") is false.")
#define CRSHIM_ARR_M(fail, op, a, b, n, ...)                                                \
	CRSHIM_CHECK_M(fail, memcmp((a), (b), (n)) op 0, "", __VA_ARGS__)

/* Floating point within epsilon: (fail, op, a, b, eps [, format, args...]); op is == or !=. */
#define CRSHIM_FLOAT_(fail, op, ...)                                                        \
	CRSHIM_CAT(CRSHIM_FLOAT_, CRSHIM_HAS3_(__VA_ARGS__))(fail, op, __VA_ARGS__)
#define CRSHIM_FLOAT_0(fail, op, a, b, eps)                                                 \
	CRSHIM_CHECK_0(fail, crshim_float_near((a), (b), (eps)) op 1,                        \
		       "The expression (" #a ") " #op " (" #b ") within " #eps " is false.")
#define CRSHIM_FLOAT_M(fail, op, a, b, eps, ...)                                            \
	CRSHIM_CHECK_M(fail, crshim_float_near((a), (b), (eps)) op 1, "", __VA_ARGS__)
static inline int crshim_float_near(long double a, long double b, long double eps)
{
	long double d = a - b;
	return (d < 0 ? -d : d) <= eps;
}

/* --- the assertions: cr_assert_* end the test on failure, cr_expect_* let it go on ------- */

#define cr_assert(...) CRSHIM_UNARY_(crshim_assert_failed, holds, #__VA_ARGS__, __VA_ARGS__)
#define cr_expect(...) CRSHIM_UNARY_(crshim_expect_failed, holds, #__VA_ARGS__, __VA_ARGS__)
#define cr_assert_not(...) CRSHIM_UNARY_(crshim_assert_failed, fails, #__VA_ARGS__, __VA_ARGS__)
#define cr_expect_not(...) CRSHIM_UNARY_(crshim_expect_failed, fails, #__VA_ARGS__, __VA_ARGS__)
#define cr_assert_null(...) CRSHIM_UNARY_(crshim_assert_failed, null, #__VA_ARGS__, __VA_ARGS__)
#define cr_expect_null(...) CRSHIM_UNARY_(crshim_expect_failed, null, #__VA_ARGS__, __VA_ARGS__)
#define cr_assert_not_null(...)                                                             \
	CRSHIM_UNARY_(crshim_assert_failed, nonnull, #__VA_ARGS__, __VA_ARGS__)
#define cr_expect_not_null(...)                                                             \
	CRSHIM_UNARY_(crshim_expect_failed, nonnull, #__VA_ARGS__, __VA_ARGS__)
#define cr_assert_str_empty(...)                                                            \
	CRSHIM_UNARY_(crshim_assert_failed, empty, #__VA_ARGS__, __VA_ARGS__)
#define cr_expect_str_empty(...)                                                            \
	CRSHIM_UNARY_(crshim_expect_failed, empty, #__VA_ARGS__, __VA_ARGS__)
#define cr_assert_str_not_empty(...)                                                        \
	CRSHIM_UNARY_(crshim_assert_failed, nonempty, #__VA_ARGS__, __VA_ARGS__)
#define cr_expect_str_not_empty(...)                                                        \
	CRSHIM_UNARY_(crshim_expect_failed, nonempty, #__VA_ARGS__, __VA_ARGS__)

#define cr_assert_eq(...) CRSHIM_BINARY_(crshim_assert_failed, ==, __VA_ARGS__)
#define cr_expect_eq(...) CRSHIM_BINARY_(crshim_expect_failed, ==, __VA_ARGS__)
#define cr_assert_neq(...) CRSHIM_BINARY_(crshim_assert_failed, !=, __VA_ARGS__)
#define cr_expect_neq(...) CRSHIM_BINARY_(crshim_expect_failed, !=, __VA_ARGS__)
#define cr_assert_lt(...) CRSHIM_BINARY_(crshim_assert_failed, <, __VA_ARGS__)
#define cr_expect_lt(...) CRSHIM_BINARY_(crshim_expect_failed, <, __VA_ARGS__)
#define cr_assert_leq(...) CRSHIM_BINARY_(crshim_assert_failed, <=, __VA_ARGS__)
#define cr_expect_leq(...) CRSHIM_BINARY_(crshim_expect_failed, <=, __VA_ARGS__)
#define cr_assert_gt(...) CRSHIM_BINARY_(crshim_assert_failed, >, __VA_ARGS__)
#define cr_expect_gt(...) CRSHIM_BINARY_(crshim_expect_failed, >, __VA_ARGS__)
#define cr_assert_geq(...) CRSHIM_BINARY_(crshim_assert_failed, >=, __VA_ARGS__)
#define cr_expect_geq(...) CRSHIM_BINARY_(crshim_expect_failed, >=, __VA_ARGS__)

#define cr_assert_str_eq(...) CRSHIM_STRING_(crshim_assert_failed, ==, __VA_ARGS__)
#define cr_expect_str_eq(...) CRSHIM_STRING_(crshim_expect_failed, ==, __VA_ARGS__)
#define cr_assert_str_neq(...) CRSHIM_STRING_(crshim_assert_failed, !=, __VA_ARGS__)
#define cr_expect_str_neq(...) CRSHIM_STRING_(crshim_expect_failed, !=, __VA_ARGS__)
#define cr_assert_str_lt(...) CRSHIM_STRING_(crshim_assert_failed, <, __VA_ARGS__)
#define cr_expect_str_lt(...) CRSHIM_STRING_(crshim_expect_failed, <, __VA_ARGS__)
#define cr_assert_str_leq(...) CRSHIM_STRING_(crshim_assert_failed, <=, __VA_ARGS__)
#define cr_expect_str_leq(...) CRSHIM_STRING_(crshim_expect_failed, <=, __VA_ARGS__)
#define cr_assert_str_gt(...) CRSHIM_STRING_(crshim_assert_failed, >, __VA_ARGS__)
#define cr_expect_str_gt(...) CRSHIM_STRING_(crshim_expect_failed, >, __VA_ARGS__)
#define cr_assert_str_geq(...) CRSHIM_STRING_(crshim_assert_failed, >=, __VA_ARGS__)
#define cr_expect_str_geq(...) CRSHIM_STRING_(crshim_expect_failed, >=, __VA_ARGS__)

#define cr_assert_arr_eq(...) CRSHIM_ARR_(crshim_assert_failed, ==, __VA_ARGS__)
#define cr_expect_arr_eq(...) CRSHIM_ARR_(crshim_expect_failed, ==, __VA_ARGS__)
#define cr_assert_arr_neq(...) CRSHIM_ARR_(crshim_assert_failed, !=, __VA_ARGS__)
#define cr_expect_arr_neq(...) CRSHIM_ARR_(crshim_expect_failed, !=, __VA_ARGS__)

#define cr_assert_float_eq(...) CRSHIM_FLOAT_(crshim_assert_failed, ==, __VA_ARGS__)
#define cr_expect_float_eq(...) CRSHIM_FLOAT_(crshim_expect_failed, ==, __VA_ARGS__)
#define cr_assert_float_neq(...) CRSHIM_FLOAT_(crshim_assert_failed, !=, __VA_ARGS__)
#define cr_expect_float_neq(...) CRSHIM_FLOAT_(crshim_expect_failed, !=, __VA_ARGS__)

#endif /* CRSHIM_CRITERION_H */
