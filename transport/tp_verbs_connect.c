/* verbs provider: queue pairs and the rdma_cm handshake (see tp_verbs.c). */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "tp_verbs_priv.h"

/* ---- queue pairs ------------------------------------------------------------ */

int verbs_post_recv(struct verbs_state *st, int peer)
{
	struct ibv_recv_wr wr = { .wr_id = (uint64_t)peer }, *bad;
	int ret = ibv_post_recv(st->peers[peer].qp, &wr, &bad);

	return ret ? hetsgd_err(-ret, "ibv_post_recv for rank %d: %s", peer, strerror(ret)) : 0;
}

static int create_qp(struct hetsgd_tp *tp, struct verbs_state *st, int peer, struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr ia = { 0 };
	struct ibv_qp_attr qa = { 0 };
	int mask = 0, ret;
	uint32_t i;

	ia.send_cq = st->cq;
	ia.recv_cq = st->cq;
	ia.qp_type = IBV_QPT_RC;
	ia.sq_sig_all = 0;
	ia.cap.max_send_wr = st->sq_depth;
	/* one receive per slot, and one for close's bye, which takes no slot */
	ia.cap.max_recv_wr = tp->attr.slots + 1;
	ia.cap.max_send_sge = 1;
	ia.cap.max_recv_sge = 1;
	/* Small blocks go inline: no memory-key lookup on the send side. */
	ia.cap.max_inline_data = 128;
	st->peers[peer].qp = ibv_create_qp(st->peers[peer].pd, &ia);
	if (!st->peers[peer].qp && errno == EINVAL) {
		ia.cap.max_inline_data = 0;
		st->peers[peer].qp = ibv_create_qp(st->peers[peer].pd, &ia);
	}
	if (st->peers[peer].qp)
		st->peers[peer].max_inline = ia.cap.max_inline_data;
	if (!st->peers[peer].qp)
		return hetsgd_err(-errno, "ibv_create_qp for rank %d (send %u, recv %u WRs): %s",
				  peer, st->sq_depth, tp->attr.slots + 1, strerror(errno));
	st->peers[peer].id = id;
	id->context = (void *)(intptr_t)peer;

	qa.qp_state = IBV_QPS_INIT;
	ret = rdma_init_qp_attr(id, &qa, &mask);
	if (ret)
		return hetsgd_err(-errno, "rdma_init_qp_attr(INIT) for rank %d: %s", peer, strerror(errno));
	qa.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
	ret = ibv_modify_qp(st->peers[peer].qp, &qa, mask | IBV_QP_ACCESS_FLAGS);
	if (ret)
		return hetsgd_err(-ret, "QP to INIT for rank %d: %s", peer, strerror(ret));
	/* Receives go up before RTR: a write may arrive right after. */
	for (i = 0; i < tp->attr.slots + 1; i++) {
		ret = verbs_post_recv(st, peer);
		if (ret)
			return ret;
	}
	return 0;
}

static int qp_rtr_rts(struct verbs_state *st, int peer)
{
	struct vpeer *p = &st->peers[peer];
	struct ibv_qp_attr qa = { 0 };
	enum ibv_mtu mtu;
	int mask = 0, ret;

	qa.qp_state = IBV_QPS_RTR;
	if (rdma_init_qp_attr(p->id, &qa, &mask))
		return hetsgd_err(-errno, "rdma_init_qp_attr(RTR) for rank %d: %s", peer, strerror(errno));
	/* Both ends must use the same MTU: the smaller one. */
	mtu = st->active_mtu < (enum ibv_mtu)st->info[peer].active_mtu ? st->active_mtu
								       : (enum ibv_mtu)st->info[peer].active_mtu;
	if (qa.path_mtu > mtu || qa.path_mtu == 0)
		qa.path_mtu = mtu;
	if (st->gid_index >= 0 && qa.ah_attr.is_global)
		qa.ah_attr.grh.sgid_index = (uint8_t)st->gid_index;
	ret = ibv_modify_qp(p->qp, &qa, mask | IBV_QP_PATH_MTU);
	if (ret)
		return hetsgd_err(-ret, "QP to RTR for rank %d (path MTU %d, GID index %d): %s", peer,
				  128 << qa.path_mtu, st->gid_index, strerror(ret));
	hetsgd_log(HETSGD_LOG_DEBUG, "transport", "verbs: QP %u to rank %d: path MTU %d (ours %d, its %d), GID index %d",
		   p->qp->qp_num, peer, 128 << qa.path_mtu, 128 << st->active_mtu, 128 << st->info[peer].active_mtu,
		   st->gid_index);

	memset(&qa, 0, sizeof(qa));
	mask = 0;
	qa.qp_state = IBV_QPS_RTS;
	if (rdma_init_qp_attr(p->id, &qa, &mask))
		return hetsgd_err(-errno, "rdma_init_qp_attr(RTS) for rank %d: %s", peer, strerror(errno));
	qa.rnr_retry = 7;
	qa.retry_cnt = 7;
	ret = ibv_modify_qp(p->qp, &qa, mask | IBV_QP_RNR_RETRY | IBV_QP_RETRY_CNT);
	if (ret)
		return hetsgd_err(-ret, "QP to RTS for rank %d: %s", peer, strerror(ret));
	return 0;
}

