/*
 * hetsgd transport: the one-sided block transport and the out-of-band
 * bootstrap it is built on.
 *
 * Conventions (as in rdma-core and libfabric): a call returns 0 or a
 * negative errno value; a failed call leaves a sentence naming the cause
 * and the fix in hetsgd_errmsg(); outputs are written only on success.
 */
#ifndef HETSGD_TRANSPORT_H
#define HETSGD_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The message of the last failed hetsgd call in this thread ("" if none). */
const char *hetsgd_errmsg(void);

/*
 * Bootstrap: rank, size and the two collectives the transport needs to
 * exchange connection data before any RDMA traffic exists.
 */
enum hetsgd_boot_kind {
	HETSGD_BOOT_AUTO = 0,	/* PMIx, then PMI2, from the environment */
	HETSGD_BOOT_PMIX,	/* srun --mpi=pmix, prterun, mpirun */
	HETSGD_BOOT_PMI2,	/* srun --mpi=pmi2 */
	HETSGD_BOOT_LOCAL,	/* ranks forked by hetsgd_boot_local_run() */
	HETSGD_BOOT_TCP,	/* Slurm environment (or HETSGD_RANK/HETSGD_SIZE)
				 * plus a TCP rendezvous at rank 0 that admits
				 * only peers presenting HETSGD_SECRET */
};

struct hetsgd_boot;

/* "auto", "pmix", "pmi2", "local" or "tcp"; -EINVAL for anything else. */
int hetsgd_boot_kind_parse(const char *name, enum hetsgd_boot_kind *kind);
const char *hetsgd_boot_kind_name(enum hetsgd_boot_kind kind);

/*
 * Join the job that launched this process.  AUTO tries PMIx, PMI2, then
 * the Slurm environment (TCP rendezvous).  HETSGD_BOOT_LOCAL cannot be
 * opened this way: local ranks receive their handle from
 * hetsgd_boot_local_run().  -ENOTSUP when the backend was not built in,
 * -ENOENT when AUTO finds no launcher in the environment.
 */
int hetsgd_boot_open(enum hetsgd_boot_kind kind, struct hetsgd_boot **boot);

int hetsgd_boot_rank(const struct hetsgd_boot *boot);
int hetsgd_boot_size(const struct hetsgd_boot *boot);
enum hetsgd_boot_kind hetsgd_boot_get_kind(const struct hetsgd_boot *boot);

/*
 * Every rank contributes len bytes; all receives size * len bytes ordered
 * by rank.  On failure `all` may be partly written (collectives gather in
 * place).  Every rank must call with the same len, in the same order of
 * collectives; a mismatch is reported (-EPROTO) where the backend can see it.
 */
int hetsgd_boot_allgather(struct hetsgd_boot *boot, const void *mine,
			  void *all, size_t len);
int hetsgd_boot_barrier(struct hetsgd_boot *boot);

/*
 * Leave the launcher's process-management interface early, once no more
 * collectives are needed (the transport is open): PMIx_Finalize or
 * PMI2_Finalize now rather than at close; a no-op for the TCP rendezvous
 * and the local launcher.  Why: Slurm's PMIx plugin ends the whole step
 * with SIGKILL when a task that has not finalized dies (its error handler
 * sees the connection lost), so a job that is to survive a rank's death
 * must have left PMIx before.  Afterwards rank and size still work;
 * allgather and barrier fail with -ENOTCONN.  Idempotent; NULL accepted.
 */
void hetsgd_boot_leave(struct hetsgd_boot *boot);

/* Leave the job and free the handle; NULL is accepted. */
void hetsgd_boot_close(struct hetsgd_boot *boot);

/*
 * Local launcher: fork nranks processes on this host, each of which runs
 * fn(boot, arg) and exits with its return value (0 = success).  The
 * calling process serves the collectives and waits for every rank.
 * Returns 0 when every rank returned 0; otherwise -ECHILD and the first
 * failure is described in hetsgd_errmsg().  When statuses is not NULL it
 * receives nranks wait(2) statuses.  Ranks must not return from fn into
 * the caller's stack: the launcher _exit()s them after flushing stdio.
 */
typedef int (*hetsgd_rank_fn)(struct hetsgd_boot *boot, void *arg);
int hetsgd_boot_local_run(int nranks, hetsgd_rank_fn fn, void *arg,
			  int *statuses);
