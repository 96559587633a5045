/*
 * The engine's messages: a 64-byte engine header (below) then a transport
 * block.  Every field from a peer is checked before use; a peer that
 * breaks the protocol ends the run with an error naming it.  Blocks to
 * one peer arrive in the order they were written (one ring per peer,
 * filled in order), which the stop protocol relies on: STOP is the
 * server's last message to a worker.
 */
#ifndef HETSGD_WIRE_H
#define HETSGD_WIRE_H

#include "engine_core.h"

#define ENG_MAGIC 0x45475348u	/* "HSGE" little-endian */
#define HDR_BYTES 64u

enum msg_type {
	MSG_GRAD = 1,	/* worker -> server: gradient at model version `round` */
	MSG_MODEL,	/* server -> worker: the model, version `round` */
	MSG_ROUND,	/* worker -> server: masked snapshot y of round `round` */
	MSG_AVG,	/* server -> worker: the average of round `round` */
	MSG_SNAP,	/* worker -> server: the whole model, for evaluation */
	MSG_FINAL,	/* worker -> server: the whole model at the end */
	MSG_STOP,	/* server -> worker: the last message */
	MSG_STATS,	/* worker -> server: its statistics, its last message */
	MSG_ABORT,	/* either way: this rank failed; the body says why */
	MSG_STOPREQ,	/* worker -> server: a signal came here (`round` is
			 * its number): stop the run, every output written */
	/* sharded averaging (shard.h): */
	MSG_PART,	/* worker -> shard owner: its values of one shard of
			 * round `round` (LOSCAR: y, SYNC: its gradient at
			 * version `round`) */
	MSG_SHARD,	/* shard owner -> worker (SYNC: and the server): the
			 * shard's average of round `round` (SYNC: the
			 * shard of the model of version `round`) */
	MSG_NOTICE,	/* worker -> a dead owner's successor: from round
			 * `round` on, my parts of shard `steps` go to you */
	MSG_TICK,	/* worker -> server: a round posted (header only:
			 * its steps and times, as ROUND carries them) */
	MSG_SNAPREQ,	/* server -> worker: send a snapshot after the
			 * merge of round `round` (LOSCAR, sharded) */
	/* sharded parameter server (pserver.h); PART and SHARD above carry
	 * a worker's gradient part and a shard of the model: */
	MSG_STEP,	/* rank 0 -> shard server: apply a worker's part
			 * (body: struct wire_step), in this order */
	MSG_PULL,	/* rank 0 -> shard server: send me your shard, after
			 * the steps before this */
	MSG_MAX,
};

#define MSG_BIT(t) (1u << (t))

extern const char *const msg_names[MSG_MAX];

#define ABORT_MAX 480u		/* bytes of reason an ABORT carries */

#define FLAG_DROPPED 1u		/* MODEL: the server discarded your gradient */
#define FLAG_SNAP 2u		/* AVG: send your model after this merge */

struct eng_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;
	uint32_t sender;
	uint32_t body;		/* bytes after the header */
	uint64_t round;		/* model version or LOSCAR round */
	uint64_t steps;		/* worker: gradients computed so far */
	double tau;		/* worker: seconds per gradient, last period */
	double idle;		/* worker: seconds waiting so far */
	double elapsed;		/* worker: seconds since its start */
	double compute;		/* worker: seconds computing so far */
};
_Static_assert(sizeof(struct eng_hdr) == HDR_BYTES, "engine header is 64 bytes");

/* STEP's body: rank 0's decision on worker `worker`'s gradient. */
struct wire_step {
	uint32_t worker;
	uint32_t flags;		/* FLAG_DROPPED: the policy dropped it */
	uint64_t version;	/* the model version after the step */
	double gamma;		/* the step size gamma_i */
};

/* The statistics a worker sends at the end (host order: one host type). */
struct wire_stats {
	uint64_t steps, sent, rounds, overlap_steps, dropped, overruns;
	double tau_target, compute_s, idle_s, elapsed_s;
	uint64_t bytes_sent, bytes_recv, bytes_recv_train;
};

