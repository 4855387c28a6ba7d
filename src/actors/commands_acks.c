/*
 * Acknowledgements of internal commands (docs/design.md, "Command
 * streams"): how a source shard learns what its targets applied without
 * reading their LMDB environments, which may live on another node.
 *
 * The target: a transaction in which shard t received commands from source
 * s (applied, dropped as repeats, or ahead of a gap) ends with one ack
 * record in t's outbox: on kchat-internal, partition s, with t's last
 * stream seq applied from s and its outbox-seq watermark for s, as that
 * transaction commits them. It is a reply (deleted once Kafka has it):
 * a lost ack is made good by the next one, and a source that hears
 * nothing produces its stream again, whose repeats are acked.
 *
 * The source: s takes the ack in its own transaction and keeps the
 * highest value per target in its store (KCHAT_CMDSEQ_ACKED), which the
 * periodic check (commands.c) and the replay at start (outbox.c) read. An
 * ack above the highest seq s ever numbered for t means s was restored
 * from an older copy: its stream forked, and its pending commands to t
 * are numbered again past the ack.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "streams.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

/* ---- the target's side ---- */

int kchat__acks_note(struct ctx *c, uint32_t source)
{
    struct worker *w = c->w;

    if (source >= (uint32_t)c->be->partitions)
        return KCHAT_EINVAL;
    if (w->ack_noted == NULL) {
        w->ack_noted = calloc((size_t)c->be->partitions, sizeof(*w->ack_noted));
        w->ack_to = calloc((size_t)c->be->partitions, sizeof(*w->ack_to));
        if (w->ack_noted == NULL || w->ack_to == NULL) {
            kchat__acks_free(w);
            return KCHAT_ENOMEM;
        }
    }
    if (!w->ack_noted[source]) {
        w->ack_noted[source] = true;
        w->ack_to[w->n_ack_to++] = source;
    }
    return KCHAT_OK;
}

/* Append the ack of c->sh to @p source: its marks for @p source as read in
 * c->txn. Errors: store errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int ack_append(struct ctx *c, uint32_t source)
{
    uint64_t applied = 0, legacy = 0, run = 0;
    char from[12], seq[24], leg[24], rn[24];
    kchat_header hdrs[5];
    int rc;

    if ((rc = kchat_store_cmdseq_get(c->txn, KCHAT_CMDSEQ_APPLIED, source, &applied)) !=
            KCHAT_OK ||
        (rc = kchat_store_cmdseq_get(c->txn, KCHAT_CMDSEQ_APPLIED_RUN, source, &run)) !=
            KCHAT_OK ||
        (rc = kchat_store_applied_get(c->txn, source, &legacy)) != KCHAT_OK)
        return rc;
    snprintf(from, sizeof(from), "%" PRIu32, c->sh->id);
    snprintf(seq, sizeof(seq), "%" PRIu64, applied);
    snprintf(leg, sizeof(leg), "%" PRIu64, legacy);
    snprintf(rn, sizeof(rn), "%" PRIu64, run);
    hdrs[0] = (kchat_header){KCHAT_HDR_ACK, from, strlen(from)};
    hdrs[1] = (kchat_header){KCHAT_HDR_ACK_SEQ, seq, strlen(seq)};
    hdrs[2] = (kchat_header){KCHAT_HDR_ACK_LEGACY, leg, strlen(leg)};
    hdrs[3] = (kchat_header){KCHAT_HDR_ACK_RUN, rn, strlen(rn)};
    hdrs[4] = (kchat_header){KCHAT_HDR_DATASET, c->be->dataset, strlen(c->be->dataset)};
    return kchat__out_append(c, OUT_REPLY, 0, KCHAT_TOPIC_INTERNAL, (int32_t)source, NULL, 0,
                             "", 0, hdrs, 5);
}

int kchat__acks_flush(struct ctx *c)
{
    struct worker *w = c->w;
    int rc = KCHAT_OK;

    for (size_t i = 0; rc == KCHAT_OK && i < w->n_ack_to; i++)
        rc = ack_append(c, w->ack_to[i]);
    kchat__acks_forget(w);
    return rc;
}

void kchat__acks_forget(struct worker *w)
{
    for (size_t i = 0; i < w->n_ack_to; i++)
        w->ack_noted[w->ack_to[i]] = false;
    w->n_ack_to = 0;
}

void kchat__acks_free(struct worker *w)
{
    free(w->ack_noted);
    free(w->ack_to);
    w->ack_noted = NULL;
    w->ack_to = NULL;
    w->n_ack_to = 0;
}

/* ---- the source's side ---- */

/* A pending command of a forked stream, to be numbered again. */
struct fork_cmd {
    uint64_t seq;      /* its outbox seq */
    uint64_t cseq;     /* its stream seq, as numbered before the fork was seen */
};

