/*
 * The simulator (hetsgd_sim.h): the engine's methods as a discrete-event
 * simulation.  The math is the engine's own code (policies, tau estimate,
 * LOSCAR merge, masks, profiles, objectives, the worker's sampler and SGD
 * step); what is re-expressed here is the protocol's timing: when each
 * worker computes, sends and receives, on a simulated clock, with the
 * network model of hetsgd_sim.h.  Events sit in a binary heap ordered by
 * (time, insertion), so that equal times are handled in a fixed order and
 * a run is reproducible bit for bit.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algo_priv.h"
#include "hetsgd_sim.h"

/* ---- names ---- */

int hetsgd_sim_averaging_parse(const char *name, enum hetsgd_sim_averaging *avg)
{
	if (name && !strcmp(name, "server"))
		*avg = HETSGD_SIM_AVG_SERVER;
	else if (name && !strcmp(name, "sharded"))
		*avg = HETSGD_SIM_AVG_SHARDED;
	else
		return algo_err(-EINVAL, "unknown averaging '%s': use server or sharded",
				name ? name : "(null)");
	return 0;
}

const char *hetsgd_sim_averaging_name(enum hetsgd_sim_averaging avg)
{
	return avg == HETSGD_SIM_AVG_SHARDED ? "sharded" : "server";
}

/* ---- the event queue: a binary heap ---- */

enum ev_kind {
	EV_STEP = 1,	/* a worker's gradient is computed */
	EV_SRV_RECV,	/* a worker's message reaches the server */
	EV_SHARDED,	/* the reduce-scatter of a sharded average is complete */
	EV_WRK_RECV,	/* a model or an average reaches a worker */
	EV_EVAL,	/* an evaluation of the server's model is due */
};

struct ev {
	double t;
	uint64_t seq;
	uint32_t worker;
	uint32_t kind;
};

struct heap {
	struct ev *a;
	size_t n, cap;
};

static int ev_before(const struct ev *x, const struct ev *y)
{
	return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static int heap_push(struct heap *h, struct ev e)
{
	size_t i;

	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 256;
		struct ev *a = realloc(h->a, cap * sizeof(*a));

		if (!a)
			return algo_err(-ENOMEM, "simulator: out of memory for %zu events", cap);
		h->a = a;
		h->cap = cap;
	}
	i = h->n++;
	while (i > 0 && ev_before(&e, &h->a[(i - 1) / 2])) {
		h->a[i] = h->a[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->a[i] = e;
	return 0;
}

static struct ev heap_pop(struct heap *h)
{
	struct ev top = h->a[0], last = h->a[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && ev_before(&h->a[c + 1], &h->a[c]))
			c++;
		if (!ev_before(&h->a[c], &last))
			break;
		h->a[i] = h->a[c];
		i = c;
	}
	if (h->n)
		h->a[i] = last;
	return top;
}

/* ---- state ---- */

struct swk {
	float *x;		/* the model it computes at */
	float *g;		/* its last gradient: the message in flight (ASGD, sync) */
	float *y;		/* LOSCAR: the round's snapshot x[S] */
	uint64_t rng;		/* the engine's worker stream */
	double tau_mean;
	uint64_t ver;		/* model version (ASGD, sync) or LOSCAR round */
	uint64_t msg_ver;	/* the version of the gradient in flight */
	double msg_tau;		/* its period, as the engine's header carries it */
	double last_send;
	double step_t0;
	double wait_from;
	int waiting, inflight, has_reply, snap_due;
	double round_start;
	uint64_t local;		/* LOSCAR: steps of this round before it went
				 * out (--round-steps counts these) */
	double up_free, dn_free;	/* its link, each way */
	double parts_in;	/* --servers: its gradient's last part at a shard server */
	/* Malenia: the gradient in flight, the model that landed */
	float *out, *in;
	uint64_t in_ver;
	int msg_inflight, post_pending, model_inflight;
	struct hetsgd_worker_stats st;
};

struct sim {
	const struct hetsgd_engine_cfg *c;
	struct hetsgd_sim_net net;
	uint32_t n, k;
	size_t d;
	const struct hetsgd_sim_io *io;
	hetsgd_sim_trace_fn trace;
	void *trace_arg;
	struct heap h;
	uint64_t seq;
	struct swk *w;
	uint32_t *bidx;
	float *x;		/* the server's model (ASGD, sync) */
	float *acc;		/* sync: the round's gradient sum; LOSCAR: its block sum */
	float *mbar;		/* LOSCAR: the round's average */
	uint32_t got;
	uint64_t version, round, updates, dropped, grads;
	uint64_t grads_in;	/* gradients the server received (ASGD, sync) */
	int avg_snap;		/* the average just sent asks for a snapshot */
	struct hetsgd_grad_table table;	/* Malenia, Ringleader */
	int have_table;
	struct hetsgd_tau_est *tau;
	double tau_max, tau_max_next;	/* the cached hetsgd_tau_max (tau_max()) */
	struct hetsgd_mask mask[2];	/* LOSCAR: rounds r and r + 1 */
	uint64_t mask_round[2];
	int mask_ok[2];
	uint64_t mask_seed;
	double srv_in_free, srv_out_free;
	/* --servers S > 1 (ASGD, pserver.h): shard j's server link, each way
	 * (j = 0 is rank 0's, srv_*_free), and its bytes */
	uint32_t ns;
	double *ps_in_free, *ps_out_free, *ps_step;	/* ps_step: scratch */
	struct hetsgd_server_stats *ps;
	double sh_last;		/* sharded: the last block's uplink end */
	double next_eval;
	float *snap;		/* LOSCAR: the sum of the workers' snapshots */
	uint32_t snap_count;
	/* evaluation */
	uint32_t *eidx;
	float *eg, *wg, *ex;
	double *wloss;
	struct hetsgd_eval_point *pts;
	size_t npts, cappts;
	int stop;
	double t_stop;
	char why[64];
};

static double xfer(double bytes, double rate)
{
	return rate > 0 ? bytes / rate : 0.0;
}

static double msg_bytes(const struct sim *s, double values)
{
	return (double)s->net.header_bytes + values * s->net.value_bytes;
}

static void tr(struct sim *s, enum hetsgd_sim_trace_kind kind, double t, uint32_t wk,
	       uint64_t round, uint64_t delay, double gamma, double bytes)
{
	struct hetsgd_sim_trace e = { .kind = kind, .t = t, .worker = wk, .round = round,
				      .delay = delay, .gamma = gamma, .bytes = bytes };

	if (s->trace)
		s->trace(s->trace_arg, &e);
}

static int push(struct sim *s, enum ev_kind kind, double t, uint32_t wk)
{
	struct ev e = { .t = t, .seq = s->seq++, .worker = wk, .kind = kind };

	return heap_push(&s->h, e);
}

/* ---- the network ---- */

/*
 * Worker i to the server: the delivery time.  Each link is busy B / rate
 * per message, in the order the messages are sent; a message is in when
 * both links have carried it (cut-through), plus the latency.
 */
static double net_to_server(struct sim *s, uint32_t i, double t, double bytes)
{
	struct swk *w = &s->w[i];
	double d0 = fmax(t, w->up_free), up = d0 + xfer(bytes, s->net.link_Bps);
	double in = fmax(d0, s->srv_in_free) + xfer(bytes, s->net.server_Bps);

	w->up_free = up;
	s->srv_in_free = in;
	w->st.sent++;
	w->st.bytes_sent += (uint64_t)bytes;
	return fmax(up, in) + s->net.latency_s;
}

/* Shard j's length, and a part of worker i's gradient to shard server
 * j (j >= 1) sent at t: the delivery time. */
static uint32_t ps_len(const struct sim *s, uint32_t j)
{
	return (uint32_t)((uint64_t)(j + 1) * s->d / s->ns - (uint64_t)j * s->d / s->ns);
}

static double ps_part_up(struct sim *s, uint32_t i, uint32_t j, double t)
{
	struct swk *w = &s->w[i];
	double bytes = msg_bytes(s, (double)ps_len(s, j));
	double d0 = fmax(t, w->up_free), up = d0 + xfer(bytes, s->net.link_Bps);
	double in = fmax(d0, s->ps_in_free[j]) + xfer(bytes, s->net.server_Bps);

	w->up_free = up;
	s->ps_in_free[j] = in;
	s->ps[j].bytes_recv += (uint64_t)bytes;
	w->st.sent++;
	w->st.bytes_sent += (uint64_t)bytes;
	return fmax(up, in) + s->net.latency_s;
}

/*
 * ASGD over S shard servers: rank 0 decided on worker i's gradient at t.
 * It writes a STEP (the engine's header and 24 bytes) to each shard
 * server, then shard 0 of the model to the worker, on its own link (as
 * server.c's flush: STEPs before replies); server j writes its shard once
 * the STEP and the worker's part are in.  The worker's downlink takes
 * the S shards in turn.  Returns when the last is in.
 */
static double ps_reply(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];
	double step = (double)s->net.header_bytes + 24.0, last = 0, *st = s->ps_step;

	/* the STEPs first: small, and each shard server waits for its own */
	for (uint32_t j = 1; j < s->ns; j++) {
		s->srv_out_free = fmax(t, s->srv_out_free) + xfer(step, s->net.server_Bps);
		st[j] = s->srv_out_free + s->net.latency_s;
		s->ps[0].bytes_sent += (uint64_t)step;
		s->ps[j].bytes_recv += (uint64_t)step;
	}
	for (uint32_t j = 0; j < s->ns; j++) {
		double bytes = msg_bytes(s, (double)ps_len(s, j)), s0, out, dn;

		if (j == 0) {
			s0 = fmax(t, s->srv_out_free);
			out = s0 + xfer(bytes, s->net.server_Bps);
			s->srv_out_free = out;
		} else {
			s0 = fmax(fmax(st[j], w->parts_in), s->ps_out_free[j]);
			out = s0 + xfer(bytes, s->net.server_Bps);
			s->ps_out_free[j] = out;
		}
		s->ps[j].bytes_sent += (uint64_t)bytes;
		dn = fmax(s0, w->dn_free) + xfer(bytes, s->net.link_Bps);
		w->dn_free = dn;
		w->st.bytes_recv += (uint64_t)bytes;
		last = fmax(last, fmax(out, dn) + s->net.latency_s);
	}
	return last;
}

