/*
 * The engine's messages (wire.h): header, parse, send, abort.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "wire.h"

const char *const msg_names[MSG_MAX] = {
	[MSG_GRAD] = "GRAD", [MSG_MODEL] = "MODEL", [MSG_ROUND] = "ROUND",
	[MSG_AVG] = "AVG", [MSG_SNAP] = "SNAP", [MSG_FINAL] = "FINAL",
	[MSG_STOP] = "STOP", [MSG_STATS] = "STATS", [MSG_ABORT] = "ABORT",
	[MSG_STOPREQ] = "STOPREQ", [MSG_PART] = "PART", [MSG_SHARD] = "SHARD",
	[MSG_NOTICE] = "NOTICE", [MSG_TICK] = "TICK", [MSG_SNAPREQ] = "SNAPREQ",
	[MSG_STEP] = "STEP", [MSG_PULL] = "PULL",
};

const char *signal_name(int sig, char *buf, size_t len)
{
	switch (sig) {
	case SIGTERM:
		return "SIGTERM";
	case SIGINT:
		return "SIGINT";
	case SIGHUP:
		return "SIGHUP";
	default:
		snprintf(buf, len, "signal %d", sig);
		return buf;
	}
}

void stats_from_wire(struct hetsgd_worker_stats *o, uint32_t wk,
		     const struct wire_stats *w)
{
	o->worker = wk;
	o->steps = w->steps;
	o->sent = w->sent;
	o->rounds = w->rounds;
	o->overlap_steps = w->overlap_steps;
	o->dropped = w->dropped;
	o->overruns = w->overruns;
	o->tau_target = w->tau_target;
	o->compute_s = w->compute_s;
	o->idle_s = w->idle_s;
	o->elapsed_s = w->elapsed_s;
	o->bytes_sent = w->bytes_sent;
	o->bytes_recv = w->bytes_recv;
	o->bytes_recv_training = w->bytes_recv_train;
}

void fill_hdr(struct eng_hdr *h, uint16_t type, uint32_t sender,
	      uint32_t body, uint64_t round)
{
	memset(h, 0, sizeof(*h));
	h->magic = ENG_MAGIC;
	h->type = type;
	h->sender = sender;
	h->body = body;
	h->round = round;
}

int eng_send(struct eng *e, int peer, struct eng_hdr *h, body_fn fill, void *arg)
{
	struct hetsgd_tx *tx;
	size_t blen = 0;
	int ret = hetsgd_tp_tx_get(e->tp, &tx);

	if (ret == -EAGAIN)
		return ret;
	if (ret)
		return tp_error(ret, "taking a send buffer");
	if (fill) {
		ret = fill(e, (char *)tx->data + HDR_BYTES, tx->cap - HDR_BYTES, &blen, arg);
		if (ret) {
			hetsgd_tp_tx_put(e->tp, tx);
			return ret;
		}
	}
	h->body = (uint32_t)blen;
	memcpy(tx->data, h, HDR_BYTES);
	ret = hetsgd_tp_put(e->tp, peer, tx, HDR_BYTES + blen, (uint8_t)h->type);
	hetsgd_tp_tx_put(e->tp, tx);
	if (ret == -EAGAIN)
		return ret;
	if (ret)
		return tp_error(ret, "writing a block");
	e->bytes_sent += HDR_BYTES + blen;
	e->sent++;
	return 0;
}

int eng_parse(struct eng *e, const struct hetsgd_ev *ev,
	      struct eng_hdr *h, struct hetsgd_block *blk, int want_block)
{
	int ret;

	if (ev->len < HDR_BYTES)
		return algo_err(-EPROTO, "rank %d sent %zu bytes, less than the %u-byte engine header: it runs another program",
				ev->peer, ev->len, HDR_BYTES);
	memcpy(h, ev->data, HDR_BYTES);
	if (h->magic != ENG_MAGIC)
		return algo_err(-EPROTO, "rank %d sent a message with magic 0x%08x, not hetsgd's engine: it runs another program",
				ev->peer, h->magic);
	if (h->type == 0 || h->type >= MSG_MAX || h->type != ev->kind)
		return algo_err(-EPROTO, "rank %d sent message type %u (transport kind %u)",
				ev->peer, h->type, ev->kind);
	if (h->sender != (uint32_t)ev->peer || h->body != ev->len - HDR_BYTES)
		return algo_err(-EPROTO, "rank %d sent a %s header claiming sender %u and %u body bytes (%zu landed)",
				ev->peer, msg_names[h->type], h->sender, h->body,
				ev->len - HDR_BYTES);
	if (!isfinite(h->tau) || h->tau < 0 || !isfinite(h->idle) || h->idle < 0 ||
	    !isfinite(h->elapsed) || h->elapsed < 0 || !isfinite(h->compute) || h->compute < 0)
		return algo_err(-EPROTO, "rank %d sent %s with a bad time (tau %g, idle %g, elapsed %g)",
				ev->peer, msg_names[h->type], h->tau, h->idle, h->elapsed);
	if (!want_block)
		return 0;
	ret = hetsgd_block_decode((const char *)ev->data + HDR_BYTES, h->body, &e->lim, blk);
	if (ret)
		return algo_err(ret, "rank %d sent a bad %s block: %s", ev->peer,
				msg_names[h->type], hetsgd_errmsg());
	if (blk->sender != (uint32_t)ev->peer || blk->kind != h->type || blk->round != h->round)
		return algo_err(-EPROTO, "rank %d sent a %s block whose header disagrees with the message (sender %u, kind %u, round %llu)",
				ev->peer, msg_names[h->type], blk->sender, blk->kind,
				(unsigned long long)blk->round);
	return 0;
}

int want_full(const struct hetsgd_ev *ev, const struct hetsgd_block *b, const char *what)
{
	if (b->encoding != HETSGD_ENC_DENSE || b->first != 0 || b->count != b->dim)
		return algo_err(-EPROTO, "rank %d sent %s as a %s block of %u values from %u; expected the whole model, dense",
				ev->peer, what, b->encoding == HETSGD_ENC_DENSE ? "dense" : "sparse",
				b->count, b->first);
	return 0;
}

int want_masked(struct eng *e, const struct hetsgd_ev *ev, const struct hetsgd_block *b,
		uint64_t round, const char *what)
{
	if (b->encoding != HETSGD_ENC_MASKED || b->seed != e->mask_seed || b->round != round ||
	    b->count != e->k)
		return algo_err(-EPROTO, "rank %d sent %s as encoding %d, seed %llu, round %llu, %u values; expected the mask of seed %llu, round %llu, K = %u: the ranks run different configurations",
				ev->peer, what, (int)b->encoding, (unsigned long long)b->seed,
				(unsigned long long)b->round, b->count,
				(unsigned long long)e->mask_seed, (unsigned long long)round, e->k);
	return 0;
}

/* Arguments of fill_dense: the message's kind and round, and the vector. */
struct dense_arg {
	uint16_t kind;
	uint64_t round;
	const float *x;
	uint32_t first, count;
};

