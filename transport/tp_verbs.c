/*
 * verbs provider: one RC queue pair per pair of ranks, set up with rdma_cm.
 *
 * Memory, registered once at open.  Each peer p gets a protection domain
 * of its own, holding only its queue pair and what it may touch, so that
 * a key handed to p reaches p's ring and nothing else (a remote key works
 * only through a queue pair of the memory region's domain):
 *   region p  p's staging ring (`slots` slots) and, after it, the credit
 *             line where p RDMA-writes how many of our blocks it has
 *             released (contiguous prefix, monotonic); registered for
 *             remote write in p's domain, its key sent to p alone, in the
 *             authenticated connection handshake (conn_auth.c)
 *   csrc      the source words of the credit writes we send (local)
 *   tx        the send buffers, registered in every peer's domain (local)
 * A landed block is copied out of the ring before anyone reads it
 * (tp_recv_landed): p holds the key to its ring and may still write there.
 * A put is one signalled RDMA_WRITE_WITH_IMM into the peer's ring; the
 * immediate carries a tag, the kind and the slot, and its receive
 * completion is the only sign that the data landed.  A release is one
 * RDMA_WRITE of a counter, sent once half a ring has been released and
 * mostly unsignalled; one in every sq_depth/2 is signalled so that the
 * send queue always drains.
 *
 * Close: once its own writes have completed, a rank says bye to each live
 * peer with a zero-length RDMA_WRITE_WITH_IMM whose immediate names no
 * slot (BYE_SLOT): it needs no credit, only the one receive kept for it
 * beyond the slots.  On a reliable connection it lands after every
 * earlier write of that rank, and its local completion means the peer's
 * NIC has it; after it the rank writes nothing more to that peer (no
 * credit goes out while closing).
 *
 * Queue pairs are created by us and moved to RTR/RTS by hand (not by
 * rdma_cm) so that the path MTU is the minimum of both ends' active MTU
 * and the RoCE GID is the one we chose; rnr_retry is 7 (infinite) since a
 * WRITE_WITH_IMM consumes a receive and we re-post them as they are used.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_verbs_priv.h"

/* ---- data path -------------------------------------------------------------- */

static uint32_t sq_room(struct verbs_state *st, struct vpeer *p)
{
	return st->sq_depth - (uint32_t)(p->sq_posted - p->sq_done);
}

static int post_write(struct verbs_state *st, int peer, struct ibv_send_wr *wr,
		      int signal, uint8_t type, uint32_t tx, uint8_t kind)
{
	struct vpeer *p = &st->peers[peer];
	struct ibv_send_wr *bad;
	int ret;

	/*
	 * Every WR names its peer, signalled or not: an unsignalled one
	 * (a lazy credit write) still completes, with an error, when its
	 * queue pair is flushed, and handle_wc blames the rank in wr_id.
	 * Left at 0 it blamed rank 0 for another peer's death, and a
	 * worker that wrote to a dead worker took the server for dead.
	 */
	wr->wr_id = (uint64_t)peer;
	if (signal) {
		struct sig_rec *rec = &p->sig[p->sig_tail % st->sq_depth];

		rec->sq_seq = p->sq_posted + 1;
		rec->type = type;
		rec->tx = tx;
		rec->kind = kind;
		wr->send_flags |= IBV_SEND_SIGNALED;
	}
	ret = ibv_post_send(p->qp, wr, &bad);
	if (ret)
		return hetsgd_err(-ret, "ibv_post_send to rank %d: %s", peer, strerror(ret));
	p->sq_posted++;
	if (signal) {
		p->sig_tail++;
		p->unsig = 0;
	} else {
		p->unsig++;
	}
	return 0;
}

enum { CREDIT_LAZY, CREDIT_NOW, CREDIT_SIGNALLED };

/*
 * Credits not sent for this long go out even below the batch size.  Only
 * a sender whose receiver holds more than half of the ring ever waits for
 * this; shorter, and every ping-pong (idle longer than its round trip
 * between blocks) would pay a credit write per block again.
 */
#define CREDIT_MAX_DELAY_S 1e-3

/*
 * Tell peer how many of its blocks we released, if it does not know yet.
 * Lazily, credits go out in batches of half a ring: a ping-pong then pays
 * one credit write per slots/2 blocks instead of one per block.  A batch
 * that is not full goes out once it has waited CREDIT_MAX_DELAY_S (checked
 * from progress), so a sender blocked on credits the caller has already
 * released always learns of them, whatever the caller still holds.
 */
