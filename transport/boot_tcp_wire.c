/*
 * TCP rendezvous bootstrap: what goes on the wire.  SipHash-2-4 and the
 * MACs built on it, the pure parsers of every message (see
 * transport_priv.h), and moving whole messages over non-blocking sockets.
 * The formats themselves are described in boot_tcp.c.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "boot_tcp_priv.h"

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

void btcp_derive_key(const char *secret, uint8_t key[16])
{
	static const uint8_t kdf0[16] = "hetsgd-tcp-kdf-0", kdf1[16] = "hetsgd-tcp-kdf-1";
	size_t n = strlen(secret);

	put64(key, hetsgd_boot_tcp_siphash(kdf0, secret, n));
	put64(key + 8, hetsgd_boot_tcp_siphash(kdf1, secret, n));
}

/* MAC(label, hello || chal || extra[0..extra_len)) into out[8]. */
void btcp_make_mac(const uint8_t key[16], const char label[8], const uint8_t *hello,
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

int btcp_mac_equal(const uint8_t *a, const uint8_t *b)
{
	unsigned d = 0;
	int i;

	for (i = 0; i < 8; i++)
		d |= (unsigned)(a[i] ^ b[i]);
	return d == 0;
}

/* ---- message parsers (pure: see transport_priv.h) --------------------- */

/* HELLO and CHAL share a header: "HGTB" u16 version u16 0.  Checks the arguments too. */
static int parse_head(const uint8_t *buf, size_t len, const void *out)
{
	size_t n = len < 4 ? len : 4;

	if ((!buf && len) || !out)
		return -EINVAL;
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
	int ret = parse_head(buf, len, out);

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
	int ret = parse_head(buf, len, out);

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
	btcp_make_mac(key, "HGTBpeer", hello, chal, NULL, 0, want);
	return btcp_mac_equal(want, buf) ? 0 : -EACCES;
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

int btcp_fill_random(uint8_t *buf, size_t len)
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

/* ---- sockets ----------------------------------------------------------- */

void btcp_tune_socket(int fd)
{
	int one = 1, idle = KEEP_IDLE_S, intvl = KEEP_INTVL_S, cnt = KEEP_CNT;

	/* Best effort: none of these is needed for correctness. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

void btcp_addr_str(const struct sockaddr *sa, char *buf, size_t len)
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

int btcp_send_full(int fd, const void *buf, size_t len, int stall_ms, int64_t deadline)
{
	return xfer(fd, (void *)(uintptr_t)buf, len, 1, stall_ms, deadline);
}

int btcp_recv_full(int fd, void *buf, size_t len, int stall_ms, int64_t deadline)
{
	return xfer(fd, buf, len, 0, stall_ms, deadline);
}
