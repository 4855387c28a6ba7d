/**
 * @file nodes.h
 * @brief A world of users and rooms on several `kchat serve` nodes of one
 *        real Kafka cluster, a stream of requests kept going while the test
 *        stops, kills, pauses and starts nodes, and the checks that every
 *        answer the stream got is still true. Include after <cmocka.h>.
 *
 * Moved out of tests/integration/test_multinode.c so that it and
 * tests/integration/test_paused.c share one copy. Everything is black-box:
 * the nodes are `kchat serve` processes (kc_serve_start_ex()) on the
 * suite's Kafka (kc_test_brokers()), in the default consumer group, each
 * with its own data directory; the test speaks docs/protocol.md to them.
 *
 * **The world** (nd_world_begin(), nd_world_setup()): ND_USERS users, two on
 * each of the ND_PARTITIONS shards (user i on shard i % ND_PARTITIONS), all
 * following each other, each with a status, logged in once (that session
 * is used throughout); ND_ROOMS rooms, room r created by user r so that it
 * lives on shard r, with all users as participants. Which node owns which
 * shard is not known, so every check covers every shard.
 *
 * **The stream** (nd_stream_*): a thread that sends, every ND_TICK_MS, one
 * chat send (writers and rooms of every shard, each with its own kchat-cid
 * and clientMsgId, never re-sent) and one probe per shard (user-search-room
 * with the session of the start), without waiting for answers.
 *
 * **The checks** (nd_check_world()): every request answered within
 * ND_DRAIN_MS, each a success, repeats (same kchat-cid) agreeing; each
 * room's history exactly the acknowledged sends, each once at its seq,
 * seqs 1..n, one writer's in the order sent; every room list (4 rooms,
 * participants, lastSeq n) and friend list (the 7 others with their status)
 * right; every participant got the chat events 1..n and a room event per
 * room.
 *
 * **Ownership and threads.** One case at a time: the module keeps the case's
 * world, stream, nodes and data directories in globals, and nd_teardown()
 * (a cmocka teardown) releases whatever a failed assertion left. The world
 * and its client belong to the main thread, except while a stream runs:
 * from nd_stream_start() to nd_stream_end() the stream thread alone sends
 * and writes the world's request tables, and the main thread may only call
 * the functions marked "during a stream" (and kclient's waiting
 * functions). Every wait is bounded; a broken expectation fails the running
 * cmocka test (on the main thread; the stream thread asserts nothing).
 */
#ifndef KCHAT_TESTS_NODES_H
#define KCHAT_TESTS_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kclient.h"

#define ND_PARTITIONS 4      /**< shards; tests/run.sh starts Kafka with 4 */
#define ND_USERS      8      /**< user i lives on shard i % ND_PARTITIONS */
#define ND_ROOMS      4      /**< room r lives on shard r (created by user r) */
#define ND_MAX_NODES  3      /**< nodes a, b, c (index 0, 1, 2) */
#define ND_MAX_SENDS  2000   /**< chat sends of one case */
#define ND_MAX_PROBES 8000   /**< probes of one case: ND_PARTITIONS per tick */
#define ND_TICK_MS    100    /**< a stream's pace: one chat send per tick */
#define ND_DRAIN_MS   60000  /**< how long answers to a stream may take */
#define ND_SETTLE_MS  20000  /**< replicas (directory, room summaries) and events */
#define ND_START_S    90     /**< a node's start, group rebalance included */

/** A request whose answer the test waits for: a chat send or a probe. */
struct nd_req {
    char cid[72];
    int user;          /**< index into world.u: who sent it (the record key) */
    int room;          /**< chat send: index into world.room; probe: -1 */
    int64_t sent_ms;   /**< wall clock when Kafka took it; 0: never sent */
    bool answered;
    int64_t answer_ms; /**< wall clock of the first answer (its CreateTime) */
    bool ok;           /**< the first answer is a success */
    char code[32];     /**< its errorCode */
    int64_t seq;       /**< chat send: the first answer's seq */
    bool mismatch;     /**< a repeat answer differs from the first ... */
    char code2[32];    /**< ... with this errorCode */
    int64_t seq2;      /**< ... and this seq */
    bool incomplete;   /**< probe: a success that lacks one of the rooms */
};