static int fill_dense(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	const struct dense_arg *a = arg;
	struct hetsgd_block_hdr bh = { .kind = a->kind, .sender = (uint32_t)e->rank,
				       .dim = (uint32_t)e->d, .round = a->round };
	int ret = hetsgd_block_encode_dense(buf, cap, &bh, a->x, a->first, a->count, len);

	return ret ? algo_err(ret, "encoding a model block: %s", hetsgd_errmsg()) : 0;
}

int send_dense(struct eng *e, int peer, struct eng_hdr *h, const float *x)
{
	struct dense_arg a = { .kind = h->type, .round = h->round, .x = x, .count = (uint32_t)e->d };

	return eng_send(e, peer, h, fill_dense, &a);
}

int send_dense_blocking(struct eng *e, int peer, struct eng_hdr *h, const float *x)
{
	struct dense_arg a = { .kind = h->type, .round = h->round, .x = x, .count = (uint32_t)e->d };

	return send_blocking(e, peer, h, fill_dense, &a);
}

int send_dense_range(struct eng *e, int peer, struct eng_hdr *h, const float *x,
		     uint32_t first, uint32_t count)
{
	struct dense_arg a = { .kind = h->type, .round = h->round, .x = x, .first = first,
			       .count = count };

	return eng_send(e, peer, h, fill_dense, &a);
}

int eng_poll(struct eng *e, struct hetsgd_ev *ev, int max, recv_fn on_recv, void *ctx)
{
	int n = hetsgd_tp_progress(e->tp, ev, max), ret;

	if (n < 0)
		return tp_error(n, "the transport failed");
	for (int i = 0; i < n; i++) {
		if (ev[i].type == HETSGD_EV_PEER_DOWN && e->on_down) {
			ret = e->on_down(e->down_ctx, &ev[i]);
			if (ret)
				return ret;
		}
		if (ev[i].type != HETSGD_EV_RECV)
			continue;
		ret = on_recv ? on_recv(ctx, &ev[i]) : 0;
		if (ret)
			return ret;
		ret = hetsgd_tp_release(e->tp, ev[i].peer, ev[i].slot);
		if (ret)
			return tp_error(ret, "releasing a slot");
	}
	return n;
}

/* While the last messages go out: ABORT fails, anything else is dropped. */
static int recv_last(void *ctx, const struct hetsgd_ev *ev)
{
	struct eng_hdr ah;
	int ret;

	if (ev->kind != MSG_ABORT)
		return 0;
	ret = eng_parse(ctx, ev, &ah, NULL, 0);
	return ret ? ret : peer_aborted(ev, &ah);
}

