/*
 * The server (server.h): its loop, the legal messages per worker state,
 * the pending sends, stop.  The method handles each block through
 * e->ops->server_msg.
 */
#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pserver.h"
#include "server.h"

static const char *const peer_state_names[WK_NSTATES] = {
	[WK_TRAINING] = "TRAINING", [WK_STOPPED] = "STOPPED", [WK_FINAL] = "FINAL",
	[WK_DONE] = "DONE", [WK_LOST] = "LOST",
};

/*
 * Which message from a worker is legal in which of its states (the
 * method narrows it further to the messages it uses: ops->to_server).
 * GRAD and ROUND that cross STOP on the wire are legal and dropped.
 */
static const uint8_t server_legal[MSG_MAX][WK_NSTATES] = {
	[MSG_GRAD] = { [WK_TRAINING] = 1, [WK_STOPPED] = 1 },
	[MSG_ROUND] = { [WK_TRAINING] = 1, [WK_STOPPED] = 1 },
	[MSG_SNAP] = { [WK_TRAINING] = 1, [WK_STOPPED] = 1 },
	[MSG_FINAL] = { [WK_STOPPED] = 1 },
	[MSG_STATS] = { [WK_STOPPED] = 1, [WK_FINAL] = 1 },
	[MSG_ABORT] = { 1, 1, 1, 1 },
	/* a STOPREQ that crosses STOP is legal and dropped */
	[MSG_STOPREQ] = { [WK_TRAINING] = 1, [WK_STOPPED] = 1 },
	/* sharded averaging: a TICK that crosses STOP is dropped; a shard of
	 * the model (SYNC) is applied until the owner's STATS */
	[MSG_TICK] = { [WK_TRAINING] = 1, [WK_STOPPED] = 1 },
	[MSG_SHARD] = { [WK_TRAINING] = 1, [WK_STOPPED] = 1 },
	/* nothing comes from a LOST worker: the transport ignores its ring */
};

uint64_t server_grads(const struct server *s)
{
	uint64_t t = 0;

	for (uint32_t i = 0; i < s->e->n; i++)
		t += s->steps[i];
	return t;
}

int server_all_live(const struct server *s, const uint8_t *flag)
{
	for (uint32_t i = 0; i < s->e->n; i++)
		if (!flag[i] && s->wk_state[i] != WK_LOST)
			return 0;
	return 1;
}

/* STOPPING -> DRAINED once no worker owes anything. */
static void server_check_drained(struct server *s)
{
	if (s->state == S_STOPPING && s->ndone + s->nlost == s->e->n)
		s->state = S_DRAINED;
}

int enqueue(struct server *s, uint32_t wk, uint16_t type, uint64_t round,
	    uint16_t flags, double due)
{
	struct pending *p;

	if (s->pend_len[wk] == MAX_PENDING)
		return algo_err(-EOVERFLOW, "server: more than %u messages queued for worker %u: the engine lost track of a worker",
				MAX_PENDING, wk);
	p = &s->pend[(size_t)wk * MAX_PENDING + s->pend_len[wk]++];
	p->type = type;
	p->round = round;
	p->flags = flags;
	p->due = due;
	return 0;
}

static int fill_avg(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	struct server *s = arg;
	struct hetsgd_block_hdr bh = { .kind = MSG_AVG, .sender = 0, .dim = (uint32_t)e->d,
				       .round = s->mask.round, .seed = e->mask_seed };
	int ret = hetsgd_block_encode_masked(buf, cap, &bh, &s->mask, s->xs, len);

	return ret ? algo_err(ret, "encoding an average: %s", hetsgd_errmsg()) : 0;
}

/* Write what is due, in order, per worker; a sharded parameter server's
 * STEPs first (small, and each shard server's reply waits for its own). */
