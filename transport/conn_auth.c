/*
 * Who may connect: the proof a verbs connection request carries.
 *
 * A queue pair is the key to a rank's staging ring, so a connection must
 * come from a rank of this job and no one else.  Every rank derives the
 * same 128-bit job key at open:
 *
 *   nonce0  16 random bytes drawn by rank 0 at open, carried to every rank
 *           by the bootstrap's allgather
 *   S       HETSGD_SECRET when the bootstrap is the TCP rendezvous (its
 *           channel is plain TCP, which anyone on the network can read:
 *           nonce0 alone would not be a secret there); empty under PMIx,
 *           PMI2 and the local launcher, whose channels only the job's own
 *           processes reach (the launcher is trusted)
 *   K     = LE64(SipHash(kdf0, S || nonce0)) || LE64(SipHash(kdf1, S || nonce0))
 *
 * rdma_cm private data (all integers little-endian, 40 bytes; a REQ may
 * carry 56 bytes on InfiniBand CM, so this fits everywhere):
 *
 *   u16 magic "hc"  u8 version  u8 type (1 REQ, 2 REP, 3 ABORT)
 *   u32 rank        the sender's rank
 *   u32 target      the rank it means to reach
 *   u32 rkey        the key of the ring the sender registered for target
 *   u64 ring        that ring's address
 *   u64 nonce       fresh from getrandom()
 *   u64 mac         SipHash(K, label || the 32 bytes above || u32 qpn
 *                   || u64 nonce of the request (REP only))
 *
 * The MAC binds the proof to the job (K), both ranks, the ring it hands
 * over and the sender's queue pair number, which the CM carries outside
 * the private data: a replayed request names a queue pair that its sender
 * does not own.  The answer covers the request's nonce, so it cannot be
 * replayed either, and a requester learns that it reached its job's rank
 * and not an impostor.  The ring's key is sent only to the rank it is for,
 * and it belongs to a protection domain of that rank's queue pair alone.
 *
 * ABORT is a request that says "I failed to open; stop waiting for me": a
 * rank whose connecting failed sends it to every lower rank it has not
 * connected to yet, so that no rank waits out its connect timeout.  It is
 * proven like a request, so a stranger cannot stop a job with it.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "transport_priv.h"

#define CONN_MAGIC 0x6368u	/* "hc" */
#define CONN_VERSION 1u

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

int tp_job_key(const char *secret, const uint8_t nonce0[16], uint8_t key[16])
{
	static const uint8_t kdf0[16] = "hetsgd-cm-kdf-00", kdf1[16] = "hetsgd-cm-kdf-01";
	size_t n = secret ? strlen(secret) : 0;
	uint8_t *buf = malloc(n + 16);

	if (!buf)
		return -ENOMEM;
	if (n)
		memcpy(buf, secret, n);
	memcpy(buf + n, nonce0, 16);
	put64(key, hetsgd_boot_tcp_siphash(kdf0, buf, n + 16));
	put64(key + 8, hetsgd_boot_tcp_siphash(kdf1, buf, n + 16));
	memset(buf, 0, n + 16);
	free(buf);
	return 0;
}

static uint64_t conn_mac(const uint8_t key[16], const uint8_t body[TP_CONN_LEN - 8], uint32_t qpn,
			 uint64_t req_nonce, int type)
{
	uint8_t m[8 + TP_CONN_LEN - 8 + 4 + 8];
	size_t len = 8 + TP_CONN_LEN - 8 + 4;

	memcpy(m, type == TP_CONN_REQ ? "hsgd-req" : type == TP_CONN_REP ? "hsgd-rep" : "hsgd-abt", 8);
	memcpy(m + 8, body, TP_CONN_LEN - 8);
	put32(m + 8 + TP_CONN_LEN - 8, qpn);
	if (type == TP_CONN_REP) {
		put64(m + len, req_nonce);
		len += 8;
	}
	return hetsgd_boot_tcp_siphash(key, m, len);
}

void tp_conn_pack(const uint8_t key[16], const struct tp_conn *c, uint32_t qpn, uint64_t req_nonce,
		  uint8_t out[TP_CONN_LEN])
{
	out[0] = (uint8_t)(CONN_MAGIC & 0xff);
	out[1] = (uint8_t)(CONN_MAGIC >> 8);
	out[2] = CONN_VERSION;
	out[3] = (uint8_t)c->type;
	put32(out + 4, c->rank);
	put32(out + 8, c->target);
	put32(out + 12, c->rkey);
	put64(out + 16, c->ring);
	put64(out + 24, c->nonce);
	put64(out + 32, conn_mac(key, out, qpn, req_nonce, c->type));
}

int tp_conn_parse(const uint8_t key[16], const void *buf, size_t len, int type, uint32_t qpn,
		  uint64_t req_nonce, struct tp_conn *out)
{
	const uint8_t *p = buf;
	uint64_t mac;
	unsigned d = 0;

	if (!p || len < TP_CONN_LEN)
		return hetsgd_err(-EBADMSG, "%zu bytes of private data, less than the %u of a hetsgd %s",
				  p ? len : 0, TP_CONN_LEN, type == TP_CONN_REQ ? "connection request" : "answer");
	if (p[0] != (CONN_MAGIC & 0xff) || p[1] != (CONN_MAGIC >> 8))
		return hetsgd_err(-EBADMSG, "private data does not start with hetsgd's magic: not a hetsgd %s",
				  type == TP_CONN_REQ ? "connection request" : "answer");
	if (p[2] != CONN_VERSION)
		return hetsgd_err(-EPROTO, "connection format version %u, this build speaks %u: run the same hetsgd on every rank",
				  p[2], CONN_VERSION);
	if (p[3] != type && !(type == TP_CONN_REQ && p[3] == TP_CONN_ABORT))
		return hetsgd_err(-EBADMSG, "message type %u where a %s (%d) belongs", p[3],
				  type == TP_CONN_REQ ? "request" : "answer", type);
	type = p[3];
	mac = conn_mac(key, p, qpn, req_nonce, type);
	/* Compare in constant time: a timing oracle would leak the tag. */
	for (int i = 0; i < 8; i++)
		d |= (unsigned)(p[32 + i] ^ (uint8_t)(mac >> (8 * i)));
	if (d)
		return hetsgd_err(-EACCES, "its proof of the job key is wrong: it is not a rank of this job "
				  "(another job, a stale process, or someone else on the fabric)");
	out->type = type;
	out->rank = get32(p + 4);
	out->target = get32(p + 8);
	out->rkey = get32(p + 12);
	out->ring = get64(p + 16);
	out->nonce = get64(p + 24);
	return 0;
}
