# bench/bench.mk: the load generator and `make bench`, included by the Makefile.
# Uses the Makefile's CC, CFLAGS, LDFLAGS, LDLIBS, BUILD and BIN.

BENCH_LOAD := $(BUILD)/bench/load
BENCH_ARGS ?= --requests 20000 --inflight 256

.PHONY: bench
# A closed-loop chat-send stream against `kchat serve` on its embedded broker.
bench: $(BENCH_LOAD) $(BIN)
	NO_BUILD=1 bench/run-embedded.sh $(BENCH_ARGS)

$(BENCH_LOAD): bench/load.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

# The event-stream benchmark (bench/run-sse.sh runs it against `kchat dev`).
BENCH_SSE := $(BUILD)/bench/sse

$(BENCH_SSE): bench/sse.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)
