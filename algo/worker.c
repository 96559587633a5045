/*
 * A worker: its mailbox, its progress step, the padding of its steps and
 * worker_run (worker.h).  The method's loop runs on the compute thread
 * through e->ops->worker_loop.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pserver.h"
#include "shard.h"
#include "worker.h"

static const char *const worker_state_names[W_NSTATES] = {
	[W_COMPUTE] = "COMPUTE", [W_POSTED] = "POSTED", [W_AWAITING] = "AWAITING",
	[W_STOPPING] = "STOPPING", [W_DONE] = "DONE",
};

/*
 * Which message from the server is legal in which state (the method
 * narrows it further to the messages it uses: ops->to_worker).  In
 * STOPPING and DONE the progress loop no longer reads; send_blocking
 * fails on ABORT and releases anything else.
 */
static const uint8_t worker_legal[MSG_MAX][W_NSTATES] = {
	[MSG_MODEL] = { [W_AWAITING] = 1 },
	[MSG_AVG] = { [W_AWAITING] = 1 },
	[MSG_STOP] = { [W_COMPUTE] = 1, [W_POSTED] = 1, [W_AWAITING] = 1 },
	[MSG_ABORT] = { 1, 1, 1, 1, 1 },
	/* sharded averaging: a peer's part or notice may come at any time
	 * while training; a shard's result only while its round is awaited */
	[MSG_PART] = { [W_COMPUTE] = 1, [W_POSTED] = 1, [W_AWAITING] = 1 },
	[MSG_NOTICE] = { [W_COMPUTE] = 1, [W_POSTED] = 1, [W_AWAITING] = 1 },
	[MSG_SNAPREQ] = { [W_COMPUTE] = 1, [W_POSTED] = 1, [W_AWAITING] = 1 },
	[MSG_SHARD] = { [W_AWAITING] = 1 },
};

/*
 * The same for a method whose worker streams (ops->streams): a written
 * GRAD goes back to COMPUTE, never AWAITING, and the model the server
 * broadcasts may land while the worker computes or has a GRAD posted.
 */
static const uint8_t worker_legal_streaming[MSG_MAX][W_NSTATES] = {
	[MSG_MODEL] = { [W_COMPUTE] = 1, [W_POSTED] = 1 },
	[MSG_STOP] = { [W_COMPUTE] = 1, [W_POSTED] = 1 },
	[MSG_ABORT] = { 1, 1, 1, 1, 1 },
};

/* Every change of state, under mu; wakes both threads. */
static void worker_set(struct worker *w, enum worker_state st)
{
	atomic_store_explicit(&w->state, st, memory_order_release);
	pthread_cond_broadcast(&w->cv);
	pthread_cond_broadcast(&w->pcv);
}

static enum worker_state worker_state(struct worker *w)
{
	return (enum worker_state)atomic_load_explicit(&w->state, memory_order_acquire);
}

static int worker_fail(struct worker *w, int err)
{
	pthread_mutex_lock(&w->mu);
	if (!w->err) {
		w->err = err;
		snprintf(w->errmsg, sizeof(w->errmsg), "%s", hetsgd_algo_errmsg());
	}
	atomic_store(&w->stop, 1);
	pthread_cond_broadcast(&w->pcv);
	pthread_mutex_unlock(&w->mu);
	return err;
}

/*
 * Sleep until t, the end of a padded step, unless the run stops first: a
 * profile's slowest worker may take seconds per step, and STOP or ABORT
 * should not wait for it.  Every writer of stop broadcasts cv.
 */
static void pad_until(struct worker *w, double t)
{
	struct timespec ts;

	abs_deadline(&ts, t);
	pthread_mutex_lock(&w->mu);
	while (!atomic_load(&w->stop) && now_s() < t)
		if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&w->mu);
}

int worker_grad(struct worker *w, const float *x)
{
	struct eng *e = w->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	struct hetsgd_objective *obj = e->io->obj;
	int quad = obj->kind == HETSGD_OBJ_QUAD;
	uint32_t m = quad ? 0 : c->batch;
	double t0 = now_s(), target;
	int ret;

	if (m)
		draw_batch(&w->rng, e->io->data->n, w->bidx, m);
	if (w->team.nthr > 1 && m)
		ret = team_grad(&w->team, x, m);
	else
		ret = hetsgd_objective_loss_grad(obj, x, quad ? NULL : e->io->data, w->bidx, m,
						 NULL, w->g);
	if (ret)
		return ret;
	target = hetsgd_profile_step(&c->profile, w->tau_mean, w->id, w->steps);
	if (target > 0.0) {
		if (now_s() - t0 > target)
			w->overruns++;
		else
			pad_until(w, t0 + target);
	}
	w->steps++;
	w->compute_s += now_s() - t0;
	return 0;
}

