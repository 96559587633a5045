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
 * Queue pairs are created by us and moved to RTR/RTS by hand (not by
 * rdma_cm) so that the path MTU is the minimum of both ends' active MTU
 * and the RoCE GID is the one we chose; rnr_retry is 7 (infinite) since a
 * WRITE_WITH_IMM consumes a receive and we re-post them as they are used.
 */
#include <config.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "hetsgd_topology.h"
#include "transport_priv.h"

#define IMM_TAG 0xB7u
#define INFO_MAGIC 0x68677662u		/* "bvgh" */
#define INFO_VERSION 2u
#define CREDIT_STRIDE 64u		/* one cache line per peer */
#define POLL_BATCH 32
#define CLOCK_EVERY 64
#define CM_EVERY 4096			/* progress calls between rdma_cm checks */

enum { SIG_DATA = 1, SIG_CREDIT = 2, SIG_TEST = 3 };

/* Connection requests that failed their proof: logged once per source. */
#define REFUSED_SOURCES 16

struct sig_rec {			/* one signalled work request */
	uint64_t sq_seq;		/* WRs posted on the QP up to and including it */
	uint32_t tx;
	uint8_t type;
	uint8_t kind;
};

struct vpeer {
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	struct ibv_pd *pd;		/* this peer's alone */
	struct ibv_mr *region_mr;	/* its ring and credit line: remote write */
	struct ibv_mr *tx_mr, *csrc_mr;	/* ours, local, in its domain */
	uint64_t ring;			/* our ring at the peer, from its handshake */
	uint32_t rkey;
	uint64_t nonce;			/* of our request (we connect) */
	int established;
	uint64_t sent;			/* data puts posted */
	uint64_t sq_posted, sq_done;
	uint32_t unsig;			/* unsignalled WRs since the last signalled one */
	struct sig_rec *sig;		/* sq_depth records, FIFO */
	uint64_t sig_head, sig_tail;
	uint64_t credit_val;		/* newest released count to tell the peer */
	uint64_t credit_sent;		/* last value written */
	double credit_since;		/* when credit_val first ran ahead of it */
	uint32_t max_inline;		/* bytes a put may send inline */
};

/* What each rank advertises; fixed-size fields only (it crosses machines). */
struct vinfo {
	uint32_t magic, version;
	uint32_t ipv4;			/* network order */
	uint16_t port;			/* network order */
	uint16_t pad;
	uint8_t nonce0[16];		/* rank 0's: the job key's salt */
	uint64_t slot_bytes;
	uint32_t slots;
	uint32_t active_mtu;		/* enum ibv_mtu */
	char dev[32];
};

struct verbs_state {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *listen;
	struct ibv_context *ctx;
	struct ibv_cq *cq;
	char *staging;			/* size regions of region_bytes */
	char *csrc;
	size_t staging_bytes, region_bytes, ring_bytes;
	uint8_t key[16];		/* the job key: conn_auth.c */
	uint32_t refused;		/* connection requests refused */
	uint32_t refused_ip[REFUSED_SOURCES];
	int refused_logged;
	struct vpeer *peers;
	struct vinfo *info;		/* every rank's, by rank */
	uint32_t sq_depth;
	uint8_t port;
	int gid_index;			/* -1: leave rdma_cm's choice (InfiniBand) */
	enum ibv_mtu active_mtu;
	int link_ethernet;
	uint32_t clock_countdown;	/* progress calls since the clock was read */
	uint32_t cm_countdown;		/* progress calls since rdma_cm was checked */
	char dev[32];
	struct sockaddr_in addr;
};

#define now_s hetsgd_clock_s

/* ---- choosing device, port, GID and address ------------------------------ */

static int gid_ipv4(const union ibv_gid *g, uint32_t *ip)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (memcmp(g->raw, prefix, sizeof(prefix)))
		return 0;
	memcpy(ip, g->raw + 12, 4);
	return 1;
}

/* The IPv4 address of an IPoIB netdev of this device (InfiniBand). */
static int ib_netdev_ipv4(const char *dev, uint32_t *ip)
{
	char path[256];
	struct ifaddrs *ifa, *i;
	struct dirent *de;
	DIR *d;
	int found = 0;

	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device/net", dev);
	d = opendir(path);
	if (!d || getifaddrs(&ifa)) {
		if (d)
			closedir(d);
		return 0;
	}
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		for (i = ifa; i && !found; i = i->ifa_next)
			if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !strcmp(i->ifa_name, de->d_name)) {
				*ip = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
				found = 1;
			}
	}
	freeifaddrs(ifa);
	closedir(d);
	return found;
}

