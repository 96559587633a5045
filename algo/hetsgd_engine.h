/*
 * hetsgd engine: time profiles, the tau estimate, step-size policies, the
 * LOSCAR merge, and the engine that runs every method over the transport.
 *
 * Part of hetsgd's algorithm room; hetsgd_algo.h includes every part.
 * Conventions, as in the rest of hetsgd: a call returns 0 or a negative
 * errno value; a failed call leaves a sentence naming the cause and the
 * fix in hetsgd_errmsg(); outputs are written only on success.
 */
#ifndef HETSGD_ENGINE_H
#define HETSGD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "hetsgd_transport.h"
#include "hetsgd_data.h"
#include "hetsgd_objective.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- heterogeneous compute: time profiles ------------------------------ */

/*
 * One machine reproduces a heterogeneous cluster by padding each gradient
 * computation of worker i (0-based, of n) to a target time.  Mean seconds
 * per gradient, with c = unit_s:
 *   CONST    c
 *   LINEAR   c (i + 1)
 *   SQRT     c (1 + sqrt(i))
 *   SQUARED  c (1 + i^2)
 *   RANDOM   c (1 + (n - 1) u_i), u_i uniform in [0, 1) from seed
 * With shuffle set, worker i takes the mean of position pi(i) of a seeded
 * permutation pi instead of position i (the papers shuffle tau_i = i + 1).
 * With noise > 0, every step's target is the mean times exp(noise z -
 * noise^2 / 2), z ~ N(0, 1) drawn from (seed, i, step): a lognormal factor
 * whose mean is 1.  A step whose real computation takes longer than its
 * target is not padded (the engine counts these overruns).
 */
enum hetsgd_profile_kind {
	HETSGD_PROFILE_CONST = 1,
	HETSGD_PROFILE_LINEAR,
	HETSGD_PROFILE_SQRT,
	HETSGD_PROFILE_SQUARED,
	HETSGD_PROFILE_RANDOM,
};

struct hetsgd_profile {
	enum hetsgd_profile_kind kind;
	double unit_s;		/* c; 0: no padding at all (run flat out) */
	double noise;		/* lognormal sigma per step, 0 .. 2 */
	int shuffle;
	uint64_t seed;
};

/* "const", "linear", "sqrt", "squared", "random"; -EINVAL otherwise. */
int hetsgd_profile_parse(const char *name, enum hetsgd_profile_kind *kind);
const char *hetsgd_profile_name(enum hetsgd_profile_kind kind);

/* Mean seconds per gradient of worker i of n (-EINVAL for a bad profile). */
int hetsgd_profile_mean(const struct hetsgd_profile *prof, uint32_t i,
			uint32_t n, double *tau);

/* Target seconds of step `step` of worker i whose mean is `mean`. */
double hetsgd_profile_step(const struct hetsgd_profile *prof, double mean,
			   uint32_t i, uint64_t step);

/* ---- Rescaled ASGD: tau estimation and step-size policies ------------- */

/*
 * Online estimate of each worker's seconds per gradient, from the times
 * the workers report with their gradients.  Robust: the estimate is the
 * median of the last `window` reports, so one slow step (a page fault, a
 * preempted core) does not move it, and a worker that really speeds up or
 * slows down is followed within window / 2 + 1 reports.
 *
 * Active workers: a worker joins with its first report and leaves with
 * hetsgd_tau_leave(), or when it has not reported for stale_s plus four
 * times its estimate (it died, stalled or was descheduled): tau_max is the
 * largest estimate among active workers, so the rescaling follows workers
 * that join or leave.  A stale worker rejoins with its next report.
 */
struct hetsgd_tau_est;

/* window 1 .. 1024; stale_s > 0.  Free with hetsgd_tau_destroy(). */
int hetsgd_tau_create(uint32_t n, uint32_t window, double stale_s, struct hetsgd_tau_est **out);
void hetsgd_tau_destroy(struct hetsgd_tau_est *e);	/* NULL accepted */
/* A report of tau seconds at time now; -EINVAL for a bad worker, tau or now. */
int hetsgd_tau_report(struct hetsgd_tau_est *e, uint32_t worker, double tau,
		      double now);
