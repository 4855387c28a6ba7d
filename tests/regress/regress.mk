# tests/regress/regress.mk: the numbered regression tests, one per bug fixed
# (tests/regress/README.md), included by the Makefile. Uses its CC, ALL_CFLAGS,
# ALL_LDFLAGS, ALL_LIBS, BUILD, LIB, SUP_OBJ, SUP_LIB_OBJ, SAN_OBJ, CURL_LIBS
# and BIN.
#
#   make regress      builds build/tests/regress/NNNN-name (and bin/kchat)
#   tests/run.sh NNNN runs one; make check runs them all
#
# Every program links libkchat.a too, so one file can test a unit directly
# or drive bin/kchat from outside as the integration tests do.

REGRESS_SRC := $(wildcard tests/regress/[0-9][0-9][0-9][0-9]-*.c)
REGRESS_BIN := $(REGRESS_SRC:tests/regress/%.c=$(BUILD)/tests/regress/%)

.PHONY: regress
regress: $(REGRESS_BIN) $(BIN)

$(BUILD)/tests/regress/%: tests/regress/%.c $(LIB) $(SUP_OBJ) $(SUP_LIB_OBJ) $(SAN_OBJ) $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests $(ALL_LDFLAGS) -o $@ $< $(SUP_OBJ) $(SUP_LIB_OBJ) $(SAN_OBJ) $(LIB) $(ALL_LIBS) $(CURL_LIBS) -lcmocka

# make check and make check-kafka run them (tests/run.sh).
check test check-kafka: $(REGRESS_BIN)

# 0058 stands in for the changelog committer: the worker's calls into it
# (src/actors/changelog.c -> changelog_txn.c) go to the test's functions.
$(BUILD)/tests/regress/0058-replay-after-refusal-keeps-order: \
    ALL_LDFLAGS += -Wl,--wrap=kchat__cl_txn_give -Wl,--wrap=kchat__cl_txn_enqueue
