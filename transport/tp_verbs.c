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

/*
 * Give peer's chain to the device: one ibv_post_send of the list, one
 * doorbell (on rxe one system call, in which the kernel also moves the
 * packets).  The writes were counted when appended; a failure here fails
 * the endpoint, as a failed single post does.
 */
static int chain_flush(struct verbs_state *st, int peer)
{
	struct vpeer *p = &st->peers[peer];
	struct ibv_send_wr *bad;
	uint32_t n = p->chain_len;
	int ret;

	if (!n)
		return 0;
	p->chain[n - 1].next = NULL;
	p->chain_len = 0;
	st->chained--;
	if (p->chain_puts)
		(*st->doorbells)++;
	p->chain_puts = 0;
	ret = ibv_post_send(p->qp, p->chain, &bad);
	if (ret)
		return hetsgd_err(-ret, "ibv_post_send of %u write%s to rank %d: %s", n, n > 1 ? "s" : "", peer,
				  strerror(ret));
	return 0;
}

static int chains_flush(struct hetsgd_tp *tp, struct verbs_state *st)
{
	int j, ret;

	for (j = 0; j < tp->size && st->chained; j++) {
		ret = chain_flush(st, j);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Append wr to peer's chain (copied, with its one scatter entry) and, unless
 * more, post the chain; a full chain is posted too.  Every write goes
 * through here, so the device sees them in the order they were appended,
 * which is the order the send-queue records (sig) assume.
 */
static int queue_write(struct verbs_state *st, int peer, struct ibv_send_wr *wr,
		       int signal, uint8_t type, uint32_t tx, uint8_t kind, int more)
{
	struct vpeer *p = &st->peers[peer];
	struct ibv_send_wr *c;

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
		rec->len = wr->num_sge ? wr->sg_list[0].length : 0;
		wr->send_flags |= IBV_SEND_SIGNALED;
	}
	c = &p->chain[p->chain_len];
	*c = *wr;
	if (wr->num_sge) {
		p->chain_sge[p->chain_len] = wr->sg_list[0];
		c->sg_list = &p->chain_sge[p->chain_len];
		c->num_sge = 1;
	}
	if (p->chain_len > 0)
		p->chain[p->chain_len - 1].next = c;
	else
		st->chained++;
	p->chain_len++;
	if (type == SIG_DATA || type == SIG_POLLED)
		p->chain_puts++;
	p->sq_posted++;
	if (signal) {
		p->sig_tail++;
		p->unsig = 0;
	} else {
		p->unsig++;
	}
	return more && p->chain_len < HETSGD_TP_CHAIN_MAX ? 0 : chain_flush(st, peer);
}

static int post_write(struct verbs_state *st, int peer, struct ibv_send_wr *wr,
		      int signal, uint8_t type, uint32_t tx, uint8_t kind)
{
	return queue_write(st, peer, wr, signal, type, tx, kind, 0);
}

enum { CREDIT_LAZY, CREDIT_NOW, CREDIT_SIGNALLED };

/*
 * Credits not sent for this long go out even below the batch size (to
 * within a tick of the coarse clock, which both the stamp and progress
 * read).  Only
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
static int flush_credit(struct verbs_state *st, int peer, int mode)
{
	struct vpeer *p = &st->peers[peer];
	uint64_t *src = (uint64_t *)credit_src(st, peer);
	struct ibv_sge sge = { .addr = (uintptr_t)src, .length = sizeof(uint64_t), .lkey = p->csrc_mr->lkey };
	struct ibv_send_wr wr = { 0 };
	int signal, ret;

	if (p->credit_val == p->credit_sent && mode != CREDIT_SIGNALLED)
		return 0;
	if (mode == CREDIT_LAZY && p->credit_val - p->credit_sent < st->credit_batch)
		return 0;
	if (sq_room(st, p) < 1)
		return 0;	/* retried from progress once the queue drains */
	/* The word only grows, so a NIC reading a newer value is still right. */
	__atomic_store_n(src, p->credit_val, __ATOMIC_RELEASE);
	wr.opcode = IBV_WR_RDMA_WRITE;
	if (p->max_inline >= sizeof(uint64_t))
		wr.send_flags = IBV_SEND_INLINE;	/* copied now: no key lookup, no DMA read */
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

/* Never 0, so that a ring's zeroed memory never reads as a landed block. */
static inline uint32_t ll_flag(uint64_t n)
{
	return (uint32_t)(n % 0xffffffffu) + 1;
}

static inline uint64_t ll_word(uint32_t data, uint32_t flag)
{
	return (uint64_t)flag << 32 | data;
}

/*
 * A small block as LL lines into the peer's LL ring: header words (length
 * and kind; our credit for the peer) and data words, each carrying the
 * block's flag in its upper half.  One unsignalled RDMA_WRITE; the block
 * was copied, so its buffer is free at once (SENT now).  Our LL staging
 * slot is reused only once the peer has released this block, that is
 * after the NIC has read it.
 *
 * The credit rides along: how many of the peer's blocks we have released
 * (its low 32 bits; the peer rebuilds the rest from what it sent), so a
 * ping-pong never pays a credit write.  The peer reads it when it takes
 * this block, as it would read a credit write that came with or after it.
 */
static int put_polled(struct hetsgd_tp *tp, struct verbs_state *st, int peer, struct tp_tx *tx, size_t len,
		      uint8_t kind, uint32_t slot, int more)
{
	struct vpeer *p = &st->peers[peer];
	uint64_t *w = ll_src(st, tp->attr.slots, peer, slot);
	const uint8_t *src = tx->pub.data;
	uint32_t flag = ll_flag(p->sent), d;
	size_t i, bytes = ll_bytes(len);
	struct ibv_sge sge = { .addr = (uintptr_t)w, .length = (uint32_t)bytes, .lkey = p->llsrc_mr->lkey };
	struct ibv_send_wr wr = { 0 };
	int ret;

	w[0] = ll_word((uint32_t)len | (uint32_t)kind << 24, flag);
	w[1] = ll_word((uint32_t)p->credit_val, flag);
	for (i = 0; i < len / 4; i++) {
		memcpy(&d, src + 4 * i, 4);
		w[2 + i] = ll_word(d, flag);
	}
	if (len % 4) {
		d = 0;
		memcpy(&d, src + 4 * i, len % 4);
		w[2 + i] = ll_word(d, flag);
	}
	wr.opcode = IBV_WR_RDMA_WRITE;
	if (bytes <= p->max_inline)
		wr.send_flags = IBV_SEND_INLINE;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.wr.rdma.remote_addr = p->ring + st->ll_off + (uint64_t)slot * p->ll_rstride;
	wr.wr.rdma.rkey = p->rkey;
	ret = queue_write(st, peer, &wr, p->unsig + 1 >= st->sq_depth / 2, SIG_POLLED, 0, 0, more);
	if (ret)
		return ret;
	p->sent++;
	p->credit_sent = p->credit_val;
	p->credit_since = 0;
	tp->stats.puts_polled++;
	tp_put_completed(tp, peer, tx, kind);
	return 0;
}

static int verbs_put(struct hetsgd_tp *tp, int peer, struct tp_tx *tx, size_t len, uint8_t kind, int more)
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
	if (p->credit_piggy > rel)
		rel = p->credit_piggy;
	if (p->sent - rel >= tp->attr.slots)
		return tp_wait(tp, peer, TP_WAIT_CREDIT);
	if (sq_room(st, p) < 2)
		return tp_wait(tp, peer, TP_WAIT_QUEUE);
	slot = (uint32_t)(p->sent % tp->attr.slots);
	if (len <= st->poll_max)
		return put_polled(tp, st, peer, tx, len, kind, slot, more);
	/*
	 * The pipeline's depth (verbs_pipeline): the send window binds, not
	 * the credits.  Two writes may always be in flight, so that blocks
	 * larger than the window still queue one behind the other.
	 */
	if (p->data_writes >= 2 && p->data_inflight + len > (uint64_t)st->window * WINDOW_UNIT)
		return tp_wait(tp, peer, TP_WAIT_WINDOW);
	wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
	if (len <= p->max_inline)
		wr.send_flags = IBV_SEND_INLINE;
	wr.imm_data = htonl(IMM_TAG << 24 | (uint32_t)kind << 16 | slot);
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.wr.rdma.remote_addr = p->ring + (uint64_t)slot * tp->attr.slot_bytes;
	wr.wr.rdma.rkey = p->rkey;
	ret = queue_write(st, peer, &wr, 1, SIG_DATA, tx->index, kind, more);
	if (ret)
		return ret;
	p->sent++;
	p->data_inflight += len;
	p->data_writes++;
	return 0;
}

