/*
 * The sharded parameter server (pserver.h): a shard server's rank, rank
 * 0's side of the steps and pulls, and a worker's parts and gathered
 * reply.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pserver.h"
#include "server.h"
#include "worker.h"

/* What rank 0 asks of a shard server, in order. */
enum ps_op { OP_STEP = 1, OP_PULL, OP_STOP };

struct ps_item {
	uint16_t op;
	struct wire_step st;	/* OP_STEP */
};

/* A FIFO of items (rank 0: per shard server, to send; a shard server:
 * what rank 0 asked, to do). */
struct ps_fifo {
	struct ps_item *q;
	uint32_t head, len, cap;
};

static int fifo_init(struct ps_fifo *f, uint32_t cap)
{
	f->q = calloc(cap, sizeof(*f->q));
	f->cap = cap;
	f->head = f->len = 0;
	return f->q ? 0 : -ENOMEM;
}

static struct ps_item *fifo_push(struct ps_fifo *f)
{
	struct ps_item *it;

	if (f->len == f->cap)
		return NULL;
	it = &f->q[(f->head + f->len++) % f->cap];
	memset(it, 0, sizeof(*it));
	return it;
}

static struct ps_item *fifo_head(struct ps_fifo *f)
{
	return f->len ? &f->q[f->head] : NULL;
}

static void fifo_pop(struct ps_fifo *f)
{
	f->head = (f->head + 1) % f->cap;
	f->len--;
}

int ps_want_shard(const struct eng *e, const struct hetsgd_ev *ev, const struct hetsgd_block *b,
		  uint32_t j, int dense_only, const char *what)
{
	uint32_t lo, hi;

	ps_bounds(e, j, &lo, &hi);
	if (b->encoding == HETSGD_ENC_DENSE && b->first == lo && b->count == hi - lo)
		return 0;
	if (!dense_only && b->encoding == HETSGD_ENC_INDEXED &&
	    (!b->count || (b->idx[0] >= lo && b->idx[b->count - 1] < hi)))
		return 0;	/* the decode checked the indices increase */
	return algo_err(-EPROTO, "rank %d sent %s as a %s block of %u values from %u; shard %u of %u is coordinates [%u, %u): the ranks run different configurations, or rank %d is broken",
			ev->peer, what, b->encoding == HETSGD_ENC_DENSE ? "dense" :
			b->encoding == HETSGD_ENC_INDEXED ? "indexed" : "masked",
			b->count, b->count && b->encoding == HETSGD_ENC_INDEXED ? b->idx[0] : b->first,
			j, e->nservers, lo, hi, ev->peer);
}

/* ================= a shard server's rank ================= */

struct pserver {
	struct eng *e;
	uint32_t j, lo, len;
	float *x;		/* its shard of the model */
	uint64_t version;	/* steps applied (not dropped) */
	float *parts;		/* n x len: worker i's gradient part in row i */
	uint8_t *has;		/* per worker: its part is in its row */
	uint8_t *dead;		/* per worker: the transport said it ended */
	uint8_t *reply;		/* per worker: its SHARD is due */
	uint16_t *rflags;
	int pull;		/* rank 0's SHARD is due */
	int stopped;		/* STOP came: the statistics go, then close */
	int stopreq;		/* a signal came here and went to rank 0 */
	struct ps_fifo todo;
	uint64_t updates, dropped;
	double last_recv;
};

