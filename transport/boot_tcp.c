/*
 * TCP rendezvous bootstrap (srun --mpi=none, or any launcher that exports
 * HETSGD_RANK and HETSGD_SIZE).
 *
 * Who is who
 *   rank, size   HETSGD_RANK and HETSGD_SIZE when either is set (both must
 *                be), otherwise SLURM_PROCID and SLURM_NTASKS.
 *   rank 0       HETSGD_RENDEZVOUS=host:port (host: a name, an IPv4 literal
 *                or an IPv6 literal in brackets) when set.  Otherwise, under
 *                Slurm, host = the first node of SLURM_STEP_NODELIST
 *                (SLURM_JOB_NODELIST, SLURM_NODELIST) -- where srun's block
 *                and cyclic distributions put rank 0 -- and
 *                    port = 20000 + fnv1a32("<SLURM_JOB_ID>.<SLURM_STEP_ID>") % 20000
 *                (FNV-1a, 32 bit, over the decimal strings as found in the
 *                environment; SLURM_STEP_ID empty when unset), so that
 *                concurrent steps and jobs on a node use different ports.
 *   size 1       needs neither a rendezvous nor a secret: nothing listens.
 *
 * Admission
 *   Rank 0 listens (on the literal address when HETSGD_RENDEZVOUS gives one,
 *   otherwise on every address), handshakes with many connections at once
 *   under poll(), and admits a connection only after it proved that it
 *   knows HETSGD_SECRET.  Strangers cannot hold the door shut:
 *   - each connection must be admitted within HETSGD_BOOT_HANDSHAKE_MS
 *     (default 2000) of its accept;
 *   - at most HETSGD_BOOT_PER_SOURCE (default 64) connections from one
 *     address authenticate at once, and HETSGD_BOOT_MAX_PENDING (default
 *     1024, less when ulimit -n is low) in all; a newcomer beyond either
 *     limit is taken in and the least advanced, oldest connection of that
 *     address (or of all) is closed, so that a flood churns through its
 *     own connections while a rank, which sends its hello at once, goes on;
 *   - connections half-way through the handshake are served before new
 *     ones are accepted, and accepts come in batches.
 *   Refusals -- wrong secret, garbage, silence, eviction, wrong size, rank
 *   out of range -- are counted, not logged one by one: the first at once,
 *   then one summary line (counts per reason and per source address, with
 *   an example of each reason) at most every 5 s, and one with the totals
 *   at the end.  Rank 0 waits up to HETSGD_BOOT_TIMEOUT seconds (default
 *   60) for the whole rendezvous; when it gives up, its error says which
 *   it saw: a wrong secret (a handshake completed with a bad MAC), a flood
 *   (many connections that never authenticated, and from where), other
 *   mismatches, or no connection at all (a firewall, or ranks not started).
 *   A second authenticated claim on an admitted rank (or two racing) stops
 *   the bootstrap at once: rank 0 fails with both addresses, and tells the
 *   admitted ranks (an ABORT answer, then a close) so they fail too.
 *   Other ranks connect with back-off retries until the same deadline
 *   (rank 0 may start later than they do).
 *
 * Keys and MACs (the secret itself never leaves the process)
 *   K    = LE64(SipHash-2-4("hetsgd-tcp-kdf-0", S)) ||
 *          LE64(SipHash-2-4("hetsgd-tcp-kdf-1", S))       S = HETSGD_SECRET
 *   MAC(label, m) = SipHash-2-4(K, label || m)            64-bit tag
 *   SipHash is a PRF, which suffices to derive a key from a high-entropy
 *   secret; it is not a password hash, hence the 16-character minimum and
 *   the advice to draw the secret from /dev/urandom.
 *
 * Handshake (all integers little-endian; nonces from getrandom())
 *   peer -> 0   HELLO   32 B  "HGTB" u16 version=1 u16 0 u32 rank u32 size
 *                             u8 nonce_peer[16]
 *   0 -> peer   CHAL    32 B  "HGTB" u16 version=1 u16 0 u32 size0 u32 0
 *                             u8 nonce_0[16]
 *   peer -> 0   PROOF    8 B  MAC("HGTBpeer", HELLO || CHAL)
 *   0 -> peer   WELCOME 16 B  u32 status u32 size0
 *                             MAC("HGTBrnk0", HELLO || CHAL || WELCOME[0..8))
 *   Both proofs cover both nonces, the claimed rank and size and the role,
 *   so neither can be replayed or reflected.  Rank 0 reveals its proof only
 *   to a peer that proved itself first; a peer that receives a wrong proof
 *   knows it reached something other than its job's rank 0 and says so.
 *   status: 0 admitted, 1 wrong size, 2 rank out of range, 3 duplicate rank,
 *   4 wrong proof.  Status 4 comes with a zero MAC (rank 0 cannot prove
 *   itself to a peer that holds another key), so a peer takes it as a hint
 *   of a wrong secret, not as proof.  A connection closed without a
 *   WELCOME was cut off (rank 0 busy or gone): the peer tries again.
 *
 * Collectives (a star through rank 0, like the local launcher)
 *   peer -> 0   REQ     16 B  u32 op u32 seq u64 len, then len bytes
 *   0 -> peer   REP     40 B  u32 op u32 seq u32 status u32 bad_rank
 *                             u64 len u32 bad_op u32 bad_seq u64 bad_len
 *                             then, when status is 0, len = size * len bytes
 *   status: 0 ok, 1 mismatch, 2 abort (bad_rank was claimed twice; rank 0
 *   may send it before any REQ, and then closes).
 *   Rank 0 answers only when every rank asked for the same (op, seq, len);
 *   otherwise every rank gets -EPROTO naming the first rank that differs,
 *   and the bootstrap stays usable.  A rank that disconnects or stalls in
 *   the middle of a message fails the whole job: rank 0 shuts every
 *   connection down so that nobody waits forever.
 *
 * Timeouts
 *   handshake: HETSGD_BOOT_HANDSHAKE_MS per connection at rank 0; the whole rendezvous:
 *   HETSGD_BOOT_TIMEOUT.  In a collective, a message that has started must
 *   keep moving (HETSGD_BOOT_TIMEOUT without progress is an error), but the
 *   wait for the other ranks to *enter* a collective is unbounded, as with
 *   PMI fences: they may be computing.  A rank that dies closes its socket;
 *   a host that vanishes is found by TCP keepalive (KEEP_* below).
 *
 * Not in scope: confidentiality and integrity of the collectives' payloads
 * against an on-path attacker (the bootstrap authenticates who joins, as
 * PMI does not even do; it carries no keys or credentials).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* accept4 */
#endif
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
enum { ST_OK = 0, ST_BAD_SIZE = 1, ST_BAD_RANK = 2, ST_DUP_RANK = 3, ST_BAD_PROOF = 4 };
enum { OP_ALLGATHER = 1, OP_BARRIER = 2 };
enum { RS_OK = 0, RS_MISMATCH = 1, RS_ABORT = 2 };

#define ERR_SECRET_HOWTO \
	"make one before starting the ranks with export HETSGD_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n') " \
	"(srun passes it to every rank)"

/* ---- little helpers ---------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- SipHash-2-4 (Aumasson & Bernstein), 64-bit output ----------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                        \
	do {                                                            \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                  \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                  \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
	} while (0)

uint64_t hetsgd_boot_tcp_siphash(const uint8_t key[16], const void *msg, size_t len)
{
	const uint8_t *in = msg;
	uint64_t k0 = get64(key), k1 = get64(key + 8);
	uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
	uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
	uint64_t m, b = (uint64_t)len << 56;
	size_t i, tail = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		m = get64(in + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (; tail; tail--)
		b |= (uint64_t)in[i + tail - 1] << (8 * (tail - 1));
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static void derive_key(const char *secret, uint8_t key[16])
{
	static const uint8_t kdf0[16] = "hetsgd-tcp-kdf-0", kdf1[16] = "hetsgd-tcp-kdf-1";
	size_t n = strlen(secret);

	put64(key, hetsgd_boot_tcp_siphash(kdf0, secret, n));
	put64(key + 8, hetsgd_boot_tcp_siphash(kdf1, secret, n));
}

/* MAC(label, hello || chal || extra[0..extra_len)) into out[8]. */
static void make_mac(const uint8_t key[16], const char label[8], const uint8_t *hello,
		     const uint8_t *chal, const uint8_t *extra, size_t extra_len, uint8_t out[8])
{
	uint8_t buf[8 + HELLO_LEN + CHAL_LEN + 8];

	memcpy(buf, label, 8);
	memcpy(buf + 8, hello, HELLO_LEN);
	memcpy(buf + 8 + HELLO_LEN, chal, CHAL_LEN);
	if (extra_len)
		memcpy(buf + 8 + HELLO_LEN + CHAL_LEN, extra, extra_len);
	put64(out, hetsgd_boot_tcp_siphash(key, buf, 8 + HELLO_LEN + CHAL_LEN + extra_len));
}

static int mac_equal(const uint8_t *a, const uint8_t *b)
{
	unsigned d = 0;
	int i;

	for (i = 0; i < 8; i++)
		d |= (unsigned)(a[i] ^ b[i]);
	return d == 0;
}

/* ---- message parsers (pure: see transport_priv.h) --------------------- */

/* HELLO and CHAL share a header: "HGTB" u16 version u16 0. */
static int parse_head(const uint8_t *buf, size_t len)
{
	size_t n = len < 4 ? len : 4;

	if (n && memcmp(buf, TCP_MAGIC, n))	/* n == 0: buf may be NULL */
		return -EPROTO;
	if (len >= 6 && get16(buf + 4) != TCP_VERSION)
		return -EPROTONOSUPPORT;
	if (len >= 8 && get16(buf + 6) != 0)
		return -EPROTO;
	return 0;
}

int hetsgd_boot_tcp_parse_hello(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_hello *out)
{
	int ret;

	if ((!buf && len) || !out)
		return -EINVAL;
	ret = parse_head(buf, len);
	if (ret)
		return ret;
	if (len < HELLO_LEN)
		return -EAGAIN;
	out->rank = get32(buf + 8);
	out->size = get32(buf + 12);
	memcpy(out->nonce, buf + 16, NONCE_LEN);
	return 0;
}