/*
 * The local launcher's ranks and signals: while hetsgd_boot_local_run()
 * runs, SIGTERM, SIGINT and SIGHUP to the calling process are forwarded
 * to every rank (the caller's own handlers are restored afterwards), and
 * each rank gets SIGTERM if the launcher dies; a rank starts with those
 * signals at their default action.  A rank killed by a signal is lost:
 * the failure message names it before any rank that failed after it, and
 * barriers go on over the ranks left.  hetsgd_boot_local_signal() is the
 * last signal forwarded by the latest run, or 0.
 */
int hetsgd_boot_local_signal(void);

/*
 * Sparse blocks: the unit the transport moves.  Wire format (all fields
 * little-endian, values IEEE-754 binary32):
 *
 *   struct hetsgd_block_hdr   (40 bytes)
 *   DENSE:    float val[count]                 covers [first, first+count)
 *   INDEXED:  uint32_t idx[count]; float val[count]   idx strictly increasing
 *   MASKED:   float val[count]                 at the indices of the shared
 *                                              mask (seed, round, count, dim)
 */
#define HETSGD_BLOCK_MAGIC 0x4853u	/* "SH" little-endian */
#define HETSGD_BLOCK_VERSION 1u

enum hetsgd_enc {
	HETSGD_ENC_DENSE = 1,
	HETSGD_ENC_INDEXED = 2,
	HETSGD_ENC_MASKED = 3,
};

struct hetsgd_block_hdr {
	uint16_t magic;
	uint8_t version;
	uint8_t encoding;	/* enum hetsgd_enc */
	uint16_t kind;		/* the caller's message kind */
	uint16_t reserved;	/* 0 */
	uint32_t sender;	/* rank */
	uint32_t count;		/* values carried */
	uint32_t dim;		/* model dimension d */
	uint32_t first;		/* DENSE: index of val[0]; otherwise 0 */
	uint64_t round;		/* round or model version */
	uint64_t seed;		/* MASKED: mask seed; otherwise 0 */
};

/* Everything a block says, with pointers into the received buffer. */
struct hetsgd_block {
	enum hetsgd_enc encoding;
	uint16_t kind;
	uint32_t sender;
	uint32_t count;
	uint32_t dim;
	uint32_t first;
	uint64_t round;
	uint64_t seed;
	const uint32_t *idx;	/* INDEXED only, else NULL */
	const float *val;
};

/* What the receiver accepts; a block outside these limits is rejected. */
struct hetsgd_block_limits {
	uint32_t dim;		/* the receiver's model dimension: must match */
	uint32_t nranks;	/* sender must be < nranks */
	size_t max_bytes;	/* the slot size */
	/*
	 * The receiver's own array of dim entries that an INDEXED block's
	 * indices are copied into before they are checked, so that a sender
	 * rewriting its slot cannot move a write (NULL: INDEXED blocks are
	 * refused).  out->idx points here.
	 */
	uint32_t *idx_copy;
};

/* Bytes of a block with this encoding and count (0 for a bad encoding). */
size_t hetsgd_block_bytes(enum hetsgd_enc enc, uint32_t count);

/*
 * Encoders write a complete block into buf (cap bytes) and its length into
 * *len.  hdr supplies kind, sender, round, dim (and seed for masked); the
 * encoder fills magic, version, encoding, count, first.  -ENOSPC when cap
 * is too small, -EINVAL for inconsistent input (index >= dim, unsorted).
 *
 * encode_sparse picks the smaller of INDEXED and DENSE (zeros filled in).
 * encode_masked gathers x[mask->idx[j]] for j < mask->k, x of length dim;
 * hdr->seed and hdr->round must be those the mask was drawn with.
 * Encoders refuse NaN and infinite values (-EINVAL, naming the coordinate).
 */
int hetsgd_block_encode_dense(void *buf, size_t cap,
			      const struct hetsgd_block_hdr *hdr,
			      const float *val, uint32_t first, uint32_t count,
			      size_t *len);
int hetsgd_block_encode_sparse(void *buf, size_t cap,
			       const struct hetsgd_block_hdr *hdr,
			       const uint32_t *idx, const float *val,
			       uint32_t count, size_t *len);
struct hetsgd_mask;
int hetsgd_block_encode_masked(void *buf, size_t cap,
			       const struct hetsgd_block_hdr *hdr,
			       const struct hetsgd_mask *mask, const float *x,
			       size_t *len);

