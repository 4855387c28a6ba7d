/* The option table and its parsers (include/kchat/config.h). */
#include "kchat/config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/error.h"

/* OPT_LIST: a string to which every repeat of the option adds ",VALUE". */
enum opt_type { OPT_STR, OPT_LIST, OPT_INT, OPT_LONG, OPT_BOOL };

struct opt {
    const char *name;
    enum opt_type type;
    size_t offset;
    const char *def;
    long min, max;
    const char *help;
};

#define O(field) offsetof(kchat_config, field)

static const struct opt opts[] = {
    {"brokers", OPT_STR, O(brokers), "", 0, 0,
     "Kafka bootstrap servers (host:port,...). Empty: start the embedded broker "
     "(librdkafka's in-memory mock cluster) in this process."},
    {"data", OPT_STR, O(data_dir), "./data", 0, 0,
     "Directory of the LMDB shards (shard-NNNN/) and the directory replica."},
    {"bootstrap-file", OPT_STR, O(bootstrap_file), "", 0, 0,
     "When set, the bootstrap servers are written to this file (one line) once "
     "the topics exist and the process is consuming."},
    {"deployment", OPT_STR, O(deployment), "kchat", 0, 0,
     "The deployment this process belongs to (1 to 40 letters, digits, _ or -). Nodes "
     "and gateways of one deployment share its topics; every deployment but the "
     "default `kchat` prefixes every topic name with `NAME.`, so that several "
     "deployments share one Kafka cluster and stay apart."},
    {"group-id", OPT_STR, O(group_id), "", 0, 0,
     "Consumer group of the backend processes. Empty: the deployment name."},
    {"secret-file", OPT_STR, O(secret_file), "", 0, 0,
     "The deployment secret, written by `kchat keygen FILE` (mode 0600, 64 hex digits); "
     "every backend and gateway of a deployment reads the same one. Every record kchat "
     "writes then carries a MAC keyed by it, and readers drop (and count) what does not "
     "verify; a gateway's requests (passwords included), its kchat-session headers and "
     "the answers to them cross Kafka sealed by it (docs/security.md). Empty: `kchat dev` "
     "makes and uses DATA/secret; serve and gateway run without one and say loudly that "
     "anyone who can write kchat's topics can then forge answers and events."},
    {"events-format", OPT_STR, O(events_format), "json", 0, 0,
     "Encoding of chat-events records: json or msgpack."},
    {"partitions", OPT_INT, O(partitions), "8", 1, 1024,
     "Partitions of each co-partitioned topic, created when missing. Also the "
     "number of shards; fixed for the life of a data directory."},
    {"replication", OPT_INT, O(replication), "0", 0, 16,
     "Replication factor of created topics; 0 means min(3, brokers)."},
    {"embedded-brokers", OPT_INT, O(embedded_brokers), "3", 1, 16,
     "Brokers of the embedded mock cluster."},
    {"workers", OPT_INT, O(workers), "0", 0, 256,
     "Actor workers; shard p belongs to worker p mod workers. 0: one per CPU."},
    {"ring-capacity", OPT_INT, O(ring_capacity), "1024", 2, 1 << 20,
     "Slots of each (topic thread, worker) ring; a full ring pauses its partition."},
    {"max-batch", OPT_INT, O(max_batch), "512", 1, 65536,
     "Most requests one worker applies in one group commit."},
    {"linger-ms", OPT_INT, O(linger_ms), "1", 0, 1000,
     "Producer linger.ms for responses, events and commands."},
    {"fetch-wait-ms", OPT_INT, O(fetch_wait_ms), "-1", -1, 300000,
     "How long a fetch of the backend's request consumer and of the gateway's reply "
     "and event consumers may wait at the broker for new records (librdkafka "
     "fetch.wait.max.ms). -1 picks by broker: 10 ms on librdkafka's mock cluster (the "
     "embedded broker, `kchat broker`), whose fetch waits that long even when a record "
     "arrives meanwhile; 100 ms on Kafka, which answers a waiting fetch as soon as a "
     "record arrives, so the longer wait adds no latency and an idle consumer sends 10 "
     "fetches a second to each broker instead of 100. The broker kind is told by its "
     "cluster id (a gateway that cannot reach Kafka within 2 s at start takes Kafka's). "
     "`-X fetch.wait.max.ms=N` overrides it."},
    {"changelog", OPT_STR, O(changelog), "auto", 0, 0,
     "Keep every shard's changes in the compacted topic kchat-changelog too (on, off, "
     "auto): an answer is then produced only once Kafka has the changes it reports, "
     "so they outlive the node's disk (docs/design.md, \"Changelog\"). auto: on with "
     "--brokers, off on the embedded broker, whose records die with the process."},
    {"shard-sync", OPT_STR, O(shard_sync), "auto", 0, 0,
     "How a shard's LMDB commit reaches the disk, with a changelog on a real Kafka (auto, "
     "kafka, always); without a changelog, and on the embedded broker, a commit always "
     "takes LMDB's two fsyncs. kafka: no fsync at all, since Kafka holds every change "
     "before anything reports it, and a copy a machine restart caught unsynced is set "
     "aside at the next start and the shard restored whole from kchat-changelog "
     "(docs/design.md, \"No fsync with a changelog on Kafka\"). auto: kafka when "
     "kchat-changelog has two replicas or more (an acknowledged change outlives any one "
     "machine), else one fsync per commit (LMDB's meta page waits for the next commit: "
     "a machine crash can undo the last commit, which Kafka held). always: both fsyncs, "
     "so that an answered change never rests on the brokers alone (Kafka does not fsync "
     "by default)."},
    {"local-commands", OPT_BOOL, O(local_commands), "true", 0, 0,
     "Hand a command to a shard this process serves, and that shard's acknowledgement "
     "back, in memory instead of through kchat-internal, so that neither waits for a "
     "fetch (docs/design.md, \"In memory, within one process\"); the source's outbox "
     "stays the copy of record, and while something of the stream waits in Kafka the "
     "command goes through Kafka too. --no-local-commands sends every command and ack "
     "through Kafka, as between nodes (the tests of command delivery under broker faults "
     "do)."},
    {"changelog-copy-max-age", OPT_LONG, O(changelog_copy_max_age), "43200", 1, 1L << 40,
     "Seconds a shard's local copy may be behind kchat-changelog and still catch up by "
     "reading only the changes after its own; an older copy is set aside and the shard "
     "restored whole. Kafka removes a deletion (tombstone) from the compacted topic "
     "delete.retention.ms after compacting it (kchat creates the topic with 1 day), so "
     "an older copy could miss deletions and keep rows that are gone (a logged-out "
     "session, a left room). Keep it well under the topic's delete.retention.ms: the age "
     "is told by the record timestamps the writing nodes' clocks gave."},
    {"standby-replicas", OPT_INT, O(standby_replicas), "0", 0, 8,
     "With a changelog: how many other nodes keep a warm copy of each shard by following "
     "its kchat-changelog partition, so that taking it over applies only the last changes "
     "(docs/scaling.md, \"Standby replicas\")."},
    {"map-size-mb", OPT_INT, O(map_size_mb), "1024", 1, 1 << 22,
     "LMDB map size of each shard, in MiB (address space, not disk)."},
    {"pwhash-ops", OPT_LONG, O(pwhash_ops), "2", 1, 1L << 30,
     "Argon2id opslimit for password hashes (libsodium; 2 = INTERACTIVE)."},
    {"pwhash-mem", OPT_LONG, O(pwhash_mem), "67108864", 8192, 1L << 40,
     "Argon2id memlimit in bytes (67108864 = 64 MiB = INTERACTIVE)."},
    {"session-idle", OPT_LONG, O(session_idle), "604800", 1, 1L << 40,
     "Seconds a session may stay unused before it expires (default 7 days). The gateway "
     "uses it as the session cookie's Max-Age: give a separate gateway the same value."},
    {"session-check", OPT_BOOL, O(session_check), "true", 0, 0,
     "Require the kchat-session header. Turn off only for the original front "
     "end, which sends none; the server warns loudly at start when it is off."},
    {"login-max-failures", OPT_INT, O(login_max_failures), "5", 1, 1000000,
     "Failed logins of one user id within login-window seconds after which its logins "
     "are refused, even with the right password, for login-lockout seconds (answer "
     "BAD_CREDENTIALS with retryAfterMs; the gateway answers 401 with Retry-After). "
     "Unknown user ids count too. Each device that logged in before (the gateway's "
     "kchat-device header; the user's 16 most recent are stored with the user) has its "
     "own count; every other login of the id (unknown or no device) shares the id's "
     "count. Counted in memory by the user's shard: a restart forgets the counts."},
    {"login-window", OPT_INT, O(login_window), "300", 1, 31536000,
     "Seconds over which failed logins of one user id are counted; the count starts "
     "with the first failure and starts over once the window has passed."},
    {"login-lockout", OPT_INT, O(login_lockout), "60", 0, 31536000,
     "Seconds a user id (or one of its known devices) stays locked after "
     "login-max-failures failures; the password is not even checked meanwhile. A successful login resets the count. 0 turns login "
     "throttling off."},
    {"login-addr-max-failures", OPT_INT, O(login_addr_max_failures), "20", 1, 1000000,
     "Gateway: failed logins (any user id) from one client address within "
     "login-addr-window seconds after which the gateway answers that address's logins "
     "429 TOO_MANY_REQUESTS with Retry-After until the window ends. Counted in memory "
     "in a fixed table of 4096 addresses (the oldest of a set evicted)."},
    {"login-addr-window", OPT_INT, O(login_addr_window), "300", 1, 31536000,
     "Gateway: seconds over which failed logins of one client address are counted; the "
     "count starts with the first failure and starts over once the window has passed."},
    {"trusted-proxy", OPT_LIST, O(trusted_proxy), "", 0, 0,
     "Gateway: an address or range (ADDRESS/BITS, IPv4 or IPv6) of a reverse proxy "
     "whose X-Forwarded-For (else Forwarded: for=) names the client for the per-address "
     "login limit; repeatable, or a comma-separated list. From any other peer those "
     "headers are ignored and the peer's address counts. Empty: trust none."},
    {"login-retention-ms", OPT_LONG, O(login_retention_ms), "3600000", 1000, 1L << 40,
     "retention.ms of the login-request and user-add-request topics (their records "
     "carry passwords) when kchat creates them; existing topics are left as they are "
     "(see docs/security.md)."},
    {"metrics-http", OPT_STR, O(metrics_http), "", 0, 0,
     "Backend (`kchat serve`): when set (host:port), serve GET /healthz, /readyz and "
     "/metrics (Prometheus text) there. `kchat dev` shows the backend's metrics on the "
     "gateway's /metrics instead."},
    {"http", OPT_STR, O(http), "127.0.0.1:8080", 0, 0,
     "Gateway (`kchat gateway`, `kchat dev`): HTTP listen address host:port; "
     "port 0 picks any free port."},
    {"url-file", OPT_STR, O(url_file), "", 0, 0,
     "Gateway: when set, its URL (http://HOST:PORT/) is written to this file (one "
     "line) once it listens and Kafka is ready."},
    {"web-dir", OPT_STR, O(web_dir), "./web", 0, 0,
     "Gateway: directory of the chat page; GET / serves index.html from it."},
    {"allow-origin", OPT_STR, O(allow_origin), "", 0, 0,
     "Gateway: other origins (scheme://host[:port], comma-separated) whose pages may make "
     "state-changing calls (POST, PUT, DELETE). The gateway's own origin is always allowed, "
     "and so is a call with no Origin header (curl, scripts); any other Origin, or "
     "Sec-Fetch-Site: cross-site, gets 403 FORBIDDEN (docs/security.md)."},
    {"http-timeout-ms", OPT_INT, O(http_timeout_ms), "5000", 100, 600000,
     "Gateway: how long an HTTP call waits for the backend's answer before 504 TIMEOUT."},
    {"http-request-timeout", OPT_INT, O(http_request_timeout), "10", 1, 3600,
     "Gateway: seconds a connection has to deliver each whole request (the first, and "
     "each next one from the end of the previous answer), however it trickles bytes; "
     "then it is closed."},
    {"http-idle-timeout", OPT_INT, O(http_idle_timeout), "30", 1, 3600,
     "Gateway: seconds an HTTP connection may stay silent, between requests or in "
     "the middle of one (a client trickling a request slower than that is dropped). "
     "Event streams are exempt: they get keep-alive comments instead."},
    {"max-pending", OPT_INT, O(max_pending), "10000", 1, 1 << 20,
     "Gateway: most HTTP calls waiting for a backend answer; when full, 503 UNAVAILABLE."},
    {"sse-max-per-user", OPT_INT, O(sse_max_per_user), "16", 1, 1 << 16,
     "Gateway: most open event streams (GET /api/events) per user."},
    {"sse-max-total", OPT_INT, O(sse_max_total), "10000", 1, 1 << 20,
     "Gateway: most open event streams in all."},
    {"catchup-max", OPT_INT, O(catchup_max), "4", 1, 256,
     "Gateway: most catch-up readers at once (one Kafka consumer each) for event streams "
     "resumed with a Last-Event-ID behind the live position. A reader serves every "
     "resuming stream of one partition; streams of other partitions wait for a free "
     "reader, and a stream not caught up within 10 s is closed (the browser resumes)."},
    {"sse-buffer-kb", OPT_INT, O(sse_buffer_kb), "256", 1, 1 << 20,
     "Gateway: output buffer of one event stream, in KiB; a stream whose client "
     "falls further behind is closed (the browser resumes with Last-Event-ID)."},
    {"gateway-processes", OPT_INT, O(gateway_processes), "1", 1, 64,
     "`kchat gateway`: processes serving the --http address together (SO_REUSEPORT: the "
     "kernel spreads new connections over them). Each is a whole gateway with its own "
     "Kafka clients, streams and limits (max-pending, sse-max-total and sse-max-per-user "
     "count per process; /metrics answers for the process that took the connection). "
     "More than one spreads the fan-out of events over cores and lets the event streams "
     "of one address exceed one process's descriptor limit. One process dying stops "
     "the others and the gateway exits 1. `kchat dev` is one process: only 1 there."},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const struct opt *opt_find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

KCHAT_MUST_CHECK
static int opt_set(kchat_config *c, const struct opt *o, const char *val,
                   char *errstr, size_t errstr_size)
{
    char *field = (char *)c + o->offset;
    char *end;
    long n;

    switch (o->type) {
    case OPT_STR: {
        char *dup = strdup(val);
        if (dup == NULL)
            return KCHAT_ENOMEM;
        free(*(char **)field);
        *(char **)field = dup;
        return KCHAT_OK;
    }
    case OPT_LIST: {
        const char *old = *(char **)field ? *(char **)field : "";
        size_t len = strlen(old) + 1 + strlen(val) + 1;
        char *cat = malloc(len);
        if (cat == NULL)
            return KCHAT_ENOMEM;
        snprintf(cat, len, "%s%s%s", old, old[0] && val[0] ? "," : "", val);
        free(*(char **)field);
        *(char **)field = cat;
        return KCHAT_OK;
    }
    case OPT_BOOL:
        if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "yes"))
            *(bool *)field = true;
        else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "no"))
            *(bool *)field = false;
        else
            goto err_value;
        return KCHAT_OK;
    case OPT_INT:
    case OPT_LONG:
        errno = 0;
        n = strtol(val, &end, 10);
        if (errno || end == val || *end != '\0' || n < o->min || n > o->max)
            goto err_value;
        if (o->type == OPT_INT)
            *(int *)field = (int)n;
        else
            *(long *)field = n;
        return KCHAT_OK;
    }