int hetsgd_boot_tcp_parse_chal(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_chal *out)
{
	int ret;

	if ((!buf && len) || !out)
		return -EINVAL;
	ret = parse_head(buf, len);
	if (ret)
		return ret;
	if (len >= 16 && get32(buf + 12) != 0)
		return -EPROTO;
	if (len < CHAL_LEN)
		return -EAGAIN;
	out->size = get32(buf + 8);
	memcpy(out->nonce, buf + 16, NONCE_LEN);
	return 0;
}

int hetsgd_boot_tcp_parse_proof(const uint8_t *buf, size_t len, const uint8_t key[16],
				const uint8_t hello[HELLO_LEN], const uint8_t chal[CHAL_LEN])
{
	uint8_t want[PROOF_LEN];

	if ((!buf && len) || !key || !hello || !chal)
		return -EINVAL;
	if (len < PROOF_LEN)
		return -EAGAIN;
	make_mac(key, "HGTBpeer", hello, chal, NULL, 0, want);
	return mac_equal(want, buf) ? 0 : -EACCES;
}

int hetsgd_boot_tcp_parse_welcome(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_welcome *out)
{
	if ((!buf && len) || !out)
		return -EINVAL;
	if (len < WELCOME_LEN)
		return -EAGAIN;
	out->status = get32(buf);
	out->size = get32(buf + 4);
	memcpy(out->mac, buf + 8, 8);
	return 0;
}

int hetsgd_boot_tcp_parse_req(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_req *out)
{
	uint32_t op = 0;
	uint64_t n;

	if ((!buf && len) || !out)
		return -EINVAL;
	if (len >= 4) {
		op = get32(buf);
		if (op != OP_ALLGATHER && op != OP_BARRIER)
			return -EPROTO;
	}
	if (len < REQ_LEN)
		return -EAGAIN;
	n = get64(buf + 8);
	if (n > HETSGD_BOOT_MAX_LEN || (op == OP_BARRIER && n))
		return -EPROTO;
	out->op = op;
	out->seq = get32(buf + 4);
	out->len = n;
	return 0;
}

int hetsgd_boot_tcp_parse_rep(const uint8_t *buf, size_t len, struct hetsgd_boot_tcp_rep *out)
{
	struct hetsgd_boot_tcp_rep r;

	if ((!buf && len) || !out)
		return -EINVAL;
	if (len < REP_LEN)
		return -EAGAIN;
	r.op = get32(buf);
	r.seq = get32(buf + 4);
	r.status = get32(buf + 8);
	r.bad_rank = get32(buf + 12);
	r.len = get64(buf + 16);
	r.bad_op = get32(buf + 24);
	r.bad_seq = get32(buf + 28);
	r.bad_len = get64(buf + 32);
	if (r.status != RS_OK && r.status != RS_MISMATCH && r.status != RS_ABORT)
		return -EPROTO;
	*out = r;
	return 0;
}

static int fill_random(uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = getrandom(buf, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return hetsgd_err(-errno, "tcp bootstrap: getrandom failed: %s", strerror(errno));
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- Slurm host list --------------------------------------------------- */

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
	       c == '-' || c == '.' || c == '_';
}

/*
 * First host of a Slurm host list: "node[003-010,12],gpu1" -> "node003",
 * "rack[2-3]-n[07,09]" -> "rack2-n07".  Brackets hold comma-separated
 * numbers or ranges; the first number is kept as written, with its zeros.
 */
int hetsgd_boot_tcp_first_host(const char *nodelist, char *out, size_t outlen)
{
	const char *p = nodelist;
	size_t n = 0;

#define HL_BAD(why)                                                                    \
	hetsgd_err(-EINVAL, "cannot read the first host of the Slurm node list '%.200s': %s; " \
		   "set HETSGD_RENDEZVOUS=host:port to rank 0's host instead", nodelist, why)

	if (!nodelist || !*nodelist)
		return hetsgd_err(-EINVAL, "the Slurm node list is empty: set HETSGD_RENDEZVOUS=host:port to rank 0's host");
	if (!out || !outlen)
		return hetsgd_err(-EINVAL, "no room for the host name");
	while (*p && *p != ',') {
		if (*p == '[') {
			size_t digits = 0;

			for (p++; is_digit(*p); p++, digits++) {
				if (n + 1 >= outlen)
					return hetsgd_err(-ENAMETOOLONG, "the first host of '%.200s' is longer than %zu characters",
							  nodelist, outlen - 1);
				out[n++] = *p;
			}
			if (!digits)
				return HL_BAD("a bracket does not start with a number");
			for (; *p && *p != ']'; p++)
				if (!is_digit(*p) && *p != ',' && *p != '-')
					return HL_BAD("a bracket holds something other than numbers, ',' and '-'");
			if (*p != ']')
				return HL_BAD("a '[' is not closed");
			if (p[-1] == ',' || p[-1] == '-')
				return HL_BAD("a bracket ends with ',' or '-'");
			p++;
			continue;
		}
		if (!is_host_char(*p))
			return HL_BAD(*p == ']' ? "a ']' has no '['" : "it holds a character not allowed in a host name");
		if (n + 1 >= outlen)
			return hetsgd_err(-ENAMETOOLONG, "the first host of '%.200s' is longer than %zu characters",
					  nodelist, outlen - 1);
		out[n++] = *p++;
	}
	if (!n)
		return HL_BAD("it starts with ','");
	out[n] = '\0';
	return 0;
#undef HL_BAD
}

/* ---- configuration from the environment -------------------------------- */

static int parse_int(const char *var, const char *val, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(val, &end, 10);
	if (!*val || *end || errno || !(is_digit(*val) || *val == '-'))
		return hetsgd_err(-EINVAL, "%s='%.64s' is not a whole number", var, val);
	if (v < lo || v > hi)
		return hetsgd_err(-EINVAL, "%s=%ld is out of range: use %ld to %ld", var, v, lo, hi);
	*out = (int)v;
	return 0;
}

static int get_rank_size(int *rank, int *size)
{
	const char *rv = getenv("HETSGD_RANK"), *sv = getenv("HETSGD_SIZE");
	const char *rn = "HETSGD_RANK", *sn = "HETSGD_SIZE";
	int ret;

	if (rv || sv) {
		if (!rv || !sv)
			return hetsgd_err(-EINVAL, "%s is set but %s is not: set both (or neither, under srun)",
					  rv ? rn : sn, rv ? sn : rn);
	} else {
		rv = getenv("SLURM_PROCID");
		sv = getenv("SLURM_NTASKS");
		rn = "SLURM_PROCID";
		sn = "SLURM_NTASKS";
		if (!rv || !sv)
			return hetsgd_err(-ENOENT,
					  "tcp bootstrap: no rank and size in the environment: set HETSGD_RANK and HETSGD_SIZE, "
					  "or start the ranks with srun, which sets SLURM_PROCID and SLURM_NTASKS");
	}
	ret = parse_int(sn, sv, 1, MAX_SIZE, size);
	if (!ret)
		ret = parse_int(rn, rv, 0, INT_MAX, rank);
	if (ret)
		return ret;
	if (*rank >= *size)
		return hetsgd_err(-EINVAL, "%s=%d is not below %s=%d: ranks are numbered 0 to size-1",
				  rn, *rank, sn, *size);
	return 0;
}

static int get_secret(uint8_t key[16])
{
	const char *s = getenv("HETSGD_SECRET");
	size_t n = s ? strlen(s) : 0;

	if (!s)
		return hetsgd_err(-EACCES, "HETSGD_SECRET is not set: the TCP bootstrap admits only ranks that know the job's secret; "
				  ERR_SECRET_HOWTO);
	if (n < MIN_SECRET)
		return hetsgd_err(-EINVAL, "HETSGD_SECRET is %zu characters, too short to protect the rendezvous: use at least %d; "
				  ERR_SECRET_HOWTO, n, MIN_SECRET);
	derive_key(s, key);
	return 0;
}

static uint32_t fnv1a32(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

struct rendezvous {
	char host[256];
	char port[8];
	char where[300];	/* "host:port" or "[v6]:port", for messages */
	int from_slurm;
	int numeric;		/* host is an address literal */
};

static int parse_rendezvous(const char *val, struct rendezvous *rv)
{
	const char *colon, *h = val;
	size_t hlen;
	int port;

	if (*val == '[') {
		const char *close = strchr(val, ']');

		if (!close || close[1] != ':')
			return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s' is not [ipv6-address]:port", val);
		h = val + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(val, ':');
		if (!colon)
			return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s' has no port: use host:port, e.g. node001:29500", val);
		hlen = (size_t)(colon - val);
		if (memchr(val, ':', hlen))
			return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s': put an IPv6 address in brackets, e.g. [fe80::1]:29500", val);
	}
	if (!hlen || hlen >= sizeof(rv->host))
		return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s' has an empty or overlong host: use host:port", val);
	if (parse_int("HETSGD_RENDEZVOUS port", colon + 1, 1, 65535, &port))
		return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s' has a bad port: use host:port with a port from 1 to 65535",
				  val);
	memcpy(rv->host, h, hlen);
	rv->host[hlen] = '\0';
	snprintf(rv->port, sizeof(rv->port), "%d", port);
	return 0;
}

static int get_rendezvous(struct rendezvous *rv)
{
	const char *val = getenv("HETSGD_RENDEZVOUS"), *nodes, *job, *step;
	struct in6_addr a6;
	struct in_addr a4;
	int ret;

	memset(rv, 0, sizeof(*rv));
	if (val) {
		ret = parse_rendezvous(val, rv);
		if (ret)
			return ret;
	} else {
		nodes = getenv("SLURM_STEP_NODELIST");
		if (!nodes)
			nodes = getenv("SLURM_JOB_NODELIST");
		if (!nodes)
			nodes = getenv("SLURM_NODELIST");
		job = getenv("SLURM_JOB_ID");
		if (!job)
			job = getenv("SLURM_JOBID");
		step = getenv("SLURM_STEP_ID");
		if (!step)
			step = getenv("SLURM_STEPID");
		if (!nodes || !job)
			return hetsgd_err(-ENOENT,
					  "tcp bootstrap: no rendezvous address: set HETSGD_RENDEZVOUS=host:port to rank 0's host and a free port "
					  "on every rank (e.g. HETSGD_RENDEZVOUS=node001:29500), or start the ranks with srun, "
					  "which sets SLURM_STEP_NODELIST and SLURM_JOB_ID");
		ret = hetsgd_boot_tcp_first_host(nodes, rv->host, sizeof(rv->host));
		if (ret)
			return ret;
		{
			char ids[160];

			snprintf(ids, sizeof(ids), "%.70s.%.70s", job, step ? step : "");
			snprintf(rv->port, sizeof(rv->port), "%u",
				 (unsigned)(PORT_BASE + fnv1a32(ids) % PORT_SPAN));
		}
		rv->from_slurm = 1;
	}
	rv->numeric = inet_pton(AF_INET, rv->host, &a4) == 1 || inet_pton(AF_INET6, rv->host, &a6) == 1;
	snprintf(rv->where, sizeof(rv->where), strchr(rv->host, ':') ? "[%s]:%s" : "%s:%s", rv->host, rv->port);
	return 0;
}

/* ---- sockets ----------------------------------------------------------- */

static void tune_socket(int fd)
{
	int one = 1, idle = KEEP_IDLE_S, intvl = KEEP_INTVL_S, cnt = KEEP_CNT;

	/* Best effort: none of these is needed for correctness. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
			snprintf(buf, len, "%s:%u", ip, ntohs(s6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
			snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
		}
	} else {
		snprintf(buf, len, "(address family %d)", sa->sa_family);
	}
}

/*
 * Move exactly len bytes on a non-blocking socket.  stall_ms bounds each
 * wait for progress (-1: unbounded); deadline (a now_ms() value, 0: none)
 * bounds the whole.  0, -EPIPE at end of stream, -ETIMEDOUT or -errno.
 */
static int xfer(int fd, void *buf, size_t len, int sending, int stall_ms, int64_t deadline)
{
	char *p = buf;

	while (len) {
		ssize_t n = sending ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		struct pollfd pfd = { .fd = fd, .events = sending ? POLLOUT : POLLIN };
		int t = stall_ms, rc;

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return errno == ECONNRESET ? -EPIPE : -errno;
		if (deadline) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			if (t < 0 || left < t)
				t = (int)left;
		}
		rc = poll(&pfd, 1, t);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
	}
	return 0;
}

static int send_full(int fd, const void *buf, size_t len, int stall_ms, int64_t deadline)
{
	return xfer(fd, (void *)(uintptr_t)buf, len, 1, stall_ms, deadline);
}

static int recv_full(int fd, void *buf, size_t len, int stall_ms, int64_t deadline)
{
	return xfer(fd, buf, len, 0, stall_ms, deadline);
}

/* ---- state ------------------------------------------------------------- */

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
	char why[400];
	char where[300];
};

