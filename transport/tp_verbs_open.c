/* verbs provider: memory registration, open and close (see tp_verbs.c). */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tp_verbs_priv.h"

/* ---- memory ---------------------------------------------------------------- */

/*
 * CAP_IPC_LOCK, not being root, exempts a process from RLIMIT_MEMLOCK:
 * root in a container often lacks it.  Read from /proc; if that fails,
 * assume root has it.
 */
static int can_lock_any_amount(void)
{
	unsigned long long eff;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	int found = 0;

	if (!f)
		return geteuid() == 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1) {
			found = 1;
			break;
		}
	fclose(f);
	if (!found)
		return geteuid() == 0;
	return (eff >> 14) & 1;		/* CAP_IPC_LOCK */
}

/*
 * The advice follows the Slurm FAQ: slurmd runs with an unlimited locked
 * memory limit, and PropagateResourceLimitsExcept=MEMLOCK in slurm.conf
 * lets tasks keep it instead of the submitting shell's.  srun
 * --propagate=MEMLOCK does the opposite (it carries the shell's, often
 * small, limit onto the nodes), so it is not advised.
 */
#define MEMLOCK_FIX "raise it with ulimit -l unlimited (limits.conf memlock) in the shell that starts the ranks; " \
	"under Slurm ask for PropagateResourceLimitsExcept=MEMLOCK in slurm.conf, so that tasks keep slurmd's " \
	"unlimited limit, or run ulimit -l unlimited before sbatch/srun"

static int check_memlock(struct hetsgd_tp *tp, size_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY || can_lock_any_amount())
		return 0;
	if ((size_t)rl.rlim_cur >= need)
		return 0;
	return hetsgd_err(-ENOMEM,
			  "RLIMIT_MEMLOCK is %llu KiB; rank %d needs %zu KiB to register its staging rings and send buffers: "
			  MEMLOCK_FIX "; or use fewer/smaller slots",
			  (unsigned long long)rl.rlim_cur >> 10, tp->rank, need >> 10);
}

static struct ibv_mr *reg(struct verbs_state *st, struct ibv_pd *pd, void *p, size_t len, int access,
			 const char *what, int peer)
{
	struct ibv_mr *mr = ibv_reg_mr(pd, p, len, access);

	if (!mr)
		hetsgd_err(-errno, "ibv_reg_mr of %zu KiB (%s for rank %d) on %s failed: %s%s", len >> 10, what, peer,
			   st->dev, strerror(errno),
			   errno == ENOMEM ? ": RLIMIT_MEMLOCK too low? " MEMLOCK_FIX : "");
	return mr;
}

/* ---- open / close ------------------------------------------------------- */

void verbs_teardown(struct hetsgd_tp *tp, struct verbs_state *st)
{
	int j;

	for (j = 0; st->peers && j < tp->size; j++) {
		if (st->peers[j].id && st->peers[j].established)
			rdma_disconnect(st->peers[j].id);
	}
	/* Ack whatever arrives (DISCONNECTED, TIMEWAIT_EXIT) for a short while. */
	if (st->ec) {
		double end = now_s() + 2.0;
		int pending = 0;

		for (j = 0; st->peers && j < tp->size; j++)
			pending += st->peers[j].established;
		while (pending > 0 && now_s() < end) {
			struct pollfd pfd = { .fd = st->ec->fd, .events = POLLIN };
			struct rdma_cm_event *ev;

			if (poll(&pfd, 1, 100) <= 0)
				continue;
			if (rdma_get_cm_event(st->ec, &ev))
				break;
			if (ev->event == RDMA_CM_EVENT_DISCONNECTED)
				pending--;
			rdma_ack_cm_event(ev);
		}
	}
	for (j = 0; st->peers && j < tp->size; j++) {
		struct vpeer *p = &st->peers[j];

		if (p->qp)
			ibv_destroy_qp(p->qp);
		if (p->id)
			rdma_destroy_id(p->id);
		if (p->tx_mr)
			ibv_dereg_mr(p->tx_mr);
		if (p->csrc_mr)
			ibv_dereg_mr(p->csrc_mr);
		if (p->llsrc_mr)
			ibv_dereg_mr(p->llsrc_mr);
		if (p->region_mr)
			ibv_dereg_mr(p->region_mr);
		if (p->pd)
			ibv_dealloc_pd(p->pd);
		free(p->sig);
		free(p->pend);
		free(p->chain);
		free(p->chain_sge);
	}
	if (st->cq)
		ibv_destroy_cq(st->cq);
	if (st->listen)
		rdma_destroy_id(st->listen);
	if (st->ec)
		rdma_destroy_event_channel(st->ec);
	tp_free(st->staging, st->staging_bytes);
	tp_free(st->csrc, (size_t)tp->npeers * CREDIT_STRIDE + 1);
	if (st->llsrc)
		tp_free(st->llsrc, (size_t)tp->npeers * tp->attr.slots * st->ll_stride + 1);
	free(st->peers);
	free(st->info);
	free(st);
}

