/*
 * The engine: hetsgd_engine_run, the configuration checks and the table
 * of methods, the only place that names every method.
 *
 * Rank 0 is the server (server.c, eval.c), ranks 1 .. n the workers
 * (worker.c, team.c); they speak the messages of wire.c.  A method is one
 * file (method_*.c) that ends in one const struct hetsgd_method_ops
 * (engine_core.h): its worker's compute loop, its server's handling of a
 * landed block, the messages it uses and its part of the configuration.
 * Adding a method is one new file and one line in `methods` below.
 */
#include <config.h>

#include "blas_priv.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"
#include "pserver.h"
#include "server.h"
#include "worker.h"

/* ---- the table of methods ---- */

static const struct hetsgd_method_ops *const methods[] = {
	&method_asgd,
	&method_sync,
	&method_loscar,
	&method_malenia,
	&method_ringleader,
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static const struct hetsgd_method_ops *method_get(enum hetsgd_method m)
{
	for (size_t i = 0; i < NMETHODS; i++)
		if (methods[i]->id == m)
			return methods[i];
	return NULL;
}

/* The names of the table, joined by ", ". */
static void method_list(char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = 0;
	for (size_t i = 0; i < NMETHODS && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "",
					methods[i]->name);
}

int hetsgd_method_parse(const char *name, enum hetsgd_method *method)
{
	char choices[128];

	for (size_t i = 0; i < NMETHODS; i++)
		if (name && !strcmp(name, methods[i]->name)) {
			*method = methods[i]->id;
			return 0;
		}
	method_list(choices, sizeof(choices));
	return algo_err(-EINVAL, "unknown method '%s': use one of %s", name ? name : "(null)",
			choices);
}

const char *hetsgd_method_name(enum hetsgd_method method)
{
	const struct hetsgd_method_ops *m = method_get(method);

	return m ? m->name : "invalid";
}

/* ---- averaging ---- */

static const char *const averaging_names[] = {
	[HETSGD_AVERAGING_AUTO] = "auto",
	[HETSGD_AVERAGING_SERVER] = "server",
	[HETSGD_AVERAGING_SHARDED] = "sharded",
};

int hetsgd_averaging_parse(const char *name, enum hetsgd_averaging *avg)
{
	for (int i = 0; i <= HETSGD_AVERAGING_SHARDED; i++)
		if (name && !strcmp(name, averaging_names[i])) {
			*avg = (enum hetsgd_averaging)i;
			return 0;
		}
	return algo_err(-EINVAL, "unknown averaging '%s': use auto, server or sharded",
			name ? name : "(null)");
}

const char *hetsgd_averaging_name(enum hetsgd_averaging avg)
{
	return avg >= HETSGD_AVERAGING_AUTO && avg <= HETSGD_AVERAGING_SHARDED ?
		       averaging_names[avg] : "invalid";
}

enum hetsgd_averaging hetsgd_averaging_resolve(enum hetsgd_averaging avg,
					       enum hetsgd_method method, uint32_t n)
{
	const struct hetsgd_method_ops *m = method_get(method);

	if (avg != HETSGD_AVERAGING_AUTO)
		return avg;
	return m && m->sharded_ops && n >= HETSGD_SHARDED_MIN_WORKERS ?
		       HETSGD_AVERAGING_SHARDED : HETSGD_AVERAGING_SERVER;
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

int hetsgd_engine_cfg_check(const struct hetsgd_engine_cfg *c, uint32_t n,
			    size_t d)
{
	const struct hetsgd_method_ops *m = method_get(c->method);
	double tau;
	int ret;

	if (n == 0)
		return algo_err(-EINVAL, "the job has no worker: run at least 2 ranks (rank 0 is the server)");
	if (d == 0 || d > UINT32_MAX / 8)
		return algo_err(-EINVAL, "model dimension %zu is outside 1 .. %u", d, UINT32_MAX / 8);
	if (!m) {
		char choices[128];

		method_list(choices, sizeof(choices));
		return algo_err(-EINVAL, "unknown method %d: use one of %s", (int)c->method, choices);
	}
	if (m->check && (ret = m->check(c, n, d)))
		return ret;
	if (c->averaging < HETSGD_AVERAGING_AUTO || c->averaging > HETSGD_AVERAGING_SHARDED)
		return algo_err(-EINVAL, "unknown averaging %d: use auto, server or sharded",
				(int)c->averaging);
	if (c->averaging == HETSGD_AVERAGING_SHARDED && !m->sharded_ops)
		return algo_err(-EINVAL, "sharded averaging applies to loscar and sync, not %s: drop it (%s has no round to average)",
				m->name, m->name);
	if (c->servers > HETSGD_MAX_SERVERS)
		return algo_err(-EINVAL, "%u servers: use 1 .. %u", c->servers, HETSGD_MAX_SERVERS);
	if (c->servers > 1 && c->method != HETSGD_METHOD_ASGD)
		return algo_err(-EINVAL, "a sharded parameter server (%u servers) applies to asgd, not %s: drop --servers (%s)",
				c->servers, m->name, m->sharded_ops ? "it averages rounds: --averaging sharded spreads them" :
				"its server keeps per-worker state");
	if (c->servers > d)
		return algo_err(-EINVAL, "%u servers for a model of d = %zu: every shard needs a coordinate; use at most %zu",
				c->servers, d, d);
	if (c->round_steps && c->method != HETSGD_METHOD_LOSCAR)
		return algo_err(-EINVAL, "steps per round apply to loscar only, not %s", m->name);
	if (!finite_nonneg(c->comm_delay_s) || c->comm_delay_s > 3600.0)
		return algo_err(-EINVAL, "communication delay %g s must be in [0, 3600]", c->comm_delay_s);
	if (c->comm_delay_s > 0.0 && !m->delayable)
		return algo_err(-EINVAL, "the emulated communication delay applies to LOSCAR's averages only; drop it for %s",
				m->name);
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
	if (c->min_workers > n)
		return algo_err(-EINVAL, "--min-workers %u exceeds the %u workers of the job: the run could never start",
				c->min_workers, n);
	if (c->pin < -1 || c->pin > 1)
		return algo_err(-EINVAL, "pin must be -1 (auto), 0 or 1, not %d", c->pin);
	if (!finite_nonneg(c->checkpoint_every_s))
		return algo_err(-EINVAL, "checkpoint interval %g s must be finite and >= 0 (0: none)",
				c->checkpoint_every_s);
	if (c->resume && (c->resume->method != (uint32_t)c->method || c->resume->n != n ||
			  c->resume->d != d))
		return algo_err(-EINVAL, "the checkpoint is of %s with %u workers and d = %llu; this run is %s with %u workers and d = %zu: resume with the run's own configuration",
				hetsgd_method_name((enum hetsgd_method)c->resume->method), c->resume->n,
				(unsigned long long)c->resume->d, m->name, n, d);
	return 0;
}

/* ---- the run ---- */

/*
 * What this rank brings.  Checked after the endpoint is open, so that a
 * rank with bad input tells the others (ABORT) instead of leaving them
 * waiting in the collective open.
 */
static int check_io(struct eng *e)
{
	const struct hetsgd_engine_cfg *c = e->cfg;
	const struct hetsgd_engine_io *io = e->io;

	if (e->rank > (int)e->n) {
		/* a shard server: its shard of x0 is all it needs */
	} else if (e->rank > 0) {
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
	free(res->servers);
	memset(res, 0, sizeof(*res));
}

/*
 * The context of this rank: the method, K, the mask seed and the stall
 * time.  Silence is expected for a few of the slowest worker's steps and
 * whatever the method adds (a round, a held average); only beyond that
 * is it a stall.
 */
static void eng_init(struct eng *e, const struct hetsgd_engine_cfg *cfg)
{
	uint64_t seed = cfg->seed ^ 0x6d61736b5f736565ull;	/* "mask_see" */
	double slow = 0, tau;

	e->ops = method_get(cfg->method);
	if (hetsgd_averaging_resolve(cfg->averaging, cfg->method, e->n) == HETSGD_AVERAGING_SHARDED)
		e->ops = e->ops->sharded_ops;
	e->k = e->ops->coords ? e->ops->coords(cfg, e->d) : 0;
	e->mask_seed = splitmix64(&seed);
	for (uint32_t i = 0; i < e->n; i++)
		if (!hetsgd_profile_mean(&cfg->profile, i, e->n, &tau) && tau > slow)
			slow = tau;
	e->stall_s = (cfg->stall_s > 0 ? cfg->stall_s : 60.0) + 4.0 * slow *
		     exp(2.0 * cfg->profile.noise);
	if (e->ops->quiet_s)
		e->stall_s += e->ops->quiet_s(cfg);
}

/* The transport's attributes: every message fits one slot (header,
 * block header, d values); the block limits that go with them. */
static void eng_tp_attr(struct eng *e, const struct hetsgd_tp_attr *tp_attr,
			struct hetsgd_tp_attr *attr)
{
	*attr = *tp_attr;
	/* Only the pairs the method talks over: sharded averaging writes
	 * between workers; everything else goes through the server. */
	attr->pattern = e->ops->sharded ? HETSGD_TP_ALL : HETSGD_TP_STAR;
	/* a sharded parameter server: each shard server is a hub too */
	attr->hubs = e->nservers;
	e->slot = ((size_t)HDR_BYTES + hetsgd_block_bytes(HETSGD_ENC_DENSE, (uint32_t)e->d) +
		   sizeof(struct wire_stats) + 63) & ~(size_t)63;
	attr->slot_bytes = e->slot;
	attr->slots = 4;
	attr->tx_bufs = 8;
	if (attr->numa_node < 0)
		attr->numa_node = e->plan.numa_node;
	if (attr->provider == HETSGD_PROV_VERBS && !attr->verbs.device && e->plan.device[0] &&
	    !getenv("HETSGD_IB_DEV"))
		attr->verbs.device = e->plan.device;
	e->lim.dim = (uint32_t)e->d;
	e->lim.nranks = (uint32_t)e->size;
	e->lim.max_bytes = e->slot - HDR_BYTES;
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
	e->nservers = cfg->servers > 1 ? cfg->servers : 1;
	e->n = e->size > (int)e->nservers ? (uint32_t)(e->size - (int)e->nservers) : 0;
	e->d = io->d;
	e->t_base = cfg->resume ? cfg->resume->t : 0.0;
	ret = hetsgd_engine_cfg_check(cfg, e->n, e->d);
	if (ret)
		return ret;
	eng_init(e, cfg);
	/* one BLAS thread per compute thread (blas_priv.h) */
	blas_one_thread();
	eng_place(e, boot, res);
	gather_placements(e, boot, res);
	eng_tp_attr(e, tp_attr, &attr);
	res->connect_s = now_s();
	ret = hetsgd_tp_open(boot, &attr, &e->tp);
	res->connect_s = now_s() - res->connect_s;
	if (ret) {
		ret = tp_error(ret, "opening the transport");
		goto out;
	}
	/* No collective of the bootstrap follows (close is the transport's):
	 * leaving PMIx now keeps Slurm from killing the step when a worker
	 * dies (hetsgd_boot_leave). */
	hetsgd_boot_leave(boot);
	snprintf(res->provider, sizeof(res->provider), "%s", hetsgd_tp_describe(e->tp));
	res->pattern = attr.pattern;
	gather_footprints(e, boot, res);
	/* Indices of indexed blocks are checked here, out of the sender's reach. */
	e->lim.idx_copy = malloc(e->d * sizeof(uint32_t));
	ret = e->lim.idx_copy ? check_io(e) : algo_err(-ENOMEM, "out of memory for a block's indices");
	if (!ret)
		ret = e->rank == 0 ? server_run(e, res) :
		      e->rank > (int)e->n ? pserver_run(e, res) : worker_run(e, res);
	res->bytes_sent = e->bytes_sent;
	res->bytes_recv = e->bytes_recv;
	res->bytes_recv_training = e->bytes_recv_train;
	res->averaging = e->ops->sharded ? HETSGD_AVERAGING_SHARDED : HETSGD_AVERAGING_SERVER;
	if (ret && ret != -ECONNABORTED && !e->abort_sent) {
		/* every way this rank fails tells the others why, so that none
		 * waits out its stall time */
		char why[ABORT_MAX + 1];

		snprintf(why, sizeof(why), "%s", hetsgd_algo_errmsg());
		abort_peers(e, why);
		algo_err(ret, "%s", why);
	}
	/* close waits for the live ranks only (a lost worker does not hold
	 * it); a failed rank still closes so that the others see it leave */
	cret = hetsgd_tp_close(e->tp);
	/* the server's results are complete once every worker is DONE or
	 * LOST: a close that fails must not throw them away */
	if (!ret && cret && e->rank != 0)
		ret = tp_error(cret, "closing the transport");
out:
	free(e->lim.idx_copy);
	hetsgd_topo_close(e->topo);
	if (ret)
		hetsgd_engine_result_free(res);
	return ret;
}