/** One case's users, rooms and every request it waits for. */
struct nd_world {
    const char *tag;
    kc_client *c;
    kc_user u[ND_USERS];
    char status[ND_USERS][48];
    char room[ND_ROOMS][65];
    char prefix[56];         /**< every cid of this world starts with it */
    struct nd_req send[ND_MAX_SENDS];
    int nsend;
    struct nd_req probe[ND_MAX_PROBES];
    int nprobe;
    size_t scan;             /**< next client record nd_collect() looks at */
    int by_seq[ND_ROOMS][ND_MAX_SENDS + 1]; /**< the checks: send index of each seq */
    int acked[ND_ROOMS];     /**< the checks: acknowledged sends per room */
};

/* ------------------------------------------------------------------------ */
/** @name Cases                                                              */
/* ------------------------------------------------------------------------ */

/** @brief cmocka setup: starts the case's clock. */
int nd_setup(void **state);

/**
 * @brief cmocka teardown: ends a running stream, frees the world and its
 *        client, stops every node (SIGCONT first, for one left paused;
 *        SIGTERM, 30 s, then SIGKILL), forgets the data directories and
 *        nd_use_metrics(), and prints the case's duration.
 */
int nd_teardown(void **state);

/** @brief Name the running case: every line the module prints starts with it. */
void nd_case(const char *name);

/** @brief The name given to nd_case() ("" before). */
const char *nd_case_name(void);

/** @brief Print "CASE: WHAT done at S s" (seconds since the case's setup), so
 *  that a slow case's log shows where its time went. Main thread. */
void nd_phase(const char *what);

/* ------------------------------------------------------------------------ */
/** @name Nodes: index 0, 1, 2 are nodes a, b, c                             */
/* ------------------------------------------------------------------------ */

/**
 * @brief Give every node started from now on `--metrics-http` on a free
 *        loopback port, for nd_metric(). Off by default.
 */
void nd_use_metrics(bool on);

/**
 * @brief Start node @p k and wait (ND_START_S) until it is ready (assigned
 *        its partitions). @p fresh: on a new, empty data directory;
 *        otherwise on its last one.
 */
void nd_node_start(int k, bool fresh);

/** @brief kill -9 node @p k; returns the wall clock of the kill. */
int64_t nd_node_kill(int k);

/**
 * @brief SIGTERM node @p k and wait up to 60 s; prints its closing counts
 *        and forgets the process (its data directory stays).
 * @return whether it exited 0 (README.md: it must).
 */
bool nd_node_stop(int k);

/** @brief nd_node_stop() and assert that the stop was clean. */
void nd_node_term(int k);

/** @brief Node @p k's process, NULL when not running. */
kc_proc *nd_node(int k);

/** @brief "a", "b" or "c": node @p k's name in logs and diagnostics. */
const char *nd_node_name(int k);

/** @brief Node @p k's data directory (NULL before its first start). */
const char *nd_node_data(int k);

/**
 * @brief Sample @p name of node @p k's /metrics (nd_use_metrics()), -1 when
 *        absent. Node @p k must be running and not paused (the request
 *        would wait 15 s).
 */
double nd_metric(int k, const char *name);

/* ------------------------------------------------------------------------ */
/** @name The world                                                          */
/* ------------------------------------------------------------------------ */

/** @brief Start nodes 0..@p nodes-1 on new data directories and open the client. */
struct nd_world *nd_world_begin(const char *tag, int nodes);

/** @brief Register and log in every user (user i on shard i % ND_PARTITIONS). */
void nd_users_add(struct nd_world *w);

/** @brief Give every user a status of its own. */
void nd_statuses_set(struct nd_world *w);

/** @brief Everyone follows everyone else. */
void nd_friends_add(struct nd_world *w);

/** @brief Room r, made by user r with everyone else: it lives on shard r. */
void nd_rooms_add(struct nd_world *w);

/** @brief Wait (ND_SETTLE_MS) until every user's room list shows every room. */
void nd_rooms_wait_visible(struct nd_world *w);

/** @brief Users, statuses, friends and rooms: the five calls above. */
void nd_world_setup(struct nd_world *w);

