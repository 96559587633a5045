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
 *   otherwise on every address), handshakes with any number of connections
 *   at once under poll(), and admits a connection only after it proved that
 *   it knows HETSGD_SECRET.  Everything else -- wrong secret, garbage, a
 *   peer silent for HANDSHAKE_MS, wrong size, duplicate or out-of-range
 *   rank -- is closed and logged on stderr as
 *       hetsgd: tcp bootstrap: refused ADDR:PORT: REASON
 *   and rank 0 goes on waiting, up to HETSGD_BOOT_TIMEOUT seconds (default
 *   60) for the whole rendezvous.  Other ranks connect with back-off retries
 *   until the same deadline (rank 0 may start later than they do).
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
 *   status: 0 admitted, 1 wrong size, 2 rank out of range, 3 duplicate rank.
 *
 * Collectives (a star through rank 0, like the local launcher)
 *   peer -> 0   REQ     16 B  u32 op u32 seq u64 len, then len bytes
 *   0 -> peer   REP     40 B  u32 op u32 seq u32 status u32 bad_rank
 *                             u64 len u32 bad_op u32 bad_seq u64 bad_len
 *                             then, when status is 0, len = size * len bytes
 *   Rank 0 answers only when every rank asked for the same (op, seq, len);
 *   otherwise every rank gets -EPROTO naming the first rank that differs,
 *   and the bootstrap stays usable.  A rank that disconnects or stalls in
 *   the middle of a message fails the whole job: rank 0 shuts every
 *   connection down so that nobody waits forever.
 *
 * Timeouts
 *   handshake: HANDSHAKE_MS per connection at rank 0; the whole rendezvous:
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport_priv.h"

#define TCP_MAGIC "HGTB"
#define TCP_VERSION 1u
#define HANDSHAKE_MS 5000	/* a connection must authenticate within this */
#define MAX_PENDING 64		/* connections authenticating at once */
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
enum { ST_OK = 0, ST_BAD_SIZE = 1, ST_BAD_RANK = 2, ST_DUP_RANK = 3 };
enum { OP_ALLGATHER = 1, OP_BARRIER = 2 };
enum { RS_OK = 0, RS_MISMATCH = 1 };

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

/* ---- rank 0: rendezvous ------------------------------------------------ */

struct pending {
	int fd;
	int state;		/* 0: reading HELLO, 1: reading PROOF */
	size_t got;
	int64_t deadline;
	uint8_t hello[HELLO_LEN], chal[CHAL_LEN], proof[PROOF_LEN];
	char addr[INET6_ADDRSTRLEN + 8];
};

static void log_refusal(const char *addr, const char *fmt, ...) HETSGD_PRINTF(2, 3);