void worker_post_gradient(struct worker *w, uint64_t ver)
{
	/* "sparse when it pays": gather the nonzeros for the encoder */
	w->out_nnz = 0;
	for (size_t j = 0; j < w->e->d; j++)
		if (w->g[j] != 0.0f) {
			w->xs[w->out_nnz] = w->g[j];
			w->out_nz[w->out_nnz++] = (uint32_t)j;
		}
	worker_post(w, MSG_GRAD, ver, w->g, 0);
}

void worker_post(struct worker *w, uint16_t type, uint64_t round, const float *vec,
		 uint16_t flags)
{
	double t = now_s(), t1;

	pthread_mutex_lock(&w->mu);
	while (worker_state(w) == W_POSTED && !atomic_load(&w->stop))
		pthread_cond_wait(&w->cv, &w->mu);
	t1 = now_s();
	w->idle_s += t1 - t;
	if (atomic_load(&w->stop)) {
		pthread_mutex_unlock(&w->mu);
		return;
	}
	fill_hdr(&w->out_hdr, type, (uint32_t)w->e->rank, 0, round);
	w->out_hdr.flags = flags;
	w->out_hdr.steps = w->steps;
	w->out_hdr.tau = w->last_send > 0 ? t1 - w->last_send : t1 - w->e->t0;
	w->out_hdr.idle = w->idle_s;
	w->out_hdr.elapsed = train_time(w->e, t1);
	w->out_hdr.compute = w->compute_s;
	w->last_send = t1;
	w->out_vec = vec;
	worker_set(w, W_POSTED);
	pthread_mutex_unlock(&w->mu);
}

void worker_wait_written(struct worker *w)
{
	double t = now_s();

	pthread_mutex_lock(&w->mu);
	while (worker_state(w) == W_POSTED && !atomic_load(&w->stop))
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	w->idle_s += now_s() - t;
}

void worker_wait_reply(struct worker *w)
{
	double t = now_s();

	pthread_mutex_lock(&w->mu);
	while (!atomic_load(&w->in_full) && !atomic_load(&w->stop))
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	w->idle_s += now_s() - t;
}

int worker_has_reply(struct worker *w)
{
	return atomic_load_explicit(&w->in_full, memory_order_acquire);
}

void worker_took_reply(struct worker *w)
{
	atomic_store(&w->in_full, 0);
}

/* The compute thread: its pin, its team, the method's loop. */
static void *compute_main(void *arg)
{
	struct worker *w = arg;
	int ret = team_start(&w->team);

	if (ret) {
		worker_fail(w, ret);
		return NULL;
	}
	bind_self(w->e, w->e->plan.compute_pus[0]);
	ret = w->e->ops->worker_loop(w);
	if (ret)
		worker_fail(w, ret);
	team_stop(&w->team);
	return NULL;
}

/* Body of the outbox message. */
static int fill_out(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	struct worker *w = arg;
	struct hetsgd_block_hdr bh = { .kind = w->out_hdr.type, .sender = (uint32_t)e->rank,
				       .dim = (uint32_t)e->d, .round = w->out_hdr.round };
	int ret;

	switch (w->out_hdr.type) {
	case MSG_GRAD:
		/* "sparse when it pays": values gathered into xs, the encoder
		 * picks indexed or dense */
		ret = hetsgd_block_encode_sparse(buf, cap, &bh, w->out_nz, w->xs, w->out_nnz, len);
		break;
	case MSG_ROUND:
		bh.seed = e->mask_seed;
		ret = hetsgd_block_encode_masked(buf, cap, &bh, &w->mask, w->out_vec, len);
		break;
	default:
		ret = hetsgd_block_encode_dense(buf, cap, &bh, w->out_vec, 0, (uint32_t)e->d, len);
		break;
	}
	return ret ? algo_err(ret, "encoding a %s block: %s", msg_names[w->out_hdr.type],
			      hetsgd_errmsg()) : 0;
}