static int flush_credit(struct hetsgd_tp *tp, struct verbs_state *st, int peer, int mode)
{
	struct vpeer *p = &st->peers[peer];
	uint64_t *src = (uint64_t *)(st->csrc + (size_t)peer * CREDIT_STRIDE);
	struct ibv_sge sge = { .addr = (uintptr_t)src, .length = sizeof(uint64_t), .lkey = p->csrc_mr->lkey };
	struct ibv_send_wr wr = { 0 };
	int signal, ret;

	if (p->credit_val == p->credit_sent && mode != CREDIT_SIGNALLED)
		return 0;
	if (mode == CREDIT_LAZY && p->credit_val - p->credit_sent < (tp->attr.slots + 1) / 2)
		return 0;
	if (sq_room(st, p) < 1)
		return 0;	/* retried from progress once the queue drains */
	/* The word only grows, so a NIC reading a newer value is still right. */
	__atomic_store_n(src, p->credit_val, __ATOMIC_RELEASE);
	wr.opcode = IBV_WR_RDMA_WRITE;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	/* The credit line follows our ring in the region the peer gave us. */
	wr.wr.rdma.remote_addr = p->ring + st->ring_bytes;
	wr.wr.rdma.rkey = p->rkey;
	signal = mode == CREDIT_SIGNALLED || p->unsig + 1 >= st->sq_depth / 2;
	ret = post_write(st, peer, &wr, signal, SIG_CREDIT, 0, 0);
	if (!ret) {
		p->credit_sent = p->credit_val;
		p->credit_since = 0;
	}
	return ret;
}

static int verbs_put(struct hetsgd_tp *tp, int peer, struct tp_tx *tx, size_t len, uint8_t kind)
{
	struct verbs_state *st = tp->priv;
	struct vpeer *p = &st->peers[peer];
	uint64_t rel = __atomic_load_n(credit_in(st, peer), __ATOMIC_ACQUIRE);
	struct ibv_sge sge = { .addr = (uintptr_t)tx->pub.data, .length = (uint32_t)len, .lkey = p->tx_mr->lkey };
	struct ibv_send_wr wr = { 0 };
	uint32_t slot;
	int ret;

	if (rel > p->sent)
		return hetsgd_err(-EPROTO, "rank %d says it released %llu of our blocks, but we sent %llu",
				  peer, (unsigned long long)rel, (unsigned long long)p->sent);
	if (p->sent - rel >= tp->attr.slots || sq_room(st, p) < 2)
		return -EAGAIN;
	slot = (uint32_t)(p->sent % tp->attr.slots);
	wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
	if (len <= p->max_inline)
		wr.send_flags = IBV_SEND_INLINE;
	wr.imm_data = htonl(IMM_TAG << 24 | (uint32_t)kind << 16 | slot);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.wr.rdma.remote_addr = p->ring + (uint64_t)slot * tp->attr.slot_bytes;
	wr.wr.rdma.rkey = p->rkey;
	ret = post_write(st, peer, &wr, 1, SIG_DATA, tx->index, kind);
	if (ret)
		return ret;
	p->sent++;
	return 0;
}

static const char *wc_hint(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_RETRY_EXC_ERR:
		return "the peer stopped answering: it died, or the GID/MTU do not match (HETSGD_GID_INDEX)";
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return "the peer had no receive posted";
	case IBV_WC_REM_ACCESS_ERR:
		return "the peer's memory key or address was refused";
	case IBV_WC_WR_FLUSH_ERR:
		return "the connection was already broken, by an earlier error on it (a peer that writes where "
		       "it has no right to breaks its own connection)";
	default:
		return "see ibv_wc_status_str";
	}
}

/*
 * The connection with peer is over (its process ended, its host failed, a
 * completion on its queue pair failed): that pair's queue pair alone goes
 * to ERROR, so whatever is still posted on it is flushed, and the puts
 * still in flight to it are given back now.  The NIC may read such a
 * buffer a moment longer; it can only send it to the dead peer.  Later
 * completions of that queue pair are ignored (handle_wc).
 */