static int server_flush(struct server *s)
{
	struct eng *e = s->e;
	double t = now_s();
	int pret = s->ps ? ps0_flush(s) : 0;

	if (pret)
		return pret;

	for (uint32_t wk = 0; wk < e->n; wk++) {
		struct pending *q = s->pend + (size_t)wk * MAX_PENDING;

		while (s->pend_len[wk] && q[0].due <= t) {
			struct eng_hdr h;
			int ret;

			fill_hdr(&h, q[0].type, 0, 0, q[0].round);
			h.flags = q[0].flags;
			if (q[0].type == MSG_MODEL) {
				h.round = s->version;	/* the freshest model */
				if (s->ps) {	/* shard 0 only (pserver.h) */
					uint32_t lo, hi;

					ps_bounds(e, 0, &lo, &hi);
					ret = send_dense_range(e, (int)wk + 1, &h, s->x + lo, lo, hi - lo);
				} else {
					ret = send_dense(e, (int)wk + 1, &h, s->x);
				}
			} else if (q[0].type == MSG_AVG) {
				ret = eng_send(e, (int)wk + 1, &h, fill_avg, s);
			} else {
				ret = eng_send(e, (int)wk + 1, &h, NULL, NULL);
			}
			if (ret == -EAGAIN)
				break;
			if (ret)
				return ret;
			memmove(q, q + 1, (s->pend_len[wk] - 1) * sizeof(*q));
			s->pend_len[wk]--;
		}
	}
	return 0;
}

/* Whether worker wk may send h's type now; a protocol error if not. */
static int server_check_legal(struct server *s, uint32_t wk, const struct eng_hdr *h)
{
	const struct hetsgd_method_ops *ops = s->e->ops;
	enum peer_state st = (enum peer_state)s->wk_state[wk];

	if (h->type != MSG_STATS && h->type != MSG_ABORT && h->type != MSG_STOPREQ &&
	    !(ops->to_server & MSG_BIT(h->type)))
		return algo_err(-EPROTO, "worker %u sent %s, which a %s server does not expect: the ranks run different configurations",
				wk, msg_names[h->type], ops->name);
	if (!server_legal[h->type][st])
		return algo_err(-EPROTO, "worker %u sent %s in state %s, where it is not legal (STATS and FINAL come once, after STOP)",
				wk, msg_names[h->type], peer_state_names[st]);
	return 0;
}

/* STATS, the last message of worker wk: its state goes DONE. */
static int server_stats(struct server *s, uint32_t wk, const struct eng_hdr *h,
			const struct hetsgd_ev *ev)
{
	struct wire_stats w;
	struct hetsgd_worker_stats *o = &s->ws[wk];

	if (h->body != sizeof(w))
		return algo_err(-EPROTO, "worker %u sent statistics of %u bytes (expected %zu)",
				wk, h->body, sizeof(w));
	memcpy(&w, (const char *)ev->data + HDR_BYTES, sizeof(w));
	if (!finite_nonneg(w.tau_target) || !finite_nonneg(w.compute_s) ||
	    !finite_nonneg(w.idle_s) || !finite_nonneg(w.elapsed_s))
		return algo_err(-EPROTO, "worker %u sent statistics with a time that is negative or not a number",
				wk);
	stats_from_wire(o, wk, &w);
	o->tau_est = hetsgd_tau_get(s->tau, wk);
	hetsgd_tau_leave(s->tau, wk);
	s->wk_state[wk] = WK_DONE;
	s->ndone++;
	server_check_drained(s);
	return 0;
}

/* A worker got a signal: the run stops as at its budget (server_should_stop). */
static int server_stopreq(struct server *s, uint32_t wk, const struct eng_hdr *h)
{
	if (h->round < 1 || h->round > 64)
		return algo_err(-EPROTO, "worker %u asked to stop for signal %llu, which is no signal",
				wk, (unsigned long long)h->round);
	if (!s->stop_sig)
		s->stop_sig = (int)h->round;
	return 0;
}

/*
 * The transport says worker wk's process ended or its connection broke
 * (never a timeout: see server.h).  Drop it: LOST, out of the tau
 * estimate, nothing more queued for it, its figures as last heard; the
 * method finishes what waited for it.  A worker already DONE owed
 * nothing more: its end is no loss.
 */
