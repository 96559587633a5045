/*
 * verbs provider: the ring's depth from the device (see tp_verbs.c and
 * transport/README.md, "Pipeline depth").
 *
 * The ring is registered, and its address and key handed to each peer in
 * the connection handshake, before any queue pair to a peer exists; so the
 * round trip that sizes it is measured first on a queue pair of the device
 * connected to itself (the NIC's, or rxe's, own turnaround: a write, its
 * acknowledgement and its completion), and the device's rate is read from
 * the port's attributes.  After the pairs are connected, verbs_pipeline()
 * measures the round trip to a peer as well and says in the log when the
 * ring is short for that one (a path through switches is longer than the
 * loopback).
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tp_verbs_priv.h"

/* Gb/s of one lane for ibv_port_attr.active_speed, and lanes for active_width. */
static double lane_gbps(uint32_t speed)
{
	switch (speed) {
	case 1: return 2.5;		/* SDR */
	case 2: return 5.0;		/* DDR */
	case 4: return 10.0;		/* QDR (or 10 GbE on RoCE) */
	case 8: return 10.3125;		/* FDR10 */
	case 16: return 14.0625;	/* FDR */
	case 32: return 25.78125;	/* EDR */
	case 64: return 53.125;		/* HDR */
	case 128: return 106.25;	/* NDR */
	case 256: return 212.5;		/* XDR */
	default: return 0;
	}
}

static int lanes(uint8_t width)
{
	switch (width) {
	case 1: return 1;
	case 2: return 4;
	case 4: return 8;
	case 8: return 12;
	case 16: return 2;
	default: return 0;
	}
}

double verbs_port_MBps(const struct ibv_port_attr *pa)
{
	return lane_gbps(pa->active_speed) * lanes(pa->active_width) * 1e9 / 8 / (1024.0 * 1024.0);
}

#define LOOP_PROBES 8

/*
 * The device's round trip: the fastest of LOOP_PROBES signalled 8-byte
 * RDMA_WRITEs on an RC queue pair whose destination is itself (after one
 * to warm the path up).  0 when the device will not loop back, or a step
 * fails; the caller then keeps the floor of the rule.
 */