void hetsgd_tau_leave(struct hetsgd_tau_est *e, uint32_t worker);
/* The estimate (0 before the first report). */
double hetsgd_tau_get(const struct hetsgd_tau_est *e, uint32_t worker);
/* Whether the worker counts at time now. */
int hetsgd_tau_active(const struct hetsgd_tau_est *e, uint32_t worker,
		      double now);
/* Largest estimate over active workers at time now; 0 when none. */
double hetsgd_tau_max(const struct hetsgd_tau_est *e, double now);

enum hetsgd_policy {
	HETSGD_POLICY_VANILLA = 1,	/* gamma */
	HETSGD_POLICY_DELAY_ADAPTIVE,	/* gamma n / max(n, delay) */
	HETSGD_POLICY_RINGMASTER,	/* gamma; drop when delay >= R */
	HETSGD_POLICY_RESCALED,		/* gamma tau_i / tau_max */
};

/* What a policy sees of one gradient. */
struct hetsgd_policy_in {
	double gamma;		/* the base step size */
	uint32_t n;		/* workers */
	uint64_t delay;		/* server updates since the gradient's model */
	uint64_t R;		/* Ringmaster's R; 0 means n */
	double tau_i;		/* the sending worker's seconds per gradient; 0: unknown */
	double tau_max;		/* the largest over active workers; 0: unknown */
};

/* One row of the table of policies (policy.c). */
struct hetsgd_policy_desc {
	enum hetsgd_policy policy;
	const char *name;	/* for --policy and the outputs */
	const char *help;	/* the step size, as a formula */
	double (*gamma)(const struct hetsgd_policy_in *in);
};

/* Row i of the table (i from 0), NULL past its end: for help texts. */
const struct hetsgd_policy_desc *hetsgd_policy_at(size_t i);
/* The row of a policy; NULL when the value is no policy. */
const struct hetsgd_policy_desc *hetsgd_policy_get(enum hetsgd_policy policy);
/*
 * The names, in table order, joined by sep, into buf (always terminated
 * when len > 0).  Returns the length the whole list needs, as snprintf.
 */
size_t hetsgd_policy_list(char *buf, size_t len, const char *sep);

/* A name of the table; -EINVAL otherwise. */
int hetsgd_policy_parse(const char *name, enum hetsgd_policy *policy);
/* "invalid" for a value that is no policy. */
const char *hetsgd_policy_name(enum hetsgd_policy policy);

/*
 * Step size for one gradient (see struct hetsgd_policy_in).  Returns 0
 * when the policy discards the gradient (Ringmaster, delay >= R).
 * RESCALED with tau_i or tau_max unknown (0) falls back to gamma, and so
 * does a value that is no policy.
 */
double hetsgd_policy_gamma(enum hetsgd_policy policy, const struct hetsgd_policy_in *in);

/* ---- LOSCAR-SGD: the merge ---------------------------------------------- */

enum hetsgd_merge {
	HETSGD_MERGE_DELAY_CORRECTED = 1,	/* x[S] += mbar - y[S] */
	HETSGD_MERGE_OVERWRITE,			/* x[S]  = mbar */
};

/* "delay-corrected", "overwrite"; -EINVAL otherwise. */
int hetsgd_merge_parse(const char *name, enum hetsgd_merge *merge);
const char *hetsgd_merge_name(enum hetsgd_merge merge);

/*
 * Merge the average mbar of the K masked coordinates idx[0 .. k) into the
 * worker's current model x (z in the LOSCAR paper), whose values at the
 * snapshot were y: y[j] and mbar[j] belong to coordinate idx[j].
 */
void hetsgd_loscar_merge(enum hetsgd_merge merge, float *x,
			 const uint32_t *idx, uint32_t k, const float *y,
			 const float *mbar);

/* ---- Malenia SGD and Ringleader ASGD: the server's gradient table -------- */

