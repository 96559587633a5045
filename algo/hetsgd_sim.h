/*
 * hetsgd simulator: the engine's methods against a simulated clock.
 *
 * Part of hetsgd's algorithm room; hetsgd_algo.h includes every part.
 * Conventions, as in the rest of hetsgd: a call returns 0 or a negative
 * errno value; a failed call leaves a sentence naming the cause and the
 * fix in hetsgd_errmsg(); outputs are written only on success.
 *
 * A discrete-event simulation of one training job of n workers and a
 * server.  It runs the same method code as the engine where the math
 * lives (the step-size policies, the tau estimate, the LOSCAR merge, the
 * masks, the profiles' compute times, the objectives, the workers'
 * batch sampler) and re-expresses only who sends what when, against a
 * simulated clock and the network model below.  algo/README.md, section
 * "The simulator", lists what is shared and what is re-expressed.
 */
#ifndef HETSGD_SIM_H
#define HETSGD_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "hetsgd_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a LOSCAR round's or a sync step's average is formed. */
enum hetsgd_sim_averaging {
	HETSGD_SIM_AVG_SERVER = 1,	/* every block to rank 0, the average back */
	HETSGD_SIM_AVG_SHARDED,		/* reduce-scatter + all-gather over the workers */
};

/* "server", "sharded"; -EINVAL otherwise. */
int hetsgd_sim_averaging_parse(const char *name, enum hetsgd_sim_averaging *avg);
const char *hetsgd_sim_averaging_name(enum hetsgd_sim_averaging avg);

/*
 * The network.  Every rank has one full-duplex link of link_Bps bytes per
 * second each way (0: infinitely fast); the server's is server_Bps (0:
 * the same as the workers').  A message of B bytes sent at t keeps each
 * link it crosses busy for B / rate, in the order messages are sent, and
 * is delivered when both the sender's outgoing and the receiver's
 * incoming link have carried it (cut-through), plus latency_s.  The
 * server's incoming link is one FIFO shared by every sender (incast: n
 * blocks of B bytes sent at once take n B / rate), and so is its outgoing
 * link for its replies.
 * Sharded averaging of V values over n workers: each worker writes
 * (n - 1) shards of V / n values (reduce-scatter), the owners average
 * when every block is in and write their shard back to the n - 1 others
 * (all-gather): two phases of latency_s + (n - 1) (header + ceil(V' / n)
 * floats) / link_Bps each, the first starting when the last worker sent;
 * V' = V value_bytes / 4, the floats V stands for in the costed model.
 * Bytes on the wire: header_bytes per message plus value_bytes per value
 * (0: 4, a float).  value_bytes lets a model of another size be costed
 * while the dynamics of a smaller one are simulated.
 */
struct hetsgd_sim_net {
	double latency_s;
	double link_Bps;
	double server_Bps;
	enum hetsgd_sim_averaging averaging;	/* 0: server */
	double value_bytes;
	uint32_t header_bytes;			/* per message; the engine's is 64 */
	/* Not the network: a real host's compute, for comparing with real
	 * runs (sim-validate measures both in calibration runs; 0, 0 is the
	 * ideal clock).  A step takes max(profile time, step_floor_s): the
	 * gradient's own compute time on that host, which the engine's padding
	 * cannot shorten; a padded step (profile time > floor) takes
	 * step_extra_s more, the padding sleep's overshoot. */
	double step_extra_s;
	double step_floor_s;
};

/* What the simulation brings.  Nothing of it is freed by the simulator. */
struct hetsgd_sim_io {
	/* n objectives, worker i's f_i (the same pointer may repeat when the
	 * objectives differ only by their data: the simulation is one thread) */
	struct hetsgd_objective *const *obj;
	const struct hetsgd_dataset *const *data;	/* n shards; NULL for QUAD */
	/* the server's evaluation, as struct hetsgd_engine_io's obj, eval,
	 * worker_eval, test; may be NULL (no loss, no target) */
	struct hetsgd_objective *eval_obj;
	const struct hetsgd_dataset *eval;
	const struct hetsgd_dataset *const *worker_eval;
	const struct hetsgd_dataset *test;
	const float *x0;	/* d floats */
	size_t d;
	float *x_out;		/* optional: the final model */
};

/* What a trace callback sees: one protocol event, in time order. */
enum hetsgd_sim_trace_kind {
	HETSGD_SIM_TR_SEND = 1,	/* a worker sent its gradient or round block */
	HETSGD_SIM_TR_ARRIVE,	/* ... and it reached the server (or, sharded,
				 * the reduce-scatter finished: worker = n) */
	HETSGD_SIM_TR_UPDATE,	/* the server applied a gradient (ASGD), a
				 * step (sync) or averaged a round (LOSCAR) */
	HETSGD_SIM_TR_DROP,	/* the policy dropped a gradient */
	HETSGD_SIM_TR_REPLY,	/* a model or an average reached a worker */
	HETSGD_SIM_TR_MERGE,	/* a LOSCAR worker merged an average */
};

struct hetsgd_sim_trace {
	enum hetsgd_sim_trace_kind kind;
	double t;		/* simulated seconds */
	uint32_t worker;	/* n for events of the whole job (sync, LOSCAR updates) */
	uint64_t round;		/* model version or LOSCAR round */
	uint64_t delay;		/* ASGD: updates since the gradient's model */
	double gamma;		/* ASGD: the policy's step size */
	double bytes;		/* SEND, ARRIVE, REPLY: the message's bytes */
};

typedef void (*hetsgd_sim_trace_fn)(void *arg, const struct hetsgd_sim_trace *tr);

/*
 * Check a simulation before it starts: hetsgd_engine_cfg_check, then what
 * the simulator needs (a method it simulates, a profile with a time unit,
 * a budget, a sane network); every refusal gets one sentence (-EINVAL,
 * -ENOTSUP for a method not simulated).
 */
int hetsgd_sim_cfg_check(const struct hetsgd_engine_cfg *cfg, const struct hetsgd_sim_net *net,
			 uint32_t n, size_t d);

/*
 * Simulate cfg (hetsgd_sim_cfg_check must accept it) for n workers on
 * net.  Budgets, targets and evaluation intervals are in simulated
 * seconds; the profile must pad (unit_s > 0): its step times are the
 * compute times.  cfg's fields of a real run (threads, pinning, stall
 * time, checkpoints, resume, callbacks on_lost) are not used; on_eval is
 * called for each point as the engine's.  trace may be NULL.  The result
 * is the engine's (hetsgd_engine_result_free frees it), with elapsed_s
 * and every time simulated; provider says "simulated" and the network.
 * Methods: asgd (every policy), sync, loscar, malenia, ringleader.
 */
int hetsgd_sim_run(const struct hetsgd_engine_cfg *cfg, const struct hetsgd_sim_net *net,
		   uint32_t n, const struct hetsgd_sim_io *io, hetsgd_sim_trace_fn trace,
		   void *trace_arg, struct hetsgd_engine_result *res);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_SIM_H */
