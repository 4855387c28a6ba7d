# kchat build. `make` builds bin/kchat (-O2 -g); `make check` runs every test.
# SANITIZE=address,undefined or SANITIZE=thread builds everything with a
# sanitizer (and without jemalloc, which sanitizers replace).

comma    := ,
CC       = gcc
PKGS     := rdkafka lmdb msgpack jansson libsodium libevent libevent_pthreads
BUILD    ?= build
SANITIZE ?=

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Wmissing-prototypes -Wvla -Wshadow=local \
            -D_GNU_SOURCE -Iinclude -Isrc -pthread $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -pthread -lm

ifneq ($(SANITIZE),)
  CFLAGS  := $(filter-out -O2,$(CFLAGS)) -O1 -fno-omit-frame-pointer -fsanitize=$(SANITIZE)
  LDFLAGS += -fsanitize=$(SANITIZE)
  BUILD   := build/san-$(subst $(comma),-,$(SANITIZE))
else
  LDLIBS  += $(shell pkg-config --libs jemalloc)
endif

# A ThreadSanitizer build links a shim that routes librdkafka's C11 threads
# through the pthread calls TSan intercepts (src/sanitize/tsan_threads.c).
SAN_OBJ  := $(if $(findstring thread,$(SANITIZE)),$(BUILD)/src/sanitize/tsan_threads.o)

LIB_SRC  := $(wildcard src/codec/*.c src/store/*.c src/pipeline/*.c src/actors/*.c \
                      src/gateway/*.c src/app/*.c)
CURL_LIBS := $(shell pkg-config --libs libcurl)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libkchat.a
BIN      := bin/kchat$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))

UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
INT_SRC  := $(wildcard tests/integration/*.c)
INT_BIN  := $(INT_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
SUP_SRC  := $(wildcard tests/support/*.c)
SUP_OBJ  := $(SUP_SRC:%.c=$(BUILD)/%.o)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)

# check-all: the suite plain, under ASan+UBSan and under TSan (what CI runs).
.PHONY: all check check-all check-kafka soak test unit integration fuzz-replay deps docs clean
all: $(BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(LIB) $(SAN_OBJ)
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB) $(SUP_OBJ) $(SAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(SUP_OBJ) $(SAN_OBJ) $(LIB) $(LDLIBS) $(CURL_LIBS) -lcmocka

$(BUILD)/tests/integration/%: tests/integration/%.c $(SUP_OBJ) $(SAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(SUP_OBJ) $(SAN_OBJ) $(LDLIBS) $(CURL_LIBS) -lcmocka

# Fuzz harnesses define LLVMFuzzerTestOneInput; with gcc they are linked to a
# replay driver that runs the committed corpus plus bounded random inputs.
# `make fuzz` builds them with clang and libFuzzer instead (tests/fuzz/fuzz.mk).
FUZZ_COMMON := tests/fuzz/replay_main.c tests/fuzz/codec_checks.c
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(FUZZ_COMMON) tests/fuzz/codec_checks.h $(LIB) $(SAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(FUZZ_COMMON) $(SAN_OBJ) $(LIB) $(LDLIBS)

unit: $(UNIT_BIN)
integration: $(INT_BIN) $(BIN)
fuzz-replay: $(FUZZ_BIN)

check test: $(BIN) $(UNIT_BIN) $(INT_BIN) $(FUZZ_BIN)
	BUILD=$(BUILD) KCHAT_BIN=$(BIN) tests/run.sh

docs: $(BIN)
	$(BIN) config-doc > docs/configuration.md

# The integration programs marked `kchat-test: kafka` on a real Apache Kafka
# (scripts/kafka fetches it with Maven and starts one broker per program).
check-kafka: $(BIN) $(INT_BIN)
	BUILD=$(BUILD) KCHAT_BIN=$(BIN) KAFKA=1 tests/run.sh

# The crash test at length: 100 kill -9 under load, more users (SOAK_ARGS
# adds environment, e.g. SOAK_ARGS="KCHAT_TEST_BROKERS=host:port").
SOAK_KILLS ?= 100
soak: $(BIN) $(BUILD)/tests/integration/test_crash
	KCHAT_CRASH_KILLS=$(SOAK_KILLS) KCHAT_CRASH_USERS=40 KCHAT_CRASH_RUN_MS=3000 \
	  KCHAT_BIN=$(BIN) $(SOAK_ARGS) $(BUILD)/tests/integration/test_crash

check-all:
	tests/check-all.sh

deps:
	scripts/install-deps

clean:
	rm -rf build bin

include bench/bench.mk
include tests/fuzz/fuzz.mk
include tests/regress/regress.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