/* A landed PART: worker wk's gradient values of this shard. */
static int pserver_part(struct pserver *p, uint32_t wk, const struct hetsgd_ev *ev,
			const struct hetsgd_block *b)
{
	float *row = p->parts + (size_t)wk * p->len;
	const volatile float *val = b->val;	/* one read per value */
	int ret = ps_want_shard(p->e, ev, b, p->j, 0, "a gradient part");

	if (ret)
		return ret;
	if (p->has[wk])
		return algo_err(-EPROTO, "worker %u sent a second gradient part to shard %u before rank 0 stepped its first: it runs another protocol",
				wk, p->j);
	if (b->encoding == HETSGD_ENC_DENSE) {
		for (uint32_t i = 0; i < b->count; i++) {
			float v = val[i];

			if (!isfinite(v))
				goto changed;
			row[i] = v;
		}
	} else {
		memset(row, 0, p->len * sizeof(float));
		for (uint32_t i = 0; i < b->count; i++) {
			float v = val[i];

			if (!isfinite(v))
				goto changed;
			row[b->idx[i] - p->lo] = v;
		}
	}
	p->has[wk] = 1;
	return 0;
changed:
	return algo_err(-EPROTO, "rank %d changed a value of its block after it was checked: that rank is broken or hostile",
			ev->peer);
}

/* A landed STEP, PULL or STOP from rank 0: queued, done in order. */
static int pserver_order(struct pserver *p, const struct hetsgd_ev *ev, const struct eng_hdr *h)
{
	struct eng *e = p->e;
	struct ps_item *it;

	if (p->stopped)
		return algo_err(-EPROTO, "rank 0 sent %s to shard server %u after STOP", msg_names[h->type], p->j);
	it = fifo_push(&p->todo);
	if (!it)
		return algo_err(-EPROTO, "rank 0 queued more than %u orders at shard server %u: more steps than workers are outstanding",
				p->todo.cap, p->j);
	if (h->type == MSG_STEP) {
		if (h->body != sizeof(it->st))
			return algo_err(-EPROTO, "rank 0 sent a STEP of %u bytes (expected %zu)", h->body,
					sizeof(it->st));
		it->op = OP_STEP;
		memcpy(&it->st, (const char *)ev->data + HDR_BYTES, sizeof(it->st));
		if (it->st.worker >= e->n || !isfinite(it->st.gamma) || it->st.gamma < 0 ||
		    (it->st.flags & ~(uint32_t)FLAG_DROPPED))
			return algo_err(-EPROTO, "rank 0 sent a STEP for worker %u with gamma %g and flags %u: worker, step or flags out of range",
					it->st.worker, it->st.gamma, it->st.flags);
	} else {
		it->op = h->type == MSG_PULL ? OP_PULL : OP_STOP;
	}
	return 0;
}

/* Do rank 0's orders in order while the head's part is in. */
static int pserver_work(struct pserver *p)
{
	struct ps_item *it;

	while ((it = fifo_head(&p->todo))) {
		uint32_t wk = it->st.worker;

		if (it->op == OP_PULL) {
			p->pull = 1;
		} else if (it->op == OP_STOP) {
			/* every worker is done or lost: nothing more goes to them */
			memset(p->reply, 0, p->e->n);
			p->stopped = 1;
		} else {
			if (!p->has[wk] && !p->dead[wk])
				return 0;	/* its part is on the way */
			if (!(it->st.flags & FLAG_DROPPED)) {
				if (it->st.version != p->version + 1)
					return algo_err(-EPROTO, "rank 0's step for worker %u makes version %llu; shard %u is at %llu: the orders came out of order",
							wk, (unsigned long long)it->st.version, p->j,
							(unsigned long long)p->version);
				if (p->has[wk]) {
					const float *row = p->parts + (size_t)wk * p->len;
					float g = (float)it->st.gamma;

					for (uint32_t i = 0; i < p->len; i++)
						p->x[i] -= g * row[i];	/* block_axpy's arithmetic */
				}
				p->version++;
				p->updates++;
			} else {
				p->dropped++;
			}
			p->has[wk] = 0;
			if (!p->dead[wk]) {
				p->reply[wk] = 1;
				p->rflags[wk] = (uint16_t)it->st.flags;
			}
		}
		fifo_pop(&p->todo);
	}
	return 0;
}

