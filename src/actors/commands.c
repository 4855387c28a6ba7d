/*
 * Internal commands between shards (docs/design.md, "Command streams").
 *
 * Each (source, target) pair is a stream numbered 1, 2, 3, ... by the
 * source (kchat__command() in reply.c). The source keeps every command in
 * its outbox, listed as pending, until the target's "last seq applied from
 * source" covers it; it learns that mark from the target's acknowledgements
 * (commands_acks.c), which it keeps in its own store. A target applies only
 * the next seq of a stream; when it stops moving, or Kafka refused one of
 * the commands, the source produces the whole stream again ("go back N").
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "ops.h"
#include "presence.h"
#include "streams.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define ACK_CHECK_MS 50          /* how often a shard asks whether its commands were applied */
#define CMD_RESEND_MS 2000       /* a target stuck this long below our commands: produce them again */
#define CMD_RESEND_MAX_MS 30000  /* ... doubling up to this while it stays stuck */

int kchat__parse_u64(const void *v, size_t len, uint64_t *out)
{
    char buf[24];
    char *end;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtoull(buf, &end, 10);
    return errno || *end ? -1 : 0;
}

uint64_t kchat__header_u64(const kchat_header *h, size_t n, const char *name)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        if (!strcmp(h[i].name, name) && kchat__parse_u64(h[i].value, h[i].len, &v))
            v = 0;
    return v;
}

/* ---- the source's side: pending commands ---- */

uint64_t kchat__streams_cseq(const kchat_outbox_rec *r)
{
    return kchat__header_u64(r->headers, r->n_headers, KCHAT_HDR_CMD_SEQ);
}

uint64_t kchat__streams_base(const kchat_backend *be, const struct shard *sh,
                             const kchat_outbox_rec *r)
{
    uint64_t cseq = kchat__streams_cseq(r), low;

    if (cseq == 0 || sh->links == NULL || r->partition < 0 || r->partition >= be->partitions)
        return 0;
    low = sh->links[r->partition].low;
    return low > 0 && low < cseq ? low : cseq;
}

void kchat__streams_produced(const kchat_backend *be, struct shard *sh,
                             const kchat_outbox_rec *r)
{
    uint64_t cseq;

    /* The links exist for every pending command (kchat__streams_pending_add()
     * comes first), and only a pending command is produced. */
    if (r->kind != OUT_COMMAND || sh->links == NULL || r->partition < 0 ||
        r->partition >= be->partitions || (cseq = kchat__streams_cseq(r)) == 0)
        return;
    if (cseq > sh->links[r->partition].kafka_high)
        sh->links[r->partition].kafka_high = cseq;
}

int kchat__streams_reserve(kchat_backend *be, struct shard *sh, size_t n)
{
    size_t cap = sh->cap_cmds ? sh->cap_cmds : 64;
    struct pending_cmd *nv;

    if (sh->links == NULL &&
        (kchat__test_alloc_fails() ||
         (sh->links = calloc((size_t)be->partitions, sizeof(*sh->links))) == NULL))
        return KCHAT_ENOMEM;
    if (sh->n_cmds + n <= sh->cap_cmds)
        return KCHAT_OK;
    while (cap < sh->n_cmds + n)
        cap *= 2;
    if (kchat__test_alloc_fails() || (nv = realloc(sh->cmds, cap * sizeof(*nv))) == NULL)
        return KCHAT_ENOMEM;
    sh->cmds = nv;
    sh->cap_cmds = cap;
    return KCHAT_OK;
}

int kchat__streams_pending_add(kchat_backend *be, struct shard *sh, uint64_t seq,
                               uint32_t target, uint64_t cseq)
{
    struct cmd_link *l;
    int rc;

    if ((rc = kchat__streams_reserve(be, sh, 1)) != KCHAT_OK)
        return rc;
    sh->cmds[sh->n_cmds++] = (struct pending_cmd){.seq = seq, .cseq = cseq, .target = target};
    l = &sh->links[target];
    if (l->n_pending++ == 0) {   /* the stream was idle: its clock starts now */
        l->since_ms = kchat__now_ms();
        l->backoff_ms = CMD_RESEND_MS;
        l->low = 0;
    }
    if (cseq > 0 && (l->low == 0 || cseq < l->low))
        l->low = cseq;
    return KCHAT_OK;
}