/* ---- connection set-up ---------------------------------------------------- */

static const char *cm_hint(enum rdma_cm_event_type e)
{
	switch (e) {
	case RDMA_CM_EVENT_ADDR_ERROR:
		return "the peer's address is not reachable from this RDMA device: check the routes and HETSGD_IB_ADDR";
	case RDMA_CM_EVENT_ROUTE_ERROR:
		return "no route: on RoCE check that both ends use RoCE v2 and the same subnet/VLAN";
	case RDMA_CM_EVENT_UNREACHABLE:
		return "the peer did not answer: a firewall, a wrong GID (HETSGD_GID_INDEX) or a dead rank";
	case RDMA_CM_EVENT_REJECTED:
		return "the peer rejected the connection: do all ranks run the same hetsgd?";
	default:
		return "see the peer's own error";
	}
}

/* Both sides: one outstanding RDMA read each way is plenty (we only
 * write); retry forever on RNR, since receives are re-posted as used. */
static void conn_param(struct rdma_conn_param *cp, const uint8_t *pd, struct ibv_qp *qp)
{
	memset(cp, 0, sizeof(*cp));
	cp->private_data = pd;
	cp->private_data_len = TP_CONN_LEN;
	cp->responder_resources = 1;
	cp->initiator_depth = 1;
	cp->retry_count = 7;
	cp->rnr_retry_count = 7;
	cp->qp_num = qp ? qp->qp_num : 0;
}

/* What rank `me` hands to `peer` in the handshake: the ring for it. */
static void conn_fill(struct hetsgd_tp *tp, struct verbs_state *st, int peer, int type, uint64_t nonce,
		      struct tp_conn *c)
{
	c->type = type;
	c->rank = (uint32_t)tp->rank;
	c->target = (uint32_t)peer;
	c->rkey = st->peers[peer].region_mr->rkey;
	c->ring = (uintptr_t)region(st, peer);
	c->nonce = nonce;
}

static uint64_t rand64(void)
{
	uint64_t x = 0;

	while (getrandom(&x, sizeof(x), 0) != sizeof(x) && errno == EINTR)
		;
	return x;
}

static uint32_t id_ipv4(struct rdma_cm_id *id)
{
	struct sockaddr *sa = rdma_get_peer_addr(id);

	return sa && sa->sa_family == AF_INET ? ((struct sockaddr_in *)sa)->sin_addr.s_addr : 0;
}

static const char *ipv4_str(uint32_t ip, char *buf)
{
	struct in_addr a = { .s_addr = ip };

	return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN) ? buf : "?";
}

/*
 * Refuse a connection request that is not from a rank of this job: log the
 * first from each source address, count the rest (a flood must not flood
 * stderr), and wait on as if it never came.
 */