static int pserver_recv(void *ctx, const struct hetsgd_ev *ev)
{
	struct pserver *p = ctx;
	struct eng *e = p->e;
	struct eng_hdr h;
	struct hetsgd_block b;
	int ret;

	e->bytes_recv += ev->len;
	if (!p->stopped)
		e->bytes_recv_train += ev->len;
	p->last_recv = now_s();
	if (ev->peer < 0 || ev->peer > (int)e->n)
		return algo_err(-EPROTO, "rank %d wrote to shard server %u; only rank 0 and the workers do",
				ev->peer, p->j);
	ret = eng_parse(e, ev, &h, &b, ev->kind == MSG_PART);
	if (ret)
		return ret;
	if (h.type == MSG_ABORT)
		return peer_aborted(ev, &h);
	if (ev->peer == 0 && (h.type == MSG_STEP || h.type == MSG_PULL || h.type == MSG_STOP))
		ret = pserver_order(p, ev, &h);
	else if (ev->peer > 0 && h.type == MSG_PART)
		ret = p->stopped ? 0 : pserver_part(p, (uint32_t)ev->peer - 1, ev, &b);
	else
		return algo_err(-EPROTO, "rank %d sent %s to shard server %u, which takes STEP, PULL and STOP from rank 0 and PART from workers: the ranks run different configurations",
				ev->peer, msg_names[h.type], p->j);
	return ret ? ret : pserver_work(p);
}

/* Write the shards that are due; -EAGAIN leaves them for the next pass. */
static int pserver_flush(struct pserver *p)
{
	struct eng *e = p->e;
	struct eng_hdr h;
	int ret;

	for (uint32_t wk = 0; wk < e->n; wk++) {
		if (!p->reply[wk])
			continue;
		fill_hdr(&h, MSG_SHARD, (uint32_t)e->rank, 0, p->version);
		h.flags = p->rflags[wk];
		ret = send_dense_range(e, (int)wk + 1, &h, p->x, p->lo, p->len);
		if (ret == -EAGAIN)
			continue;
		if (ret)
			return ret;
		p->reply[wk] = 0;
	}
	if (p->pull) {
		fill_hdr(&h, MSG_SHARD, (uint32_t)e->rank, 0, p->version);
		ret = send_dense_range(e, 0, &h, p->x, p->lo, p->len);
		if (ret && ret != -EAGAIN)
			return ret;
		if (!ret)
			p->pull = 0;
	}
	return 0;
}

static int pserver_down(void *ctx, const struct hetsgd_ev *ev)
{
	struct pserver *p = ctx;

	if (ev->peer == 0)
		return algo_err(-EPIPE, "shard server %u: the server (rank 0) failed: %s; stopping without it",
				p->j, ev->why ? ev->why : "its connection ended");
	if (ev->peer >= 1 && ev->peer <= (int)p->e->n) {
		p->dead[ev->peer - 1] = 1;
		p->reply[ev->peer - 1] = 0;
		return pserver_work(p);
	}
	return 0;
}