/*
 * The polled path's threshold, as this rank proposes it: $HETSGD_POLL_MAX
 * bytes (0 turns the path off), else the largest block whose LL lines fit
 * one packet of the active MTU (504 bytes at 1024, 2040 at 4096), which is
 * where the path pays (measured in the soft-RoCE bed: at 1 KiB, two
 * packets, its latency was twice the immediate path's); never more than a
 * slot, which the block is unpacked into.  It sizes this rank's LL ring;
 * the job uses the smallest proposal (verbs_open).
 */
static int choose_poll_max(struct hetsgd_tp *tp, struct verbs_state *st)
{
	const char *env = getenv("HETSGD_POLL_MAX");
	unsigned long v = poll_max_for_mtu(128u << st->active_mtu);
	char *end;

	if (env && *env) {
		errno = 0;
		v = strtoul(env, &end, 10);
		if (errno || *end || end == env || v > POLL_MAX_LIMIT)
			return hetsgd_err(-EINVAL, "HETSGD_POLL_MAX=%s: give the largest block, in bytes, that goes by "
					  "the polled path: 0 (off) to %u", env, POLL_MAX_LIMIT);
	}
	if (v > tp->attr.slot_bytes)
		v = tp->attr.slot_bytes;
	st->poll_max = (uint32_t)v;
	st->ll_stride = ll_stride_for(st->poll_max);
	return 0;
}