/* Whether rank `peer` (the server, or a shard owner) may send h's type
 * now; a protocol error if not. */
static int worker_check_legal(struct worker *w, const struct eng_hdr *h, int peer)
{
	enum worker_state st = worker_state(w);
	char who[32];

	if (w->ps && ps_shard_of(w->e, peer) > 0)
		snprintf(who, sizeof(who), "shard server %d", ps_shard_of(w->e, peer));
	else if (peer)
		snprintf(who, sizeof(who), "worker %d", peer - 1);
	else
		snprintf(who, sizeof(who), "the server");
	if (h->type != MSG_STOP && h->type != MSG_ABORT &&
	    !(w->e->ops->to_worker & MSG_BIT(h->type)) && !(w->ps && h->type == MSG_SHARD))
		return algo_err(-EPROTO, "%s sent %s, which a %s worker does not expect now: the ranks run different configurations",
				who, msg_names[h->type], w->e->ops->name);
	if (!(w->e->ops->streams ? worker_legal_streaming : worker_legal)[h->type][st])
		return algo_err(-EPROTO, "%s sent %s to worker %u in state %s, where it is not legal: the ranks run different configurations",
				who, msg_names[h->type], w->id, worker_state_names[st]);
	return 0;
}

/* A landed MODEL or AVG into the inbox, under mu: AWAITING -> COMPUTE (a
 * streaming worker's state stays; a newer model replaces one not taken). */
static int worker_inbox(struct worker *w, const struct hetsgd_ev *ev,
			const struct eng_hdr *h, const struct hetsgd_block *b)
{
	struct eng *e = w->e;
	int ret;

	if (w->ps)	/* one shard of the model (pserver.h) */
		return ps_worker_inbox(w, ev, h, b);
	if (h->type == MSG_MODEL)
		ret = want_full(ev, b, "a model");
	else
		ret = want_masked(e, ev, b, h->round, "an average");
	if (ret)
		return ret;
	ret = block_take(ev->peer, w->in_vec, b->val, h->type == MSG_MODEL ? e->d : e->k);
	if (ret)
		return ret;
	worker_reply_in(w, h->round, h->flags);
	return 0;
}

void worker_reply_in(struct worker *w, uint64_t round, uint16_t flags)
{
	w->in_round = round;
	w->in_flags = flags;
	atomic_store_explicit(&w->in_full, 1, memory_order_release);
	if (worker_state(w) == W_AWAITING)
		worker_set(w, W_COMPUTE);
	else
		pthread_cond_broadcast(&w->cv);
}

/* The messages of sharded averaging (shard.h) carry no reply of the
 * server's: which ones come from whom. */
static int shard_msg(const struct eng_hdr *h)
{
	return h->type == MSG_PART || h->type == MSG_SHARD || h->type == MSG_NOTICE;
}

/* A landed message for a worker (a recv_fn). */
static int worker_recv(void *ctx, const struct hetsgd_ev *ev)
{
	struct worker *w = ctx;
	struct eng *e = w->e;
	struct eng_hdr h;
	struct hetsgd_block b;
	int ret;

	e->bytes_recv += ev->len;
	if (worker_state(w) < W_STOPPING)
		e->bytes_recv_train += ev->len;
	if (ev->peer != 0 && !(w->sh && (ev->kind == MSG_PART || ev->kind == MSG_SHARD ||
					  ev->kind == MSG_NOTICE)) &&
	    !(w->ps && ps_shard_of(e, ev->peer) > 0 && (ev->kind == MSG_SHARD || ev->kind == MSG_ABORT)))
		return algo_err(-EPROTO, "rank %d wrote %s to worker rank %d; only the server (rank 0) does%s",
				ev->peer, ev->kind < MSG_MAX && msg_names[ev->kind] ? msg_names[ev->kind] : "a message",
				e->rank, w->sh ? ", and shard owners their shards" :
				w->ps ? ", and shard servers their shards" : "");
	ret = eng_parse(e, ev, &h, &b, ev->kind != MSG_STOP && ev->kind != MSG_ABORT &&
			ev->kind != MSG_NOTICE && ev->kind != MSG_SNAPREQ);
	if (ret)
		return ret;
	if (h.type == MSG_ABORT)
		return peer_aborted(ev, &h);
	if (ev->peer == 0 && shard_msg(&h))
		return algo_err(-EPROTO, "the server sent %s, which only workers send", msg_names[h.type]);
	pthread_mutex_lock(&w->mu);
	if (ev->peer != 0 && worker_state(w) >= W_STOPPING) {
		/* a peer's part or result that landed with STOP: training is over */
		pthread_mutex_unlock(&w->mu);
		return 0;
	}
	ret = worker_check_legal(w, &h, ev->peer);
	if (!ret && h.type == MSG_STOP) {
		atomic_store(&w->stop, 1);
		worker_set(w, W_STOPPING);
	} else if (!ret && w->sh && (shard_msg(&h) || h.type == MSG_SNAPREQ)) {
		ret = shard_recv(w, ev, &h, &b);
	} else if (!ret) {
		ret = worker_inbox(w, ev, &h, &b);
	}
	pthread_mutex_unlock(&w->mu);
	return ret;
}