void verbs_refuse(struct hetsgd_tp *tp, struct verbs_state *st, struct rdma_cm_id *id, const char *why)
{
	uint32_t ip = id_ipv4(id);
	char buf[INET_ADDRSTRLEN];
	int i, seen = 0;

	rdma_reject(id, NULL, 0);
	st->refused++;
	for (i = 0; i < st->refused_logged && i < REFUSED_SOURCES && !seen; i++)
		seen = st->refused_ip[i] == ip;
	if (seen)
		return;
	if (st->refused_logged < REFUSED_SOURCES)
		st->refused_ip[st->refused_logged++] = ip;
	else if (st->refused_logged++ > REFUSED_SOURCES)
		return;
	hetsgd_log(HETSGD_LOG_WARN, "transport", "verbs: rank %d refused a connection request from %s: %s "
		   "(further refusals of this source are counted, not logged)",
		   tp->rank, st->refused_logged > REFUSED_SOURCES ? "more sources" : ipv4_str(ip, buf), why);
}

/* A lower rank answers a higher rank's request: check its proof first. */
static int on_request(struct hetsgd_tp *tp, struct verbs_state *st, struct rdma_cm_event *ev, int *destroy)
{
	struct tp_conn in, out;
	struct rdma_conn_param cp;
	uint8_t pd[TP_CONN_LEN];
	char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
	int peer, ret;

	if (tp_conn_parse(st->key, ev->param.conn.private_data, ev->param.conn.private_data_len, TP_CONN_REQ,
			  ev->param.conn.qp_num, 0, &in)) {
		verbs_refuse(tp, st, ev->id, hetsgd_errmsg());
		*destroy = 1;
		return 0;
	}
	if (in.type == TP_CONN_ABORT && in.target == (uint32_t)tp->rank && in.rank < (uint32_t)tp->size) {
		rdma_reject(ev->id, NULL, 0);
		*destroy = 1;
		return hetsgd_err(-ECONNABORTED, "rank %d: rank %u failed to connect and told this rank to stop "
				  "waiting: see rank %u's message", tp->rank, in.rank, in.rank);
	}
	if (in.type != TP_CONN_REQ || in.target != (uint32_t)tp->rank || in.rank <= (uint32_t)tp->rank ||
	    in.rank >= (uint32_t)tp->size) {
		verbs_refuse(tp, st, ev->id, "it proves the job key but names ranks that do not connect here "
		       "(a rank connects to every lower rank): a confused rank of this job");
		*destroy = 1;
		return 0;
	}
	peer = (int)in.rank;
	if (!tp_is_peer(tp, peer)) {
		verbs_refuse(tp, st, ev->id, "it proves the job key but the connection pattern does not pair "
		       "it with this rank: a rank of this job opened with another pattern");
		*destroy = 1;
		return 0;
	}
	if (st->peers[peer].id) {
		/* Two processes hold the job key and claim one rank: stop at once. */
		rdma_reject(ev->id, NULL, 0);
		*destroy = 1;
		return hetsgd_err(-EADDRINUSE,
				  "rank %d: rank %d connected twice, from %s and again from %s, both with the job's key: "
				  "two processes claim that rank (a second launch of the same job, or a leaked key); "
				  "stopping the job",
				  tp->rank, peer, ipv4_str(id_ipv4(st->peers[peer].id), a), ipv4_str(id_ipv4(ev->id), b));
	}
	ret = create_qp(tp, st, peer, ev->id);
	if (ret)
		return ret;
	st->peers[peer].ring = in.ring;
	st->peers[peer].rkey = in.rkey;
	ret = qp_rtr_rts(st, peer);
	if (ret)
		return ret;
	conn_fill(tp, st, peer, TP_CONN_REP, rand64(), &out);
	tp_conn_pack(st->key, &out, st->peers[peer].qp->qp_num, in.nonce, pd);
	conn_param(&cp, pd, st->peers[peer].qp);
	if (rdma_accept(ev->id, &cp))
		return hetsgd_err(-errno, "rdma_accept from rank %d: %s", peer, strerror(errno));
	return 0;
}