/* Long: one rank's device state built in teardown's reverse order, a message per step; moved byte for byte, untested outside the soft-RoCE bed. */
static int verbs_setup_local(struct hetsgd_tp *tp, struct verbs_state *st, struct vinfo *mine)
{
	/* Everything below is per peer of the pattern, not per rank. */
	size_t S = tp->attr.slots, nb = (size_t)tp->npeers, tx_bytes;
	struct ibv_device_attr da;
	int cqe, j;

	if (ibv_is_fork_initialized() == IBV_FORK_DISABLED) {
		/* Launchers fork; without this a child could corrupt our pinned pages. */
		int ret = ibv_fork_init();

		if (ret)
			return hetsgd_err(-ret, "ibv_fork_init: %s: open the verbs transport before any "
					  "other verbs use in this process", strerror(ret));
	}
	int ret = verbs_choose_endpoint(tp, st);
	if (ret)
		return ret;

	st->ec = rdma_create_event_channel();
	if (!st->ec)
		return hetsgd_err(-errno, "rdma_create_event_channel: %s (is rdma_ucm loaded? /dev/infiniband/rdma_cm)",
				  strerror(errno));
	if (rdma_create_id(st->ec, &st->listen, (void *)(intptr_t)-1, RDMA_PS_TCP))
		return hetsgd_err(-errno, "rdma_create_id: %s", strerror(errno));
	if (rdma_bind_addr(st->listen, (struct sockaddr *)&st->addr))
		return hetsgd_err(-errno, "rdma_bind_addr(%s): %s: is it the address of an RDMA netdev (rdma link show)?",
				  inet_ntoa(st->addr.sin_addr), strerror(errno));
	if (rdma_listen(st->listen, tp->size))
		return hetsgd_err(-errno, "rdma_listen: %s", strerror(errno));
	st->ctx = st->listen->verbs;
	if (!st->ctx || strcmp(ibv_get_device_name(st->ctx->device), st->dev))
		return hetsgd_err(-EINVAL, "address %s belongs to RDMA device %s, not %s: set HETSGD_IB_ADDR to an "
				  "address of %s", inet_ntoa(st->addr.sin_addr),
				  st->ctx ? ibv_get_device_name(st->ctx->device) : "(none)", st->dev, st->dev);

	st->sq_depth = 2 * tp->attr.slots + 8;
	if (ibv_query_device(st->ctx, &da))
		return hetsgd_err(-EIO, "ibv_query_device(%s) failed", st->dev);
	cqe = (int)(nb * (st->sq_depth + S + 1) + 1);
	if ((int)st->sq_depth > da.max_qp_wr || (int)S + 1 > da.max_qp_wr || cqe > da.max_cqe)
		return hetsgd_err(-EINVAL, "%s allows %d WRs per queue and %d CQ entries; %u slots with %d ranks need "
				  "%u and %d: give fewer slots (--slots), or none to size the ring from the device",
				  st->dev, da.max_qp_wr, da.max_cqe, tp->attr.slots,
				  tp->size, st->sq_depth, cqe);

	/* Region p: p's ring, p's credit line, p's LL ring, on pages of their own. */
	ret = choose_poll_max(tp, st);
	if (ret)
		return ret;
	st->ring_bytes = S * tp->attr.slot_bytes;
	st->ll_off = st->ring_bytes + CREDIT_STRIDE;
	st->region_bytes = (st->ll_off + S * st->ll_stride + 4095) / 4096 * 4096;
	st->staging_bytes = nb * st->region_bytes + 1;
	tx_bytes = (size_t)tp->attr.tx_bufs * tp->attr.slot_bytes;
	/* The send buffers are pinned once per peer's domain, and counted so. */
	ret = check_memlock(tp, st->staging_bytes + nb * (tx_bytes + 4096) + nb * CREDIT_STRIDE + 4096 +
				nb * S * st->ll_stride);
	if (ret)
		return ret;
	st->cq = ibv_create_cq(st->ctx, cqe, NULL, NULL, 0);
	if (!st->cq)
		return hetsgd_err(-errno, "ibv_create_cq(%d entries) on %s: %s", cqe, st->dev, strerror(errno));
	st->staging = tp_alloc(tp, st->staging_bytes);
	st->csrc = tp_alloc(tp, nb * CREDIT_STRIDE + 1);
	st->llsrc = st->ll_stride ? tp_alloc(tp, nb * S * st->ll_stride + 1) : NULL;
	if (!st->staging || !st->csrc || (st->ll_stride && !st->llsrc))
		return hetsgd_err(-ENOMEM, "cannot allocate %zu KiB of staging rings: %s", st->staging_bytes >> 10,
				  hetsgd_topo_errmsg());
	for (j = 0; j < tp->size; j++) {
		struct vpeer *p = &st->peers[j];

		if (!tp_is_peer(tp, j))
			continue;	/* no domain, memory or queue pair */
		p->sig = calloc(st->sq_depth, sizeof(struct sig_rec));
		p->pend = calloc(S, sizeof(struct pend_imm));
		p->chain = calloc(HETSGD_TP_CHAIN_MAX, sizeof(*p->chain));
		p->chain_sge = calloc(HETSGD_TP_CHAIN_MAX, sizeof(*p->chain_sge));
		if (!p->sig || !p->pend || !p->chain || !p->chain_sge)
			return hetsgd_err(-ENOMEM, "out of memory");
		p->pd = ibv_alloc_pd(st->ctx);
		if (!p->pd)
			return hetsgd_err(-errno, "ibv_alloc_pd(%s) for rank %d: %s", st->dev, j, strerror(errno));
		p->region_mr = reg(st, p->pd, region(st, j), st->ll_off + S * st->ll_stride,
				   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, "staging ring", j);
		p->csrc_mr = p->region_mr ? reg(st, p->pd, credit_src(st, j), CREDIT_STRIDE,
						IBV_ACCESS_LOCAL_WRITE, "credit source", j) : NULL;
		p->tx_mr = p->csrc_mr ? reg(st, p->pd, tp->tx_mem, tx_bytes, IBV_ACCESS_LOCAL_WRITE,
					    "send buffers", j) : NULL;
		if (!p->tx_mr)
			return -ENOMEM;
		if (st->ll_stride) {
			p->llsrc_mr = reg(st, p->pd, ll_src(st, tp->attr.slots, j, 0), S * st->ll_stride,
					  IBV_ACCESS_LOCAL_WRITE, "polled-block staging", j);
			if (!p->llsrc_mr)
				return -ENOMEM;
		}
	}

	memset(mine, 0, sizeof(*mine));
	mine->magic = INFO_MAGIC;
	mine->version = INFO_VERSION;
	mine->ipv4 = st->addr.sin_addr.s_addr;
	mine->port = rdma_get_src_port(st->listen);
	if (tp->rank == 0 && getrandom(mine->nonce0, sizeof(mine->nonce0), 0) != sizeof(mine->nonce0))
		return hetsgd_err(-EIO, "getrandom: %s", strerror(errno));
	mine->slot_bytes = tp->attr.slot_bytes;
	mine->slots = tp->attr.slots;
	mine->active_mtu = (uint32_t)st->active_mtu;
	mine->poll_max = st->poll_max;
	snprintf(mine->dev, sizeof(mine->dev), "%s", st->dev);
	return 0;
}

/*
 * The key every connection proves (conn_auth.c): rank 0's nonce, plus the
 * secret when the bootstrap's channel is one that strangers can read.
 */
static int derive_job_key(struct hetsgd_tp *tp, struct verbs_state *st)
{
	const char *secret = NULL;

	if (hetsgd_boot_get_kind(tp->boot) == HETSGD_BOOT_TCP) {
		secret = getenv("HETSGD_SECRET");
		if (!secret || !*secret)
			return hetsgd_err(-EACCES, "the TCP rendezvous ran without HETSGD_SECRET, which the verbs "
					  "connections prove too: export it to every rank");
	}
	if (tp_job_key(secret, st->info[0].nonce0, st->key))
		return hetsgd_err(-ENOMEM, "out of memory");
	return 0;
}