/* The server to worker i, sent at t: the delivery time. */
static double net_to_worker(struct sim *s, uint32_t i, double t, double bytes)
{
	struct swk *w = &s->w[i];
	double s0 = fmax(t, s->srv_out_free), out = s0 + xfer(bytes, s->net.server_Bps);
	double dn = fmax(s0, w->dn_free) + xfer(bytes, s->net.link_Bps);

	s->srv_out_free = out;
	w->dn_free = dn;
	w->st.bytes_recv += (uint64_t)bytes;
	return fmax(out, dn) + s->net.latency_s;
}

/*
 * Bytes one rank writes in one phase of a sharded average of v values:
 * n - 1 shards, each a header and ceil(v' / n) floats of the costed model,
 * v' = v value_bytes / 4 (the values v stand for when --model-bytes scales
 * a small model up: its shards are split in the big model's floats).
 */
static double shard_phase_bytes(const struct sim *s, double v)
{
	double per = ceil(v * s->net.value_bytes / 4.0 / s->n) * 4.0;

	return (double)(s->n - 1) * ((double)s->net.header_bytes + per);
}

/* Worker i wrote its shards of v values at t (reduce-scatter). */
static void net_sharded_send(struct sim *s, uint32_t i, double t, double v)
{
	struct swk *w = &s->w[i];
	double b = shard_phase_bytes(s, v), d0 = fmax(t, w->up_free);

	w->up_free = d0 + xfer(b, s->net.link_Bps);
	if (w->up_free > s->sh_last)
		s->sh_last = w->up_free;
	w->st.sent += s->n - 1;
	w->st.bytes_sent += (uint64_t)b;
}

/* ---- evaluation (eval.c's evaluate, on the simulator's buffers) ---- */

static int loss_on(struct sim *s, const float *x, const struct hetsgd_dataset *ds, float *loss,
		   float *grad)
{
	struct hetsgd_objective *obj = s->io->eval_obj;
	size_t m = ds ? (size_t)ds->n : 0;

	for (size_t i = 0; i < m; i++)
		s->eidx[i] = (uint32_t)i;
	return grad ? hetsgd_objective_loss_grad(obj, x, ds, ds ? s->eidx : NULL, m, loss, grad)
		    : hetsgd_objective_loss(obj, x, ds, ds ? s->eidx : NULL, m, loss);
}