static int choose_endpoint(struct hetsgd_tp *tp, struct verbs_state *st)
{
	const char *want = tp->attr.device ? tp->attr.device : getenv("HETSGD_IB_DEV");
	const char *addr = tp->attr.addr ? tp->attr.addr : getenv("HETSGD_IB_ADDR");
	int gid_index = tp->attr.gid_index, ndev = 0, i, ret;
	char names[256] = "";
	struct ibv_device **devs;
	uint32_t ip = 0;

	if (gid_index < 0) {
		long v = -1;

		ret = hetsgd_env_long("HETSGD_GID_INDEX", 0, 65535, &v);
		if (ret < 0)
			return ret;
		gid_index = (int)v;
	}
	if (addr && inet_pton(AF_INET, addr, &ip) != 1)
		return hetsgd_err(-EINVAL, "HETSGD_IB_ADDR/addr '%s' is not an IPv4 address", addr);

	devs = ibv_get_device_list(&ndev);
	if (!devs || ndev == 0) {
		if (devs)
			ibv_free_device_list(devs);
		return hetsgd_err(-ENODEV,
				  "no RDMA device found: load the NIC's driver, or create a soft-RoCE device "
				  "(modprobe rdma_rxe; rdma link add rxe0 type rxe netdev eth0), or use the shm provider");
	}
	ret = -ENODEV;
	for (i = 0; i < ndev && ret; i++) {
		const char *name = ibv_get_device_name(devs[i]);
		struct ibv_device_attr dattr;
		struct ibv_context *ctx;
		uint8_t p;

		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "", name);
		if (want && strcmp(want, name))
			continue;
		ctx = ibv_open_device(devs[i]);
		if (!ctx || ibv_query_device(ctx, &dattr)) {
			if (ctx)
				ibv_close_device(ctx);
			continue;
		}
		for (p = 1; p <= dattr.phys_port_cnt && ret; p++) {
			struct ibv_port_attr pattr;
			int g, gi = -1;

			if (ibv_query_port(ctx, p, &pattr) || pattr.state != IBV_PORT_ACTIVE)
				continue;
			st->link_ethernet = pattr.link_layer == IBV_LINK_LAYER_ETHERNET;
			st->active_mtu = pattr.active_mtu;
			if (st->link_ethernet) {
				/* RoCE: a v2 GID with our IPv4 address in it. */
				for (g = 0; g < pattr.gid_tbl_len; g++) {
					struct ibv_gid_entry ent;
					uint32_t gip;

					if (gid_index >= 0 && g != gid_index)
						continue;
					if (ibv_query_gid_ex(ctx, p, (uint32_t)g, &ent, 0))
						continue;
					if (ent.gid_type != IBV_GID_TYPE_ROCE_V2 || !gid_ipv4(&ent.gid, &gip))
						continue;
					if (addr && gip != ip)
						continue;
					gi = g;
					if (!addr)
						ip = gip;
					break;
				}
				if (gi < 0)
					continue;
			} else if (!addr && !ib_netdev_ipv4(name, &ip)) {
				continue;
			}
			st->port = p;
			st->gid_index = st->link_ethernet ? gi : -1;
			snprintf(st->dev, sizeof(st->dev), "%s", name);
			ret = 0;
		}
		ibv_close_device(ctx);
	}
	ibv_free_device_list(devs);
	if (ret) {
		if (want && !strstr(names, want))
			return hetsgd_err(-ENODEV, "RDMA device '%s' not found; this host has: %s", want, names);
		return hetsgd_err(-ENODEV,
				  "no usable RDMA port on %s (have: %s): need an ACTIVE port with %s%s%s; "
				  "check ibv_devinfo, or set HETSGD_IB_DEV, HETSGD_GID_INDEX or HETSGD_IB_ADDR",
				  want ? want : "any device", names,
				  gid_index >= 0 ? "the requested GID index as RoCE v2 IPv4" :
				  "a RoCE v2 IPv4-mapped GID (RoCE) or an IPoIB address (InfiniBand)",
				  addr ? " matching address " : "", addr ? addr : "");
	}
	st->addr.sin_family = AF_INET;
	st->addr.sin_addr.s_addr = ip;
	return 0;
}

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