err_value:
    if (o->type == OPT_BOOL)
        snprintf(errstr, errstr_size, "option %s expects true or false, got \"%s\"",
                 o->name, val);
    else if (o->type == OPT_STR)
        snprintf(errstr, errstr_size, "option %s: bad value \"%s\"", o->name, val);
    else
        snprintf(errstr, errstr_size, "option %s expects an integer in %ld..%ld, got \"%s\"",
                 o->name, o->min, o->max, val);
    return KCHAT_ECONFIG;
}

KCHAT_MUST_CHECK
static int config_validate(const kchat_config *c, char *errstr, size_t errstr_size)
{
    if (strcmp(c->events_format, "json") && strcmp(c->events_format, "msgpack")) {
        snprintf(errstr, errstr_size, "events-format must be json or msgpack, got \"%s\"",
                 c->events_format);
        return KCHAT_ECONFIG;
    }
    if (strcmp(c->changelog, "auto") && strcmp(c->changelog, "on") &&
        strcmp(c->changelog, "off")) {
        snprintf(errstr, errstr_size, "changelog must be on, off or auto, got \"%s\"",
                 c->changelog);
        return KCHAT_ECONFIG;
    }
    if (strcmp(c->shard_sync, "auto") && strcmp(c->shard_sync, "kafka") &&
        strcmp(c->shard_sync, "always")) {
        snprintf(errstr, errstr_size, "shard-sync must be auto, kafka or always, got \"%s\"",
                 c->shard_sync);
        return KCHAT_ECONFIG;
    }
    if (c->data_dir[0] == '\0') {
        snprintf(errstr, errstr_size, "data must name a directory");
        return KCHAT_ECONFIG;
    }
    return KCHAT_OK;
}