static void verbs_peer_down(struct hetsgd_tp *tp, struct verbs_state *st, int peer, const char *why)
{
	struct vpeer *p = &st->peers[peer];
	struct ibv_qp_attr qa = { .qp_state = IBV_QPS_ERR };

	if (tp->down[peer])
		return;
	if (p->qp)
		(void)ibv_modify_qp(p->qp, &qa, IBV_QP_STATE);
	tp_peer_down(tp, peer, "%s", why);
	while (p->sig_head != p->sig_tail) {
		struct sig_rec *rec = &p->sig[p->sig_head++ % st->sq_depth];

		if (rec->type == SIG_DATA)
			tp_put_completed(tp, peer, &tp->txs[rec->tx], rec->kind);
	}
	p->sq_done = p->sq_posted;
	p->established = 0;
}

/* Handle one completion; events go to the FIFO unless !deliver (closing). */
static int handle_wc(struct hetsgd_tp *tp, struct verbs_state *st, struct ibv_wc *wc, int deliver)
{
	int peer = (int)wc->wr_id;
	char why[192];

	if (peer < 0 || peer >= tp->size)
		return hetsgd_err(-EPROTO, "completion with unknown wr_id %" PRIu64, wc->wr_id);
	if (tp->down[peer])
		return 0;	/* flushed, or landed after it was reported down */
	if (wc->status != IBV_WC_SUCCESS) {
		/* A failed completion breaks that pair's queue pair, no other. */
		snprintf(why, sizeof(why), "%s rank %d failed: %s (vendor error 0x%x): %s",
			 (wc->opcode & IBV_WC_RECV) ? "receive from" : "write to", peer,
			 ibv_wc_status_str(wc->status), wc->vendor_err, wc_hint(wc->status));
		verbs_peer_down(tp, st, peer, why);
		return 0;
	}
	if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
		uint32_t imm = ntohl(wc->imm_data), slot = imm & 0xffff;
		int ret;

		if (!(wc->wc_flags & IBV_WC_WITH_IMM) || imm >> 24 != IMM_TAG ||
		    (slot >= tp->attr.slots && slot != BYE_SLOT))
			return hetsgd_err(-EPROTO, "rank %d sent immediate 0x%08x, not a hetsgd block "
					  "(tag 0x%02x, slot < %u)", peer, imm, IMM_TAG, tp->attr.slots);
		if (slot == BYE_SLOT) {
			/* it may come before this rank closes: kept for close */
			tp_bye_landed(tp, peer);
			return verbs_post_recv(st, peer);
		}
		/* closing: the block is dropped, its receive put back for a bye */
		if (!deliver)
			return verbs_post_recv(st, peer);
		ret = tp_recv_landed(tp, peer, slot, region(st, peer) + (size_t)slot * tp->attr.slot_bytes,
				     wc->byte_len, (uint8_t)(imm >> 16));
		return ret ? ret : verbs_post_recv(st, peer);
	}
	if (wc->opcode == IBV_WC_RDMA_WRITE) {
		struct vpeer *p = &st->peers[peer];
		struct sig_rec *rec;

		if (p->sig_head == p->sig_tail)
			return hetsgd_err(-EPROTO, "unexpected send completion for rank %d", peer);
		rec = &p->sig[p->sig_head++ % st->sq_depth];
		p->sq_done = rec->sq_seq;
		if (rec->type == SIG_BYE)
			tp_bye_sent(tp, peer);
		if (rec->type != SIG_DATA)
			return 0;
		if (deliver) {
			tp_put_completed(tp, peer, &tp->txs[rec->tx], rec->kind);
		} else {
			tp->txs[rec->tx].inflight--;
			tp->inflight_puts--;
		}
		return 0;
	}
	return hetsgd_err(-EPROTO, "unexpected completion opcode %d from rank %d", wc->opcode, peer);
}

/*
 * A peer whose process ends sends a disconnect through rdma_cm (checked
 * every CM_EVERY progress calls or CM_S seconds, whichever comes first:
 * each check is a system call).  Only the CM sees it: a sender blocked on
 * credits has nothing in flight that could time out.  Before close (which
 * is collective) no disconnect is expected, so a CM event on a peer's
 * connection now is the end of that peer (PEER_DOWN), not of the
 * endpoint.  Lateness is never taken for death: only the connection's
 * end or a failed completion is.
 * A connection request now comes from a stranger or a rank that is not of
 * this job (every rank is connected): it is refused, and the job goes on.
 */
