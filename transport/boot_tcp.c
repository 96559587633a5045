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
 *   Rank 0 keeps listening from open to close, and serves newcomers
 *   (same deadline, limits and summaries) whenever it waits in the
 *   bootstrap: in the rendezvous and in every collective.  A second
 *   authenticated claim on an admitted rank -- two racing, or one that
 *   comes after an impostor with the secret took the last free rank and
 *   completed the rendezvous -- stops the job at once: the claimant is
 *   told it is a duplicate, rank 0 fails with the rank and both
 *   addresses, and tells the admitted ranks (an ABORT answer, then a
 *   close) so they fail too.  When that happens during the rendezvous,
 *   rank 0 answers for up to 1 s more (until every missing rank has
 *   asked) that it stopped the job, so that ranks arriving then fail at
 *   once saying so; a rank that starts later meets a closed port.
 *   A handshake's deadline runs only while rank 0 is in the bootstrap.
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
 *   4 wrong proof, 5 rank 0 stopped the job (a rank was claimed twice).  Status 4 comes with a zero MAC (rank 0 cannot prove
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
 *   may send it at any time, before or after a REQ, and then closes).
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
 *
 * Files: this one (the other ranks' side, the collectives, open and
 * close), boot_tcp_admit.c (rank 0's admission state machine),
 * boot_tcp_refusals.c (refusal counts and rank 0's diagnosis),
 * boot_tcp_env.c (environment, listening socket), boot_tcp_wire.c
 * (SipHash, MACs, parsers, whole-message I/O), boot_tcp_priv.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* accept4 */
#endif
#include <config.h>

#include <config.h>

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boot_tcp_priv.h"

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

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
	btcp_admit_close(st->adm);
	free(st->pfd_fd);
	free(st->addr);
	free(st->coll);
	free(st->pfd);
	free(st->pidx);
	free(st);
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
		btcp_tune_socket(fd);
		freeaddrinfo(res);
		*out = fd;
		return 0;
	}
	freeaddrinfo(res);
	return -EAGAIN;
}

/* What rank 0's (authenticated) answer to this rank's claim means: 0 admitted, or why not. */
static int welcome_err(const struct hetsgd_boot *boot, const struct rendezvous *rv, uint32_t status, uint32_t size0)
{
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
				  "bootstrap (a duplicate rank claim): two processes were given the same rank (check "
				  "HETSGD_RANK), or a process outside the job knows HETSGD_SECRET and took this rank's place; "
				  "rank 0's error names both addresses", boot->rank, rv->where, boot->rank);
	case ST_STOPPED:
		return hetsgd_err(-ECONNABORTED, "rank %d: rank 0 at %s stopped the job before this rank joined, "
				  "because a rank was claimed twice (rank 0's error names the rank and both addresses); "
				  "this rank's network and secret are fine", boot->rank, rv->where);
	default:
		return hetsgd_err(-EPROTO, "rank %d: rank 0 at %s answered with unknown status %u",
				  boot->rank, rv->where, status);
	}
}

