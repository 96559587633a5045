/*
 * Private to the verbs provider (tp_verbs*.c): its state and what its
 * files call across.  tp_verbs.c describes the design.
 *   tp_verbs_device.c   choosing device, port, GID and address
 *   tp_verbs_open.c     memory registration, open and close
 *   tp_verbs_connect.c  queue pairs and the rdma_cm handshake
 *   tp_verbs_depth.c    the ring's depth from the device (before open)
 *   tp_verbs.c          the data path and the provider's table
 */
#ifndef HETSGD_TP_VERBS_PRIV_H
#define HETSGD_TP_VERBS_PRIV_H

#include <netinet/in.h>
#include <stdint.h>
#include <time.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "hetsgd_topology.h"
#include "transport_priv.h"

#define IMM_TAG 0xB7u
#define INFO_MAGIC 0x68677662u		/* "bvgh" */
#define INFO_VERSION 3u
#define CREDIT_STRIDE 64u		/* one cache line per peer */
#define POLL_BATCH 32
#define CLOCK_EVERY 64
#define CM_EVERY 4096			/* progress calls between rdma_cm checks */
#define CM_S 0.25			/* ... or seconds, whichever comes first */

enum { SIG_DATA = 1, SIG_CREDIT = 2, SIG_TEST = 3, SIG_POLLED = 4, SIG_BYE = 5 };

/* The immediate's slot field of close's bye: never a slot (at most 4096). */
#define BYE_SLOT 0xffffu

/*
 * The polled small-block path (tp_verbs.c describes it): blocks of up to
 * poll_max bytes go as LL lines, 8-byte words of 4 data bytes and a 4-byte
 * flag, into a second ring after the credit line.
 */
#define POLL_MAX_LIMIT (1u << 20)	/* the header word has 24 bits of length */
#define WINDOW_UNIT 65536u		/* the window counts blocks of this size: a bandwidth stream's smallest */

/* The polled path's default threshold: the largest block whose LL lines fit one packet. */
static inline uint32_t poll_max_for_mtu(uint32_t mtu_bytes)
{
	return (mtu_bytes / 8 - 2) * 4;
}
static inline size_t ll_bytes(size_t len)	/* on the wire: 2 header words + data words */
{
	return 8 * (2 + (len + 3) / 4);
}

static inline size_t ll_stride_for(uint32_t poll_max)	/* an LL slot, whole cache lines */
{
	return poll_max ? (ll_bytes(poll_max) + 63) / 64 * 64 : 0;
}

/* Connection requests that failed their proof: logged once per source. */
#define REFUSED_SOURCES 16

struct sig_rec {			/* one signalled work request */
	uint64_t sq_seq;		/* WRs posted on the QP up to and including it */
	uint32_t tx;
	uint32_t len;			/* SIG_DATA: bytes written */
	uint8_t type;
	uint8_t kind;
};

struct pend_imm {			/* a block announced early (tp_verbs.c) */
	uint32_t slot, len;
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
	struct ibv_mr *llsrc_mr;	/* our LL staging for it (local) */
	struct pend_imm *pend;		/* announced by immediate before older polled blocks landed */
	uint32_t pend_head, pend_len;	/* FIFO of `slots` entries */
	uint64_t data_inflight;		/* bytes of data writes posted, not yet completed */
	uint32_t data_writes;		/* ... and how many writes */
	size_t ll_rstride;		/* bytes per LL slot at the peer */
	uint64_t credit_piggy;		/* releases it told us inside its polled blocks */
	/*
	 * Writes appended and counted (sq_posted, sig records) but not yet
	 * given to the device: puts by hetsgd_tp_put_more(), posted as one
	 * list by chain_flush() (tp_verbs.c).
	 */
	struct ibv_send_wr *chain;	/* HETSGD_TP_CHAIN_MAX */
	struct ibv_sge *chain_sge;
	uint32_t chain_len;
	uint32_t chain_puts;		/* ... of which blocks (not credits or byes) */
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
	uint32_t poll_max;		/* polled path: largest block, 0 = off */
	uint32_t pad2;
	char dev[32];
};