int pserver_run(struct eng *e, struct hetsgd_engine_result *res)
{
	struct pserver P = { .e = e }, *p = &P;
	struct hetsgd_ev ev[32];
	struct wire_stats ws;
	struct eng_hdr h;
	uint32_t lo, hi;
	int ret = 0;

	p->j = (uint32_t)ps_shard_of(e, e->rank);
	ps_bounds(e, p->j, &lo, &hi);
	p->lo = lo;
	p->len = hi - lo;
	p->version = eng_start_version(e);
	p->x = hetsgd_topo_alloc(e->plan.numa_node, ((size_t)p->len + 1) * sizeof(float));
	p->parts = malloc(((size_t)e->n * p->len + 1) * sizeof(float));
	p->has = calloc(e->n, 1);
	p->dead = calloc(e->n, 1);
	p->reply = calloc(e->n, 1);
	p->rflags = calloc(e->n, sizeof(*p->rflags));
	if (!p->x || !p->parts || !p->has || !p->dead || !p->reply || !p->rflags ||
	    fifo_init(&p->todo, e->n + 8)) {
		ret = algo_err(-ENOMEM, "shard server %u: out of memory for %u workers' parts of %u values",
			       p->j, e->n, p->len);
		goto out;
	}
	memcpy(p->x, e->io->x0 + lo, p->len * sizeof(float));
	bind_self(e, e->plan.progress_pu);
	e->on_down = pserver_down;
	e->down_ctx = p;
	e->t0 = p->last_recv = now_s();
	while (!p->stopped || p->pull) {
		int n = eng_poll(e, ev, 32, pserver_recv, p);

		if (n < 0) {
			ret = n;
			break;
		}
		ret = pserver_flush(p);
		if (!ret && !p->stopreq && hetsgd_engine_stop_signal()) {
			/* a signal to this rank stops the run as at its budget:
			 * rank 0 decides (as a worker's STOPREQ) */
			fill_hdr(&h, MSG_STOPREQ, (uint32_t)e->rank, 0,
				 (uint64_t)hetsgd_engine_stop_signal());
			ret = eng_send(e, 0, &h, NULL, NULL);
			if (!ret)
				p->stopreq = 1;
			else if (ret == -EAGAIN)
				ret = 0;
		}
		if (ret)
			break;
		if (now_s() - p->last_recv > e->stall_s) {
			ret = algo_err(-ETIMEDOUT, "shard server %u heard nothing from rank 0 or any worker for %.0f s: the server died or stalled",
				       p->j, e->stall_s);
			break;
		}
		if (!n) {
			struct timespec ts = { 0, 20000 };

			nanosleep(&ts, NULL);
		}
	}
	if (!ret) {
		memset(&ws, 0, sizeof(ws));
		ws.rounds = p->updates;
		ws.dropped = p->dropped;
		ws.elapsed_s = train_time(e, now_s());
		ws.sent = e->sent + 1;
		ws.bytes_sent = e->bytes_sent + HDR_BYTES + sizeof(ws);
		ws.bytes_recv = e->bytes_recv;
		ws.bytes_recv_train = e->bytes_recv_train;
		fill_hdr(&h, MSG_STATS, (uint32_t)e->rank, 0, p->version);
		ret = send_blocking(e, 0, &h, fill_stats, &ws);
	}
	if (!ret) {
		res->updates = p->updates;
		res->dropped = p->dropped;
		res->elapsed_s = train_time(e, now_s());
	}
out:
	e->on_down = NULL;
	if (p->x)
		hetsgd_topo_free(p->x, ((size_t)p->len + 1) * sizeof(float));
	free(p->parts);
	free(p->has);
	free(p->dead);
	free(p->reply);
	free(p->rflags);
	free(p->todo.q);
	return ret;
}

/* ================= rank 0 ================= */

enum ps0_state { PS_RUN, PS_STOPPED, PS_DONE, PS_LOST };

struct ps0 {
	uint32_t S;
	struct ps_fifo *out;	/* per shard (1 .. S - 1): orders to send */
	uint8_t *state;		/* per shard: enum ps0_state */
	unsigned pulling;	/* PULL_* of the gather under way; 0: none */
	uint8_t *pulled;	/* per shard: its part of the gather is in */
	uint32_t npulled;
	uint64_t pull_version;	/* rank 0's version when it began */
	uint64_t *pull_steps;	/* per worker: its steps then (a checkpoint's) */
	uint64_t pull_updates, pull_dropped;
	struct hetsgd_server_stats *st;
};

