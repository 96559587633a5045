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
#include <stdlib.h>
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
	if (e->cfg->on_average)
		e->cfg->on_average(e->cfg->on_average_arg, w->id, r, w->in_vec, e->k);
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
	uint64_t r = eng_start_round(e), local = 0;	/* local: steps since the last merge */
	int inflight = 0, ret;
	double round_start = now_s();

	while (!atomic_load(&w->stop)) {
		if (!inflight && (c->round_steps ? local >= c->round_steps :
						   now_s() - round_start >= c->round_s)) {
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
				local = 0;
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
		else
			local++;
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
	/* over the blocks that came (a worker lost during the round is
	 * absent), summed in worker order whatever order they landed in:
	 * the order of sharded averaging (shard.c), so both give the same
	 * bits */
	memset(s->sum, 0, (size_t)e->k * sizeof(float));
	for (uint32_t i = 0; i < e->n; i++) {
		const float *row = s->rows + (size_t)i * e->k;

		if (!s->got[i])
			continue;
		for (size_t j = 0; j < e->k; j++)
			s->sum[j] += row[j];
	}
	for (uint32_t j = 0; j < e->k; j++)
		s->xs[s->mask.idx[j]] = s->sum[j] / (float)s->acc_count;
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
	ret = block_take(ev->peer, s->rows + (size_t)wk * e->k, b->val, e->k);
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
	/* on the server path every snapshot follows the merge of the round
	 * just averaged; sharded, the server only hears of rounds */
	if (!e->ops->sharded && h->round != s->round)
		return algo_err(-EPROTO, "worker %u sent a snapshot for round %llu while the server is at round %llu",
				wk, (unsigned long long)h->round, (unsigned long long)s->round);
	ret = block_add(ev->peer, s->snap, b->val, e->d);
	if (ret)
		return ret;
	s->have_snap[wk] = 1;
	s->snap_steps[wk] = h->steps;
	/* the round every worker resumes at (sharded snapshots may straddle one) */
	if (!s->snap_count || h->round > s->snap_round)
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

/* The rows of a round's blocks (server.h). */
static int loscar_server_init(struct server *s)
{
	s->rows = malloc(((size_t)s->e->n * s->e->k + 1) * sizeof(float));
	return s->rows ? 0 : algo_err(-ENOMEM, "server: out of memory for %u blocks of K = %u",
				      s->e->n, s->e->k);
}

static void server_rows_fini(struct server *s)
{
	free(s->rows);
	s->rows = NULL;
}

/* ---- sharded averaging: the server's part (shard.h) ---- */

/*
 * The workers average among themselves; the server hears a TICK per
 * posted round (its statistics, the rounds count), asks for snapshots
 * and takes the final models as on the server path.
 */
static int loscar_sharded_msg(struct server *s, uint32_t wk, const struct eng_hdr *h,
			      const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t)
{
	if (h->type != MSG_TICK)
		return loscar_server_msg(s, wk, h, b, ev, t);
	/* posting round r means round r - 1 was merged */
	if (h->round > s->round)
		s->round = s->updates = h->round;
	return 0;
}

/*
 * An evaluation is due: every worker sends its model after its merge of
 * round R, two rounds past the furthest one posted, so that they all
 * snapshot the same round (a worker already past R sends after its next
 * merge).
 */
static void loscar_sharded_tick(struct server *s, double t)
{
	struct eng *e = s->e;
	const struct hetsgd_engine_cfg *c = e->cfg;

	int eval_due = c->eval_interval_s > 0 && t >= s->next_eval;

	/* one snapshot serves an evaluation and a checkpoint that are due */
	if ((!eval_due && !s->ckpt_wanted) || s->snap_wanted)
		return;
	for (uint32_t i = 0; i < e->n; i++)
		if (!server_is_lost(s, i) && enqueue(s, i, MSG_SNAPREQ, s->round + 2, 0, t))
			return;	/* a full queue: the next pass asks again */
	s->snap_wanted = 1;
	if (eval_due)
		s->next_eval = t + c->eval_interval_s;
}

static int loscar_sharded_lost(struct server *s, uint32_t wk, double t)
{
	(void)wk;
	return s->snap_wanted ? loscar_snap_done(s, t) : 0;
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
	if (c->round_steps > (1u << 30))
		return algo_err(-EINVAL, "%u steps per round: use 1 .. 2^30 (0: rounds by time)",
				c->round_steps);
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
	.sharded_ops = &method_loscar_sharded,
	.server_init = loscar_server_init,
	.server_fini = server_rows_fini,
	.server_msg = loscar_server_msg,
	.server_lost = loscar_server_lost,
	.server_finish = loscar_server_finish,
};

/* --averaging sharded: the same workers; the shards' owners average */
const struct hetsgd_method_ops method_loscar_sharded = {
	.id = HETSGD_METHOD_LOSCAR,
	.name = "loscar",
	.to_server = MSG_BIT(MSG_TICK) | MSG_BIT(MSG_SNAP) | MSG_BIT(MSG_FINAL),
	.to_worker = MSG_BIT(MSG_PART) | MSG_BIT(MSG_SHARD) | MSG_BIT(MSG_NOTICE) |
		     MSG_BIT(MSG_SNAPREQ),
	.delayable = 1,
	.sharded = 1,
	.snapshots = 1,
	.check = loscar_check,
	.coords = loscar_coords,
	.quiet_s = loscar_quiet_s,
	.worker_loop = loscar_worker_loop,
	.worker_finish = loscar_worker_finish,
	.server_msg = loscar_sharded_msg,
	.server_tick = loscar_sharded_tick,
	.server_lost = loscar_sharded_lost,
	.server_finish = loscar_server_finish,
};