/*
 * Both baselines of the Rescaled ASGD paper keep, per worker i, the sum of
 * the gradients it sent in the current round and their count b_i, and step
 *   x -= gamma (1/n) sum_{i: b_i > 0} (sum_i / b_i)
 * (the average over workers of each worker's mean gradient).  They differ
 * in when a round ends and which gradients enter it:
 *   Malenia     only gradients computed at the current model; it steps
 *               when every b_i >= 1 and the harmonic mean
 *               (1/n sum_i 1/b_i)^-1 >= S / n; older ones are dropped.
 *   Ringleader  every gradient enters the round in which it lands (one
 *               computed at the model before the last step included: at
 *               most that stale, see algo/README.md); it steps when every
 *               b_i >= 1.
 */
struct hetsgd_grad_table {
	uint32_t n;
	size_t d;
	float *sum;		/* n rows of d: row i is worker i's sum */
	uint32_t *count;	/* b_i */
	uint32_t filled;	/* workers with b_i > 0 */
	uint8_t *lost;		/* workers that died: never waited for again */
	uint32_t nlost;
};

/* Zeroed table for n >= 1 workers, d >= 1; -ENOMEM.  Free with _fini. */
int hetsgd_grad_table_init(struct hetsgd_grad_table *t, uint32_t n, size_t d);
void hetsgd_grad_table_fini(struct hetsgd_grad_table *t);
/* Every sum 0, every count 0: the start of a round. */
void hetsgd_grad_table_clear(struct hetsgd_grad_table *t);
/* Worker i's row, for adding a gradient in place; then _counted(). */
float *hetsgd_grad_table_row(struct hetsgd_grad_table *t, uint32_t i);
/* One more gradient of worker i is in its row: b_i += 1. */
void hetsgd_grad_table_counted(struct hetsgd_grad_table *t, uint32_t i);
/* Row i += g (d values), b_i += 1. */
void hetsgd_grad_table_add(struct hetsgd_grad_table *t, uint32_t i, const float *g);
/*
 * x -= gamma (1/m) sum over the m workers with b_i > 0 of sum_i / b_i
 * (m = n while no worker is lost).
 */
void hetsgd_grad_table_step(const struct hetsgd_grad_table *t, float *x, float gamma);
/*
 * Worker i died: the rounds stop waiting for it.  Gradients of its that
 * are already in this round's table stay there (they were valid when they
 * came), as sync and LOSCAR keep a block that landed before its sender died.
 */
void hetsgd_grad_table_lose(struct hetsgd_grad_table *t, uint32_t i);

/*
 * Malenia's condition: every b_i >= 1 and (1/n sum 1/b_i)^-1 >= S / n,
 * evaluated as n^2 >= S sum 1/b_i with a relative slack of 1e-12 (so
 * that S = n b with every b_i = b steps, whatever the rounding of 1/b).
 * S <= 0 means S = n: every worker has one gradient.  Over the m live
 * workers once some are lost: (1/m sum_live 1/b_i)^-1 >= S / n.
 */
int hetsgd_malenia_ready(const struct hetsgd_grad_table *t, double S);
/*
 * Malenia's admission of a gradient computed at model version v when the
 * server is at k: 1 use it (v == k), 0 drop it (v < k), -EPROTO (with the
 * message) for a version the server never sent (v > k).
 */
int hetsgd_malenia_admit(uint64_t v, uint64_t k);
/* Ringleader's round: every live worker's b_i >= 1. */
int hetsgd_ringleader_ready(const struct hetsgd_grad_table *t);
/*
 * Ringleader's admission of a gradient computed at version v when the
 * server is at k: 1 when it enters this round: v == k, or v == k - 1 (it
 * was in flight at the last step: kept, never dropped); -EPROTO (with the
 * message) otherwise: the protocol bounds the delay by 1 (algo/README.md).
 */
int hetsgd_ringleader_admit(uint64_t v, uint64_t k);

/* ---- the engine --------------------------------------------------------- */