/* What fork_collect() gathers: with v NULL it only counts (n); then, in a
 * second pass, it fills v, which has room for cap. */
struct fork_scan {
    uint32_t target;
    struct fork_cmd *v;
    size_t n, cap;
};

/* Every command to fs->target that has a stream seq.
 * @locality worker that owns the shard scanned */
static int fork_collect(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct fork_scan *fs = arg;
    uint64_t cseq;

    if (r->kind != OUT_COMMAND || r->partition != (int32_t)fs->target ||
        (cseq = kchat__streams_cseq(r)) == 0)
        return 0;
    if (fs->v != NULL && fs->n == fs->cap)
        return 1;   /* (the second pass sees what the first counted: one transaction) */
    if (fs->v != NULL)
        fs->v[fs->n] = (struct fork_cmd){.seq = seq, .cseq = cseq};
    fs->n++;
    return 0;
}

static int fork_cmd_by_cseq(const void *a, const void *b)
{
    const struct fork_cmd *x = a, *y = b;
    return x->cseq < y->cseq ? -1 : x->cseq > y->cseq;
}

/* A copy of one outbox record, made before the transaction is written to
 * (a write invalidates what a scan hands out). Owns everything. */
struct rec_copy {
    kchat_outbox_rec r;
    kchat_header hdrs[KCHAT_STORE_MAX_HEADERS];
    char *buf;
};

/* Copy the first record visited into the rec_copy @p arg.
 * @locality worker that owns the shard scanned */
static int rec_copy_one(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct rec_copy *cp = arg;
    size_t len = strlen(r->topic) + 1 + r->key_len + r->value_len;
    char *p;

    (void)seq;
    for (size_t i = 0; i < r->n_headers; i++)
        len += strlen(r->headers[i].name) + 1 + r->headers[i].len;
    if ((cp->buf = p = malloc(len)) == NULL)
        return KCHAT_ENOMEM;
    cp->r = *r;
    cp->r.topic = memcpy(p, r->topic, strlen(r->topic) + 1);
    p += strlen(r->topic) + 1;
    cp->r.key = r->key ? memcpy(p, r->key, r->key_len) : NULL;
    p += r->key_len;
    cp->r.value = r->value ? memcpy(p, r->value, r->value_len) : NULL;
    p += r->value_len;
    for (size_t i = 0; i < r->n_headers; i++) {
        size_t nl = strlen(r->headers[i].name) + 1;

        cp->hdrs[i].name = memcpy(p, r->headers[i].name, nl);
        p += nl;
        cp->hdrs[i].value = r->headers[i].value ? memcpy(p, r->headers[i].value,
                                                         r->headers[i].len) : NULL;
        cp->hdrs[i].len = r->headers[i].len;
        p += r->headers[i].len;
    }
    cp->r.headers = cp->hdrs;
    return 1;
}

/* Append outbox command @p seq of c->sh to @p target again as stream seq
 * @p cseq of this run, numbered on from @p from, in c->txn, and delete the
 * old copy. Errors: store errors, KCHAT_ENOMEM, KCHAT_EDECODE (not a record
 * kchat__command() wrote).
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int renumber_one(struct ctx *c, uint32_t target, uint64_t seq, uint64_t cseq,
                        uint64_t from)
{
    struct rec_copy old = {0};
    kchat_header hdrs[KCHAT_STORE_MAX_HEADERS];
    char num[24], run[24], fr[24];
    size_t n = 0;
    int rc;

    if ((rc = kchat_store_outbox_scan(c->txn, seq, rec_copy_one, &old)) != KCHAT_OK)
        goto out_free;
    rc = KCHAT_EDECODE;
    if (old.buf == NULL)
        goto out_free;
    for (size_t i = 0; i < old.r.n_headers; i++)
        if (strcmp(old.hdrs[i].name, KCHAT_HDR_CMD_SEQ) &&
            strcmp(old.hdrs[i].name, KCHAT_HDR_CMD_RUN) &&
            strcmp(old.hdrs[i].name, KCHAT_HDR_CMD_RUN_FROM))
            hdrs[n++] = old.hdrs[i];
    if (n + 3 > KCHAT_STORE_MAX_HEADERS)
        goto out_free;
    snprintf(num, sizeof(num), "%" PRIu64, cseq);
    snprintf(run, sizeof(run), "%" PRIu64, kchat__run_id(c));
    snprintf(fr, sizeof(fr), "%" PRIu64, from);
    hdrs[n++] = (kchat_header){KCHAT_HDR_CMD_SEQ, num, strlen(num)};
    if (kchat__run_id(c) != 0) {
        hdrs[n++] = (kchat_header){KCHAT_HDR_CMD_RUN, run, strlen(run)};
        hdrs[n++] = (kchat_header){KCHAT_HDR_CMD_RUN_FROM, fr, strlen(fr)};
    }
    rc = kchat__out_append(c, OUT_COMMAND, target, old.r.topic, old.r.partition, old.r.key,
                           old.r.key_len, old.r.value, old.r.value_len, hdrs, n);
    if (rc != KCHAT_OK)
        goto out_free;
    c->w->out[c->w->n_out - 1].cseq = cseq;
    rc = kchat_store_outbox_del(c->txn, seq);
out_free:
    free(old.buf);
    return rc;
}

/* Take @p target's commands out of the pending list of c->sh and out of
 * the records of this transaction not yet produced: their outbox copies
 * (@p old, @p n of them) are deleted and appended again.
 * @locality worker that owns c->sh */