const char *kchat_config_group(const kchat_config *c)
{
    return c->group_id[0] != '\0' ? c->group_id : c->deployment;
}

int kchat_config_fetch_wait_ms(const kchat_config *c, bool mock)
{
    static const char key[] = "fetch.wait.max.ms=";

    for (int i = 0; i < c->n_x; i++)
        if (strncmp(c->x[i], key, sizeof(key) - 1) == 0)
            return -1;
    if (c->fetch_wait_ms >= 0)
        return c->fetch_wait_ms;
    return mock ? KCHAT_FETCH_WAIT_MOCK_MS : KCHAT_FETCH_WAIT_KAFKA_MS;
}

int kchat_config_init(kchat_config *c)
{
    char errstr[256];

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < N_OPTS; i++) {
        int rc = opt_set(c, &opts[i], opts[i].def, errstr, sizeof(errstr));
        if (rc != KCHAT_OK) {
            kchat_config_release(c);
            return rc;
        }
    }
    return KCHAT_OK;
}

void kchat_config_release(kchat_config *c)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].type == OPT_STR || opts[i].type == OPT_LIST) {
            char **field = (char **)((char *)c + opts[i].offset);
            free(*field);
            *field = NULL;
        }
    for (int i = 0; i < c->n_x; i++)
        free(c->x[i]);
    c->n_x = 0;
}