/* A higher rank checks that the answer comes from its job's rank `peer`. */
static int on_response(struct hetsgd_tp *tp, struct verbs_state *st, struct rdma_cm_event *ev, int peer)
{
	struct vpeer *p = &st->peers[peer];
	struct tp_conn in;
	int ret;

	ret = tp_conn_parse(st->key, ev->param.conn.private_data, ev->param.conn.private_data_len, TP_CONN_REP,
			    ev->param.conn.qp_num, p->nonce, &in);
	if (!ret && (in.rank != (uint32_t)peer || in.target != (uint32_t)tp->rank))
		ret = hetsgd_err(-EACCES, "the answer names rank %u to rank %u", in.rank, in.target);
	if (ret)
		return hetsgd_err(-EACCES, "rank %d: the answer from rank %d's address is not from rank %d of this job (%s): "
				  "something else listens there; check HETSGD_IB_ADDR and that no stale job runs",
				  tp->rank, peer, peer, hetsgd_errmsg());
	p->ring = in.ring;
	p->rkey = in.rkey;
	ret = qp_rtr_rts(st, peer);
	if (!ret && rdma_establish(ev->id))
		ret = hetsgd_err(-errno, "rdma_establish with rank %d: %s", peer, strerror(errno));
	return ret;
}

#ifdef HETSGD_TEST_HOOKS
/*
 * HETSGD_TEST_CONNECT=bogus|dup on the highest rank: before its real
 * requests, send rank 0 requests that a stranger (bogus: no proof, a wrong
 * proof, a proof for another pair) or a second holder of this rank (dup)
 * would send.  Their ids carry context TEST_CTX.
 */
#define TEST_CTX (-7)
static int test_mode(struct hetsgd_tp *tp)
{
	const char *m = getenv("HETSGD_TEST_CONNECT");

	if (!m || tp->rank != tp->size - 1 || tp->rank == 0)
		return 0;
	return !strcmp(m, "bogus") ? 3 : !strcmp(m, "dup") ? 1 : 0;
}

static int test_start(struct hetsgd_tp *tp, struct verbs_state *st, struct rdma_cm_id **ids)
{
	struct sockaddr_in dst = { .sin_family = AF_INET }, src = st->addr;
	int n = test_mode(tp);

	dst.sin_addr.s_addr = st->info[0].ipv4;
	dst.sin_port = st->info[0].port;
	src.sin_port = 0;
	for (int k = 0; k < n; k++) {
		if (rdma_create_id(st->ec, &ids[k], (void *)(intptr_t)TEST_CTX, RDMA_PS_TCP) ||
		    rdma_resolve_addr(ids[k], (struct sockaddr *)&src, (struct sockaddr *)&dst, 5000))
			return hetsgd_err(-errno, "test: a hostile request: %s", strerror(errno));
	}
	return 0;
}

static int test_route(struct hetsgd_tp *tp, struct verbs_state *st, struct rdma_cm_id *id, int k)
{
	const char *m = getenv("HETSGD_TEST_CONNECT");
	uint8_t pd[TP_CONN_LEN], wrong[16];
	struct rdma_conn_param cp;
	struct tp_conn c;

	conn_fill(tp, st, 0, TP_CONN_REQ, rand64(), &c);
	memcpy(wrong, st->key, 16);
	wrong[0] ^= 1;
	if (!strcmp(m, "dup"))
		tp_conn_pack(st->key, &c, 0x1234, 0, pd);	/* a valid proof */
	else if (k == 0)
		tp_conn_pack(wrong, &c, 0x1234, 0, pd);		/* another key */
	else if (k == 1) {
		c.rank = 0;					/* a pair that never connects */
		tp_conn_pack(st->key, &c, 0x1234, 0, pd);
	} else
		memset(pd, 0x5a, sizeof(pd));			/* not hetsgd's */
	conn_param(&cp, pd, NULL);
	cp.qp_num = 0x1234;
	if (rdma_connect(id, &cp))
		return hetsgd_err(-errno, "test: rdma_connect: %s", strerror(errno));
	return 0;
}
#endif