static int server_lost(void *ctx, const struct hetsgd_ev *ev)
{
	struct server *s = ctx;
	struct eng *e = s->e;
	struct hetsgd_worker_stats *o;
	uint32_t wk;
	double t = now_s();

	if (ev->peer > (int)e->n)
		return ps0_lost(s, ev);
	if (ev->peer < 1)
		return 0;
	wk = (uint32_t)ev->peer - 1;
	if (s->wk_state[wk] == WK_DONE || s->wk_state[wk] == WK_LOST)
		return 0;
	s->wk_state[wk] = WK_LOST;
	s->nlost++;
	s->pend_len[wk] = 0;
	o = &s->ws[wk];
	memset(o, 0, sizeof(*o));
	o->worker = wk;
	o->steps = s->steps[wk];
	o->compute_s = s->compute[wk];
	o->idle_s = s->idle[wk];
	o->elapsed_s = s->wall[wk];
	(void)hetsgd_profile_mean(&e->cfg->profile, wk, e->n, &o->tau_target);
	o->tau_est = hetsgd_tau_get(s->tau, wk);
	o->lost = 1;
	o->lost_at_s = train_time(e, t);
	snprintf(o->lost_why, sizeof(o->lost_why), "%s", ev->why ? ev->why : "its transport connection ended");
	hetsgd_tau_leave(s->tau, wk);
	if (e->cfg->on_lost)
		e->cfg->on_lost(e->cfg->on_lost_arg, o);
	server_check_drained(s);
	return e->ops->server_lost ? e->ops->server_lost(s, wk, t) : 0;
}

/* A landed block. */
static int server_recv(struct server *s, const struct hetsgd_ev *ev)
{
	struct eng *e = s->e;
	struct eng_hdr h;
	struct hetsgd_block b;
	uint32_t wk;
	double t = now_s();
	int ret;

	if (ev->peer > (int)e->n)
		return ps0_recv(s, ev);	/* a shard server (pserver.h), or an error */
	if (ev->peer < 1)
		return algo_err(-EPROTO, "a message from rank %d, which is not a worker", ev->peer);
	wk = (uint32_t)ev->peer - 1;
	ret = eng_parse(e, ev, &h, &b, ev->kind != MSG_STATS && ev->kind != MSG_ABORT &&
			ev->kind != MSG_STOPREQ && ev->kind != MSG_TICK);
	if (ret)
		return ret;
	if (h.type == MSG_ABORT)
		return peer_aborted(ev, &h);
	ret = server_check_legal(s, wk, &h);
	if (ret)
		return ret;
	if (h.type == MSG_STOPREQ)
		return server_stopreq(s, wk, &h);
	/* a shard owner's SHARD carries the model, not a report of its own */
	if (h.type == MSG_SHARD)
		return e->ops->server_msg(s, wk, &h, &b, ev, t);
	if (h.steps < s->steps[wk])
		return algo_err(-EPROTO, "worker %u reported %llu steps after %llu", wk,
				(unsigned long long)h.steps, (unsigned long long)s->steps[wk]);
	/* ROUND's tau, for the statistics: compute seconds per step over
	 * the round (a bad report only leaves the estimate as it was); a
	 * TICK is the header of a ROUND or GRAD the worker wrote to shard
	 * owners instead (its flags say which) */
	if ((h.type == MSG_ROUND || (h.type == MSG_TICK && h.flags == MSG_ROUND)) &&
	    h.steps > s->steps[wk] && h.compute >= s->compute[wk])
		(void)hetsgd_tau_report(s->tau, wk, (h.compute - s->compute[wk]) /
					(double)(h.steps - s->steps[wk]), t);
	s->steps[wk] = h.steps;
	s->compute[wk] = h.compute;
	s->idle[wk] = h.idle;
	s->wall[wk] = h.elapsed;
	if (h.type == MSG_STATS)
		return server_stats(s, wk, &h, ev);
	if (s->wk_state[wk] == WK_STOPPED &&
	    (h.type == MSG_GRAD || h.type == MSG_ROUND || h.type == MSG_TICK))
		return 0;	/* crossed STOP on the wire */
	ret = e->ops->server_msg(s, wk, &h, &b, ev, t);
	if (!ret && h.type == MSG_FINAL)
		s->wk_state[wk] = WK_FINAL;
	return ret;
}