/*
 * The polled path's receive side: is block recvd[peer] in its LL slot?
 * Each 8-byte word is read once and counts only if its flag is this
 * block's; its data half goes into the block's slot of the ordinary ring,
 * where the caller finds it.  1: a block was handed out; 0: none (yet);
 * negative: the peer broke the protocol.
 */
static int poll_one(struct hetsgd_tp *tp, struct verbs_state *st, int peer)
{
	uint32_t S = tp->attr.slots, slot = (uint32_t)(tp->recvd[peer] % S), flag = ll_flag(tp->recvd[peer]);
	const uint64_t *w = ll_in(st, peer, slot);
	uint32_t *out = (uint32_t *)(region(st, peer) + (size_t)slot * tp->attr.slot_bytes);
	uint64_t v = __atomic_load_n(&w[0], __ATOMIC_ACQUIRE), d, c;
	struct vpeer *p = &st->peers[peer];
	uint32_t len, i;
	int ret;

	if ((uint32_t)(v >> 32) != flag || !tp_evq_room(tp))
		return 0;
	len = (uint32_t)v & 0xffffff;
	if (len > st->poll_max)
		return hetsgd_err(-EPROTO, "rank %d announced a polled block of %u bytes in slot %u, where at most %u "
				  "go: the peers run incompatible transports or memory was corrupted",
				  peer, len, slot, st->poll_max);
	if (tp->held[(size_t)tp->pidx[peer] * S + slot])	/* refused before anything is copied */
		return tp_recv_landed(tp, peer, slot, out, len, (uint8_t)(v >> 24));
	c = __atomic_load_n(&w[1], __ATOMIC_ACQUIRE);
	if ((uint32_t)(c >> 32) != flag)
		return 0;		/* still landing: read it again next time */
	for (i = 0; i < (len + 3) / 4; i++) {
		d = __atomic_load_n(&w[2 + i], __ATOMIC_ACQUIRE);
		if ((uint32_t)(d >> 32) != flag)
			return 0;
		out[i] = (uint32_t)d;
	}
	/* Its credit for us: the count whose low 32 bits it sent, at most what we sent. */
	d = (uint32_t)((uint32_t)p->sent - (uint32_t)c);
	if (d > p->sent)
		return hetsgd_err(-EPROTO, "rank %d says it released a count of our blocks ending in 0x%08x, more "
				  "than the %llu we sent", peer, (uint32_t)c, (unsigned long long)p->sent);
	if (p->sent - d > p->credit_piggy)
		p->credit_piggy = p->sent - d;
	ret = tp_recv_landed(tp, peer, slot, out, len, (uint8_t)(v >> 24));
	if (ret)
		return ret;
	tp->stats.recvs_polled++;
	return 1;
}

