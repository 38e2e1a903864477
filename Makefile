# scoped - build, test, install.
#
#   make              libscoped.a and libscoped.so (build/gcc)
#   make demo         build and run the samples
#   make test         install missing test dependencies, run the suite with GCC and Clang
#   make check        what CI runs: test, the compiler matrix, ASan+UBSan, TSan, valgrind,
#                     helgrind, stress, race, fuzz (FUZZ_SECONDS each), demo, install check
#   make bench        benchmarks, as ratios against baselines measured in the same run
#   make install      PREFIX (/usr/local) and DESTDIR honoured; make uninstall
#
# One build directory per configuration (build/gcc, build/clang, build/asan, ...). The public
# targets call this Makefile again with CFG set; CC=... on the command line or in the
# environment builds only with that compiler.

CFG      ?= gcc
V        ?= 0      # V=1 shows the full commands
B        := build/$(CFG)
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
VERSION  := 0.1.0
SOMAJOR  := 0

ifeq ($(origin CC),default)
  CC := gcc
  USER_CC :=
else
  USER_CC := $(CC)
endif
CXX_BENCH ?= g++

STD      ?= c11
WARN     := -Wall -Wextra -Wpedantic -Werror
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=$(STD) $(WARN) $(CFLAGS) $(SAN) -fPIC -pthread $(SHIM_CFLAGS) -Iinclude -Isamples -Itests \
             -MMD -MP -DSCOPED_SRCDIR='"$(CURDIR)"' -DSCOPED_BUILDDIR='"$(CURDIR)/$(B)"' -DSCOPED_CC='"$(CC)"'
ALL_LDFLAGS = $(LDFLAGS) $(SAN) -pthread