/* The outbox to the network, under mu: POSTED -> AWAITING or COMPUTE. */
static int worker_write(struct worker *w, int *did)
{
	uint16_t type = w->out_hdr.type;
	int ret;

	if (w->ps && type == MSG_GRAD) {
		/* a sharded parameter server: a part to each shard (pserver.h) */
		ret = ps_worker_write(w, did);
		if (ret || !*did)
			return ret;
		w->await_since = now_s();
		worker_set(w, W_AWAITING);
		return 0;
	}
	if (w->sh && (type == MSG_ROUND || type == MSG_GRAD)) {
		/* sharded: the parts go to the shards' owners (shard_flush) */
		*did = 1;
		w->await_since = now_s();
		worker_set(w, W_AWAITING);
		return shard_post(w);
	}
	ret = eng_send(w->e, 0, &w->out_hdr, fill_out, w);
	if (ret)
		return ret == -EAGAIN ? 0 : ret;
	*did = 1;
	if ((type == MSG_GRAD && !w->e->ops->streams) || type == MSG_ROUND) {
		w->await_since = now_s();
		worker_set(w, W_AWAITING);
	} else {
		worker_set(w, W_COMPUTE);
	}
	return 0;
}

/* One pass of the worker's progress step: landed blocks to the inbox,
 * the outbox to the network; dozes briefly when there was nothing. */
static int worker_progress(struct worker *w)
{
	struct eng *e = w->e;
	struct hetsgd_ev ev[16];
	int n, ret = 0, did = 0;

	n = eng_poll(e, ev, 16, worker_recv, w);
	if (n < 0)
		return n;
	pthread_mutex_lock(&w->mu);
	if (worker_state(w) == W_POSTED)
		ret = worker_write(w, &did);
	if (!ret && w->sh)
		ret = shard_flush(w, &did);
	if (!ret && !did && !n) {
		/* nothing to do: doze until the compute thread posts, briefly */
		struct timespec ts;

		abs_deadline(&ts, now_s() + 100e-6);
		pthread_cond_timedwait(&w->pcv, &w->mu, &ts);
	}
	pthread_mutex_unlock(&w->mu);
	return ret;
}

/*
 * A resumed run: this worker's progress and statistics as the checkpoint
 * has them, and its sampler moved past the batches of those steps (the
 * profile's noise and the masks are indexed by step and round, so they
 * follow by themselves).
 */
static void worker_resume(struct worker *w)
{
	struct eng *e = w->e;
	const struct hetsgd_engine_cfg *c = e->cfg;
	const struct hetsgd_ckpt_worker *cw;

	if (!c->resume)
		return;
	cw = &c->resume->workers[w->id];
	w->steps = cw->steps;
	w->rounds = cw->rounds;
	w->overlap_steps = cw->overlap_steps;
	w->dropped = cw->dropped;
	w->overruns = cw->overruns;
	w->compute_s = cw->compute_s;
	w->idle_s = cw->idle_s;
	if (e->io->obj->kind != HETSGD_OBJ_QUAD)
		skip_batches(&w->rng, e->io->data->n, w->bidx, c->batch, w->steps);
}