static int check_memlock(struct hetsgd_tp *tp, size_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY || can_lock_any_amount())
		return 0;
	if ((size_t)rl.rlim_cur >= need)
		return 0;
	return hetsgd_err(-ENOMEM,
			  "RLIMIT_MEMLOCK is %llu KiB; rank %d needs %zu KiB to register its staging rings and send buffers: "
			  "raise it with ulimit -l (limits.conf memlock), under Slurm with PropagateResourceLimits "
			  "or srun --propagate=MEMLOCK, or use fewer/smaller slots",
			  (unsigned long long)rl.rlim_cur >> 10, tp->rank, need >> 10);
}

static struct ibv_mr *reg(struct verbs_state *st, struct ibv_pd *pd, void *p, size_t len, int access,
			 const char *what, int peer)
{
	struct ibv_mr *mr = ibv_reg_mr(pd, p, len, access);

	if (!mr)
		hetsgd_err(-errno, "ibv_reg_mr of %zu KiB (%s for rank %d) on %s failed: %s%s", len >> 10, what, peer,
			   st->dev, strerror(errno),
			   errno == ENOMEM ? ": RLIMIT_MEMLOCK too low? raise it with ulimit -l "
					     "(under Slurm: PropagateResourceLimits)" : "");
	return mr;
}

/* Where rank p writes into this rank: its ring, then its credit line. */
static char *region(struct verbs_state *st, int p)
{
	return st->staging + (size_t)p * st->region_bytes;
}

static uint64_t *credit_in(struct verbs_state *st, int p)
{
	return (uint64_t *)(region(st, p) + st->ring_bytes);
}

/* ---- queue pairs ------------------------------------------------------------ */

static int post_recv(struct verbs_state *st, int peer)
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
	ia.cap.max_recv_wr = tp->attr.slots;
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
				  peer, st->sq_depth, tp->attr.slots, strerror(errno));
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
	for (i = 0; i < tp->attr.slots; i++) {
		ret = post_recv(st, peer);
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
static void refuse(struct hetsgd_tp *tp, struct verbs_state *st, struct rdma_cm_id *id, const char *why)
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
	fprintf(stderr, "hetsgd: verbs: rank %d refused a connection request from %s: %s "
		"(further refusals of this source are counted, not logged)\n",
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
		refuse(tp, st, ev->id, hetsgd_errmsg());
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
		refuse(tp, st, ev->id, "it proves the job key but names ranks that do not connect here "
		       "(a rank connects to every lower rank): a confused rank of this job");
		*destroy = 1;
		return 0;
	}
	peer = (int)in.rank;
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

static int connect_all(struct hetsgd_tp *tp, struct verbs_state *st)
{
	int me = tp->rank, want = tp->size - 1, done = 0, j, ret = 0, timeout_s;
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

	/* Lower ranks listen, higher ranks connect: each pair once. */
	for (j = 0; j < me; j++) {
		struct sockaddr_in dst = { .sin_family = AF_INET };
		struct sockaddr_in src = st->addr;
		struct rdma_cm_id *id;

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
						fprintf(stderr, "hetsgd: test: hostile request %d was rejected\n", j);
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
		fprintf(stderr, "hetsgd: verbs: rank %d refused %u connection requests in all while connecting\n",
			me, st->refused);
	return ret;
}

/*
 * This rank failed to connect.  The ranks that wait for a connection from
 * it would wait out their connect timeout: tell each lower rank not yet
 * connected with a proven ABORT request, and stop listening, so that a
 * higher rank's request is refused at once.  Best effort, a few seconds.
 */
static void abort_connects(struct hetsgd_tp *tp, struct verbs_state *st)
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

/* ---- open / close ------------------------------------------------------- */

static void verbs_teardown(struct hetsgd_tp *tp, struct verbs_state *st)
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
		if (p->region_mr)
			ibv_dereg_mr(p->region_mr);
		if (p->pd)
			ibv_dealloc_pd(p->pd);
		free(p->sig);
	}
	if (st->cq)
		ibv_destroy_cq(st->cq);
	if (st->listen)
		rdma_destroy_id(st->listen);
	if (st->ec)
		rdma_destroy_event_channel(st->ec);
	tp_free(st->staging, st->staging_bytes);
	tp_free(st->csrc, (size_t)tp->size * CREDIT_STRIDE);
	free(st->peers);
	free(st->info);
	free(st);
}