/*
 * A job of n + 1 ranks: rank 0 is the server (it holds the model for
 * ASGD and synchronous SGD, and averages for LOSCAR), ranks 1 .. n are
 * workers 0 .. n - 1.  A worker is compute threads (one by default; more
 * split each batch), pinned per the topology plan, and a progress step
 * (the calling thread, pinned too)
 * that drives the transport: it hands blocks from the compute thread to
 * the network and landed blocks to the compute thread, so computation
 * never waits for the network unless the method says so.  Each method is
 * one file of algo/ (method_*.c) that plugs its worker loop and its
 * server's handling of a block into that shared loop (see algo/README.md).
 *
 *   ASGD    worker: compute g at its model, write it (dense, or indexed
 *           when that is smaller) with its seconds per gradient; wait
 *           for the model the server writes back.  Server: x -= gamma_i g
 *           with gamma_i from the policy; write x to that worker only.
 *   SYNC    synchronous minibatch SGD: the server averages one gradient
 *           from every worker, steps, writes x to all.
 *   MALENIA worker: gradients at its model, written one after another
 *           without waiting; the model lands when it lands.  Server: the
 *           table above at the current model; steps when Malenia's
 *           condition holds and writes x to all; older gradients dropped.
 *   RINGLEADER  ASGD's worker.  Server: the table above; steps when every
 *           worker contributed; replies with x after every gradient.
 *   LOSCAR  worker: local steps for round_s seconds; snapshot the K
 *           masked values (mask from (seed, round), the same on every
 *           rank); write them; keep stepping (overlap) or wait (no
 *           overlap) until the average lands; merge; next round.
 *           Server: average the n blocks of a round, write it to all.
 *           K = d is the dense baseline.
 */
enum hetsgd_method {
	HETSGD_METHOD_ASGD = 1,
	HETSGD_METHOD_SYNC,
	HETSGD_METHOD_LOSCAR,
	HETSGD_METHOD_MALENIA,
	HETSGD_METHOD_RINGLEADER,
};

/*
 * How LOSCAR and SYNC average a round (algo/README.md, "Sharded
 * averaging").  SERVER: every worker writes its block to rank 0, which
 * averages and writes the result to all.  SHARDED: the round's values
 * are split into n contiguous shards, one per worker; each worker writes
 * each shard straight into its owner's staging slot, the owner averages
 * its shard (SYNC: and steps its shard of the model) and writes the
 * result straight into every worker's slot; rank 0 owns no shard.  The
 * averages are bitwise equal: both sum the blocks in worker order.
 * AUTO: SHARDED from HETSGD_SHARDED_MIN_WORKERS workers on, else SERVER.
 */
enum hetsgd_averaging {
	HETSGD_AVERAGING_AUTO = 0,
	HETSGD_AVERAGING_SERVER,
	HETSGD_AVERAGING_SHARDED,
};

#define HETSGD_SHARDED_MIN_WORKERS 16u

/* "auto", "server", "sharded"; -EINVAL otherwise. */
int hetsgd_averaging_parse(const char *name, enum hetsgd_averaging *avg);
const char *hetsgd_averaging_name(enum hetsgd_averaging avg);
/* What AUTO becomes for a method and n workers (SERVER for the methods
 * that do not average). */
enum hetsgd_averaging hetsgd_averaging_resolve(enum hetsgd_averaging avg,
					       enum hetsgd_method method, uint32_t n);

/* "asgd", "sync", "loscar", "malenia", "ringleader"; -EINVAL otherwise. */
int hetsgd_method_parse(const char *name, enum hetsgd_method *method);
const char *hetsgd_method_name(enum hetsgd_method method);

struct hetsgd_eval_point {
	double t;		/* seconds since the start of training */
	uint64_t grads;		/* gradients computed by all workers (work) */
	uint64_t updates;	/* server updates (ASGD, SYNC) or rounds (LOSCAR) */
	double loss;		/* the objective: (1/n) sum_i f_i(x), each worker's
				 * loss on its own evaluation sample, when the io
				 * gives worker_eval; else on the eval set; NaN
				 * without either */
	double pooled_loss;	/* on the eval set when worker_eval is given
				 * too (it weighs workers by shard size); NaN
				 * otherwise */
	double gnorm;		/* norm of the eval set's full gradient; NaN without */
	double acc;		/* on the test set; NaN without one or for non-classifiers */
	double idle_share;	/* workers' time waiting for the network / their time */
	int final;		/* the point of the final model */
	/* the evaluated model (d floats): valid during the callback only,
	 * NULL in hetsgd_engine_result's stored points */
	const float *x;
	/* f_i(x) for each worker i (n values) when worker_eval is given:
	 * valid during the callback only, NULL in stored points */
	const double *worker_loss;
};