int verbs_open(struct hetsgd_tp *tp)
{
	struct verbs_state *st = calloc(1, sizeof(*st));
	struct vinfo mine;
	int ret, r;

	if (!st)
		return hetsgd_err(-ENOMEM, "out of memory");
	st->peers = calloc((size_t)tp->size, sizeof(*st->peers));
	st->info = calloc((size_t)tp->size, sizeof(*st->info));
	st->pidx = tp->pidx;
	st->doorbells = &tp->stats.doorbells;
	ret = (!st->peers || !st->info) ? hetsgd_err(-ENOMEM, "out of memory") : 0;
	memset(&mine, 0, sizeof(mine));
	if (!ret)
		ret = verbs_setup_local(tp, st, &mine);
	ret = tp_agree(tp, ret, "set up its RDMA device");
	if (ret)
		goto fail;
	if (hetsgd_boot_allgather(tp->boot, &mine, st->info, sizeof(mine))) {
		ret = -EIO;
		goto fail;
	}
	for (r = 0; r < tp->size && !ret; r++) {
		struct vinfo *in = &st->info[r];

		if (in->magic != INFO_MAGIC || in->version != INFO_VERSION)
			ret = hetsgd_err(-EPROTO, "rank %d runs an incompatible hetsgd (transport info version %u, ours %u)",
					 r, in->version, INFO_VERSION);
		else if (in->slots != tp->attr.slots || in->slot_bytes != tp->attr.slot_bytes)
			ret = hetsgd_err(-EINVAL, "rank %d uses %u slots of %llu bytes, this rank %u of %zu: "
					 "every rank must use the same transport settings",
					 r, in->slots, (unsigned long long)in->slot_bytes, tp->attr.slots,
					 tp->attr.slot_bytes);
		else if (in->poll_max > POLL_MAX_LIMIT)
			ret = hetsgd_err(-EPROTO, "rank %d proposes a polled-block limit of %u bytes, above %u: it runs an "
					 "incompatible hetsgd", r, in->poll_max, POLL_MAX_LIMIT);
	}
	/* Polled blocks: the smallest proposal; each peer's LL ring as it sized it. */
	for (r = 0; r < tp->size && !ret; r++) {
		if (st->info[r].poll_max < st->poll_max)
			st->poll_max = st->info[r].poll_max;
		st->peers[r].ll_rstride = ll_stride_for(st->info[r].poll_max);
	}
	if (!ret)
		ret = derive_job_key(tp, st);
	if (!ret) {
		ret = verbs_connect_all(tp, st);
		if (ret)
			verbs_abort_connects(tp, st);
	}
	/* Our pairs are connected; no data flows before the barrier at the end. */
	if (!ret && tp->size > 1)
		ret = verbs_pipeline(tp, st);
	/* From now on the CM channel is polled from progress, never waited on. */
	if (!ret && fcntl(st->ec->fd, F_SETFL, fcntl(st->ec->fd, F_GETFL) | O_NONBLOCK))
		ret = hetsgd_err(-errno, "fcntl on the rdma_cm channel: %s", strerror(errno));
	ret = tp_agree(tp, ret, "connect to its peers");
	if (ret)
		goto fail;
	tp->priv = st;
	/* counted from what exists, not from the pattern */
	for (r = 0; r < tp->size; r++) {
		tp->fp_conns += st->peers[r].qp != NULL;
		if (st->peers[r].region_mr)
			tp->fp_registered += st->peers[r].region_mr->length + st->peers[r].csrc_mr->length +
					     st->peers[r].tx_mr->length +
					     (st->peers[r].llsrc_mr ? st->peers[r].llsrc_mr->length : 0);
	}
	{
		char ip[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &st->addr.sin_addr, ip, sizeof(ip));
		snprintf(tp->desc, sizeof(tp->desc),
			 "verbs: %s port %u, %s, %s %d, active MTU %d, %d ranks, %d peers (%s), %u slots of %zu bytes per peer; "
			 "polled up to %u bytes; window %u x 64 KiB (link %.0f MB/s x RTT %.1f us to a peer = %.0f KiB); "
			 "ring: %s",
			 st->dev, st->port, ip, st->link_ethernet ? "RoCE v2 GID index" : "InfiniBand, GID index",
			 st->gid_index, 128 << st->active_mtu, tp->size, tp->npeers,
			 hetsgd_tp_pattern_name(tp->attr.pattern), tp->attr.slots, tp->attr.slot_bytes,
			 st->poll_max, st->window, st->link_MBps, st->rtt_us,
			 st->link_MBps * st->rtt_us / 1024, tp->depth_why);
	}
	return hetsgd_boot_barrier(tp->boot) ? -EIO : 0;

fail:
	verbs_teardown(tp, st);
	return ret;
}