static double loopback_rtt_s(struct ibv_context *ctx, uint8_t port, int gid_index,
			     const struct ibv_port_attr *pa, const char **fail)
{
	struct ibv_qp_init_attr ia = { 0 };
	struct ibv_qp_attr qa = { 0 };
	struct ibv_pd *pd = ibv_alloc_pd(ctx);
	struct ibv_cq *cq = pd ? ibv_create_cq(ctx, 4, NULL, NULL, 0) : NULL;
	uint64_t *buf = calloc(8, sizeof(uint64_t));
	struct ibv_mr *mr = cq && buf ? ibv_reg_mr(pd, buf, 8 * sizeof(uint64_t),
						   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE) : NULL;
	struct ibv_qp *qp = NULL;
	double best = 0;
	int k;

	*fail = "cannot allocate a protection domain, completion queue or memory region";
	if (!mr)
		goto out;
	ia.send_cq = cq;
	ia.recv_cq = cq;
	ia.qp_type = IBV_QPT_RC;
	ia.cap.max_send_wr = 2;
	ia.cap.max_recv_wr = 1;
	ia.cap.max_send_sge = 1;
	ia.cap.max_recv_sge = 1;
	*fail = "ibv_create_qp failed";
	qp = ibv_create_qp(pd, &ia);
	if (!qp)
		goto out;
	qa.qp_state = IBV_QPS_INIT;
	qa.port_num = port;
	qa.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
	*fail = "the queue pair did not go to INIT";
	if (ibv_modify_qp(qp, &qa, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		goto out;
	memset(&qa, 0, sizeof(qa));
	qa.qp_state = IBV_QPS_RTR;
	qa.path_mtu = pa->active_mtu;
	qa.dest_qp_num = qp->qp_num;
	qa.max_dest_rd_atomic = 1;
	qa.min_rnr_timer = 12;
	qa.ah_attr.port_num = port;
	qa.ah_attr.dlid = pa->lid;
	if (gid_index >= 0) {
		qa.ah_attr.is_global = 1;
		qa.ah_attr.grh.sgid_index = (uint8_t)gid_index;
		qa.ah_attr.grh.hop_limit = 64;
		*fail = "cannot read the port's GID";
		if (ibv_query_gid(ctx, port, gid_index, &qa.ah_attr.grh.dgid))
			goto out;
	}
	*fail = "the queue pair did not go to RTR with itself as destination";
	if (ibv_modify_qp(qp, &qa, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		goto out;
	memset(&qa, 0, sizeof(qa));
	qa.qp_state = IBV_QPS_RTS;
	qa.timeout = 14;
	qa.retry_cnt = 1;
	qa.rnr_retry = 1;
	qa.max_rd_atomic = 1;
	*fail = "the queue pair did not go to RTS";
	if (ibv_modify_qp(qp, &qa, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			  IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		goto out;
	for (k = 0; k <= LOOP_PROBES; k++) {
		struct ibv_sge sge = { .addr = (uintptr_t)buf, .length = 8, .lkey = mr->lkey };
		struct ibv_send_wr wr = { 0 }, *bad;
		double t0 = now_s(), deadline = t0 + 2, dt;
		struct ibv_wc wc;
		int n;

		wr.opcode = IBV_WR_RDMA_WRITE;
		wr.send_flags = IBV_SEND_SIGNALED;
		wr.sg_list = &sge;
		wr.num_sge = 1;
		wr.wr.rdma.remote_addr = (uintptr_t)(buf + 4);
		wr.wr.rdma.rkey = mr->rkey;
		*fail = "ibv_post_send failed";
		if (ibv_post_send(qp, &wr, &bad))
			goto fail;
		while ((n = ibv_poll_cq(cq, 1, &wc)) == 0 && now_s() < deadline)
			;
		dt = now_s() - t0;
		*fail = n == 0 ? "no completion within 2 s (the device does not loop back?)" : "the write failed";
		if (n != 1 || wc.status != IBV_WC_SUCCESS)
			goto fail;
		if (k && (!best || dt < best))
			best = dt;
	}
	*fail = NULL;
	goto out;
fail:
	best = 0;
out:
	if (qp)
		ibv_destroy_qp(qp);
	if (mr)
		ibv_dereg_mr(mr);
	if (cq)
		ibv_destroy_cq(cq);
	if (pd)
		ibv_dealloc_pd(pd);
	free(buf);
	return best;
}

/*
 * The most slots per peer this device and this rank's memory take:
 *   send queue   2 slots + 8 WRs (tp_verbs_open.c) <= max_qp_wr
 *   receives     slots + 1 <= max_qp_wr
 *   CQ           npeers (3 slots + 9) + 1 <= max_cqe
 *   memory       npeers x slots x slot_bytes <= RING_MEM_MAX, and <= half
 *                of RLIMIT_MEMLOCK where that is finite
 */
#define RING_MEM_MAX ((uint64_t)256 << 20)

static uint32_t depth_cap(const struct ibv_device_attr *da, uint32_t npeers, size_t slot_bytes)
{
	uint64_t cap = 4096, mem = RING_MEM_MAX, c;
	struct rlimit rl;

	if (!npeers)
		npeers = 1;
	if (da->max_qp_wr > 8 && (uint64_t)(da->max_qp_wr - 8) / 2 < cap)
		cap = (uint64_t)(da->max_qp_wr - 8) / 2;
	if (da->max_cqe > 0) {
		c = ((uint64_t)(da->max_cqe - 1) / npeers);
		c = c > 9 ? (c - 9) / 3 : 1;
		if (c < cap)
			cap = c;
	}
	if (!getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < mem)
		mem = rl.rlim_cur / 2;
	c = mem / ((uint64_t)npeers * slot_bytes);
	if (c < cap)
		cap = c;
	return cap < 2 ? 2 : (uint32_t)cap;
}

/*
 * The rule (transport/README.md, "Pipeline depth"): the writes that fill
 * the link are its bandwidth-delay product in 64 KiB blocks, rounded up,
 * plus one queued behind them; the window is that or DEPTH_MIN_WINDOW,
 * whichever is more, and the ring four windows (a quarter in flight, a
 * quarter released and not yet told, half for the receiver's lag).
 * The delay is the device's round trip plus the sender's reaction time:
 * the time from a write's completion to the sender's next post, which on
 * a host shared with other work is a scheduler's tick or more, not the
 * wire's microseconds.  SCHED_US_DEFAULT (1 ms, one tick at HZ=1000) is
 * that allowance; $HETSGD_SCHED_US sets it (0: the wire's round trip
 * alone, for a node that runs nothing else).  Measured in the soft-RoCE
 * bed: with the wire alone (a window of 4 x 64 KiB) the bandwidth runs
 * gave 0.66-0.70x ib_write_bw over 3 boots at host load 3-5; with 16 x
 * 64 KiB, 0.99-1.03x over 2 of 3 boots.
 * DEPTH_MIN_WINDOW is what the bed's receiver needed with the window at
 * its floor (16 slots: no credit wait in 300 puts; 8: three).
 */
#define DEPTH_MIN_WINDOW 4u
#define SCHED_US_DEFAULT 1000L
#define SCHED_US_MAX 100000L

int verbs_depth(struct hetsgd_tp *tp, uint32_t npeers, uint32_t *want, uint32_t *cap, char *why,
		 size_t why_len)
{
	struct verbs_state *st = calloc(1, sizeof(*st));
	struct ibv_device **devs = NULL;
	struct ibv_context *ctx = NULL;
	struct ibv_device_attr da;
	struct ibv_port_attr pa;
	const char *fail = "no usable RDMA device (open says why)";
	double MBps = 0, rtt = 0, bdp = 0;
	uint32_t window = DEPTH_MIN_WINDOW, need = 0;
	long sched_us = SCHED_US_DEFAULT;
	int i, n = 0, ret;

	*want = 4 * DEPTH_MIN_WINDOW;
	*cap = 4096;
	ret = hetsgd_env_long("HETSGD_SCHED_US", 0, SCHED_US_MAX, &sched_us);
	if (ret < 0) {
		free(st);
		return ret;	/* the message names the variable and its range */
	}
	if (!st || verbs_choose_endpoint(tp, st))
		goto out;
	devs = ibv_get_device_list(&n);
	for (i = 0; devs && i < n && !ctx; i++)
		if (!strcmp(ibv_get_device_name(devs[i]), st->dev))
			ctx = ibv_open_device(devs[i]);
	fail = "cannot query the device";
	if (!ctx || ibv_query_device(ctx, &da) || ibv_query_port(ctx, st->port, &pa))
		goto out;
	*cap = depth_cap(&da, npeers, tp->attr.slot_bytes);
	MBps = verbs_port_MBps(&pa);
	rtt = loopback_rtt_s(ctx, st->port, st->gid_index, &pa, &fail);
	if (rtt > 0 && MBps > 0) {
		bdp = MBps * 1024.0 * 1024.0 * (rtt + (double)sched_us * 1e-6);
		need = (uint32_t)(bdp / WINDOW_UNIT) + 2;	/* ceil + 1 */
		if (need > window)
			window = need;
		fail = NULL;
	} else if (!fail) {
		fail = "the port reports no rate";
	}
	*want = 4 * window;
out:
	if (fail)
		hetsgd_log(HETSGD_LOG_INFO, "transport", "verbs: rank %d: the ring's depth from the device: %s; "
			   "%u slots (the rule's floor)", tp->rank, fail, *want);
	snprintf(why, why_len, "%u slots per peer from link %.0f MB/s x (loopback RTT %.1f us + %ld us to react) "
		 "= %.0f KiB (%u x 64 KiB + 1, at least %u; x4), cap %u", *want, MBps, rtt * 1e6, sched_us,
		 bdp / 1024, need ? need - 1 : 0, DEPTH_MIN_WINDOW, *cap);
	if (ctx)
		ibv_close_device(ctx);
	if (devs)
		ibv_free_device_list(devs);
	free(st);
	return 0;
}