static int cmd_by_cseq(const void *a, const void *b)
{
    const struct pending_cmd *x = a, *y = b;
    return x->cseq < y->cseq ? -1 : x->cseq > y->cseq;
}

/* Go back N: produce again, in stream order, every command to @p target the
 * target has not applied. The target applies only the seq it expects next,
 * so one lost or overtaken command holds back those after it until this
 * sends them all again; repeats are dropped there. Errors: KCHAT_ENOMEM,
 * store errors (what was produced before stays produced).
 * @locality worker that owns @p sh */
KCHAT_MUST_CHECK
static int cmds_resend(kchat_backend *be, struct shard *sh, kchat_txn *t, uint32_t target,
                       int64_t now)
{
    const struct cmd_link *l = &sh->links[target];
    struct pending_cmd *v = malloc(sh->links[target].n_pending * sizeof(*v));
    size_t n = 0;
    int rc = KCHAT_OK;

    if (v == NULL)
        return KCHAT_ENOMEM;
    for (size_t i = 0; i < sh->n_cmds; i++)
        if (sh->cmds[i].target == target && sh->cmds[i].cseq > 0 &&
            n < sh->links[target].n_pending)
            v[n++] = sh->cmds[i];
    qsort(v, n, sizeof(*v), cmd_by_cseq);
    if (n == 0)
        ;   /* only an older kchat's commands: produced once, at start */
    else if (l->resend_now)
        fprintf(stderr, "kchat: shard %u: a command to shard %u was refused; producing its "
                "%zu unapplied commands again, in order\n", sh->id, target, n);
    else
        fprintf(stderr, "kchat: shard %u: shard %u applied none of our %zu pending commands "
                "in %.1f s (it stands at %" PRIu64 "); producing them again\n", sh->id,
                target, n, (double)(now - l->since_ms) / 1000.0, l->applied);
    for (size_t i = 0; rc == KCHAT_OK && i < n; i++)
        rc = kchat__outbox_produce_again(be, sh, t, v[i].seq);
    atomic_fetch_add(&be->stats.command_resends, n);
    free(v);
    return rc;
}

/* Take each target's acknowledged mark for us from this shard's own store
 * (commands_acks.c keeps it), once per check; a mark that moved restarts
 * its stream's clock. Errors: store errors.
 * @locality worker that owns @p sh */
KCHAT_MUST_CHECK
static int links_read(kchat_backend *be, struct shard *sh, kchat_txn *t, int64_t now)
{
    for (int p = 0; p < be->partitions; p++) {
        struct cmd_link *l = &sh->links[p];
        uint64_t acked = 0;
        int rc;

        if (l->n_pending == 0)
            continue;
        if ((rc = kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_ACKED, (uint32_t)p, &acked)) !=
            KCHAT_OK)
            return rc;
        if (acked != l->applied) {
            l->applied = acked;
            l->since_ms = now;
            l->backoff_ms = CMD_RESEND_MS;
        }
    }
    return KCHAT_OK;
}

/* Delete, in @p t, the pending commands their targets applied, then take
 * each stream's lowest pending seq again.
 * @locality worker that owns @p sh */