/*
 * TRAINING -> STOPPING: every worker goes STOPPED, and STOP goes out now:
 * a held average or a model would only make the workers step past the
 * budget.
 */
static int server_stop(struct server *s, const char *why, struct hetsgd_engine_result *res)
{
	int ret = 0;

	s->state = S_STOPPING;
	snprintf(res->stop_reason, sizeof(res->stop_reason), "%s", why);
	res->stop_signal = s->stop_sig;
	memset(s->pend_len, 0, s->e->n * sizeof(*s->pend_len));
	for (uint32_t i = 0; i < s->e->n && !ret; i++) {
		if (s->wk_state[i] == WK_LOST)
			continue;
		s->wk_state[i] = WK_STOPPED;
		ret = enqueue(s, i, MSG_STOP, 0, 0, 0.0);
	}
	server_check_drained(s);
	return ret;
}

static const char *server_should_stop(struct server *s, double t)
{
	const struct hetsgd_engine_cfg *c = s->e->cfg;
	uint32_t min = c->min_workers ? c->min_workers : 1;
	char *why = s->stop_why;

	if (!s->stop_sig)
		s->stop_sig = hetsgd_engine_stop_signal();
	if (s->stop_sig) {
		char buf[16];

		snprintf(why, sizeof(s->stop_why), "stopped by signal %s",
			 signal_name(s->stop_sig, buf, sizeof(buf)));
		return why;
	}
	if (s->e->n - s->nlost < min) {
		snprintf(why, sizeof(s->stop_why), "fewer than %u workers left", min);
		return why;
	}
	if (c->budget_s > 0 && train_time(s->e, t) >= c->budget_s)
		return "time budget";
	if (c->budget_grads && server_grads(s) >= c->budget_grads)
		return "gradient budget";
	if (atomic_load(&s->target_hit))
		return s->target_why;
	return NULL;
}


/* The evaluation's scratch: indices for the largest set, and per-worker losses. */
static int server_eval_alloc(struct server *s)
{
	const struct hetsgd_engine_io *io = s->e->io;
	uint64_t most = io->eval ? io->eval->n : 0;

	for (uint32_t i = 0; io->worker_eval && i < s->e->n; i++) {
		if (!io->worker_eval[i] || !io->worker_eval[i]->n)
			return algo_err(-EINVAL, "worker_eval[%u] is empty: give every worker an evaluation sample, or none",
					i);
		if (io->worker_eval[i]->n > most)
			most = io->worker_eval[i]->n;
	}
	if (most > UINT32_MAX)
		return algo_err(-EINVAL, "an evaluation set has %llu samples; at most 2^32 - 1",
				(unsigned long long)most);
	s->eidx = most ? malloc(most * sizeof(uint32_t)) : NULL;
	if (io->worker_eval) {
		s->wg = malloc(s->e->d * sizeof(float));
		s->wloss = calloc(s->e->n, sizeof(double));
	}
	if ((most && !s->eidx) || (io->worker_eval && (!s->wg || !s->wloss)))
		return algo_err(-ENOMEM, "server: out of memory for the evaluation");
	return 0;
}

