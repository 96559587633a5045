/*
 * LOSCAR-SGD (both merges, with or without overlap, any K): a worker
 * takes local steps for round_s seconds, snapshots the K masked values
 * (mask from (seed, round), the same on every rank), writes them, keeps
 * stepping (overlap) or waits (no overlap) until the average lands,
 * merges, and starts the next round.  The server averages the blocks of
 * a round (one per live worker; a lost worker's is absent) and writes the
 * average to all, held comm_delay_s; it asks for
 * whole-model snapshots when an evaluation is due, and for the final
 * models at the end.  K = d is the dense baseline.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "methods.h"
#include "server.h"
#include "worker.h"

/* ---- worker ---- */

/* Round r's snapshot y = x[S], written; no step until the progress
 * thread has encoded it from x. */
static int loscar_send_round(struct worker *w, uint64_t r)
{
	struct eng *e = w->e;
	int ret = hetsgd_mask_draw(&w->mask, e->mask_seed, r);

	if (ret)
		return algo_err(ret, "drawing the mask of round %llu: %s", (unsigned long long)r,
				hetsgd_errmsg());
	for (uint32_t j = 0; j < e->k; j++)
		w->y[j] = w->x[w->mask.idx[j]];
	worker_post(w, MSG_ROUND, r, w->x, 0);
	worker_wait_written(w);
	return 0;
}

/* The average of round r from the inbox into x; a snapshot when asked. */
static int loscar_merge(struct worker *w, uint64_t r)
{
	struct eng *e = w->e;
	uint16_t flags;

	pthread_mutex_lock(&w->mu);
	if (w->in_round != r) {
		pthread_mutex_unlock(&w->mu);
		return algo_err(-EPROTO, "the server sent the average of round %llu during round %llu",
				(unsigned long long)w->in_round, (unsigned long long)r);
	}
	hetsgd_loscar_merge(e->cfg->merge, w->x, w->mask.idx, e->k, w->y, w->in_vec);
	flags = w->in_flags;
	worker_took_reply(w);
	pthread_mutex_unlock(&w->mu);
	w->rounds++;
	if (flags & FLAG_SNAP) {
		memcpy(w->xs, w->x, e->d * sizeof(float));
		worker_post(w, MSG_SNAP, r + 1, w->xs, 0);
	}
	return 0;
}

static int loscar_worker_loop(struct worker *w)
{
	struct eng *e = w->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	uint64_t r = eng_start_round(e);
	int inflight = 0, ret;
	double round_start = now_s();

	while (!atomic_load(&w->stop)) {
		if (!inflight && now_s() - round_start >= c->round_s) {
			ret = loscar_send_round(w, r);
			if (ret)
				return ret;
			inflight = 1;
		}
		if (inflight) {
			if (!c->overlap)
				worker_wait_reply(w);
			if (worker_has_reply(w)) {
				ret = loscar_merge(w, r);
				if (ret)
					return ret;
				r++;
				inflight = 0;
				round_start = now_s();
				continue;
			}
			if (atomic_load(&w->stop))
				break;
		}
		ret = worker_grad(w, w->x);
		if (ret)
			return ret;
		sgd_step(w->x, w->g, c->gamma, e->d);
		if (inflight)
			w->overlap_steps++;
	}
	return 0;
}

/* After STOP: the whole model, for the server's final average. */
static int loscar_worker_finish(struct worker *w)
{
	struct eng_hdr h;

	fill_hdr(&h, MSG_FINAL, (uint32_t)w->e->rank, 0, w->rounds);
	h.steps = w->steps;
	return send_dense_blocking(w->e, 0, &h, w->x);
}

/* ---- server ---- */

/* The average of the round, scattered onto the mask for the encoder,
 * queued to every worker; an evaluation snapshot asked when one is due. */
static int loscar_average(struct server *s, double t)
{
	struct eng *e = s->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	uint16_t fl = 0;
	int ret = hetsgd_mask_draw(&s->mask, e->mask_seed, s->round);

	if (ret)
		return algo_err(ret, "drawing the mask of round %llu: %s",
				(unsigned long long)s->round, hetsgd_errmsg());
	/* over the blocks that came: a worker lost during the round is absent */
	for (uint32_t j = 0; j < e->k; j++)
		s->xs[s->mask.idx[j]] = s->sum[j] / (float)s->acc_count;
	memset(s->sum, 0, (size_t)e->k * sizeof(float));
	memset(s->got, 0, e->n);
	s->acc_count = 0;
	/* one snapshot serves an evaluation and a checkpoint that are due */
	if (!s->snap_wanted && ((c->eval_interval_s > 0 && t >= s->next_eval) || s->ckpt_wanted)) {
		fl = FLAG_SNAP;
		s->snap_wanted = 1;
		if (c->eval_interval_s > 0 && t >= s->next_eval)
			s->next_eval = t + c->eval_interval_s;
	}
	for (uint32_t i = 0; i < e->n; i++)
		if (!server_is_lost(s, i) &&
		    (ret = enqueue(s, i, MSG_AVG, s->round, fl, t + c->comm_delay_s)))
			return ret;
	s->round++;
	s->updates++;
	return 0;
}

