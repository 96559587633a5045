/*
 * Private to the TCP rendezvous bootstrap (boot_tcp*.c): the constants,
 * wire helpers and state its files share.  boot_tcp.c says what the
 * bootstrap does; each file says what it holds.
 */
#ifndef HETSGD_BOOT_TCP_PRIV_H
#define HETSGD_BOOT_TCP_PRIV_H

#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "transport_priv.h"

#define TCP_MAGIC "HGTB"
#define TCP_VERSION 1u
#define HANDSHAKE_MS 2000	/* a connection must authenticate within this */
#define MAX_PENDING 1024	/* connections authenticating at once (fd limit permitting) */
#define PER_SOURCE 64		/* of those, from one source address */
#define ACCEPT_BATCH 16		/* accepts per turn, so reads are not starved */
#define LOG_EVERY_MS 5000	/* refusal summaries at most this often */
#define FLOOD_MIN 32		/* unauthenticated connections that make a flood */
#define MAX_SIZE (1 << 20)
#define DEFAULT_TIMEOUT_S 60
#define MIN_SECRET 16
#define PORT_BASE 20000
#define PORT_SPAN 20000
#define CONNECT_TRY_MS 5000	/* one connect() attempt to one address */
#define KEEP_IDLE_S 60		/* keepalive: a vanished host is noticed */
#define KEEP_INTVL_S 10		/* after about IDLE + INTVL * CNT seconds */
#define KEEP_CNT 6

enum { HELLO_LEN = 32, CHAL_LEN = 32, PROOF_LEN = 8, WELCOME_LEN = 16,
       REQ_LEN = 16, REP_LEN = 40, NONCE_LEN = 16 };
enum { ST_OK = 0, ST_BAD_SIZE = 1, ST_BAD_RANK = 2, ST_DUP_RANK = 3, ST_BAD_PROOF = 4,
       ST_STOPPED = 5 };
enum { OP_ALLGATHER = 1, OP_BARRIER = 2 };
enum { RS_OK = 0, RS_MISMATCH = 1, RS_ABORT = 2 };

#define ERR_SECRET_HOWTO \
	"make one before starting the ranks with export HETSGD_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n') " \
	"(srun passes it to every rank)"

/* ---- little helpers: little-endian fields, a monotonic clock ------------ */

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The library's one clock (hetsgd_clock_s), in milliseconds. */
static inline int64_t now_ms(void)
{
	return (int64_t)(hetsgd_clock_s() * 1000.0);
}

/* ---- state ------------------------------------------------------------- */

struct rendezvous {
	char host[256];
	char port[8];
	char where[300];	/* "host:port" or "[v6]:port", for messages */
	int from_slurm;
	int numeric;		/* host is an address literal */
};

struct coll {			/* rank 0: one peer's request in progress */
	uint8_t hdr[REQ_LEN];
	size_t hgot;
	uint32_t op, seq;
	uint64_t len, left;
	uint8_t *dst;		/* NULL: drain (the request disagrees) */
	int64_t last;		/* last progress, once the request started */
	int done;
};

struct tcp_state {
	int fd;			/* rank > 0: the socket to rank 0 */
	int *pfd_fd;		/* rank 0: per peer socket, [0] unused */
	char (*addr)[INET6_ADDRSTRLEN + 8];
	struct coll *coll;
	struct pollfd *pfd;
	int *pidx;
	int stall_ms;
	int broken;
	char why[1024];		/* room for a duplicate claim's two addresses */
	char where[300];
	struct btcp_admit *adm;	/* rank 0: still listening (NULL: closed) */
};

/* ---- boot_tcp_wire.c: MACs, randomness, moving bytes -------------------- */

void btcp_derive_key(const char *secret, uint8_t key[16]);
/* MAC(label, hello || chal || extra[0..extra_len)) into out[8]. */
void btcp_make_mac(const uint8_t key[16], const char label[8], const uint8_t *hello,
		   const uint8_t *chal, const uint8_t *extra, size_t extra_len, uint8_t out[8]);
int btcp_mac_equal(const uint8_t *a, const uint8_t *b);
int btcp_fill_random(uint8_t *buf, size_t len);
void btcp_tune_socket(int fd);
void btcp_addr_str(const struct sockaddr *sa, char *buf, size_t len);
/*
 * Move exactly len bytes on a non-blocking socket.  stall_ms bounds each
 * wait for progress (-1: unbounded); deadline (a now_ms() value, 0: none)
 * bounds the whole.  0, -EPIPE at end of stream, -ETIMEDOUT or -errno.
 */