static int evaluate(struct sim *s, const float *x, struct hetsgd_eval_point *pt)
{
	const struct hetsgd_sim_io *io = s->io;
	struct hetsgd_objective *obj = io->eval_obj;
	double nrm = 0;
	float loss;
	int ret;

	pt->loss = pt->gnorm = pt->acc = pt->pooled_loss = NAN;
	pt->worker_loss = NULL;
	pt->x = x;
	if (!obj)
		return 0;
	if (io->worker_eval && obj->kind != HETSGD_OBJ_QUAD) {
		double sum = 0;

		memset(s->eg, 0, s->d * sizeof(float));
		for (uint32_t i = 0; i < s->n; i++) {
			float l;

			ret = loss_on(s, x, io->worker_eval[i], &l, s->wg);
			if (ret)
				return ret;
			s->wloss[i] = l;
			sum += l;
			for (size_t j = 0; j < s->d; j++)
				s->eg[j] += s->wg[j] / (float)s->n;
		}
		pt->loss = sum / s->n;
		pt->worker_loss = s->wloss;
		if (io->eval) {
			ret = loss_on(s, x, io->eval, &loss, NULL);
			if (ret)
				return ret;
			pt->pooled_loss = loss;
		}
	} else if (io->eval || obj->kind == HETSGD_OBJ_QUAD) {
		ret = loss_on(s, x, obj->kind == HETSGD_OBJ_QUAD ? NULL : io->eval, &loss, s->eg);
		if (ret)
			return ret;
		pt->loss = loss;
	} else {
		goto acc;
	}
	for (size_t j = 0; j < s->d; j++)
		nrm += (double)s->eg[j] * s->eg[j];
	pt->gnorm = sqrt(nrm);
acc:
	if (io->test && obj->nclass)
		return hetsgd_objective_accuracy(obj, x, io->test, &pt->acc);
	return 0;
}

static double idle_share(const struct sim *s, double t)
{
	double idle = 0;

	if (!(t > 0))
		return 0.0;
	for (uint32_t i = 0; i < s->n; i++)
		idle += s->w[i].st.idle_s + (s->w[i].waiting ? t - s->w[i].wait_from : 0.0);
	return idle / (t * s->n);
}

static void stop_at(struct sim *s, double t, const char *why)
{
	if (s->stop)
		return;
	s->stop = 1;
	s->t_stop = t;
	snprintf(s->why, sizeof(s->why), "%s", why);
}

/* Evaluate x at t (scaled: LOSCAR's snapshot sum), record and check the targets. */
static int record(struct sim *s, const float *x, double scale, double t, int final)
{
	const struct hetsgd_engine_cfg *c = s->c;
	struct hetsgd_eval_point pt = { .t = t, .grads = s->grads, .updates = s->updates,
					.final = final };
	int ret;

	for (size_t j = 0; j < s->d; j++)
		s->ex[j] = (float)(x[j] * scale);
	pt.idle_share = idle_share(s, t);
	ret = evaluate(s, s->ex, &pt);
	if (ret)
		return ret;
	if (s->npts == s->cappts) {
		size_t cap = s->cappts ? 2 * s->cappts : 64;
		struct hetsgd_eval_point *p = realloc(s->pts, cap * sizeof(*p));

		if (!p)
			return algo_err(-ENOMEM, "out of memory for evaluation points");
		s->pts = p;
		s->cappts = cap;
	}
	if (c->on_eval)
		c->on_eval(c->on_eval_arg, &pt);
	pt.x = NULL;
	pt.worker_loss = NULL;
	s->pts[s->npts++] = pt;
	if (!final && c->target_loss > 0 && pt.loss <= c->target_loss)
		stop_at(s, t, "target loss");
	else if (!final && c->target_acc > 0 && pt.acc >= c->target_acc)
		stop_at(s, t, "target accuracy");
	return 0;
}

/* ---- workers ---- */

static void budget_reached(struct sim *s, uint64_t grads, double t)
{
	if (s->c->budget_grads && grads >= s->c->budget_grads)
		stop_at(s, t, "gradient budget");
}

static int start_step(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];

	w->step_t0 = t;
	double dt = hetsgd_profile_step(&s->c->profile, w->tau_mean, i, w->st.steps);

	/* a padded step overshoots; an overrun one takes its compute time */
	dt = dt > s->net.step_floor_s ? dt + s->net.step_extra_s : s->net.step_floor_s;
	return push(s, EV_STEP, t + dt, i);
}

/* worker_grad's computation: a batch from the worker's stream, g at x. */
static int worker_grad(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];
	struct hetsgd_objective *obj = s->io->obj[i];
	int quad = obj->kind == HETSGD_OBJ_QUAD;
	uint32_t m = quad ? 0 : s->c->batch;
	int ret;

	if (m)
		draw_batch(&w->rng, s->io->data[i]->n, s->bidx, m);
	ret = hetsgd_objective_loss_grad(obj, w->x, quad ? NULL : s->io->data[i], s->bidx, m, NULL, w->g);
	if (ret)
		return ret;
	w->st.steps++;
	w->st.compute_s += t - w->step_t0;
	s->grads++;
	/* LOSCAR's steps count where they are taken; a gradient sent to the
	 * server counts once it is applied (budget_reached) */
	if (s->c->method == HETSGD_METHOD_LOSCAR)
		budget_reached(s, s->grads, t);
	return 0;
}

static void start_wait(struct swk *w, double t)
{
	w->waiting = 1;
	w->wait_from = t;
}

static void end_wait(struct swk *w, double t)
{
	if (w->waiting)
		w->st.idle_s += t - w->wait_from;
	w->waiting = 0;
}

/* The mask of round r (two rounds are live at most). */
static int mask_of(struct sim *s, uint64_t r, const struct hetsgd_mask **m)
{
	int slot = (int)(r & 1), ret;

	if (!s->mask_ok[slot] || s->mask_round[slot] != r) {
		ret = hetsgd_mask_draw(&s->mask[slot], s->mask_seed, r);
		if (ret)
			return algo_err(ret, "drawing the mask of round %llu: %s", (unsigned long long)r,
					hetsgd_errmsg());
		s->mask_ok[slot] = 1;
		s->mask_round[slot] = r;
	}
	*m = &s->mask[slot];
	return 0;
}

static int sharded(const struct sim *s)
{
	return s->net.averaging == HETSGD_SIM_AVG_SHARDED;
}

/* Sharded: every block of the round is written; the reduce-scatter ends. */
static int sharded_all_sent(struct sim *s)
{
	return push(s, EV_SHARDED, s->sh_last + s->net.latency_s, s->n);
}

