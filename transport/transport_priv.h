/* Private to transport/: nothing outside this folder includes it. */
#ifndef HETSGD_TRANSPORT_PRIV_H
#define HETSGD_TRANSPORT_PRIV_H

#include <errno.h>
#include <stdint.h>

#include "hetsgd_topology.h"
#include "hetsgd_transport.h"

#define HETSGD_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Record the message for hetsgd_errmsg() and return err (negative errno). */
#define hetsgd_err hetsgd_error

struct hetsgd_boot_ops {
	int (*allgather)(struct hetsgd_boot *boot, const void *mine, void *all,
			 size_t len);
	int (*barrier)(struct hetsgd_boot *boot);
	/* hetsgd_boot_leave(): finalize the PMI now (NULL: nothing to
	 * do, collectives still work); close then finalizes no more */
	void (*leave)(struct hetsgd_boot *boot);
	void (*close)(struct hetsgd_boot *boot);
};

struct hetsgd_boot {
	const struct hetsgd_boot_ops *ops;
	enum hetsgd_boot_kind kind;
	int rank;
	int size;
	uint32_t seq;		/* collectives so far: makes KVS keys unique */
	int left;		/* hetsgd_boot_leave() was called */
	int fd;			/* local launcher: socket to the parent */
	char jobid[256];	/* PMI2 KVS name */
	void *priv;		/* backend state */
};

/* Backends fill *boot; each returns 0 or a negative errno. */
int hetsgd_boot_pmix_open(struct hetsgd_boot *boot);
int hetsgd_boot_pmi2_open(struct hetsgd_boot *boot);
int hetsgd_boot_tcp_open(struct hetsgd_boot *boot);

/* Exported for the unit tests of the TCP rendezvous. */
int hetsgd_boot_tcp_first_host(const char *nodelist, char *out, size_t outlen);
uint64_t hetsgd_boot_tcp_siphash(const uint8_t key[16], const void *msg, size_t len);

/*
 * The TCP rendezvous' messages (wire formats in boot_tcp.c), parsed by pure
 * functions: they read buf[0..len) and nothing else, keep no state, write
 * *out only on success and never print or set hetsgd_errmsg(), so that a
 * fuzzer can call them with any bytes.  Each returns
 *   0                 buf starts with one whole, well-formed message (bytes
 *                     after it are not read);
 *   -EAGAIN           buf is shorter than the message and nothing in it is
 *                     wrong yet (read more);
 *   -EPROTO           not this protocol, or a field no sender produces;
 *   -EPROTONOSUPPORT  our magic, another protocol version (HELLO, CHAL);
 *   -EACCES           PROOF only: whole, but the MAC does not verify;
 *   -EINVAL           buf is NULL while len > 0, or out is NULL.
 * Checks that need the job (rank in range, same size) are the caller's.
 */
struct hetsgd_boot_tcp_hello {		/* peer -> rank 0 */
	uint32_t rank;
	uint32_t size;
	uint8_t nonce[16];
};

struct hetsgd_boot_tcp_chal {		/* rank 0 -> peer */
	uint32_t size;
	uint8_t nonce[16];
};

struct hetsgd_boot_tcp_welcome {	/* rank 0 -> peer; mac checked by the caller */
	uint32_t status;
	uint32_t size;
	uint8_t mac[8];
};

struct hetsgd_boot_tcp_req {		/* collective request, peer -> rank 0 */
	uint32_t op;
	uint32_t seq;
	uint64_t len;
};

struct hetsgd_boot_tcp_rep {		/* collective reply, rank 0 -> peer */
	uint32_t op;
	uint32_t seq;
	uint32_t status;
	uint32_t bad_rank;
	uint64_t len;
	uint32_t bad_op;
	uint32_t bad_seq;
	uint64_t bad_len;
};

int hetsgd_boot_tcp_parse_hello(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_hello *out);
int hetsgd_boot_tcp_parse_chal(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_chal *out);
/* hello and chal: the 32-byte messages as sent; key: derived from the secret. */
int hetsgd_boot_tcp_parse_proof(const uint8_t *buf, size_t len, const uint8_t key[16],
				const uint8_t hello[32], const uint8_t chal[32]);