/* Called on the server, in time order: on its evaluation thread, and for
 * the final point on the thread that called hetsgd_engine_run(). */
typedef void (*hetsgd_eval_fn)(void *arg, const struct hetsgd_eval_point *pt);

struct hetsgd_worker_stats;
struct hetsgd_ckpt;		/* hetsgd_model.h */

struct hetsgd_engine_cfg {
	enum hetsgd_method method;
	enum hetsgd_policy policy;	/* ASGD */
	uint64_t ringmaster_r;		/* RINGMASTER's R; 0: n */
	enum hetsgd_merge merge;	/* LOSCAR */
	int overlap;			/* LOSCAR: 1 keep stepping, 0 wait */
	uint32_t k;			/* LOSCAR: coordinates per round; 0: d */
	double round_s;			/* LOSCAR: local phase of a round */
	uint32_t round_steps;		/* LOSCAR: a round is this many local
					 * steps instead of round_s (0: by time);
					 * with overlap 0 a run is then the same
					 * step for step whatever the timing */
	enum hetsgd_averaging averaging;	/* LOSCAR, SYNC (0: AUTO) */
	uint32_t servers;		/* ASGD: the model's shards, each on its
					 * own server rank (0 or 1: rank 0 holds
					 * it all; algo/README.md, "Sharded
					 * parameter server") */
	double comm_delay_s;		/* LOSCAR: the server holds each average
					 * this long (emulates a slow network) */
	double malenia_s;		/* MALENIA: S, the step condition's
					 * batch; 0: n */
	float gamma;			/* step size */
	uint32_t batch;			/* minibatch (ignored for QUAD) */
	uint64_t seed;			/* sampling, masks, profile */
	struct hetsgd_profile profile;
	double budget_s;		/* stop after this long; 0: no limit */
	uint64_t budget_grads;		/* ... or this many gradients; 0: none */
	double target_loss;		/* stop when eval loss <= this; 0: off */
	double target_acc;		/* stop when test accuracy >= this; 0: off */
	double eval_interval_s;		/* 0: no intermediate evaluations */
	uint32_t tau_window;		/* 0: 8 */
	double tau_stale_s;		/* 0: 2 s */
	int compute_threads;		/* per worker (0: 1); each step's batch is
					 * split between them; deterministic for a
					 * given count, and hetsgd_sgd_reference()
					 * matches one thread */
	int pin;			/* 1 bind threads per the plan, 0 never,
					 * -1 unless the plan oversubscribes */
	double stall_s;			/* a worker waiting this long for a reply,
					 * or a server hearing from no worker, beyond
					 * the silence expected (a round, a delayed
					 * average, 4 steps of the slowest worker),
					 * fails the run; 0: 60 s */
	uint32_t min_workers;		/* stop the run (every output written)
					 * when fewer workers are left; 0: 1 */
	hetsgd_eval_fn on_eval;
	void *on_eval_arg;
	/*
	 * Worker, optional: each reply the worker takes, on its compute
	 * thread: LOSCAR the K averaged values of round `round` (in mask
	 * order), ASGD, SYNC and RINGLEADER the model of version `round`
	 * (d values).  For tests and tracing; v is valid during the call.
	 */
	void (*on_average)(void *arg, uint32_t worker, uint64_t round, const float *v,
			   size_t count);
	void *on_average_arg;
	/* the server, as it drops a worker that died (may be NULL) */
	void (*on_lost)(void *arg, const struct hetsgd_worker_stats *w);
	void *on_lost_arg;
	/*
	 * Checkpoints (server): every checkpoint_every_s seconds of training,
	 * and once more when the run stops (budget, target, signal, too few
	 * workers), on_checkpoint gets the state (valid during the call: the
	 * callee adds its configuration hash and texts and saves it).  A
	 * nonzero return fails the run with hetsgd_errmsg(); the previous
	 * checkpoint is untouched.  0: none.  What the state holds per method
	 * (LOSCAR's is the average of the workers' models, taken as a
	 * snapshot after a round's merge): algo/README.md.
	 */
	double checkpoint_every_s;
	int (*on_checkpoint)(void *arg, struct hetsgd_ckpt *ck);
	void *on_checkpoint_arg;
	/*
	 * Every rank: go on from this checkpoint (hetsgd_model.h) instead of
	 * the start.  Its method, n and d must be this run's, and io->x0 its
	 * model.  Every worker restarts from that model at the checkpoint's
	 * version or round, with its step count (so its sampler, its profile
	 * and the masks go on where they were) and its statistics; the server
	 * from its state; the training clock from its time (budgets count
	 * the time and gradients before it).  NULL: a fresh start.
	 */
	const struct hetsgd_ckpt *resume;
};