/*
 * Hand out, in order, every block of peer's that has landed: polled ones
 * found in its LL ring, and those announced by immediate that had to wait
 * for an older polled block (handle_wc).
 */
static int poll_drain(struct hetsgd_tp *tp, struct verbs_state *st, int peer)
{
	struct vpeer *p = &st->peers[peer];
	int ret;

	if (!st->poll_max)
		return 0;
	for (;;) {
		ret = poll_one(tp, st, peer);
		if (ret < 0)
			return ret;
		if (ret)
			continue;
		if (p->pend_len && p->pend[p->pend_head].slot == tp->recvd[peer] % tp->attr.slots) {
			struct pend_imm *e = &p->pend[p->pend_head];

			ret = tp_recv_landed(tp, peer, e->slot, region(st, peer) + (size_t)e->slot * tp->attr.slot_bytes,
					     e->len, e->kind);
			if (ret)
				return ret;
			p->pend_head = (p->pend_head + 1) % tp->attr.slots;
			p->pend_len--;
			continue;
		}
		return 0;
	}
}

/*
 * A block announced by immediate.  Both paths share one numbering per
 * pair, so it may name a slot past the next one: the blocks before it
 * went by the polled path and have not all landed in our view yet (the
 * verbs ordering rules make an RDMA WRITE's data visible with its own
 * immediate, a later SEND or a later atomic, not with a later write's
 * immediate: see transport/README.md).  Then it waits in a FIFO until
 * they have.  A slot the caller still holds is never announced by an
 * honest peer: that fails at once, as does a FIFO overflow.
 */
