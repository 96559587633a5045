/*
 * Synchronous minibatch SGD: ASGD's worker; the server averages one
 * gradient from every worker, steps, and writes x to all.
 */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "methods.h"
#include "server.h"
#include "worker.h"

/*
 * Every live worker's gradient is in: step with their average and write
 * x to each.  The average is over the gradients that came (acc_count): a
 * worker lost during the round counts if its gradient landed before it
 * died, and is simply absent otherwise.
 */
static int sync_step(struct server *s, double t)
{
	struct eng *e = s->e;
	int ret;

	sgd_step(s->x, s->acc, e->cfg->gamma / (float)s->acc_count, e->d);
	memset(s->acc, 0, e->d * sizeof(float));
	memset(s->got, 0, e->n);
	s->acc_count = 0;
	s->version++;
	s->updates++;
	for (uint32_t i = 0; i < e->n; i++)
		if (!server_is_lost(s, i) && (ret = enqueue(s, i, MSG_MODEL, s->version, 0, t)))
			return ret;
	return 0;
}

/* One worker's gradient of the round; the last live one's steps and replies to all. */
static int sync_server_msg(struct server *s, uint32_t wk, const struct eng_hdr *h,
			   const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t)
{
	int ret;

	if (b->encoding == HETSGD_ENC_MASKED)
		return algo_err(-EPROTO, "worker %u sent a masked GRAD, which a sync server does not expect: the ranks run different configurations",
				wk);
	if (h->round != s->version || s->got[wk])
		return algo_err(-EPROTO, "worker %u sent a gradient for version %llu in synchronous round %llu",
				wk, (unsigned long long)h->round, (unsigned long long)s->version);
	s->got[wk] = 1;
	(void)hetsgd_tau_report(s->tau, wk, h->tau, t);	/* for the statistics */
	ret = block_axpy(ev->peer, s->acc, b, -1.0f);	/* acc += g */
	if (ret)
		return ret;
	s->acc_count++;
	return server_all_live(s, s->got) ? sync_step(s, t) : 0;
}

/* A lost worker's gradient will not come: the round may be complete. */
static int sync_server_lost(struct server *s, uint32_t wk, double t)
{
	(void)wk;
	if (s->state != S_TRAINING || !s->acc_count || !server_all_live(s, s->got))
		return 0;
	return sync_step(s, t);
}

const struct hetsgd_method_ops method_sync = {
	.id = HETSGD_METHOD_SYNC,
	.name = "sync",
	.to_server = MSG_BIT(MSG_GRAD),
	.to_worker = MSG_BIT(MSG_MODEL),
	.worker_loop = gradient_worker_loop,
	.server_msg = sync_server_msg,
	.server_tick = eval_model_tick,
	.server_lost = sync_server_lost,
};