int hetsgd_boot_tcp_parse_welcome(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_welcome *out);
int hetsgd_boot_tcp_parse_req(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_req *out);
int hetsgd_boot_tcp_parse_rep(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_rep *out);

/*
 * Connection proofs of the verbs provider (conn_auth.c): the job key and
 * the private data of rdma_cm requests and answers.
 */
#define TP_CONN_LEN 40u
enum { TP_CONN_REQ = 1, TP_CONN_REP = 2, TP_CONN_ABORT = 3 };

struct tp_conn {
	int type;		/* TP_CONN_REQ or TP_CONN_REP */
	uint32_t rank;		/* sender */
	uint32_t target;	/* the rank it means to reach */
	uint32_t rkey;		/* of the ring the sender registered for target */
	uint64_t ring;		/* its address */
	uint64_t nonce;
};

/* K from the secret (NULL: none) and rank 0's nonce; -ENOMEM only. */
int tp_job_key(const char *secret, const uint8_t nonce0[16], uint8_t key[16]);
/* qpn: the sender's queue pair; req_nonce: REP only, the request's nonce. */
void tp_conn_pack(const uint8_t key[16], const struct tp_conn *c, uint32_t qpn, uint64_t req_nonce,
		  uint8_t out[TP_CONN_LEN]);
/*
 * Check len bytes of private data as a message of `type` from the queue
 * pair qpn (an ABORT passes where a REQ is expected: out->type tells).
 * Never reads past len.  -EBADMSG (not hetsgd's), -EPROTO
 * (another version), -EACCES (no proof of the job key); *out on success.
 */
int tp_conn_parse(const uint8_t key[16], const void *buf, size_t len, int type, uint32_t qpn,
		  uint64_t req_nonce, struct tp_conn *out);

/* Largest contribution a rank may make to one allgather. */
#define HETSGD_BOOT_MAX_LEN (64u << 20)

/* ---- transport endpoint ---------------------------------------------- */

/* A send buffer as the transport sees it. */
struct tp_tx {
	struct hetsgd_tx pub;	/* first: callers hold &pub */
	uint32_t index;
	uint32_t inflight;	/* puts not yet completed */
	int held;		/* the caller has not given it back */
	struct tp_tx *next_free;
};

struct hetsgd_tp;

#ifdef HETSGD_TEST_HOOKS
/*
 * For tests that play a hostile peer, built only into test programs
 * (-DHETSGD_TEST_HOOKS): write into peer's memory the way this rank's
 * transport can reach it, with no protocol check.
 *   TP_TEST_SLOT      len bytes at offset off of slot `slot` of our ring at
 *                     peer, without telling the peer (no immediate on
 *                     verbs, no doorbell on shm)
 *   TP_TEST_REPLAY    announce slot `slot` again as if a new block landed
 *                     there, without a credit for it
 *   TP_TEST_CREDIT    the word through which rank `victim` and peer keep
 *                     credit for each other, set to *(uint64_t *)data
 *   TP_TEST_POLL      len bytes at offset off of LL slot `slot` of our
 *                     polled ring at peer (verbs only)
 * 0 when written (verbs: posted; its completion may still fail), -EACCES
 * when this rank has no way to reach that memory.
 */
enum tp_test_target { TP_TEST_SLOT = 1, TP_TEST_REPLAY, TP_TEST_CREDIT, TP_TEST_POLL };
int hetsgd_tp_test_write(struct hetsgd_tp *tp, int peer, enum tp_test_target target, int victim,
			 uint32_t slot, size_t off, const void *data, size_t len);
#endif