static int check_cm_events(struct hetsgd_tp *tp, struct verbs_state *st)
{
	struct rdma_cm_event *ev;
	enum rdma_cm_event_type type;
	int peer;

	for (;;) {
		if (rdma_get_cm_event(st->ec, &ev))
			return errno == EAGAIN ? 0 : hetsgd_err(-errno, "rdma_get_cm_event: %s", strerror(errno));
		type = ev->event;
		peer = (int)(intptr_t)ev->id->context;
		if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			struct rdma_cm_id *id = ev->id;

			verbs_refuse(tp, st, id, "every rank of this job is already connected");
			rdma_ack_cm_event(ev);
			rdma_destroy_id(id);
			continue;
		}
		rdma_ack_cm_event(ev);
		if (peer < 0 || peer >= tp->size || peer == tp->rank)
			continue;	/* a refused stranger's id, or a test's */
		{
			char why[192];

			snprintf(why, sizeof(why), "rank %d: connection with rank %d ended (%s): that rank's process "
				 "exited or failed before closing the transport", tp->rank, peer, rdma_event_str(type));
			verbs_peer_down(tp, st, peer, why);
		}
	}
}

static int verbs_progress(struct hetsgd_tp *tp)
{
	struct verbs_state *st = tp->priv;
	struct ibv_wc wc[POLL_BATCH];
	double now = 0;
	int j, n, i, ret;

	for (;;) {
		int max = (int)tp_evq_room(tp);

		if (max > POLL_BATCH)
			max = POLL_BATCH;
		if (max <= 0)
			break;
		n = ibv_poll_cq(st->cq, max, wc);
		if (n < 0)
			return hetsgd_err(-EIO, "ibv_poll_cq on %s failed", st->dev);
		for (i = 0; i < n; i++) {
			ret = handle_wc(tp, st, &wc[i], 1);
			if (ret)
				return ret;
		}
		if (n < max)
			break;
	}
	/*
	 * Credits that waited long enough, or found the queue full, go out
	 * now.  The clock is read once every CLOCK_EVERY calls: without a
	 * stable TSC (virtual machines) it is a system call, and a spinning
	 * caller would pay one per poll.
	 */
	/* A peer's death is rare news: look for it far less often than for credits. */
	if (++st->clock_countdown >= CLOCK_EVERY) {
		st->clock_countdown = 0;
		now = now_s();
		if (now - st->cm_last >= CM_S)
			st->cm_countdown = CM_EVERY;
	}
	if (++st->cm_countdown >= CM_EVERY) {
		st->cm_countdown = 0;
		st->cm_last = now ? now : now_s();
		ret = check_cm_events(tp, st);
		if (ret)
			return ret;
	}
	if (now) {
		for (j = 0; j < tp->size; j++) {
			struct vpeer *p = &st->peers[j];

			if (j == tp->rank || tp->down[j] || p->credit_val == p->credit_sent)
				continue;
			ret = flush_credit(tp, st, j, now - p->credit_since >= CREDIT_MAX_DELAY_S ? CREDIT_NOW
												     : CREDIT_LAZY);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int verbs_release(struct hetsgd_tp *tp, int peer, uint32_t slot)
{
	struct verbs_state *st = tp->priv;
	int64_t head = tp_release_slot(tp, peer, slot);

	if (head < 0)
		return (int)head;
	/* When the batch started: the first release after a flush. */
	if (!st->peers[peer].credit_since && (uint64_t)head != st->peers[peer].credit_sent)
		st->peers[peer].credit_since = now_s();
	st->peers[peer].credit_val = (uint64_t)head;
	return flush_credit(tp, st, peer, CREDIT_LAZY);
}

static int verbs_quiesce(struct hetsgd_tp *tp)
{
	struct verbs_state *st = tp->priv;
	double deadline = now_s() + 30;
	int j, ret, busy = 1;

	while (busy) {
		struct ibv_wc wc[POLL_BATCH];
		int n, i;

		busy = 0;
		for (j = 0; j < tp->size; j++) {
			struct vpeer *p = &st->peers[j];

			if (j == tp->rank || tp->down[j])
				continue;
			/* A signalled write at the tail proves all before it completed. */
			if (p->credit_val != p->credit_sent || (p->unsig && p->sq_posted > p->sq_done &&
								 p->sig_head == p->sig_tail)) {
				ret = flush_credit(tp, st, j, CREDIT_SIGNALLED);
				if (ret)
					return ret;
			}
			if (p->sq_posted != p->sq_done)
				busy = 1;
		}
		if (!busy)
			break;
		if (now_s() > deadline)
			return hetsgd_err(-ETIMEDOUT, "rank %d: own writes did not complete within 30 s at close",
					  tp->rank);
		n = ibv_poll_cq(st->cq, POLL_BATCH, wc);
		if (n < 0)
			return hetsgd_err(-EIO, "ibv_poll_cq failed");
		/* Nothing is delivered now: the caller is closing. */
		for (i = 0; i < n; i++) {
			ret = handle_wc(tp, st, &wc[i], 0);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int verbs_bye(struct hetsgd_tp *tp, int peer)
{
	struct verbs_state *st = tp->priv;
	struct vpeer *p = &st->peers[peer];
	struct ibv_send_wr wr = { 0 };

	if (sq_room(st, p) < 1)
		return -EAGAIN;
	wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
	wr.imm_data = htonl(IMM_TAG << 24 | BYE_SLOT);
	wr.num_sge = 0;
	wr.wr.rdma.remote_addr = p->ring;
	wr.wr.rdma.rkey = p->rkey;
	return post_write(st, peer, &wr, 1, SIG_BYE, 0, 0);
}

/* Completions and connection events while closing: nothing delivered. */
static int verbs_farewell(struct hetsgd_tp *tp)
{
	struct verbs_state *st = tp->priv;
	struct ibv_wc wc[POLL_BATCH];
	int n, i, ret;

	do {
		n = ibv_poll_cq(st->cq, POLL_BATCH, wc);
		if (n < 0)
			return hetsgd_err(-EIO, "ibv_poll_cq on %s failed", st->dev);
		for (i = 0; i < n; i++) {
			ret = handle_wc(tp, st, &wc[i], 0);
			if (ret)
				return ret;
		}
	} while (n == POLL_BATCH);
	/* the loop sleeps between calls: a peer's end is looked for each time */
	return check_cm_events(tp, st);
}

static void verbs_close(struct hetsgd_tp *tp)
{
	if (tp->priv)
		verbs_teardown(tp, tp->priv);
	tp->priv = NULL;
}

#ifdef HETSGD_TEST_HOOKS
/*
 * A hostile peer's writes.  It knows its own ring at peer (address and
 * key) and, since every rank lays out its regions alike, where another
 * rank's credit line would be: the key it holds must not reach it.
 */
static int verbs_test_write(struct hetsgd_tp *tp, int peer, int target, int victim, uint32_t slot,
			    size_t off, const void *data, size_t len)
{
	struct verbs_state *st = tp->priv;
	struct vpeer *p = &st->peers[peer];
	struct ibv_sge sge = { .addr = (uintptr_t)data, .length = (uint32_t)len };
	struct ibv_send_wr wr = { 0 };

	if (len > p->max_inline || sq_room(st, p) < 1)
		return hetsgd_err(-ENOTSUP, "test write: %zu bytes do not go inline, or the queue is full", len);
	wr.opcode = IBV_WR_RDMA_WRITE;
	wr.send_flags = IBV_SEND_INLINE;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.wr.rdma.rkey = p->rkey;
	switch (target) {
	case TP_TEST_SLOT:
		wr.wr.rdma.remote_addr = p->ring + (uint64_t)slot * tp->attr.slot_bytes + off;
		break;
	case TP_TEST_REPLAY:
		wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
		wr.imm_data = htonl(IMM_TAG << 24 | 1u << 16 | slot);
		wr.wr.rdma.remote_addr = p->ring + (uint64_t)slot * tp->attr.slot_bytes;
		break;
	case TP_TEST_CREDIT:
		wr.wr.rdma.remote_addr = p->ring + (uint64_t)((int64_t)(victim - tp->rank) *
							       (int64_t)st->region_bytes) + st->ring_bytes;
		break;
	default:
		return -EINVAL;
	}
	return post_write(st, peer, &wr, 1, SIG_TEST, 0, 0);
}
#define VERBS_TEST_WRITE verbs_test_write
#else
#define VERBS_TEST_WRITE NULL
#endif

const struct tp_provider hetsgd_tp_verbs = {
	.name = "verbs",
	.what = "InfiniBand, RoCE, rxe",
	.open = verbs_open,
	.put = verbs_put,
	.progress = verbs_progress,
	.release = verbs_release,
	.quiesce = verbs_quiesce,
	.bye = verbs_bye,
	.farewell = verbs_farewell,
	.close = verbs_close,
	.test_write = VERBS_TEST_WRITE,
};
