# tests/extra.mk - reliability: fault injection, cancellation, stress, fuzzing, helgrind/drd.
# Included by the Makefile (B is the build directory of the configuration being built).
#
#   make stress        tests/stress/*.c, optimized (gcc), one program each; ~20 s on 2 cores
#   make fuzz          tests/fuzz/fuzz_*.c, libFuzzer + ASan + UBSan (clang), FUZZ_SECONDS (60)
#                      each; prints executions per target
#   make helgrind      the threading suites (HG_SUITES) under valgrind --tool=helgrind
#   make drd           the same under valgrind --tool=drd
#   make race          the stress program and the cache model under TSan; ~20 s

comma := ,

# --- fault injection: test_fault links tests/fault.o and routes these calls through it -------
FAULT_WRAPS := malloc calloc realloc aligned_alloc free pthread_create pthread_join pthread_cond_init \
               socket
FAULT_SUITES := test_fault test_thread test_worker test_fork
$(foreach t,$(FAULT_SUITES),$(eval TEST_OBJS_$(t) := $(B)/obj/tests/fault.o))
$(foreach t,$(FAULT_SUITES),$(eval TEST_LDFLAGS_$(t) := $(foreach f,$(FAULT_WRAPS),-Wl$(comma)--wrap=$(f))))

# --- cancellation: cleanups run on pthread_cancel / pthread_exit only in code built so ------
$(B)/obj/tests/test_cancel.o: ALL_CFLAGS += -fexceptions

-include $(B)/obj/tests/fault.d

# --- stress ------------------------------------------------------------------------------
STRESS      := $(patsubst tests/stress/%.c,%,$(wildcard tests/stress/*.c))
STRESS_BINS := $(STRESS:%=$(B)/stress/%)

# Linked with tests/fault.o too: the stress program counts pthread_join calls through it.
$(B)/stress/%: $(B)/obj/tests/stress/%.o $(B)/obj/tests/fault.o $(SAMPLE_A) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(B)/obj/tests/fault.o $(SAMPLE_A) $(STATIC) \
	      $(foreach f,$(FAULT_WRAPS),-Wl$(comma)--wrap=$(f)) -lm

-include $(STRESS:%=$(B)/obj/tests/stress/%.d)

stress:
	@$(MAKE) --no-print-directory CFG=gcc _run-stress

_run-stress: $(STRESS_BINS)
	@status=0; for s in $^; do echo "== $$s"; $$s || status=1; done; exit $$status

# --- fuzzing -----------------------------------------------------------------------------
# The library and samples get coverage instrumentation (fuzzer-no-link); each target is linked
# with libFuzzer's main. Needs clang and its runtime (libclang-rt-14-dev for clang-14).
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ         := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ:%=$(B)/fuzz/%)

$(B)/fuzz/%: $(B)/obj/tests/fuzz/%.o $(SAMPLE_A) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $< $(SAMPLE_A) $(STATIC) -lm

-include $(FUZZ:%=$(B)/obj/tests/fuzz/%.d)

fuzz:
	@$(MAKE) --no-print-directory CFG=fuzz-$(notdir $(FUZZ_CC)) CC=$(FUZZ_CC) \
	  CFLAGS='-O1 -g -fno-omit-frame-pointer' \
	  SAN='-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all' _run-fuzz

# Each target starts from tests/fuzz/corpus/<target> (seeds, read only) and keeps what it finds
# in $(B)/corpus/<target>. Exits non-zero on the first crash, leak or failed check.
_run-fuzz: $(FUZZ_BINS)
	@status=0; for f in $(FUZZ); do \
	  mkdir -p $(B)/corpus/$$f; \
	  echo "== $$f ($(FUZZ_SECONDS) s)"; \
	  seeds=; [ ! -d tests/fuzz/corpus/$$f ] || seeds=tests/fuzz/corpus/$$f; \
	  $(B)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -max_len=4096 \
	    -artifact_prefix=$(B)/ $(B)/corpus/$$f $$seeds \
	    >$(B)/fuzz-$$f.log 2>&1; rc=$$?; \
	  grep -a -E '^stat::number_of_executed_units|^stat::peak_rss_mb' $(B)/fuzz-$$f.log; \
	  if [ $$rc -ne 0 ]; then tail -40 $(B)/fuzz-$$f.log; echo "!! $$f failed (exit $$rc)"; \
	    status=1; fi; \
	done; exit $$status

# --- helgrind / drd: the threading suites, one Criterion worker, children traced ----------
HG_SUITES ?= test_thread test_worker

helgrind drd:
	@$(MAKE) --no-print-directory CFG=gcc $(HG_SUITES:%=build/gcc/tests/%)
	@VALGRIND=$@ scripts/run-tests.sh $(HG_SUITES:%=build/gcc/tests/%)

.PHONY: _run-stress _run-fuzz helgrind drd

# --- races: the stress program and the cache model under ThreadSanitizer -----------------
# `make tsan` runs the suites (against tests/shim: Criterion cannot start under TSan, Criterion
# issue #274). This adds the stress program, smaller, and the cache model built as a plain
# program (tests/test_cache_model.c with -DCACHE_MODEL_MAIN), which needs neither.
RACE_STRESS_ENV := STRESS_CYCLES=3000 STRESS_HERD=100 STRESS_ROUNDS=20 STRESS_SELF=300 \
                   STRESS_RSS_KB=0

race:
	@$(MAKE) --no-print-directory CFG=tsan CC=clang CFLAGS='-O1 -g' SAN='-fsanitize=thread' \
	  _run-race

$(B)/race/cache_model: tests/test_cache_model.c $(SAMPLE_A) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DCACHE_MODEL_MAIN -o $@ $< $(SAMPLE_A) $(STATIC) $(ALL_LDFLAGS) -lm

_run-race: $(B)/race/cache_model $(STRESS_BINS)
	@status=0; \
	echo "== $(B)/race/cache_model"; \
	TSAN_OPTIONS=halt_on_error=1 $(B)/race/cache_model || status=1; \
	for s in $(STRESS_BINS); do echo "== $$s"; \
	  TSAN_OPTIONS=halt_on_error=1 $(RACE_STRESS_ENV) $$s || status=1; done; \
	exit $$status

.PHONY: race _run-race
