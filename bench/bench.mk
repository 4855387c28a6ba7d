# bench/bench.mk - the load generator. Include it from the Makefile
# (`include bench/bench.mk`) or use `make -f Makefile -f bench/bench.mk bench`.
# Uses the Makefile's CC, CFLAGS, LDFLAGS, LDLIBS and BUILD.

BENCH_LOAD := $(BUILD)/bench/load

.PHONY: bench
bench: $(BENCH_LOAD)

$(BENCH_LOAD): bench/load.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS) -lrdkafka -ljansson
