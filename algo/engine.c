/*
 * The engine: one loop that runs every method.
 *
 * Rank 0 is the server, ranks 1 .. n the workers.  A worker has a compute
 * thread (steps, padding to its time profile) and a progress thread (the
 * caller's, which owns the transport endpoint: the endpoint is not
 * thread-safe).  They meet in a mailbox guarded by one mutex:
 *   outbox   compute -> progress: one message to encode and write;
 *   inbox    progress -> compute: the latest model (ASGD, SYNC) or the
 *            average of a round (LOSCAR), and the stop flag.
 * The progress thread copies a landed block out of its staging slot and
 * releases the slot at once, so a peer's credits never wait on compute.
 *
 * The server has a progress thread (the caller's) that applies updates
 * and averages as blocks land, and an evaluation thread that computes
 * loss and accuracy on copies of the model, so evaluation never holds up
 * an update.
 *
 * A method is a struct method: what a worker's compute thread does for a
 * step, and what the server does when a block lands.  ASGD (all four
 * policies) and SYNC share the worker; LOSCAR (both merges, with or
 * without overlap, any K) has its own.
 *
 * Messages: a 64-byte engine header (below) then a transport block.  Every
 * field from a peer is checked before use; a peer that breaks the protocol
 * ends the run with an error naming it.  Blocks to one peer arrive in the
 * order they were written (one ring per peer, filled in order), which the
 * stop protocol relies on: STOP is the server's last message to a worker.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* sched_getaffinity, CPU_ISSET */
#endif
#include <config.h>

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "algo_priv.h"
#include "hetsgd_topology.h"

#define ENG_MAGIC 0x45475348u	/* "HSGE" little-endian */
#define HDR_BYTES 64u
#define MAX_PENDING 8u		/* server's queued sends per worker */

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
	MSG_MAX,
};

static const char *const msg_names[MSG_MAX] = {
	[MSG_GRAD] = "GRAD", [MSG_MODEL] = "MODEL", [MSG_ROUND] = "ROUND",
	[MSG_AVG] = "AVG", [MSG_SNAP] = "SNAP", [MSG_FINAL] = "FINAL",
	[MSG_STOP] = "STOP", [MSG_STATS] = "STATS", [MSG_ABORT] = "ABORT",
};

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

/* The statistics a worker sends at the end (host order: one host type). */
struct wire_stats {
	uint64_t steps, sent, rounds, overlap_steps, dropped, overruns;
	double tau_target, compute_s, idle_s, elapsed_s;
	uint64_t bytes_sent, bytes_recv;
};