/* The public statistics of worker wk from what it sent. */
void stats_from_wire(struct hetsgd_worker_stats *o, uint32_t wk,
		     const struct wire_stats *w);

void fill_hdr(struct eng_hdr *h, uint16_t type, uint32_t sender, uint32_t body,
	      uint64_t round);

/*
 * Writes the body of a message after the header: at most cap bytes at
 * buf, their number in *len.  0 or a negative errno (with the message).
 */
typedef int (*body_fn)(struct eng *e, void *buf, size_t cap, size_t *len, void *arg);

/*
 * Take a send buffer, let fill() write the body after the header, and put
 * it.  -EAGAIN when no buffer or credit is free: nothing was sent, try
 * again after progress.
 */
int eng_send(struct eng *e, int peer, struct eng_hdr *h, body_fn fill, void *arg);

/*
 * One pass of progress: each landed block to on_recv (NULL: dropped),
 * then its slot released; each peer that went down to e->on_down (unset:
 * ignored); an error of either stops the pass.  Returns the number of
 * events (>= 0), or a negative errno with the message.
 */
typedef int (*recv_fn)(void *ctx, const struct hetsgd_ev *ev);
int eng_poll(struct eng *e, struct hetsgd_ev *ev, int max, recv_fn on_recv, void *ctx);

/* Send until it goes, driving progress meanwhile: for the last messages,
 * when nothing but ABORT may arrive (other blocks that land are released). */
int send_blocking(struct eng *e, int peer, struct eng_hdr *h, body_fn fill, void *arg);

/* The whole model x, dense, with h's type and round. */
int send_dense(struct eng *e, int peer, struct eng_hdr *h, const float *x);
int send_dense_blocking(struct eng *e, int peer, struct eng_hdr *h, const float *x);
/* Coordinates [first, first + count) of the model, whose values are
 * vals[0 .. count). */
int send_dense_range(struct eng *e, int peer, struct eng_hdr *h, const float *vals,
		     uint32_t first, uint32_t count);

/* Body writer of STATS: arg is a struct wire_stats. */
int fill_stats(struct eng *e, void *buf, size_t cap, size_t *len, void *arg);

/* Check a landed message; *blk is decoded when the header says a block follows. */
int eng_parse(struct eng *e, const struct hetsgd_ev *ev, struct eng_hdr *h,
	      struct hetsgd_block *blk, int want_block);

/* A block that must be dense and cover the whole model. */
int want_full(const struct hetsgd_ev *ev, const struct hetsgd_block *b, const char *what);

/* A block that must be the mask of (seed, round) with K values. */
int want_masked(struct eng *e, const struct hetsgd_ev *ev, const struct hetsgd_block *b,
		uint64_t round, const char *what);

/* The error an ABORT from a peer becomes here. */
int peer_aborted(const struct hetsgd_ev *ev, const struct eng_hdr *h);

/* "SIGTERM", "SIGINT", "SIGHUP" or "signal N". */
const char *signal_name(int sig, char *buf, size_t len);

/*
 * A decoded block's values stay in the sender's staging slot, which the
 * sender can still write (hetsgd_block_decode): each of these reads every
 * value once, checks it is finite, and uses what it read.  A value that is
 * no longer finite changed after the decode checked it: the error names
 * the peer (a broken or hostile rank) and the run stops.
 *   block_axpy  x[coords of b] -= gamma * values (dense or indexed)
 *   block_add   acc[0..n) += val[0..n)
 *   block_take  dst[0..n) = val[0..n)
 */
int block_axpy(int peer, float *x, const struct hetsgd_block *b, float gamma);
int block_add(int peer, float *acc, const float *val, size_t n);
int block_take(int peer, float *dst, const float *val, size_t n);

/*
 * Tell this rank's peers that it failed (the server tells every worker,
 * a worker the server), so that they fail at once with the reason
 * instead of waiting out the stall time.  Best effort.
 */
void abort_peers(struct eng *e, const char *why);

#endif