/* Defaults: rescaled ASGD, gamma 0.05, batch 32, LOSCAR delay-corrected
 * with overlap and round_s 0.05, const profile without padding, 10 s. */
void hetsgd_engine_cfg_init(struct hetsgd_engine_cfg *cfg);

/*
 * Check a configuration for n workers and a d-dimensional model before
 * any rank starts: every contradiction gets one sentence (-EINVAL).
 */
int hetsgd_engine_cfg_check(const struct hetsgd_engine_cfg *cfg, uint32_t n,
			    size_t d);

/* What a rank brings.  The engine never frees any of it. */
struct hetsgd_engine_io {
	/* worker: f_i, used by its compute thread only; server: for
	 * evaluation, used by its evaluation thread only (may be NULL). */
	struct hetsgd_objective *obj;
	/* worker with compute_threads T > 1: T - 1 more instances of the same
	 * objective, one per extra thread (an instance is single-threaded) */
	struct hetsgd_objective *const *thread_obj;
	const struct hetsgd_dataset *data;	/* worker: its samples; NULL for QUAD */
	const struct hetsgd_dataset *eval;	/* server: loss set (optional) */
	/*
	 * server, optional: n sets, worker i's evaluation sample (drawn from
	 * its own data).  The reported loss is then the objective both methods
	 * minimise, f = (1/n) sum_i f_i, every worker weighted the same
	 * whatever its shard's size; eval's loss is kept as pooled_loss.
	 */
	const struct hetsgd_dataset *const *worker_eval;
	const struct hetsgd_dataset *test;	/* server: accuracy set (optional) */
	const float *x0;			/* d floats, the same on every rank */
	size_t d;
	float *x_out;				/* server, optional: the final model */
};

struct hetsgd_worker_stats {
	uint32_t worker;
	uint64_t steps;		/* gradients computed */
	uint64_t sent;		/* messages written */
	uint64_t rounds;	/* LOSCAR rounds merged */
	uint64_t overlap_steps;	/* LOSCAR steps taken while a block was in flight */
	uint64_t dropped;	/* gradients the server discarded (Ringmaster) */
	uint64_t overruns;	/* steps longer than their profile target */
	double tau_target;	/* the profile's mean, seconds */
	double tau_est;		/* the server's estimate at the end */
	double compute_s;	/* seconds computing or padding */
	double idle_s;		/* seconds waiting for the network */
	double elapsed_s;
	uint64_t bytes_sent;
	uint64_t bytes_recv;
	uint64_t bytes_recv_training;	/* of bytes_recv, before STOP */
	/*
	 * A worker whose process ended or whose connection broke (the
	 * transport's PEER_DOWN; never a timeout) is dropped and the run goes
	 * on over the others.  Its figures are then the last the server
	 * heard from it (steps, compute, idle, elapsed).
	 */
	int lost;
	double lost_at_s;	/* seconds into training when it was dropped */
	char lost_why[192];
};

/* One shard of a sharded parameter server (cfg.servers > 1). */
struct hetsgd_server_stats {
	uint32_t shard;		/* 0 .. S - 1 */
	int rank;		/* 0 for shard 0, else workers + shard */
	uint32_t lo, hi;	/* its coordinates [lo, hi) */
	uint64_t updates;	/* steps it applied */
	uint64_t dropped;	/* steps the policy dropped */
	uint64_t bytes_sent, bytes_recv;	/* its engine traffic */
};