KCHAT_MUST_CHECK
static int add_x(kchat_config *c, const char *kv, char *errstr, size_t errstr_size)
{
    if (c->n_x == KCHAT_CONFIG_MAX_X) {
        snprintf(errstr, errstr_size, "more than %d -X properties", KCHAT_CONFIG_MAX_X);
        return KCHAT_ECONFIG;
    }
    if (strchr(kv, '=') == NULL) {
        snprintf(errstr, errstr_size, "-X expects key=value, got \"%s\"", kv);
        return KCHAT_ECONFIG;
    }
    if ((c->x[c->n_x] = strdup(kv)) == NULL)
        return KCHAT_ENOMEM;
    c->n_x++;
    return KCHAT_OK;
}

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

int kchat_config_load_file(kchat_config *c, const char *path,
                           char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int lineno = 0, rc = KCHAT_OK;

    if (f == NULL) {
        snprintf(errstr, errstr_size, "cannot read config file %s: %s", path, strerror(errno));
        return KCHAT_EIO;
    }
    while (rc == KCHAT_OK && fgets(line, sizeof(line), f) != NULL) {
        char *s = trim(line), *eq, *name, *val;
        const struct opt *o;

        lineno++;
        if (*s == '\0' || *s == '#')
            continue;
        if ((eq = strchr(s, '=')) == NULL) {
            snprintf(errstr, errstr_size, "%s:%d: expected name = value", path, lineno);
            rc = KCHAT_ECONFIG;
            break;
        }
        *eq = '\0';
        name = trim(s);
        val = trim(eq + 1);
        if (!strcmp(name, "X") || !strncmp(name, "kafka.", 6)) {
            /* "X = prop=value" or "kafka.prop = value" pass through to librdkafka */
            char kv[4096];
            if (name[0] == 'X')
                snprintf(kv, sizeof(kv), "%s", val);
            else
                snprintf(kv, sizeof(kv), "%s=%s", name + 6, val);
            rc = add_x(c, kv, errstr, errstr_size);
            continue;
        }
        if ((o = opt_find(name, strlen(name))) == NULL) {
            snprintf(errstr, errstr_size, "%s:%d: unknown option \"%s\"", path, lineno, name);
            rc = KCHAT_ECONFIG;
            break;
        }
        rc = opt_set(c, o, val, errstr, errstr_size);
    }
    fclose(f);
    if (rc == KCHAT_OK)
        rc = config_validate(c, errstr, errstr_size);
    return rc;
}