static void fork_forget(struct ctx *c, uint32_t target, const struct fork_cmd *old, size_t n)
{
    struct shard *sh = c->sh;
    struct worker *w = c->w;
    size_t k = 0;

    for (size_t i = 0; i < sh->n_cmds;) {
        if (sh->cmds[i].target == target && sh->cmds[i].cseq > 0) {
            sh->links[target].n_pending--;
            sh->cmds[i] = sh->cmds[--sh->n_cmds];
        } else {
            i++;
        }
    }
    sh->links[target].low = 0;
    for (size_t i = 0; i < w->n_out; i++) {
        bool gone = false;

        for (size_t j = 0; j < n && !gone; j++)
            gone = w->out[i].shard == sh->id && w->out[i].kind == OUT_COMMAND &&
                   w->out[i].seq == old[j].seq;
        if (gone)
            kchat__out_rec_release(&w->out[i]);
        else
            w->out[k++] = w->out[i];
    }
    w->n_out = k;
}

/* The stream of c->sh to @p target forked: @p target applied up to
 * @p acked commands c->sh did not number, more than it ever numbered
 * (@p sent) or under its own numbers. Number every
 * pending command to it again from acked + 1, in their order, as new
 * outbox records of this transaction (produced and listed pending after
 * its commit), and number on from there. Errors: store errors,
 * KCHAT_ENOMEM, KCHAT_EDECODE (a damaged outbox record).
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int stream_fork(struct ctx *c, uint32_t target, uint64_t acked, uint64_t sent)
{
    struct fork_scan fs = {.target = target};
    int rc;

    if ((rc = kchat_store_outbox_scan(c->txn, 0, fork_collect, &fs)) != KCHAT_OK)
        return rc;
    if (fs.n > 0 && (fs.v = malloc(fs.n * sizeof(*fs.v))) == NULL)
        return KCHAT_ENOMEM;
    fs.cap = fs.n;
    fs.n = 0;
    if (fs.v != NULL) {
        if ((rc = kchat_store_outbox_scan(c->txn, 0, fork_collect, &fs)) != KCHAT_OK)
            goto out_free;
        qsort(fs.v, fs.n, sizeof(*fs.v), fork_cmd_by_cseq);
    }
    /* room to list them as pending after the commit, as kchat__command() */
    if ((rc = kchat__streams_reserve(c->be, c->sh, c->w->n_out + fs.n)) != KCHAT_OK)
        goto out_free;
    fork_forget(c, target, fs.v, fs.n);
    for (size_t i = 0; rc == KCHAT_OK && i < fs.n; i++)
        rc = renumber_one(c, target, fs.v[i].seq, acked + 1 + i, acked);
    if (rc == KCHAT_OK)
        rc = kchat_store_cmdseq_set(c->txn, KCHAT_CMDSEQ_SENT, target, acked + fs.n);
    if (rc != KCHAT_OK)
        goto out_free;
    c->sh->links[target].run_from = acked;   /* what this run numbers next follows it */
    c->sh->links[target].run_from_set = true;
    atomic_fetch_add(&c->be->stats.stream_renumbers, 1);
    if (acked > sent)
        fprintf(stderr, "kchat: shard %u: shard %" PRIu32 " applied our commands up to %"
                PRIu64 " but we numbered only %" PRIu64 " (this shard restored from an older "
                "copy?); numbering on from %" PRIu64 ", %zu pending commands numbered again\n",
                c->sh->id, target, acked, sent, acked + 1, fs.n);
    else
        fprintf(stderr, "kchat: shard %u: shard %" PRIu32 " applied up to %" PRIu64 " commands "
                "another run of ours numbered, not ours (this shard restored from an older "
                "copy?); numbering on from %" PRIu64 ", %zu pending commands numbered again\n",
                c->sh->id, target, acked, acked + 1, fs.n);
out_free:
    free(fs.v);
    return rc;
}

struct run_find {
    uint64_t seq;      /* the outbox seq of the command */
    uint64_t run;      /* out: its run, 0: none, or no such record */
};