/* The public statistics of worker wk from what it sent. */
static void stats_from_wire(struct hetsgd_worker_stats *o, uint32_t wk,
			    const struct wire_stats *w)
{
	o->worker = wk;
	o->steps = w->steps;
	o->sent = w->sent;
	o->rounds = w->rounds;
	o->overlap_steps = w->overlap_steps;
	o->dropped = w->dropped;
	o->overruns = w->overruns;
	o->tau_target = w->tau_target;
	o->compute_s = w->compute_s;
	o->idle_s = w->idle_s;
	o->elapsed_s = w->elapsed_s;
	o->bytes_sent = w->bytes_sent;
	o->bytes_recv = w->bytes_recv;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void abs_deadline(struct timespec *ts, double t)
{
	ts->tv_sec = (time_t)t;
	ts->tv_nsec = (long)((t - (double)ts->tv_sec) * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* ---- configuration ---- */

void hetsgd_engine_cfg_init(struct hetsgd_engine_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->method = HETSGD_METHOD_ASGD;
	cfg->policy = HETSGD_POLICY_RESCALED;
	cfg->merge = HETSGD_MERGE_DELAY_CORRECTED;
	cfg->overlap = 1;
	cfg->round_s = 0.05;
	cfg->gamma = 0.05f;
	cfg->batch = 32;
	cfg->seed = 1;
	cfg->profile.kind = HETSGD_PROFILE_CONST;
	cfg->budget_s = 10.0;
	cfg->pin = -1;
}

static int finite_nonneg(double v)
{
	return isfinite(v) && v >= 0.0;
}

int hetsgd_engine_cfg_check(const struct hetsgd_engine_cfg *c, uint32_t n,
			    size_t d)
{
	double tau;

	if (n == 0)
		return algo_err(-EINVAL, "the job has no worker: run at least 2 ranks (rank 0 is the server)");
	if (d == 0 || d > UINT32_MAX / 8)
		return algo_err(-EINVAL, "model dimension %zu is outside 1 .. %u", d, UINT32_MAX / 8);
	if (c->method < HETSGD_METHOD_ASGD || c->method > HETSGD_METHOD_LOSCAR)
		return algo_err(-EINVAL, "unknown method %d: use asgd, sync or loscar", (int)c->method);
	if (c->method == HETSGD_METHOD_ASGD &&
	    (c->policy < HETSGD_POLICY_VANILLA || c->policy > HETSGD_POLICY_RESCALED))
		return algo_err(-EINVAL, "unknown ASGD policy %d: use vanilla, delay-adaptive, ringmaster or rescaled",
				(int)c->policy);
	if (c->method == HETSGD_METHOD_LOSCAR) {
		if (c->merge != HETSGD_MERGE_DELAY_CORRECTED && c->merge != HETSGD_MERGE_OVERWRITE)
			return algo_err(-EINVAL, "unknown merge rule %d: use delay-corrected or overwrite",
					(int)c->merge);
		if (c->k > d)
			return algo_err(-EINVAL, "K = %u coordinates per round exceeds the model dimension d = %zu: use K <= d (K = d is the dense baseline)",
					c->k, d);
		if (!(c->round_s > 0.0) || !isfinite(c->round_s) || c->round_s > 3600.0)
			return algo_err(-EINVAL, "LOSCAR round time %g s must be in (0, 3600]", c->round_s);
		if (c->overlap != 0 && c->overlap != 1)
			return algo_err(-EINVAL, "overlap must be 0 or 1, not %d", c->overlap);
	}
	if (!finite_nonneg(c->comm_delay_s) || c->comm_delay_s > 3600.0)
		return algo_err(-EINVAL, "communication delay %g s must be in [0, 3600]", c->comm_delay_s);
	if (c->comm_delay_s > 0.0 && c->method != HETSGD_METHOD_LOSCAR)
		return algo_err(-EINVAL, "the emulated communication delay applies to LOSCAR's averages only; drop it for %s",
				hetsgd_method_name(c->method));
	if (!(c->gamma > 0.0f) || !isfinite(c->gamma))
		return algo_err(-EINVAL, "step size gamma = %g must be positive and finite", (double)c->gamma);
	if (c->batch == 0 || c->batch > (1u << 24))
		return algo_err(-EINVAL, "batch %u is outside 1 .. 16777216", c->batch);
	if (hetsgd_profile_mean(&c->profile, 0, n, &tau))
		return -EINVAL;
	if (!finite_nonneg(c->budget_s) || !finite_nonneg(c->eval_interval_s) ||
	    !finite_nonneg(c->tau_stale_s) || !finite_nonneg(c->stall_s))
		return algo_err(-EINVAL, "budget, evaluation interval, stale and stall times must be finite and >= 0");
	if (c->budget_s == 0.0 && c->budget_grads == 0 && c->target_loss <= 0.0 &&
	    c->target_acc <= 0.0)
		return algo_err(-EINVAL, "no budget: give a time budget, a gradient budget or a target, or training never ends");
	if ((c->target_loss > 0.0 || c->target_acc > 0.0) && c->eval_interval_s == 0.0)
		return algo_err(-EINVAL, "a target loss or accuracy is checked at evaluations: give an evaluation interval too");
	if (c->target_acc > 1.0)
		return algo_err(-EINVAL, "target accuracy %g is a fraction: use 0 .. 1", c->target_acc);
	if (!isfinite(c->target_loss) || !isfinite(c->target_acc))
		return algo_err(-EINVAL, "targets must be finite");
	if (c->tau_window > 1024)
		return algo_err(-EINVAL, "tau window %u exceeds 1024", c->tau_window);
	if (c->compute_threads < 0 || c->compute_threads > 256)
		return algo_err(-EINVAL, "%d compute threads per worker: use 1 .. 256 (0 means 1)",
				c->compute_threads);
	if (c->pin < -1 || c->pin > 1)
		return algo_err(-EINVAL, "pin must be -1 (auto), 0 or 1, not %d", c->pin);
	return 0;
}

/* ---- what both sides share ---- */

struct eng {
	const struct hetsgd_engine_cfg *cfg;
	const struct hetsgd_engine_io *io;
	struct hetsgd_tp *tp;
	struct hetsgd_topo *topo;
	struct hetsgd_topo_plan plan;
	int bind;
	int rank, size;
	uint32_t n;		/* workers */
	size_t d;
	uint32_t k;		/* LOSCAR's K */
	uint64_t mask_seed;
	double t0;		/* start of training on this rank */
	double stall_s;
	int abort_sent;		/* this rank already told its peers it failed */
	size_t slot;
	struct hetsgd_block_limits lim;
	uint64_t bytes_sent, bytes_recv, sent;
};

static int tp_error(int ret, const char *what)
{
	return algo_err(ret, "%s: %s", what, hetsgd_errmsg());
}

static void fill_hdr(struct eng_hdr *h, uint16_t type, uint32_t sender,
		     uint32_t body, uint64_t round)
{
	memset(h, 0, sizeof(*h));
	h->magic = ENG_MAGIC;
	h->type = type;
	h->sender = sender;
	h->body = body;
	h->round = round;
}

/*
 * Take a send buffer, let fill() write the body after the header, and put
 * it.  -EAGAIN when no buffer or credit is free: nothing was sent, try
 * again after progress.
 */
typedef int (*body_fn)(struct eng *e, void *buf, size_t cap, size_t *len,
		       void *arg);

static int eng_send(struct eng *e, int peer, struct eng_hdr *h, body_fn fill,
		    void *arg)
{
	struct hetsgd_tx *tx;
	size_t blen = 0;
	int ret = hetsgd_tp_tx_get(e->tp, &tx);

	if (ret == -EAGAIN)
		return ret;
	if (ret)
		return tp_error(ret, "taking a send buffer");
	if (fill) {
		ret = fill(e, (char *)tx->data + HDR_BYTES, tx->cap - HDR_BYTES, &blen, arg);
		if (ret) {
			hetsgd_tp_tx_put(e->tp, tx);
			return ret;
		}
	}
	h->body = (uint32_t)blen;
	memcpy(tx->data, h, HDR_BYTES);
	ret = hetsgd_tp_put(e->tp, peer, tx, HDR_BYTES + blen, (uint8_t)h->type);
	hetsgd_tp_tx_put(e->tp, tx);
	if (ret == -EAGAIN)
		return ret;
	if (ret)
		return tp_error(ret, "writing a block");
	e->bytes_sent += HDR_BYTES + blen;
	e->sent++;
	return 0;
}

/* Check a landed message; *blk is decoded when the header says a block follows. */
static int eng_parse(struct eng *e, const struct hetsgd_ev *ev,
		     struct eng_hdr *h, struct hetsgd_block *blk, int want_block)
{
	int ret;

	if (ev->len < HDR_BYTES)
		return algo_err(-EPROTO, "rank %d sent %zu bytes, less than the %u-byte engine header: it runs another program",
				ev->peer, ev->len, HDR_BYTES);
	memcpy(h, ev->data, HDR_BYTES);
	if (h->magic != ENG_MAGIC)
		return algo_err(-EPROTO, "rank %d sent a message with magic 0x%08x, not hetsgd's engine: it runs another program",
				ev->peer, h->magic);
	if (h->type == 0 || h->type >= MSG_MAX || h->type != ev->kind)
		return algo_err(-EPROTO, "rank %d sent message type %u (transport kind %u)",
				ev->peer, h->type, ev->kind);
	if (h->sender != (uint32_t)ev->peer || h->body != ev->len - HDR_BYTES)
		return algo_err(-EPROTO, "rank %d sent a %s header claiming sender %u and %u body bytes (%zu landed)",
				ev->peer, msg_names[h->type], h->sender, h->body,
				ev->len - HDR_BYTES);
	if (!isfinite(h->tau) || h->tau < 0 || !isfinite(h->idle) || h->idle < 0 ||
	    !isfinite(h->elapsed) || h->elapsed < 0 || !isfinite(h->compute) || h->compute < 0)
		return algo_err(-EPROTO, "rank %d sent %s with a bad time (tau %g, idle %g, elapsed %g)",
				ev->peer, msg_names[h->type], h->tau, h->idle, h->elapsed);
	if (!want_block)
		return 0;
	ret = hetsgd_block_decode((const char *)ev->data + HDR_BYTES, h->body, &e->lim, blk);
	if (ret)
		return algo_err(ret, "rank %d sent a bad %s block: %s", ev->peer,
				msg_names[h->type], hetsgd_errmsg());
	if (blk->sender != (uint32_t)ev->peer || blk->kind != h->type || blk->round != h->round)
		return algo_err(-EPROTO, "rank %d sent a %s block whose header disagrees with the message (sender %u, kind %u, round %llu)",
				ev->peer, msg_names[h->type], blk->sender, blk->kind,
				(unsigned long long)blk->round);
	return 0;
}

/* A block that must be dense and cover the whole model. */
static int want_full(const struct hetsgd_ev *ev, const struct hetsgd_block *b,
		     const char *what)
{
	if (b->encoding != HETSGD_ENC_DENSE || b->first != 0 || b->count != b->dim)
		return algo_err(-EPROTO, "rank %d sent %s as a %s block of %u values from %u; expected the whole model, dense",
				ev->peer, what, b->encoding == HETSGD_ENC_DENSE ? "dense" : "sparse",
				b->count, b->first);
	return 0;
}

/* A block that must be the mask of (seed, round) with K values. */
static int want_masked(struct eng *e, const struct hetsgd_ev *ev,
		       const struct hetsgd_block *b, uint64_t round, const char *what)
{
	if (b->encoding != HETSGD_ENC_MASKED || b->seed != e->mask_seed || b->round != round ||
	    b->count != e->k)
		return algo_err(-EPROTO, "rank %d sent %s as encoding %d, seed %llu, round %llu, %u values; expected the mask of seed %llu, round %llu, K = %u: the ranks run different configurations",
				ev->peer, what, (int)b->encoding, (unsigned long long)b->seed,
				(unsigned long long)b->round, b->count,
				(unsigned long long)e->mask_seed, (unsigned long long)round, e->k);
	return 0;
}

/* Arguments of fill_dense: the message's kind and round, and the vector. */
struct dense_arg {
	uint16_t kind;
	uint64_t round;
	const float *x;
};

static int fill_dense(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	const struct dense_arg *a = arg;
	struct hetsgd_block_hdr bh = { .kind = a->kind, .sender = (uint32_t)e->rank,
				       .dim = (uint32_t)e->d, .round = a->round };
	int ret = hetsgd_block_encode_dense(buf, cap, &bh, a->x, 0, (uint32_t)e->d, len);

	return ret ? algo_err(ret, "encoding a model block: %s", hetsgd_errmsg()) : 0;
}

static int send_dense(struct eng *e, int peer, struct eng_hdr *h, const float *x)
{
	struct dense_arg a = { .kind = h->type, .round = h->round, .x = x };

	return eng_send(e, peer, h, fill_dense, &a);
}

/*
 * Send until it goes, driving progress meanwhile: for the last messages,
 * when nothing else may arrive (blocks that still land are released).
 */
static int peer_aborted(const struct hetsgd_ev *ev, const struct eng_hdr *h);
static int eng_parse(struct eng *e, const struct hetsgd_ev *ev,
		     struct eng_hdr *h, struct hetsgd_block *blk, int want_block);

static int send_blocking(struct eng *e, int peer, struct eng_hdr *h, body_fn fill,
			 void *arg)
{
	struct hetsgd_ev ev[16];
	double t0 = now_s();
	int ret, n;

	while ((ret = eng_send(e, peer, h, fill, arg)) == -EAGAIN) {
		n = hetsgd_tp_progress(e->tp, ev, 16);
		if (n < 0)
			return tp_error(n, "the transport failed");
		for (int i = 0; i < n; i++) {
			if (ev[i].type != HETSGD_EV_RECV)
				continue;
			if (ev[i].kind == MSG_ABORT) {
				struct eng_hdr ah;

				ret = eng_parse(e, &ev[i], &ah, NULL, 0);
				if (!ret)
					ret = peer_aborted(&ev[i], &ah);
				(void)hetsgd_tp_release(e->tp, ev[i].peer, ev[i].slot);
				return ret;
			}
			ret = hetsgd_tp_release(e->tp, ev[i].peer, ev[i].slot);
			if (ret)
				return tp_error(ret, "releasing a slot");
		}
		if (now_s() - t0 > e->stall_s)
			return algo_err(-ETIMEDOUT, "rank %d could not write to rank %d for %.0f s: it stopped reading",
					e->rank, peer, e->stall_s);
	}
	return ret;
}

static int fill_reason(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	size_t n = strlen(arg);

	(void)e;
	if (n > ABORT_MAX)
		n = ABORT_MAX;
	if (n > cap)
		n = cap;
	memcpy(buf, arg, n);
	*len = n;
	return 0;
}

/*
 * Tell a peer that this rank failed, so that it fails at once with the
 * reason instead of waiting out the stall time (shm cannot see a peer
 * die).  Best effort, for half a second: the endpoint may be broken.
 */
static void send_abort(struct eng *e, int peer, const char *why)
{
	struct hetsgd_ev ev[16];
	struct eng_hdr h;
	double t0 = now_s();
	char msg[ABORT_MAX + 1];

	snprintf(msg, sizeof(msg), "%s", why);
	e->abort_sent = 1;
	fill_hdr(&h, MSG_ABORT, (uint32_t)e->rank, 0, 0);
	while (eng_send(e, peer, &h, fill_reason, msg) == -EAGAIN && now_s() - t0 < 0.5) {
		int n = hetsgd_tp_progress(e->tp, ev, 16);

		if (n < 0)
			return;
		for (int i = 0; i < n; i++)
			if (ev[i].type == HETSGD_EV_RECV)
				(void)hetsgd_tp_release(e->tp, ev[i].peer, ev[i].slot);
	}
}

/* The error an ABORT from a peer becomes here. */
static int peer_aborted(const struct hetsgd_ev *ev, const struct eng_hdr *h)
{
	char why[ABORT_MAX + 1];
	size_t n = h->body > ABORT_MAX ? ABORT_MAX : h->body;

	memcpy(why, (const char *)ev->data + HDR_BYTES, n);
	why[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
			why[i] = '?';	/* a peer's text goes to a terminal */
	return algo_err(-ECONNABORTED, "rank %d failed: %s", ev->peer, why);
}

/* LOSCAR's mask, on both sides (nothing for the other methods). */
static int eng_mask_init(struct eng *e, struct hetsgd_mask *mask)
{
	int ret;

	if (e->cfg->method != HETSGD_METHOD_LOSCAR)
		return 0;
	ret = hetsgd_mask_init(mask, e->k, (uint32_t)e->d);
	return ret ? algo_err(ret, "mask of K = %u: %s", e->k, hetsgd_errmsg()) : 0;
}

/* ---- placement ---- */

/*
 * Did the launcher divide this node among its ranks already?  srun with
 * task/affinity (--cpu-bind=cores), mpirun --bind-to core and taskset per
 * rank give each rank a CPU set of its own; a plan that shares one set
 * among the node's ranks would then find too few cores in each rank's
 * binding and leave every thread unpinned.  Ranks on one host (by name)
 * whose sets are pairwise disjoint plan alone inside their own.
 * Collective: every rank calls it, whatever its node holds.
 */
#define BIND_WORDS 16		/* 1024 CPUs */
struct bind_info {
	char host[64];
	uint64_t cpus[BIND_WORDS];
};

static int launcher_divided(struct hetsgd_boot *boot, int rank, int size)
{
	struct bind_info me, *all;
	cpu_set_t set;
	int local = 0, disjoint = 1;

	memset(&me, 0, sizeof(me));
	gethostname(me.host, sizeof(me.host) - 1);
	if (!sched_getaffinity(0, sizeof(set), &set))
		for (int c = 0; c < BIND_WORDS * 64 && c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				me.cpus[c / 64] |= 1ull << (c % 64);
	all = calloc((size_t)size, sizeof(*all));
	/* a broken bootstrap shows again, with its reason, when the transport opens */
	if (!all || hetsgd_boot_allgather(boot, &me, all, sizeof(me))) {
		free(all);
		return 0;
	}
	for (int r = 0; r < size; r++) {
		if (r == rank || strncmp(all[r].host, me.host, sizeof(me.host)))
			continue;
		local++;
		for (int w = 0; w < BIND_WORDS; w++)
			if (all[r].cpus[w] & me.cpus[w])
				disjoint = 0;
	}
	free(all);
	return local > 0 && disjoint;
}

/* Every rank's placement, "host: placement", for rank 0's result (collective). */
static void gather_placements(struct hetsgd_boot *boot, int rank, int size,
			      struct hetsgd_engine_result *res)
{
	struct { char host[64]; char placement[sizeof(res->placement)]; } me, *all;

	memset(&me, 0, sizeof(me));
	gethostname(me.host, sizeof(me.host) - 1);
	memcpy(me.placement, res->placement, sizeof(me.placement));
	me.placement[sizeof(me.placement) - 1] = 0;
	all = calloc((size_t)size, sizeof(*all));
	if (!all || hetsgd_boot_allgather(boot, &me, all, sizeof(me)) || rank != 0) {
		free(all);
		return;
	}
	res->placements = calloc((size_t)size, sizeof(*res->placements));
	if (res->placements) {
		res->nplacements = (uint32_t)size;
		for (int r = 0; r < size; r++)
			snprintf(res->placements[r], sizeof(res->placements[r]), "%.63s: %s",
				 all[r].host, all[r].placement);
	}
	free(all);
}

static void eng_place(struct eng *e, struct hetsgd_boot *boot, struct hetsgd_engine_result *res)
{
	/* every rank asks for the same, so that the node's plans agree */
	struct hetsgd_topo_req req = { .compute_threads = e->cfg->compute_threads > 0 ?
							  e->cfg->compute_threads : 1 };
	int lr, ls, ret;

	e->bind = 0;
	e->plan.numa_node = -1;
	if (hetsgd_topo_local_rank(&lr, &ls)) {
		/* the local launcher, or a launcher we do not know: all on one node */
		lr = e->rank;
		ls = e->size;
	}
	if (launcher_divided(boot, e->rank, e->size)) {
		lr = 0;
		ls = 1;
	}
	req.local_rank = lr;
	req.local_size = ls;
	if (hetsgd_topo_open(NULL, &e->topo)) {
		snprintf(res->placement, sizeof(res->placement), "unpinned: %s",
			 hetsgd_topo_errmsg());
		return;
	}
	ret = hetsgd_topo_plan(e->topo, &req, &e->plan);
	if (ret == -ENOSPC) {
		req.oversubscribe = 1;
		ret = hetsgd_topo_plan(e->topo, &req, &e->plan);
	}
	if (ret) {
		snprintf(res->placement, sizeof(res->placement), "unpinned: %s",
			 hetsgd_topo_errmsg());
		e->plan.numa_node = -1;
		return;
	}
	e->bind = e->cfg->pin == 1 || (e->cfg->pin == -1 && !e->plan.oversubscribed);
	if (e->bind) {
		char cpus[96] = "";
		size_t off = 0;

		for (int t = 0; t < e->plan.ncompute && off + 12 < sizeof(cpus); t++)
			off += (size_t)snprintf(cpus + off, sizeof(cpus) - off, "%s%d", t ? "," : "",
						e->plan.compute_pus[t]);
		snprintf(res->placement, sizeof(res->placement),
			 "progress on cpu %d, compute on cpu %s, memory on node %d",
			 e->plan.progress_pu, cpus, e->plan.numa_node);
	}
	else if (e->cfg->pin == 0)
		snprintf(res->placement, sizeof(res->placement), "unpinned, as asked (pin 0)");
	else
		snprintf(res->placement, sizeof(res->placement),
			 "unpinned: %d ranks x %d threads share the cores (pinning would stack them; pin with --pin yes)",
			 ls, req.compute_threads + 1);
}

static void bind_self(struct eng *e, int pu)
{
	/* pinning is a speed-up: a refusal (a cgroup change) is not an error */
	if (e->bind)
		(void)hetsgd_topo_bind_thread(e->topo, pu);
}

/* ======================================================================
 * Worker
 * ==================================================================== */

struct worker {
	struct eng *e;
	uint32_t id;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* compute waits here */
	pthread_cond_t pcv;	/* progress waits here */
	atomic_int stop;	/* set by STOP or by an error */
	int err;		/* compute thread's error */
	char errmsg[1024];

	/* the model and the compute thread's buffers */
	float *x, *g, *y, *xs;
	uint32_t *bidx;
	uint64_t rng;
	struct hetsgd_mask mask;
	double tau_mean;

	/* outbox (under mu) */
	int out_full;
	struct eng_hdr out_hdr;
	const float *out_vec;	/* GRAD: g; ROUND: x (masked); SNAP: xs */
	uint32_t *out_nz;	/* GRAD: indices of g's nonzeros */
	uint32_t out_nnz;
	int out_sparse;

	/* inbox (under mu; have_avg also read without it) */
	int have_model;
	uint64_t in_ver;
	float *in_vec;		/* model (d) or average (K) */
	atomic_int have_avg;
	uint64_t avg_round;
	uint16_t in_flags;

	/* the compute team: thread 0 leads, threads 1 .. nthr-1 help with
	 * slices of each batch (fork-join on two barriers per step) */
	int nthr;
	pthread_t *helper;
	pthread_barrier_t bar_go, bar_done;
	int team_ready, team_quit;
	const float *team_x;
	uint32_t team_m;
	float **team_g;		/* per helper: its slice's gradient */
	int *team_err;
	char (*team_msg)[512];	/* per thread: helpers may fail together */

	/* progress thread only: a reply is due (GRAD or ROUND sent) */
	int awaiting;
	double await_since;

	/* statistics (compute thread writes, progress reads after join) */
	uint64_t steps, rounds, overlap_steps, dropped, overruns;
	double compute_s, idle_s, last_send;
};

static double worker_elapsed(const struct worker *w)
{
	return now_s() - w->e->t0;
}

static int worker_fail(struct worker *w, int err)
{
	pthread_mutex_lock(&w->mu);
	if (!w->err) {
		w->err = err;
		snprintf(w->errmsg, sizeof(w->errmsg), "%s", hetsgd_algo_errmsg());
	}
	atomic_store(&w->stop, 1);
	pthread_cond_broadcast(&w->pcv);
	pthread_mutex_unlock(&w->mu);
	return err;
}

/*
 * Sleep until t, the end of a padded step, unless the run stops first: a
 * profile's slowest worker may take seconds per step, and STOP or ABORT
 * should not wait for it.  Every writer of stop broadcasts cv.
 */
static void pad_until(struct worker *w, double t)
{
	struct timespec ts;

	abs_deadline(&ts, t);
	pthread_mutex_lock(&w->mu);
	while (!atomic_load(&w->stop) && now_s() < t)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&w->mu);
}

/* One gradient of f_i at x into g, padded to the profile's target. */
/* Slice t of the current batch (of nthr slices): [lo, hi). */
static void team_slice(const struct worker *w, int t, uint32_t *lo, uint32_t *hi)
{
	*lo = (uint32_t)((uint64_t)w->team_m * (uint64_t)t / (uint64_t)w->nthr);
	*hi = (uint32_t)((uint64_t)w->team_m * (uint64_t)(t + 1) / (uint64_t)w->nthr);
}

struct helper_arg {
	struct worker *w;
	int t;
};

static void *team_helper(void *arg)
{
	struct helper_arg *ha = arg;
	struct worker *w = ha->w;
	int t = ha->t;
	struct hetsgd_objective *obj = w->e->io->thread_obj[t - 1];

	bind_self(w->e, w->e->plan.compute_pus[t]);
	pthread_mutex_lock(&w->mu);
	while (!w->team_ready && !w->team_quit)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	if (!w->team_ready)
		return NULL;	/* the team never formed: no barrier to meet */
	for (;;) {
		uint32_t lo, hi;

		pthread_barrier_wait(&w->bar_go);
		if (w->team_quit)
			break;
		team_slice(w, t, &lo, &hi);
		w->team_err[t] = hi > lo ?
			hetsgd_objective_loss_grad(obj, w->team_x, w->e->io->data, w->bidx + lo,
						   hi - lo, NULL, w->team_g[t]) : 0;
		if (w->team_err[t])
			snprintf(w->team_msg[t], sizeof(w->team_msg[t]), "compute thread %d: %s", t,
				 hetsgd_algo_errmsg());
		pthread_barrier_wait(&w->bar_done);
	}
	return NULL;
}

/*
 * The batch's gradient with the whole team: each thread takes a slice,
 * the leader weighs the slices' means by their sizes.  Deterministic for
 * a given number of threads (the sum is taken in thread order).
 */
static int team_grad(struct worker *w, const float *x, uint32_t m)
{
	struct eng *e = w->e;
	uint32_t lo, hi;
	int ret = 0;

	w->team_x = x;
	w->team_m = m;
	pthread_barrier_wait(&w->bar_go);
	team_slice(w, 0, &lo, &hi);
	if (hi > lo)
		ret = hetsgd_objective_loss_grad(e->io->obj, x, e->io->data, w->bidx + lo,
						 hi - lo, NULL, w->g);
	else
		memset(w->g, 0, e->d * sizeof(float));
	pthread_barrier_wait(&w->bar_done);
	if (ret)
		return ret;
	{
		float s0 = (float)(hi - lo) / (float)m;

		for (size_t j = 0; j < e->d; j++)
			w->g[j] *= s0;
	}
	for (int t = 1; t < w->nthr; t++) {
		float st;

		if (w->team_err[t])
			return algo_err(w->team_err[t], "%s", w->team_msg[t]);
		team_slice(w, t, &lo, &hi);
		st = (float)(hi - lo) / (float)m;
		for (size_t j = 0; hi > lo && j < e->d; j++)
			w->g[j] += st * w->team_g[t][j];
	}
	return 0;
}

/* One gradient of f_i at x into g, padded to the profile's target. */
static int worker_grad(struct worker *w, const float *x)
{
	struct eng *e = w->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	struct hetsgd_objective *obj = e->io->obj;
	int quad = obj->kind == HETSGD_OBJ_QUAD;
	uint32_t m = quad ? 0 : c->batch;
	double t0 = now_s(), target;
	int ret;

	if (m)
		draw_batch(&w->rng, e->io->data->n, w->bidx, m);
	if (w->nthr > 1 && m)
		ret = team_grad(w, x, m);
	else
		ret = hetsgd_objective_loss_grad(obj, x, quad ? NULL : e->io->data, w->bidx, m,
						 NULL, w->g);
	if (ret)
		return ret;
	target = hetsgd_profile_step(&c->profile, w->tau_mean, w->id, w->steps);
	if (target > 0.0) {
		if (now_s() - t0 > target)
			w->overruns++;
		else
			pad_until(w, t0 + target);
	}
	w->steps++;
	w->compute_s += now_s() - t0;
	return 0;
}

/* Hand a message to the progress thread; waits while the outbox is full. */
static int worker_post(struct worker *w, uint16_t type, uint64_t round,
		       const float *vec, uint16_t flags)
{
	double t = now_s(), t1;

	pthread_mutex_lock(&w->mu);
	while (w->out_full && !atomic_load(&w->stop))
		pthread_cond_wait(&w->cv, &w->mu);
	t1 = now_s();
	w->idle_s += t1 - t;
	if (atomic_load(&w->stop)) {
		pthread_mutex_unlock(&w->mu);
		return 0;
	}
	fill_hdr(&w->out_hdr, type, (uint32_t)w->e->rank, 0, round);
	w->out_hdr.flags = flags;
	w->out_hdr.steps = w->steps;
	w->out_hdr.tau = w->last_send > 0 ? t1 - w->last_send : t1 - w->e->t0;
	w->out_hdr.idle = w->idle_s;
	w->out_hdr.elapsed = t1 - w->e->t0;
	w->out_hdr.compute = w->compute_s;
	w->last_send = t1;
	w->out_vec = vec;
	w->out_full = 1;
	pthread_cond_broadcast(&w->pcv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

/* ASGD and SYNC: gradient, write it, wait for the model. */
static void *asgd_worker(void *arg)
{
	struct worker *w = arg;
	struct eng *e = w->e;
	uint64_t ver = 0;
	int ret;

	bind_self(e, e->plan.compute_pus[0]);
	while (!atomic_load(&w->stop)) {
		ret = worker_grad(w, w->x);
		if (ret)
			return (void *)(intptr_t)worker_fail(w, ret);
		/* "sparse when it pays": the encoder picks indexed or dense */
		w->out_nnz = 0;
		for (size_t j = 0; j < e->d; j++)
			if (w->g[j] != 0.0f) {
				w->xs[w->out_nnz] = w->g[j];
				w->out_nz[w->out_nnz++] = (uint32_t)j;
			}
		worker_post(w, MSG_GRAD, ver, w->g, 0);
		pthread_mutex_lock(&w->mu);
		{
			double t = now_s();

			while (!w->have_model && !atomic_load(&w->stop))
				pthread_cond_wait(&w->cv, &w->mu);
			w->idle_s += now_s() - t;
		}
		if (w->have_model) {
			memcpy(w->x, w->in_vec, e->d * sizeof(float));
			ver = w->in_ver;
			if (w->in_flags & FLAG_DROPPED)
				w->dropped++;
			w->have_model = 0;
		}
		pthread_mutex_unlock(&w->mu);
	}
	return NULL;
}

/* LOSCAR: local steps for a round budget, write y[S], overlap, merge. */
static void *loscar_worker(void *arg)
{
	struct worker *w = arg;
	struct eng *e = w->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	uint64_t r = 0;
	int inflight = 0, ret;
	double round_start = now_s();

	bind_self(e, e->plan.compute_pus[0]);
	while (!atomic_load(&w->stop)) {
		if (!inflight && now_s() - round_start >= c->round_s) {
			ret = hetsgd_mask_draw(&w->mask, e->mask_seed, r);
			if (ret)
				return (void *)(intptr_t)worker_fail(w, algo_err(ret, "drawing the mask of round %llu: %s",
										(unsigned long long)r, hetsgd_errmsg()));
			for (uint32_t j = 0; j < e->k; j++)
				w->y[j] = w->x[w->mask.idx[j]];
			/* the progress thread encodes y from our x: no step until then */
			worker_post(w, MSG_ROUND, r, w->x, 0);
			{
				double t = now_s();

				pthread_mutex_lock(&w->mu);
				while (w->out_full && !atomic_load(&w->stop))
					pthread_cond_wait(&w->cv, &w->mu);
				pthread_mutex_unlock(&w->mu);
				w->idle_s += now_s() - t;
			}
			inflight = 1;
		}
		if (inflight) {
			if (!c->overlap) {
				double t = now_s();

				pthread_mutex_lock(&w->mu);
				while (!atomic_load(&w->have_avg) && !atomic_load(&w->stop))
					pthread_cond_wait(&w->cv, &w->mu);
				pthread_mutex_unlock(&w->mu);
				w->idle_s += now_s() - t;
			}
			if (atomic_load_explicit(&w->have_avg, memory_order_acquire)) {
				uint16_t flags;

				pthread_mutex_lock(&w->mu);
				if (w->avg_round != r) {
					pthread_mutex_unlock(&w->mu);
					return (void *)(intptr_t)worker_fail(w, algo_err(-EPROTO, "the server sent the average of round %llu during round %llu",
											 (unsigned long long)w->avg_round,
											 (unsigned long long)r));
				}
				hetsgd_loscar_merge(c->merge, w->x, w->mask.idx, e->k, w->y, w->in_vec);
				flags = w->in_flags;
				atomic_store(&w->have_avg, 0);
				pthread_mutex_unlock(&w->mu);
				w->rounds++;
				r++;
				inflight = 0;
				if (flags & FLAG_SNAP) {
					memcpy(w->xs, w->x, e->d * sizeof(float));
					worker_post(w, MSG_SNAP, r, w->xs, 0);
				}
				round_start = now_s();
				continue;
			}
			if (atomic_load(&w->stop))
				break;
		}
		ret = worker_grad(w, w->x);
		if (ret)
			return (void *)(intptr_t)worker_fail(w, ret);
		sgd_step(w->x, w->g, c->gamma, e->d);
		if (inflight)
			w->overlap_steps++;
	}
	return NULL;
}

/*
 * The compute thread: start the helpers, run the method, stop them.
 * Helpers wait for team_ready before touching the barriers, which are
 * sized once every helper runs; the leader always releases them, however
 * its method ends.
 */
static void *compute_main(void *arg)
{
	struct worker *w = arg;
	void *(*method)(void *) = w->e->cfg->method == HETSGD_METHOD_LOSCAR ?
				  loscar_worker : asgd_worker;
	struct helper_arg *ha = NULL;
	void *rv;
	int started = 1, ret = 0;

	if (w->nthr > 1) {
		ha = calloc((size_t)w->nthr, sizeof(*ha));
		if (!ha)
			return (void *)(intptr_t)worker_fail(w, algo_err(-ENOMEM, "compute team: out of memory"));
		for (int t = 1; t < w->nthr && !ret; t++) {
			ha[t].w = w;
			ha[t].t = t;
			ret = pthread_create(&w->helper[t], NULL, team_helper, &ha[t]);
			if (!ret)
				started++;
		}
		if (!ret) {
			ret = pthread_barrier_init(&w->bar_go, NULL, (unsigned)w->nthr);
			if (!ret) {
				ret = pthread_barrier_init(&w->bar_done, NULL, (unsigned)w->nthr);
				if (ret)
					pthread_barrier_destroy(&w->bar_go);
			}
		}
		pthread_mutex_lock(&w->mu);
		if (ret)
			w->team_quit = 1;
		else
			w->team_ready = 1;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
		if (ret) {
			for (int t = 1; t < started; t++)
				pthread_join(w->helper[t], NULL);
			free(ha);
			return (void *)(intptr_t)worker_fail(w, algo_err(-ret, "worker %u: cannot start compute thread %d of %d: %s",
									   w->id, started, w->nthr,
									   strerror(ret)));
		}
	}
	rv = method(w);
	if (w->nthr > 1) {
		/* a helper may not have left its team_ready wait yet */
		pthread_mutex_lock(&w->mu);
		w->team_quit = 1;
		pthread_mutex_unlock(&w->mu);
		pthread_barrier_wait(&w->bar_go);
		for (int t = 1; t < w->nthr; t++)
			pthread_join(w->helper[t], NULL);
		pthread_barrier_destroy(&w->bar_go);
		pthread_barrier_destroy(&w->bar_done);
	}
	free(ha);
	return rv;
}

/* Body of the outbox message. */
static int fill_out(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	struct worker *w = arg;
	struct hetsgd_block_hdr bh = { .kind = w->out_hdr.type, .sender = (uint32_t)e->rank,
				       .dim = (uint32_t)e->d, .round = w->out_hdr.round };
	int ret;

	switch (w->out_hdr.type) {
	case MSG_GRAD:
		/* values gathered by the compute thread into xs */
		ret = hetsgd_block_encode_sparse(buf, cap, &bh, w->out_nz, w->xs, w->out_nnz, len);
		break;
	case MSG_ROUND:
		bh.seed = e->mask_seed;
		ret = hetsgd_block_encode_masked(buf, cap, &bh, &w->mask, w->out_vec, len);
		break;
	default:
		ret = hetsgd_block_encode_dense(buf, cap, &bh, w->out_vec, 0, (uint32_t)e->d, len);
		break;
	}
	return ret ? algo_err(ret, "encoding a %s block: %s", msg_names[w->out_hdr.type],
			      hetsgd_errmsg()) : 0;
}

/* A landed message for a worker. */
static int worker_recv(struct worker *w, const struct hetsgd_ev *ev, int *stopped)
{
	struct eng *e = w->e;
	struct eng_hdr h;
	struct hetsgd_block b;
	int ret;

	if (ev->peer != 0)
		return algo_err(-EPROTO, "rank %d wrote to worker rank %d; only the server (rank 0) does",
				ev->peer, e->rank);
	ret = eng_parse(e, ev, &h, &b, ev->kind != MSG_STOP && ev->kind != MSG_ABORT);
	if (ret)
		return ret;
	if (h.type == MSG_ABORT)
		return peer_aborted(ev, &h);
	pthread_mutex_lock(&w->mu);
	switch (h.type) {
	case MSG_MODEL:
		if (e->cfg->method == HETSGD_METHOD_LOSCAR || w->have_model || !w->awaiting ||
		    (ret = want_full(ev, &b, "a model")))
			goto proto;
		memcpy(w->in_vec, b.val, e->d * sizeof(float));
		w->in_ver = h.round;
		w->in_flags = h.flags;
		w->have_model = 1;
		w->awaiting = 0;
		break;
	case MSG_AVG:
		if (e->cfg->method != HETSGD_METHOD_LOSCAR || atomic_load(&w->have_avg) || !w->awaiting ||
		    (ret = want_masked(e, ev, &b, h.round, "an average")))
			goto proto;
		memcpy(w->in_vec, b.val, (size_t)e->k * sizeof(float));
		w->avg_round = h.round;
		w->in_flags = h.flags;
		atomic_store_explicit(&w->have_avg, 1, memory_order_release);
		w->awaiting = 0;
		break;
	case MSG_STOP:
		*stopped = 1;
		atomic_store(&w->stop, 1);
		break;
	default:
		goto proto;
	}
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
proto:
	pthread_mutex_unlock(&w->mu);
	if (ret)
		return ret;
	return algo_err(-EPROTO, "the server sent %s, which a %s worker does not expect now: the ranks run different configurations",
			msg_names[h.type], hetsgd_method_name(e->cfg->method));
}

static int fill_stats(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	(void)e;
	if (cap < sizeof(struct wire_stats))
		return algo_err(-ENOSPC, "statistics do not fit a slot");
	memcpy(buf, arg, sizeof(struct wire_stats));
	*len = sizeof(struct wire_stats);
	return 0;
}

/* One pass of the worker's progress step: landed blocks to the inbox,
 * the outbox to the network; dozes briefly when there was nothing. */
static int worker_progress(struct worker *w, int *stopped)
{
	struct eng *e = w->e;
	struct hetsgd_ev ev[16];
	int n, ret, did = 0;

	n = hetsgd_tp_progress(e->tp, ev, 16);
	if (n < 0)
		return tp_error(n, "the transport failed");
	for (int i = 0; i < n; i++) {
		if (ev[i].type != HETSGD_EV_RECV)
			continue;
		did = 1;
		e->bytes_recv += ev[i].len;
		ret = worker_recv(w, &ev[i], stopped);
		if (ret)
			return ret;
		ret = hetsgd_tp_release(e->tp, ev[i].peer, ev[i].slot);
		if (ret)
			return tp_error(ret, "releasing a slot");
	}
	pthread_mutex_lock(&w->mu);
	if (w->out_full && !*stopped) {
		ret = eng_send(e, 0, &w->out_hdr, fill_out, w);
		if (ret && ret != -EAGAIN) {
			pthread_mutex_unlock(&w->mu);
			return ret;
		}
		if (!ret) {
			if (w->out_hdr.type == MSG_GRAD || w->out_hdr.type == MSG_ROUND) {
				w->awaiting = 1;
				w->await_since = now_s();
			}
			w->out_full = 0;
			did = 1;
			pthread_cond_broadcast(&w->cv);
		}
	}
	if (!did && !n) {
		/* nothing to do: doze until the compute thread posts, briefly */
		struct timespec ts;

		abs_deadline(&ts, now_s() + 100e-6);
		pthread_cond_timedwait(&w->pcv, &w->mu, &ts);
	}
	pthread_mutex_unlock(&w->mu);
	return 0;
}

static int worker_run(struct eng *e, struct hetsgd_engine_result *res)
{
	const struct hetsgd_engine_cfg *c = e->cfg;
	struct worker W, *w = &W;
	pthread_condattr_t ca;
	int ret = 0, stopped = 0, started = 0, werr = 0;
	struct wire_stats ws;
	struct eng_hdr h;

	memset(w, 0, sizeof(*w));
	w->e = e;
	w->id = (uint32_t)e->rank - 1;
	w->rng = worker_stream(c->seed, w->id);
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_cond_init(&w->pcv, &ca);
	pthread_condattr_destroy(&ca);
	if (hetsgd_profile_mean(&c->profile, w->id, e->n, &w->tau_mean)) {
		ret = -EINVAL;
		goto out;
	}
	w->x = hetsgd_topo_alloc(e->plan.numa_node, e->d * sizeof(float));
	w->g = malloc(e->d * sizeof(float));
	w->xs = malloc(e->d * sizeof(float));
	w->in_vec = malloc(e->d * sizeof(float));
	w->out_nz = malloc(e->d * sizeof(uint32_t));
	w->y = malloc(((size_t)e->k + 1) * sizeof(float));
	w->bidx = malloc(((size_t)c->batch + 1) * sizeof(uint32_t));
	if (!w->x || !w->g || !w->xs || !w->in_vec || !w->out_nz || !w->y || !w->bidx) {
		ret = algo_err(-ENOMEM, "worker %u: out of memory for a model of %zu floats", w->id, e->d);
		goto out;
	}
	memcpy(w->x, e->io->x0, e->d * sizeof(float));
	w->nthr = c->compute_threads > 1 ? c->compute_threads : 1;
	if (w->nthr > 1) {
		w->helper = calloc((size_t)w->nthr, sizeof(*w->helper));
		w->team_g = calloc((size_t)w->nthr, sizeof(*w->team_g));
		w->team_err = calloc((size_t)w->nthr, sizeof(*w->team_err));
		w->team_msg = calloc((size_t)w->nthr, sizeof(*w->team_msg));
		if (!w->helper || !w->team_g || !w->team_err || !w->team_msg) {
			ret = algo_err(-ENOMEM, "worker %u: out of memory for %d compute threads",
				       w->id, w->nthr);
			goto out;
		}
		for (int t = 1; t < w->nthr; t++) {
			w->team_g[t] = hetsgd_topo_alloc(e->plan.numa_node, e->d * sizeof(float));
			if (!w->team_g[t]) {
				ret = algo_err(-ENOMEM, "worker %u: out of memory for %d compute threads",
					       w->id, w->nthr);
				goto out;
			}
		}
	}
	ret = eng_mask_init(e, &w->mask);
	if (ret)
		goto out;
	bind_self(e, e->plan.progress_pu);
	e->t0 = now_s();
	ret = pthread_create(&w->thr, NULL, compute_main, w);
	if (ret) {
		ret = algo_err(-ret, "worker %u: cannot start its compute thread: %s", w->id,
			       strerror(ret));
		goto out;
	}
	started = 1;
	while (!stopped) {
		ret = worker_progress(w, &stopped);
		if (ret)
			break;
		/* w->err and w->errmsg belong to the compute thread, under mu */
		pthread_mutex_lock(&w->mu);
		werr = w->err;
		pthread_mutex_unlock(&w->mu);
		if (werr)
			break;
		if (w->awaiting && now_s() - w->await_since > e->stall_s) {
			ret = algo_err(-ETIMEDOUT, "worker %u has waited %.0f s for the server's reply: the server died or stalled (raise the stall time if that is expected)",
				       w->id, e->stall_s);
			break;
		}
	}
	if (ret)
		worker_fail(w, ret);
	else if (werr)	/* errmsg is written once, with err: stable now */
		send_abort(e, 0, w->errmsg);
	if (ret && ret != -ECONNABORTED)
		send_abort(e, 0, hetsgd_algo_errmsg());
	atomic_store(&w->stop, 1);
	pthread_mutex_lock(&w->mu);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thr, NULL);
	started = 0;
	if (!ret && w->err) {
		ret = w->err;
		algo_err(ret, "%s", w->errmsg);
	}
	if (ret)
		goto out;

	/* the end: LOSCAR's final model, then the statistics */
	if (c->method == HETSGD_METHOD_LOSCAR) {
		fill_hdr(&h, MSG_FINAL, (uint32_t)e->rank, 0, w->rounds);
		h.steps = w->steps;
		{
			struct dense_arg a = { .kind = MSG_FINAL, .round = h.round, .x = w->x };

			ret = send_blocking(e, 0, &h, fill_dense, &a);
		}
		if (ret)
			goto out;
	}
	memset(&ws, 0, sizeof(ws));
	ws.steps = w->steps;
	ws.rounds = w->rounds;
	ws.overlap_steps = w->overlap_steps;
	ws.dropped = w->dropped;
	ws.overruns = w->overruns;
	ws.tau_target = w->tau_mean;
	ws.compute_s = w->compute_s;
	ws.idle_s = w->idle_s;
	ws.elapsed_s = worker_elapsed(w);
	ws.sent = e->sent + 1;
	ws.bytes_sent = e->bytes_sent + HDR_BYTES + sizeof(ws);
	ws.bytes_recv = e->bytes_recv;
	fill_hdr(&h, MSG_STATS, (uint32_t)e->rank, 0, 0);
	h.steps = w->steps;
	ret = send_blocking(e, 0, &h, fill_stats, &ws);
	if (ret)
		goto out;
	res->nworkers = e->n;
	res->workers = calloc(1, sizeof(*res->workers));
	if (res->workers)
		stats_from_wire(res->workers, w->id, &ws);
	res->grads = w->steps;
	res->updates = w->rounds;
	res->elapsed_s = ws.elapsed_s;
out:
	if (started) {
		worker_fail(w, ret ? ret : -ECANCELED);
		pthread_join(w->thr, NULL);
	}
	hetsgd_mask_fini(&w->mask);
	if (w->x)
		hetsgd_topo_free(w->x, e->d * sizeof(float));
	free(w->g);
	free(w->xs);
	free(w->in_vec);
	free(w->out_nz);
	free(w->y);
	free(w->bidx);
	for (int t = 1; w->team_g && t < w->nthr; t++)
		if (w->team_g[t])
			hetsgd_topo_free(w->team_g[t], e->d * sizeof(float));
	free(w->team_g);
	free(w->team_err);
	free(w->team_msg);
	free(w->helper);
	pthread_cond_destroy(&w->cv);
	pthread_cond_destroy(&w->pcv);
	pthread_mutex_destroy(&w->mu);
	return ret;
}

/* ======================================================================
 * Server
 * ==================================================================== */

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
	float *x;		/* the model (ASGD, SYNC) */
	uint64_t version;
	float *acc;		/* SYNC: gradient sum; LOSCAR: FINAL sum */
	uint32_t acc_count;
	uint8_t *got;		/* per worker: contributed to the current round */
	struct hetsgd_tau_est tau;
	struct hetsgd_worker_stats *ws;
	uint8_t *have_stats;
	uint8_t *have_final;	/* LOSCAR: the final model came (once, after STOP) */
	uint8_t *have_snap;	/* LOSCAR: this snapshot came (once, when asked) */
	double *compute;	/* per worker: compute seconds as last reported */
	uint32_t nstats;
	uint64_t *steps;	/* per worker, as last reported */
	double *idle, *wall;
	/* LOSCAR */
	struct hetsgd_mask mask;
	uint64_t round;
	float *sum;		/* K */
	float *xs;		/* d: the average scattered for encoding */
	float *snap;		/* d: sum of snapshots */
	uint32_t snap_count;
	int snap_wanted;
	uint32_t finals;
	/* sends */
	struct pending *pend;	/* n * MAX_PENDING */
	uint32_t *pend_len;
	int stopping;
	uint64_t updates, dropped;
	double next_eval;
	/* evaluation thread */
	pthread_t ethr;
	pthread_mutex_t emu;
	pthread_cond_t ecv;
	int ebusy, equit;
	struct eval_job job;
	uint32_t *eidx;
	float *eg;
	atomic_int target_hit;
	char target_why[64];
	struct hetsgd_eval_point *pts;
	size_t npts, cappts;
	int eval_err;
	char eval_msg[512];
};

static uint64_t server_grads(const struct server *s)
{
	uint64_t t = 0;

	for (uint32_t i = 0; i < s->e->n; i++)
		t += s->steps[i];
	return t;
}

static double server_idle_share(const struct server *s)
{
	double idle = 0, wall = 0;

	for (uint32_t i = 0; i < s->e->n; i++) {
		idle += s->idle[i];
		wall += s->wall[i];
	}
	return wall > 0 ? idle / wall : 0.0;
}

/* Evaluate x: loss and gradient norm on the eval set, accuracy on the test set. */
static int evaluate(struct server *s, const float *x, struct hetsgd_eval_point *pt)
{
	const struct hetsgd_engine_io *io = s->e->io;
	struct hetsgd_objective *obj = io->obj;
	float loss;
	int ret;

	pt->loss = pt->gnorm = pt->acc = NAN;
	if (!obj)
		return 0;
	if (io->eval || obj->kind == HETSGD_OBJ_QUAD) {
		const struct hetsgd_dataset *ev = obj->kind == HETSGD_OBJ_QUAD ? NULL : io->eval;
		size_t m = ev ? (size_t)ev->n : 0;
		double nrm = 0;

		ret = hetsgd_objective_loss_grad(obj, x, ev, ev ? s->eidx : NULL, m, &loss, s->eg);
		if (ret)
			return ret;
		for (size_t j = 0; j < s->e->d; j++)
			nrm += (double)s->eg[j] * s->eg[j];
		pt->loss = loss;
		pt->gnorm = sqrt(nrm);
	}
	if (io->test && obj->nclass) {
		ret = hetsgd_objective_accuracy(obj, x, io->test, &pt->acc);
		if (ret)
			return ret;
	}
	return 0;
}

static int record_point(struct server *s, const struct hetsgd_eval_point *pt)
{
	const struct hetsgd_engine_cfg *c = s->e->cfg;

	if (s->npts == s->cappts) {
		size_t cap = s->cappts ? 2 * s->cappts : 64;
		struct hetsgd_eval_point *p = realloc(s->pts, cap * sizeof(*p));

		if (!p)
			return algo_err(-ENOMEM, "out of memory for evaluation points");
		s->pts = p;
		s->cappts = cap;
	}
	s->pts[s->npts] = *pt;
	s->pts[s->npts++].x = NULL;
	if (c->on_eval)
		c->on_eval(c->on_eval_arg, pt);
	if (!pt->final && !atomic_load(&s->target_hit)) {
		if (c->target_loss > 0 && pt->loss <= c->target_loss) {
			snprintf(s->target_why, sizeof(s->target_why), "target loss");
			atomic_store(&s->target_hit, 1);
		} else if (c->target_acc > 0 && pt->acc >= c->target_acc) {
			snprintf(s->target_why, sizeof(s->target_why), "target accuracy");
			atomic_store(&s->target_hit, 1);
		}
	}
	return 0;
}

static void *eval_thread(void *arg)
{
	struct server *s = arg;
	struct hetsgd_eval_point pt;
	int ret;

	bind_self(s->e, s->e->plan.compute_pus[0]);
	pthread_mutex_lock(&s->emu);
	for (;;) {
		while (!s->ebusy && !s->equit)
			pthread_cond_wait(&s->ecv, &s->emu);
		if (!s->ebusy)
			break;
		pt = s->job.pt;
		pt.x = s->job.x;
		pthread_mutex_unlock(&s->emu);
		ret = evaluate(s, s->job.x, &pt);
		if (!ret)
			ret = record_point(s, &pt);
		pthread_mutex_lock(&s->emu);
		if (ret && !s->eval_err) {
			s->eval_err = ret;
			snprintf(s->eval_msg, sizeof(s->eval_msg), "evaluation: %s", hetsgd_algo_errmsg());
		}
		s->ebusy = 0;
		pthread_cond_broadcast(&s->ecv);
	}
	pthread_mutex_unlock(&s->emu);
	return NULL;
}

/* Let the evaluation thread finish what it has, and end it. */
static void eval_stop(struct server *s)
{
	pthread_mutex_lock(&s->emu);
	s->equit = 1;
	pthread_cond_broadcast(&s->ecv);
	pthread_mutex_unlock(&s->emu);
	pthread_join(s->ethr, NULL);
}

/* Hand x to the evaluation thread unless it is busy (then skip this one). */
static void eval_submit(struct server *s, const float *x, double scale)
{
	int busy;

	pthread_mutex_lock(&s->emu);
	busy = s->ebusy;
	if (!busy) {
		for (size_t j = 0; j < s->e->d; j++)
			s->job.x[j] = (float)(x[j] * scale);
		s->job.pt.t = now_s() - s->e->t0;
		s->job.pt.grads = server_grads(s);
		s->job.pt.updates = s->updates;
		s->job.pt.idle_share = server_idle_share(s);
		s->job.pt.final = 0;
		s->ebusy = 1;
		pthread_cond_broadcast(&s->ecv);
	}
	pthread_mutex_unlock(&s->emu);
}

static int enqueue(struct server *s, uint32_t wk, uint16_t type, uint64_t round,
		   uint16_t flags, double due)
{
	struct pending *p;

	if (s->pend_len[wk] == MAX_PENDING)
		return algo_err(-EOVERFLOW, "server: more than %u messages queued for worker %u: the engine lost track of a worker",
				MAX_PENDING, wk);
	p = &s->pend[(size_t)wk * MAX_PENDING + s->pend_len[wk]++];
	p->type = type;
	p->round = round;
	p->flags = flags;
	p->due = due;
	return 0;
}

static int fill_avg(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	struct server *s = arg;
	struct hetsgd_block_hdr bh = { .kind = MSG_AVG, .sender = 0, .dim = (uint32_t)e->d,
				       .round = s->mask.round, .seed = e->mask_seed };
	int ret = hetsgd_block_encode_masked(buf, cap, &bh, &s->mask, s->xs, len);

	return ret ? algo_err(ret, "encoding an average: %s", hetsgd_errmsg()) : 0;
}

/* Write what is due, in order, per worker. */
static int server_flush(struct server *s)
{
	struct eng *e = s->e;
	double t = now_s();

	for (uint32_t wk = 0; wk < e->n; wk++) {
		struct pending *q = s->pend + (size_t)wk * MAX_PENDING;

		while (s->pend_len[wk] && q[0].due <= t) {
			struct eng_hdr h;
			int ret;

			fill_hdr(&h, q[0].type, 0, 0, q[0].round);
			h.flags = q[0].flags;
			if (q[0].type == MSG_MODEL) {
				h.round = s->version;	/* the freshest model */
				ret = send_dense(e, (int)wk + 1, &h, s->x);
			} else if (q[0].type == MSG_AVG) {
				ret = eng_send(e, (int)wk + 1, &h, fill_avg, s);
			} else {
				ret = eng_send(e, (int)wk + 1, &h, NULL, NULL);
			}
			if (ret == -EAGAIN)
				break;
			if (ret)
				return ret;
			memmove(q, q + 1, (s->pend_len[wk] - 1) * sizeof(*q));
			s->pend_len[wk]--;
		}
	}
	return 0;
}

static void apply_block(float *x, const struct hetsgd_block *b, float gamma)
{
	if (b->encoding == HETSGD_ENC_INDEXED) {
		for (uint32_t j = 0; j < b->count; j++)
			x[b->idx[j]] -= gamma * b->val[j];
	} else {
		sgd_step(x + b->first, b->val, gamma, b->count);
	}
}

/* A landed block while training. */
static int server_recv(struct server *s, const struct hetsgd_ev *ev)
{
	struct eng *e = s->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	struct eng_hdr h;
	struct hetsgd_block b;
	uint32_t wk;
	double t = now_s();
	int ret;

	if (ev->peer < 1 || ev->peer >= e->size)
		return algo_err(-EPROTO, "a message from rank %d, which is not a worker", ev->peer);
	wk = (uint32_t)ev->peer - 1;
	ret = eng_parse(e, ev, &h, &b, ev->kind != MSG_STATS && ev->kind != MSG_ABORT);
	if (ret)
		return ret;
	if (h.type == MSG_ABORT)
		return peer_aborted(ev, &h);
	if (h.steps < s->steps[wk])
		return algo_err(-EPROTO, "worker %u reported %llu steps after %llu", wk,
				(unsigned long long)h.steps, (unsigned long long)s->steps[wk]);
	/* LOSCAR's tau, for the statistics: compute seconds per step over
	 * the round (a bad report only leaves the estimate as it was) */
	if (h.type == MSG_ROUND && h.steps > s->steps[wk] && h.compute >= s->compute[wk])
		(void)hetsgd_tau_report(&s->tau, wk, (h.compute - s->compute[wk]) /
					(double)(h.steps - s->steps[wk]), t);
	s->steps[wk] = h.steps;
	s->compute[wk] = h.compute;
	s->idle[wk] = h.idle;
	s->wall[wk] = h.elapsed;

	switch (h.type) {
	case MSG_STATS: {
		struct wire_stats w;
		struct hetsgd_worker_stats *o = &s->ws[wk];

		if (h.body != sizeof(w) || s->have_stats[wk] || !s->stopping)
			return algo_err(-EPROTO, "worker %u sent statistics of %u bytes %s(expected %zu, once, after STOP)",
					wk, h.body, s->stopping ? "" : "before it was stopped ", sizeof(w));
		memcpy(&w, (const char *)ev->data + HDR_BYTES, sizeof(w));
		if (!finite_nonneg(w.tau_target) || !finite_nonneg(w.compute_s) ||
		    !finite_nonneg(w.idle_s) || !finite_nonneg(w.elapsed_s))
			return algo_err(-EPROTO, "worker %u sent statistics with a time that is negative or not a number",
					wk);
		stats_from_wire(o, wk, &w);
		o->tau_est = hetsgd_tau_get(&s->tau, wk);
		s->have_stats[wk] = 1;
		s->nstats++;
		hetsgd_tau_leave(&s->tau, wk);
		return 0;
	}
	case MSG_FINAL:
		if (c->method != HETSGD_METHOD_LOSCAR || (ret = want_full(ev, &b, "its final model")))
			break;
		if (!s->stopping || s->have_final[wk])
			return algo_err(-EPROTO, "worker %u sent its final model %s", wk,
					s->stopping ? "twice" : "before the server stopped it");
		s->have_final[wk] = 1;
		for (size_t j = 0; j < e->d; j++)
			s->acc[j] += b.val[j];
		s->finals++;
		return 0;
	case MSG_GRAD:
		if (c->method == HETSGD_METHOD_LOSCAR || b.encoding == HETSGD_ENC_MASKED)
			break;
		if (s->stopping)
			return 0;
		if (h.round > s->version)
			return algo_err(-EPROTO, "worker %u sent a gradient at model version %llu; the server is at %llu",
					wk, (unsigned long long)h.round, (unsigned long long)s->version);
		if (c->method == HETSGD_METHOD_SYNC) {
			if (h.round != s->version || s->got[wk])
				return algo_err(-EPROTO, "worker %u sent a gradient for version %llu in synchronous round %llu",
						wk, (unsigned long long)h.round,
						(unsigned long long)s->version);
			s->got[wk] = 1;
			(void)hetsgd_tau_report(&s->tau, wk, h.tau, t);	/* for the statistics */
			apply_block(s->acc, &b, -1.0f);	/* acc += g */
			if (++s->acc_count < e->n)
				return 0;
			sgd_step(s->x, s->acc, c->gamma / (float)e->n, e->d);
			memset(s->acc, 0, e->d * sizeof(float));
			memset(s->got, 0, e->n);
			s->acc_count = 0;
			s->version++;
			s->updates++;
			for (uint32_t i = 0; i < e->n; i++)
				if ((ret = enqueue(s, i, MSG_MODEL, s->version, 0, t)))
					return ret;
			return 0;
		} else {
			double g_i;

			ret = hetsgd_tau_report(&s->tau, wk, h.tau, t);
			if (ret)
				return ret;
			g_i = hetsgd_policy_gamma(c->policy, c->gamma, e->n, s->version - h.round,
						  c->ringmaster_r, hetsgd_tau_get(&s->tau, wk),
						  hetsgd_tau_max(&s->tau, t));
			if (g_i == 0.0) {
				s->dropped++;
				return enqueue(s, wk, MSG_MODEL, s->version, FLAG_DROPPED, t);
			}
			apply_block(s->x, &b, (float)g_i);
			s->version++;
			s->updates++;
			return enqueue(s, wk, MSG_MODEL, s->version, 0, t);
		}
	case MSG_ROUND:
		if (c->method != HETSGD_METHOD_LOSCAR)
			break;
		if (s->stopping)
			return 0;
		if ((ret = want_masked(e, ev, &b, s->round, "its round block")))
			return ret;
		if (s->got[wk])
			return algo_err(-EPROTO, "worker %u sent round %llu twice", wk,
					(unsigned long long)s->round);
		s->got[wk] = 1;
		for (uint32_t j = 0; j < e->k; j++)
			s->sum[j] += b.val[j];
		if (++s->acc_count < e->n)
			return 0;
		/* the average, scattered onto the mask for the encoder */
		ret = hetsgd_mask_draw(&s->mask, e->mask_seed, s->round);
		if (ret)
			return algo_err(ret, "drawing the mask of round %llu: %s",
					(unsigned long long)s->round, hetsgd_errmsg());
		for (uint32_t j = 0; j < e->k; j++)
			s->xs[s->mask.idx[j]] = s->sum[j] / (float)e->n;
		memset(s->sum, 0, (size_t)e->k * sizeof(float));
		memset(s->got, 0, e->n);
		s->acc_count = 0;
		{
			uint16_t fl = 0;

			if (c->eval_interval_s > 0 && t >= s->next_eval && !s->snap_wanted) {
				fl = FLAG_SNAP;
				s->snap_wanted = 1;
				s->next_eval = t + c->eval_interval_s;
			}
			for (uint32_t i = 0; i < e->n; i++)
				if ((ret = enqueue(s, i, MSG_AVG, s->round, fl, t + c->comm_delay_s)))
					return ret;
		}
		s->round++;
		s->updates++;
		return 0;
	case MSG_SNAP:
		if (c->method != HETSGD_METHOD_LOSCAR || (ret = want_full(ev, &b, "a snapshot")))
			break;
		if (!s->snap_wanted || s->have_snap[wk])
			return algo_err(-EPROTO, "worker %u sent a snapshot the server did not ask for", wk);
		s->have_snap[wk] = 1;
		for (size_t j = 0; j < e->d; j++)
			s->snap[j] += b.val[j];
		if (++s->snap_count == e->n) {
			eval_submit(s, s->snap, 1.0 / e->n);
			memset(s->snap, 0, e->d * sizeof(float));
			memset(s->have_snap, 0, e->n);
			s->snap_count = 0;
			s->snap_wanted = 0;
		}
		return 0;
	}
	if (ret)
		return ret;
	return algo_err(-EPROTO, "worker %u sent %s, which a %s server does not expect: the ranks run different configurations",
			wk, msg_names[h.type], hetsgd_method_name(c->method));
}

static const char *server_should_stop(struct server *s, double t)
{
	const struct hetsgd_engine_cfg *c = s->e->cfg;

	if (c->budget_s > 0 && t - s->e->t0 >= c->budget_s)
		return "time budget";
	if (c->budget_grads && server_grads(s) >= c->budget_grads)
		return "gradient budget";
	if (atomic_load(&s->target_hit))
		return s->target_why;
	return NULL;
}

static int server_run(struct eng *e, struct hetsgd_engine_result *res)
{
	const struct hetsgd_engine_cfg *c = e->cfg;
	struct server S, *s = &S;
	struct hetsgd_ev ev[32];
	pthread_condattr_t ca;
	int ret = 0, ethr = 0, idle_polls = 0;
	double last_recv, t;
	const char *why = NULL;

	memset(s, 0, sizeof(*s));
	s->e = e;
	pthread_mutex_init(&s->emu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->ecv, &ca);
	pthread_condattr_destroy(&ca);
	ret = hetsgd_tau_init(&s->tau, e->n, c->tau_window ? c->tau_window : 8,
			      c->tau_stale_s > 0 ? c->tau_stale_s : 2.0);
	if (ret)
		goto out;
	s->x = hetsgd_topo_alloc(e->plan.numa_node, e->d * sizeof(float));
	s->acc = calloc(e->d, sizeof(float));
	s->got = calloc(e->n, 1);
	s->ws = calloc(e->n, sizeof(*s->ws));
	s->have_stats = calloc(e->n, 1);
	s->have_final = calloc(e->n, 1);
	s->have_snap = calloc(e->n, 1);
	s->compute = calloc(e->n, sizeof(double));
	s->steps = calloc(e->n, sizeof(*s->steps));
	s->idle = calloc(e->n, sizeof(double));
	s->wall = calloc(e->n, sizeof(double));
	s->sum = calloc((size_t)e->k + 1, sizeof(float));
	s->xs = calloc(e->d, sizeof(float));
	s->snap = calloc(e->d, sizeof(float));
	s->pend = calloc((size_t)e->n * MAX_PENDING, sizeof(*s->pend));
	s->pend_len = calloc(e->n, sizeof(*s->pend_len));
	s->job.x = malloc(e->d * sizeof(float));
	s->eg = malloc(e->d * sizeof(float));
	if (e->io->eval && e->io->eval->n)
		s->eidx = malloc(e->io->eval->n * sizeof(uint32_t));
	if (!s->x || !s->acc || !s->got || !s->ws || !s->have_stats || !s->have_final ||
	    !s->have_snap || !s->compute || !s->steps || !s->idle ||
	    !s->wall || !s->sum || !s->xs || !s->snap || !s->pend || !s->pend_len || !s->job.x ||
	    !s->eg || (e->io->eval && e->io->eval->n && !s->eidx)) {
		ret = algo_err(-ENOMEM, "server: out of memory for a model of %zu floats", e->d);
		goto out;
	}
	if (e->io->eval && e->io->eval->n > UINT32_MAX) {
		ret = algo_err(-EINVAL, "the evaluation set has %llu samples; at most 2^32 - 1",
			       (unsigned long long)e->io->eval->n);
		goto out;
	}
	for (uint64_t i = 0; s->eidx && i < e->io->eval->n; i++)
		s->eidx[i] = (uint32_t)i;
	memcpy(s->x, e->io->x0, e->d * sizeof(float));
	ret = eng_mask_init(e, &s->mask);
	if (ret)
		goto out;
	bind_self(e, e->plan.progress_pu);
	ret = pthread_create(&s->ethr, NULL, eval_thread, s);
	if (ret) {
		ret = algo_err(-ret, "server: cannot start the evaluation thread: %s", strerror(ret));
		goto out;
	}
	ethr = 1;
	e->t0 = now_s();
	last_recv = e->t0;
	s->next_eval = e->t0 + c->eval_interval_s;
	if (c->eval_interval_s > 0 || c->target_loss > 0 || c->target_acc > 0)
		eval_submit(s, s->x, 1.0);	/* the starting point */

	/* every worker starts from x0 on its own: nothing to send first */
	for (;;) {
		int n = hetsgd_tp_progress(e->tp, ev, 32);

		if (n < 0) {
			ret = tp_error(n, "the transport failed");
			break;
		}
		t = now_s();
		for (int i = 0; i < n; i++) {
			if (ev[i].type != HETSGD_EV_RECV)
				continue;
			e->bytes_recv += ev[i].len;
			last_recv = t;
			ret = server_recv(s, &ev[i]);
			if (!ret) {
				ret = hetsgd_tp_release(e->tp, ev[i].peer, ev[i].slot);
				if (ret)
					ret = tp_error(ret, "releasing a slot");
			}
			if (ret)
				break;
		}
		if (ret)
			break;
		if (!s->stopping) {
			why = server_should_stop(s, t);
			if (why) {
				s->stopping = 1;
				snprintf(res->stop_reason, sizeof(res->stop_reason), "%s", why);
				/* STOP goes out now: a held average or a model
				 * would only make the workers step past the budget */
				memset(s->pend_len, 0, e->n * sizeof(*s->pend_len));
				for (uint32_t i = 0; i < e->n && !ret; i++)
					ret = enqueue(s, i, MSG_STOP, 0, 0, 0.0);
				if (ret)
					break;
			} else if (c->eval_interval_s > 0 && c->method != HETSGD_METHOD_LOSCAR &&
				   t >= s->next_eval) {
				eval_submit(s, s->x, 1.0);
				s->next_eval = t + c->eval_interval_s;
			}
		}
		ret = server_flush(s);
		if (ret)
			break;
		if (s->stopping && s->nstats == e->n)
			break;
		if (t - last_recv > e->stall_s) {
			uint32_t i;

			for (i = 0; i < e->n && s->have_stats[i]; i++)
				;
			if (s->stopping)
				ret = algo_err(-ETIMEDOUT, "the server heard nothing from any worker for %.0f s after stopping them (worker %u still owes its statistics): a worker died or stalled",
					       e->stall_s, i);
			else
				ret = algo_err(-ETIMEDOUT, "the server heard nothing from any worker for %.0f s: a worker died or stalled (raise the stall time if steps are that slow)",
					       e->stall_s);
			break;
		}
		pthread_mutex_lock(&s->emu);
		if (s->eval_err) {
			ret = s->eval_err;
			algo_err(ret, "%s", s->eval_msg);
		}
		pthread_mutex_unlock(&s->emu);
		if (ret)
			break;
		if (n == 0 && ++idle_polls > 64) {
			struct timespec ts = { 0, 50000 };

			nanosleep(&ts, NULL);
		} else if (n) {
			idle_polls = 0;
		}
	}
	if (ret) {
		/* tell every worker, so that none waits out its stall time */
		char reason[ABORT_MAX + 1];

		snprintf(reason, sizeof(reason), "%s", hetsgd_algo_errmsg());
		for (int r = 1; r < e->size; r++)
			send_abort(e, r, reason);
		algo_err(ret, "%s", reason);
		goto out;
	}
	res->elapsed_s = now_s() - e->t0;

	/* wait for the last evaluation, then evaluate the final model here */
	eval_stop(s);
	ethr = 0;
	if (s->eval_err) {
		ret = algo_err(s->eval_err, "%s", s->eval_msg);
		goto out;
	}
	if (c->method == HETSGD_METHOD_LOSCAR) {
		if (s->finals != e->n) {
			ret = algo_err(-EPROTO, "only %u of %u workers sent their final model", s->finals, e->n);
			goto out;
		}
		for (size_t j = 0; j < e->d; j++)
			s->x[j] = s->acc[j] / (float)e->n;
	}
	{
		struct hetsgd_eval_point pt = { .t = res->elapsed_s, .updates = s->updates,
						.final = 1 };
		double idle = 0, wall = 0;

		/* the workers' own final counts, from their statistics */
		for (uint32_t i = 0; i < e->n; i++) {
			pt.grads += s->ws[i].steps;
			idle += s->ws[i].idle_s;
			wall += s->ws[i].elapsed_s;
		}
		pt.idle_share = wall > 0 ? idle / wall : 0;
		pt.x = s->x;
		ret = evaluate(s, s->x, &pt);
		if (!ret)
			ret = record_point(s, &pt);
		if (ret)
			goto out;
		res->grads = pt.grads;
	}
	if (e->io->x_out)
		memcpy(e->io->x_out, s->x, e->d * sizeof(float));
	res->updates = s->updates;
	res->dropped = s->dropped;
	res->nworkers = e->n;
	res->workers = s->ws;
	s->ws = NULL;
	res->points = s->pts;
	res->npoints = s->npts;
	s->pts = NULL;
out:
	if (ethr)
		eval_stop(s);
	hetsgd_tau_fini(&s->tau);
	hetsgd_mask_fini(&s->mask);
	if (s->x)
		hetsgd_topo_free(s->x, e->d * sizeof(float));
	free(s->acc);
	free(s->got);
	free(s->ws);
	free(s->have_stats);
	free(s->have_final);
	free(s->have_snap);
	free(s->compute);
	free(s->steps);
	free(s->idle);
	free(s->wall);
	free(s->sum);
	free(s->xs);
	free(s->snap);
	free(s->pend);
	free(s->pend_len);
	free(s->job.x);
	free(s->eg);
	free(s->eidx);
	free(s->pts);
	pthread_cond_destroy(&s->ecv);
	pthread_mutex_destroy(&s->emu);
	return ret;
}

/* ======================================================================
 * Entry
 * ==================================================================== */

/*
 * What this rank brings.  Checked after the endpoint is open, so that a
 * rank with bad input tells the others (ABORT) instead of leaving them
 * waiting in the collective open.
 */
static int check_io(struct eng *e)
{
	const struct hetsgd_engine_cfg *c = e->cfg;
	const struct hetsgd_engine_io *io = e->io;

	if (e->rank > 0) {
		if (!io->obj)
			return algo_err(-EINVAL, "engine: worker rank %d has no objective", e->rank);
		if (io->obj->d != e->d)
			return algo_err(-EINVAL, "engine: the objective has d = %zu, io->d is %zu",
					io->obj->d, e->d);
		if (io->obj->kind != HETSGD_OBJ_QUAD && (!io->data || io->data->n == 0))
			return algo_err(-EINVAL, "engine: worker %d has no samples: give every worker data (fewer workers, or another split)",
					e->rank - 1);
		for (int t = 1; t < c->compute_threads; t++)
			if (!io->thread_obj || !io->thread_obj[t - 1] ||
			    io->thread_obj[t - 1]->d != e->d ||
			    io->thread_obj[t - 1]->kind != io->obj->kind)
				return algo_err(-EINVAL, "engine: %d compute threads need io->thread_obj[0 .. %d], one more instance of the same objective per extra thread (instance %d is missing or differs)",
						c->compute_threads, c->compute_threads - 2, t - 1);
		if (io->data && io->data->n > UINT32_MAX)
			return algo_err(-EINVAL, "engine: worker %d has %llu samples; at most 2^32 - 1",
					e->rank - 1, (unsigned long long)io->data->n);
	} else if (io->obj && io->obj->d != e->d) {
		return algo_err(-EINVAL, "engine: the server's objective has d = %zu, io->d is %zu",
				io->obj->d, e->d);
	}
	if (e->rank == 0 && (c->target_loss > 0 || c->target_acc > 0)) {
		/* a target that can never be measured would never stop the run */
		if (c->target_loss > 0 && (!io->obj || (io->obj->kind != HETSGD_OBJ_QUAD && !io->eval)))
			return algo_err(-EINVAL, "engine: a target loss needs the server's objective and an evaluation set");
		if (c->target_acc > 0 && (!io->obj || !io->obj->nclass || !io->test))
			return algo_err(-EINVAL, "engine: a target accuracy needs a classifier and a test set at the server");
	}
	return 0;
}

void hetsgd_engine_result_free(struct hetsgd_engine_result *res)
{
	if (!res)
		return;
	free(res->workers);
	free(res->points);
	free(res->placements);
	memset(res, 0, sizeof(*res));
}

int hetsgd_engine_run(struct hetsgd_boot *boot,
		      const struct hetsgd_tp_attr *tp_attr,
		      const struct hetsgd_engine_cfg *cfg,
		      const struct hetsgd_engine_io *io,
		      struct hetsgd_engine_result *res)
{
	struct eng E = { 0 }, *e = &E;
	struct hetsgd_tp_attr attr;
	int ret, cret;

	memset(res, 0, sizeof(*res));
	if (!boot || !tp_attr || !cfg || !io || !io->x0)
		return algo_err(-EINVAL, "engine: boot, tp_attr, cfg, io and io->x0 are required");
	e->cfg = cfg;
	e->io = io;
	e->rank = hetsgd_boot_rank(boot);
	e->size = hetsgd_boot_size(boot);
	e->n = e->size > 0 ? (uint32_t)e->size - 1 : 0;
	e->d = io->d;
	ret = hetsgd_engine_cfg_check(cfg, e->n, e->d);
	if (ret)
		return ret;
	e->k = cfg->method == HETSGD_METHOD_LOSCAR ? (cfg->k ? cfg->k : (uint32_t)e->d) : 0;
	{
		uint64_t s = cfg->seed ^ 0x6d61736b5f736565ull;	/* "mask_see" */

		e->mask_seed = splitmix64(&s);
	}
	/* silence is expected for a round, a delayed average and a few of
	 * the slowest worker's steps; only beyond that is it a stall */
	{
		double slow = 0, tau;

		for (uint32_t i = 0; i < e->n; i++)
			if (!hetsgd_profile_mean(&cfg->profile, i, e->n, &tau) && tau > slow)
				slow = tau;
		e->stall_s = (cfg->stall_s > 0 ? cfg->stall_s : 60.0) + 4.0 * slow *
			     exp(2.0 * cfg->profile.noise);
		if (cfg->method == HETSGD_METHOD_LOSCAR)
			e->stall_s += cfg->round_s + cfg->comm_delay_s;
	}
	/* one BLAS thread per compute thread: OpenBLAS's own pool would
	 * fight our pinned threads for the same cores */
	openblas_set_num_threads(1);
	eng_place(e, boot, res);
	gather_placements(boot, e->rank, e->size, res);

	attr = *tp_attr;
	/* every message fits one slot: header, block header, d values */
	e->slot = ((size_t)HDR_BYTES + hetsgd_block_bytes(HETSGD_ENC_DENSE, (uint32_t)e->d) +
		   sizeof(struct wire_stats) + 63) & ~(size_t)63;
	attr.slot_bytes = e->slot;
	attr.slots = 4;
	attr.tx_bufs = 8;
	if (attr.numa_node < 0)
		attr.numa_node = e->plan.numa_node;
	if (attr.provider == HETSGD_PROV_VERBS && !attr.device && e->plan.device[0] &&
	    !getenv("HETSGD_IB_DEV"))
		attr.device = e->plan.device;
	e->lim.dim = (uint32_t)e->d;
	e->lim.nranks = (uint32_t)e->size;
	e->lim.max_bytes = e->slot - HDR_BYTES;
	ret = hetsgd_tp_open(boot, &attr, &e->tp);
	if (ret) {
		ret = tp_error(ret, "opening the transport");
		goto out;
	}
	snprintf(res->provider, sizeof(res->provider), "%s", hetsgd_tp_describe(e->tp));
	ret = check_io(e);
	if (!ret)
		ret = e->rank == 0 ? server_run(e, res) : worker_run(e, res);
	if (ret && ret != -ECONNABORTED && !e->abort_sent) {
		/* every way this rank fails tells the others why, so that none
		 * waits out its stall time */
		char why[ABORT_MAX + 1];

		snprintf(why, sizeof(why), "%s", hetsgd_algo_errmsg());
		if (e->rank == 0)
			for (int r = 1; r < e->size; r++)
				send_abort(e, r, why);
		else
			send_abort(e, 0, why);
		algo_err(ret, "%s", why);
	}
	/* close is collective: a failed rank still closes so that the others
	 * see it leave rather than hang */
	cret = hetsgd_tp_close(e->tp);
	if (!ret && cret)
		ret = tp_error(cret, "closing the transport");
out:
	hetsgd_topo_close(e->topo);
	if (ret)
		hetsgd_engine_result_free(res);
	return ret;
}
