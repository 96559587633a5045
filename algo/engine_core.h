/*
 * The engine's shared core, private to algo/: the context every rank
 * shares (struct eng), the clock, placement, the mask set-up, and the
 * table of operations a method provides (struct hetsgd_method_ops).
 *
 * Who includes whom (one way only):
 *   engine.c -> method_*.c -> server.h, worker.h -> wire.h, team.h
 *   -> engine_core.h
 * The worker and the server call a method through e->ops; only engine.c
 * names every method.
 */
#ifndef HETSGD_ENGINE_CORE_H
#define HETSGD_ENGINE_CORE_H

#include <math.h>
#include <stdint.h>
#include <time.h>

#include "algo_priv.h"
#include "hetsgd_topology.h"

struct worker;
struct server;
struct eng_hdr;

/*
 * A method: what its worker's compute thread does, what its server does
 * with a landed block, and its part of the configuration.  Every entry
 * but name, id, to_server, to_worker, worker_loop and server_msg may be
 * NULL or 0.
 */
struct hetsgd_method_ops {
	enum hetsgd_method id;
	const char *name;		/* as --method spells it */
	/* the messages it adds to STOP, STATS and ABORT (bits 1u << MSG_*) */
	uint32_t to_server;		/* a worker writes them to the server */
	uint32_t to_worker;		/* the server writes them to a worker */
	int delayable;			/* comm_delay_s holds the server's replies */
	/* its worker writes GRAD after GRAD without waiting for a reply:
	 * MODEL may land in COMPUTE or POSTED (worker_legal_streaming) */
	int streams;
	/* its server holds no model while training: a checkpoint waits for
	 * the workers' snapshots (server_ckpt.c) */
	int snapshots;
	/* this table is a method's sharded averaging (shard.h): its workers
	 * keep the shard tables and talk to each other */
	int sharded;
	/* the table --averaging sharded runs instead of this one; NULL: the
	 * method has no sharded averaging */
	const struct hetsgd_method_ops *sharded_ops;
	/* its own configuration checks (after the shared ones) */
	int (*check)(const struct hetsgd_engine_cfg *c, uint32_t n, size_t d);
	/* masked coordinates per round (LOSCAR's K); NULL: no mask */
	uint32_t (*coords)(const struct hetsgd_engine_cfg *c, size_t d);
	/* seconds of silence its protocol adds to the stall time */
	double (*quiet_s)(const struct hetsgd_engine_cfg *c);
	/* the compute thread's loop, until stop; 0 or a negative errno */
	int (*worker_loop)(struct worker *w);
	/* the progress thread after STOP, before the statistics */
	int (*worker_finish)(struct worker *w);
	/* the server's own state, after the shared set-up; fini undoes it
	 * (also after a failed init) */
	int (*server_init)(struct server *s);
	void (*server_fini)(struct server *s);
	/* a block of a type in to_server that is legal in the worker's state */
	int (*server_msg)(struct server *s, uint32_t wk, const struct eng_hdr *h,
			  const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t);
	/* each pass of the server's loop while training */
	void (*server_tick)(struct server *s, double t);
	/* worker wk was dropped (WK_LOST): finish what waited for it */
	int (*server_lost)(struct server *s, uint32_t wk, double t);
	/* every worker is done: leave the final model in the server's x */
	int (*server_finish)(struct server *s);
};

/* The context of one rank, server or worker. */
struct eng {
	const struct hetsgd_engine_cfg *cfg;
	const struct hetsgd_engine_io *io;
	const struct hetsgd_method_ops *ops;
	struct hetsgd_tp *tp;
	struct hetsgd_topo *topo;
	struct hetsgd_topo_plan plan;
	int bind;
	/* unpinned because the launcher bound this rank to too few CPUs:
	 * how many it has and how many threads it needs (0 otherwise) */
	int short_cpus, short_need;
	int rank, size;
	uint32_t n;		/* workers: ranks 1 .. n */
	uint32_t nservers;	/* shards of a sharded parameter server (ASGD,
				 * pserver.h): rank 0 and ranks n + 1 ..
				 * n + nservers - 1; 1: rank 0 holds the model */
	size_t d;
	uint32_t k;		/* masked coordinates per round; 0: no mask */
	uint64_t mask_seed;
	double t0;		/* start of training on this rank (this process) */
	double t_base;		/* training seconds before t0 (a resumed run) */
	double stall_s;
	int abort_sent;		/* this rank already told its peers it failed */
	size_t slot;
	struct hetsgd_block_limits lim;
	uint64_t bytes_sent, bytes_recv, sent;
	uint64_t bytes_recv_train;	/* received before STOP (or the server's stop) */
	/* a peer whose process or connection ended (HETSGD_EV_PEER_DOWN),
	 * from eng_poll: the server drops a worker, a worker fails when it
	 * is the server */
	int (*on_down)(void *ctx, const struct hetsgd_ev *ev);
	void *down_ctx;
};

/* ---- the clock ---- */

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void abs_deadline(struct timespec *ts, double t)
{
	ts->tv_sec = (time_t)t;
	ts->tv_nsec = (long)((t - (double)ts->tv_sec) * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Seconds of training at time t, a resumed run's earlier time included. */
static inline double train_time(const struct eng *e, double t)
{
	return t - e->t0 + e->t_base;
}

/* The model version (ASGD, SYNC, MALENIA, RINGLEADER) or the round
 * (LOSCAR) a worker starts at: 0, or the checkpoint's. */
static inline uint64_t eng_start_version(const struct eng *e)
{
	return e->cfg->resume ? e->cfg->resume->updates : 0;
}

static inline uint64_t eng_start_round(const struct eng *e)
{
	return e->cfg->resume ? e->cfg->resume->round : 0;
}

static inline int finite_nonneg(double v)
{
	return isfinite(v) && v >= 0.0;
}

/* ---- placement ---- */

/* Plan this rank's threads and say where they run in res->placement. */
void eng_place(struct eng *e, struct hetsgd_boot *boot, struct hetsgd_engine_result *res);
/*
 * Every rank's placement, "host: placement", into rank 0's result
 * (collective); rank 0 warns once for the ranks a launcher left unpinned.
 */
void gather_placements(struct eng *e, struct hetsgd_boot *boot, struct hetsgd_engine_result *res);
/* Collective after the open: res->fp from the transport, and at rank 0
 * the fewest and the most over the workers. */
void gather_footprints(struct eng *e, struct hetsgd_boot *boot, struct hetsgd_engine_result *res);

/* Pin the calling thread to pu when the plan pins; a refusal is no error. */
static inline void bind_self(struct eng *e, int pu)
{
	if (e->bind)
		(void)hetsgd_topo_bind_thread(e->topo, pu);
}

/* ---- shared set-up ---- */

/* The method's mask of K coordinates (nothing when e->k is 0). */
int eng_mask_init(struct eng *e, struct hetsgd_mask *mask);

/* A transport error as the library's message. */
int tp_error(int ret, const char *what);

#endif
