/*
 * The server's checkpoints (server.h; the file format is checkpoint.c):
 * what it hands to on_checkpoint and when, and how it starts again from
 * one.
 *
 * When: every checkpoint_every_s seconds of training, and once more when
 * the run stops (server_run).  A method whose server holds the model
 * (ASGD, SYNC, MALENIA, RINGLEADER) is checkpointed on the spot, at its
 * current version; a round in progress (SYNC's sum, the gradient table)
 * is not kept, and its gradients are computed again after a resume.
 * LOSCAR's server holds no model while training, only averages of K
 * coordinates: its checkpoint asks the workers for a snapshot after the
 * next round's merge, and the average of the snapshots is the model
 * every worker restarts from, at the round after it.  (The workers' own
 * models would keep each one's progress since the merge, but they live
 * on every node; the average is one file in the run's folder, and it is
 * exactly the state LOSCAR reaches after a round with K = d.)
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pserver.h"
#include "server.h"

void ckpt_resume(struct server *s)
{
	struct eng *e = s->e;
	const struct hetsgd_ckpt *ck = e->cfg->resume;
	double now = now_s();

	if (!ck)
		return;
	s->version = ck->updates;
	s->updates = ck->updates;
	s->round = ck->round;
	s->dropped = ck->dropped;
	for (uint32_t i = 0; i < e->n; i++) {
		const struct hetsgd_ckpt_worker *w = &ck->workers[i];

		s->steps[i] = w->steps;
		s->compute[i] = w->compute_s;
		s->idle[i] = w->idle_s;
		s->wall[i] = w->elapsed_s;
		/* the estimate goes on from the one the run had, as one report */
		if (w->tau_est > 0)
			(void)hetsgd_tau_report(s->tau, i, w->tau_est, now);
	}
}

int ckpt_take(struct server *s, const float *x, const uint64_t *steps, uint64_t round,
	      double t)
{
	struct eng *e = s->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	struct hetsgd_ckpt ck;
	int ret;

	memset(&ck, 0, sizeof(ck));
	ck.workers = calloc(e->n, sizeof(*ck.workers));
	if (!ck.workers)
		return algo_err(-ENOMEM, "out of memory for a checkpoint");
	ck.method = (uint32_t)c->method;
	ck.n = e->n;
	ck.d = e->d;
	ck.t = train_time(e, t);
	ck.updates = s->updates;
	ck.round = round;
	ck.dropped = s->dropped;
	ck.x = (float *)x;
	for (uint32_t i = 0; i < e->n; i++) {
		struct hetsgd_ckpt_worker *w = &ck.workers[i];
		const struct hetsgd_worker_stats *f = &s->ws[i];
		int done = s->wk_state[i] == WK_DONE;

		/* a worker's own figures once its statistics came; else the last heard */
		w->steps = steps && !server_is_lost(s, i) ? steps[i] : done ? f->steps : s->steps[i];
		/* LOSCAR: every live worker merged the rounds before round */
		w->rounds = done ? f->rounds : e->ops->snapshots ? round : 0;
		w->overlap_steps = done ? f->overlap_steps : 0;
		w->dropped = done ? f->dropped : 0;
		w->overruns = done ? f->overruns : 0;
		w->compute_s = s->compute[i];
		w->idle_s = s->idle[i];
		w->elapsed_s = s->wall[i];
		w->tau_est = hetsgd_tau_get(s->tau, i);
		ck.grads += w->steps;
	}
	ret = c->on_checkpoint(c->on_checkpoint_arg, &ck);
	free(ck.workers);
	if (ret)
		return algo_err(ret < 0 ? ret : -EIO, "checkpoint at %.1f s: %s", ck.t, hetsgd_errmsg());
	s->nckpt++;
	s->ckpt_t = ck.t;
	return 0;
}

int ckpt_tick(struct server *s, double t)
{
	const struct hetsgd_engine_cfg *c = s->e->cfg;

	if (!(c->checkpoint_every_s > 0) || !c->on_checkpoint || t < s->next_ckpt)
		return 0;
	s->next_ckpt = t + c->checkpoint_every_s;
	if (s->e->ops->snapshots) {
		s->ckpt_wanted = 1;	/* with the next round's snapshot */
		return 0;
	}
	if (s->ps)	/* a sharded parameter server gathers the model first */
		return ps0_pull(s, PULL_CKPT);
	return ckpt_take(s, s->x, NULL, s->version, t);
}

int ckpt_from_snapshot(struct server *s, double t)
{
	struct eng *e = s->e;
	double scale;
	float *x;
	int ret;

	if (!s->ckpt_wanted || !s->snap_count)
		return 0;
	s->ckpt_wanted = 0;
	scale = 1.0 / s->snap_count;
	x = malloc(e->d * sizeof(float));
	if (!x)
		return algo_err(-ENOMEM, "out of memory for a checkpoint of %zu values", e->d);
	/* the average as the evaluation computes it (eval_submit) */
	for (size_t j = 0; j < e->d; j++)
		x[j] = (float)(s->snap[j] * scale);
	ret = ckpt_take(s, x, s->snap_steps, s->snap_round, t);
	free(x);
	return ret;
}