int send_blocking(struct eng *e, int peer, struct eng_hdr *h, body_fn fill, void *arg)
{
	struct hetsgd_ev ev[16];
	double t0 = now_s();
	int ret, n;

	while ((ret = eng_send(e, peer, h, fill, arg)) == -EAGAIN) {
		n = eng_poll(e, ev, 16, recv_last, e);
		if (n < 0)
			return n;
		if (now_s() - t0 > e->stall_s)
			return algo_err(-ETIMEDOUT, "rank %d could not write to rank %d for %.0f s: it stopped reading",
					e->rank, peer, e->stall_s);
	}
	return ret;
}

static int fill_reason(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	size_t n = strlen(arg);

	(void)e;
	if (n > ABORT_MAX)
		n = ABORT_MAX;
	if (n > cap)
		n = cap;
	memcpy(buf, arg, n);
	*len = n;
	return 0;
}

/*
 * Tell a peer that this rank failed, so that it fails at once with the
 * reason instead of waiting out the stall time (shm cannot see a peer
 * die).  Best effort, for half a second: the endpoint may be broken.
 */
static void send_abort(struct eng *e, int peer, const char *why)
{
	struct hetsgd_ev ev[16];
	struct eng_hdr h;
	double t0 = now_s();
	char msg[ABORT_MAX + 1];

	snprintf(msg, sizeof(msg), "%s", why);
	e->abort_sent = 1;
	if (!hetsgd_tp_peer_up(e->tp, peer))
		return;
	fill_hdr(&h, MSG_ABORT, (uint32_t)e->rank, 0, 0);
	while (eng_send(e, peer, &h, fill_reason, msg) == -EAGAIN && now_s() - t0 < 0.5)
		if (eng_poll(e, ev, 16, NULL, NULL) < 0)
			return;
}

int peer_aborted(const struct hetsgd_ev *ev, const struct eng_hdr *h)
{
	char why[ABORT_MAX + 1];
	size_t n = h->body > ABORT_MAX ? ABORT_MAX : h->body;

	memcpy(why, (const char *)ev->data + HDR_BYTES, n);
	why[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)why[i] < 0x20 || (unsigned char)why[i] > 0x7e)
			why[i] = '?';	/* a peer's text goes to a terminal */
	return algo_err(-ECONNABORTED, "rank %d failed: %s", ev->peer, why);
}

int fill_stats(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	(void)e;
	if (cap < sizeof(struct wire_stats))
		return algo_err(-ENOSPC, "statistics do not fit a slot");
	memcpy(buf, arg, sizeof(struct wire_stats));
	*len = sizeof(struct wire_stats);
	return 0;
}

void abort_peers(struct eng *e, const char *why)
{
	char reason[ABORT_MAX + 1], msg[1024];

	snprintf(reason, sizeof(reason), "%s", why);
	/* a peer that is down refuses the put: keep this rank's message */
	snprintf(msg, sizeof(msg), "%s", hetsgd_errmsg());
	if (e->rank == 0)
		for (int r = 1; r < e->size; r++)
			send_abort(e, r, reason);
	else
		send_abort(e, 0, reason);
	algo_err(0, "%s", msg);
}

static int value_changed(int peer, size_t j, float v)
{
	return algo_err(-EPROTO, "rank %d changed value %zu of its block to %g after it was checked: that rank is broken or hostile",
			peer, j, (double)v);
}

int block_axpy(int peer, float *x, const struct hetsgd_block *b, float gamma)
{
	const volatile float *val = b->val;	/* one read per value */

	if (b->encoding == HETSGD_ENC_INDEXED) {
		for (uint32_t j = 0; j < b->count; j++) {
			float v = val[j];

			if (!isfinite(v))
				return value_changed(peer, j, v);
			x[b->idx[j]] -= gamma * v;
		}
		return 0;
	}
	x += b->first;
	for (uint32_t j = 0; j < b->count; j++) {
		float v = val[j];

		if (!isfinite(v))
			return value_changed(peer, j, v);
		x[j] -= gamma * v;	/* sgd_step's arithmetic, to the bit */
	}
	return 0;
}

/* dst[j] = v (add = 0) or dst[j] += v (add = 1), each v read once and checked. */
static int move_values(int peer, float *dst, const float *vals, size_t n, int add)
{
	const volatile float *val = vals;

	for (size_t j = 0; j < n; j++) {
		float v = val[j];

		if (!isfinite(v))
			return value_changed(peer, j, v);
		dst[j] = add ? dst[j] + v : v;
	}
	return 0;
}

int block_add(int peer, float *acc, const float *val, size_t n)
{
	return move_values(peer, acc, val, n, 1);
}

int block_take(int peer, float *dst, const float *val, size_t n)
{
	return move_values(peer, dst, val, n, 0);
}
