/*
 * ASGD (all the step-size policies of policy.c): a worker computes g at
 * its model, writes it (dense, or indexed when that is smaller) with its
 * seconds per gradient, and waits for the model the server writes back.
 * The server steps x -= gamma_i g with gamma_i from the policy and writes
 * x to that worker only; a policy that returns 0 drops the gradient.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "methods.h"
#include "pserver.h"
#include "server.h"
#include "worker.h"

int gradient_worker_loop(struct worker *w)
{
	struct eng *e = w->e;
	uint64_t ver = eng_start_version(e);
	int ret;

	while (!atomic_load(&w->stop)) {
		ret = worker_grad(w, w->x);
		if (ret)
			return ret;
		worker_post_gradient(w, ver);
		worker_wait_reply(w);
		pthread_mutex_lock(&w->mu);
		if (worker_has_reply(w)) {
			memcpy(w->x, w->in_vec, e->d * sizeof(float));
			ver = w->in_round;
			if (e->cfg->on_average)
				e->cfg->on_average(e->cfg->on_average_arg, w->id, ver, w->x, e->d);
			if (w->in_flags & FLAG_DROPPED)
				w->dropped++;
			worker_took_reply(w);
		}
		pthread_mutex_unlock(&w->mu);
	}
	return 0;
}

static int asgd_check(const struct hetsgd_engine_cfg *c, uint32_t n, size_t d)
{
	char choices[256];

	(void)n;
	(void)d;
	if (hetsgd_policy_get(c->policy))
		return 0;
	hetsgd_policy_list(choices, sizeof(choices), ", ");
	return algo_err(-EINVAL, "unknown ASGD policy %d: use one of %s", (int)c->policy, choices);
}

/* A gradient: step with the policy's gamma_i, reply to that worker. */
static int asgd_server_msg(struct server *s, uint32_t wk, const struct eng_hdr *h,
			   const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t)
{
	struct eng *e = s->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	struct hetsgd_policy_in in = { .gamma = c->gamma, .n = e->n, .R = c->ringmaster_r };
	double g_i;
	int ret;

	if (b->encoding == HETSGD_ENC_MASKED)
		return algo_err(-EPROTO, "worker %u sent a masked GRAD, which an asgd server does not expect: the ranks run different configurations",
				wk);
	/* a sharded parameter server: shard 0's coordinates only */
	if (s->ps && (ret = ps_want_shard(e, ev, b, 0, 0, "a gradient")))
		return ret;
	if (h->round > s->version)
		return algo_err(-EPROTO, "worker %u sent a gradient at model version %llu; the server is at %llu",
				wk, (unsigned long long)h->round, (unsigned long long)s->version);
	ret = hetsgd_tau_report(s->tau, wk, h->tau, t);
	if (ret)
		return ret;
	in.delay = s->version - h->round;
	in.tau_i = hetsgd_tau_get(s->tau, wk);
	in.tau_max = hetsgd_tau_max(s->tau, t);
	g_i = hetsgd_policy_gamma(c->policy, &in);
	if (g_i == 0.0) {
		s->dropped++;
		ret = s->ps ? ps0_step(s, wk, 0.0, FLAG_DROPPED) : 0;
		return ret ? ret : enqueue(s, wk, MSG_MODEL, s->version, FLAG_DROPPED, t);
	}
	ret = block_axpy(ev->peer, s->x, b, (float)g_i);
	if (ret)
		return ret;
	s->version++;
	s->updates++;
	/* every shard server steps its shard with the same gamma_i, in this order */
	ret = s->ps ? ps0_step(s, wk, g_i, 0) : 0;
	return ret ? ret : enqueue(s, wk, MSG_MODEL, s->version, 0, t);
}

const struct hetsgd_method_ops method_asgd = {
	.id = HETSGD_METHOD_ASGD,
	.name = "asgd",
	.to_server = MSG_BIT(MSG_GRAD),
	.to_worker = MSG_BIT(MSG_MODEL),
	.check = asgd_check,
	.worker_loop = gradient_worker_loop,
	.server_msg = asgd_server_msg,
	.server_tick = eval_model_tick,
};