/* ASGD, sync: the gradient just computed goes out; the worker waits. */
static int post_gradient(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];
	double b = msg_bytes(s, (double)s->d);

	w->msg_tau = t - w->last_send;
	w->last_send = t;
	w->msg_ver = w->ver;
	start_wait(w, t);
	if (s->c->method == HETSGD_METHOD_SYNC && sharded(s)) {
		for (size_t j = 0; j < s->d; j++)
			s->acc[j] -= -1.0f * w->g[j];	/* block_axpy(acc, g, -1) */
		net_sharded_send(s, i, t, (double)s->d);
		tr(s, HETSGD_SIM_TR_SEND, t, i, w->ver, 0, 0, shard_phase_bytes(s, (double)s->d));
		return ++s->got == s->n ? sharded_all_sent(s) : 0;
	}
	if (s->ns > 1) {
		/* --servers: a part to each shard server, shard 0 to rank 0 last */
		w->parts_in = 0;
		for (uint32_t j = 1; j < s->ns; j++)
			w->parts_in = fmax(w->parts_in, ps_part_up(s, i, j, t));
		b = msg_bytes(s, (double)ps_len(s, 0));
		s->ps[0].bytes_recv += (uint64_t)b;
	}
	tr(s, HETSGD_SIM_TR_SEND, t, i, w->ver, 0, 0, b);
	return push(s, EV_SRV_RECV, net_to_server(s, i, t, b), i);
}

/* LOSCAR: round r's snapshot y = x[S] goes out. */
static int loscar_send(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];
	const struct hetsgd_mask *m;
	double b = msg_bytes(s, (double)s->k);
	int ret = mask_of(s, w->ver, &m);

	if (ret)
		return ret;
	for (uint32_t j = 0; j < s->k; j++)
		w->y[j] = w->x[m->idx[j]];
	w->inflight = 1;
	w->last_send = t;
	if (sharded(s)) {
		for (uint32_t j = 0; j < s->k; j++)
			s->acc[j] += w->y[j];
		net_sharded_send(s, i, t, (double)s->k);
		tr(s, HETSGD_SIM_TR_SEND, t, i, w->ver, 0, 0, shard_phase_bytes(s, (double)s->k));
		return ++s->got == s->n ? sharded_all_sent(s) : 0;
	}
	tr(s, HETSGD_SIM_TR_SEND, t, i, w->ver, 0, 0, b);
	return push(s, EV_SRV_RECV, net_to_server(s, i, t, b), i);
}

/* LOSCAR's worker loop from the top, at t (method_loscar.c's order). */
static int loscar_continue(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];
	const struct hetsgd_mask *m;
	int ret;

	for (;;) {
		/* method_loscar.c's test: round_steps local steps, or round_s */
		if (!w->inflight && (s->c->round_steps ? w->local >= s->c->round_steps :
							  t - w->round_start >= s->c->round_s)) {
			ret = loscar_send(s, i, t);
			if (ret)
				return ret;
		}
		if (w->inflight) {
			if (w->has_reply) {
				ret = mask_of(s, w->ver, &m);
				if (ret)
					return ret;
				hetsgd_loscar_merge(s->c->merge, w->x, m->idx, s->k, w->y, s->mbar);
				tr(s, HETSGD_SIM_TR_MERGE, t, i, w->ver, 0, 0, 0);
				w->has_reply = 0;
				w->inflight = 0;
				w->ver++;
				w->st.rounds++;
				w->round_start = t;
				w->local = 0;
				if (w->snap_due) {
					w->snap_due = 0;
					for (size_t j = 0; j < s->d; j++)
						s->snap[j] += w->x[j];
					if (++s->snap_count == s->n) {
						ret = record(s, s->snap, 1.0 / s->n, t, 0);
						memset(s->snap, 0, s->d * sizeof(float));
						s->snap_count = 0;
						if (ret)
							return ret;
					}
				}
				continue;
			}
			if (!s->c->overlap) {
				start_wait(w, t);
				return 0;
			}
		}
		return start_step(s, i, t);
	}
}

/*
 * Malenia's streaming worker (method_malenia.c's loop) after a gradient
 * (fresh) or once its previous gradient is in (!fresh): a newer model
 * that landed meanwhile drops the gradient; else it goes out when the
 * previous one is in (the engine waits until it is written); the next
 * gradient is computed at the newest model that landed.
 */
static int malenia_continue(struct sim *s, uint32_t i, double t, int fresh)
{
	struct swk *w = &s->w[i];
	double b = msg_bytes(s, (double)s->d);

	if (fresh && w->has_reply) {
		w->st.dropped++;
	} else {
		if (w->msg_inflight) {
			w->post_pending = 1;
			start_wait(w, t);
			return 0;
		}
		end_wait(w, t);
		w->post_pending = 0;
		memcpy(w->out, w->g, s->d * sizeof(float));
		w->msg_tau = t - w->last_send;
		w->last_send = t;
		w->msg_ver = w->ver;
		w->msg_inflight = 1;
		tr(s, HETSGD_SIM_TR_SEND, t, i, w->ver, 0, 0, b);
		if (push(s, EV_SRV_RECV, net_to_server(s, i, t, b), i))
			return -ENOMEM;
	}
	if (w->has_reply) {
		memcpy(w->x, w->in, s->d * sizeof(float));
		w->ver = w->in_ver;
		w->has_reply = 0;
	}
	return start_step(s, i, t);
}

static int on_step(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];
	int ret = worker_grad(s, i, t);

	if (ret)
		return ret;
	if (s->c->method == HETSGD_METHOD_MALENIA)
		return malenia_continue(s, i, t, 1);
	if (s->c->method != HETSGD_METHOD_LOSCAR)
		return post_gradient(s, i, t);
	sgd_step(w->x, w->g, s->c->gamma, s->d);
	if (w->inflight)
		w->st.overlap_steps++;
	else
		w->local++;
	return loscar_continue(s, i, t);
}