static void tcp_free(struct tcp_state *st, int nranks)
{
	int r;

	if (!st)
		return;
	if (st->fd >= 0)
		close(st->fd);
	for (r = 1; st->pfd_fd && r < nranks; r++)
		if (st->pfd_fd[r] >= 0)
			close(st->pfd_fd[r]);
	free(st->pfd_fd);
	free(st->addr);
	free(st->coll);
	free(st->pfd);
	free(st->pidx);
	free(st);
}

/* ---- rank 0: listening ----------------------------------------------- */

/* A listening socket on sa, or -errno. */
static int listen_on(const struct sockaddr *sa, socklen_t sl, int backlog)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, zero = 0, err;

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr))
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, sa, sl) || listen(fd, backlog)) {
		err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

static int root_listen(const struct rendezvous *rv, int backlog, int *out)
{
	int fd;

	if (rv->numeric) {
		/* An address: listen there only. */
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
		struct addrinfo *res = NULL;
		int gai = getaddrinfo(rv->host, rv->port, &hints, &res);

		if (gai)
			return hetsgd_err(-EINVAL, "rank 0 cannot listen on %s: %s", rv->where, gai_strerror(gai));
		fd = listen_on(res->ai_addr, res->ai_addrlen, backlog);
		freeaddrinfo(res);
	} else {
		/*
		 * A name: listen on every address, IPv6 and IPv4 on one socket
		 * where the host has IPv6, IPv4 alone where it has not.
		 */
		uint16_t port = (uint16_t)atoi(rv->port);
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT,
					   .sin6_port = htons(port) };
		struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY),
					  .sin_port = htons(port) };

		fd = listen_on((struct sockaddr *)&s6, sizeof(s6), backlog);
		if (fd < 0 && fd != -EADDRINUSE)
			fd = listen_on((struct sockaddr *)&s4, sizeof(s4), backlog);
	}
	if (fd == -EADDRINUSE)
		return hetsgd_err(-EADDRINUSE,
				  "rank 0 cannot listen on port %s (rendezvous %s): another process uses it "
				  "(see ss -ltnp 'sport = :%s'): set HETSGD_RENDEZVOUS=host:port with a free port on every rank",
				  rv->port, rv->where, rv->port);
	if (fd == -EADDRNOTAVAIL)
		return hetsgd_err(-EADDRNOTAVAIL,
				  "rank 0 cannot listen on %s: %s is not an address of this host; HETSGD_RENDEZVOUS must name "
				  "the host where rank 0 runs", rv->where, rv->host);
	if (fd < 0)
		return hetsgd_err(fd, "rank 0 cannot listen on %s: %s", rv->where, strerror(-fd));
	*out = fd;
	return 0;
}

/* ---- rank 0: rendezvous ------------------------------------------------ */

/*
 * A connection that has not proved itself yet.  Its state changes only in
 * conn_set(), and only along conn_next[]; what may be read in a state is
 * decided in conn_step()'s switch:
 *
 *   state      reads     event      next        what happened
 *   FREE       -         ACCEPT     HELLO       accept4()
 *   HELLO      HELLO     HELLO_OK   PROOF       well-formed HELLO, CHAL sent
 *   PROOF      PROOF     PROOF_OK   ADMITTED    MAC good, WELCOME(ok) sent
 *   HELLO,PROOF          REFUSE     CLOSED      anything else; fd closed
 *   ADMITTED,CLOSED      RELEASE    FREE        the slot is reused
 */
enum conn_state {
	CS_ILLEGAL = 0,		/* not a state: marks a forbidden transition */
	CS_FREE,
	CS_HELLO,
	CS_PROOF,
	CS_ADMITTED,
	CS_CLOSED,
	CS_COUNT
};

enum conn_event { CE_ACCEPT, CE_HELLO_OK, CE_PROOF_OK, CE_REFUSE, CE_RELEASE, CE_COUNT };

static const uint8_t conn_next[CS_COUNT][CE_COUNT] = {
	[CS_FREE] = { [CE_ACCEPT] = CS_HELLO },
	[CS_HELLO] = { [CE_HELLO_OK] = CS_PROOF, [CE_REFUSE] = CS_CLOSED },
	[CS_PROOF] = { [CE_PROOF_OK] = CS_ADMITTED, [CE_REFUSE] = CS_CLOSED },
	[CS_ADMITTED] = { [CE_RELEASE] = CS_FREE },
	[CS_CLOSED] = { [CE_RELEASE] = CS_FREE },
};

static const char *const conn_state_name[CS_COUNT] = {
	"illegal", "free", "awaiting hello", "awaiting proof", "admitted", "closed",
};

struct conn {
	enum conn_state state;
	int fd;
	size_t got;			/* bytes of the message being read */
	int64_t since;			/* accepted at (now_ms) */
	int64_t deadline;		/* must be admitted by then */
	uint8_t hello[HELLO_LEN], chal[CHAL_LEN], proof[PROOF_LEN];
	char ip[INET6_ADDRSTRLEN];	/* the source, for limits and counts */
	char addr[INET6_ADDRSTRLEN + 8];	/* ip:port, for messages */
};

/*
 * Why a connection was refused.  "unauth" reasons are the ones anyone on
 * the network can cause without the secret: they are what a flood is made
 * of, and the final diagnosis tells them apart from a wrong secret.
 */
enum refusal {
	RF_SILENT, RF_STALLED, RF_EVICT_SOURCE, RF_EVICT_FULL, RF_GARBAGE, RF_HUNGUP, RF_LATE,
	RF_VERSION, RF_BAD_MAC, RF_BAD_SIZE, RF_BAD_RANK, RF_COUNT
};