/* Long: the handshake's one rdma_cm event loop, a case per event and the hostile-request hooks; moved byte for byte, untested outside the soft-RoCE bed. */
int verbs_connect_all(struct hetsgd_tp *tp, struct verbs_state *st)
{
	int me = tp->rank, want = tp->npeers, done = 0, j, ret = 0, timeout_s;
	struct rdma_cm_id *test_ids[3] = { NULL, NULL, NULL };
	int test_pending = 0;
	long tmo = 60;
	double deadline;

	if (hetsgd_env_long("HETSGD_CONNECT_TIMEOUT", 1, 86400, &tmo) < 0)
		return -EINVAL;
	timeout_s = (int)tmo;
	deadline = now_s() + timeout_s;
#ifdef HETSGD_TEST_HOOKS
	ret = test_start(tp, st, test_ids);
	if (ret)
		return ret;
	/* Bogus requests: wait for their refusals, so that rank 0 logs them now. */
	test_pending = test_mode(tp) == 3 ? 3 : 0;
#endif

	/* Lower ranks listen, higher ranks connect: each pair of the pattern once. */
	for (j = 0; j < me; j++) {
		struct sockaddr_in dst = { .sin_family = AF_INET };
		struct sockaddr_in src = st->addr;
		struct rdma_cm_id *id;

		if (!tp_is_peer(tp, j))
			continue;
		dst.sin_addr.s_addr = st->info[j].ipv4;
		dst.sin_port = st->info[j].port;
		src.sin_port = 0;
		if (rdma_create_id(st->ec, &id, (void *)(intptr_t)j, RDMA_PS_TCP))
			return hetsgd_err(-errno, "rdma_create_id: %s", strerror(errno));
		st->peers[j].id = id;
		if (rdma_resolve_addr(id, (struct sockaddr *)&src, (struct sockaddr *)&dst, 5000))
			return hetsgd_err(-errno, "rdma_resolve_addr to rank %d: %s", j, strerror(errno));
	}

	while ((done < want || test_pending > 0) && !ret) {
		struct rdma_cm_event *ev;
		struct pollfd pfd = { .fd = st->ec->fd, .events = POLLIN };
		double left = deadline - now_s();
		struct rdma_cm_id *kill = NULL;
		int peer, destroy = 0;

		if (left <= 0)
			return hetsgd_err(-ETIMEDOUT,
					  "rank %d connected to %d of %d peers in %d s: a peer is missing or unreachable "
					  "(HETSGD_CONNECT_TIMEOUT to wait longer)", me, done, want, timeout_s);
		if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		if (rdma_get_cm_event(st->ec, &ev))
			return hetsgd_err(-errno, "rdma_get_cm_event: %s", strerror(errno));
		peer = (int)(intptr_t)ev->id->context;
#ifdef HETSGD_TEST_HOOKS
		if (peer == TEST_CTX && ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
			for (j = 0; j < 3; j++)
				if (test_ids[j] == ev->id) {
					if (ev->event == RDMA_CM_EVENT_ADDR_RESOLVED)
						ret = rdma_resolve_route(ev->id, 5000) ? -errno : 0;
					else if (ev->event == RDMA_CM_EVENT_ROUTE_RESOLVED)
						ret = test_route(tp, st, ev->id, j);
					else if (ev->event == RDMA_CM_EVENT_REJECTED) {
						hetsgd_log(HETSGD_LOG_INFO, "transport",
							   "test: hostile request %d was rejected", j);
						test_pending--;
					} else {
						test_pending--;
					}
				}
			rdma_ack_cm_event(ev);
			continue;
		}
#endif

		switch (ev->event) {
		case RDMA_CM_EVENT_ADDR_RESOLVED:
			if (rdma_resolve_route(ev->id, 5000))
				ret = hetsgd_err(-errno, "rdma_resolve_route to rank %d: %s", peer, strerror(errno));
			break;
		case RDMA_CM_EVENT_ROUTE_RESOLVED: {
			struct rdma_conn_param cp;
			uint8_t pd[TP_CONN_LEN];
			struct tp_conn c;

			ret = create_qp(tp, st, peer, ev->id);
			if (ret)
				break;
			st->peers[peer].nonce = rand64();
			conn_fill(tp, st, peer, TP_CONN_REQ, st->peers[peer].nonce, &c);
			tp_conn_pack(st->key, &c, st->peers[peer].qp->qp_num, 0, pd);
			conn_param(&cp, pd, st->peers[peer].qp);
			if (rdma_connect(ev->id, &cp))
				ret = hetsgd_err(-errno, "rdma_connect to rank %d: %s", peer, strerror(errno));
			break;
		}
		case RDMA_CM_EVENT_CONNECT_RESPONSE:
			ret = on_response(tp, st, ev, peer);
			if (!ret) {
				st->peers[peer].established = 1;
				done++;
			}
			break;
		case RDMA_CM_EVENT_CONNECT_REQUEST:
			ret = on_request(tp, st, ev, &destroy);
			if (destroy)
				kill = ev->id;
			break;
		case RDMA_CM_EVENT_ESTABLISHED:
			if (peer > me && peer < tp->size && !st->peers[peer].established) {
				st->peers[peer].established = 1;
				done++;
			}
			break;
		default:
			if (peer < 0 || peer >= tp->size)
				break;	/* a refused stranger's id: nothing of ours */
			ret = hetsgd_err(-ECONNREFUSED, "rank %d: connection with rank %d failed: %s (status %d): %s",
					 me, peer, rdma_event_str(ev->event), ev->status, cm_hint(ev->event));
			break;
		}
		rdma_ack_cm_event(ev);
		if (kill)
			rdma_destroy_id(kill);
	}
	for (j = 0; j < 3; j++)
		if (test_ids[j])
			rdma_destroy_id(test_ids[j]);
	if (!ret && st->refused > 1)
		hetsgd_log(HETSGD_LOG_WARN, "transport",
			   "verbs: rank %d refused %u connection requests in all while connecting", me, st->refused);
	return ret;
}