/* Buffers, team and mask; the state starts in COMPUTE. */
static int worker_setup(struct worker *w, struct eng *e)
{
	const struct hetsgd_engine_cfg *c = e->cfg;
	pthread_condattr_t ca;

	memset(w, 0, sizeof(*w));
	w->e = e;
	w->id = (uint32_t)e->rank - 1;
	w->rng = worker_stream(c->seed, w->id);
	atomic_init(&w->state, W_COMPUTE);
	atomic_init(&w->in_full, 0);
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_cond_init(&w->pcv, &ca);
	pthread_condattr_destroy(&ca);
	if (hetsgd_profile_mean(&c->profile, w->id, e->n, &w->tau_mean))
		return -EINVAL;
	w->x = hetsgd_topo_alloc(e->plan.numa_node, e->d * sizeof(float));
	w->g = malloc(e->d * sizeof(float));
	w->xs = malloc(e->d * sizeof(float));
	w->in_vec = malloc(e->d * sizeof(float));
	w->out_nz = malloc(e->d * sizeof(uint32_t));
	w->y = malloc(((size_t)e->k + 1) * sizeof(float));
	w->bidx = malloc(((size_t)c->batch + 1) * sizeof(uint32_t));
	if (!w->x || !w->g || !w->xs || !w->in_vec || !w->out_nz || !w->y || !w->bidx)
		return algo_err(-ENOMEM, "worker %u: out of memory for a model of %zu floats",
				w->id, e->d);
	memcpy(w->x, e->io->x0, e->d * sizeof(float));
	worker_resume(w);
	{
		int ret = team_init(&w->team, e, w->id,
				    c->compute_threads > 1 ? c->compute_threads : 1, w->bidx, w->g);

		if (!ret && e->ops->sharded)
			ret = shard_init(w);
		if (!ret)
			ret = ps_worker_init(w);
		return ret ? ret : eng_mask_init(e, &w->mask);
	}
}

static void worker_free(struct worker *w)
{
	struct eng *e = w->e;

	shard_fini(w);
	ps_worker_fini(w);
	hetsgd_mask_fini(&w->mask);
	if (w->x)
		hetsgd_topo_free(w->x, e->d * sizeof(float));
	free(w->g);
	free(w->xs);
	free(w->in_vec);
	free(w->out_nz);
	free(w->y);
	free(w->bidx);
	if (w->team.e)
		team_fini(&w->team);
	pthread_cond_destroy(&w->cv);
	pthread_cond_destroy(&w->pcv);
	pthread_mutex_destroy(&w->mu);
}

/* The transport says a peer is gone: the end of this worker when it is
 * the server; another worker matters only to sharded averaging. */
static int worker_peer_down(void *ctx, const struct hetsgd_ev *ev)
{
	struct worker *w = ctx;
	int ret;

	if (w->ps && ps_shard_of(w->e, ev->peer) > 0) {
		uint32_t lo, hi;

		ps_bounds(w->e, (uint32_t)ps_shard_of(w->e, ev->peer), &lo, &hi);
		return algo_err(-EPIPE, "worker %u: shard server %d (rank %d) failed: %s; coordinates [%u, %u) of the model were only there: resume from the last checkpoint (--checkpoint-every, --resume)",
				w->id, ps_shard_of(w->e, ev->peer), ev->peer,
				ev->why ? ev->why : "its connection ended", lo, hi);
	}
	if (ev->peer != 0) {
		if (!w->sh)
			return 0;
		pthread_mutex_lock(&w->mu);
		ret = shard_peer_down(w, ev->peer);
		pthread_mutex_unlock(&w->mu);
		return ret;
	}
	return algo_err(-EPIPE, "worker %u: the server (rank 0) failed: %s; stopping without it",
			w->id, ev->why ? ev->why : "its connection ended");
}

/*
 * A signal came to this rank: ask the server to stop the run (STOPREQ,
 * once), and stop by ourselves if STOP does not come in time.  0, or the
 * error that ends training here.
 */
static int worker_signal(struct worker *w, int sig)
{
	struct eng *e = w->e;
	struct eng_hdr h;
	char buf[16];
	int ret;

	if (!w->stopreq_at) {
		fill_hdr(&h, MSG_STOPREQ, (uint32_t)e->rank, 0, (uint64_t)sig);
		ret = eng_send(e, 0, &h, NULL, NULL);
		if (ret == -EAGAIN)
			return 0;	/* no credit now: the next pass */
		if (ret)
			return ret;
		w->stopreq_at = now_s();
		return 0;
	}
	if (now_s() - w->stopreq_at > STOPREQ_WAIT_S)
		return algo_err(-EINTR, "worker %u: %s came and the server did not stop the run within %.0f s: stopping alone",
				w->id, signal_name(sig, buf, sizeof(buf)), STOPREQ_WAIT_S);
	return 0;
}