KCHAT_MUST_CHECK
static int cmds_delete_applied(kchat_backend *be, struct shard *sh, kchat_txn *t)
{
    int rc;

    for (size_t i = 0; i < sh->n_cmds;) {
        struct pending_cmd *pc = &sh->cmds[i];
        struct cmd_link *l = &sh->links[pc->target];

        if (pc->cseq > 0 ? l->applied >= pc->cseq : l->legacy_applied >= pc->seq) {
            rc = kchat_store_outbox_del(t, pc->seq);
            if (rc != KCHAT_OK && rc != KCHAT_ENOTFOUND)
                return rc;
            l->n_pending--;
            sh->cmds[i] = sh->cmds[--sh->n_cmds];
        } else {
            i++;
        }
    }
    for (int p = 0; p < be->partitions; p++)
        sh->links[p].low = 0;
    for (size_t i = 0; i < sh->n_cmds; i++) {
        struct cmd_link *l = &sh->links[sh->cmds[i].target];
        if (sh->cmds[i].cseq > 0 && (l->low == 0 || sh->cmds[i].cseq < l->low))
            l->low = sh->cmds[i].cseq;
    }
    return KCHAT_OK;
}

bool kchat__streams_due(const struct shard *sh)
{
    return sh->n_cmds > 0 && kchat__now_ms() - sh->last_ack_check_ms >= ACK_CHECK_MS;
}

int kchat__streams_check(kchat_backend *be, struct shard *sh, kchat_txn *t)
{
    int64_t now = kchat__now_ms();
    int rc;

    if (sh->n_cmds == 0 || now - sh->last_ack_check_ms < ACK_CHECK_MS)
        return KCHAT_OK;
    sh->last_ack_check_ms = now;
    if ((rc = links_read(be, sh, t, now)) != KCHAT_OK ||
        (rc = cmds_delete_applied(be, sh, t)) != KCHAT_OK)
        return rc;
    for (int p = 0; p < be->partitions; p++) {
        struct cmd_link *l = &sh->links[p];

        if (l->n_pending == 0 || (!l->resend_now && now - l->since_ms < l->backoff_ms))
            continue;
        /* A stream not produced again in full is again when its backoff
         * ends: its target still stands below it. */
        if ((rc = cmds_resend(be, sh, t, (uint32_t)p, now)) != KCHAT_OK)
            fprintf(stderr, "kchat: shard %u: cannot produce the commands to shard %d again "
                    "(%s); trying again in %.1f s\n", sh->id, p, kchat_strerror(rc),
                    (double)l->backoff_ms / 1000.0);
        l->resend_now = false;
        l->since_ms = now;
        l->backoff_ms = l->backoff_ms * 2 < CMD_RESEND_MAX_MS ? l->backoff_ms * 2
                                                               : CMD_RESEND_MAX_MS;
    }
    return KCHAT_OK;
}

bool kchat__streams_refused(struct shard *sh, uint64_t seq)
{
    /* Only after a refused delivery: a linear search. */
    for (size_t i = 0; i < sh->n_cmds; i++)
        if (sh->cmds[i].seq == seq) {
            sh->links[sh->cmds[i].target].resend_now = true;
            sh->last_ack_check_ms = 0;
            return true;
        }
    return false;
}

/* ---- the target's side: applying one ---- */

/* Where a command comes from: its source shard and outbox seq, its stream
 * seq (0 and streamed false: an older kchat's command, without one), the
 * run that numbered it and where that run numbered on from (0, 0: not
 * said), and its source's base (0: not said). From a record's headers
 * (command_origin()) or from a local command (kchat__command_apply_local()). */
struct origin {
    uint64_t src, seq, cseq, run, from, base;
    bool streamed;
};

/* Read command @p m's origin into @p o. When its source is missing or bad
 * it dead-letters the command and returns false, with the dead letter's
 * result in @p rc.
 * @locality worker that owns c->sh */
