# kchat build. `make` builds bin/kchat (-O2 -g); `make check` runs every test.
# SANITIZE=address,undefined or SANITIZE=thread builds everything with a
# sanitizer (and without jemalloc, which sanitizers replace).
#
# CC, CFLAGS, CPPFLAGS, LDFLAGS and LDLIBS are the user's: CFLAGS defaults to
# -O2 -g (-O1 -g with SANITIZE) and the others to nothing, and they are added
# after what the build needs (KCHAT_CPPFLAGS, KCHAT_CFLAGS, KCHAT_LDFLAGS,
# KCHAT_LIBS below) instead of replacing it: `make CFLAGS=-O0` still builds
# C11 with the project's warnings. `make CC=clang` builds with clang: every
# warning flag is probed (see cc-accepts) so that both compilers get only
# flags they know. DEVELOPER=1 adds -Werror and the stricter warnings of
# DEV_WARNINGS (git's config.mak.dev is the model). BIN, BUILD: where the
# binary and the objects go (e.g. BUILD=build/clang BIN=build/clang/kchat).

comma    := ,
hash     := \#
CC       = gcc
PKGS     := rdkafka lmdb msgpack jansson libsodium libevent libevent_pthreads
BUILD    ?= build
SANITIZE ?=
DEVELOPER ?=

# librdkafka: the release scripts/librdkafka builds into .deps/ (its
# version= must match this directory) when it is there, found through its
# pkg-config file and its directory put in the programs' run path; the
# system's otherwise (Debian 12's 2.0.2 spins its main loop, and 2.1-2.8
# stall resumed partitions: docs/bench.md). RDKAFKA_DIR= (empty) builds
# against the system's.
RDKAFKA_DIR ?= $(wildcard $(CURDIR)/.deps/librdkafka-2.10.1)
PKG_CONFIG  := $(if $(RDKAFKA_DIR),PKG_CONFIG_PATH=$(RDKAFKA_DIR)/lib/pkgconfig$(if \
                 $(PKG_CONFIG_PATH),:$(PKG_CONFIG_PATH)) )pkg-config
RDKAFKA_LDFLAGS := $(if $(RDKAFKA_DIR),-Wl$(comma)-rpath$(comma)$(RDKAFKA_DIR)/lib)
# Their headers are system headers (-isystem): warnings are for kchat's code,
# and librdkafka 2.10's rdkafka.h has a `const int` return -Wextra names.
PKG_CFLAGS := $(patsubst -I%,-isystem %,$(shell $(PKG_CONFIG) --cflags $(PKGS)))
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS))

ifeq ($(SANITIZE),)
  CFLAGS ?= -O2 -g
else
  CFLAGS ?= -O1 -g
endif
CPPFLAGS ?=
LDFLAGS  ?=
LDLIBS   ?=

# $(call cc-accepts,COMPILER,FLAG...): the FLAGs that COMPILER accepts, each
# tried with -Werror on a one-line file (an unknown -W is an error for gcc and
# a warning for clang). A FLAG may name alternatives, A|B: the first accepted
# is kept (gcc's -Wshadow=local, else clang's -Wshadow). A -Wno-X is kept when
# -WX is accepted (gcc takes any -Wno-X silently, then names it in notes).
cc-accepts = $(shell for alts in $(2); do \
    for f in $$(echo "$$alts" | tr '|' ' '); do \
      case $$f in (-Wno-*) p=-W$${f$(hash)-Wno-};; (*) p=$$f;; esac; \
      if echo 'typedef int kchat_probe;' | \
           $(1) -Werror $$p -x c -fsyntax-only - >/dev/null 2>&1; then \
        printf '%s ' "$$f"; break; fi; \
    done; done)

# The warnings of every build. -Wshadow=local is gcc's; clang has no =local
# and its -Wshadow (locals, parameters and globals shadowed) is clean today.
WARNINGS := -Wall -Wextra -Wmissing-prototypes -Wvla '-Wshadow=local|-Wshadow'