/* The run of outbox record rf->seq, the first one visited if it is there.
 * @locality worker that owns the shard scanned */
static int run_find_one(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct run_find *rf = arg;

    if (seq != rf->seq)
        return 1;
    for (size_t i = 0; i < r->n_headers; i++)
        if (!strcmp(r->headers[i].name, KCHAT_HDR_CMD_RUN) &&
            kchat__parse_u64(r->headers[i].value, r->headers[i].len, &rf->run))
            rf->run = 0;
    return 1;
}

/* Whether our command @p seq to @p target was numbered by another run than
 * @p run, the one whose command @p target applied under that number: then
 * @p target applied one we never numbered. An unknown run (0), or our own
 * run's command, tells nothing. The result in @p fork. Errors: store errors.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int run_differs(struct ctx *c, uint32_t target, uint64_t seq, uint64_t run, bool *fork)
{
    const struct cmd_link *l = &c->sh->links[target];
    struct run_find rf = {0};
    int rc;

    *fork = false;
    if (run == 0 || run == kchat__run_id(c))
        return KCHAT_OK;
    if (l->run_from_set && seq > l->run_from) {   /* this run numbered it */
        *fork = kchat__run_id(c) != 0;
        return KCHAT_OK;
    }
    /* An earlier run's, still pending (nothing above the ack mark is
     * deleted): its run is in its outbox copy. */
    for (size_t i = 0; i < c->sh->n_cmds && rf.seq == 0; i++)
        if (c->sh->cmds[i].target == target && c->sh->cmds[i].cseq == seq)
            rf.seq = c->sh->cmds[i].seq;
    if (rf.seq == 0)
        return KCHAT_OK;
    if ((rc = kchat_store_outbox_scan(c->txn, rf.seq, run_find_one, &rf)) != KCHAT_OK)
        return rc;
    *fork = rf.run != 0 && rf.run != run;
    return KCHAT_OK;
}

int kchat__acks_take(struct ctx *c, uint32_t target, uint64_t seq, uint64_t legacy,
                     uint64_t run)
{
    struct shard *sh = c->sh;
    uint64_t sent = 0, acked = 0;
    bool fork = false;
    int rc;

    if (target >= (uint32_t)c->be->partitions || target == sh->id)
        return KCHAT_EINVAL;
    atomic_fetch_add(&c->be->stats.acks, 1);
    if ((rc = kchat__streams_reserve(c->be, sh, 0)) != KCHAT_OK ||   /* sh->links */
        (rc = kchat_store_cmdseq_get(c->txn, KCHAT_CMDSEQ_SENT, target, &sent)) != KCHAT_OK ||
        (rc = kchat_store_cmdseq_get(c->txn, KCHAT_CMDSEQ_ACKED, target, &acked)) != KCHAT_OK)
        return rc;
    /* Acks come late, twice, or from a target restored from an older copy
     * (lower): only a higher one says anything new. */
    if (seq > acked) {
        if (seq <= sent && (rc = run_differs(c, target, seq, run, &fork)) != KCHAT_OK)
            return rc;
        if ((seq > sent || fork) && (rc = stream_fork(c, target, seq, sent)) != KCHAT_OK)
            return rc;
        if ((rc = kchat_store_cmdseq_set(c->txn, KCHAT_CMDSEQ_ACKED, target, seq)) != KCHAT_OK)
            return rc;
        sh->last_ack_check_ms = 0;   /* prune at the next chance */
    }
    if (legacy > sh->links[target].legacy_applied) {
        sh->links[target].legacy_applied = legacy;
        sh->last_ack_check_ms = 0;
    }
    return KCHAT_OK;
}

int kchat__acks_take_record(struct ctx *c, const rd_kafka_message_t *m)
{
    uint64_t from, seq, legacy, run;
    const void *v;
    size_t vl;
    int rc;

    if (kchat_header_get(m, KCHAT_HDR_ACK, &v, &vl) || kchat__parse_u64(v, vl, &from) ||
        kchat_header_get(m, KCHAT_HDR_ACK_SEQ, &v, &vl) || kchat__parse_u64(v, vl, &seq) ||
        kchat_header_get(m, KCHAT_HDR_ACK_LEGACY, &v, &vl) ||
        kchat__parse_u64(v, vl, &legacy) || kchat_header_get(m, KCHAT_HDR_ACK_RUN, &v, &vl) ||
        kchat__parse_u64(v, vl, &run) || from > UINT32_MAX)
        return kchat__dead_letter(c, m, "command acknowledgement does not decode");
    rc = kchat__acks_take(c, (uint32_t)from, seq, legacy, run);
    if (rc == KCHAT_EINVAL)
        return kchat__dead_letter(c, m, "command acknowledgement from no other shard");
    return rc;
}