static int imm_landed(struct hetsgd_tp *tp, struct verbs_state *st, int peer, uint32_t slot, uint32_t len,
		      uint8_t kind)
{
	struct vpeer *p = &st->peers[peer];
	uint32_t S = tp->attr.slots;
	int ret = poll_drain(tp, st, peer);

	if (ret)
		return ret;
	if (!st->poll_max || (!p->pend_len && slot == tp->recvd[peer] % S) || tp->held[(size_t)tp->pidx[peer] * S + slot])
		return tp_recv_landed(tp, peer, slot, region(st, peer) + (size_t)slot * tp->attr.slot_bytes, len, kind);
	if (p->pend_len == S)
		return hetsgd_err(-EPROTO, "rank %d announced more blocks than its ring has slots (%u): the peers run "
				  "incompatible transports or memory was corrupted", peer, S);
	p->pend[(p->pend_head + p->pend_len) % S] = (struct pend_imm){ .slot = slot, .len = len, .kind = kind };
	p->pend_len++;
	return poll_drain(tp, st, peer);
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
	if (p->chain_len) {		/* never posted: their records went back above */
		p->chain_len = 0;
		p->chain_puts = 0;
		st->chained--;
	}
	p->data_inflight = 0;
	p->data_writes = 0;
	p->pend_len = 0;
	p->established = 0;
}