static int server_setup(struct server *s, struct eng *e)
{
	const struct hetsgd_engine_cfg *c = e->cfg;
	pthread_condattr_t ca;
	int ret;

	memset(s, 0, sizeof(*s));
	s->e = e;
	s->state = S_TRAINING;
	pthread_mutex_init(&s->emu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->ecv, &ca);
	pthread_condattr_destroy(&ca);
	ret = hetsgd_tau_create(e->n, c->tau_window ? c->tau_window : 8,
			      c->tau_stale_s > 0 ? c->tau_stale_s : 2.0, &s->tau);
	if (ret)
		return ret;
	s->x = hetsgd_topo_alloc(e->plan.numa_node, e->d * sizeof(float));
	s->wk_state = calloc(e->n, 1);
	s->acc = calloc(e->d, sizeof(float));
	s->got = calloc(e->n, 1);
	s->ws = calloc(e->n, sizeof(*s->ws));
	s->have_snap = calloc(e->n, 1);
	s->compute = calloc(e->n, sizeof(double));
	s->steps = calloc(e->n, sizeof(*s->steps));
	s->idle = calloc(e->n, sizeof(double));
	s->wall = calloc(e->n, sizeof(double));
	s->sum = calloc((size_t)e->k + 1, sizeof(float));
	s->xs = calloc(e->d, sizeof(float));
	s->snap = calloc(e->d, sizeof(float));
	s->snap_steps = calloc(e->n, sizeof(*s->snap_steps));
	s->pend = calloc((size_t)e->n * MAX_PENDING, sizeof(*s->pend));
	s->pend_len = calloc(e->n, sizeof(*s->pend_len));
	s->job.x = malloc(e->d * sizeof(float));
	s->eg = malloc(e->d * sizeof(float));
	ret = server_eval_alloc(s);
	if (ret)
		return ret;
	if (!s->x || !s->wk_state || !s->acc || !s->got || !s->ws || !s->have_snap ||
	    !s->compute || !s->steps || !s->idle || !s->wall || !s->sum || !s->xs || !s->snap ||
	    !s->snap_steps || !s->pend || !s->pend_len || !s->job.x || !s->eg)
		return algo_err(-ENOMEM, "server: out of memory for a model of %zu floats", e->d);
	memcpy(s->x, e->io->x0, e->d * sizeof(float));
	ckpt_resume(s);
	ret = eng_mask_init(e, &s->mask);
	if (!ret)
		ret = ps0_init(s);
	return !ret && e->ops->server_init ? e->ops->server_init(s) : ret;
}

static void server_free(struct server *s)
{
	eval_stop(s);
	if (s->e->ops->server_fini)
		s->e->ops->server_fini(s);
	ps0_fini(s);
	hetsgd_tau_destroy(s->tau);
	s->tau = NULL;
	hetsgd_mask_fini(&s->mask);
	if (s->x)
		hetsgd_topo_free(s->x, s->e->d * sizeof(float));
	free(s->wk_state);
	free(s->acc);
	free(s->got);
	free(s->ws);
	free(s->have_snap);
	free(s->compute);
	free(s->steps);
	free(s->idle);
	free(s->wall);
	free(s->sum);
	free(s->xs);
	free(s->snap);
	free(s->snap_steps);
	free(s->pend);
	free(s->pend_len);
	free(s->job.x);
	free(s->eg);
	free(s->eidx);
	free(s->wg);
	free(s->wloss);
	free(s->pts);
	pthread_cond_destroy(&s->ecv);
	pthread_mutex_destroy(&s->emu);
}

/* A landed block (a recv_fn). */
static int server_landed(void *ctx, const struct hetsgd_ev *ev)
{
	struct server *s = ctx;

	s->e->bytes_recv += ev->len;
	if (s->state == S_TRAINING)
		s->e->bytes_recv_train += ev->len;
	s->landed = 1;
	return server_recv(s, ev);
}

static int server_stalled(struct server *s)
{
	struct eng *e = s->e;
	uint32_t i;

	for (i = 0; i < e->n && (s->wk_state[i] == WK_DONE || s->wk_state[i] == WK_LOST); i++)
		;
	if (s->state != S_TRAINING)
		return algo_err(-ETIMEDOUT, "the server heard nothing from any worker for %.0f s after stopping them (worker %u still owes its statistics): a worker died or stalled",
				e->stall_s, i);
	return algo_err(-ETIMEDOUT, "the server heard nothing from any worker for %.0f s: a worker died or stalled (raise the stall time if steps are that slow)",
			e->stall_s);
}

