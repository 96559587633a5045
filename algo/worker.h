/*
 * A worker (ranks 1 .. n): a compute thread (the method's loop, with its
 * team) and a progress thread (the caller's, which owns the transport
 * endpoint: the endpoint is not thread-safe).  They meet in a mailbox
 * guarded by one mutex:
 *   outbox   compute -> progress: one message to encode and write;
 *   inbox    progress -> compute: the latest model (ASGD, SYNC) or the
 *            average of a round (LOSCAR).
 * The progress thread copies a landed block out of its staging slot and
 * releases the slot at once, so a peer's credits never wait on compute.
 *
 * The worker's side of the protocol is one state machine (enum
 * worker_state), changed under mu in one place per event:
 *
 *   COMPUTE --post--> POSTED --written--> COMPUTE (SNAP)
 *                                     \-> AWAITING (GRAD, ROUND)
 *   AWAITING --MODEL or AVG lands--> COMPUTE (the reply in the inbox)
 *   a streaming method (ops->streams, Malenia): POSTED --written-->
 *   COMPUTE for GRAD too; MODEL lands in COMPUTE or POSTED, state kept
 *   COMPUTE, POSTED, AWAITING --STOP lands--> STOPPING
 *   STOPPING --the last messages written--> DONE
 *
 * Two events outside the table: the server's PEER_DOWN (its process
 * ended or its connection broke) fails the worker at once with a message
 * that names the server; a signal to this rank sends STOPREQ (once, from
 * the progress thread) and training goes on until STOP comes, or, if none
 * comes within STOPREQ_WAIT_S, the worker stops by itself.
 *
 * Which message from the server is legal in which state is the table
 * worker_legal in worker.c; anything else is a protocol error.  The
 * inbox's in_full is not a protocol state but the hand-over of data: a
 * reply may wait in it across STOP (LOSCAR merges a landed average
 * before it sends its final model).
 */
#ifndef HETSGD_WORKER_H
#define HETSGD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "team.h"
#include "wire.h"

#define STOPREQ_WAIT_S 2.0	/* after STOPREQ, STOP is due within this */

enum worker_state {
	W_COMPUTE,	/* stepping; the outbox is empty and no reply is due */
	W_POSTED,	/* a message waits in the outbox */
	W_AWAITING,	/* GRAD or ROUND is written: the server's reply is due */
	W_STOPPING,	/* STOP landed: the last messages go out */
	W_DONE,		/* the statistics went out */
	W_NSTATES,
};

struct worker {
	struct eng *e;
	uint32_t id;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* compute waits here */
	pthread_cond_t pcv;	/* progress waits here */
	atomic_int state;	/* enum worker_state: written under mu */
	atomic_int stop;	/* the compute thread's signal: STOP or an error */
	int err;		/* compute thread's error */
	char errmsg[1024];

	/* the model and the compute thread's buffers */
	float *x, *g, *y, *xs;
	uint32_t *bidx;
	uint64_t rng;
	struct hetsgd_mask mask;
	double tau_mean;
	struct team team;

	/* outbox (under mu, full in W_POSTED) */
	struct eng_hdr out_hdr;
	const float *out_vec;	/* ROUND: x (masked); SNAP: xs */
	uint32_t *out_nz;	/* GRAD: indices of g's nonzeros, values in xs */
	uint32_t out_nnz;

	/* inbox (under mu; in_full also read without it) */
	atomic_int in_full;	/* a reply the compute thread has not taken */
	uint64_t in_round;	/* MODEL: its version; AVG: its round */
	float *in_vec;		/* model (d) or average (K) */
	uint16_t in_flags;

	/* progress thread only */
	struct shard *sh;	/* sharded averaging (shard.h); NULL: the server averages */
	struct ps_worker *ps;	/* sharded parameter server (pserver.h); NULL */
	double await_since;	/* entered W_AWAITING */
	double stopreq_at;	/* STOPREQ went to the server (0: not yet) */

	/* statistics (compute thread writes, progress reads after join) */
	uint64_t steps, rounds, overlap_steps, dropped, overruns;
	double compute_s, idle_s, last_send;
};

/* The worker's side of a run (rank > 0). */
int worker_run(struct eng *e, struct hetsgd_engine_result *res);

/* ---- for the methods' compute loops ---- */

/* One gradient of f_i at x into w->g, padded to the profile's target. */
int worker_grad(struct worker *w, const float *x);
/* Hand a message to the progress thread; waits while the outbox is full. */
void worker_post(struct worker *w, uint16_t type, uint64_t round, const float *vec,
		 uint16_t flags);
/* Post the gradient in w->g as GRAD at model version ver, its nonzeros
 * gathered so that the encoder sends it sparse when that is smaller. */
void worker_post_gradient(struct worker *w, uint64_t ver);
/* Wait until the posted message is written (or stop). */
void worker_wait_written(struct worker *w);
/* Wait for the server's reply (or stop); the time counts as idle. */
void worker_wait_reply(struct worker *w);
/* Whether the reply is in the inbox (no lock: an acquire load). */
int worker_has_reply(struct worker *w);
/* With mu held and the reply in the inbox: the compute thread took it. */
void worker_took_reply(struct worker *w);

/* ---- for the progress thread's parts (shard.c) ---- */

/* With mu held, in_vec filled: the reply of round `round` is in the
 * inbox (AWAITING -> COMPUTE). */
void worker_reply_in(struct worker *w, uint64_t round, uint16_t flags);

#endif