int kchat_config_parse_args(kchat_config *c, int argc, char **argv, int first,
                            char *errstr, size_t errstr_size)
{
    int rc;

    /* The config file first, so flags override it wherever they appear. */
    for (int i = first; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 == argc) {
                snprintf(errstr, errstr_size, "--config needs a file name");
                return KCHAT_ECONFIG;
            }
            if ((rc = kchat_config_load_file(c, argv[i + 1], errstr, errstr_size)) != KCHAT_OK)
                return rc;
        }
    }
    for (int i = first; i < argc; i++) {
        const char *a = argv[i], *val, *eq;
        const struct opt *o;
        size_t len;

        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "-X", 2)) {
            val = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (val == NULL) {
                snprintf(errstr, errstr_size, "-X needs key=value");
                return KCHAT_ECONFIG;
            }
            if ((rc = add_x(c, val, errstr, errstr_size)) != KCHAT_OK)
                return rc;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(errstr, errstr_size, "unexpected argument \"%s\" (see --help)", a);
            return KCHAT_ECONFIG;
        }
        a += 2;
        eq = strchr(a, '=');
        len = eq ? (size_t)(eq - a) : strlen(a);
        o = opt_find(a, len);
        if (o == NULL && len > 3 && !strncmp(a, "no-", 3) && eq == NULL &&
            (o = opt_find(a + 3, len - 3)) != NULL && o->type == OPT_BOOL) {
            *(bool *)((char *)c + o->offset) = false;
            continue;
        }
        if (o == NULL) {
            snprintf(errstr, errstr_size, "unknown option --%.*s (see --help)", (int)len, a);
            return KCHAT_ECONFIG;
        }
        if (eq)
            val = eq + 1;
        else if (o->type == OPT_BOOL)
            val = "true";
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            snprintf(errstr, errstr_size, "option --%s needs a value", o->name);
            return KCHAT_ECONFIG;
        }
        if ((rc = opt_set(c, o, val, errstr, errstr_size)) != KCHAT_OK)
            return rc;
    }
    return config_validate(c, errstr, errstr_size);
}