/* 0 admitted; -EAGAIN rank 0 hung up without a word (retry); or fatal. */
static int peer_handshake(struct hetsgd_boot *boot, const struct rendezvous *rv, int fd,
			  const uint8_t key[16], int64_t deadline, int timeout_s)
{
	uint8_t hello[HELLO_LEN], chal[CHAL_LEN], proof[PROOF_LEN], welcome[WELCOME_LEN], want[8];
	struct hetsgd_boot_tcp_chal c;
	struct hetsgd_boot_tcp_welcome w;
	int ret;

	memcpy(hello, TCP_MAGIC, 4);
	put16(hello + 4, TCP_VERSION);
	put16(hello + 6, 0);
	put32(hello + 8, (uint32_t)boot->rank);
	put32(hello + 12, (uint32_t)boot->size);
	ret = btcp_fill_random(hello + 16, NONCE_LEN);
	if (ret)
		return ret;
	ret = btcp_send_full(fd, hello, HELLO_LEN, -1, deadline);
	if (!ret)
		ret = btcp_recv_full(fd, chal, CHAL_LEN, -1, deadline);
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

	btcp_make_mac(key, "HGTBpeer", hello, chal, NULL, 0, proof);
	ret = btcp_send_full(fd, proof, PROOF_LEN, -1, deadline);
	if (!ret)
		ret = btcp_recv_full(fd, welcome, WELCOME_LEN, -1, deadline);
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
	btcp_make_mac(key, "HGTBrnk0", hello, chal, welcome, 8, want);
	if (!btcp_mac_equal(want, w.mac))
		return hetsgd_err(-EACCES,
				  "rank %d: the process at %s is not this job's rank 0: it could not prove that it knows "
				  "HETSGD_SECRET (a stale or foreign process holds the port, or rank 0 has another secret): "
				  "check HETSGD_RENDEZVOUS and HETSGD_SECRET", boot->rank, rv->where);
	return welcome_err(boot, rv, w.status, w.size);
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
	char msg[1024];
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
	/* Nobody is admitted any more: newcomers meet a closed port, not a silent one. */
	btcp_admit_close(st->adm);
	st->adm = NULL;
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

/*
 * Wait until every peer's request is in: their sockets and, while rank 0
 * waits here anyway, the listener and the handshakes under way, so that a
 * late claim on an admitted rank stops the job instead of going unheard.
 * The wait for peers to enter is unbounded; a request that has started
 * must keep moving.
 */
static int root_gather(struct hetsgd_boot *boot, uint32_t op, void *all, size_t len, int *bad)
{
	struct tcp_state *st = boot->priv;
	int size = boot->size, pending = size - 1, r, i, ret;

	while (pending) {
		int64_t now = now_ms(), timeout = -1;
		int nfd = 0, nadm = 0;

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
					timeout = left;
			}
			st->pfd[nfd] = (struct pollfd){ .fd = st->pfd_fd[r], .events = POLLIN };
			st->pidx[nfd++] = r;
		}
		if (st->adm)
			nadm = btcp_admit_prepare(st->adm, st->pfd + nfd, now, &timeout);
		if (poll(st->pfd, (nfds_t)(nfd + nadm), (int)(timeout > INT_MAX ? INT_MAX : timeout)) < 0) {
			if (errno == EINTR)
				continue;
			return fail(boot, -errno, "rank 0: poll in collective %u: %s", boot->seq, strerror(errno));
		}
		for (i = 0; i < nfd; i++) {
			if (!st->pfd[i].revents)
				continue;
			r = st->pidx[i];
			ret = root_read(boot, r, op, len, all, bad);
			if (ret)
				return ret;
			if (st->coll[r].done)
				pending--;
		}
		ret = nadm ? btcp_admit_serve(st->adm, st->pfd + nfd, nadm) : 0;
		if (ret)
			return fail(boot, ret, "%s", hetsgd_errmsg());
	}
	return 0;
}

static int root_collective(struct hetsgd_boot *boot, uint32_t op, const void *mine, void *all, size_t len)
{
	struct tcp_state *st = boot->priv;
	int size = boot->size, bad = -1, r, ret;
	uint8_t rep[REP_LEN];

	if (len)
		memmove(all, mine, len);
	memset(st->coll, 0, sizeof(*st->coll) * (size_t)size);
	ret = root_gather(boot, op, all, len, &bad);
	if (ret)
		return ret;
	btcp_admit_pause(st->adm);
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
		ret = btcp_send_full(st->pfd_fd[r], rep, REP_LEN, st->stall_ms, 0);
		if (!ret && bad < 0 && len)
			ret = btcp_send_full(st->pfd_fd[r], all, len * (size_t)size, st->stall_ms, 0);
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
	ret = btcp_send_full(st->fd, req, REQ_LEN, -1, 0);
	if (!ret && len)
		ret = btcp_send_full(st->fd, mine, len, -1, 0);
	if (!ret)
		ret = btcp_recv_full(st->fd, rep, REP_LEN, -1, 0);
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
		ret = btcp_recv_full(st->fd, all, (size_t)total, st->stall_ms, 0);
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

	ret = btcp_get_rank_size(&rank, &size);
	if (!ret && tv)
		ret = btcp_parse_int("HETSGD_BOOT_TIMEOUT", tv, 1, 86400, &timeout_s);
	if (ret)
		return ret;
	if (size > 1) {
		ret = btcp_get_secret(key);
		if (!ret)
			ret = btcp_get_rendezvous(&rv);
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
	/* before the rendezvous: rank 0's refusal lines name it */
	hetsgd_log_set_rank(rank);
	hetsgd_log(HETSGD_LOG_INFO, "boot", "tcp bootstrap: rank %d of %d, rendezvous %s, timeout %d s", rank, size,
		   size > 1 ? rv.where : "(none: a single rank)", timeout_s);
	if (size == 1) {
		snprintf(st->where, sizeof(st->where), "(none: a single rank)");
		ret = 0;
	} else if (rank == 0) {
		snprintf(st->where, sizeof(st->where), "%s", rv.where);
		st->pfd_fd = malloc(sizeof(*st->pfd_fd) * (size_t)size);
		st->addr = calloc((size_t)size, sizeof(*st->addr));
		st->coll = calloc((size_t)size, sizeof(*st->coll));
		st->pidx = calloc((size_t)size, sizeof(*st->pidx));
		if (!st->pfd_fd || !st->addr || !st->coll || !st->pidx) {
			ret = hetsgd_err(-ENOMEM, "tcp bootstrap: out of memory for %d ranks", size);
		} else {
			for (r = 0; r < size; r++)
				st->pfd_fd[r] = -1;
			ret = btcp_root_open(boot, st, key, &rv, timeout_s);
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