int ps0_init(struct server *s)
{
	struct eng *e = s->e;
	struct ps0 *q;

	if (e->nservers < 2)
		return 0;
	q = calloc(1, sizeof(*q));
	if (!q)
		return algo_err(-ENOMEM, "server: out of memory for %u shard servers", e->nservers);
	s->ps = q;
	q->S = e->nservers;
	q->out = calloc(q->S, sizeof(*q->out));
	q->state = calloc(q->S, 1);
	q->pulled = calloc(q->S, 1);
	q->st = calloc(q->S, sizeof(*q->st));
	q->pull_steps = calloc(e->n, sizeof(*q->pull_steps));
	if (!q->out || !q->state || !q->pulled || !q->st || !q->pull_steps)
		return algo_err(-ENOMEM, "server: out of memory for %u shard servers", q->S);
	for (uint32_t j = 0; j < q->S; j++) {
		q->st[j].shard = j;
		q->st[j].rank = ps_rank(e, j);
		ps_bounds(e, j, &q->st[j].lo, &q->st[j].hi);
		/* each worker has one gradient outstanding: n steps, a pull, a stop */
		if (j && fifo_init(&q->out[j], e->n + 8))
			return algo_err(-ENOMEM, "server: out of memory for %u shard servers", q->S);
	}
	return 0;
}

void ps0_fini(struct server *s)
{
	struct ps0 *q = s->ps;

	if (!q)
		return;
	for (uint32_t j = 0; q->out && j < q->S; j++)
		free(q->out[j].q);
	free(q->out);
	free(q->state);
	free(q->pulled);
	free(q->st);
	free(q->pull_steps);
	free(q);
	s->ps = NULL;
}

static int ps0_order(struct server *s, uint32_t j, uint16_t op, const struct wire_step *st)
{
	struct ps_item *it = fifo_push(&s->ps->out[j]);

	if (!it)
		return algo_err(-EOVERFLOW, "server: more than %u orders queued for shard server %u: it stopped reading",
				s->ps->out[j].cap, j);
	it->op = op;
	if (st)
		it->st = *st;
	return 0;
}

int ps0_step(struct server *s, uint32_t wk, double gamma, uint16_t flags)
{
	struct ps0 *q = s->ps;
	struct wire_step st = { .worker = wk, .flags = flags, .version = s->version, .gamma = gamma };
	int ret = 0;

	q->st[0].updates += !(flags & FLAG_DROPPED);
	q->st[0].dropped += !!(flags & FLAG_DROPPED);
	for (uint32_t j = 1; j < q->S && !ret; j++)
		ret = ps0_order(s, j, OP_STEP, &st);
	return ret;
}

/* Every shard is in: what the gather was for. */
static int ps0_pulled(struct server *s)
{
	struct eng *e = s->e;
	struct ps0 *q = s->ps;
	unsigned why = q->pulling;
	uint32_t lo, hi;
	int ret = 0;

	q->pulling = 0;
	if (why & PULL_FINAL)
		for (uint32_t j = 1; j < q->S; j++) {
			ps_bounds(e, j, &lo, &hi);
			memcpy(s->x + lo, s->xs + lo, (hi - lo) * sizeof(float));
		}
	if (why & PULL_EVAL)
		eval_submit(s, s->xs, 1.0);
	if (why & PULL_CKPT) {
		/* the checkpoint is of the state when the gather began */
		uint64_t updates = s->updates, dropped = s->dropped;

		s->updates = q->pull_updates;
		s->dropped = q->pull_dropped;
		ret = ckpt_take(s, s->xs, q->pull_steps, q->pull_version, now_s());
		s->updates = updates;
		s->dropped = dropped;
	}
	return ret;
}

int ps0_pull(struct server *s, unsigned why)
{
	struct eng *e = s->e;
	struct ps0 *q = s->ps;
	uint32_t lo, hi;
	int ret = 0;

	if (q->pulling) {
		/* the gather under way serves it: it is of a moment a little
		 * earlier, whole (never PULL_FINAL: ps0_finish waits first) */
		q->pulling |= why;
		return 0;
	}
	q->pulling = why;
	q->npulled = 0;
	/* the PULL goes after every STEP queued so far: each shard answers at
	 * exactly this version, and the workers' steps are those of now */
	q->pull_version = s->version;
	q->pull_updates = s->updates;
	q->pull_dropped = s->dropped;
	memcpy(q->pull_steps, s->steps, s->e->n * sizeof(*q->pull_steps));
	memset(q->pulled, 0, q->S);
	/* shard 0 as it is now; the others as their servers have them once
	 * the steps before the PULL are applied */
	ps_bounds(e, 0, &lo, &hi);
	memcpy(s->xs + lo, s->x + lo, (hi - lo) * sizeof(float));
	for (uint32_t j = 1; j < q->S && !ret; j++)
		ret = ps0_order(s, j, OP_PULL, NULL);
	return ret;
}