/*
 * This rank failed to connect.  The ranks that wait for a connection from
 * it would wait out their connect timeout: tell each lower rank not yet
 * connected with a proven ABORT request, and stop listening, so that a
 * higher rank's request is refused at once.  Best effort, a few seconds.
 */
void verbs_abort_connects(struct hetsgd_tp *tp, struct verbs_state *st)
{
	int me = tp->rank, pending = 0, j;
	double end = now_s() + 3.0;

	if (!st->ec)
		return;
	if (st->listen) {
		rdma_destroy_id(st->listen);
		st->listen = NULL;
	}
	for (j = 0; j < me; j++) {
		struct sockaddr_in dst = { .sin_family = AF_INET, .sin_addr.s_addr = st->info[j].ipv4,
					   .sin_port = st->info[j].port };
		struct sockaddr_in src = st->addr;
		struct vpeer *p = &st->peers[j];

		if (p->established || !p->pd)
			continue;
		if (p->qp) {
			ibv_destroy_qp(p->qp);
			p->qp = NULL;
		}
		if (p->id)
			rdma_destroy_id(p->id);
		p->id = NULL;
		src.sin_port = 0;
		if (rdma_create_id(st->ec, &p->id, (void *)(intptr_t)j, RDMA_PS_TCP) ||
		    rdma_resolve_addr(p->id, (struct sockaddr *)&src, (struct sockaddr *)&dst, 2000))
			continue;
		pending++;
	}
	while (pending > 0 && now_s() < end) {
		struct pollfd pfd = { .fd = st->ec->fd, .events = POLLIN };
		struct rdma_cm_event *ev;
		struct rdma_cm_id *kill = NULL;
		int peer;

		if (poll(&pfd, 1, 100) <= 0 || rdma_get_cm_event(st->ec, &ev))
			continue;
		peer = (int)(intptr_t)ev->id->context;
		if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
			rdma_reject(ev->id, NULL, 0);
			kill = ev->id;
		} else if (peer >= 0 && peer < me && !st->peers[peer].established) {
			if (ev->event == RDMA_CM_EVENT_ADDR_RESOLVED) {
				if (rdma_resolve_route(ev->id, 2000))
					pending--;
			} else if (ev->event == RDMA_CM_EVENT_ROUTE_RESOLVED) {
				struct rdma_conn_param cp;
				uint8_t pd[TP_CONN_LEN];
				struct tp_conn c;

				conn_fill(tp, st, peer, TP_CONN_ABORT, rand64(), &c);
				tp_conn_pack(st->key, &c, 0, 0, pd);
				conn_param(&cp, pd, NULL);
				if (rdma_connect(ev->id, &cp))
					pending--;
			} else {
				pending--;	/* refused, as it should be, or unreachable */
			}
		}
		rdma_ack_cm_event(ev);
		if (kill)
			rdma_destroy_id(kill);
	}
}