static int on_worker_recv(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];

	if (s->c->method == HETSGD_METHOD_MALENIA) {
		/* the freshest model goes out (one MODEL queued per worker) */
		w->model_inflight = 0;
		memcpy(w->in, s->x, s->d * sizeof(float));
		w->in_ver = s->version;
		w->has_reply = 1;
		tr(s, HETSGD_SIM_TR_REPLY, t, i, w->in_ver, 0, 0, 0);
		return 0;
	}
	tr(s, HETSGD_SIM_TR_REPLY, t, i, w->ver, 0, 0, 0);
	if (s->c->method != HETSGD_METHOD_LOSCAR) {
		end_wait(w, t);
		return start_step(s, i, t);
	}
	w->has_reply = 1;
	w->snap_due = s->avg_snap;
	if (w->waiting) {
		end_wait(w, t);
		return loscar_continue(s, i, t);
	}
	return 0;
}

/* ---- the server ---- */

/* The server's model goes to worker i, sent at t (copied now: ASGD's
 * server steps on while it travels). */
static int reply_model(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];

	memcpy(w->x, s->x, s->d * sizeof(float));
	w->ver = s->version;
	if (s->ns > 1)	/* every shard steps in rank 0's order: this model */
		return push(s, EV_WRK_RECV, ps_reply(s, i, t), i);
	return push(s, EV_WRK_RECV, net_to_worker(s, i, t, msg_bytes(s, (double)s->d)), i);
}

/*
 * hetsgd_tau_max, an O(n) scan, done only when its value may have moved:
 * the reporting worker's estimate rose above it, or the worker that held
 * it went down, or a quarter of the stale time passed (a worker may have
 * gone stale; none does here, every worker keeps sending).  Equal to a
 * scan at every gradient while no worker goes stale.
 */
static double tau_max(struct sim *s, double before, double after, double t)
{
	if (after > s->tau_max)
		s->tau_max = after;
	if ((before >= s->tau_max && after < before) || t >= s->tau_max_next) {
		s->tau_max = hetsgd_tau_max(s->tau, t);
		s->tau_max_next = t + 0.25 * (s->c->tau_stale_s > 0 ? s->c->tau_stale_s : 2.0);
	}
	return s->tau_max;
}

static int asgd_recv(struct sim *s, uint32_t i, double t)
{
	const struct hetsgd_engine_cfg *c = s->c;
	struct swk *w = &s->w[i];
	struct hetsgd_policy_in in = { .gamma = c->gamma, .n = s->n, .R = c->ringmaster_r };
	double g_i, before = hetsgd_tau_get(s->tau, i);
	int ret = hetsgd_tau_report(s->tau, i, w->msg_tau, t);

	if (ret)
		return ret;
	in.delay = s->version - w->msg_ver;
	in.tau_i = hetsgd_tau_get(s->tau, i);
	/* only Rescaled reads tau_max */
	in.tau_max = c->policy == HETSGD_POLICY_RESCALED ? tau_max(s, before, in.tau_i, t) : 0.0;
	g_i = hetsgd_policy_gamma(c->policy, &in);
	if (g_i == 0.0) {
		s->dropped++;
		w->st.dropped++;
		tr(s, HETSGD_SIM_TR_DROP, t, i, s->version, in.delay, 0, 0);
	} else {
		sgd_step(s->x, w->g, (float)g_i, s->d);
		s->version++;
		s->updates++;
		tr(s, HETSGD_SIM_TR_UPDATE, t, i, s->version, in.delay, g_i, 0);
	}
	budget_reached(s, ++s->grads_in, t);
	return reply_model(s, i, t);
}

/* Ringleader: every gradient into the table; a full round steps; reply. */
static int ringleader_recv(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];

	if (hetsgd_ringleader_admit(w->msg_ver, s->version) < 0)
		return algo_err(-EPROTO, "simulator: worker %u's gradient at version %llu reached a Ringleader server at %llu (a bug of the simulator)",
				i, (unsigned long long)w->msg_ver, (unsigned long long)s->version);
	(void)hetsgd_tau_report(s->tau, i, w->msg_tau, t);	/* for the statistics */
	hetsgd_grad_table_add(&s->table, i, w->g);
	if (hetsgd_ringleader_ready(&s->table)) {
		hetsgd_grad_table_step(&s->table, s->x, s->c->gamma);
		hetsgd_grad_table_clear(&s->table);
		s->version++;
		s->updates++;
		tr(s, HETSGD_SIM_TR_UPDATE, t, i, s->version, s->version - 1 - w->msg_ver, s->c->gamma, 0);
	}
	budget_reached(s, ++s->grads_in, t);
	return reply_model(s, i, t);
}

/* Malenia: a gradient at x_k into the table, an older one dropped; a
 * ready table steps and x goes to every worker without a MODEL in flight. */
static int malenia_recv(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];
	int ret = hetsgd_malenia_admit(w->msg_ver, s->version);

	w->msg_inflight = 0;
	if (ret < 0)
		return ret;
	(void)hetsgd_tau_report(s->tau, i, w->msg_tau, t);	/* for the statistics */
	if (!ret) {
		s->dropped++;
		tr(s, HETSGD_SIM_TR_DROP, t, i, s->version, s->version - w->msg_ver, 0, 0);
	} else {
		hetsgd_grad_table_add(&s->table, i, w->out);
		if (hetsgd_malenia_ready(&s->table, s->c->malenia_s)) {
			hetsgd_grad_table_step(&s->table, s->x, s->c->gamma);
			hetsgd_grad_table_clear(&s->table);
			s->version++;
			s->updates++;
			tr(s, HETSGD_SIM_TR_UPDATE, t, s->n, s->version, 0, s->c->gamma, 0);
			for (uint32_t k = 0; k < s->n; k++) {
				if (s->w[k].model_inflight)
					continue;
				s->w[k].model_inflight = 1;
				ret = push(s, EV_WRK_RECV, net_to_worker(s, k, t, msg_bytes(s, (double)s->d)), k);
				if (ret)
					return ret;
			}
		}
	}
	budget_reached(s, ++s->grads_in, t);
	return w->post_pending ? malenia_continue(s, i, t, 0) : 0;
}