static bool command_origin(struct ctx *c, const rd_kafka_message_t *m, struct origin *o,
                           int *rc)
{
    const void *v;
    size_t vl;

    *o = (struct origin){0};
    if (kchat_header_get(m, KCHAT_HDR_SRC_SHARD, &v, &vl) ||
        kchat__parse_u64(v, vl, &o->src) ||
        kchat_header_get(m, KCHAT_HDR_SRC_SEQ, &v, &vl) || kchat__parse_u64(v, vl, &o->seq) ||
        o->src >= (uint64_t)c->be->partitions) {
        *rc = kchat__dead_letter(c, m, "internal command without a valid source");
        return false;
    }
    o->streamed = kchat_header_get(m, KCHAT_HDR_CMD_SEQ, &v, &vl) == 0;
    if (o->streamed && (kchat__parse_u64(v, vl, &o->cseq) || o->cseq == 0)) {
        *rc = kchat__dead_letter(c, m, "internal command with a bad kchat-cmd-seq");
        return false;
    }
    if (kchat_header_get(m, KCHAT_HDR_CMD_RUN, &v, &vl) || kchat__parse_u64(v, vl, &o->run) ||
        kchat_header_get(m, KCHAT_HDR_CMD_RUN_FROM, &v, &vl) ||
        kchat__parse_u64(v, vl, &o->from))
        o->run = o->from = 0;
    if (kchat_header_get(m, KCHAT_HDR_CMD_BASE, &v, &vl) || kchat__parse_u64(v, vl, &o->base))
        o->base = 0;
    return true;
}

/* Whether command @p o->cseq of its stream is the next one here, given the
 * last one applied (@p applied). A repeat is dropped; one that came before
 * an earlier one waits for its source to send the stream again; one whose
 * source no longer holds those between (its base is itself) skips them.
 * @p quiet (a local command): drop what is not next without a word or a
 * count, since its copy in Kafka will be judged too.
 * @locality worker that owns c->sh */
static bool command_is_next(struct ctx *c, const struct origin *o, uint64_t applied,
                            bool quiet)
{
    uint64_t cseq = o->cseq;

    if (cseq <= applied) {
        if (!quiet)
            atomic_fetch_add(&c->be->stats.duplicates, 1);
        return false;
    }
    if (quiet)
        return cseq == applied + 1;
    /* The source holds nothing below its base: what we miss below it was
     * applied here once, by data this shard no longer has (restored from
     * an older copy). Waiting would stop the stream for good. */
    if (cseq > applied + 1 && o->base == cseq) {
        fprintf(stderr, "kchat: shard %u: commands %" PRIu64 "..%" PRIu64 " from shard %" PRIu64
                " are gone: it saw them applied, but this shard's data has applied only up to "
                "%" PRIu64 " (restored from an older copy?); their effects are lost here, "
                "carrying on from %" PRIu64 "\n", c->sh->id, applied + 1, cseq - 1, o->src,
                applied, cseq);
        atomic_fetch_add(&c->be->stats.command_skips, cseq - 1 - applied);
        applied = cseq - 1;
    }
    if (cseq > applied + 1) {
        if (atomic_fetch_add(&c->be->stats.command_gaps, 1) < 20)
            fprintf(stderr, "kchat: shard %u: command %" PRIu64 " from shard %" PRIu64
                    " came before %" PRIu64 "; not applied until its source sends "
                    "them again in order\n", c->sh->id, cseq, o->src, applied + 1);
        return false;
    }
    return true;
}

/* Whether command @p o, the next of its stream after @p applied, comes from
 * a timeline we did not follow: its run numbered on from a seq below
 * @p applied, whose command came from another run. Every number given
 * before a run began is at most where it numbered on from, so a command
 * we applied above that, of another run, is one its source does not know
 * (restored from an older copy). It is not applied; the ack tells the
 * source, which numbers it again (commands_acks.c). @p quiet: not logged
 * or counted (a local command). The result lands in @p rc (store errors).
 * @locality worker that owns c->sh */