struct verbs_state {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *listen;
	struct ibv_context *ctx;
	struct ibv_cq *cq;
	char *staging;			/* a region of region_bytes per peer */
	const int *pidx;		/* tp->pidx: a rank's region and credit word */
	char *csrc;
	char *llsrc;			/* per peer, slots LL lines: what polled puts send */
	size_t staging_bytes, region_bytes, ring_bytes;
	size_t ll_off, ll_stride;	/* the LL ring in a region; bytes per LL slot */
	uint32_t poll_max;		/* largest block sent polled; 0 = every block by immediate */
	uint32_t chained;		/* peers with writes in their chain */
	uint64_t *doorbells;		/* &tp->stats.doorbells: posts that carried blocks */
	uint32_t window;		/* 64 KiB blocks' worth of data in flight per peer (the pipeline depth) */
	uint32_t credit_batch;		/* releases gathered into one credit write */
	double rtt_us;			/* measured at open (the longest over peers) */
	double link_MBps;		/* the port's rate, from its attributes */
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
	double cm_last;			/* when it was checked */
	char dev[32];
	struct sockaddr_in addr;
};

#define now_s hetsgd_clock_s

/*
 * The clock of the data path: CLOCK_MONOTONIC_COARSE, the last tick, read
 * from the vDSO page without touching a clock device.  In a guest without
 * a stable TSC the precise clock reads an emulated timer (under TCG, tens
 * of microseconds); a release, once per block, only stamps when its
 * credit batch began (flushed after 1 ms), for which a tick is precise
 * enough.  Progress reads the precise clock, once every CLOCK_EVERY calls.
 */
static inline double coarse_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Where rank p writes into this rank: its ring, then its credit line. */
static inline char *region(struct verbs_state *st, int p)
{
	return st->staging + (size_t)st->pidx[p] * st->region_bytes;
}

/* The source word of the credit writes to rank p. */
static inline char *credit_src(struct verbs_state *st, int p)
{
	return st->csrc + (size_t)st->pidx[p] * CREDIT_STRIDE;
}

static inline uint64_t *credit_in(struct verbs_state *st, int p)
{
	return (uint64_t *)(region(st, p) + st->ring_bytes);
}

/* Where rank p's polled block for slot s lands here, as LL lines. */
static inline uint64_t *ll_in(struct verbs_state *st, int p, uint32_t s)
{
	return (uint64_t *)(region(st, p) + st->ll_off + (size_t)s * st->ll_stride);
}

static inline uint64_t *ll_src(struct verbs_state *st, uint32_t slots, int p, uint32_t s)
{
	return (uint64_t *)(st->llsrc + ((size_t)st->pidx[p] * slots + s) * st->ll_stride);
}

/* tp_verbs_device.c */
int verbs_choose_endpoint(struct hetsgd_tp *tp, struct verbs_state *st);

/* tp_verbs_open.c */
int verbs_open(struct hetsgd_tp *tp);
void verbs_teardown(struct hetsgd_tp *tp, struct verbs_state *st);

/* tp_verbs_depth.c: the ring's depth from the device, before open; the port's rate */
int verbs_depth(struct hetsgd_tp *tp, uint32_t npeers, uint32_t *want, uint32_t *cap, char *why,
		 size_t why_len);
double verbs_port_MBps(const struct ibv_port_attr *pa);

/* tp_verbs.c: the pipeline's depth, from the measured round trip (open) */
int verbs_pipeline(struct hetsgd_tp *tp, struct verbs_state *st);

/* tp_verbs_connect.c */
int verbs_post_recv(struct verbs_state *st, int peer);
void verbs_refuse(struct hetsgd_tp *tp, struct verbs_state *st, struct rdma_cm_id *id, const char *why);
int verbs_connect_all(struct hetsgd_tp *tp, struct verbs_state *st);
void verbs_abort_connects(struct hetsgd_tp *tp, struct verbs_state *st);

#endif
