/*
 * A stand-in for libFuzzer's driver where only gcc is available.
 *
 *   fuzz_NAME CORPUS_DIR [DIR_OR_FILE...]
 *
 * Runs every regular, non-hidden file of each directory (in name order) and
 * every file named (regression inputs, tests/fuzz/regress/NAME-NNN) through
 * LLVMFuzzerTestOneInput(), then KCHAT_FUZZ_ITERS (default 20000)
 * pseudo-random mutations of all of them: bit flips, truncations, splices of two
 * files, byte inserts and overwrites with bytes that matter to JSON and
 * msgpack. The generator has a fixed seed, so every run feeds the same
 * inputs and a failure reproduces. Each input is passed in a heap buffer of
 * exactly its size, so a sanitizer sees any read past the end.
 *
 * Success prints "fuzz: N inputs, 0 crashes" and exits 0. A failure is a
 * crash: before dying, the driver prints which input it was (file name or
 * mutation number) and its bytes in hex. Exit status 2 means bad usage.
 *
 * With libFuzzer (clang -fsanitize=fuzzer), define KCHAT_LIBFUZZER and this
 * file compiles to nothing.
 */
#ifndef KCHAT_LIBFUZZER

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEFAULT_ITERS 20000
#define RNG_SEED UINT64_C(0x6b636861742d667a) /* "kchat-fz" */
#define INPUT_SIZE_MAX (128 * 1024)  /* no file or mutation grows past this */
#define MAX_STACKED 4           /* mutations applied to one input */

/* ---- Sanitizer hooks ---------------------------------------------------- */

/* Make undefined behaviour fatal in -fsanitize=undefined builds (a report
 * that lets the run go on would end in "0 crashes"), through abort() so the
 * SIGABRT handler below names the input. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:abort_on_error=1:print_stacktrace=1";
}

/* Present only when a sanitizer runtime is linked in. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

/* ---- The input being run, for the crash report -------------------------- */

static struct {
    const char *file;     /* corpus file name, or NULL for a mutation */
    size_t mutation;      /* 1-based mutation number */
    const uint8_t *data;
    size_t size;
} current;

/* write(2) all of s, ignoring errors: used while dying, async-signal-safe. */
static void put(const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, s, len);
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static void put_str(const char *s)
{
    put(s, strlen(s));
}

static void put_num(size_t v)
{
    char buf[24];
    size_t i = sizeof buf;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    put(buf + i, sizeof buf - i);
}

/* Prints the current input; async-signal-safe. */
static void report_current(void)
{
    static const char hex[] = "0123456789abcdef";
    put_str("fuzz: crashed on ");
    if (current.file) {
        put_str("corpus file ");
        put_str(current.file);
    } else {
        put_str("mutation #");
        put_num(current.mutation);
    }
    put_str(", ");
    put_num(current.size);
    put_str(" bytes:");
    for (size_t i = 0; i < current.size; i++) {
        char byte[3] = {i % 32 ? ' ' : '\n', hex[current.data[i] >> 4], hex[current.data[i] & 15]};
        put(byte, 3);
    }
    put_str("\n");
}

static void on_fatal_signal(int sig)
{
    report_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_crash_report(void)
{
    /* abort() (a failed CHECK in a harness) is never a sanitizer's. */
    signal(SIGABRT, on_fatal_signal);
    /* A sanitizer owns the other fatal signals and prints its own report
     * first; then it calls back. */
    if (__sanitizer_set_death_callback) {
        __sanitizer_set_death_callback(report_current);
        return;
    }
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], on_fatal_signal);
}

/* Runs one input from a heap copy of exactly its size. */
static void run_input(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        fprintf(stderr, "fuzz: out of memory\n");
        exit(1);
    }
    if (size > 0)
        memcpy(copy, data, size);
    current.data = copy;
    current.size = size;
    LLVMFuzzerTestOneInput(copy, size);
    current.data = NULL;
    current.size = 0;
    free(copy);
}

/* ---- The corpus --------------------------------------------------------- */

typedef struct input {
    char *name;
    uint8_t *data;
    size_t size;
} input;

typedef struct corpus {
    input *items;
    size_t n;
} corpus;

static void corpus_free(corpus *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->items[i].name);
        free(c->items[i].data);
    }
    free(c->items);
    c->items = NULL;
    c->n = 0;
}

/* Reads path into in->data; returns 0, or -1 with a message printed. */
static int read_input(const char *path, input *in)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -1;
    }
    in->data = malloc(INPUT_SIZE_MAX);
    in->size = in->data ? fread(in->data, 1, INPUT_SIZE_MAX, fp) : 0;
    int failed = !in->data || ferror(fp) || fgetc(fp) != EOF;
    fclose(fp);
    if (failed) {
        fprintf(stderr, "fuzz: %s: unreadable or larger than %d bytes\n", path, INPUT_SIZE_MAX);
        return -1;
    }
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const input *)a)->name, ((const input *)b)->name);
}

/* Appends the file at path to c, named name; returns 0 or -1. */
static int corpus_add(corpus *c, const char *path, const char *name)
{
    input *items = realloc(c->items, (c->n + 1) * sizeof *items);
    if (!items) {
        fprintf(stderr, "fuzz: out of memory\n");
        return -1;
    }
    c->items = items;
    input *in = &c->items[c->n];
    *in = (input){.name = strdup(name)};
    c->n++;
    if (!in->name) {
        fprintf(stderr, "fuzz: out of memory\n");
        return -1;
    }
    return read_input(path, in);
}