int ps0_recv(struct server *s, const struct hetsgd_ev *ev)
{
	struct eng *e = s->e;
	struct ps0 *q = s->ps;
	int j = ps_shard_of(e, ev->peer);
	struct eng_hdr h;
	struct hetsgd_block b;
	uint32_t lo, hi;
	int ret;

	if (!q || j < 1)
		return algo_err(-EPROTO, "a message from rank %d, which is neither a worker nor a shard server", ev->peer);
	ret = eng_parse(e, ev, &h, &b, ev->kind == MSG_SHARD);
	if (ret)
		return ret;
	if (h.type == MSG_ABORT)
		return peer_aborted(ev, &h);
	if (h.type == MSG_SHARD) {
		if (!q->pulling || q->pulled[j])
			return algo_err(-EPROTO, "shard server %d sent its shard unasked", j);
		ret = ps_want_shard(e, ev, &b, (uint32_t)j, 1, "its shard");
		if (ret)
			return ret;
		ps_bounds(e, (uint32_t)j, &lo, &hi);
		ret = block_take(ev->peer, s->xs + lo, b.val, hi - lo);
		if (ret)
			return ret;
		q->pulled[j] = 1;
		return ++q->npulled == q->S - 1 ? ps0_pulled(s) : 0;
	}
	if (h.type == MSG_STOPREQ) {
		/* a signal came to that rank: stop the run as at its budget */
		if (h.round < 1 || h.round > 64)
			return algo_err(-EPROTO, "shard server %d asked to stop for signal %llu, which is no signal",
					j, (unsigned long long)h.round);
		if (!s->stop_sig)
			s->stop_sig = (int)h.round;
		return 0;
	}
	if (h.type == MSG_STATS && q->state[j] == PS_STOPPED) {
		struct wire_stats w;

		if (h.body != sizeof(w))
			return algo_err(-EPROTO, "shard server %d sent statistics of %u bytes (expected %zu)",
					j, h.body, sizeof(w));
		memcpy(&w, (const char *)ev->data + HDR_BYTES, sizeof(w));
		q->st[j].updates = w.rounds;
		q->st[j].dropped = w.dropped;
		q->st[j].bytes_sent = w.bytes_sent;
		q->st[j].bytes_recv = w.bytes_recv;
		q->state[j] = PS_DONE;
		return 0;
	}
	return algo_err(-EPROTO, "shard server %d sent %s, which is not legal now: the ranks run different configurations",
			j, msg_names[h.type]);
}

int ps0_lost(struct server *s, const struct hetsgd_ev *ev)
{
	struct ps0 *q = s->ps;
	int j = q ? ps_shard_of(s->e, ev->peer) : -1;

	if (j < 1 || q->state[j] == PS_DONE)
		return 0;
	q->state[j] = PS_LOST;
	return algo_err(-EPIPE, "shard server %d (rank %d) failed: %s; coordinates [%u, %u) of the model were only there: resume from the last checkpoint (--checkpoint-every, --resume)",
			j, ev->peer, ev->why ? ev->why : "its connection ended", q->st[j].lo, q->st[j].hi);
}

static int fill_step(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	(void)e;
	if (cap < sizeof(struct wire_step))
		return algo_err(-ENOSPC, "a step does not fit a slot");
	memcpy(buf, arg, sizeof(struct wire_step));
	*len = sizeof(struct wire_step);
	return 0;
}