/* The most shards cfg.servers may ask for. */
#define HETSGD_MAX_SERVERS 256u

struct hetsgd_engine_result {
	double elapsed_s;
	uint64_t updates;	/* server updates (ASGD, SYNC) or rounds (LOSCAR) */
	uint64_t grads;
	uint64_t dropped;
	char stop_reason[64];	/* "time budget", "gradient budget", "target loss",
				 * "stopped by signal SIGTERM", ... */
	int stop_signal;	/* the signal that stopped the run, or 0 */
	uint32_t nlost;		/* server: workers dropped (workers[i].lost) */
	uint32_t nworkers;
	/* this rank's engine traffic (headers included), and the seconds
	 * its transport took to open (connect the pattern's pairs) */
	uint64_t bytes_sent, bytes_recv;
	uint64_t bytes_recv_training;	/* of bytes_recv, while training */
	double connect_s;
	enum hetsgd_averaging averaging;	/* as resolved for this run */
	/* The pairs the method needed (star for a server, all for sharded
	 * averaging) and the transport's footprint (hetsgd_tp_get_footprint):
	 * this rank's; at the server also the fewest and the most over the
	 * workers (fp_workers_ok: 0 when they could not be gathered). */
	enum hetsgd_tp_pattern pattern;
	struct hetsgd_tp_footprint fp;
	struct hetsgd_tp_footprint fp_workers_min, fp_workers_max;
	int fp_workers_ok;
	struct hetsgd_worker_stats *workers;	/* server: all; worker: its own */
	size_t npoints;
	struct hetsgd_eval_point *points;	/* server: the evaluations */
	char provider[256];	/* hetsgd_tp_describe() of this rank */
	char placement[160];	/* where this rank's threads went */
	uint32_t nplacements;	/* server: every rank's, "host: placement" */
	char (*placements)[232];
	uint64_t checkpoints;	/* server: checkpoints handed to on_checkpoint */
	double checkpoint_t;	/* server: training seconds of the last one */
	/* server, --servers S > 1: per shard of the model (shard 0 is rank
	 * 0's own), its coordinates, updates and traffic; else NULL, 0 */
	uint32_t nservers;
	struct hetsgd_server_stats *servers;
};

void hetsgd_engine_result_free(struct hetsgd_engine_result *res);

/*
 * Ask this process's run to stop as it does at its time budget, every
 * output written: call it from a SIGTERM or SIGINT handler (it is
 * async-signal-safe; the first signal counts).  On the server the run
 * stops with stop_reason "stopped by signal NAME"; a worker asks the
 * server to stop it (and stops by itself if no STOP comes within 2 s).
 * hetsgd_engine_stop_signal() says which signal came, or 0.
 */
void hetsgd_engine_request_stop(int signo);
int hetsgd_engine_stop_signal(void);

/*
 * Run one training job on this rank (collective over boot).  tp_attr
 * chooses the provider and device; the engine sizes the slots for the
 * model.  Returns 0 on every rank when training finished; otherwise a
 * negative errno with the reason in hetsgd_errmsg().  Once the transport
 * is open it leaves the bootstrap (hetsgd_boot_leave(): no collective of
 * boot may follow), so that under srun a worker's death costs the job
 * that worker only.
 */
int hetsgd_engine_run(struct hetsgd_boot *boot,
		      const struct hetsgd_tp_attr *tp_attr,
		      const struct hetsgd_engine_cfg *cfg,
		      const struct hetsgd_engine_io *io,
		      struct hetsgd_engine_result *res);

/*
 * The worker's sampler and step, run sequentially: `steps` SGD steps
 * x -= gamma g on batches drawn exactly as the engine's worker `worker`
 * draws them for this seed.  The reference that LOSCAR with one worker
 * and K = d must reproduce.
 */
int hetsgd_sgd_reference(struct hetsgd_objective *obj,
			 const struct hetsgd_dataset *data, float *x,
			 float gamma, uint32_t batch, uint64_t steps,
			 uint64_t seed, uint32_t worker);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_ENGINE_H */