struct tp_provider {
	const char *name;
	const char *what;	/* for messages: where it runs */
	/* Set up staging, connect the pattern's pairs (tp_is_peer()); sets
	 * tp->fp_conns and tp->fp_registered; tp->rank/size/attr are set. */
	int (*open)(struct hetsgd_tp *tp);
	/*
	 * Post one put; 0 or -EAGAIN (no credit, queue full) or -errno.
	 * more: the caller has more (hetsgd_tp_put_more()); the provider may
	 * hold the write for the next put to peer or the next progress.
	 */
	int (*put)(struct hetsgd_tp *tp, int peer, struct tp_tx *tx, size_t len, uint8_t kind, int more);
	/* Move completions into the event FIFO (never more than it can take). */
	int (*progress)(struct hetsgd_tp *tp);
	int (*release)(struct hetsgd_tp *tp, int peer, uint32_t slot);
	/* Wait until this rank's own writes have completed. */
	int (*quiesce)(struct hetsgd_tp *tp);
	/*
	 * Close's farewell (tp.c, tp_farewell): bye tells peer that this
	 * rank will write nothing more to it (0, -EAGAIN to retry, or
	 * -errno); it needs no slot or credit.  farewell moves what came
	 * in: byes (tp_bye_landed), the local completion of our own
	 * (tp_bye_sent), peers that died (tp_peer_down); blocks that land
	 * now are dropped, never delivered, and no credit goes out.
	 */
	int (*bye)(struct hetsgd_tp *tp, int peer);
	int (*farewell)(struct hetsgd_tp *tp);
	void (*close)(struct hetsgd_tp *tp);
	/*
	 * The ring depth this rank proposes when the caller leaves it open
	 * (attr.slots = 0), and the most its device and memory take, for
	 * npeers peers of attr.slot_bytes slots (tp.c agrees on one over the
	 * ranks).  A provider that cannot measure proposes its floor; it
	 * fails (-errno, with a message) only for a bad setting.  NULL: the
	 * provider has a fixed default.  *why: a line for hetsgd_tp_describe().
	 */
	int (*depth)(struct hetsgd_tp *tp, uint32_t npeers, uint32_t *want, uint32_t *cap,
		      char *why, size_t why_len);
	/* HETSGD_TEST_HOOKS builds only; NULL otherwise. */
	int (*test_write)(struct hetsgd_tp *tp, int peer, int target, int victim, uint32_t slot,
			  size_t off, const void *data, size_t len);
};

extern const struct tp_provider hetsgd_tp_shm;
extern const struct tp_provider hetsgd_tp_verbs;

struct hetsgd_tp {
	const struct tp_provider *prov;
	struct hetsgd_boot *boot;
	struct hetsgd_tp_attr attr;	/* defaults resolved */
	int rank;
	int size;
	int failed;			/* a fatal error happened: refuse work */
	char fail_msg[256];		/* what it was, for every later call */
	char desc[512];
	char depth_why[192];		/* how the ring's depth was chosen (open) */

	/* send buffers */
	struct tp_tx *txs;
	void *tx_mem;			/* tx_bufs * slot_bytes, page aligned */
	struct tp_tx *tx_free;
	uint32_t inflight_puts;		/* posted, SENT not yet queued */

	/* receive bookkeeping, per sender: which slots the caller still holds */
	uint64_t *recvd;		/* blocks handed out, per peer */
	uint64_t *rel_head;		/* contiguous prefix released, per peer */
	uint8_t *held;			/* npeers * slots (by pidx): 1 while held */

	/* peers reported by HETSGD_EV_PEER_DOWN, and why (until close) */
	uint8_t *down;
	char (*down_why)[192];
	/* close's farewell, per peer: TP_BYE_* bits */
	uint8_t *bye;

	/* the pattern's peers: pidx[r] is r's index among them, -1 when r is
	 * not a peer (n ints of bookkeeping; everything else per peer) */
	int npeers;
	int *pidx;
	/* the footprint the provider records at open */
	uint32_t fp_conns;
	uint64_t fp_registered;
	double connect_s;
	/* counters (hetsgd_tp_get_stats) and, per peer, the reason of the
	 * wait in progress (TP_WAIT_*, 0: none) so that a wait counts once */
	struct hetsgd_tp_stats stats;
	uint8_t *waiting;