static bool command_forked(struct ctx *c, const struct origin *o, uint64_t applied, bool quiet,
                           int *rc)
{
    uint64_t last_run = 0;

    *rc = KCHAT_OK;
    if (o->run == 0 || o->from >= applied)
        return false;
    if ((*rc = kchat_store_cmdseq_get(c->txn, KCHAT_CMDSEQ_APPLIED_RUN, (uint32_t)o->src,
                                      &last_run)) != KCHAT_OK ||
        last_run == 0 || last_run == o->run)
        return false;
    if (!quiet && atomic_fetch_add(&c->be->stats.command_forks, 1) < 20)
        fprintf(stderr, "kchat: shard %u: command %" PRIu64 " from shard %" PRIu64 " numbers "
                "on from %" PRIu64 ", but we applied up to %" PRIu64 " from another of its "
                "runs (it was restored from an older copy?); not applied until it numbers "
                "its stream again\n", c->sh->id, applied + 1, o->src, o->from, applied);
    return true;
}

bool kchat__command_open(struct ctx *c, const json_t *cmd, char userbuf[66])
{
    const char *op = json_string_value(json_object_get(cmd, "op"));
    const char *user = json_string_value(json_object_get(cmd, "userId"));
    const char *cid;

    if (user == NULL)
        user = json_string_value(json_object_get(cmd, "writerId"));
    if (op == NULL || user == NULL || strlen(user) > 64)
        return false;
    snprintf(userbuf, 66, "%s", user);
    c->user_id = userbuf;
    c->fmt = json_integer_value(json_object_get(cmd, "fmt")) == KCHAT_FMT_MSGPACK
                 ? KCHAT_FMT_MSGPACK : KCHAT_FMT_JSON;
    if ((cid = json_string_value(json_object_get(cmd, "cid"))) != NULL &&
        sodium_hex2bin((unsigned char *)c->cid, sizeof(c->cid), cid, strlen(cid), NULL,
                       &c->cid_len, NULL) != 0)
        c->cid_len = 0;
    return true;
}

int kchat__command_dispatch(struct ctx *c, const json_t *cmd)
{
    const char *op = json_string_value(json_object_get(cmd, "op"));

    if (op == NULL)
        return KCHAT_EDECODE;
    if (!strcmp(op, "chat")) {
        c->op = KCHAT_OP_ADD_CHAT;
        return kchat__cmd_chat(c, cmd);
    }
    if (!strcmp(op, "history")) {
        c->op = KCHAT_OP_HISTORY;
        return kchat__cmd_history(c, cmd);
    }
    if (!strcmp(op, "member"))
        return kchat__cmd_member(c, cmd);
    if (!strcmp(op, "read"))
        return kchat__cmd_read(c, cmd);
    if (!strcmp(op, "invite"))
        return kchat__cmd_invite(c, cmd);
    if (!strcmp(op, "leave"))
        return kchat__cmd_leave(c, cmd);
    if (!strcmp(op, "unmember"))
        return kchat__cmd_unmember(c, cmd);
    if (!strcmp(op, "follow"))
        return kchat__cmd_follow(c, cmd);
    return KCHAT_EDECODE;
}

/* Decode the command @p payload (@p len bytes) and run it, its result in
 * @p rc (KCHAT_EDECODE: its fields do not decode). False when it names no
 * operation and user.
 * @locality worker that owns c->sh */
static bool command_run(struct ctx *c, const void *payload, size_t len, int *rc)
{
    json_t *cmd = json_loadb(payload ? payload : "", len, 0, NULL);
    char userbuf[66];

    if (!kchat__command_open(c, cmd, userbuf)) {
        json_decref(cmd);
        return false;
    }
    atomic_fetch_add(&c->be->stats.commands, 1);
    *rc = kchat__command_dispatch(c, cmd);
    json_decref(cmd);
    return true;
}

