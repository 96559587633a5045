/*
 * Synchronous minibatch SGD: ASGD's worker; the server averages one
 * gradient from every worker, steps, and writes x to all.  With
 * --averaging sharded the workers' shard owners do it (shard.h) and the
 * server receives the model's shards as every worker does.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"
#include "server.h"
#include "shard.h"
#include "worker.h"

/*
 * Every live worker's gradient is in: step with their average and write
 * x to each.  The average is over the gradients that came (acc_count): a
 * worker lost during the round counts if its gradient landed before it
 * died, and is simply absent otherwise.  The gradients are summed in
 * worker order whatever order they landed in: the order of sharded
 * averaging (shard.c), so both give the same bits.
 */
static int sync_step(struct server *s, double t)
{
	struct eng *e = s->e;
	int ret;

	memset(s->acc, 0, e->d * sizeof(float));
	for (uint32_t i = 0; i < e->n; i++) {
		const float *row = s->rows + (size_t)i * e->d;

		if (!s->got[i])
			continue;
		for (size_t j = 0; j < e->d; j++)
			s->acc[j] += row[j];
	}
	sgd_step(s->x, s->acc, e->cfg->gamma / (float)s->acc_count, e->d);
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
	float *row = s->rows + (size_t)wk * s->e->d;
	int ret;

	if (b->encoding == HETSGD_ENC_MASKED)
		return algo_err(-EPROTO, "worker %u sent a masked GRAD, which a sync server does not expect: the ranks run different configurations",
				wk);
	if (h->round != s->version || s->got[wk])
		return algo_err(-EPROTO, "worker %u sent a gradient for version %llu in synchronous round %llu",
				wk, (unsigned long long)h->round, (unsigned long long)s->version);
	s->got[wk] = 1;
	(void)hetsgd_tau_report(s->tau, wk, h->tau, t);	/* for the statistics */
	memset(row, 0, s->e->d * sizeof(float));
	ret = block_axpy(ev->peer, row, b, -1.0f);	/* row = g */
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

/* The rows of a round's gradients (server.h). */
static int sync_server_init(struct server *s)
{
	s->rows = malloc(((size_t)s->e->n * s->e->d + 1) * sizeof(float));
	return s->rows ? 0 : algo_err(-ENOMEM, "server: out of memory for %u gradients of d = %zu",
				      s->e->n, s->e->d);
}

static void sync_server_fini(struct server *s)
{
	free(s->rows);
	s->rows = NULL;
}

/*
 * Sharded: a TICK per gradient a worker posted (its statistics), and
 * each shard of each new model from its owner, into x.  Shards of two
 * consecutive versions may sit side by side in x for a moment (an
 * evaluation taken then sees both); the final x holds each shard's last
 * version.
 */
static int sync_sharded_msg(struct server *s, uint32_t wk, const struct eng_hdr *h,
			    const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t)
{
	struct eng *e = s->e;

	if (h->type == MSG_TICK) {
		if (h->flags == MSG_GRAD)
			(void)hetsgd_tau_report(s->tau, wk, h->tau, t);	/* for the statistics */
		return 0;
	}
	if (b->encoding != HETSGD_ENC_DENSE || shard_find(e->d, e->n, b->first, b->count) < 0)
		return algo_err(-EPROTO, "worker %u sent a shard of the model [%u, %llu), which is no shard of %zu coordinates over %u workers: the ranks run different configurations",
				wk, b->first, (unsigned long long)b->first + b->count, e->d, e->n);
	if (h->round > s->version)
		s->version = s->updates = h->round;
	return block_take(ev->peer, s->x + b->first, b->val, b->count);
}

const struct hetsgd_method_ops method_sync = {
	.id = HETSGD_METHOD_SYNC,
	.name = "sync",
	.to_server = MSG_BIT(MSG_GRAD),
	.to_worker = MSG_BIT(MSG_MODEL),
	.sharded_ops = &method_sync_sharded,
	.worker_loop = gradient_worker_loop,
	.server_init = sync_server_init,
	.server_fini = sync_server_fini,
	.server_msg = sync_server_msg,
	.server_tick = eval_model_tick,
	.server_lost = sync_server_lost,
};

/* --averaging sharded: the same workers; the shards' owners step */
const struct hetsgd_method_ops method_sync_sharded = {
	.id = HETSGD_METHOD_SYNC,
	.name = "sync",
	.to_server = MSG_BIT(MSG_TICK) | MSG_BIT(MSG_SHARD),
	.to_worker = MSG_BIT(MSG_PART) | MSG_BIT(MSG_SHARD) | MSG_BIT(MSG_NOTICE),
	.sharded = 1,
	.worker_loop = gradient_worker_loop,
	.server_msg = sync_sharded_msg,
	.server_tick = eval_model_tick,
};