SRCS        := $(wildcard src/*.c)
SAMPLE_LIB  := $(filter-out %/main.c,$(wildcard samples/*/*.c))
SAMPLES     := $(patsubst samples/%/main.c,%,$(wildcard samples/*/main.c))
TESTS       := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))
BENCH_C     := $(patsubst tests/bench/%.c,%,$(wildcard tests/bench/bench_*.c))
BENCH_CXX   := $(patsubst tests/bench/%.cpp,%,$(wildcard tests/bench/bench_*.cpp))
HEADERS     := include/scoped.h $(wildcard include/scoped/*.h)

LIB_OBJS    := $(SRCS:%.c=$(B)/obj/%.o)
SAMPLE_OBJS := $(SAMPLE_LIB:%.c=$(B)/obj/%.o)
STATIC      := $(B)/libscoped.a
SHARED      := $(B)/libscoped.so.$(VERSION)
SAMPLE_A    := $(B)/libsamples.a
TEST_BINS   := $(TESTS:%=$(B)/tests/%)
DEMO_BINS   := $(SAMPLES:%=$(B)/samples/%)
BENCH_BINS  := $(BENCH_C:%=$(B)/bench/%) $(BENCH_CXX:%=$(B)/bench/%)

.PHONY: all lib tests demos benches demo test test-one check bench install uninstall clean \
        deps deps-check matrix asan tsan valgrind analyzer stress fuzz _run-tests _run-bench
# Short build lines ("  CC   src/thread.c"), or the full commands with V=1.
ifeq ($(strip $(V)),0)
  say = @printf '  %-6s %s\n' '$(1)' '$(2)';
else
  say =
endif

.DELETE_ON_ERROR:
.SECONDARY:

all lib: $(STATIC) $(SHARED)

# --- objects and libraries -------------------------------------------------------------------

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@mkdir -p $(@D)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^

# Only scoped_[a-z]* is exported: scoped__* names are private across the library's files.
$(SHARED): $(LIB_OBJS) src/libscoped.map
	$(call say,LD,$@)$(CC) -shared $(ALL_LDFLAGS) -Wl,-soname,libscoped.so.$(SOMAJOR) \
	      -Wl,--version-script=src/libscoped.map -o $@ $(LIB_OBJS)
	@ln -sf libscoped.so.$(VERSION) $(B)/libscoped.so.$(SOMAJOR)
	@ln -sf libscoped.so.$(SOMAJOR) $(B)/libscoped.so

$(SAMPLE_A): $(SAMPLE_OBJS)
	@mkdir -p $(@D)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^

# --- programs --------------------------------------------------------------------------------

# Criterion, or for make tsan the stand-in in tests/shim (Criterion cannot start under TSan):
# SHIM_CFLAGS=-Itests/shim CRITERION_LIB=<its runner.o>; test objects then depend on its headers.
CRITERION_LIB ?= -lcriterion
-include $(patsubst %.o,%.d,$(filter %.o,$(CRITERION_LIB)))
$(TESTS:%=$(B)/obj/tests/%.o): $(wildcard $(patsubst -I%,%/criterion/*.h,$(SHIM_CFLAGS)))

# Per-suite extras (tests/extra.mk): TEST_OBJS_<suite> objects to link in, TEST_LDFLAGS_<suite>
# link flags (e.g. -Wl,--wrap=malloc for fault injection).
.SECONDEXPANSION:
$(B)/tests/%: $(B)/obj/tests/%.o $$(TEST_OBJS_$$*) $(SAMPLE_A) $(STATIC) $(filter %.o,$(CRITERION_LIB))
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $< $(TEST_OBJS_$*) $(SAMPLE_A) $(STATIC) $(TEST_LDFLAGS_$*) \
	      $(CRITERION_LIB) -lm

$(B)/samples/%: $(B)/obj/samples/%/main.o $(SAMPLE_A) $(STATIC)
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $< $(SAMPLE_A) $(STATIC) -lm

$(B)/bench/%: $(B)/obj/tests/bench/%.o $(SAMPLE_A) $(STATIC)
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(ALL_LDFLAGS) -o $@ $< $(SAMPLE_A) $(STATIC) -lm

$(B)/bench/%: tests/bench/%.cpp $(STATIC)
	@mkdir -p $(@D)
	$(call say,CXX,$<)$(CXX_BENCH) -std=c++20 -Wall -Wextra -Werror -O2 -g -pthread -Iinclude -o $@ $< $(STATIC)

-include tests/extra.mk

tests: $(TEST_BINS)
demos: $(DEMO_BINS)
benches: $(BENCH_BINS)

-include $(LIB_OBJS:.o=.d) $(SAMPLE_OBJS:.o=.d) $(TESTS:%=$(B)/obj/tests/%.d) \
         $(SAMPLES:%=$(B)/obj/samples/%/main.d) $(BENCH_C:%=$(B)/obj/tests/bench/%.d)

# --- running ---------------------------------------------------------------------------------

# T=test_worker runs one suite. Some suites run the demos: build them too.
_run-tests: $(if $(T),$(B)/tests/$(T),$(TEST_BINS)) $(DEMO_BINS)
	@scripts/run-tests.sh $(filter $(B)/tests/%,$^)

_run-bench: $(BENCH_BINS)
	@for b in $^; do echo "== $$b"; $$b || exit 1; done

demo: deps-check
	@$(MAKE) --no-print-directory CFG=gcc demos
	@for s in $(SAMPLES); do \
	  echo; echo "================ samples/$$s ================"; \
	  build/gcc/samples/$$s || exit 1; done
	@scripts/demo-analyzer.sh

# Test dependencies first (apt-get as root; otherwise the exact command to run).
deps:
	@scripts/deps.sh test
deps-ci:
	@scripts/deps.sh ci
deps-check:
	@scripts/deps.sh build

ifeq ($(USER_CC),)
test: deps
	@$(MAKE) --no-print-directory CFG=gcc CC=gcc _run-tests
	@$(MAKE) --no-print-directory CFG=clang CC=clang _run-tests
else
test: deps
	@$(MAKE) --no-print-directory CFG=$(notdir $(USER_CC)) CC=$(USER_CC) _run-tests
endif

bench: deps-check
	@$(MAKE) --no-print-directory CFG=bench CFLAGS='-O2 -g -DNDEBUG' _run-bench

asan:
	@$(MAKE) --no-print-directory CFG=asan CC=clang CFLAGS='-O1 -g -fno-omit-frame-pointer' \
	  SAN='-fsanitize=address,undefined -fno-sanitize-recover=all' _run-tests

tsan:
	@$(MAKE) --no-print-directory CFG=tsan CC=clang CFLAGS='-O1 -g' SAN='-fsanitize=thread' \
	  SHIM_CFLAGS=-Itests/shim CRITERION_LIB=build/tsan/obj/tests/shim/runner.o _run-tests

valgrind:
	@$(MAKE) --no-print-directory CFG=gcc tests demos
	@VALGRIND=1 scripts/run-tests.sh $(TESTS:%=build/gcc/tests/%)

matrix:
	@scripts/matrix.sh

check: deps-ci
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory matrix
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory tsan
	@$(MAKE) --no-print-directory valgrind
	@$(MAKE) --no-print-directory helgrind
	@$(MAKE) --no-print-directory stress
	@$(MAKE) --no-print-directory race
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory demo
	@scripts/install-check.sh

# --- install ---------------------------------------------------------------------------------

install: $(STATIC) $(SHARED)
	install -d $(DESTDIR)$(INCDIR)/scoped $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/scoped.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(wildcard include/scoped/*.h) $(DESTDIR)$(INCDIR)/scoped/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libscoped.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libscoped.so.$(SOMAJOR)
	ln -sf libscoped.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libscoped.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' scoped.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/scoped.pc

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/scoped.h $(DESTDIR)$(LIBDIR)/pkgconfig/scoped.pc
	rm -rf $(DESTDIR)$(INCDIR)/scoped
	rm -f $(DESTDIR)$(LIBDIR)/libscoped.a $(DESTDIR)$(LIBDIR)/libscoped.so \
	      $(DESTDIR)$(LIBDIR)/libscoped.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libscoped.so.$(VERSION)

clean:
	rm -rf build
