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

/* One worker's gradient of the round; the last one steps and replies to all. */
static int sync_server_msg(struct server *s, uint32_t wk, const struct eng_hdr *h,
			   const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t)
{
	struct eng *e = s->e;
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
	if (++s->acc_count < e->n)
		return 0;
	sgd_step(s->x, s->acc, e->cfg->gamma / (float)e->n, e->d);
	memset(s->acc, 0, e->d * sizeof(float));
	memset(s->got, 0, e->n);
	s->acc_count = 0;
	s->version++;
	s->updates++;
	for (uint32_t i = 0; i < e->n; i++)
		if ((ret = enqueue(s, i, MSG_MODEL, s->version, 0, t)))
			return ret;
	return 0;
}

const struct hetsgd_method_ops method_sync = {
	.id = HETSGD_METHOD_SYNC,
	.name = "sync",
	.to_server = MSG_BIT(MSG_GRAD),
	.to_worker = MSG_BIT(MSG_MODEL),
	.worker_loop = gradient_worker_loop,
	.server_msg = sync_server_msg,
	.server_tick = eval_model_tick,
};
