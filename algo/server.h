/*
 * The server (rank 0): a progress loop (the caller's thread) that hands
 * each landed block to the method as it lands, queues the replies and
 * writes them when due; an evaluation thread (eval.c) that computes loss
 * and accuracy on copies of the model, so evaluation never holds up an
 * update.
 *
 * Two explicit state machines, each changed in one place per event:
 *
 *   the server     TRAINING --budget, target, signal (its own or a
 *                            worker's STOPREQ), too few workers--> STOPPING
 *                  STOPPING --every worker DONE or LOST--> DRAINED
 *   each worker    TRAINING --STOP queued--> STOPPED
 *   (as seen       STOPPED --FINAL lands--> FINAL
 *   by the server) STOPPED, FINAL --STATS lands--> DONE
 *                  TRAINING, STOPPED, FINAL --PEER_DOWN--> LOST
 *
 * LOST: the transport reported that the worker's process ended or its
 * connection broke (HETSGD_EV_PEER_DOWN).  That is the only way a worker
 * is declared dead; a worker that is merely slow is never dropped (the
 * stall time is an error of the whole run, not a verdict on one worker).
 * A lost worker gets nothing more, owes nothing more, leaves the tau
 * estimate, and the round it was part of ends over the others.
 *
 * Which message from a worker is legal in which of its states is the
 * table server_legal in server.c; anything else is a protocol error that
 * names the worker, the message and the state.
 */
#ifndef HETSGD_SERVER_H
#define HETSGD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>

#include "wire.h"

#define MAX_PENDING 8u		/* server's queued sends per worker */

enum server_state {
	S_TRAINING,	/* blocks are applied, replies written */
	S_STOPPING,	/* STOP is queued to every worker; their last messages come */
	S_DRAINED,	/* every worker sent its statistics */
};

enum peer_state {
	WK_TRAINING,	/* the worker trains */
	WK_STOPPED,	/* STOP is queued for it: late blocks are dropped */
	WK_FINAL,	/* its final model came (methods whose workers send one) */
	WK_DONE,	/* its statistics came: its last message */
	WK_LOST,	/* its process or connection ended: dropped */
	WK_NSTATES,
};

struct pending {
	uint16_t type;
	uint16_t flags;
	uint64_t round;
	double due;
};

struct eval_job {
	float *x;
	struct hetsgd_eval_point pt;
};

struct server {
	struct eng *e;
	enum server_state state;
	uint8_t *wk_state;	/* per worker: enum peer_state */
	uint32_t ndone;		/* workers in WK_DONE */
	uint32_t nlost;		/* workers in WK_LOST */
	int stop_sig;		/* a signal asked to stop (here or STOPREQ) */
	char stop_why[64];	/* the reason server_should_stop made up */
	int landed;		/* a block landed in this pass of the loop */
	float *x;		/* the model (ASGD, SYNC; LOSCAR's at the end) */
	uint64_t version;
	float *acc;		/* SYNC: gradient sum; LOSCAR: FINAL sum */
	uint32_t acc_count;
	uint8_t *got;		/* per worker: contributed to the current round */
	/* SYNC, LOSCAR: per worker, its block of the current round (d or K
	 * values), summed in worker order once the round is complete: the
	 * order that sharded averaging sums in too (shard.h) */
	float *rows;
	struct ps0 *ps;		/* ASGD with --servers > 1 (pserver.h); NULL */
	struct hetsgd_grad_table table;	/* MALENIA, RINGLEADER: per-worker sums */
	struct hetsgd_tau_est *tau;
	struct hetsgd_worker_stats *ws;
	double *compute;	/* per worker: compute seconds as last reported */
	uint64_t *steps;	/* per worker, as last reported */
	double *idle, *wall;
	/* LOSCAR */
	struct hetsgd_mask mask;
	uint64_t round;
	float *sum;		/* K */
	float *xs;		/* d: the average scattered for encoding */
	float *snap;		/* d: sum of snapshots */
	uint8_t *have_snap;	/* per worker: its part of this snapshot came */
	uint32_t snap_count;
	int snap_wanted;
	uint64_t *snap_steps;	/* per worker: its steps at its snapshot */
	uint64_t snap_round;	/* the round the snapshot's workers go on with */
	uint32_t finals;
	/* checkpoints (server_ckpt.c) */
	double next_ckpt;	/* absolute time the next one is due */
	int ckpt_wanted;	/* LOSCAR: the next snapshot is a checkpoint's */
	uint64_t nckpt;
	double ckpt_t;		/* training seconds of the last one */
	/* sends */
	struct pending *pend;	/* n * MAX_PENDING */
	uint32_t *pend_len;
	uint64_t updates, dropped;
	double next_eval;
	/* evaluation thread (eval.c) */
	pthread_t ethr;
	int ethr_started;
	pthread_mutex_t emu;
	pthread_cond_t ecv;
	int ebusy, equit;
	struct eval_job job;
	uint32_t *eidx;			/* 0 .. n-1 of the largest evaluation set */
	float *eg;
	float *wg;			/* worker_eval: one worker's gradient */
	double *wloss;			/* worker_eval: f_i(x) of the last evaluation */
	atomic_int target_hit;
	char target_why[64];
	struct hetsgd_eval_point *pts;
	size_t npts, cappts;
	int eval_err;
	char eval_msg[512];
};

/* The server's side of a run (rank 0). */
int server_run(struct eng *e, struct hetsgd_engine_result *res);

/* ---- for the methods ---- */

/* Queue a message for worker wk, written when due (in order per worker). */
int enqueue(struct server *s, uint32_t wk, uint16_t type, uint64_t round,
	    uint16_t flags, double due);
/* x -= gamma b, for a dense or indexed block. */
/* Gradients the workers reported so far. */
uint64_t server_grads(const struct server *s);
/* Whether every worker that is not LOST has flag[wk] set (a round's
 * blocks, a snapshot's parts). */
int server_all_live(const struct server *s, const uint8_t *flag);
/* Whether worker wk is LOST. */
static inline int server_is_lost(const struct server *s, uint32_t wk)
{
	return s->wk_state[wk] == WK_LOST;
}

/* ---- checkpoints (server_ckpt.c) ---- */

/* The server's state from a checkpoint (after the shared set-up). */
void ckpt_resume(struct server *s);
/* A checkpoint when one is due (each pass of the loop while training). */
int ckpt_tick(struct server *s, double t);
/*
 * Hand the state to on_checkpoint: x the model every worker restarts
 * from, steps[i] each worker's step count (NULL: as last heard), round
 * LOSCAR's next round.
 */
int ckpt_take(struct server *s, const float *x, const uint64_t *steps, uint64_t round,
	      double t);
/* LOSCAR's snapshot is complete: its average is the checkpoint's model. */
int ckpt_from_snapshot(struct server *s, double t);

/* ---- evaluation (eval.c) ---- */

int eval_start(struct server *s);
/* Let the evaluation thread finish what it has, and end it. */
void eval_stop(struct server *s);
/* Hand x * scale to the evaluation thread unless it is busy (then skip it). */
void eval_submit(struct server *s, const float *x, double scale);
/* The evaluation thread's error as this thread's, or 0. */
int eval_error(struct server *s);
/* Evaluate the server's model when an evaluation is due (a server_tick). */
void eval_model_tick(struct server *s, double t);
/* The final point, evaluated here, into res. */
int eval_final(struct server *s, struct hetsgd_engine_result *res);

#endif