/* ------------------------------------------------------------------------ */
/** @name Requests                                                           */
/* ------------------------------------------------------------------------ */

/** @brief A string field, "" when absent (for comparisons). */
const char *nd_str_of(const json_t *obj, const char *field);

/** @brief Whether room list @p rooms names every room of @p w. */
bool nd_lists_every_room(const struct nd_world *w, const json_t *rooms);

/** @brief The message text of chat send @p i. */
void nd_chat_text(const struct nd_world *w, int i, char *out, size_t size);

/** @brief The clientMsgId of chat send @p i (`m-<i>`). */
void nd_chat_cmid(int i, char *out, size_t size);

/**
 * @brief Send chat send number w->nsend: @p writer into room @p room, with a
 *        clientMsgId, without waiting for the answer.
 * @return its entry (sent_ms 0 when Kafka did not take it), NULL when the
 *         table is full.
 */
struct nd_req *nd_chat_send(struct nd_world *w, int writer, int room);

/** @brief Chat send and wait for its answer; its seq, or -1 for no success. */
int64_t nd_chat_sync(struct nd_world *w, int writer, int room);

/**
 * @brief kc_call() again while the answer is USER_NOT_FOUND (ND_SETTLE_MS):
 *        a user registered through another node reaches this node's
 *        directory replica shortly after (protocol.md §3.5, kchat:).
 * @param[in] body stolen.
 * @return the last answer.
 */
json_t *nd_call_until_known(struct nd_world *w, const char *op, int user, json_t *body);

/** @brief Fold every new answer to this world's requests into their entries. */
void nd_collect(struct nd_world *w);

/** @brief Wait up to @p timeout_ms until every request sent so far is answered. */
bool nd_drain(struct nd_world *w, int timeout_ms);

/* ------------------------------------------------------------------------ */
/** @name The stream                                                         */
/* ------------------------------------------------------------------------ */

/**
 * @brief Start a stream of at most @p max ticks on its own thread. The main
 *        thread must not use the world or its client's send functions until
 *        nd_stream_end().
 */
void nd_stream_start(struct nd_world *w, int max);

/** @brief During a stream: wait until it made @p ticks ticks (or ended). */
void nd_stream_wait(int ticks);

/** @brief During a stream: the ticks it made so far. */
int nd_stream_done(void);

/**
 * @brief During a stream: have the stream thread, at once (between two
 *        ticks), send @p sends more chat sends back to back (writers and
 *        rooms of every shard, each waiting only for Kafka's
 *        acknowledgement), then call @p then (@p arg) on the stream thread
 *        right after the last one, e.g. to pause a node while the burst is
 *        in flight; @p then must assert nothing. Returns once @p then
 *        returned (at most 30 s).
 */
void nd_stream_burst(int sends, void (*then)(void *arg), void *arg);

/**
 * @brief During a stream: wait up to @p timeout_ms until, for every shard,
 *        some probe of the world has an answer created at or after the wall
 *        clock @p since_ms, and print per shard how long after @p since_ms
 *        the first came. Reads the client's records, not the world's tables.
 * @return the largest of those delays (ms), or -1 when a shard had none.
 */
int64_t nd_wait_every_shard(struct nd_world *w, int64_t since_ms, int timeout_ms);

/** @brief Stop the stream after its current tick, join it, assert Kafka took every request. */
void nd_stream_end(void);

/* ------------------------------------------------------------------------ */
/** @name Checks                                                             */
/* ------------------------------------------------------------------------ */

/**
 * @brief Everything of "The checks" above, after @p label: every check runs
 *        and prints before the first assertion, so one run tells all that
 *        is wrong (and the server log tails when something is).
 */
void nd_check_world(struct nd_world *w, const char *label);

/**
 * @brief Every `chat` event of the world's rooms received so far, repeats
 *        included (nd_check_world() reads one event per (room, seq) and
 *        drops later repeats unread), is the send acknowledged with its
 *        (room, seq): its clientMsgId and writer. Prints the first few that
 *        are not; false also when two sends were acknowledged with one seq.
 *        Main thread, no stream running.
 */
bool nd_check_event_repeats(struct nd_world *w);

#endif /* KCHAT_TESTS_NODES_H */