int ps0_flush(struct server *s)
{
	struct eng *e = s->e;
	struct ps0 *q = s->ps;

	for (uint32_t j = 1; j < q->S; j++) {
		struct ps_fifo *f = &q->out[j];
		struct ps_item *it;

		while ((it = fifo_head(f))) {
			struct eng_hdr h;
			int ret;

			if (it->op == OP_STEP) {
				fill_hdr(&h, MSG_STEP, 0, 0, it->st.version);
				ret = eng_send(e, ps_rank(e, j), &h, fill_step, &it->st);
			} else {
				fill_hdr(&h, it->op == OP_PULL ? MSG_PULL : MSG_STOP, 0, 0, s->version);
				ret = eng_send(e, ps_rank(e, j), &h, NULL, NULL);
			}
			if (ret == -EAGAIN)
				break;
			if (ret)
				return ret;
			fifo_pop(f);
		}
	}
	return 0;
}

/* What lands while rank 0 finishes: the shard servers' messages. */
static int ps0_landed(void *ctx, const struct hetsgd_ev *ev)
{
	struct server *s = ctx;

	s->e->bytes_recv += ev->len;
	if (ps_shard_of(s->e, ev->peer) > 0)
		return ps0_recv(s, ev);
	if (ev->kind == MSG_ABORT) {
		struct eng_hdr h;
		int ret = eng_parse(s->e, ev, &h, NULL, 0);

		return ret ? ret : peer_aborted(ev, &h);
	}
	return 0;	/* a done worker has nothing more to say */
}

/* Poll until done() or the stall time. */
static int ps0_wait(struct server *s, int (*done)(const struct ps0 *q), const char *what)
{
	struct eng *e = s->e;
	struct hetsgd_ev ev[16];
	double t0 = now_s();
	int ret;

	while (!done(s->ps)) {
		ret = ps0_flush(s);
		if (!ret)
			ret = eng_poll(e, ev, 16, ps0_landed, s);
		if (ret < 0)
			return ret;
		if (now_s() - t0 > e->stall_s)
			return algo_err(-ETIMEDOUT, "the server waited %.0f s for the shard servers' %s: one died or stalled",
					e->stall_s, what);
	}
	return 0;
}

static int pull_done(const struct ps0 *q)
{
	return !q->pulling;
}

static int stats_done(const struct ps0 *q)
{
	for (uint32_t j = 1; j < q->S; j++)
		if (q->state[j] == PS_STOPPED)
			return 0;
	return 1;
}

int ps0_finish(struct server *s, struct hetsgd_engine_result *res)
{
	struct ps0 *q = s->ps;
	int ret;

	/* a gather under way went out before the last steps: let it end,
	 * then gather again behind every step */
	ret = ps0_wait(s, pull_done, "shards");
	if (!ret)
		ret = ps0_pull(s, PULL_FINAL);
	if (!ret)
		ret = ps0_wait(s, pull_done, "final shards");
	for (uint32_t j = 1; j < q->S && !ret; j++) {
		ret = ps0_order(s, j, OP_STOP, NULL);
		q->state[j] = PS_STOPPED;
	}
	if (!ret)
		ret = ps0_wait(s, stats_done, "statistics");
	if (ret)
		return ret;
	q->st[0].bytes_sent = s->e->bytes_sent;
	q->st[0].bytes_recv = s->e->bytes_recv;
	res->servers = q->st;
	res->nservers = q->S;
	q->st = NULL;
	return 0;
}

/* ================= a worker ================= */

struct ps_worker {
	uint32_t next;		/* the next part to write: 1 .. S - 1, then 0 */
	uint8_t *got;		/* per shard: its part of the reply is in */
	uint32_t ngot;
	uint64_t ver;		/* the oldest version of the shards in */
	uint16_t flags;
};

int ps_worker_init(struct worker *w)
{
	struct eng *e = w->e;

	if (e->nservers < 2)
		return 0;
	w->ps = calloc(1, sizeof(*w->ps));
	if (w->ps)
		w->ps->got = calloc(e->nservers, 1);
	if (!w->ps || !w->ps->got)
		return algo_err(-ENOMEM, "worker %u: out of memory for %u shard servers", w->id,
				e->nservers);
	w->ps->next = 1;
	return 0;
}

