/*
 * Ringleader ASGD (Maranjyan and Richtarik 2025, arXiv 2509.22860):
 * ASGD's worker (it writes g and waits for the model back).  The server
 * puts every gradient into a per-worker table (sum and count b_i,
 * hetsgd_grad_table in policy.c) whatever model it was computed at, and
 * replies with its current model; the round ends when every worker has
 * contributed at least one gradient: then it steps once,
 *   x_{k+1} = x_k - gamma (1/n) sum_i sum_i / b_i,
 * and clears the table.  A gradient that was in flight at a step (computed
 * at x_{k-1}) counts in round k: no computed gradient is dropped, and the
 * protocol bounds every delay by one step (algo/README.md says why; the
 * server checks it).
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "methods.h"
#include "server.h"
#include "worker.h"

static int ringleader_server_init(struct server *s)
{
	return hetsgd_grad_table_init(&s->table, s->e->n, s->e->d);
}

static void ringleader_server_fini(struct server *s)
{
	hetsgd_grad_table_fini(&s->table);
}

/* The round is complete: step once with the mean of the means, clear. */
static void ringleader_try_step(struct server *s)
{
	if (!hetsgd_ringleader_ready(&s->table))
		return;
	hetsgd_grad_table_step(&s->table, s->x, s->e->cfg->gamma);
	hetsgd_grad_table_clear(&s->table);
	s->version++;
	s->updates++;
}

/* A gradient: into this round's table; the round's last one steps; reply. */
static int ringleader_server_msg(struct server *s, uint32_t wk, const struct eng_hdr *h,
				 const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t)
{
	int ret;

	if (b->encoding == HETSGD_ENC_MASKED)
		return algo_err(-EPROTO, "worker %u sent a masked GRAD, which a ringleader server does not expect: the ranks run different configurations",
				wk);
	if (hetsgd_ringleader_admit(h->round, s->version) < 0)
		return algo_err(-EPROTO, "worker %u sent a gradient at model version %llu; the server is at %llu, and Ringleader's protocol keeps every delay <= 1: the ranks run different configurations",
				wk, (unsigned long long)h->round, (unsigned long long)s->version);
	(void)hetsgd_tau_report(s->tau, wk, h->tau, t);	/* for the statistics */
	ret = block_axpy(ev->peer, hetsgd_grad_table_row(&s->table, wk), b, -1.0f);	/* += g */
	if (ret)
		return ret;
	hetsgd_grad_table_counted(&s->table, wk);
	ringleader_try_step(s);
	return enqueue(s, wk, MSG_MODEL, s->version, 0, t);
}

/* A lost worker is waited for no more: its absence may end the round.
 * The others already have their replies; they see the step in the next. */
static int ringleader_server_lost(struct server *s, uint32_t wk, double t)
{
	(void)t;
	hetsgd_grad_table_lose(&s->table, wk);
	if (s->state == S_TRAINING)
		ringleader_try_step(s);
	return 0;
}

const struct hetsgd_method_ops method_ringleader = {
	.id = HETSGD_METHOD_RINGLEADER,
	.name = "ringleader",
	.to_server = MSG_BIT(MSG_GRAD),
	.to_worker = MSG_BIT(MSG_MODEL),
	.worker_loop = gradient_worker_loop,
	.server_init = ringleader_server_init,
	.server_fini = ringleader_server_fini,
	.server_msg = ringleader_server_msg,
	.server_lost = ringleader_server_lost,
	.server_tick = eval_model_tick,
};