/* The progress loop while training: until STOP, an error here or the
 * compute thread's. */
static int worker_train(struct worker *w, int *werr)
{
	struct eng *e = w->e;
	int ret = 0;

	while (worker_state(w) != W_STOPPING) {
		int sig = hetsgd_engine_stop_signal();

		ret = worker_progress(w);
		if (!ret && sig && worker_state(w) != W_STOPPING)
			ret = worker_signal(w, sig);
		if (ret)
			break;
		/* w->err and w->errmsg belong to the compute thread, under mu */
		pthread_mutex_lock(&w->mu);
		*werr = w->err;
		pthread_mutex_unlock(&w->mu);
		if (*werr)
			break;
		if (worker_state(w) == W_AWAITING && now_s() - w->await_since > e->stall_s) {
			ret = algo_err(-ETIMEDOUT, "worker %u has waited %.0f s for the %s: %s died or stalled (raise the stall time if that is expected)",
				       w->id, e->stall_s,
				       w->sh ? "results of its round's shards" :
				       w->ps ? "shards of the model" : "server's reply",
				       w->sh ? "a shard owner" : w->ps ? "a server" : "the server");
			break;
		}
	}
	return ret;
}

/* Stop the compute thread and say how training ended: 0 or the error. */
static int worker_join(struct worker *w, int ret, int werr)
{
	if (ret)
		worker_fail(w, ret);
	else if (werr)	/* errmsg is written once, with err: stable now */
		abort_peers(w->e, w->errmsg);
	if (ret && ret != -ECONNABORTED)
		abort_peers(w->e, hetsgd_algo_errmsg());
	atomic_store(&w->stop, 1);
	pthread_mutex_lock(&w->mu);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thr, NULL);
	if (!ret && w->err) {
		ret = w->err;
		algo_err(ret, "%s", w->errmsg);
	}
	return ret;
}

/* The end: the method's last messages, then the statistics (STOPPING -> DONE). */
static int worker_report(struct worker *w, struct hetsgd_engine_result *res)
{
	struct eng *e = w->e;
	struct wire_stats ws;
	struct eng_hdr h;
	int ret = e->ops->worker_finish ? e->ops->worker_finish(w) : 0;

	if (ret)
		return ret;
	memset(&ws, 0, sizeof(ws));
	ws.steps = w->steps;
	ws.rounds = w->rounds;
	ws.overlap_steps = w->overlap_steps;
	ws.dropped = w->dropped;
	ws.overruns = w->overruns;
	ws.tau_target = w->tau_mean;
	ws.compute_s = w->compute_s;
	ws.idle_s = w->idle_s;
	ws.elapsed_s = train_time(e, now_s());
	ws.sent = e->sent + 1;
	ws.bytes_sent = e->bytes_sent + HDR_BYTES + sizeof(ws);
	ws.bytes_recv = e->bytes_recv;
	ws.bytes_recv_train = e->bytes_recv_train;
	fill_hdr(&h, MSG_STATS, (uint32_t)e->rank, 0, 0);
	h.steps = w->steps;
	ret = send_blocking(e, 0, &h, fill_stats, &ws);
	if (ret)
		return ret;
	atomic_store(&w->state, W_DONE);
	res->nworkers = e->n;
	res->workers = calloc(1, sizeof(*res->workers));
	if (res->workers)
		stats_from_wire(res->workers, w->id, &ws);
	res->grads = w->steps;
	res->updates = w->rounds;
	res->elapsed_s = ws.elapsed_s;
	return 0;
}

int worker_run(struct eng *e, struct hetsgd_engine_result *res)
{
	struct worker W, *w = &W;
	int ret, werr = 0;

	ret = worker_setup(w, e);
	if (ret)
		goto out;
	bind_self(e, e->plan.progress_pu);
	e->on_down = worker_peer_down;
	e->down_ctx = w;
	e->t0 = now_s();
	ret = pthread_create(&w->thr, NULL, compute_main, w);
	if (ret) {
		ret = algo_err(-ret, "worker %u: cannot start its compute thread: %s", w->id,
			       strerror(ret));
		goto out;
	}
	ret = worker_train(w, &werr);
	ret = worker_join(w, ret, werr);
	if (!ret)
		ret = worker_report(w, res);
out:
	e->on_down = NULL;
	worker_free(w);
	return ret;
}