static int loscar_round(struct server *s, uint32_t wk, const struct hetsgd_ev *ev,
			const struct hetsgd_block *b, double t)
{
	struct eng *e = s->e;
	int ret = want_masked(e, ev, b, s->round, "its round block");

	if (ret)
		return ret;
	if (s->got[wk])
		return algo_err(-EPROTO, "worker %u sent round %llu twice", wk,
				(unsigned long long)s->round);
	ret = block_add(ev->peer, s->sum, b->val, e->k);
	if (ret)
		return ret;
	s->got[wk] = 1;
	s->acc_count++;
	return server_all_live(s, s->got) ? loscar_average(s, t) : 0;
}

/* Every live worker's snapshot is in: evaluate their average, and make
 * it a checkpoint when one asked for it. */
static int loscar_snap_done(struct server *s, double t)
{
	struct eng *e = s->e;
	int ret;

	if (!s->snap_count || !server_all_live(s, s->have_snap))
		return 0;
	eval_submit(s, s->snap, 1.0 / s->snap_count);
	ret = ckpt_from_snapshot(s, t);
	memset(s->snap, 0, e->d * sizeof(float));
	memset(s->have_snap, 0, e->n);
	s->snap_count = 0;
	s->snap_wanted = 0;
	return ret;
}

static int loscar_snap(struct server *s, uint32_t wk, const struct eng_hdr *h,
		       const struct hetsgd_ev *ev, const struct hetsgd_block *b, double t)
{
	struct eng *e = s->e;
	int ret = want_full(ev, b, "a snapshot");

	if (ret)
		return ret;
	if (!s->snap_wanted || s->have_snap[wk])
		return algo_err(-EPROTO, "worker %u sent a snapshot the server did not ask for", wk);
	if (h->round != s->round)
		return algo_err(-EPROTO, "worker %u sent a snapshot for round %llu while the server is at round %llu",
				wk, (unsigned long long)h->round, (unsigned long long)s->round);
	ret = block_add(ev->peer, s->snap, b->val, e->d);
	if (ret)
		return ret;
	s->have_snap[wk] = 1;
	s->snap_steps[wk] = h->steps;
	s->snap_round = h->round;
	s->snap_count++;
	return loscar_snap_done(s, t);
}

/* Round and snapshot may have waited only for the worker just lost. */
static int loscar_server_lost(struct server *s, uint32_t wk, double t)
{
	int ret;

	(void)wk;
	if (s->snap_wanted && (ret = loscar_snap_done(s, t)))
		return ret;
	if (s->state != S_TRAINING || !s->acc_count || !server_all_live(s, s->got))
		return 0;
	return loscar_average(s, t);
}

static int loscar_server_msg(struct server *s, uint32_t wk, const struct eng_hdr *h,
			     const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t)
{
	int ret;

	switch (h->type) {
	case MSG_ROUND:
		return loscar_round(s, wk, ev, b, t);
	case MSG_SNAP:
		return loscar_snap(s, wk, h, ev, b, t);
	default:	/* MSG_FINAL: once per worker, after STOP (server.c) */
		ret = want_full(ev, b, "its final model");
		if (ret)
			return ret;
		ret = block_add(ev->peer, s->acc, b->val, s->e->d);
		if (ret)
			return ret;
		s->finals++;
		return 0;
	}
}

/* The final model: the average of the final models that came (a worker
 * lost before it sent one is absent). */
static int loscar_server_finish(struct server *s)
{
	struct eng *e = s->e;

	if (s->finals + s->nlost < e->n || !s->finals)
		return algo_err(-EPROTO, "only %u of %u workers sent their final model (%u lost)",
				s->finals, e->n, s->nlost);
	for (size_t j = 0; j < e->d; j++)
		s->x[j] = s->acc[j] / (float)s->finals;
	return 0;
}

/* ---- configuration ---- */

static int loscar_check(const struct hetsgd_engine_cfg *c, uint32_t n, size_t d)
{
	(void)n;
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
	return 0;
}

static uint32_t loscar_coords(const struct hetsgd_engine_cfg *c, size_t d)
{
	return c->k ? c->k : (uint32_t)d;
}

/* A round and a held average are expected silences. */
static double loscar_quiet_s(const struct hetsgd_engine_cfg *c)
{
	return c->round_s + c->comm_delay_s;
}

const struct hetsgd_method_ops method_loscar = {
	.id = HETSGD_METHOD_LOSCAR,
	.name = "loscar",
	.to_server = MSG_BIT(MSG_ROUND) | MSG_BIT(MSG_SNAP) | MSG_BIT(MSG_FINAL),
	.to_worker = MSG_BIT(MSG_AVG),
	.delayable = 1,
	.snapshots = 1,
	.check = loscar_check,
	.coords = loscar_coords,
	.quiet_s = loscar_quiet_s,
	.worker_loop = loscar_worker_loop,
	.worker_finish = loscar_worker_finish,
	.server_msg = loscar_server_msg,
	.server_lost = loscar_server_lost,
	.server_finish = loscar_server_finish,
};
