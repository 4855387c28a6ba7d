# bench/bench.mk: the bench programs, `make bench` and `make bench-sweep`,
# included by the Makefile. Uses the Makefile's CC, ALL_CFLAGS, ALL_LDFLAGS,
# ALL_LIBS, BUILD, BIN and LIB.
#
#   make bench        bench/run.sh: kchat against the echo baseline on the
#                     mock broker and on Apache Kafka (docs/bench.md)
#   make bench-sweep  bench/sweep.sh: partitions x workers x broker, with plots
#   make bench-sse    bench/gateway.sh: one gateway's event streams against
#                     the broker's own round trip (docs/gateway.md)
# BENCH_ARGS / SWEEP_ARGS / SSE_ARGS pass options to the scripts (their
# --help lists them).

BENCH_LOAD := $(BUILD)/bench/load
BENCH_ECHO := $(BUILD)/bench/echo
BENCH_SSE := $(BUILD)/bench/sse
BENCH_SSE_SRC := $(wildcard bench/sse*.c)
BENCH_UTIL := $(BUILD)/bench/util.o
BENCH_ARGS ?=
SWEEP_ARGS ?=
SSE_ARGS ?=

.PHONY: bench bench-sweep bench-sse bench-progs
bench-progs: $(BENCH_LOAD) $(BENCH_ECHO) $(BIN)

bench: bench-progs
	NO_BUILD=1 KCHAT_BIN=$(BIN) BENCH_BUILD=$(BUILD) bench/run.sh $(BENCH_ARGS)

bench-sweep: bench-progs
	NO_BUILD=1 KCHAT_BIN=$(BIN) BENCH_BUILD=$(BUILD) bench/sweep.sh $(SWEEP_ARGS)

bench-sse: $(BENCH_SSE) $(BIN)
	KCHAT_BIN=$(BIN) BENCH_BUILD=$(BUILD) bench/gateway.sh $(SSE_ARGS)

$(BENCH_UTIL): bench/util.c bench/util.h $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BENCH_LOAD): bench/load.c bench/util.h $(BENCH_UTIL) $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BENCH_UTIL) $(ALL_LIBS)

# The echo processor uses kchat's topic names and kchat_topics_ensure().
$(BENCH_ECHO): bench/echo.c bench/util.h $(BENCH_UTIL) $(LIB) $(SAN_OBJ) $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(BENCH_UTIL) $(SAN_OBJ) $(LIB) $(ALL_LIBS)

# The event-stream benchmark (bench/run-sse.sh runs it against `kchat dev`):
# bench/sse.c and its bench/sse_*.c, which share bench/sse.h.
$(BENCH_SSE): $(BENCH_SSE_SRC) bench/sse.h $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(BENCH_SSE_SRC) $(ALL_LIBS)