/* Apply command @p payload from @p o if it is the next of its stream, and
 * move the stream's applied mark. @p m: its record, to dead-letter it; NULL
 * for a local command, which is then dropped instead and judged quietly
 * (a Kafka copy, produced then or when its source sends the stream again,
 * will be dead-lettered). @p ran: set when it was run.
 * Errors: store errors.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int command_apply(struct ctx *c, const struct origin *o, const void *payload,
                         size_t len, const rd_kafka_message_t *m, bool *ran)
{
    bool quiet = m == NULL;
    uint64_t applied = 0;
    int rc;

    /* Applied, a repeat or early: the source hears where we stand, once
     * per transaction (a repeat means it lacks our word, e.g. the ack was
     * lost with the broker's records). A local copy too: it may have no
     * Kafka copy (local.c), and its source's ack goes in memory as well. */
    if ((rc = kchat__acks_note(c, (uint32_t)o->src)) != KCHAT_OK)
        return rc;
    /* A command with a stream seq is applied only as the next one from its
     * source: an earlier one may still be on its way again (a refused or
     * lost produce), and its source produces the whole stream again when
     * we stop moving. An older kchat's command (no stream seq) is applied
     * if its outbox seq is above the highest applied from that source. */
    rc = o->streamed
             ? kchat_store_cmdseq_get(c->txn, KCHAT_CMDSEQ_APPLIED, (uint32_t)o->src, &applied)
             : kchat_store_applied_get(c->txn, (uint32_t)o->src, &applied);
    if (rc != KCHAT_OK)
        return rc;
    if (!o->streamed && o->seq <= applied) {
        atomic_fetch_add(&c->be->stats.duplicates, 1);
        return KCHAT_OK;
    }
    if (o->streamed && !command_is_next(c, o, applied, quiet))
        return KCHAT_OK;
    if (o->streamed && command_forked(c, o, applied, quiet, &rc))
        return rc;
    if (rc != KCHAT_OK)
        return rc;
    /* One that names no operation or user is dead-lettered and the
     * stream's applied mark stays; one whose fields do not decode is
     * dead-lettered and counts as applied. A local one is left to a
     * Kafka copy in both cases (its source sends the stream again). */
    if (!command_run(c, payload, len, &rc))
        return m ? kchat__dead_letter(c, m, "internal command does not decode") : KCHAT_OK;
    if (rc == KCHAT_EDECODE && m == NULL)
        return KCHAT_OK;
    if (rc == KCHAT_EDECODE)
        rc = kchat__dead_letter(c, m, "internal command does not decode");
    *ran = true;
    if (rc == KCHAT_OK && o->streamed) {
        rc = kchat_store_cmdseq_set(c->txn, KCHAT_CMDSEQ_APPLIED, (uint32_t)o->src, o->cseq);
        if (rc == KCHAT_OK)
            rc = kchat_store_cmdseq_set(c->txn, KCHAT_CMDSEQ_APPLIED_RUN, (uint32_t)o->src,
                                        o->run);
    } else if (rc == KCHAT_OK) {
        rc = kchat_store_applied_set(c->txn, (uint32_t)o->src, o->seq);
    }
    return rc;
}

int kchat__command_apply(struct ctx *c, const rd_kafka_message_t *m)
{
    struct origin o;
    const void *v;
    size_t vl;
    bool ran = false;
    int rc;

    /* Another data set's (src, seq) are not ours to dedup or apply: its
     * seqs would move our watermarks and drop our own commands. Untagged
     * ones are never ours: an older kchat's unapplied commands were
     * produced again, tagged, from the outbox at start. */
    if (!kchat__dataset_ours(c->be, m, false, 0)) {
        atomic_fetch_add(&c->be->stats.foreign_commands, 1);
        return KCHAT_OK;
    }
    if (kchat_header_get(m, KCHAT_HDR_ACK, &v, &vl) == 0)
        return kchat__acks_take_record(c, m);   /* a target's word on our commands */
    if (!command_origin(c, m, &o, &rc))
        return rc;
    return command_apply(c, &o, m->payload, m->len, m, &ran);
}

int kchat__command_apply_local(struct ctx *c, const struct local_cmd *lc)
{
    struct origin o = {
        .src = lc->src, .cseq = lc->cseq, .run = lc->run, .from = lc->from, .streamed = true,
    };
    bool ran = false;
    int rc = command_apply(c, &o, lc->value, lc->len, NULL, &ran);

    if (rc == KCHAT_OK && ran)
        atomic_fetch_add(&c->be->stats.local_commands, 1);
    return rc;
}