/*
 * Check every field of a received block against lim and describe it.
 * Never reads outside [buf, buf+len).  -EBADMSG (with the reason in
 * hetsgd_errmsg()) for a malformed block, -EPROTO for a wrong version,
 * -EINVAL when buf is not 4-byte aligned (staging slots always are).
 *
 * The sender may still be writing buf (a staging slot): everything that
 * says where to read or write -- the header's fields and an INDEXED
 * block's indices -- is read once into the receiver's memory (*out and
 * lim->idx_copy) and checked there, so no later write of the sender can
 * move a read or a write.  out->val points into buf: the values are
 * checked finite here, but a consumer that needs them finite must check
 * each value as it uses it (a sender can rewrite a number, never where it
 * goes).  Values are used in place, so decoding is for little-endian
 * hosts (x86_64, aarch64, ppc64le); elsewhere it returns -ENOTSUP.
 * A masked block's count is the sender's k: the caller checks it against
 * its own mask before regenerating it from (seed, round).
 */
int hetsgd_block_decode(const void *buf, size_t len,
			const struct hetsgd_block_limits *lim,
			struct hetsgd_block *out);

/*
 * Shared random mask: k distinct coordinates of [0, d), sorted ascending,
 * drawn from (seed, round) in O(k) time and memory, with integer
 * arithmetic only, so that every rank, compiler and machine draws the same.
 */
struct hetsgd_mask {
	uint32_t k;
	uint32_t d;
	uint32_t *idx;		/* k entries, ascending */
	void *scratch;		/* private */
	uint64_t seed;		/* of the last draw */
	uint64_t round;
	int drawn;		/* 0 until the first successful draw */
};

int hetsgd_mask_init(struct hetsgd_mask *mask, uint32_t k, uint32_t d);
int hetsgd_mask_draw(struct hetsgd_mask *mask, uint64_t seed, uint64_t round);
void hetsgd_mask_fini(struct hetsgd_mask *mask);

/*
 * The one-sided block transport.
 *
 * Every rank registers, per peer, a ring of fixed-size staging slots that
 * the peer writes into, and advertises it once at open.  A put copies a
 * send buffer into the peer's next slot: RDMA_WRITE_WITH_IMM on verbs (the
 * immediate names the slot and the kind; its completion at the receiver is
 * the only sign that data has landed), memcpy plus a release-store
 * doorbell on shm.  The receiver hands each landed block to its caller
 * through hetsgd_tp_progress() and gets the slot back with
 * hetsgd_tp_release(), which returns one credit to the sender; a sender
 * with no credit gets -EAGAIN instead of overwriting an unconsumed slot.
 *
 * One thread drives an endpoint (put, progress, release); it is not
 * thread-safe.  open is collective over the bootstrap, close over the
 * live ranks of the endpoint.
 */
enum hetsgd_provider {
	HETSGD_PROV_SHM = 1,	/* processes on one host */
	HETSGD_PROV_VERBS = 2,	/* libibverbs + librdmacm: IB, RoCE, rxe */
};

/* "shm" or "verbs"; -EINVAL otherwise. */
int hetsgd_provider_parse(const char *name, enum hetsgd_provider *prov);
const char *hetsgd_provider_name(enum hetsgd_provider prov);

/*
 * Which pairs of ranks the endpoint connects (rings, registered memory,
 * queue pairs, completion-queue room): a symmetric rule of the two ranks,
 * so both ends of a pair agree by construction; every rank must open with
 * the same pattern (open checks it).  A put or release for a rank that
 * is not a peer is -EINVAL naming both ranks and the pattern.
 */
enum hetsgd_tp_pattern {
	HETSGD_TP_ALL = 0,	/* every pair of ranks (the default) */
	HETSGD_TP_STAR = 1,	/* each hub with every rank; no other pair
				 * (hubs: rank 0 and the last hubs - 1 ranks) */
};

/* "all" or "star"; -EINVAL otherwise. */
int hetsgd_tp_pattern_parse(const char *name, enum hetsgd_tp_pattern *pat);
const char *hetsgd_tp_pattern_name(enum hetsgd_tp_pattern pat);