int btcp_send_full(int fd, const void *buf, size_t len, int stall_ms, int64_t deadline);
int btcp_recv_full(int fd, void *buf, size_t len, int stall_ms, int64_t deadline);

/* ---- boot_tcp_env.c: who is who, from the environment ------------------ */

int btcp_parse_int(const char *var, const char *val, long lo, long hi, int *out);
int btcp_get_rank_size(int *rank, int *size);
int btcp_get_secret(uint8_t key[16]);
int btcp_get_rendezvous(struct rendezvous *rv);
/* Rank 0's listening socket for rv into *out, or an error that says why not. */
int btcp_root_listen(const struct rendezvous *rv, int backlog, int *out);

/* ---- boot_tcp_refusals.c: counting refusals instead of logging each ---- */

/*
 * Why a connection was refused.  "unauth" reasons are the ones anyone on
 * the network can cause without the secret: they are what a flood is made
 * of, and the final diagnosis tells them apart from a wrong secret.
 */
enum refusal {
	RF_SILENT, RF_STALLED, RF_EVICT_SOURCE, RF_EVICT_FULL, RF_GARBAGE, RF_HUNGUP, RF_LATE,
	RF_VERSION, RF_BAD_MAC, RF_BAD_SIZE, RF_BAD_RANK, RF_STOPPED, RF_COUNT
};

#define MAX_SOURCES 32		/* sources counted by name; the rest together */
#define EXAMPLE_LEN 160

struct source_count {
	char ip[INET6_ADDRSTRLEN];
	unsigned win, total, unauth;
};

/* Refusals, counted instead of logged one by one. */
struct refusals {
	unsigned win[RF_COUNT], total[RF_COUNT];
	char example[RF_COUNT][EXAMPLE_LEN];	/* the first of each reason in the window */
	char first[RF_COUNT][EXAMPLE_LEN];	/* the first of each reason ever */
	struct source_count src[MAX_SOURCES];
	int nsrc;
	unsigned other_win, other_total, other_unauth;
	unsigned win_sum;
	int64_t win_start, log_next;
};

/* One warning line in the log (hetsgd_log: one write, with time and rank). */
void btcp_emit_line(const char *line);
/* "N reason (e.g. ADDR: detail), ...; from IP xN, ..." into buf: the window's or the totals. */
void btcp_refusals_format(const struct refusals *rf, int window, char *buf, size_t len);
/* One summary line for the window, then a new window. */
void btcp_refusals_flush(struct refusals *rf, int64_t now);
/* A new window: what was counted so far has been said. */
void btcp_refusals_window(struct refusals *rf, int64_t now);
/* Count one refusal of ip; example says what happened, for the summary. */
void btcp_refusals_count(struct refusals *rf, enum refusal why, const char *ip, const char *example);
/* Rank 0 gave up after timeout_s: -ETIMEDOUT, with what it saw. */
int btcp_timeout_err(const struct refusals *rf, const struct tcp_state *st, int size,
		     const struct rendezvous *rv, unsigned accepted, int timeout_s);

/* ---- boot_tcp_admit.c: rank 0 takes the ranks in ----------------------- */

/*
 * Rank 0 keeps its listener and the handshakes under way from open to
 * close, so that a late claim on an admitted rank is heard (and stops the
 * job) wherever rank 0 waits.
 */
struct btcp_admit;

/* The rendezvous: 0 with every rank admitted and st->adm listening, or an error. */
int btcp_root_open(struct hetsgd_boot *boot, struct tcp_state *st, const uint8_t key[16],
		   const struct rendezvous *rv, int timeout_s);
/*
 * Poll entries for the listener and the handshakes into pfd (room for
 * MAX_PENDING + 1; the count is returned); *wait (ms, -1: none) is
 * lowered to the next deadline.  Then, after poll(), serve them: 0, or
 * an error that ends the job (-EADDRINUSE: a rank claimed twice; the
 * admitted ranks have been told).
 */
int btcp_admit_prepare(struct btcp_admit *x, struct pollfd *pfd, int64_t now, int64_t *wait);
int btcp_admit_serve(struct btcp_admit *x, const struct pollfd *pfd, int n);
/* Rank 0 leaves the bootstrap: handshake deadlines stop running until the next prepare. */
void btcp_admit_pause(struct btcp_admit *x);
/* Stop listening; handshakes under way are refused and counted. */
void btcp_admit_close(struct btcp_admit *x);

#endif