static void log_refusal(const char *addr, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "hetsgd: tcp bootstrap: refused %s: ", addr);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	/* One write, so that concurrent ranks' lines do not interleave. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static void drop(struct pending *p)
{
	close(p->fd);
	p->fd = -1;
}

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

struct root_ctx {
	struct hetsgd_boot *boot;
	struct tcp_state *st;
	const uint8_t *key;
	int joined;
};

/* Advance one connection's handshake on readable input; drops it when done. */
static void root_step(struct root_ctx *cx, struct pending *p)
{
	struct tcp_state *st = cx->st;
	int size = cx->boot->size;

	for (;;) {
		uint8_t *buf = p->state ? p->proof : p->hello;
		size_t need = p->state ? PROOF_LEN : HELLO_LEN;
		ssize_t n = recv(p->fd, buf + p->got, need - p->got, 0);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			log_refusal(p->addr, "%s %s", n ? strerror(errno) : "disconnected",
				    p->state ? "before sending its proof"
					     : p->got ? "in the middle of its hello" : "without sending anything");
			drop(p);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p->got += (size_t)n;
		if (!p->state && p->got >= 4 && memcmp(p->hello, TCP_MAGIC, 4)) {
			log_refusal(p->addr, "not a hetsgd bootstrap client (it sent %02x %02x %02x %02x, not \"%s\")",
				    p->hello[0], p->hello[1], p->hello[2], p->hello[3], TCP_MAGIC);
			drop(p);
			return;
		}
		if (p->got < need)
			continue;

		if (!p->state) {
			if (get16(p->hello + 4) != TCP_VERSION) {
				log_refusal(p->addr, "speaks bootstrap protocol version %u, this rank 0 version %u (mixed hetsgd builds?)",
					    get16(p->hello + 4), TCP_VERSION);
				drop(p);
				return;
			}
			memcpy(p->chal, TCP_MAGIC, 4);
			put16(p->chal + 4, TCP_VERSION);
			put16(p->chal + 6, 0);
			put32(p->chal + 8, (uint32_t)size);
			put32(p->chal + 12, 0);
			if (fill_random(p->chal + 16, NONCE_LEN) ||
			    send(p->fd, p->chal, CHAL_LEN, MSG_NOSIGNAL) != CHAL_LEN) {
				log_refusal(p->addr, "could not send the challenge (%s)", strerror(errno));
				drop(p);
				return;
			}
			p->state = 1;
			p->got = 0;
			continue;
		}

		/* The proof is complete. */
		{
			uint8_t want[PROOF_LEN], welcome[WELCOME_LEN];
			uint32_t rank = get32(p->hello + 8), psize = get32(p->hello + 12), status = ST_OK;

			make_mac(cx->key, "HGTBpeer", p->hello, p->chal, NULL, 0, want);
			if (!mac_equal(want, p->proof)) {
				log_refusal(p->addr, "wrong secret (its proof does not match this job's HETSGD_SECRET)");
				drop(p);
				return;
			}
			if (psize != (uint32_t)size) {
				status = ST_BAD_SIZE;
				log_refusal(p->addr, "rank %u says the job has %u ranks, rank 0 has %d "
					    "(check HETSGD_SIZE or SLURM_NTASKS on every rank)", rank, psize, size);
			} else if (rank == 0 || rank >= (uint32_t)size) {
				status = ST_BAD_RANK;
				log_refusal(p->addr, "rank %u is out of range for a job of %d ranks (peers are 1 to %d)",
					    rank, size, size - 1);
			} else if (st->pfd_fd[rank] >= 0) {
				status = ST_DUP_RANK;
				log_refusal(p->addr, "duplicate rank %u: %s joined as rank %u already (check HETSGD_RANK)",
					    rank, st->addr[rank], rank);
			}
			put32(welcome, status);
			put32(welcome + 4, (uint32_t)size);
			make_mac(cx->key, "HGTBrnk0", p->hello, p->chal, welcome, 8, welcome + 8);
			if (send(p->fd, welcome, WELCOME_LEN, MSG_NOSIGNAL) != WELCOME_LEN) {
				if (status == ST_OK)
					log_refusal(p->addr, "could not send the welcome (%s)", strerror(errno));
				drop(p);
				return;
			}
			if (status != ST_OK) {
				drop(p);
				return;
			}
			st->pfd_fd[rank] = p->fd;
			snprintf(st->addr[rank], sizeof(st->addr[rank]), "%s", p->addr);
			p->fd = -1;
			cx->joined++;
			return;
		}
	}
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

static int root_open(struct hetsgd_boot *boot, struct tcp_state *st, const uint8_t key[16],
		     const struct rendezvous *rv, int timeout_s)
{
	struct pending pend[MAX_PENDING];
	struct pollfd pfd[MAX_PENDING + 1];
	int pidx[MAX_PENDING + 1];
	struct root_ctx cx = { .boot = boot, .st = st, .key = key };
	int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
	int lfd = -1, ret, i, handshake_ms = timeout_s * 1000 < HANDSHAKE_MS ? timeout_s * 1000 : HANDSHAKE_MS;
	int backlog = boot->size + 16 < 65535 ? boot->size + 16 : 65535;

	if (rv->from_slurm) {
		const char *me = getenv("SLURMD_NODENAME");

		if (me && strcmp(me, rv->host))
			return hetsgd_err(-EADDRNOTAVAIL,
					  "rank 0 runs on node %s, but the other ranks will look for it on %s, the first node of "
					  "the Slurm node list: use srun's default task distribution, or set HETSGD_RENDEZVOUS=host:port "
					  "to rank 0's host on every rank", me, rv->host);
	}
	ret = root_listen(rv, backlog, &lfd);
	if (ret)
		return ret;
	for (i = 0; i < MAX_PENDING; i++)
		pend[i].fd = -1;

	while (cx.joined < boot->size - 1) {
		int64_t now = now_ms(), wait = deadline - now;
		int nfd = 0, rc;

		if (wait <= 0) {
			char miss[160];

			missing_ranks(st, boot->size, miss, sizeof(miss));
			ret = hetsgd_err(-ETIMEDOUT,
					 "rank 0 (rendezvous %s) waited %d s for ranks %s: check that they were started with the same "
					 "HETSGD_SECRET, size and rendezvous, and can reach port %s (refused connections are logged "
					 "on rank 0's stderr; HETSGD_BOOT_TIMEOUT sets the wait)",
					 rv->where, timeout_s, miss, rv->port);
			goto out;
		}
		pfd[nfd] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		pidx[nfd++] = -1;
		for (i = 0; i < MAX_PENDING; i++) {
			if (pend[i].fd < 0)
				continue;
			if (pend[i].deadline <= now) {
				log_refusal(pend[i].addr, "%s within %d ms (handshake timeout)",
					    pend[i].state || pend[i].got ? "did not complete authentication" : "sent nothing",
					    handshake_ms);
				drop(&pend[i]);
				continue;
			}
			if (pend[i].deadline - now < wait)
				wait = pend[i].deadline - now;
			pfd[nfd] = (struct pollfd){ .fd = pend[i].fd, .events = POLLIN };
			pidx[nfd++] = i;
		}
		rc = poll(pfd, (nfds_t)nfd, (int)(wait > INT_MAX ? INT_MAX : wait));
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			ret = hetsgd_err(-errno, "rank 0: poll: %s", strerror(errno));
			goto out;
		}
		for (i = 1; i < nfd; i++)
			if (pfd[i].revents && pend[pidx[i]].fd >= 0 && cx.joined < boot->size - 1)
				root_step(&cx, &pend[pidx[i]]);
		/* Accept everything queued, so that a flood cannot starve the rest. */
		while (pfd[0].revents && cx.joined < boot->size - 1) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
			char addr[INET6_ADDRSTRLEN + 8];

			if (fd < 0) {
				if (errno == EINTR || errno == ECONNABORTED)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				if (errno == EMFILE || errno == ENFILE)
					ret = hetsgd_err(-errno, "rank 0 ran out of file descriptors accepting the ranks' connections: "
							 "raise the limit (ulimit -n) above %d", boot->size + MAX_PENDING + 16);
				else
					ret = hetsgd_err(-errno, "rank 0: accept on %s: %s", rv->where, strerror(errno));
				goto out;
			}
			addr_str((struct sockaddr *)&ss, addr, sizeof(addr));
			for (i = 0; i < MAX_PENDING && pend[i].fd >= 0; i++)
				;
			if (i == MAX_PENDING) {
				log_refusal(addr, "%d connections are already authenticating", MAX_PENDING);
				close(fd);
				continue;
			}
			tune_socket(fd);
			memset(&pend[i], 0, sizeof(pend[i]));
			pend[i].fd = fd;
			pend[i].deadline = now_ms() + handshake_ms;
			snprintf(pend[i].addr, sizeof(pend[i].addr), "%s", addr);
		}
	}
	ret = 0;