/* sync: every gradient is in; step and send x to all. */
static int sync_step(struct sim *s, double t, int shard, double t_deliver)
{
	int ret;

	sgd_step(s->x, s->acc, s->c->gamma / (float)s->n, s->d);
	memset(s->acc, 0, s->d * sizeof(float));
	s->got = 0;
	s->version++;
	s->updates++;
	tr(s, HETSGD_SIM_TR_UPDATE, t, s->n, s->version, 0, s->c->gamma, 0);
	for (uint32_t i = 0; i < s->n; i++) {
		if (shard) {
			memcpy(s->w[i].x, s->x, s->d * sizeof(float));
			s->w[i].ver = s->version;
			s->w[i].st.bytes_recv += (uint64_t)shard_phase_bytes(s, (double)s->d);
			ret = push(s, EV_WRK_RECV, t_deliver, i);
		} else {
			ret = reply_model(s, i, t);
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int sync_recv(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];

	(void)hetsgd_tau_report(s->tau, i, w->msg_tau, t);	/* for the statistics */
	for (size_t j = 0; j < s->d; j++)
		s->acc[j] -= -1.0f * w->g[j];	/* block_axpy(acc, g, -1) */
	s->grads_in++;
	if (++s->got < s->n)
		return 0;
	budget_reached(s, s->grads_in, t);
	return sync_step(s, t, 0, 0);
}

/* LOSCAR: the round's average (method_loscar.c's loscar_average), to
 * every worker: at t_deliver when sharded, else through the server's link. */
static int loscar_average(struct sim *s, double t, int shard, double t_deliver)
{
	const struct hetsgd_engine_cfg *c = s->c;
	double b = msg_bytes(s, (double)s->k);
	int ret;

	for (uint32_t j = 0; j < s->k; j++)
		s->mbar[j] = s->acc[j] / (float)s->n;
	memset(s->acc, 0, (size_t)s->k * sizeof(float));
	s->got = 0;
	s->avg_snap = 0;
	if (c->eval_interval_s > 0 && t >= s->next_eval) {
		s->avg_snap = 1;
		s->next_eval = t + c->eval_interval_s;
	}
	tr(s, HETSGD_SIM_TR_UPDATE, t, s->n, s->round, 0, 0, 0);
	for (uint32_t i = 0; i < s->n; i++) {
		if (shard) {
			s->w[i].st.bytes_recv += (uint64_t)shard_phase_bytes(s, (double)s->k);
			ret = push(s, EV_WRK_RECV, t_deliver, i);
		} else {
			ret = push(s, EV_WRK_RECV, net_to_worker(s, i, t + c->comm_delay_s, b), i);
		}
		if (ret)
			return ret;
	}
	s->round++;
	s->updates++;
	return 0;
}

static int loscar_recv(struct sim *s, uint32_t i, double t)
{
	struct swk *w = &s->w[i];

	for (uint32_t j = 0; j < s->k; j++)
		s->acc[j] += w->y[j];
	return ++s->got == s->n ? loscar_average(s, t, 0, 0) : 0;
}

static int on_server_recv(struct sim *s, uint32_t i, double t)
{
	tr(s, HETSGD_SIM_TR_ARRIVE, t, i, s->c->method == HETSGD_METHOD_LOSCAR ? s->w[i].ver : s->w[i].msg_ver, 0, 0,
	   msg_bytes(s, s->c->method == HETSGD_METHOD_LOSCAR ? (double)s->k : (double)s->d));
	switch (s->c->method) {
	case HETSGD_METHOD_ASGD:
		return asgd_recv(s, i, t);
	case HETSGD_METHOD_SYNC:
		return sync_recv(s, i, t);
	case HETSGD_METHOD_RINGLEADER:
		return ringleader_recv(s, i, t);
	case HETSGD_METHOD_MALENIA:
		return malenia_recv(s, i, t);
	default:
		return loscar_recv(s, i, t);
	}
}

/* Sharded: the reduce-scatter is done at t; the owners hold the average
 * comm_delay_s and write it back (all-gather). */
static int on_sharded(struct sim *s, double t)
{
	int loscar = s->c->method == HETSGD_METHOD_LOSCAR;
	double v = loscar ? (double)s->k : (double)s->d, t0 = t + (loscar ? s->c->comm_delay_s : 0.0);
	double ph = xfer(shard_phase_bytes(s, v), s->net.link_Bps), done;

	tr(s, HETSGD_SIM_TR_ARRIVE, t, s->n, loscar ? s->round : s->version, 0, 0, 0);
	if (!loscar) {
		s->grads_in += s->n;
		budget_reached(s, s->grads_in, t);
	}
	for (uint32_t i = 0; i < s->n; i++) {
		struct swk *w = &s->w[i];

		w->up_free = fmax(w->up_free, t0) + ph;
		w->st.sent += s->n - 1;
		w->st.bytes_sent += (uint64_t)shard_phase_bytes(s, v);
	}
	done = t0 + ph + s->net.latency_s;
	s->sh_last = 0;
	return loscar ? loscar_average(s, t, 1, done) : sync_step(s, t, 1, done);
}

/* ---- set-up and the loop ---- */

int hetsgd_sim_cfg_check(const struct hetsgd_engine_cfg *c, const struct hetsgd_sim_net *net, uint32_t n,
			 size_t d)
{
	int ret;

	if (!n || !d)
		return algo_err(-EINVAL, "simulator: need n >= 1 workers and d >= 1");
	ret = hetsgd_engine_cfg_check(c, n, d);
	if (ret)
		return ret;
	if (c->method < HETSGD_METHOD_ASGD || c->method > HETSGD_METHOD_RINGLEADER)
		return algo_err(-ENOTSUP, "the simulator runs asgd, sync, loscar, malenia and ringleader; method %d is not simulated: use hetsgd-train for it",
				(int)c->method);
	if (!(c->profile.unit_s > 0))
		return algo_err(-EINVAL, "the simulator needs compute times: a profile with a time unit > 0 (--time-unit S), whose step times are the simulated gradients' times");
	if (!(c->budget_s > 0) && !c->budget_grads)
		return algo_err(-EINVAL, "the simulator needs a budget (a time or a gradient count): a target alone may never be reached");
	if (!isfinite(net->latency_s) || net->latency_s < 0 || !isfinite(net->link_Bps) || net->link_Bps < 0 ||
	    !isfinite(net->server_Bps) || net->server_Bps < 0 || !isfinite(net->value_bytes) ||
	    net->value_bytes < 0 || !isfinite(net->step_extra_s) || net->step_extra_s < 0 ||
	    !isfinite(net->step_floor_s) || net->step_floor_s < 0)
		return algo_err(-EINVAL, "simulator: latency, bandwidths, bytes per value, the step overhead and the step floor must be finite and >= 0");
	if (net->averaging == HETSGD_SIM_AVG_SHARDED && c->method != HETSGD_METHOD_LOSCAR &&
	    c->method != HETSGD_METHOD_SYNC)
		return algo_err(-EINVAL, "sharded averaging applies to loscar and sync; %s has one server here (a sharded parameter server is not simulated): use --averaging server",
				hetsgd_method_name(c->method));
	if (net->averaging && net->averaging != HETSGD_SIM_AVG_SERVER && net->averaging != HETSGD_SIM_AVG_SHARDED)
		return algo_err(-EINVAL, "unknown averaging %d: use server or sharded", (int)net->averaging);
	return 0;
}

static int check_run(const struct hetsgd_engine_cfg *c, const struct hetsgd_sim_net *net, uint32_t n,
		     const struct hetsgd_sim_io *io)
{
	int ret;

	if (!io || !io->obj || !io->x0)
		return algo_err(-EINVAL, "simulator: need the workers' objectives and a start x0");
	ret = hetsgd_sim_cfg_check(c, net, n, io->d);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < n; i++)
		if (!io->obj[i] || io->obj[i]->d != io->d ||
		    (io->obj[i]->kind != HETSGD_OBJ_QUAD && (!io->data || !io->data[i] || !io->data[i]->n)))
			return algo_err(-EINVAL, "simulator: worker %u has no objective of d = %zu, or no data", i, io->d);
	return 0;
}

static void sim_free(struct sim *s)
{
	for (uint32_t i = 0; s->w && i < s->n; i++) {
		free(s->w[i].x);
		free(s->w[i].g);
		free(s->w[i].y);
		free(s->w[i].out);
		free(s->w[i].in);
	}
	if (s->have_table)
		hetsgd_grad_table_fini(&s->table);
	free(s->w);
	free(s->ps_in_free);
	free(s->ps_out_free);
	free(s->ps_step);
	free(s->ps);
	free(s->h.a);
	free(s->bidx);
	free(s->x);
	free(s->acc);
	free(s->mbar);
	free(s->snap);
	free(s->eidx);
	free(s->eg);
	free(s->wg);
	free(s->ex);
	free(s->wloss);
	free(s->pts);
	hetsgd_tau_destroy(s->tau);
	if (s->k) {
		hetsgd_mask_fini(&s->mask[0]);
		hetsgd_mask_fini(&s->mask[1]);
	}
}

static size_t eval_rows(const struct hetsgd_sim_io *io, uint32_t n)
{
	size_t m = io->eval ? (size_t)io->eval->n : 0;

	for (uint32_t i = 0; io->worker_eval && i < n; i++)
		if (io->worker_eval[i] && (size_t)io->worker_eval[i]->n > m)
			m = (size_t)io->worker_eval[i]->n;
	return m;
}

static int sim_init(struct sim *s, const struct hetsgd_engine_cfg *c, const struct hetsgd_sim_net *net,
		    uint32_t n, const struct hetsgd_sim_io *io)
{
	uint64_t seed = c->seed ^ 0x6d61736b5f736565ull;	/* engine.c's "mask_see" */
	int loscar = c->method == HETSGD_METHOD_LOSCAR, ret;
	size_t d = io->d;

	s->c = c;
	s->net = *net;
	if (!s->net.averaging)
		s->net.averaging = HETSGD_SIM_AVG_SERVER;
	if (!(s->net.value_bytes > 0))
		s->net.value_bytes = sizeof(float);
	if (!(s->net.server_Bps > 0))
		s->net.server_Bps = s->net.link_Bps;
	s->n = n;
	s->d = d;
	s->io = io;
	s->ns = c->servers > 1 ? c->servers : 1;
	if (s->ns > 1) {
		s->ps_in_free = calloc(s->ns, sizeof(double));
		s->ps_out_free = calloc(s->ns, sizeof(double));
		s->ps_step = calloc(s->ns, sizeof(double));
		s->ps = calloc(s->ns, sizeof(*s->ps));
		if (!s->ps_in_free || !s->ps_out_free || !s->ps_step || !s->ps)
			return algo_err(-ENOMEM, "simulator: out of memory for %u servers", s->ns);
		for (uint32_t j = 0; j < s->ns; j++) {
			s->ps[j].shard = j;
			s->ps[j].rank = j ? (int)(n + j) : 0;
			s->ps[j].lo = (uint32_t)((uint64_t)j * d / s->ns);
			s->ps[j].hi = (uint32_t)((uint64_t)(j + 1) * d / s->ns);
		}
	}
	s->k = loscar ? (c->k ? c->k : (uint32_t)d) : 0;
	s->mask_seed = splitmix64(&seed);
	s->w = calloc(n, sizeof(*s->w));
	s->bidx = malloc(((size_t)c->batch + 1) * sizeof(uint32_t));
	s->x = malloc(d * sizeof(float));
	s->acc = calloc(loscar ? s->k : d, sizeof(float));
	s->mbar = malloc(((size_t)s->k + 1) * sizeof(float));
	s->snap = calloc(d, sizeof(float));
	s->eidx = malloc((eval_rows(io, n) + 1) * sizeof(uint32_t));
	s->eg = malloc(d * sizeof(float));
	s->wg = malloc(d * sizeof(float));
	s->ex = malloc(d * sizeof(float));
	s->wloss = calloc(n, sizeof(double));
	if (!s->w || !s->bidx || !s->x || !s->acc || !s->mbar || !s->snap || !s->eidx || !s->eg ||
	    !s->wg || !s->ex || !s->wloss)
		return algo_err(-ENOMEM, "simulator: out of memory for %u workers and d = %zu", n, d);
	memcpy(s->x, io->x0, d * sizeof(float));
	ret = hetsgd_tau_create(n, c->tau_window ? c->tau_window : 8,
				c->tau_stale_s > 0 ? c->tau_stale_s : 2.0, &s->tau);
	if (ret)
		return ret;
	if (s->k) {
		ret = hetsgd_mask_init(&s->mask[0], s->k, (uint32_t)d);
		if (!ret && (ret = hetsgd_mask_init(&s->mask[1], s->k, (uint32_t)d)))
			hetsgd_mask_fini(&s->mask[0]);
		if (ret) {
			s->k = 0;
			return algo_err(ret, "mask of K = %u: %s", c->k, hetsgd_errmsg());
		}
	}
	if (c->method == HETSGD_METHOD_MALENIA || c->method == HETSGD_METHOD_RINGLEADER) {
		ret = hetsgd_grad_table_init(&s->table, n, d);
		if (ret)
			return algo_err(ret, "simulator: out of memory for the gradient table of %u x %zu", n, d);
		s->have_table = 1;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct swk *w = &s->w[i];
		int mal = c->method == HETSGD_METHOD_MALENIA;

		w->x = malloc(d * sizeof(float));
		w->g = malloc(d * sizeof(float));
		w->y = loscar ? malloc(((size_t)s->k + 1) * sizeof(float)) : NULL;
		w->out = mal ? malloc(d * sizeof(float)) : NULL;
		w->in = mal ? malloc(d * sizeof(float)) : NULL;
		if (!w->x || !w->g || (loscar && !w->y) || (mal && (!w->out || !w->in)))
			return algo_err(-ENOMEM, "simulator: out of memory for %u workers and d = %zu", n, d);
		memcpy(w->x, io->x0, d * sizeof(float));
		w->rng = worker_stream(c->seed, i);
		w->st.worker = i;
		ret = hetsgd_profile_mean(&c->profile, i, n, &w->tau_mean);
		if (ret)
			return ret;
		w->st.tau_target = w->tau_mean;
	}
	return 0;
}

static int sim_loop(struct sim *s)
{
	const struct hetsgd_engine_cfg *c = s->c;
	int loscar = c->method == HETSGD_METHOD_LOSCAR, ret = 0;

	s->next_eval = c->eval_interval_s;
	/* the starting point, as the engine's server */
	if (c->eval_interval_s > 0 || c->target_loss > 0 || c->target_acc > 0)
		ret = record(s, s->io->x0, 1.0, 0.0, 0);
	for (uint32_t i = 0; i < s->n && !ret; i++)
		ret = start_step(s, i, 0.0);
	if (!ret && !loscar && c->eval_interval_s > 0)
		ret = push(s, EV_EVAL, c->eval_interval_s, s->n);
	while (!ret && !s->stop) {
		struct ev e;

		if (!s->h.n)
			return algo_err(-EPROTO, "simulator: no event left at round %llu: a protocol deadlock (a bug of the simulator)",
					(unsigned long long)s->round);
		e = heap_pop(&s->h);
		if (c->budget_s > 0 && e.t > c->budget_s) {
			stop_at(s, c->budget_s, "time budget");
			break;
		}
		switch (e.kind) {
		case EV_STEP:
			ret = on_step(s, e.worker, e.t);
			break;
		case EV_SRV_RECV:
			ret = on_server_recv(s, e.worker, e.t);
			break;
		case EV_SHARDED:
			ret = on_sharded(s, e.t);
			break;
		case EV_WRK_RECV:
			ret = on_worker_recv(s, e.worker, e.t);
			break;
		default:	/* EV_EVAL */
			ret = record(s, s->x, 1.0, e.t, 0);
			if (!ret)
				ret = push(s, EV_EVAL, e.t + c->eval_interval_s, s->n);
			break;
		}
	}
	return ret;
}

static int sim_result(struct sim *s, const struct hetsgd_sim_net *net, struct hetsgd_engine_result *res)
{
	double t = s->t_stop;
	float *x = s->x;
	int ret;

	res->elapsed_s = t;
	res->updates = s->updates;
	res->dropped = s->dropped;
	res->nworkers = s->n;
	if (s->ps) {
		for (uint32_t j = 0; j < s->ns; j++) {
			s->ps[j].updates = s->updates;
			s->ps[j].dropped = s->dropped;
		}
		res->servers = s->ps;
		res->nservers = s->ns;
		s->ps = NULL;
	}
	res->averaging = s->net.averaging == HETSGD_SIM_AVG_SHARDED ? HETSGD_AVERAGING_SHARDED :
								      HETSGD_AVERAGING_SERVER;
	snprintf(res->stop_reason, sizeof(res->stop_reason), "%s", s->why);
	snprintf(res->provider, sizeof(res->provider),
		 "simulated: latency %g us, links %g Gb/s, server link %g Gb/s, %s averaging, %g bytes per value, step overhead %g us, step floor %g us",
		 net->latency_s * 1e6, s->net.link_Bps * 8e-9, s->net.server_Bps * 8e-9,
		 hetsgd_sim_averaging_name(s->net.averaging), s->net.value_bytes, s->net.step_extra_s * 1e6,
		 s->net.step_floor_s * 1e6);
	snprintf(res->placement, sizeof(res->placement), "simulated: one thread, no placement");
	res->workers = calloc(s->n, sizeof(*res->workers));
	if (!res->workers)
		return algo_err(-ENOMEM, "out of memory for the statistics of %u workers", s->n);
	for (uint32_t i = 0; i < s->n; i++) {
		struct swk *w = &s->w[i];

		end_wait(w, t);
		w->st.elapsed_s = t;
		w->st.tau_est = hetsgd_tau_get(s->tau, i);
		res->workers[i] = w->st;
		if (s->c->method == HETSGD_METHOD_MALENIA)
			res->dropped += w->st.dropped;	/* as the engine's result */
	}
	if (s->c->method == HETSGD_METHOD_LOSCAR) {
		/* the final model: the average of the workers' models */
		memset(s->snap, 0, s->d * sizeof(float));
		for (uint32_t i = 0; i < s->n; i++)
			for (size_t j = 0; j < s->d; j++)
				s->snap[j] += s->w[i].x[j];
		for (size_t j = 0; j < s->d; j++)
			s->snap[j] /= (float)s->n;
		x = s->snap;
	}
	ret = record(s, x, 1.0, t, 1);
	if (ret)
		return ret;
	res->grads = s->grads;
	if (s->io->x_out)
		memcpy(s->io->x_out, x, s->d * sizeof(float));
	res->points = s->pts;
	res->npoints = s->npts;
	s->pts = NULL;
	return 0;
}

int hetsgd_sim_run(const struct hetsgd_engine_cfg *cfg, const struct hetsgd_sim_net *net,
		   uint32_t n, const struct hetsgd_sim_io *io, hetsgd_sim_trace_fn trace,
		   void *trace_arg, struct hetsgd_engine_result *res)
{
	struct sim s;
	int ret;

	memset(res, 0, sizeof(*res));
	ret = check_run(cfg, net, n, io);
	if (ret)
		return ret;
	memset(&s, 0, sizeof(s));
	s.trace = trace;
	s.trace_arg = trace_arg;
	ret = sim_init(&s, cfg, net, n, io);
	if (!ret)
		ret = sim_loop(&s);
	if (!ret)
		ret = sim_result(&s, net, res);
	if (ret)	/* what sim_result moved in (workers, servers) */
		hetsgd_engine_result_free(res);
	sim_free(&s);
	return ret;
}