static const char *type_name(enum opt_type t)
{
    switch (t) {
    case OPT_STR: return "string";
    case OPT_LIST: return "list";
    case OPT_INT:
    case OPT_LONG: return "integer";
    case OPT_BOOL: return "bool";
    }
    return "?";
}

void kchat_config_usage(FILE *out, const char *command)
{
    fprintf(out, "usage: kchat %s [options]\n\noptions (flag --name value, or name = value "
                 "in a --config file):\n", command);
    fprintf(out, "  --config FILE\n      read options from FILE first; flags override it.\n");
    fprintf(out, "  -X key=value\n      pass a librdkafka property through (TLS, SASL, ...); "
                 "repeatable.\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        fprintf(out, "  --%s %s   (default: %s)\n      %s\n", o->name,
                o->type == OPT_BOOL ? "[true|false]" : type_name(o->type),
                o->def[0] ? o->def : "\"\"", o->help);
    }
    if (!strcmp(command, "serve"))
        fprintf(out, "  --no-session-check\n      same as --session-check false.\n");
}

void kchat_config_markdown(FILE *out)
{
    fprintf(out, "# Configuration\n\n"
                 "Generated by `kchat config-doc` from the option table in "
                 "`src/app/config.c`; do not edit by hand.\n\n"
                 "Every option is a flag (`--name value` or `--name=value`) and a line "
                 "of a config file (`name = value`, read with `--config FILE`). Flags "
                 "override the file. `-X key=value` (or `X = key=value` / "
                 "`kafka.key = value` in the file) passes any librdkafka property "
                 "through, e.g. `-X security.protocol=SASL_SSL`, except those kchat's "
                 "guarantees rest on, which it sets over `-X`: among them the producers' "
                 "`enable.idempotence` and transactional settings, and the request "
                 "consumer's offsets (`enable.auto.commit=false`, and "
                 "`auto.offset.reset=earliest`, so that a stored offset the partition "
                 "no longer has is read from its first record).\n\n"
                 "| option | type | default | range | description |\n"
                 "| --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        char range[64] = "";
        if (o->type == OPT_INT || o->type == OPT_LONG)
            snprintf(range, sizeof(range), "%ld..%ld", o->min, o->max);
        fprintf(out, "| `%s` | %s | %s%s%s | %s | %s |\n", o->name, type_name(o->type),
                o->def[0] ? "`" : "", o->def[0] ? o->def : "(empty)", o->def[0] ? "`" : "",
                range, o->help);
    }
}
