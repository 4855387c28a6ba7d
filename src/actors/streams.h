/*
 * Private to src/actors: internal commands between shards: numbered
 * streams (commands.c) and their acknowledgements through Kafka
 * (commands_acks.c).
 * Declared apart from actors.h (its structs and the other files'
 * interfaces), which it includes.
 */
#ifndef KCHAT_ACTORS_STREAMS_H
#define KCHAT_ACTORS_STREAMS_H

#include "actors.h"

/* ---- commands.c: internal command streams ---- */

/* Read the envelope of decoded command @p cmd into @p c: acting user (copied
 * into @p userbuf, which must outlive the command's use of @p c), answer
 * format, correlation id. False when it names no operation or user.
 * @locality worker that owns c->sh */
bool kchat__command_open(struct ctx *c, const json_t *cmd, char userbuf[66]);

/* Run the command half of the operation @p cmd names, in the open
 * transaction of c->sh (after kchat__command_open()). Errors: KCHAT_EDECODE
 * for an unknown operation or fields that do not decode, store errors.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__command_dispatch(struct ctx *c, const json_t *cmd);

/* Apply the internal command @p m in its target shard c->sh: only the next
 * seq of its stream, once; another data set's are skipped. Errors: store
 * errors.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__command_apply(struct ctx *c, const rd_kafka_message_t *m);

/* An item handed in memory by a shard of this process (local.c): a command
 * (what its Kafka copy's headers say that a local copy is judged by: it is
 * applied only as the next of its stream, so its outbox seq and base are
 * not needed, and its value) or an acknowledgement of this shard's
 * commands (what an ack record's headers say). */
struct local_cmd {
    bool ack;                  /* an ack: src applied our commands up to cseq, of run
                                  run, and outbox seq legacy */
    uint64_t src, cseq;        /* source shard (for an ack: the target that sent it),
                                  stream seq (a command's never 0) */
    uint64_t run, from;        /* kchat-cmd-run, -run-from (0: none); an ack's run */
    uint64_t legacy;           /* an ack's kchat-ack-legacy */
    char *value;               /* a command's, owned; NULL for an ack */
    size_t len;
};

/* kchat__command_apply() for the local copy @p lc of a command: applied
 * only when it is the next of its stream; anything else (a repeat, one
 * early, one that does not decode) is dropped without a word, left to a
 * Kafka copy (produced with it, or when its source, unacknowledged, sends
 * its stream again). Errors: store errors.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__command_apply_local(struct ctx *c, const struct local_cmd *lc);

/* The stream seq of outbox command @p r, 0 if it has none (an older kchat's).
 * @locality any thread */
uint64_t kchat__streams_cseq(const kchat_outbox_rec *r);

/* The kchat-cmd-base of command @p r: the lowest seq of its stream @p sh
 * still holds (it holds every one it has not seen applied), 0 if unknown.
 * @locality worker that owns @p sh */
uint64_t kchat__streams_base(const kchat_backend *be, const struct shard *sh,
                             const kchat_outbox_rec *r);

/* Outbox record @p r of @p sh is being produced to Kafka: when it is a
 * numbered command, note its stream seq as produced (cmd_link.kafka_high).
 * @locality worker that owns @p sh, or the thread in kchat_backend_start()
 *           before the workers run */
void kchat__streams_produced(const kchat_backend *be, struct shard *sh,
                             const kchat_outbox_rec *r);

/* Make room to list @p n more pending commands of @p sh, so that listing
 * them after their commit cannot fail. Errors: KCHAT_ENOMEM.
 * @locality worker that owns @p sh */
KCHAT_MUST_CHECK
int kchat__streams_reserve(kchat_backend *be, struct shard *sh, size_t n);

/* List outbox command @p seq (stream seq @p cseq, 0: none) to @p target as
 * pending: kept until @p target has applied it. Errors: KCHAT_ENOMEM, never
 * after kchat__streams_reserve() made room.
 * @locality worker that owns @p sh */
KCHAT_MUST_CHECK
int kchat__streams_pending_add(kchat_backend *be, struct shard *sh, uint64_t seq,
                               uint32_t target, uint64_t cseq);

/* Whether @p sh's pending commands are due for a check (kchat__streams_check()).
 * @locality worker that owns @p sh */
bool kchat__streams_due(const struct shard *sh);

/* When due, in @p sh's write transaction @p t: delete the commands their
 * targets applied, and produce again the streams a target is stuck on or
 * had a command refused. Errors: store errors.
 * @locality worker that owns @p sh */
KCHAT_MUST_CHECK
int kchat__streams_check(kchat_backend *be, struct shard *sh, kchat_txn *t);

/* Outbox seq @p seq was refused: if it is a pending command, mark its
 * stream to be produced again, in order, at the next check, and return
 * true; false when it is not one (any more).
 * @locality worker that owns @p sh */
bool kchat__streams_refused(struct shard *sh, uint64_t seq);

/* The decimal value of header @p name among the @p n headers at @p h, 0
 * when it is absent or not a number.
 * @locality any thread */
uint64_t kchat__header_u64(const kchat_header *h, size_t n, const char *name);

