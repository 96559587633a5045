/*
 * The sharded parameter server (ASGD with --servers S > 1; algo/README.md,
 * "Sharded parameter server").
 *
 * The model's d coordinates are cut into S contiguous shards, shard j =
 * [j d / S, (j + 1) d / S).  Shard 0 lives at rank 0, the server of every
 * other method; shard j >= 1 at its own rank, n + j, after the workers.
 * Rank 0 stays the only one that decides: it runs the policy, the tau
 * estimate, the stop and the evaluation, and it orders the steps.
 *
 *   post     a worker writes shard j of its gradient (PART) straight into
 *            shard server j's staging slot, for every j >= 1, then shard 0
 *            (GRAD, with its times, as on one server) to rank 0 last;
 *   decide   rank 0 computes gamma_i as on one server, steps shard 0 and
 *            writes a STEP (worker, gamma_i, the version after it, or
 *            dropped) to every shard server, in the order it stepped;
 *   step     a shard server applies the STEPs in that order, each once
 *            the named worker's PART has landed (a part of a dead worker
 *            that never came is a zero step: the versions stay in line),
 *            and writes its shard of the model (SHARD) to that worker;
 *   gather   the worker's inbox is complete when all S shards are in
 *            (MODEL from rank 0, SHARD from the others); its model
 *            version is the oldest of theirs.
 *
 * So every shard sees the same steps, with the same gamma_i, in the same
 * order as shard 0: with one worker (or any fixed order of arrivals) the
 * model is bitwise the one server's.  Rank 0 gathers the whole model by
 * PULL (a SHARD back, after the steps before it) for an evaluation, a
 * checkpoint and the end; shard servers end on STOP (after the final
 * pull) with their statistics.
 *
 * A shard server that dies takes its shard with it: the run fails, naming
 * it, and resumes from its last checkpoint (--checkpoint-every, --resume).
 */
#ifndef HETSGD_PSERVER_H
#define HETSGD_PSERVER_H

#include <stdint.h>

#include "engine_core.h"

struct server;
struct worker;
struct eng_hdr;
struct hetsgd_block;
struct hetsgd_ev;
struct hetsgd_engine_result;

/* Shard j of the model: [lo, hi). */
static inline void ps_bounds(const struct eng *e, uint32_t j, uint32_t *lo, uint32_t *hi)
{
	*lo = (uint32_t)((uint64_t)j * e->d / e->nservers);
	*hi = (uint32_t)((uint64_t)(j + 1) * e->d / e->nservers);
}

/* The rank of shard j's server, and the shard of a rank (-1: none). */
static inline int ps_rank(const struct eng *e, uint32_t j)
{
	return j ? (int)(e->n + j) : 0;
}

static inline int ps_shard_of(const struct eng *e, int rank)
{
	if (rank == 0)
		return 0;
	return rank > (int)e->n && rank < e->size ? rank - (int)e->n : -1;
}

/* A block that is exactly shard j's coordinates (dense) or lies in them
 * (indexed): 0 or a protocol error naming the rank. */
int ps_want_shard(const struct eng *e, const struct hetsgd_ev *ev, const struct hetsgd_block *b,
		  uint32_t j, int dense_only, const char *what);

/* ---- a shard server's rank (n + j) ---- */

int pserver_run(struct eng *e, struct hetsgd_engine_result *res);

/* ---- rank 0 ---- */

enum { PULL_EVAL = 1, PULL_CKPT = 2, PULL_FINAL = 4 };

int ps0_init(struct server *s);
void ps0_fini(struct server *s);
/* Rank 0 decided on worker wk's gradient: tell every shard server. */
int ps0_step(struct server *s, uint32_t wk, double gamma, uint16_t flags);
/* Gather the whole model for `why` (PULL_*): when every shard is in,
 * the evaluation or checkpoint is done. */
int ps0_pull(struct server *s, unsigned why);
/* A message from a shard server's rank. */
int ps0_recv(struct server *s, const struct hetsgd_ev *ev);
/* A shard server's rank went down. */
int ps0_lost(struct server *s, const struct hetsgd_ev *ev);
/* Write what is queued for the shard servers. */
int ps0_flush(struct server *s);
/* Every worker is done: the final model into s->x, then STOP to the shard
 * servers and their statistics into res. */
int ps0_finish(struct server *s, struct hetsgd_engine_result *res);

/* ---- a worker ---- */

int ps_worker_init(struct worker *w);
void ps_worker_fini(struct worker *w);
/* Write the posted GRAD as S parts (PART to shards 1 .. S - 1, GRAD to
 * rank 0 last); *done once all went. */
int ps_worker_write(struct worker *w, int *done);
/* A shard of the reply (MODEL from rank 0, SHARD from a shard server). */
int ps_worker_inbox(struct worker *w, const struct hetsgd_ev *ev, const struct eng_hdr *h,
		    const struct hetsgd_block *b);

#endif