# DEVELOPER=1: -Werror and these, as far as $(CC) knows them.
#   -Wstrict-prototypes -Wold-style-definition  no K&R declarations
#   -Wformat=2              -Wformat-security, -Wformat-nonliteral (a printf-
#                           like function needs __attribute__((format)))
#   -Wundef                 #if on an undefined macro
#   -Wpointer-arith         arithmetic on void * and function pointers
#   -Wwrite-strings         string literals are const char[]
#   -Wcast-function-type    a cast between incompatible function types
#   -Wredundant-decls       a declaration repeated in the same scope
#   -Wnested-externs        an extern declaration inside a function
#   -Winit-self             int i = i;
#   -Walloca                alloca(), like -Wvla: no stack of runtime size
#   -Wdate-time             __DATE__, __TIME__ (builds must be reproducible)
#   -Wpedantic              ISO C11 (clang: except statement expressions,
#                           which librdkafka's RD_KAFKA_V_* macros expand to)
#   gcc: -Wlogical-op (x == a || x == a), -Wduplicated-cond (the same
#        condition twice in an if-else chain), -Wduplicated-branches
#   clang: -Wmissing-variable-declarations (a global without a declaration:
#        -Wmissing-prototypes for variables), -Wloop-analysis (a loop whose
#        variable the body never changes), -Wstring-conversion (a string
#        literal used as a truth value)
# Left out: -Wdeclaration-after-statement (C11 code mixes them),
# -Wnull-dereference (gcc's depends on the optimizer: false alarms at -O2),
# clang's -Wimplicit-fallthrough (it ignores the /* fall through */ comments
# that gcc's, on in -Wextra, already checks), -Wcomma, -Wcast-qual,
# -Wjump-misses-init, -Wswitch-enum, -Wconversion (noise for this code).
DEV_WARNINGS := -Wstrict-prototypes -Wold-style-definition -Wformat=2 -Wundef \
    -Wpointer-arith -Wwrite-strings -Wcast-function-type -Wredundant-decls \
    -Wnested-externs -Winit-self -Walloca -Wdate-time \
    -Wpedantic -Wno-gnu-statement-expression \
    -Wlogical-op -Wduplicated-cond -Wduplicated-branches \
    -Wmissing-variable-declarations -Wloop-analysis -Wstring-conversion

# $(call cc-warnings,COMPILER): the warning flags for COMPILER.
cc-warnings = $(call cc-accepts,$(1),$(WARNINGS) $(if $(DEVELOPER),$(DEV_WARNINGS))) \
              $(if $(DEVELOPER),-Werror)
# Those of $(CC), probed once per make run and only when something is
# compiled: the first use replaces WARN by its value.
WARN = $(eval WARN := $(call cc-warnings,$(CC)))$(WARN)

# What every compile and link needs; the user's flags come after.
KCHAT_CPPFLAGS := -D_GNU_SOURCE -Iinclude -Isrc $(PKG_CFLAGS)
KCHAT_CFLAGS    = -std=c11 -pthread $(SAN_FLAGS) $(WARN)
KCHAT_LDFLAGS  := -pthread $(RDKAFKA_LDFLAGS)
KCHAT_LIBS     := $(PKG_LIBS) -pthread -lm

ifneq ($(SANITIZE),)
  SAN_FLAGS     := -fno-omit-frame-pointer -fsanitize=$(SANITIZE)
  KCHAT_LDFLAGS += -fsanitize=$(SANITIZE)
  BUILD         := build/san-$(subst $(comma),-,$(SANITIZE))
else
  KCHAT_LIBS    += $(shell pkg-config --libs jemalloc)
endif