/* The progress loop, until every worker is DONE (S_DRAINED) or an error. */
static int server_loop(struct server *s, struct hetsgd_engine_result *res)
{
	struct eng *e = s->e;
	struct hetsgd_ev ev[32];
	double t, last_recv = e->t0;
	int ret = 0, idle_polls = 0;

	/* every worker starts from x0 on its own: nothing to send first */
	for (;;) {
		int n;

		s->landed = 0;
		n = eng_poll(e, ev, 32, server_landed, s);
		t = now_s();
		if (s->landed)
			last_recv = t;
		if (n < 0)
			return n;
		if (s->state == S_TRAINING) {
			const char *why = server_should_stop(s, t);

			if (why) {
				ret = server_stop(s, why, res);
			} else {
				if (e->ops->server_tick)
					e->ops->server_tick(s, t);
				ret = ckpt_tick(s, t);
			}
		}
		if (!ret)
			ret = server_flush(s);
		if (ret)
			return ret;
		if (s->state == S_DRAINED)
			break;
		if (t - last_recv > e->stall_s)
			return server_stalled(s);
		ret = eval_error(s);
		if (ret)
			return ret;
		if (n == 0 && ++idle_polls > 64) {
			struct timespec ts = { 0, 50000 };

			nanosleep(&ts, NULL);
		} else if (n) {
			idle_polls = 0;
		}
	}
	return 0;
}

int server_run(struct eng *e, struct hetsgd_engine_result *res)
{
	const struct hetsgd_engine_cfg *c = e->cfg;
	struct server S, *s = &S;
	int ret;

	ret = server_setup(s, e);
	if (ret)
		goto out;
	bind_self(e, e->plan.progress_pu);
	e->on_down = server_lost;
	e->down_ctx = s;
	ret = eval_start(s);
	if (ret)
		goto out;
	e->t0 = now_s();
	s->next_eval = e->t0 + c->eval_interval_s;
	s->next_ckpt = e->t0 + c->checkpoint_every_s;
	if (c->eval_interval_s > 0 || c->target_loss > 0 || c->target_acc > 0)
		eval_submit(s, s->x, 1.0);	/* the starting point */
	ret = server_loop(s, res);
	/* the shards of a sharded parameter server: the final model, and
	 * their end */
	if (!ret && s->ps)
		ret = ps0_finish(s, res);
	if (ret) {
		/* tell every worker, so that none waits out its stall time */
		char reason[ABORT_MAX + 1];

		snprintf(reason, sizeof(reason), "%s", hetsgd_algo_errmsg());
		abort_peers(e, reason);
		algo_err(ret, "%s", reason);
		goto out;
	}
	res->elapsed_s = train_time(e, now_s());
	/* wait for the last evaluation, then evaluate the final model here */
	eval_stop(s);
	ret = eval_error(s);
	if (!ret && e->ops->server_finish)
		ret = e->ops->server_finish(s);
	if (!ret)
		ret = eval_final(s, res);
	/* the last checkpoint: the final model, which a resume goes on from */
	if (!ret && c->checkpoint_every_s > 0 && c->on_checkpoint)
		ret = ckpt_take(s, s->x, NULL, e->ops->snapshots ? s->round : s->version, now_s());
	if (ret)
		goto out;
	res->checkpoints = s->nckpt;
	res->checkpoint_t = s->ckpt_t;
	if (e->io->x_out)
		memcpy(e->io->x_out, s->x, e->d * sizeof(float));
	res->updates = s->updates;
	res->dropped = s->dropped;
	res->nworkers = e->n;
	res->nlost = s->nlost;
	res->workers = s->ws;
	s->ws = NULL;
	res->points = s->pts;
	res->npoints = s->npts;
	s->pts = NULL;
out:
	e->on_down = NULL;
	server_free(s);
	return ret;
}