struct hetsgd_tp_attr {
	enum hetsgd_provider provider;
	enum hetsgd_tp_pattern pattern;	/* pairs to connect (0: all) */
	uint32_t hubs;		/* STAR: its centres, rank 0 and the last
				 * hubs - 1 ranks (0 or 1: rank 0 only) */
	size_t slot_bytes;	/* bytes per staging slot (0: 64 KiB + 64) */
	uint32_t slots;		/* ring depth per peer = credits (0: 8 on shm;
				 * on verbs, from the device at open: four times
				 * the writes that fill its bandwidth-delay
				 * product, at least 16, within the device's and
				 * memory's limits; see transport/README.md) */
	uint32_t tx_bufs;	/* send buffers (0: 2 * slots) */
	int numa_node;		/* staging and send buffers live here (the
				 * node of hetsgd_topo_plan()); -1: anywhere */
	/* What only the verbs provider reads; NULL/-1 = from $HETSGD_IB_DEV,
	 * $HETSGD_GID_INDEX, $HETSGD_IB_ADDR, else the first active port's
	 * RoCE v2 IPv4 GID. */
	struct hetsgd_tp_verbs_attr {
		const char *device;
		int gid_index;
		const char *addr;
	} verbs;
};

/* attr with every field at its default (provider shm). */
void hetsgd_tp_attr_init(struct hetsgd_tp_attr *attr);

struct hetsgd_tp;

/* A registered send buffer, slot_bytes long. */
struct hetsgd_tx {
	void *data;
	size_t cap;
};

enum hetsgd_ev_type {
	HETSGD_EV_RECV = 1,	/* a block landed: release its slot when done */
	HETSGD_EV_SENT = 2,	/* a put completed locally */
	/*
	 * peer is gone: its process ended (shm: the process is watched
	 * through a pidfd, polled every 100 ms from progress) or its
	 * connection broke (verbs: rdma_cm DISCONNECTED, or a failed
	 * completion on its queue pair).  Never a timeout: a peer that is
	 * only slow stays up.  Reported once; the endpoint goes on with the
	 * other peers.  No block from that peer comes after this event,
	 * puts to it fail with -EPIPE, and its slots are ignored.
	 */
	HETSGD_EV_PEER_DOWN = 3,
};

struct hetsgd_ev {
	enum hetsgd_ev_type type;
	int peer;		/* sender (RECV) or destination (SENT) */
	uint8_t kind;		/* the put's kind */
	uint32_t slot;		/* RECV: pass to hetsgd_tp_release() */
	const void *data;	/* RECV: the block in its staging slot, valid
				 * until released.  The sender can still write
				 * these bytes: copy what you validate before
				 * you rely on it (hetsgd_block_decode copies
				 * a block's header and indices) */
	size_t len;		/* RECV: bytes landed */
	struct hetsgd_tx *tx;	/* SENT: the buffer of that put */
	const char *why;	/* PEER_DOWN: what happened, valid until close */
};

/*
 * Open an endpoint over every rank of boot (collective).  Registers the
 * staging rings, connects the pairs of attr->pattern and exchanges
 * addresses and keys.
 */
int hetsgd_tp_open(struct hetsgd_boot *boot, const struct hetsgd_tp_attr *attr,
		   struct hetsgd_tp **tp);

/*
 * Collective among the live ranks, over the transport itself (no
 * bootstrap collective, so it works the same under every launcher and
 * after hetsgd_boot_leave()).  Waits for this rank's own puts to
 * complete, tells every live peer "bye", then waits until every peer has
 * said bye and taken ours or is down (HETSGD_EV_PEER_DOWN counts as
 * arrived: a dead rank cannot hold it), then releases every resource.
 * Events not taken before close are dropped, and so are blocks that land
 * during it.  A peer that is alive but never closes holds it, as a
 * barrier would.  NULL is accepted.
 */
int hetsgd_tp_close(struct hetsgd_tp *tp);

int hetsgd_tp_rank(const struct hetsgd_tp *tp);
int hetsgd_tp_size(const struct hetsgd_tp *tp);
size_t hetsgd_tp_slot_bytes(const struct hetsgd_tp *tp);
/* Slots per peer: the caller's attr.slots, or the depth chosen at open. */
uint32_t hetsgd_tp_slots(const struct hetsgd_tp *tp);
/* A line describing the endpoint (provider, device, GID, MTU). */
const char *hetsgd_tp_describe(const struct hetsgd_tp *tp);

/* Take a free send buffer; -EAGAIN when all are in use or in flight. */
int hetsgd_tp_tx_get(struct hetsgd_tp *tp, struct hetsgd_tx **tx);
/*
 * Give the buffer back.  It returns to the pool once every put from it
 * has completed; the caller must not touch it afterwards.
 */
void hetsgd_tp_tx_put(struct hetsgd_tp *tp, struct hetsgd_tx *tx);

/* 1 when the endpoint's pattern connects this rank with peer, else 0. */
int hetsgd_tp_is_peer(const struct hetsgd_tp *tp, int peer);