ALL_CFLAGS  = $(KCHAT_CPPFLAGS) $(CPPFLAGS) $(KCHAT_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(KCHAT_LDFLAGS) $(LDFLAGS)
ALL_LIBS    = $(KCHAT_LIBS) $(LDLIBS)

# Every object and program depends on $(FLAGS), which holds the compiler
# and flags they are built with and is rewritten only when those change, so
# that `make DEVELOPER=1` or `make CC=clang` after `make` builds again (as
# git's GIT-CFLAGS does). $(call write-if-changed,FILE,TEXT) is its recipe.
FLAGS = $(BUILD)/.flags
write-if-changed = $(shell mkdir -p $(dir $(1)))$(file >$(1).new,$(2))\
    cmp -s $(1).new $(1) && rm -f $(1).new || mv -f $(1).new $(1)

# A ThreadSanitizer build links a shim that routes librdkafka's C11 threads
# through the pthread calls TSan intercepts (src/sanitize/tsan_threads.c).
SAN_OBJ  := $(if $(findstring thread,$(SANITIZE)),$(BUILD)/src/sanitize/tsan_threads.o)

LIB_SRC  := $(wildcard src/codec/*.c src/store/*.c src/pipeline/*.c src/actors/*.c \
                      src/gateway/*.c src/app/*.c)
CURL_LIBS := $(shell pkg-config --libs libcurl)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libkchat.a
BIN      ?= bin/kchat$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))

UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
INT_SRC  := $(wildcard tests/integration/*.c)
INT_BIN  := $(INT_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
# Test support: the black-box integration programs link no libkchat.a, so
# what needs it (compacted.c: shard stores as text; offsets.c: stored
# offsets) is linked by the
# programs that do: the white-box integration programs (INT_WHITEBOX) and
# the numbered regressions (tests/regress/regress.mk).
SUP_LIB_SRC := tests/support/compacted.c tests/support/offsets.c
SUP_SRC  := $(filter-out $(SUP_LIB_SRC),$(wildcard tests/support/*.c))
SUP_OBJ  := $(SUP_SRC:%.c=$(BUILD)/%.o)
SUP_LIB_OBJ := $(SUP_LIB_SRC:%.c=$(BUILD)/%.o)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)

# check-all: what CI runs (tests/check-all.sh).
.PHONY: all check check-all check-kafka soak test unit integration fuzz-replay deps docs clean \
        FORCE
all: $(BIN)

$(FLAGS): FORCE
	@$(call write-if-changed,$@,$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(ALL_LIBS))

$(BUILD)/%.o: %.c $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(LIB) $(SAN_OBJ) $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(filter-out $(FLAGS),$^) $(ALL_LIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB) $(SUP_OBJ) $(SAN_OBJ) $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests $(ALL_LDFLAGS) -o $@ $< $(SUP_OBJ) $(SAN_OBJ) $(LIB) $(ALL_LIBS) $(CURL_LIBS) -lcmocka

$(BUILD)/tests/integration/%: tests/integration/%.c $(SUP_OBJ) $(SAN_OBJ) $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests $(ALL_LDFLAGS) -o $@ $< $(SUP_OBJ) $(SAN_OBJ) $(ALL_LIBS) $(CURL_LIBS) -lcmocka

# Integration programs drive bin/kchat from outside and link no kchat code,
# but for these, which also read its data directory with the store's API
# (the changelog must give back every shard's tables; a killed node's copy
# keeps changes Kafka never had) and make kchat's topics on a mock cluster
# of their own; test_gw_presence checks kchat-presence's MACs with
# kchat_auth_verify(); test_replica_positions moves the directory
# replica's stored read positions; test_restore deletes rows of a stopped
# node's shards (a copy a machine restart tore).
INT_WHITEBOX := $(BUILD)/tests/integration/test_changelog \
                $(BUILD)/tests/integration/test_restore \
                $(BUILD)/tests/integration/test_replica_positions \
                $(BUILD)/tests/integration/test_coalesce \
                $(BUILD)/tests/integration/test_handover \
                $(BUILD)/tests/integration/test_gw_presence
$(INT_WHITEBOX): $(BUILD)/tests/integration/%: tests/integration/%.c $(LIB) $(SUP_OBJ) $(SUP_LIB_OBJ) $(SAN_OBJ) $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests $(ALL_LDFLAGS) -o $@ $< $(SUP_OBJ) $(SUP_LIB_OBJ) $(SAN_OBJ) $(LIB) $(ALL_LIBS) $(CURL_LIBS) -lcmocka

# Fuzz harnesses define LLVMFuzzerTestOneInput; with gcc they are linked to a
# replay driver that runs the committed corpus plus bounded random inputs.
# `make fuzz` builds them with clang and libFuzzer instead (tests/fuzz/fuzz.mk).
FUZZ_COMMON := tests/fuzz/replay_main.c tests/fuzz/codec_checks.c
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(FUZZ_COMMON) tests/fuzz/codec_checks.h $(LIB) $(SAN_OBJ) \
                      $(FLAGS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests $(ALL_LDFLAGS) -o $@ $< $(FUZZ_COMMON) $(SAN_OBJ) $(LIB) $(ALL_LIBS)

unit: $(UNIT_BIN)
integration: $(INT_BIN) $(BIN)
fuzz-replay: $(FUZZ_BIN)

# TESTS=NAME...: only the programs whose path contains one of the NAMEs;
# SKIP_TESTS=NAME...: all but those (tests/run.sh).
TESTS      ?=
SKIP_TESTS ?=
check test: $(BIN) $(UNIT_BIN) $(INT_BIN) $(FUZZ_BIN)
	BUILD=$(BUILD) KCHAT_BIN=$(BIN) KCHAT_TEST_SKIP='$(SKIP_TESTS)' tests/run.sh $(TESTS)

docs: $(BIN)
	$(BIN) config-doc > docs/configuration.md

# The integration programs marked `kchat-test: kafka` on a real Apache Kafka
# (scripts/kafka fetches it with Maven and starts one broker per program).
check-kafka: $(BIN) $(INT_BIN)
	BUILD=$(BUILD) KCHAT_BIN=$(BIN) KCHAT_TEST_SKIP='$(SKIP_TESTS)' KAFKA=1 tests/run.sh $(TESTS)

# The crash tests at length: 100 kill -9 under load, more users; 40 phases
# of room changes, each ended by a kill (SOAK_ARGS adds environment, e.g.
# SOAK_ARGS="KCHAT_TEST_BROKERS=host:port").
SOAK_KILLS ?= 100
soak: $(BIN) $(BUILD)/tests/integration/test_crash $(BUILD)/tests/integration/test_crash_rooms
	KCHAT_CRASH_KILLS=$(SOAK_KILLS) KCHAT_CRASH_USERS=40 KCHAT_CRASH_RUN_MS=3000 \
	  KCHAT_BIN=$(BIN) $(SOAK_ARGS) $(BUILD)/tests/integration/test_crash
	KCHAT_CRASH_ROOMS_PHASES=40 KCHAT_BIN=$(BIN) $(SOAK_ARGS) \
	  $(BUILD)/tests/integration/test_crash_rooms

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