static const struct {
	const char *label;
	int unauth;
} refusal_info[RF_COUNT] = {
	[RF_SILENT] = { "sent nothing before the handshake deadline", 1 },
	[RF_STALLED] = { "did not finish the handshake before the deadline", 1 },
	[RF_EVICT_SOURCE] = { "closed unauthenticated: too many at once from one address", 1 },
	[RF_EVICT_FULL] = { "closed unauthenticated: too many at once in all", 1 },
	[RF_GARBAGE] = { "not a hetsgd bootstrap client", 1 },
	[RF_HUNGUP] = { "hung up before authenticating", 1 },
	[RF_LATE] = { "still authenticating when the rendezvous completed", 1 },
	[RF_VERSION] = { "another bootstrap protocol version", 0 },
	[RF_BAD_MAC] = { "wrong secret", 0 },
	[RF_BAD_SIZE] = { "wrong job size", 0 },
	[RF_BAD_RANK] = { "rank out of range", 0 },
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

struct rdv {
	struct hetsgd_boot *boot;
	struct tcp_state *st;
	const uint8_t *key;
	const struct rendezvous *rv;
	struct conn *conns;
	int cap;			/* slots in conns */
	int used;			/* slots in HELLO or PROOF */
	int per_source, handshake_ms;
	int joined;
	int dup_rank;			/* claimed twice: the rendezvous is off */
	unsigned accepted;		/* connections ever accepted */
	int64_t t0;
	struct refusals rf;
};

static int conn_set(struct conn *c, enum conn_event ev)
{
	uint8_t next = conn_next[c->state][ev];

	if (next == CS_ILLEGAL)
		return hetsgd_err(-EPROTO, "tcp bootstrap: internal error: event %d in state '%s' for %s; please report it",
				  (int)ev, conn_state_name[c->state], c->addr);
	c->state = (enum conn_state)next;
	return 0;
}

static void emit_line(const char *line, size_t n)
{
	/* One write, so that concurrent ranks' lines do not interleave. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

/* "N reason (e.g. ADDR: detail), ...; from IP xN, ..." into buf. */
static void refusals_format(const struct refusals *rf, int window, char *buf, size_t len)
{
	const unsigned *cnt = window ? rf->win : rf->total;
	size_t n = 0;
	int i, shown = 0;

#define ADD(...) do { if (n < len) n += (size_t)snprintf(buf + n, len - n, __VA_ARGS__); } while (0)
	buf[0] = '\0';
	for (i = 0; i < RF_COUNT; i++) {
		const char *ex = window ? rf->example[i] : rf->first[i];

		if (!cnt[i])
			continue;
		ADD("%s%u %s", shown++ ? ", " : "", cnt[i], refusal_info[i].label);
		if (ex[0])
			ADD(" (%s%s)", cnt[i] > 1 ? "first: " : "", ex);
	}
	ADD("; from");
	for (i = 0, shown = 0; i < rf->nsrc; i++) {
		unsigned k = window ? rf->src[i].win : rf->src[i].total;

		if (k && shown < 8)
			ADD("%s %s x%u", shown++ ? "," : "", rf->src[i].ip, k);
	}
	if (window ? rf->other_win : rf->other_total)
		ADD(" and %u from other addresses", window ? rf->other_win : rf->other_total);
#undef ADD
	if (n >= len && len > 4)
		memcpy(buf + len - 4, "...", 4);
}

/* One summary line for the window, then a new window. */
static void refusals_flush(struct refusals *rf, int64_t now)
{
	char line[1536], body[1400];
	int i, n;

	if (!rf->win_sum)
		return;
	refusals_format(rf, 1, body, sizeof(body));
	n = snprintf(line, sizeof(line), "hetsgd: tcp bootstrap: refused %u connection%s in %.1f s: %s\n",
		     rf->win_sum, rf->win_sum == 1 ? "" : "s", (double)(now - rf->win_start) / 1000.0, body);
	emit_line(line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
	memset(rf->win, 0, sizeof(rf->win));
	for (i = 0; i < RF_COUNT; i++)
		rf->example[i][0] = '\0';
	for (i = 0; i < rf->nsrc; i++)
		rf->src[i].win = 0;
	rf->other_win = 0;
	rf->win_sum = 0;
	rf->win_start = now;
	rf->log_next = now + LOG_EVERY_MS;
}

static void refusals_count(struct refusals *rf, enum refusal why, const char *ip, const char *example)
{
	int64_t now = now_ms();
	int i;

	if (!rf->win_sum)
		rf->win_start = now;
	rf->win[why]++;
	rf->total[why]++;
	rf->win_sum++;
	if (!rf->example[why][0])
		snprintf(rf->example[why], EXAMPLE_LEN, "%s", example);
	if (!rf->first[why][0])
		snprintf(rf->first[why], EXAMPLE_LEN, "%s", example);
	for (i = 0; i < rf->nsrc && strcmp(rf->src[i].ip, ip); i++)
		;
	if (i == rf->nsrc && rf->nsrc < MAX_SOURCES)
		snprintf(rf->src[rf->nsrc++].ip, sizeof(rf->src[0].ip), "%s", ip);
	if (i < rf->nsrc) {
		rf->src[i].win++;
		rf->src[i].total++;
		rf->src[i].unauth += (unsigned)refusal_info[why].unauth;
	} else {
		rf->other_win++;
		rf->other_total++;
		rf->other_unauth += (unsigned)refusal_info[why].unauth;
	}
	/* The first refusal shows at once; later ones wait for the summary. */
	if (now >= rf->log_next)
		refusals_flush(rf, now);
}

static void conn_close(struct rdv *x, struct conn *c, int abortive)
{
	if (abortive) {
		/* RST: a flood leaves no TIME_WAIT sockets behind at rank 0. */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		(void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	c->fd = -1;
	x->used--;
}

static void refuse(struct rdv *x, struct conn *c, enum refusal why, const char *fmt, ...) HETSGD_PRINTF(4, 5);

/* Close c, count why; fmt says what happened, for the summary. */
static void refuse(struct rdv *x, struct conn *c, enum refusal why, const char *fmt, ...)
{
	char ex[EXAMPLE_LEN];
	va_list ap;
	int n;

	n = snprintf(ex, sizeof(ex), "%s: ", c->addr);
	va_start(ap, fmt);
	vsnprintf(ex + n, sizeof(ex) - (size_t)n, fmt, ap);
	va_end(ap);
	/* Abortive for the ones strangers cause in bulk; a graceful close lets a welcome arrive. */
	conn_close(x, c, why == RF_SILENT || why == RF_STALLED || why == RF_EVICT_SOURCE ||
			 why == RF_EVICT_FULL || why == RF_LATE);
	(void)conn_set(c, CE_REFUSE);
	(void)conn_set(c, CE_RELEASE);
	refusals_count(&x->rf, why, c->ip, ex);
}

/* 0 sent; otherwise the connection was refused. */
static int conn_send(struct rdv *x, struct conn *c, const uint8_t *msg, size_t len, const char *what)
{
	/* Fresh socket, empty send buffer: a short message goes out whole or not at all. */
	ssize_t n = send(c->fd, msg, len, MSG_NOSIGNAL);

	if (n == (ssize_t)len)
		return 0;
	refuse(x, c, RF_HUNGUP, "could not send the %s (%s)", what, n < 0 ? strerror(errno) : "short write");
	return -1;
}

/*
 * A proof arrived complete: admit, refuse, or -- a second claim on an
 * admitted rank -- end the rendezvous with -EADDRINUSE.
 */
static int conn_judge(struct rdv *x, struct conn *c)
{
	struct tcp_state *st = x->st;
	struct hetsgd_boot_tcp_hello h;
	uint8_t welcome[WELCOME_LEN];
	uint32_t status = ST_OK;
	int size = x->boot->size;

	(void)hetsgd_boot_tcp_parse_hello(c->hello, HELLO_LEN, &h);	/* parsed before the challenge */
	if (hetsgd_boot_tcp_parse_proof(c->proof, PROOF_LEN, x->key, c->hello, c->chal)) {
		/* Say so, or the peer could not tell this from being cut off, and would retry. */
		memset(welcome, 0, sizeof(welcome));
		put32(welcome, ST_BAD_PROOF);
		put32(welcome + 4, (uint32_t)size);
		if (send(c->fd, welcome, WELCOME_LEN, MSG_NOSIGNAL) < 0)
			errno = 0;	/* it is refused either way */
		refuse(x, c, RF_BAD_MAC, "claims rank %u, but its proof does not match this job's HETSGD_SECRET", h.rank);
		return 0;
	}
	if (h.size != (uint32_t)size)
		status = ST_BAD_SIZE;
	else if (h.rank == 0 || h.rank >= (uint32_t)size)
		status = ST_BAD_RANK;
	else if (st->pfd_fd[h.rank] >= 0)
		status = ST_DUP_RANK;
	put32(welcome, status);
	put32(welcome + 4, (uint32_t)size);
	make_mac(x->key, "HGTBrnk0", c->hello, c->chal, welcome, 8, welcome + 8);
	if (conn_send(x, c, welcome, WELCOME_LEN, "welcome"))
		return 0;
	switch (status) {
	case ST_OK:
		(void)conn_set(c, CE_PROOF_OK);
		st->pfd_fd[h.rank] = c->fd;
		snprintf(st->addr[h.rank], sizeof(st->addr[h.rank]), "%s", c->addr);
		c->fd = -1;
		x->used--;
		(void)conn_set(c, CE_RELEASE);
		x->joined++;
		return 0;
	case ST_BAD_SIZE:
		refuse(x, c, RF_BAD_SIZE, "rank %u says the job has %u ranks, rank 0 has %d "
		       "(check HETSGD_SIZE or SLURM_NTASKS on every rank)", h.rank, h.size, size);
		return 0;
	case ST_BAD_RANK:
		refuse(x, c, RF_BAD_RANK, "rank %u is out of range for a job of %d ranks (peers are 1 to %d)",
		       h.rank, size, size - 1);
		return 0;
	default:
		break;
	}
	/*
	 * Both processes know the secret and claim the same rank: a launch
	 * mistake, or the secret leaked.  Either way, whichever we keep may be
	 * the wrong one and the job would wait on it forever: stop now.
	 */
	{
		int ret = hetsgd_err(-EADDRINUSE,
				     "rank 0 (rendezvous %s): rank %u was claimed twice, first by %s (admitted) and then by %s; "
				     "both know HETSGD_SECRET.  The bootstrap stops here rather than run with the wrong process: "
				     "give every process its own HETSGD_RANK, and if no launch gave rank %u twice, "
				     "the secret has leaked: replace HETSGD_SECRET",
				     x->rv->where, h.rank, st->addr[h.rank], c->addr, h.rank);

		x->dup_rank = (int)h.rank;
		conn_close(x, c, 0);
		(void)conn_set(c, CE_REFUSE);
		(void)conn_set(c, CE_RELEASE);
		return ret;
	}
}

/* Read what c has for us and act on it.  0, or an error that ends the rendezvous. */
static int conn_step(struct rdv *x, struct conn *c)
{
	for (;;) {
		struct hetsgd_boot_tcp_hello h;
		uint8_t *buf;
		size_t need;
		ssize_t n;
		int rc;

		switch (c->state) {
		case CS_HELLO:
			buf = c->hello;
			need = HELLO_LEN;
			break;
		case CS_PROOF:
			buf = c->proof;
			need = PROOF_LEN;
			break;
		default:
			return 0;	/* nothing to read in the other states */
		}
		n = recv(c->fd, buf + c->got, need - c->got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0) {
			refuse(x, c, RF_HUNGUP, "%s %s", n ? strerror(errno) : "disconnected",
			       c->state == CS_PROOF ? "before sending its proof"
						    : c->got ? "in the middle of its hello" : "without sending anything");
			return 0;
		}
		c->got += (size_t)n;
		if (c->state == CS_PROOF) {
			if (c->got < PROOF_LEN)
				continue;
			return conn_judge(x, c);
		}
		rc = hetsgd_boot_tcp_parse_hello(c->hello, c->got, &h);
		if (rc == -EAGAIN)
			continue;
		if (rc == -EPROTONOSUPPORT) {
			refuse(x, c, RF_VERSION, "speaks bootstrap protocol version %u, this rank 0 version %u "
			       "(mixed hetsgd builds?)", get16(c->hello + 4), TCP_VERSION);
			return 0;
		}
		if (rc) {
			refuse(x, c, RF_GARBAGE, "it sent %02x %02x %02x %02x, not \"%s\"",
			       c->hello[0], c->got > 1 ? c->hello[1] : 0, c->got > 2 ? c->hello[2] : 0,
			       c->got > 3 ? c->hello[3] : 0, TCP_MAGIC);
			return 0;
		}
		memcpy(c->chal, TCP_MAGIC, 4);
		put16(c->chal + 4, TCP_VERSION);
		put16(c->chal + 6, 0);
		put32(c->chal + 8, (uint32_t)x->boot->size);
		put32(c->chal + 12, 0);
		rc = fill_random(c->chal + 16, NONCE_LEN);
		if (rc)
			return rc;
		if (conn_send(x, c, c->chal, CHAL_LEN, "challenge"))
			return 0;
		(void)conn_set(c, CE_HELLO_OK);
		c->got = 0;
	}
}

/* How far c got: evict the least advanced first, a real rank is never silent for long. */
static int conn_progress(const struct conn *c)
{
	return c->state == CS_PROOF ? 2 : c->got ? 1 : 0;
}

/*
 * The connection to give up for a newcomer: among those from ip (NULL: all),
 * the least advanced, oldest first.  A silent candidate gets one more read
 * first, so that a rank whose hello is already here is not cut off.  The
 * per-address limit spares connections that owe only their proof: many
 * ranks of one node may be there at once, and a rank cut off after its
 * proof would take it for a wrong secret and give up; strangers parked
 * there still meet the handshake deadline and the overall limit.
 */
static int evict_one(struct rdv *x, const char *ip, enum refusal why, int limit)
{
	int tries, i, ret;

	for (tries = 0; tries < 4; tries++) {
		struct conn *best = NULL;

		for (i = 0; i < x->cap; i++) {
			struct conn *c = &x->conns[i];

			if (c->state != CS_HELLO && c->state != CS_PROOF)
				continue;
			if (ip && (strcmp(c->ip, ip) || c->state == CS_PROOF))
				continue;
			if (!best || conn_progress(c) < conn_progress(best) ||
			    (conn_progress(c) == conn_progress(best) && c->since < best->since))
				best = c;
		}
		if (!best)
			return 0;
		if (tries < 3 && !conn_progress(best)) {
			ret = conn_step(x, best);
			if (ret)
				return ret;
			if (best->state != CS_HELLO || best->got)
				continue;	/* it moved, or it was refused: look again */
		}
		if (why == RF_EVICT_SOURCE)
			refuse(x, best, why, "%d connections from %s were authenticating at once (HETSGD_BOOT_PER_SOURCE=%d)",
			       limit + 1, best->ip, limit);
		else
			refuse(x, best, why, "%d connections were authenticating at once (HETSGD_BOOT_MAX_PENDING=%d)",
			       limit, limit);
		return 0;
	}
	return 0;
}

static int source_count(const struct rdv *x, const char *ip)
{
	int i, n = 0;

	for (i = 0; i < x->cap; i++)
		if ((x->conns[i].state == CS_HELLO || x->conns[i].state == CS_PROOF) && !strcmp(x->conns[i].ip, ip))
			n++;
	return n;
}

static void ip_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char *colon;

	addr_str(sa, buf, len);
	/* "a.b.c.d:port" or "[v6]:port" -> the address alone */
	colon = strrchr(buf, ':');
	if (colon)
		*colon = '\0';
	if (buf[0] == '[') {
		memmove(buf, buf + 1, strlen(buf));
		buf[strlen(buf) - 1] = '\0';
	}
}

/* Take in up to max connections.  0, or an error that ends the rendezvous. */
static int accept_some(struct rdv *x, int lfd, int max)
{
	int k, i, ret;

	for (k = 0; k < max; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct conn *c;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if ((errno == EMFILE || errno == ENFILE) && x->used) {
				/* Out of descriptors: a stranger's slot is worth less than a rank's. */
				ret = evict_one(x, NULL, RF_EVICT_FULL, x->used);
				if (ret)
					return ret;
				continue;
			}
			if (errno == EMFILE || errno == ENFILE)
				return hetsgd_err(-errno, "rank 0 ran out of file descriptors accepting the ranks' connections: "
						  "raise the limit (ulimit -n) above %d", x->boot->size + 64);
			return hetsgd_err(-errno, "rank 0: accept on %s: %s", x->rv->where, strerror(errno));
		}
		x->accepted++;
		if (x->used == x->cap) {
			ret = evict_one(x, NULL, RF_EVICT_FULL, x->cap);
			if (ret) {
				close(fd);
				return ret;
			}
		}
		for (i = 0; i < x->cap && x->conns[i].state != CS_FREE; i++)
			;
		if (i == x->cap) {	/* evict_one found nothing to evict: cap is tiny */
			close(fd);
			continue;
		}
		c = &x->conns[i];
		memset(c, 0, sizeof(*c));
		c->state = CS_FREE;
		(void)conn_set(c, CE_ACCEPT);
		c->fd = fd;
		c->since = now_ms();
		c->deadline = c->since + x->handshake_ms;
		addr_str((struct sockaddr *)&ss, c->addr, sizeof(c->addr));
		ip_str((struct sockaddr *)&ss, c->ip, sizeof(c->ip));
		x->used++;
		tune_socket(fd);
		/* A rank sends its hello at once: it may be here already. */
		ret = conn_step(x, c);
		if (ret)
			return ret;
		if (c->state != CS_FREE && source_count(x, c->ip) > x->per_source) {
			ret = evict_one(x, c->ip, RF_EVICT_SOURCE, x->per_source);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static void missing_ranks(const struct tcp_state *st, int size, char *buf, size_t len)
{
	size_t n = 0;
	int r, shown = 0;

	buf[0] = '\0';
	for (r = 1; r < size && n + 16 < len; r++) {
		if (st->pfd_fd[r] >= 0)
			continue;
		if (shown == 16) {
			snprintf(buf + n, len - n, ", ...");
			break;
		}
		n += (size_t)snprintf(buf + n, len - n, "%s%d", shown ? ", " : "", r);
		shown++;
	}
}

/* The busiest unauthenticated sources, "a (n), b (m)", most first. */
static void flood_sources(const struct refusals *rf, char *buf, size_t len)
{
	int used[MAX_SOURCES] = { 0 }, k, i;
	size_t n = 0;

	buf[0] = '\0';
	for (k = 0; k < 4; k++) {
		int best = -1;

		for (i = 0; i < rf->nsrc; i++)
			if (!used[i] && rf->src[i].unauth && (best < 0 || rf->src[i].unauth > rf->src[best].unauth))
				best = i;
		if (best < 0)
			break;
		used[best] = 1;
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s (%u)", k ? ", " : "", rf->src[best].ip,
					      rf->src[best].unauth);
	}
	if (rf->other_unauth && n < len)
		snprintf(buf + n, len - n, "%sothers (%u)", n ? ", " : "", rf->other_unauth);
}

/*
 * Why the ranks did not all come, from what rank 0 saw: a wrong secret
 * (someone completed the handshake with a bad MAC), a flood (many
 * connections that never authenticated), other mismatches, or nothing
 * at all (the ranks never reached this port).
 */
static int timeout_err(const struct rdv *x, int timeout_s)
{
	const struct refusals *rf = &x->rf;
	unsigned unauth = 0, cfg = rf->total[RF_VERSION] + rf->total[RF_BAD_SIZE] + rf->total[RF_BAD_RANK];
	char miss[160], why[800], srcs[200];
	size_t n = 0;
	int i;

	for (i = 0; i < RF_COUNT; i++)
		if (refusal_info[i].unauth)
			unauth += rf->total[i];
	missing_ranks(x->st, x->boot->size, miss, sizeof(miss));
	flood_sources(rf, srcs, sizeof(srcs));
	why[0] = '\0';
#define ADD(...) do { if (n < sizeof(why)) n += (size_t)snprintf(why + n, sizeof(why) - n, __VA_ARGS__); } while (0)
	if (!x->accepted) {
		ADD("no connection reached rank 0 at all: check that the other ranks were started with "
		    "HETSGD_RENDEZVOUS=%s, and that no firewall blocks port %s", x->rv->where, x->rv->port);
	} else {
		if (rf->total[RF_BAD_MAC])
			ADD("WRONG SECRET: %u connection%s completed the handshake with a wrong proof (%s): they were "
			    "started with another HETSGD_SECRET; export the same value for every rank. ",
			    rf->total[RF_BAD_MAC], rf->total[RF_BAD_MAC] == 1 ? "" : "s", rf->first[RF_BAD_MAC]);
		if (cfg)
			ADD("MISMATCH: %u authenticated connection%s had another job size, rank range or protocol "
			    "version (first: %s). ", cfg, cfg == 1 ? "" : "s",
			    rf->first[RF_BAD_SIZE][0] ? rf->first[RF_BAD_SIZE]
			    : rf->first[RF_BAD_RANK][0] ? rf->first[RF_BAD_RANK] : rf->first[RF_VERSION]);
		if (unauth >= FLOOD_MIN)
			ADD("FLOOD: %u connections never authenticated (silent, garbage or cut off), from %s: "
			    "something other than this job is connecting to port %s; stop it, or keep it off the port "
			    "with a firewall (HETSGD_BOOT_PER_SOURCE and HETSGD_BOOT_HANDSHAKE_MS bound what one address "
			    "can hold). ", unauth, srcs, x->rv->port);
		else if (unauth)
			ADD("%u connection%s never authenticated (from %s; port scanners or other programs). ",
			    unauth, unauth == 1 ? "" : "s", srcs);
		if (!rf->total[RF_BAD_MAC] && !cfg)
			ADD("No missing rank presented itself: check that they were started, with HETSGD_RENDEZVOUS=%s, "
			    "and that no firewall blocks port %s from their hosts", x->rv->where, x->rv->port);
	}
#undef ADD
	for (n = strlen(why); n && why[n - 1] == ' '; n--)
		why[n - 1] = '\0';
	return hetsgd_err(-ETIMEDOUT, "rank 0 (rendezvous %s) waited %d s for ranks %s: %s (HETSGD_BOOT_TIMEOUT sets the wait)",
			  x->rv->where, timeout_s, miss, why);
}

/*
 * Every rank is in.  Anyone else who knows the secret and is knocking now
 * claims a rank already admitted: two claims racing.  Take in what the
 * kernel has queued, and give the handshakes under way LINGER_MS to end,
 * so that such a claim stops the job instead of being cut off unheard.
 * Silent connections are not waited for: a flood does not delay the job.
 */
#define LINGER_MS 250

static int linger(struct rdv *x, int lfd)
{
	struct pollfd pfd[64];
	int64_t end = now_ms() + LINGER_MS;
	int ret, i;

	ret = accept_some(x, lfd, x->cap);
	if (ret)
		return ret;
	for (;;) {
		int64_t left = end - now_ms();
		struct conn *at[64];
		int n = 0;

		for (i = 0; i < x->cap; i++) {
			struct conn *c = &x->conns[i];

			if (c->state != CS_HELLO && c->state != CS_PROOF)
				continue;
			if (left <= 0 || !conn_progress(c)) {
				refuse(x, c, RF_LATE, "the rendezvous is complete (all %d ranks joined)", x->boot->size);
				continue;
			}
			if (n < 64) {
				pfd[n] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
				at[n++] = c;
			}
		}
		if (!n)
			return 0;
		if (poll(pfd, (nfds_t)n, (int)left) < 0 && errno != EINTR)
			return hetsgd_err(-errno, "rank 0: poll: %s", strerror(errno));
		for (i = 0; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			ret = conn_step(x, at[i]);
			if (ret)
				return ret;
		}
	}
}

/* Tell the ranks already admitted that the bootstrap is off, so they fail at once. */
static void abort_admitted(struct tcp_state *st, int size, uint32_t rank)
{
	uint8_t rep[REP_LEN] = { 0 };
	int r;

	put32(rep + 8, RS_ABORT);
	put32(rep + 12, rank);
	for (r = 1; r < size; r++)
		if (st->pfd_fd[r] >= 0 && send(st->pfd_fd[r], rep, REP_LEN, MSG_NOSIGNAL) < 0)
			continue;	/* best effort: the close that follows tells them too */
}

static int max_pending(int size)
{
	const char *v = getenv("HETSGD_BOOT_MAX_PENDING");
	struct rlimit rl;
	int cap = MAX_PENDING, ret;

	if (v) {
		ret = parse_int("HETSGD_BOOT_MAX_PENDING", v, 1, 1 << 20, &cap);
		if (ret)
			return ret;
	}
	/* Leave descriptors for the ranks and the program; EMFILE is handled anyway. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)cap + (rlim_t)size + 64 > rl.rlim_cur)
		cap = rl.rlim_cur > (rlim_t)size + 64 + 8 ? (int)(rl.rlim_cur - (rlim_t)size - 64) : 8;
	return cap;
}

static int root_open(struct hetsgd_boot *boot, struct tcp_state *st, const uint8_t key[16],
		     const struct rendezvous *rv, int timeout_s)
{
	struct rdv x = { .boot = boot, .st = st, .key = key, .rv = rv, .t0 = now_ms() };
	const char *v;
	struct pollfd *pfd = NULL;
	int *pidx = NULL;
	int64_t deadline = x.t0 + (int64_t)timeout_s * 1000;
	int lfd = -1, ret, i, backlog;

	if (rv->from_slurm) {
		const char *me = getenv("SLURMD_NODENAME");

		if (me && strcmp(me, rv->host))
			return hetsgd_err(-EADDRNOTAVAIL,
					  "rank 0 runs on node %s, but the other ranks will look for it on %s, the first node of "
					  "the Slurm node list: use srun's default task distribution, or set HETSGD_RENDEZVOUS=host:port "
					  "to rank 0's host on every rank", me, rv->host);
	}
	x.handshake_ms = HANDSHAKE_MS;
	x.per_source = PER_SOURCE;
	v = getenv("HETSGD_BOOT_HANDSHAKE_MS");
	ret = v ? parse_int("HETSGD_BOOT_HANDSHAKE_MS", v, 10, 600000, &x.handshake_ms) : 0;
	v = getenv("HETSGD_BOOT_PER_SOURCE");
	if (!ret && v)
		ret = parse_int("HETSGD_BOOT_PER_SOURCE", v, 1, 1 << 20, &x.per_source);
	if (ret)
		return ret;
	if (x.handshake_ms > timeout_s * 1000)
		x.handshake_ms = timeout_s * 1000;
	x.cap = max_pending(boot->size);
	if (x.cap < 0)
		return x.cap;
	x.conns = calloc((size_t)x.cap, sizeof(*x.conns));
	pfd = calloc((size_t)x.cap + 1, sizeof(*pfd));
	pidx = calloc((size_t)x.cap + 1, sizeof(*pidx));
	if (!x.conns || !pfd || !pidx) {
		ret = hetsgd_err(-ENOMEM, "tcp bootstrap: out of memory for %d pending connections: "
				 "lower HETSGD_BOOT_MAX_PENDING", x.cap);
		goto out_free;
	}
	for (i = 0; i < x.cap; i++) {
		x.conns[i].state = CS_FREE;
		x.conns[i].fd = -1;
	}
	/* Room for the ranks and a flood in the kernel's queue: its overflow drops ranks' SYNs too. */
	backlog = boot->size + x.cap + 16 < 65535 ? boot->size + x.cap + 16 : 65535;
	ret = root_listen(rv, backlog, &lfd);
	if (ret)
		goto out_free;

	while (x.joined < boot->size - 1) {
		int64_t now = now_ms(), wait = deadline - now;
		int nfd = 0, rc;

		if (wait <= 0) {
			ret = timeout_err(&x, timeout_s);
			goto out;
		}
		if (x.rf.win_sum) {
			if (now >= x.rf.log_next)
				refusals_flush(&x.rf, now);
			else if (x.rf.log_next - now < wait)
				wait = x.rf.log_next - now;
		}
		pfd[nfd] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		pidx[nfd++] = -1;
		for (i = 0; i < x.cap; i++) {
			struct conn *c = &x.conns[i];

			if (c->state != CS_HELLO && c->state != CS_PROOF)
				continue;
			if (c->deadline <= now) {
				if (c->state == CS_PROOF || c->got)
					refuse(&x, c, RF_STALLED, "did not complete authentication within %d ms",
					       x.handshake_ms);
				else
					refuse(&x, c, RF_SILENT, "sent nothing within %d ms", x.handshake_ms);
				continue;
			}
			if (c->deadline - now < wait)
				wait = c->deadline - now;
			pfd[nfd] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
			pidx[nfd++] = i;
		}
		rc = poll(pfd, (nfds_t)nfd, (int)(wait > INT_MAX ? INT_MAX : wait));
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			ret = hetsgd_err(-errno, "rank 0: poll: %s", strerror(errno));
			goto out;
		}
		/* Connections in progress first: a rank half-way through must not wait behind newcomers. */
		for (i = 1; i < nfd && x.joined < boot->size - 1; i++) {
			if (!pfd[i].revents)
				continue;
			ret = conn_step(&x, &x.conns[pidx[i]]);
			if (ret)
				goto out;
		}
		if (pfd[0].revents && x.joined < boot->size - 1) {
			ret = accept_some(&x, lfd, ACCEPT_BATCH);
			if (ret)
				goto out;
		}
	}
	ret = linger(&x, lfd);
out:
	if (x.dup_rank > 0)
		abort_admitted(st, boot->size, (uint32_t)x.dup_rank);
	for (i = 0; i < x.cap; i++) {
		struct conn *c = &x.conns[i];

		if (c->state != CS_HELLO && c->state != CS_PROOF)
			continue;
		if (!ret)
			refuse(&x, c, RF_LATE, "the rendezvous is complete (all %d ranks joined)", boot->size);
		else
			conn_close(&x, c, 1);
	}
	{
		/* The last word on refusals: totals for the whole rendezvous. */
		unsigned sum = 0;

		for (i = 0; i < RF_COUNT; i++)
			sum += x.rf.total[i];
		if (sum) {
			char line[1536], body[1400];
			int n;

			refusals_format(&x.rf, 0, body, sizeof(body));
			n = snprintf(line, sizeof(line), "hetsgd: tcp bootstrap: rendezvous %s after %.1f s; refused %u "
				     "connection%s in all: %s\n", ret ? "failed" : "complete",
				     (double)(now_ms() - x.t0) / 1000.0, sum, sum == 1 ? "" : "s", body);
			emit_line(line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
		}
	}
	close(lfd);
out_free:
	free(x.conns);
	free(pfd);
	free(pidx);
	return ret;
}

/* ---- other ranks: connect and authenticate ----------------------------- */

/* One attempt at every address: 0 with *out, -EAGAIN to retry, or fatal. */
static int peer_connect_once(const struct rendezvous *rv, int64_t deadline, int *out, int *last_err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	int gai = getaddrinfo(rv->host, rv->port, &hints, &res);

	if (gai == EAI_AGAIN) {
		*last_err = EAGAIN;
		return -EAGAIN;
	}
	if (gai)
		return hetsgd_err(-EHOSTUNREACH,
				  "cannot resolve rank 0's host '%s' (rendezvous %s): %s: use a host name or address that "
				  "resolves on every node", rv->host, rv->where,
				  gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int err = 0;
		socklen_t el = sizeof(err);

		if (fd < 0) {
			*last_err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			if (errno != EINPROGRESS) {
				err = errno;
			} else {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };
				int64_t left = deadline - now_ms();
				int rc;

				if (left > CONNECT_TRY_MS)
					left = CONNECT_TRY_MS;
				rc = poll(&pfd, 1, left > 0 ? (int)left : 0);
				if (rc <= 0)
					err = rc < 0 ? errno : ETIMEDOUT;
				else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el))
					err = errno;
			}
		}
		if (err) {
			*last_err = err;
			close(fd);
			continue;
		}
		tune_socket(fd);
		freeaddrinfo(res);
		*out = fd;
		return 0;
	}
	freeaddrinfo(res);
	return -EAGAIN;
}

/* 0 admitted; -EAGAIN rank 0 hung up without a word (retry); or fatal. */
static int peer_handshake(struct hetsgd_boot *boot, const struct rendezvous *rv, int fd,
			  const uint8_t key[16], int64_t deadline, int timeout_s)
{
	uint8_t hello[HELLO_LEN], chal[CHAL_LEN], proof[PROOF_LEN], welcome[WELCOME_LEN], want[8];
	struct hetsgd_boot_tcp_chal c;
	struct hetsgd_boot_tcp_welcome w;
	uint32_t status, size0;
	int ret;

	memcpy(hello, TCP_MAGIC, 4);
	put16(hello + 4, TCP_VERSION);
	put16(hello + 6, 0);
	put32(hello + 8, (uint32_t)boot->rank);
	put32(hello + 12, (uint32_t)boot->size);
	ret = fill_random(hello + 16, NONCE_LEN);
	if (ret)
		return ret;
	ret = send_full(fd, hello, HELLO_LEN, -1, deadline);
	if (!ret)
		ret = recv_full(fd, chal, CHAL_LEN, -1, deadline);
	if (ret == -EPIPE || ret == -ECONNREFUSED)
		return -EAGAIN;
	if (ret == -ETIMEDOUT)
		return hetsgd_err(-ETIMEDOUT,
				  "rank %d: the process at %s accepted the connection but sent no challenge within %d s: "
				  "is it this job's rank 0? (check HETSGD_RENDEZVOUS, or the port with ss -ltnp on that host)",
				  boot->rank, rv->where, timeout_s);
	if (ret)
		return hetsgd_err(ret, "rank %d: talking to rank 0 at %s: %s", boot->rank, rv->where, strerror(-ret));
	if (hetsgd_boot_tcp_parse_chal(chal, CHAL_LEN, &c))
		return hetsgd_err(-EPROTO,
				  "rank %d: the process at %s is not a hetsgd rank 0 speaking bootstrap protocol %u "
				  "(another program on that port, or a different hetsgd version)",
				  boot->rank, rv->where, TCP_VERSION);

	make_mac(key, "HGTBpeer", hello, chal, NULL, 0, proof);
	ret = send_full(fd, proof, PROOF_LEN, -1, deadline);
	if (!ret)
		ret = recv_full(fd, welcome, WELCOME_LEN, -1, deadline);
	if (ret == -EPIPE)
		return -EAGAIN;	/* cut off without a word: rank 0 was busy (see peer_open) */
	if (ret == -ETIMEDOUT)
		return hetsgd_err(-ETIMEDOUT, "rank %d: rank 0 at %s did not answer this rank's proof within %d s",
				  boot->rank, rv->where, timeout_s);
	if (ret)
		return hetsgd_err(ret, "rank %d: talking to rank 0 at %s: %s", boot->rank, rv->where, strerror(-ret));

	(void)hetsgd_boot_tcp_parse_welcome(welcome, WELCOME_LEN, &w);	/* whole: cannot fail */
	if (w.status == ST_BAD_PROOF)
		return hetsgd_err(-EACCES,
				  "rank %d: rank 0 at %s refused this rank's proof: its HETSGD_SECRET differs from this rank's "
				  "(every rank needs the same value: export it before srun); rank 0's stderr names the reason",
				  boot->rank, rv->where);
	make_mac(key, "HGTBrnk0", hello, chal, welcome, 8, want);
	if (!mac_equal(want, w.mac))
		return hetsgd_err(-EACCES,
				  "rank %d: the process at %s is not this job's rank 0: it could not prove that it knows "
				  "HETSGD_SECRET (a stale or foreign process holds the port, or rank 0 has another secret): "
				  "check HETSGD_RENDEZVOUS and HETSGD_SECRET", boot->rank, rv->where);
	status = w.status;
	size0 = w.size;
	switch (status) {
	case ST_OK:
		return 0;
	case ST_BAD_SIZE:
		return hetsgd_err(-EPROTO, "rank %d: rank 0 at %s runs a job of %u ranks, this rank was told %d: "
				  "every rank needs the same HETSGD_SIZE (or SLURM_NTASKS)",
				  boot->rank, rv->where, size0, boot->size);
	case ST_BAD_RANK:
		return hetsgd_err(-EPROTO, "rank %d: rank 0 at %s refused rank %d as out of range for %u ranks",
				  boot->rank, rv->where, boot->rank, size0);
	case ST_DUP_RANK:
		return hetsgd_err(-EADDRINUSE, "rank %d: rank 0 at %s already has a rank %d, so it stops the whole "
				  "bootstrap: two processes were given the same rank (check HETSGD_RANK), or a process "
				  "outside the job knows HETSGD_SECRET; rank 0's error names both addresses",
				  boot->rank, rv->where, boot->rank);
	default:
		return hetsgd_err(-EPROTO, "rank %d: rank 0 at %s answered with unknown status %u",
				  boot->rank, rv->where, status);
	}
}

static int peer_open(struct hetsgd_boot *boot, struct tcp_state *st, const uint8_t key[16],
		     const struct rendezvous *rv, int timeout_s)
{
	int64_t deadline = now_ms() + (int64_t)timeout_s * 1000, backoff = 20;
	int last_err = 0, ret, fd;
	unsigned cut = 0;	/* reached rank 0, closed before its challenge */

	for (;;) {
		fd = -1;
		ret = peer_connect_once(rv, deadline, &fd, &last_err);
		if (!ret) {
			ret = peer_handshake(boot, rv, fd, key, deadline, timeout_s);
			if (!ret) {
				st->fd = fd;
				return 0;
			}
			close(fd);
			last_err = ECONNRESET;
			if (ret == -EAGAIN)
				cut++;
		}
		if (ret != -EAGAIN)
			return ret;
		if (now_ms() >= deadline && cut)
			return hetsgd_err(-ETIMEDOUT,
					  "rank %d reached rank 0 at %s %u times within %d s, but each time rank 0 closed the "
					  "connection during the handshake: rank 0 is overloaded, most likely by connections "
					  "that are not ranks (its stderr counts them by address); the network and port are fine",
					  boot->rank, rv->where, cut, timeout_s);
		if (now_ms() >= deadline)
			return hetsgd_err(-ETIMEDOUT,
					  "rank %d could not reach rank 0 at %s within %d s (last error: %s): check that rank 0 "
					  "was started, that %s is rank 0's host, and that no firewall blocks port %s "
					  "(HETSGD_BOOT_TIMEOUT sets the wait)",
					  boot->rank, rv->where, timeout_s, strerror(last_err ? last_err : ETIMEDOUT),
					  rv->from_slurm ? "the first node of the Slurm node list" : "HETSGD_RENDEZVOUS",
					  rv->port);
		sleep_ms(deadline - now_ms() < backoff ? deadline - now_ms() : backoff);
		backoff = backoff * 2 > 500 ? 500 : backoff * 2;
	}
}

/* ---- collectives ------------------------------------------------------- */

static const char *op_name(uint32_t op)
{
	return op == OP_ALLGATHER ? "allgather" : op == OP_BARRIER ? "barrier" : "an unknown operation";
}

static int broken_err(struct hetsgd_boot *boot)
{
	struct tcp_state *st = boot->priv;

	return hetsgd_err(-ECONNRESET, "rank %d: the TCP bootstrap failed earlier and cannot be used: %s",
			  boot->rank, st->why);
}

/* Record a fatal failure and cut every connection, so nobody waits forever. */
static int fail(struct hetsgd_boot *boot, int err, const char *fmt, ...) HETSGD_PRINTF(3, 4);

static int fail(struct hetsgd_boot *boot, int err, const char *fmt, ...)
{
	struct tcp_state *st = boot->priv;
	char msg[400];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st->broken = 1;
	snprintf(st->why, sizeof(st->why), "%s", msg);
	if (st->fd >= 0)
		shutdown(st->fd, SHUT_RDWR);
	for (r = 1; st->pfd_fd && r < boot->size; r++)
		if (st->pfd_fd[r] >= 0)
			shutdown(st->pfd_fd[r], SHUT_RDWR);
	return hetsgd_err(err, "%s", msg);
}

static int mismatch_err(struct hetsgd_boot *boot, uint32_t op, uint64_t len, uint32_t bad_rank,
			uint32_t bad_op, uint32_t bad_seq, uint64_t bad_len)
{
	return hetsgd_err(-EPROTO,
			  "rank %d: the ranks called different collectives at step %u: rank 0 called %s of %llu bytes, "
			  "rank %u %s of %llu bytes at its step %u: every rank must make the same calls in the same order",
			  boot->rank, boot->seq, op_name(op), (unsigned long long)len, bad_rank, op_name(bad_op),
			  (unsigned long long)bad_len, bad_seq);
}

/* Read what peer r has for us; 0 (maybe more later) or a fatal error. */
static int root_read(struct hetsgd_boot *boot, int r, uint32_t op, size_t len, void *all,
		     int *bad)
{
	struct tcp_state *st = boot->priv;
	struct coll *c = &st->coll[r];
	int fd = st->pfd_fd[r];
	uint8_t sink[16384];

	for (;;) {
		struct hetsgd_boot_tcp_req req;
		ssize_t n;

		if (c->hgot < REQ_LEN)
			n = recv(fd, c->hdr + c->hgot, REQ_LEN - c->hgot, 0);
		else if (c->dst)
			n = recv(fd, c->dst + (c->len - c->left), (size_t)c->left, 0);
		else
			n = recv(fd, sink, c->left < sizeof(sink) ? (size_t)c->left : sizeof(sink), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return fail(boot, -ECONNRESET,
				    "rank 0: rank %d (%s) disconnected during collective %u: it exited or crashed before "
				    "the others; the job cannot go on", r, st->addr[r], boot->seq);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return fail(boot, -errno, "rank 0: reading from rank %d (%s) in collective %u: %s",
				    r, st->addr[r], boot->seq, strerror(errno));
		}
		c->last = now_ms();
		if (c->hgot < REQ_LEN) {
			c->hgot += (size_t)n;
			if (c->hgot < REQ_LEN)
				continue;
			if (hetsgd_boot_tcp_parse_req(c->hdr, REQ_LEN, &req))
				return fail(boot, -EPROTO,
					    "rank 0: rank %d (%s) sent a malformed request in collective %u "
					    "(operation %u, %llu bytes; the limit is %u)",
					    r, st->addr[r], boot->seq, get32(c->hdr),
					    (unsigned long long)get64(c->hdr + 8), HETSGD_BOOT_MAX_LEN);
			c->op = req.op;
			c->seq = req.seq;
			c->len = req.len;
			c->left = c->len;
			if (c->op == op && c->seq == boot->seq && c->len == len) {
				c->dst = len ? (uint8_t *)all + (size_t)r * len : NULL;
			} else {
				c->dst = NULL;
				if (*bad < 0 || r < *bad)
					*bad = r;
			}
		} else {
			c->left -= (uint64_t)n;
		}
		if (!c->left) {
			c->done = 1;
			return 0;
		}
	}
}

static int root_collective(struct hetsgd_boot *boot, uint32_t op, const void *mine, void *all, size_t len)
{
	struct tcp_state *st = boot->priv;
	int size = boot->size, pending = size - 1, bad = -1, r, i, ret;
	uint8_t rep[REP_LEN];

	if (len)
		memmove(all, mine, len);
	memset(st->coll, 0, sizeof(*st->coll) * (size_t)size);
	while (pending) {
		int64_t now = now_ms();
		int nfd = 0, timeout = -1, rc;

		for (r = 1; r < size; r++) {
			struct coll *c = &st->coll[r];

			if (c->done)
				continue;
			if (c->hgot) {
				int64_t left = c->last + st->stall_ms - now;

				if (left <= 0)
					return fail(boot, -ETIMEDOUT,
						    "rank 0: rank %d (%s) stopped sending in the middle of collective %u for %d s: "
						    "it hangs, or its host or the network is overloaded",
						    r, st->addr[r], boot->seq, st->stall_ms / 1000);
				if (timeout < 0 || left < timeout)
					timeout = (int)left;
			}
			st->pfd[nfd] = (struct pollfd){ .fd = st->pfd_fd[r], .events = POLLIN };
			st->pidx[nfd++] = r;
		}
		rc = poll(st->pfd, (nfds_t)nfd, timeout);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			return fail(boot, -errno, "rank 0: poll in collective %u: %s", boot->seq, strerror(errno));
		}
		for (i = 0; i < nfd; i++) {
			if (!st->pfd[i].revents)
				continue;
			r = st->pidx[i];
			ret = root_read(boot, r, op, len, all, &bad);
			if (ret)
				return ret;
			if (st->coll[r].done)
				pending--;
		}
	}

	put32(rep, op);
	put32(rep + 4, boot->seq);
	if (bad < 0) {
		put32(rep + 8, RS_OK);
		put32(rep + 12, 0);
		put64(rep + 16, (uint64_t)len * (uint64_t)size);
		memset(rep + 24, 0, 16);
	} else {
		put32(rep + 8, RS_MISMATCH);
		put32(rep + 12, (uint32_t)bad);
		put64(rep + 16, len);
		put32(rep + 24, st->coll[bad].op);
		put32(rep + 28, st->coll[bad].seq);
		put64(rep + 32, st->coll[bad].len);
	}
	for (r = 1; r < size; r++) {
		ret = send_full(st->pfd_fd[r], rep, REP_LEN, st->stall_ms, 0);
		if (!ret && bad < 0 && len)
			ret = send_full(st->pfd_fd[r], all, len * (size_t)size, st->stall_ms, 0);
		if (ret)
			return fail(boot, ret == -EPIPE ? -ECONNRESET : ret,
				    "rank 0: could not send the result of collective %u to rank %d (%s): %s",
				    boot->seq, r, st->addr[r], ret == -EPIPE ? "it disconnected" : strerror(-ret));
	}
	if (bad >= 0)
		return mismatch_err(boot, op, len, (uint32_t)bad, st->coll[bad].op, st->coll[bad].seq,
				    st->coll[bad].len);
	return 0;
}

static int peer_collective(struct hetsgd_boot *boot, uint32_t op, const void *mine, void *all, size_t len)
{
	struct tcp_state *st = boot->priv;
	uint8_t req[REQ_LEN], rep[REP_LEN];
	struct hetsgd_boot_tcp_rep r;
	uint64_t total;
	int ret;

	put32(req, op);
	put32(req + 4, boot->seq);
	put64(req + 8, len);
	/* Unbounded waits: rank 0 may be busy before it enters the collective. */
	ret = send_full(st->fd, req, REQ_LEN, -1, 0);
	if (!ret && len)
		ret = send_full(st->fd, mine, len, -1, 0);
	if (!ret)
		ret = recv_full(st->fd, rep, REP_LEN, -1, 0);
	if (ret)
		return fail(boot, -ECONNRESET,
			    "rank %d lost its connection to rank 0 (%s) during collective %u (%s): rank 0 or another rank "
			    "exited or failed; see their output", boot->rank, st->where, boot->seq,
			    ret == -EPIPE ? "closed" : strerror(-ret));
	if (hetsgd_boot_tcp_parse_rep(rep, REP_LEN, &r))
		return fail(boot, -EPROTO, "rank %d: malformed answer from rank 0 (%s) to collective %u",
			    boot->rank, st->where, boot->seq);
	if (r.status == RS_ABORT)
		return fail(boot, -ECONNABORTED,
			    "rank %d: rank 0 (%s) stopped the bootstrap because rank %u was claimed by two processes "
			    "(rank 0's error names both addresses): give every process its own HETSGD_RANK, and "
			    "replace HETSGD_SECRET if a process outside the job knows it", boot->rank, st->where, r.bad_rank);
	if (r.seq != boot->seq)
		return fail(boot, -EPROTO, "rank %d: rank 0 answered collective %u in collective %u",
			    boot->rank, r.seq, boot->seq);
	if (r.status == RS_MISMATCH)
		return mismatch_err(boot, r.op, r.len, r.bad_rank, r.bad_op, r.bad_seq, r.bad_len);
	total = (uint64_t)len * (uint64_t)boot->size;
	if (r.op != op || r.len != total)
		return fail(boot, -EPROTO, "rank %d: malformed answer from rank 0 (%s) to collective %u",
			    boot->rank, st->where, boot->seq);
	if (total) {
		ret = recv_full(st->fd, all, (size_t)total, st->stall_ms, 0);
		if (ret)
			return fail(boot, -ECONNRESET,
				    "rank %d: rank 0 (%s) stopped in the middle of the result of collective %u (%s)",
				    boot->rank, st->where, boot->seq, ret == -EPIPE ? "closed" : strerror(-ret));
	}
	return 0;
}

static int tcp_collective(struct hetsgd_boot *boot, uint32_t op, const void *mine, void *all, size_t len)
{
	struct tcp_state *st = boot->priv;

	if (st->broken)
		return broken_err(boot);
	if (len > HETSGD_BOOT_MAX_LEN)
		return hetsgd_err(-EMSGSIZE, "allgather of %zu bytes per rank exceeds the bootstrap limit of %u bytes",
				  len, HETSGD_BOOT_MAX_LEN);
	if (len && (size_t)boot->size > SIZE_MAX / len)
		return hetsgd_err(-EMSGSIZE, "allgather of %zu bytes from each of %d ranks does not fit in memory",
				  len, boot->size);
	if (boot->size == 1) {
		if (len)
			memmove(all, mine, len);
		return 0;
	}
	return boot->rank == 0 ? root_collective(boot, op, mine, all, len)
			       : peer_collective(boot, op, mine, all, len);
}

static int tcp_allgather(struct hetsgd_boot *boot, const void *mine, void *all, size_t len)
{
	return tcp_collective(boot, OP_ALLGATHER, mine, all, len);
}

static int tcp_barrier(struct hetsgd_boot *boot)
{
	return tcp_collective(boot, OP_BARRIER, NULL, NULL, 0);
}

static void tcp_close(struct hetsgd_boot *boot)
{
	tcp_free(boot->priv, boot->size);
	boot->priv = NULL;
}

static const struct hetsgd_boot_ops tcp_ops = {
	.allgather = tcp_allgather,
	.barrier = tcp_barrier,
	.close = tcp_close,
};

/* ---- open -------------------------------------------------------------- */

int hetsgd_boot_tcp_open(struct hetsgd_boot *boot)
{
	struct rendezvous rv;
	struct tcp_state *st;
	const char *tv = getenv("HETSGD_BOOT_TIMEOUT");
	uint8_t key[16];
	int rank, size, timeout_s = DEFAULT_TIMEOUT_S, ret, r;

	ret = get_rank_size(&rank, &size);
	if (!ret && tv)
		ret = parse_int("HETSGD_BOOT_TIMEOUT", tv, 1, 86400, &timeout_s);
	if (ret)
		return ret;
	if (size > 1) {
		ret = get_secret(key);
		if (!ret)
			ret = get_rendezvous(&rv);
		if (ret)
			return ret;
	}

	st = calloc(1, sizeof(*st));
	if (!st)
		return hetsgd_err(-ENOMEM, "tcp bootstrap: out of memory");
	st->fd = -1;
	st->stall_ms = timeout_s * 1000;
	boot->rank = rank;
	boot->size = size;
	boot->priv = st;
	if (size == 1) {
		snprintf(st->where, sizeof(st->where), "(none: a single rank)");
		ret = 0;
	} else if (rank == 0) {
		snprintf(st->where, sizeof(st->where), "%s", rv.where);
		st->pfd_fd = malloc(sizeof(*st->pfd_fd) * (size_t)size);
		st->addr = calloc((size_t)size, sizeof(*st->addr));
		st->coll = calloc((size_t)size, sizeof(*st->coll));
		st->pfd = calloc((size_t)size, sizeof(*st->pfd));
		st->pidx = calloc((size_t)size, sizeof(*st->pidx));
		if (!st->pfd_fd || !st->addr || !st->coll || !st->pfd || !st->pidx) {
			ret = hetsgd_err(-ENOMEM, "tcp bootstrap: out of memory for %d ranks", size);
		} else {
			for (r = 0; r < size; r++)
				st->pfd_fd[r] = -1;
			ret = root_open(boot, st, key, &rv, timeout_s);
		}
	} else {
		snprintf(st->where, sizeof(st->where), "%s", rv.where);
		ret = peer_open(boot, st, key, &rv, timeout_s);
	}
	memset(key, 0, sizeof(key));
	if (ret) {
		tcp_free(st, size);
		boot->priv = NULL;
		return ret;
	}
	boot->ops = &tcp_ops;
	return 0;
}