/* Appends every regular, non-hidden file of dir to c, sorted by name. */
static int corpus_load_dir(const char *dir, corpus *c)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    size_t first = c->n;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        char path[4096];
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        rc = corpus_add(c, path, e->d_name);
    }
    closedir(d);
    if (rc == 0)
        qsort(c->items + first, c->n - first, sizeof *c->items, by_name);
    return rc;
}

/* Appends path to c: every file of it if it is a directory, else itself. */
static int corpus_load(const char *path, corpus *c)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return S_ISDIR(st.st_mode) ? corpus_load_dir(path, c) : corpus_add(c, path, path);
}

/* ---- Mutations ---------------------------------------------------------- */

/* splitmix64: small, fast, and the same sequence everywhere. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A number in [0, n); n > 0. The modulo bias is irrelevant here. */
static size_t rng_below(uint64_t *state, size_t n)
{
    return (size_t)(rng_next(state) % n);
}

/* Bytes that change how JSON or msgpack reads what follows. */
static const uint8_t special_bytes[] = {
    0x00, 0x01, 0x1f, 0x7f, 0x80, 0xff,                     /* boundaries */
    '"', '\\', '{', '}', '[', ']', ':', ',', '-', '.', 'e', /* JSON */
    0xa0, 0x90, 0x80, 0xc0, 0xc1, 0xc4, 0xca, 0xcb, 0xcf,  /* msgpack */
    0xd3, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0,
    0xc2, 0xe0, 0xed, 0xf0, 0xf4, 0xf5,                     /* UTF-8 leads */
};

static uint8_t random_byte(uint64_t *rng)
{
    if (rng_below(rng, 2))
        return special_bytes[rng_below(rng, sizeof special_bytes)];
    return (uint8_t)rng_next(rng);
}

/* Applies one random mutation to buf (size bytes, room for INPUT_SIZE_MAX);
 * returns the new size. */
static size_t mutate(uint64_t *rng, const corpus *c, uint8_t *buf, size_t size)
{
    switch (rng_below(rng, 5)) {
    case 0: /* flip one bit */
        if (size > 0)
            buf[rng_below(rng, size)] ^= (uint8_t)(1u << rng_below(rng, 8));
        return size;
    case 1: /* truncate */
        return size > 0 ? rng_below(rng, size) : 0;
    case 2: { /* splice: keep a head of buf, append a tail of another input */
        const input *other = &c->items[rng_below(rng, c->n)];
        size_t cut = rng_below(rng, size + 1);
        size_t from = rng_below(rng, other->size + 1);
        size_t n = other->size - from;
        if (n > INPUT_SIZE_MAX - cut)
            n = INPUT_SIZE_MAX - cut;
        memcpy(buf + cut, other->data + from, n);
        return cut + n;
    }
    case 3: { /* insert a byte */
        if (size == INPUT_SIZE_MAX)
            return size;
        size_t at = rng_below(rng, size + 1);
        memmove(buf + at + 1, buf + at, size - at);
        buf[at] = random_byte(rng);
        return size + 1;
    }
    default: /* overwrite a byte */
        if (size > 0)
            buf[rng_below(rng, size)] = random_byte(rng);
        return size;
    }
}

/* ---- Main --------------------------------------------------------------- */

static int parse_iters(size_t *out)
{
    const char *s = getenv("KCHAT_FUZZ_ITERS");
    if (!s || !*s) {
        *out = DEFAULT_ITERS;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || *s == '-' || v > SIZE_MAX) {
        fprintf(stderr, "fuzz: KCHAT_FUZZ_ITERS must be a non-negative integer, not '%s'\n", s);
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    size_t iters;
    corpus c = {0};
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [DIR_OR_FILE...]\n", argv[0]);
        return 2;
    }
    if (parse_iters(&iters) != 0)
        return 2;
    for (int i = 1; i < argc; i++)
        if (corpus_load(argv[i], &c) != 0) {
            corpus_free(&c);
            return 2;
        }
    install_crash_report();

    for (size_t i = 0; i < c.n; i++) {
        current.file = c.items[i].name;
        run_input(c.items[i].data, c.items[i].size);
    }
    current.file = NULL;

    /* Mutations need something to start from. */
    static uint8_t nothing[1];
    static char empty_name[] = "(empty)";   /* input.name is not const: it is freed */
    input empty = {.name = empty_name, .data = nothing, .size = 0};
    corpus seeds = c.n > 0 ? c : (corpus){.items = &empty, .n = 1};

    uint8_t *buf = malloc(INPUT_SIZE_MAX);
    if (!buf) {
        fprintf(stderr, "fuzz: out of memory\n");
        corpus_free(&c);
        return 1;
    }
    uint64_t rng = RNG_SEED;
    for (size_t i = 0; i < iters; i++) {
        const input *base = &seeds.items[rng_below(&rng, seeds.n)];
        size_t size = base->size;
        memcpy(buf, base->data, size);
        for (size_t k = 1 + rng_below(&rng, MAX_STACKED); k > 0; k--)
            size = mutate(&rng, &seeds, buf, size);
        current.mutation = i + 1;
        run_input(buf, size);
    }
    free(buf);

    printf("fuzz: %zu inputs, 0 crashes\n", c.n + iters);
    corpus_free(&c);
    return 0;
}

#endif /* KCHAT_LIBFUZZER */