/*
 * What the endpoint holds, for this rank (fixed at open).  conns counts
 * queue pairs on verbs, shared-memory segments this rank created on shm
 * (it maps as many of its peers'); registered_bytes is the staging rings
 * this rank hosts plus its send buffers (verbs: once per peer's
 * protection domain, as they are pinned); connect_s is the wall time of
 * the provider's open, collectives included.
 */
struct hetsgd_tp_footprint {
	uint32_t peers;
	uint32_t conns;
	uint64_t registered_bytes;
	double connect_s;
};

/* Fill *fp; -EINVAL for NULL arguments. */
int hetsgd_tp_get_footprint(const struct hetsgd_tp *tp, struct hetsgd_tp_footprint *fp);

/* 1 while peer is up (not reported by HETSGD_EV_PEER_DOWN), else 0. */
int hetsgd_tp_peer_up(const struct hetsgd_tp *tp, int peer);

/*
 * Write len bytes of tx into peer's next staging slot.  -EAGAIN when the
 * peer has no free slot (or the send queue is full): drive progress and
 * retry.  -EPIPE when the peer is down (HETSGD_EV_PEER_DOWN), naming it
 * and why; the endpoint stays usable.  tx may be put to several peers before it is given back.  A
 * HETSGD_EV_SENT event reports each put's local completion.
 */
int hetsgd_tp_put(struct hetsgd_tp *tp, int peer, struct hetsgd_tx *tx,
		  size_t len, uint8_t kind);

/*
 * As hetsgd_tp_put(), for a caller with more blocks to put: the write may
 * be held back and posted together with the ones after it, up to
 * HETSGD_TP_CHAIN_MAX writes to the same peer per doorbell (verbs: one
 * ibv_post_send of a list of work requests, as perftest's --post_list).
 * Held writes go out at the next hetsgd_tp_put() to that peer, the next
 * hetsgd_tp_progress(), or close, whichever comes first, and in the order
 * they were put: a caller that drives progress (as every caller must, for
 * its events) loses nothing.  Use it for a burst; a lone block that must
 * leave now (a reply, a ping) goes by hetsgd_tp_put().  shm posts
 * nothing, so it is hetsgd_tp_put() there.
 */
#define HETSGD_TP_CHAIN_MAX 16
int hetsgd_tp_put_more(struct hetsgd_tp *tp, int peer, struct hetsgd_tx *tx,
		       size_t len, uint8_t kind);

/*
 * Drain completions into at most max events; returns how many (0 when
 * nothing happened) or a negative errno when the endpoint failed (a
 * malformed immediate, a broken credit protocol); the endpoint is then
 * unusable and hetsgd_errmsg() says what happened and to which peer.  A
 * peer that dies is not a failure of the endpoint: HETSGD_EV_PEER_DOWN.
 */
int hetsgd_tp_progress(struct hetsgd_tp *tp, struct hetsgd_ev *ev, int max);

/* The caller is done with a received block: its slot goes back to peer. */
int hetsgd_tp_release(struct hetsgd_tp *tp, int peer, uint32_t slot);

/*
 * Counters since open, summed over peers.  A wait is one stretch of puts
 * to one peer refused with -EAGAIN for the same reason (however many
 * retries it took), ended by the next put that goes through.
 */
struct hetsgd_tp_stats {
	uint64_t puts;		/* puts posted */
	uint64_t puts_polled;	/* ... of which by the polled small-block path (verbs) */
	uint64_t recvs;		/* blocks handed out by progress */
	uint64_t recvs_polled;	/* ... of which found by polling memory (verbs) */
	uint64_t credit_waits;	/* the peer had no free slot */
	uint64_t queue_waits;	/* the send queue (verbs) or the event queue was full */
	/*
	 * verbs: the send window (the pipeline's depth, bytes by immediate
	 * in flight) was full.  This is the bound a bandwidth stream is meant
	 * to meet; credit_waits and queue_waits there mean the ring or the
	 * send queue is too shallow for the stream.
	 */
	uint64_t window_waits;
	/*
	 * verbs: ibv_post_send calls (doorbells) that carried blocks; puts
	 * chained by hetsgd_tp_put_more() share one, so puts / doorbells is
	 * the chain's mean length.  Credit writes are not counted.  0 on shm.
	 */
	uint64_t doorbells;
};

/* Fill *st; -EINVAL for NULL arguments. */
int hetsgd_tp_get_stats(const struct hetsgd_tp *tp, struct hetsgd_tp_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_TRANSPORT_H */