out:
	for (i = 0; i < MAX_PENDING; i++) {
		if (pend[i].fd < 0)
			continue;
		if (!ret)
			log_refusal(pend[i].addr, "the rendezvous is complete (all %d ranks joined)", boot->size);
		drop(&pend[i]);
	}
	close(lfd);
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

/* 0 admitted; -EAGAIN rank 0 hung up before the challenge (retry); or fatal. */
static int peer_handshake(struct hetsgd_boot *boot, const struct rendezvous *rv, int fd,
			  const uint8_t key[16], int64_t deadline, int timeout_s)
{
	uint8_t hello[HELLO_LEN], chal[CHAL_LEN], proof[PROOF_LEN], welcome[WELCOME_LEN], want[8];
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
	if (memcmp(chal, TCP_MAGIC, 4) || get16(chal + 4) != TCP_VERSION)
		return hetsgd_err(-EPROTO,
				  "rank %d: the process at %s is not a hetsgd rank 0 speaking bootstrap protocol %u "
				  "(another program on that port, or a different hetsgd version)",
				  boot->rank, rv->where, TCP_VERSION);

	make_mac(key, "HGTBpeer", hello, chal, NULL, 0, proof);
	ret = send_full(fd, proof, PROOF_LEN, -1, deadline);
	if (!ret)
		ret = recv_full(fd, welcome, WELCOME_LEN, -1, deadline);
	if (ret == -EPIPE)
		return hetsgd_err(-EACCES,
				  "rank %d: rank 0 at %s refused this rank's proof: its HETSGD_SECRET differs from this rank's "
				  "(every rank needs the same value: export it before srun); rank 0's stderr names the reason",
				  boot->rank, rv->where);
	if (ret == -ETIMEDOUT)
		return hetsgd_err(-ETIMEDOUT, "rank %d: rank 0 at %s did not answer this rank's proof within %d s",
				  boot->rank, rv->where, timeout_s);
	if (ret)
		return hetsgd_err(ret, "rank %d: talking to rank 0 at %s: %s", boot->rank, rv->where, strerror(-ret));

	make_mac(key, "HGTBrnk0", hello, chal, welcome, 8, want);
	if (!mac_equal(want, welcome + 8))
		return hetsgd_err(-EACCES,
				  "rank %d: the process at %s is not this job's rank 0: it could not prove that it knows "
				  "HETSGD_SECRET (a stale or foreign process holds the port, or rank 0 has another secret): "
				  "check HETSGD_RENDEZVOUS and HETSGD_SECRET", boot->rank, rv->where);
	status = get32(welcome);
	size0 = get32(welcome + 4);
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
		return hetsgd_err(-EADDRINUSE, "rank %d: rank 0 at %s already has a rank %d: two processes were given "
				  "the same rank (check HETSGD_RANK)", boot->rank, rv->where, boot->rank);
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
		}
		if (ret != -EAGAIN)
			return ret;
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
			c->op = get32(c->hdr);
			c->seq = get32(c->hdr + 4);
			c->len = get64(c->hdr + 8);
			if ((c->op != OP_ALLGATHER && c->op != OP_BARRIER) || c->len > HETSGD_BOOT_MAX_LEN)
				return fail(boot, -EPROTO,
					    "rank 0: rank %d (%s) sent a malformed request in collective %u "
					    "(operation %u, %llu bytes; the limit is %u)",
					    r, st->addr[r], boot->seq, c->op, (unsigned long long)c->len, HETSGD_BOOT_MAX_LEN);
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
	if (get32(rep + 4) != boot->seq)
		return fail(boot, -EPROTO, "rank %d: rank 0 answered collective %u in collective %u",
			    boot->rank, get32(rep + 4), boot->seq);
	if (get32(rep + 8) == RS_MISMATCH)
		return mismatch_err(boot, get32(rep), get64(rep + 16),
				    get32(rep + 12), get32(rep + 24), get32(rep + 28), get64(rep + 32));
	total = (uint64_t)len * (uint64_t)boot->size;
	if (get32(rep + 8) != RS_OK || get32(rep) != op || get64(rep + 16) != total)
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