static int verbs_setup_local(struct hetsgd_tp *tp, struct verbs_state *st, struct vinfo *mine)
{
	size_t S = tp->attr.slots, nb = (size_t)tp->size, tx_bytes;
	struct ibv_device_attr da;
	int cqe, j;

	if (ibv_is_fork_initialized() == IBV_FORK_DISABLED) {
		/* Launchers fork; without this a child could corrupt our pinned pages. */
		int ret = ibv_fork_init();

		if (ret)
			return hetsgd_err(-ret, "ibv_fork_init: %s: open the verbs transport before any "
					  "other verbs use in this process", strerror(ret));
	}
	int ret = choose_endpoint(tp, st);
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
	cqe = (int)((nb - 1) * (st->sq_depth + S) + 1);
	if ((int)st->sq_depth > da.max_qp_wr || (int)S > da.max_qp_wr || cqe > da.max_cqe)
		return hetsgd_err(-EINVAL, "%s allows %d WRs per queue and %d CQ entries; %u slots with %d ranks need "
				  "%u and %d: use fewer slots", st->dev, da.max_qp_wr, da.max_cqe, tp->attr.slots,
				  tp->size, st->sq_depth, cqe);

	/* Region p: p's ring, then p's credit line, on pages of their own. */
	st->ring_bytes = S * tp->attr.slot_bytes;
	st->region_bytes = (st->ring_bytes + CREDIT_STRIDE + 4095) / 4096 * 4096;
	st->staging_bytes = nb * st->region_bytes;
	tx_bytes = (size_t)tp->attr.tx_bufs * tp->attr.slot_bytes;
	/* The send buffers are pinned once per peer's domain, and counted so. */
	ret = check_memlock(tp, st->staging_bytes + (nb - 1) * (tx_bytes + 4096) + nb * CREDIT_STRIDE + 4096);
	if (ret)
		return ret;
	st->cq = ibv_create_cq(st->ctx, cqe, NULL, NULL, 0);
	if (!st->cq)
		return hetsgd_err(-errno, "ibv_create_cq(%d entries) on %s: %s", cqe, st->dev, strerror(errno));
	st->staging = tp_alloc(tp, st->staging_bytes);
	st->csrc = tp_alloc(tp, nb * CREDIT_STRIDE);
	if (!st->staging || !st->csrc)
		return hetsgd_err(-ENOMEM, "cannot allocate %zu KiB of staging rings: %s", st->staging_bytes >> 10,
				  hetsgd_topo_errmsg());
	for (j = 0; j < tp->size; j++) {
		struct vpeer *p = &st->peers[j];

		p->sig = calloc(st->sq_depth, sizeof(struct sig_rec));
		if (!p->sig)
			return hetsgd_err(-ENOMEM, "out of memory");
		if (j == tp->rank)
			continue;
		p->pd = ibv_alloc_pd(st->ctx);
		if (!p->pd)
			return hetsgd_err(-errno, "ibv_alloc_pd(%s) for rank %d: %s", st->dev, j, strerror(errno));
		p->region_mr = reg(st, p->pd, region(st, j), st->ring_bytes + CREDIT_STRIDE,
				   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, "staging ring", j);
		p->csrc_mr = p->region_mr ? reg(st, p->pd, st->csrc + (size_t)j * CREDIT_STRIDE, CREDIT_STRIDE,
						IBV_ACCESS_LOCAL_WRITE, "credit source", j) : NULL;
		p->tx_mr = p->csrc_mr ? reg(st, p->pd, tp->tx_mem, tx_bytes, IBV_ACCESS_LOCAL_WRITE,
					    "send buffers", j) : NULL;
		if (!p->tx_mr)
			return -ENOMEM;
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

static int verbs_open(struct hetsgd_tp *tp)
{
	struct verbs_state *st = calloc(1, sizeof(*st));
	struct vinfo mine;
	int ret, r;

	if (!st)
		return hetsgd_err(-ENOMEM, "out of memory");
	st->peers = calloc((size_t)tp->size, sizeof(*st->peers));
	st->info = calloc((size_t)tp->size, sizeof(*st->info));
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
	}
	if (!ret)
		ret = derive_job_key(tp, st);
	if (!ret) {
		ret = connect_all(tp, st);
		if (ret)
			abort_connects(tp, st);
	}
	/* From now on the CM channel is polled from progress, never waited on. */
	if (!ret && fcntl(st->ec->fd, F_SETFL, fcntl(st->ec->fd, F_GETFL) | O_NONBLOCK))
		ret = hetsgd_err(-errno, "fcntl on the rdma_cm channel: %s", strerror(errno));
	ret = tp_agree(tp, ret, "connect to its peers");
	if (ret)
		goto fail;
	tp->priv = st;
	{
		char ip[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &st->addr.sin_addr, ip, sizeof(ip));
		snprintf(tp->desc, sizeof(tp->desc),
			 "verbs: %s port %u, %s, %s %d, active MTU %d, %d ranks, %u slots of %zu bytes per peer",
			 st->dev, st->port, ip, st->link_ethernet ? "RoCE v2 GID index" : "InfiniBand, GID index",
			 st->gid_index, 128 << st->active_mtu, tp->size, tp->attr.slots, tp->attr.slot_bytes);
	}
	return hetsgd_boot_barrier(tp->boot) ? -EIO : 0;

fail:
	verbs_teardown(tp, st);
	return ret;
}

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

	if (signal) {
		struct sig_rec *rec = &p->sig[p->sig_tail % st->sq_depth];

		rec->sq_seq = p->sq_posted + 1;
		rec->type = type;
		rec->tx = tx;
		rec->kind = kind;
		wr->send_flags |= IBV_SEND_SIGNALED;
		wr->wr_id = (uint64_t)peer;
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

/* Handle one completion; events go to the FIFO unless !deliver (closing). */
static int handle_wc(struct hetsgd_tp *tp, struct verbs_state *st, struct ibv_wc *wc, int deliver)
{
	int peer = (int)wc->wr_id;

	if (peer < 0 || peer >= tp->size)
		return hetsgd_err(-EPROTO, "completion with unknown wr_id %" PRIu64, wc->wr_id);
	if (wc->status != IBV_WC_SUCCESS)
		return hetsgd_err(-EIO, "%s rank %d failed: %s (vendor error 0x%x): %s",
				  (wc->opcode & IBV_WC_RECV) ? "receive from" : "write to", peer,
				  ibv_wc_status_str(wc->status), wc->vendor_err, wc_hint(wc->status));
	if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
		uint32_t imm = ntohl(wc->imm_data), slot = imm & 0xffff;
		int ret;

		if (!(wc->wc_flags & IBV_WC_WITH_IMM) || imm >> 24 != IMM_TAG || slot >= tp->attr.slots)
			return hetsgd_err(-EPROTO, "rank %d sent immediate 0x%08x, not a hetsgd block "
					  "(tag 0x%02x, slot < %u)", peer, imm, IMM_TAG, tp->attr.slots);
		if (!deliver)
			return 0;
		ret = tp_recv_landed(tp, peer, slot, region(st, peer) + (size_t)slot * tp->attr.slot_bytes,
				     wc->byte_len, (uint8_t)(imm >> 16));
		return ret ? ret : post_recv(st, peer);
	}
	if (wc->opcode == IBV_WC_RDMA_WRITE) {
		struct vpeer *p = &st->peers[peer];
		struct sig_rec *rec;

		if (p->sig_head == p->sig_tail)
			return hetsgd_err(-EPROTO, "unexpected send completion for rank %d", peer);
		rec = &p->sig[p->sig_head++ % st->sq_depth];
		p->sq_done = rec->sq_seq;
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
 * every CM_EVERY progress calls: each check is a system call).  Only the
 * CM sees it: a sender blocked on credits has nothing in flight that could
 * time out.  Before close (which is collective) no disconnect is expected,
 * so a CM event on a peer's connection now is the end of the endpoint.
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

			refuse(tp, st, id, "every rank of this job is already connected");
			rdma_ack_cm_event(ev);
			rdma_destroy_id(id);
			continue;
		}
		rdma_ack_cm_event(ev);
		if (peer < 0 || peer >= tp->size || peer == tp->rank)
			continue;	/* a refused stranger's id, or a test's */
		if (type == RDMA_CM_EVENT_DISCONNECTED)
			st->peers[peer].established = 0;
		return hetsgd_err(-ECONNRESET, "rank %d: connection with rank %d ended (%s): that rank's process "
				  "exited or failed before closing the transport", tp->rank, peer, rdma_event_str(type));
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
	if (++st->cm_countdown >= CM_EVERY) {
		st->cm_countdown = 0;
		ret = check_cm_events(tp, st);
		if (ret)
			return ret;
	}
	if (++st->clock_countdown >= CLOCK_EVERY) {
		st->clock_countdown = 0;
		for (j = 0; j < tp->size; j++) {
			struct vpeer *p = &st->peers[j];

			if (j == tp->rank || p->credit_val == p->credit_sent)
				continue;
			if (!now)
				now = now_s();
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

			if (j == tp->rank)
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
	.close = verbs_close,
	.test_write = VERBS_TEST_WRITE,
};
