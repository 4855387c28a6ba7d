# libFuzzer builds of the fuzz harnesses, included by the Makefile.
#
#   make fuzz [FUZZ_SECONDS=30]
#
# builds every tests/fuzz/fuzz_*.c with clang, libFuzzer, AddressSanitizer
# and UndefinedBehaviorSanitizer into build/fuzz/, then runs each for
# FUZZ_SECONDS seconds on a fresh copy of its seeds (tests/fuzz/run-libfuzzer.sh)
# and ends with `N passed, N failed`, one test per harness. The project's
# sources are compiled again for it, with -fsanitize=fuzzer-no-link so that
# libFuzzer sees their coverage, in build/fuzz/src/. `make fuzz-build` only
# builds. (`make check` builds the same harnesses with gcc and the replay
# driver instead: see the Makefile.)

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_DIR     := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The Makefile's required flags and warnings (probed for FUZZ_CC, once, on
# first use; DEVELOPER=1 adds its own), with the fuzzer's own optimization.
FUZZ_WARN     = $(eval FUZZ_WARN := $(call cc-warnings,$(FUZZ_CC)))$(FUZZ_WARN)
FUZZ_CFLAGS   = -g -O1 -fno-omit-frame-pointer -std=c11 -pthread $(KCHAT_CPPFLAGS) -Itests \
                $(FUZZ_WARN)
# rewritten when the flags change, as the Makefile's $(FLAGS)
FUZZ_FLAGS    = $(FUZZ_DIR)/.flags
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/%.o)
FUZZ_LIB     := $(FUZZ_DIR)/libkchat.a
FUZZ_NAMES   := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_TARGETS := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)

.PHONY: fuzz fuzz-build

$(FUZZ_FLAGS): FORCE
	@$(call write-if-changed,$@,$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) $(RDKAFKA_LDFLAGS) $(PKG_LIBS))

$(FUZZ_DIR)/src/%.o: src/%.c $(FUZZ_FLAGS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	$(AR) rcs $@ $^

# replay_main.c compiles to nothing with KCHAT_LIBFUZZER: libFuzzer has main().
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/codec_checks.c tests/fuzz/codec_checks.h \
                    $(FUZZ_LIB) $(FUZZ_FLAGS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -DKCHAT_LIBFUZZER -o $@ $< tests/fuzz/codec_checks.c \
	    $(RDKAFKA_LDFLAGS) $(FUZZ_LIB) $(PKG_LIBS) -pthread -lm

fuzz-build: $(FUZZ_TARGETS)

fuzz: fuzz-build
	FUZZ_DIR=$(FUZZ_DIR) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run-libfuzzer.sh $(FUZZ_NAMES)