/* Handle one completion; events go to the FIFO unless !deliver (closing). */
static int handle_wc(struct hetsgd_tp *tp, struct verbs_state *st, struct ibv_wc *wc, int deliver)
{
	int peer = (int)wc->wr_id;
	char why[192];

	if (!tp_is_peer(tp, peer))
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
		ret = imm_landed(tp, st, peer, slot, wc->byte_len, (uint8_t)(imm >> 16));
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
		p->data_inflight -= rec->len;
		p->data_writes--;
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
		if (!tp_is_peer(tp, peer))
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

	/* what hetsgd_tp_put_more() held back goes first */
	if (st->chained) {
		ret = chains_flush(tp, st);
		if (ret)
			return ret;
	}
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
	if (st->poll_max) {
		for (j = 0; j < tp->size; j++) {
			if (!tp_is_peer(tp, j) || tp->down[j])
				continue;
			ret = poll_drain(tp, st, j);
			if (ret)
				return ret;
		}
	}
	/*
	 * Credits that waited long enough, or found the queue full, go out
	 * now.  The clock is read once every CLOCK_EVERY calls, and it is
	 * the coarse one (coarse_s(), the vDSO's last tick): the precise
	 * clock, without a stable TSC (virtual machines), is a system call
	 * that reads an emulated timer, tens of microseconds under TCG, and
	 * one in every CLOCK_EVERY polls of a ping-pong's spinning receiver
	 * landed inside its round trip.  A tick is precise enough for both
	 * deadlines: releases stamp their batch with the same clock (the
	 * 1 ms flush then comes within a tick of it), and the rdma_cm check
	 * is every CM_S.
	 */
	/* A peer's death is rare news: look for it far less often than for credits. */
	if (++st->clock_countdown >= CLOCK_EVERY) {
		st->clock_countdown = 0;
		now = coarse_s();
		if (now - st->cm_last >= CM_S)
			st->cm_countdown = CM_EVERY;
	}
	if (++st->cm_countdown >= CM_EVERY) {
		st->cm_countdown = 0;
		st->cm_last = now ? now : coarse_s();
		ret = check_cm_events(tp, st);
		if (ret)
			return ret;
	}
	if (now) {
		for (j = 0; j < tp->size; j++) {
			struct vpeer *p = &st->peers[j];

			if (!tp_is_peer(tp, j) || tp->down[j] || p->credit_val == p->credit_sent)
				continue;
			ret = flush_credit(st, j, now - p->credit_since >= CREDIT_MAX_DELAY_S ? CREDIT_NOW
												     : CREDIT_LAZY);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* ---- the pipeline's depth ------------------------------------------------ */

#define RTT_PROBES 4

/*
 * How much data each pair keeps in flight, and how many releases go back
 * in one credit write.  A sender stops when `window` 64 KiB blocks' worth
 * of writes by immediate are unacknowledged (one write of any size may
 * always go; small blocks are held back by credits alone).  The blocks it counts as taken are then at most window
 * (unacknowledged) + credit_batch - 1 (released, not yet told) + what the
 * receiver has not looked at yet + the releases of a credit in flight;
 * with window and batch each at most slots/4, half the ring is left for
 * those last two, so a stream waits on its window, never on a credit, as
 * long as the receiver keeps pace (hetsgd-pipeline-check counts the
 * waits).  What fills the link is its bandwidth-delay product in 64 KiB
 * blocks (the smallest a bandwidth stream sends), plus one so that a write
 * is queued when one completes; rate from the port's attributes, round
 * trip measured here, the fastest of RTT_PROBES signalled 8-byte writes to
 * the next rank (of the credit word's value at open, 0, so nothing
 * changes).
 * A ring whose quarter is less than that is said in the log, with the
 * number of slots it takes.
 */
int verbs_pipeline(struct hetsgd_tp *tp, struct verbs_state *st)
{
	struct ibv_port_attr pa;
	double bdp_blocks, worst = 0;
	int j, k, ret;

	uint32_t quarter = tp->attr.slots / 4 ? tp->attr.slots / 4 : 1, need;

	/* Small rings (the engine uses 4) keep half-ring batches: a credit write per release would cost more. */
	st->credit_batch = tp->attr.slots >= 8 ? quarter : (tp->attr.slots + 1) / 2;
	if (!ibv_query_port(st->ctx, st->port, &pa))
		st->link_MBps = verbs_port_MBps(&pa);
	/* One peer, the next of the pattern's: every pair shares the device, and the open must stay short. */
	for (j = (tp->rank + 1) % tp->size; j != tp->rank && !tp_is_peer(tp, j); j = (j + 1) % tp->size)
		;
	if (j != tp->rank) {
		struct vpeer *p = &st->peers[j];
		double best = 1e9;

		for (k = 0; k < RTT_PROBES; k++) {
			uint64_t *src = (uint64_t *)credit_src(st, j);
			struct ibv_sge sge = { .addr = (uintptr_t)src, .length = 8, .lkey = p->csrc_mr->lkey };
			struct ibv_send_wr wr = { 0 };
			double t0 = now_s(), deadline = t0 + 10;
			struct ibv_wc wc;
			int n;

			*src = 0;
			wr.opcode = IBV_WR_RDMA_WRITE;
			wr.sg_list = &sge;
			wr.num_sge = 1;
			wr.wr.rdma.remote_addr = p->ring + st->ring_bytes;
			wr.wr.rdma.rkey = p->rkey;
			ret = post_write(st, j, &wr, 1, SIG_TEST, 0, 0);
			if (ret)
				return ret;
			while ((n = ibv_poll_cq(st->cq, 1, &wc)) == 0 && now_s() < deadline)
				;
			if (n != 1 || wc.status != IBV_WC_SUCCESS || wc.wr_id != (uint64_t)j)
				return hetsgd_err(-EIO, "rank %d: the round-trip probe to rank %d failed: %s", tp->rank, j,
						  n < 0 ? "ibv_poll_cq failed" : n == 0 ? "no completion within 10 s"
						  : ibv_wc_status_str(wc.status));
			ret = handle_wc(tp, st, &wc, 0);
			if (ret)
				return ret;
			if (now_s() - t0 < best)
				best = now_s() - t0;
		}
		if (best > worst)
			worst = best;
	}
	st->rtt_us = worst * 1e6;
	bdp_blocks = st->link_MBps * 1024.0 * 1024.0 * worst / WINDOW_UNIT;
	need = (uint32_t)bdp_blocks + 2;	/* ceil + 1 */
	/*
	 * The whole quarter, not just `need`: a deeper window keeps the
	 * device busy while this process is descheduled (a loaded host; in
	 * the bed, with two writes in flight, 0.42-0.68x ib_write_bw and its
	 * 128), and the credit argument above holds for any window up to a
	 * quarter.
	 */
	st->window = quarter;
	if (need > quarter)
		hetsgd_log(HETSGD_LOG_WARN, "transport", "verbs: rank %d: %u slots allow %u writes in flight; the link "
			   "(%.0f MB/s, round trip %.1f us) needs %u for 64 KiB blocks: give %u or more slots for "
			   "full bandwidth", tp->rank, tp->attr.slots, quarter, st->link_MBps, st->rtt_us, need,
			   4 * need);
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
		st->peers[peer].credit_since = coarse_s();
	st->peers[peer].credit_val = (uint64_t)head;
	return flush_credit(st, peer, CREDIT_LAZY);
}

static int verbs_quiesce(struct hetsgd_tp *tp)
{
	struct verbs_state *st = tp->priv;
	double deadline = now_s() + 30;
	int j, ret, busy = 1;

	while (busy) {
		struct ibv_wc wc[POLL_BATCH];
		int n, i;

		/* a peer that died meanwhile never acknowledges our writes to
		 * it: learn it (DISCONNECTED) instead of waiting them out */
		ret = check_cm_events(tp, st);
		if (!ret)
			ret = chains_flush(tp, st);
		if (ret)
			return ret;
		busy = 0;
		for (j = 0; j < tp->size; j++) {
			struct vpeer *p = &st->peers[j];

			if (!tp_is_peer(tp, j) || tp->down[j])
				continue;
			/* A signalled write at the tail proves all before it completed. */
			if (p->credit_val != p->credit_sent || (p->unsig && p->sq_posted > p->sq_done &&
								 p->sig_head == p->sig_tail)) {
				ret = flush_credit(st, j, CREDIT_SIGNALLED);
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
	case TP_TEST_POLL:
		if (!p->ll_rstride || off + len > p->ll_rstride)
			return hetsgd_err(-EACCES, "test write: rank %d has no polled ring for us, or %zu + %zu "
					  "bytes pass its slot", peer, off, len);
		wr.wr.rdma.remote_addr = p->ring + st->ll_off + (uint64_t)slot * p->ll_rstride + off;
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
	.depth = verbs_depth,
	.put = verbs_put,
	.progress = verbs_progress,
	.release = verbs_release,
	.quiesce = verbs_quiesce,
	.bye = verbs_bye,
	.farewell = verbs_farewell,
	.close = verbs_close,
	.test_write = VERBS_TEST_WRITE,
};