	/* events waiting to be returned by hetsgd_tp_progress() */
	struct hetsgd_ev *evq;
	uint32_t evq_cap, evq_head, evq_len;

	void *priv;			/* provider state */
};

/* Does the pattern connect this rank with r?  (Symmetric in the two.) */
static inline int tp_is_peer(const struct hetsgd_tp *tp, int r)
{
	return r >= 0 && r < tp->size && tp->pidx[r] >= 0;
}

/* Why a provider's put returned -EAGAIN: counted once per wait. */
enum { TP_WAIT_CREDIT = 1, TP_WAIT_QUEUE = 2, TP_WAIT_WINDOW = 3 };

static inline int tp_wait(struct hetsgd_tp *tp, int peer, int why)
{
	if (tp->waiting[peer] != why) {
		tp->waiting[peer] = (uint8_t)why;
		if (why == TP_WAIT_CREDIT)
			tp->stats.credit_waits++;
		else if (why == TP_WAIT_WINDOW)
			tp->stats.window_waits++;
		else
			tp->stats.queue_waits++;
	}
	return -EAGAIN;
}

/*
 * What the event FIFO is sized by: the peers plus this rank, which under
 * the all pattern is n, as the FIFO and put's room check always were,
 * so that a put meets -EAGAIN exactly when it did before the patterns.
 */
static inline uint32_t tp_ev_ranks(const struct hetsgd_tp *tp)
{
	return (uint32_t)tp->npeers + 1;
}

/* Room left in the event FIFO. */
static inline uint32_t tp_evq_room(const struct hetsgd_tp *tp)
{
	return tp->evq_cap - tp->evq_len;
}

/* Providers queue events here; the FIFO is sized so this cannot fail
 * when they respect tp_evq_room(). */
void tp_evq_push(struct hetsgd_tp *tp, const struct hetsgd_ev *ev);

/*
 * peer is gone (its process ended, its connection broke): queue one
 * PEER_DOWN event with the reason; later calls for that peer do nothing.
 * The FIFO keeps room for one per peer.
 */
void tp_peer_down(struct hetsgd_tp *tp, int peer, const char *fmt, ...) HETSGD_PRINTF(3, 4);

/* Close's farewell, per peer (tp->bye). */
enum { TP_BYE_IN = 1, TP_BYE_POSTED = 2, TP_BYE_SENT = 4 };
/* peer said bye (it writes nothing more here); may come before our close. */
static inline void tp_bye_landed(struct hetsgd_tp *tp, int peer)
{
	tp->bye[peer] |= TP_BYE_IN;
}
/* Our bye to peer completed locally (verbs: acknowledged by its NIC). */
static inline void tp_bye_sent(struct hetsgd_tp *tp, int peer)
{
	tp->bye[peer] |= TP_BYE_SENT;
}

/* A block from peer landed in slot: queue the RECV event, mark it held. */
int tp_recv_landed(struct hetsgd_tp *tp, int peer, uint32_t slot,
		   const void *data, size_t len, uint8_t kind);
/* A put of tx to peer completed: queue SENT, recycle tx when free. */
void tp_put_completed(struct hetsgd_tp *tp, int peer, struct tp_tx *tx, uint8_t kind);

/*
 * Mark slot released; returns the new contiguous released count for peer
 * (what the sender may reuse), or a negative errno for a bad release.
 */
int64_t tp_release_slot(struct hetsgd_tp *tp, int peer, uint32_t slot);

/*
 * Collective: every rank learns whether every rank succeeded at stage, so
 * that one rank's failure fails the open everywhere instead of hanging
 * the others.  Returns this rank's ret, or the first failing rank's.
 */
int tp_agree(struct hetsgd_tp *tp, int ret, const char *stage);

/* Page-aligned zeroed memory on the endpoint's NUMA node; free with
 * tp_free() and the same size. */
void *tp_alloc(const struct hetsgd_tp *tp, size_t bytes);
void tp_free(void *p, size_t bytes);

#endif