void ps_worker_fini(struct worker *w)
{
	if (!w->ps)
		return;
	free(w->ps->got);
	free(w->ps);
	w->ps = NULL;
}

struct part_arg {
	struct worker *w;
	uint32_t j;
};

/* Shard j of the posted gradient: indexed when that is smaller. */
static int fill_part(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	const struct part_arg *a = arg;
	struct worker *w = a->w;
	struct hetsgd_block_hdr bh = { .kind = a->j ? MSG_PART : MSG_GRAD, .sender = (uint32_t)e->rank,
				       .dim = (uint32_t)e->d, .round = w->out_hdr.round };
	uint32_t lo, hi, first = 0, end;
	int ret;

	ps_bounds(e, a->j, &lo, &hi);
	while (first < w->out_nnz && w->out_nz[first] < lo)
		first++;
	for (end = first; end < w->out_nnz && w->out_nz[end] < hi; end++)
		;
	if (hetsgd_block_bytes(HETSGD_ENC_INDEXED, end - first) <
	    hetsgd_block_bytes(HETSGD_ENC_DENSE, hi - lo))
		ret = hetsgd_block_encode_sparse(buf, cap, &bh, w->out_nz + first, w->xs + first,
						 end - first, len);
	else
		ret = hetsgd_block_encode_dense(buf, cap, &bh, w->g + lo, lo, hi - lo, len);
	return ret ? algo_err(ret, "encoding a gradient's shard %u: %s", a->j, hetsgd_errmsg()) : 0;
}

int ps_worker_write(struct worker *w, int *done)
{
	struct eng *e = w->e;
	struct ps_worker *pw = w->ps;

	*done = 0;
	if (pw->next == 1) {
		/* the first part: the reply to gather starts empty (no shard
		 * answers before rank 0 has the GRAD, which goes last) */
		memset(pw->got, 0, e->nservers);
		pw->ngot = 0;
		pw->ver = UINT64_MAX;
		pw->flags = 0;
	}
	for (;;) {
		struct part_arg a = { .w = w, .j = pw->next };
		struct eng_hdr h = w->out_hdr;
		int ret;

		if (a.j)
			h.type = MSG_PART;
		ret = eng_send(e, ps_rank(e, a.j), &h, fill_part, &a);
		if (ret == -EAGAIN)
			return 0;
		if (ret)
			return ret;
		if (a.j == 0)
			break;
		pw->next = a.j + 1 < e->nservers ? a.j + 1 : 0;
	}
	pw->next = 1;
	*done = 1;
	return 0;
}

int ps_worker_inbox(struct worker *w, const struct hetsgd_ev *ev, const struct eng_hdr *h,
		    const struct hetsgd_block *b)
{
	struct eng *e = w->e;
	struct ps_worker *pw = w->ps;
	int j = ps_shard_of(e, ev->peer);
	uint32_t lo, hi;
	int ret;

	if (j < 0 || (j == 0) != (h->type == MSG_MODEL))
		return algo_err(-EPROTO, "rank %d sent %s to worker %u; a shard of the model comes as MODEL from rank 0 and as SHARD from shard servers",
				ev->peer, msg_names[h->type], w->id);
	if (pw->got[j])
		return algo_err(-EPROTO, "shard %d of the model came twice for one gradient of worker %u",
				j, w->id);
	ret = ps_want_shard(e, ev, b, (uint32_t)j, 1, "its shard of the model");
	if (ret)
		return ret;
	ps_bounds(e, (uint32_t)j, &lo, &hi);
	ret = block_take(ev->peer, w->in_vec + lo, b->val, hi - lo);
	if (ret)
		return ret;
	pw->got[j] = 1;
	if (h->round < pw->ver)
		pw->ver = h->round;
	pw->flags |= h->flags & FLAG_DROPPED;
	if (++pw->ngot == e->nservers)
		worker_reply_in(w, pw->ver, pw->flags);
	return 0;
}