/* Parse the decimal number of @p len bytes at @p v (a header value) into
 * @p out. Returns 0, or -1 when it is not one (empty, too long, not all
 * digits, out of range).
 * @locality any thread */
int kchat__parse_u64(const void *v, size_t len, uint64_t *out);

/* ---- local.c: commands handed in memory to a shard of this process ---- */

/* A shard's inbox, empty; NULL when out of memory (the shard then takes
 * every command through Kafka).
 * @locality any thread */
struct local_inbox *kchat__inbox_new(void);

/* Free @p in and what waits in it (NULL: nothing).
 * @locality the thread that stops the backend, no worker running */
void kchat__inbox_free(struct local_inbox *in);

/* Free @p n local commands at @p v, and @p v.
 * @locality any thread */
void kchat__local_cmds_free(struct local_cmd *v, size_t n);

/* Whether command record @p r may travel in memory alone, without a copy
 * in Kafka: a numbered command to another shard, and every command its
 * source produced to that target this run is acknowledged (so the target
 * finds the one handed next in its stream). Then kchat__local_hand() alone
 * carries it when it can.
 * @locality worker that owns r->shard */
bool kchat__local_alone(const kchat_backend *be, const struct out_rec *r);

/* Command record @p r, released (committed, and past its changelog gate):
 * when it is a numbered command to another shard this process serves, not
 * being released nor fenced, put a copy in that shard's inbox, taking
 * r->value (set to NULL), wake its worker and return true. Anything else,
 * a full inbox or no memory: false, nothing taken (Kafka carries it).
 * @locality worker that owns r->shard
 * @locks takes the target's inbox lock (released before), then be->wake_lock */
bool kchat__local_hand(kchat_backend *be, struct out_rec *r);

/* Outbox record @p r, released: when it is an ack record (kchat__acks_flush())
 * to a shard this process serves and that takes items now, put the ack in
 * that shard's inbox (not waking its worker: the ack waits up to 50 ms for
 * a transaction of that shard, kchat__local_waiting()) and return true;
 * the caller then treats @p r as delivered instead of producing it. Else
 * false.
 * @locality worker that owns r->shard
 * @locks takes the target's inbox lock */
bool kchat__local_hand_ack(kchat_backend *be, const struct out_rec *r);

/* Whether items wait in @p sh's inbox that want a transaction now: a
 * command, or an ack that has waited 50 ms for one (lock-free, may be
 * stale).
 * @locality any thread */
bool kchat__local_waiting(const struct shard *sh);

/* Take every item waiting in @p sh's inbox, in the order handed, into
 * @p out (the caller frees them with kchat__local_cmds_free()); returns
 * how many.
 * @locality worker that owns @p sh, or the thread releasing it
 * @locks takes the inbox lock */
size_t kchat__local_take(struct shard *sh, struct local_cmd **out);

/* Drop what waits in @p sh's inbox (it is being released).
 * @locality the thread releasing @p sh
 * @locks takes the inbox lock */
void kchat__local_drop(struct shard *sh);

/* ---- commands_acks.c: acknowledgements of commands, through Kafka ---- */

/* The target's side: c->sh received a command from shard @p source in this
 * transaction; kchat__acks_flush() will acknowledge it. Errors:
 * KCHAT_EINVAL (no such shard), KCHAT_ENOMEM.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__acks_note(struct ctx *c, uint32_t source);

/* At the end of c->sh's transaction: one ack record per source noted since
 * the last flush (in the outbox, a reply on kchat-internal in the source's
 * partition) with c->sh's marks for it as read in c->txn; then forget the
 * sources (also on error). Errors: store errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__acks_flush(struct ctx *c);

/* Forget the sources noted in @p w (their transaction did not commit).
 * @locality worker @p w */
void kchat__acks_forget(struct worker *w);

/* Free what kchat__acks_note() allocated in @p w.
 * @locality worker @p w, or the thread in kchat_backend_stop() */
void kchat__acks_free(struct worker *w);

/* The source's side, in c->sh's transaction: shard @p target says it has
 * applied our commands up to stream seq @p seq, the last one numbered by
 * run @p run (0: unknown), and outbox seq @p legacy. Keeps the highest seq
 * (KCHAT_CMDSEQ_ACKED) and legacy mark seen, for kchat__streams_check() to
 * prune by. When @p target applied commands c->sh never numbered (c->sh
 * restored from an older copy): a seq above the highest c->sh numbered for
 * it, or whose run is not the one of c->sh's own command @p seq, it first
 * numbers its pending commands to it again past @p seq, as new outbox
 * records of this transaction (logged, counted). Errors: KCHAT_EINVAL
 * (@p target is no other shard), store errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__acks_take(struct ctx *c, uint32_t target, uint64_t seq, uint64_t legacy,
                     uint64_t run);

/* kchat__acks_take() for ack record @p m (a record of kchat-internal with
 * a kchat-ack header, of our data set); one that does not decode, or comes
 * from no other shard, is dead-lettered. Errors: store errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__acks_take_record(struct ctx *c, const rd_kafka_message_t *m);

#endif /* KCHAT_ACTORS_STREAMS_H */
