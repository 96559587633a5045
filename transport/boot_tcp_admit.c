/*
 * TCP rendezvous bootstrap: rank 0 takes the ranks in (see "Admission" in
 * boot_tcp.c): many handshakes at once under poll(), each connection in
 * the state machine below, with a deadline and per-source limits.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* accept4 */
#endif
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "boot_tcp_priv.h"

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


/* Rank 0's listener and the handshakes under way, from open to close. */
struct btcp_admit {
	struct hetsgd_boot *boot;
	struct tcp_state *st;
	uint8_t key[16];
	struct rendezvous rv;
	int lfd;			/* listening, for the life of the bootstrap */
	struct conn *conns;
	int *slot;			/* poll entry i+1 -> conns[slot[i+1]] */
	uint8_t *told;			/* per rank: told that rank 0 stopped */
	int cap;			/* slots in conns */
	int used;			/* slots in HELLO or PROOF */
	int per_source, handshake_ms;
	int joined;
	int dup_rank;			/* claimed twice: the job is off */
	int stopped;			/* only ST_STOPPED is answered now */
	unsigned accepted;		/* connections ever accepted */
	int64_t t0;
	int64_t away_since;		/* rank 0 left the bootstrap then (0: it is in) */
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

static void conn_close(struct btcp_admit *x, struct conn *c, int abortive)
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

static void refuse(struct btcp_admit *x, struct conn *c, enum refusal why, const char *fmt, ...) HETSGD_PRINTF(4, 5);

/* Close c, count why; fmt says what happened, for the summary. */
static void refuse(struct btcp_admit *x, struct conn *c, enum refusal why, const char *fmt, ...)
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
	btcp_refusals_count(&x->rf, why, c->ip, ex);
}

/* 0 sent; otherwise the connection was refused. */
static int conn_send(struct btcp_admit *x, struct conn *c, const uint8_t *msg, size_t len, const char *what)
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
 * admitted rank, during the rendezvous or after it -- stop the job with
 * -EADDRINUSE (the claimant is told ST_DUP_RANK first).
 */
static int conn_judge(struct btcp_admit *x, struct conn *c)
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
	else if (x->stopped)
		status = ST_STOPPED;
	else if (st->pfd_fd[h.rank] >= 0)
		status = ST_DUP_RANK;
	put32(welcome, status);
	put32(welcome + 4, (uint32_t)size);
	btcp_make_mac(x->key, "HGTBrnk0", c->hello, c->chal, welcome, 8, welcome + 8);
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
	case ST_STOPPED:
		if (st->pfd_fd[h.rank] < 0)
			x->told[h.rank] = 1;
		refuse(x, c, RF_STOPPED, "claims rank %u after rank 0 stopped the job", h.rank);
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
				     x->rv.where, h.rank, st->addr[h.rank], c->addr, h.rank);

		x->dup_rank = (int)h.rank;
		conn_close(x, c, 0);
		(void)conn_set(c, CE_REFUSE);
		(void)conn_set(c, CE_RELEASE);
		return ret;
	}
}

/* Read what c has for us and act on it.  0, or an error that ends the rendezvous. */
static int conn_step(struct btcp_admit *x, struct conn *c)
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
		rc = btcp_fill_random(c->chal + 16, NONCE_LEN);
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
static int evict_one(struct btcp_admit *x, const char *ip, enum refusal why, int limit)
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

static int source_count(const struct btcp_admit *x, const char *ip)
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

	btcp_addr_str(sa, buf, len);
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
static int accept_some(struct btcp_admit *x, int max)
{
	int k, i, ret;

	for (k = 0; k < max; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct conn *c;
		int fd = accept4(x->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

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
			return hetsgd_err(-errno, "rank 0: accept on %s: %s", x->rv.where, strerror(errno));
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
		btcp_addr_str((struct sockaddr *)&ss, c->addr, sizeof(c->addr));
		ip_str((struct sockaddr *)&ss, c->ip, sizeof(c->ip));
		x->used++;
		btcp_tune_socket(fd);
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


/* *wait = the sooner of *wait and ms (-1: no wait yet). */
static void wait_less(int64_t *wait, int64_t ms)
{
	if (*wait < 0 || ms < *wait)
		*wait = ms < 0 ? 0 : ms;
}

int btcp_admit_prepare(struct btcp_admit *x, struct pollfd *pfd, int64_t now, int64_t *wait)
{
	int n = 0, i;

	if (x->away_since) {
		/* A handshake's deadline runs only while rank 0 can answer it. */
		for (i = 0; i < x->cap; i++)
			x->conns[i].deadline += now - x->away_since;
		x->away_since = 0;
	}
	if (x->rf.win_sum) {
		if (now >= x->rf.log_next)
			btcp_refusals_flush(&x->rf, now);
		else
			wait_less(wait, x->rf.log_next - now);
	}
	pfd[n] = (struct pollfd){ .fd = x->lfd, .events = POLLIN };
	x->slot[n++] = -1;
	for (i = 0; i < x->cap; i++) {
		struct conn *c = &x->conns[i];

		if (c->state != CS_HELLO && c->state != CS_PROOF)
			continue;
		if (c->deadline <= now) {
			if (c->state == CS_PROOF || c->got)
				refuse(x, c, RF_STALLED, "did not complete authentication within %d ms", x->handshake_ms);
			else
				refuse(x, c, RF_SILENT, "sent nothing within %d ms", x->handshake_ms);
			continue;
		}
		wait_less(wait, c->deadline - now);
		pfd[n] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
		x->slot[n++] = i;
	}
	return n;
}

/*
 * Tell the admitted ranks that the job is off (an ABORT answer naming the
 * rank claimed twice, then end of stream), so that they fail at once
 * wherever they wait.
 */
static void stop(struct btcp_admit *x)
{
	struct tcp_state *st = x->st;
	uint8_t rep[REP_LEN] = { 0 };
	int r;

	x->stopped = 1;
	put32(rep + 8, RS_ABORT);
	put32(rep + 12, (uint32_t)x->dup_rank);
	for (r = 1; r < x->boot->size; r++) {
		if (st->pfd_fd[r] < 0)
			continue;
		if (send(st->pfd_fd[r], rep, REP_LEN, MSG_NOSIGNAL) < 0)
			errno = 0;	/* best effort: the end of stream tells them too */
		shutdown(st->pfd_fd[r], SHUT_RDWR);
	}
}

int btcp_admit_serve(struct btcp_admit *x, const struct pollfd *pfd, int n)
{
	int i, ret = 0;

	/* Connections in progress first: a rank half-way through must not wait behind newcomers. */
	for (i = 1; i < n && !ret; i++)
		if (pfd[i].revents && (x->conns[x->slot[i]].state == CS_HELLO || x->conns[x->slot[i]].state == CS_PROOF))
			ret = conn_step(x, &x->conns[x->slot[i]]);
	if (!ret && pfd[0].revents)
		ret = accept_some(x, ACCEPT_BATCH);
	if (ret && x->dup_rank > 0 && !x->stopped)
		stop(x);
	return ret;
}

/* One poll over the listener and the handshakes, until `until` at most. */
static int admit_turn(struct btcp_admit *x, int64_t until)
{
	int64_t now = now_ms(), wait = until - now;
	int n = btcp_admit_prepare(x, x->st->pfd, now, &wait);

	if (poll(x->st->pfd, (nfds_t)n, (int)(wait > INT_MAX ? INT_MAX : wait)) < 0)
		return errno == EINTR ? 0 : hetsgd_err(-errno, "rank 0: poll: %s", strerror(errno));
	return btcp_admit_serve(x, x->st->pfd, n);
}

/* A handshake under way that has got somewhere (silent ones are not waited for). */
static int busy(const struct btcp_admit *x)
{
	int i;

	for (i = 0; i < x->cap; i++)
		if ((x->conns[i].state == CS_HELLO || x->conns[i].state == CS_PROOF) && conn_progress(&x->conns[i]))
			return 1;
	return 0;
}

/*
 * Every rank is in.  Anyone else who knows the secret and is knocking now
 * claims a rank already admitted: two claims racing.  Take in what the
 * kernel has queued, and give the handshakes under way LINGER_MS to end,
 * so that such a claim fails the open itself.  Later ones are still heard
 * (rank 0 keeps listening in the collectives) and fail the job there.
 */
#define LINGER_MS 250

static int linger(struct btcp_admit *x)
{
	int64_t end = now_ms() + LINGER_MS;
	int ret = accept_some(x, x->cap);

	if (ret && x->dup_rank > 0)
		stop(x);
	while (!ret && busy(x) && now_ms() < end)
		ret = admit_turn(x, end);
	return ret;
}

/*
 * The job is off while ranks are still missing: for up to GRACE_MS, or
 * until each missing rank has asked, answer every authenticated claim
 * with ST_STOPPED, so that a rank arriving now fails at once saying that
 * rank 0 stopped the job, not after its timeout blaming the network.
 * Ranks that start later than that meet a closed port.
 */
#define GRACE_MS 1000

static void grace(struct btcp_admit *x)
{
	int64_t end = now_ms() + GRACE_MS;

	for (;;) {
		int r, untold = 0;

		for (r = 1; r < x->boot->size; r++)
			untold += x->st->pfd_fd[r] < 0 && !x->told[r];
		if (!untold || now_ms() >= end)
			return;
		if (admit_turn(x, end))
			return;	/* the job is off anyway: stop answering */
	}
}

static int max_pending(int size)
{
	const char *v = getenv("HETSGD_BOOT_MAX_PENDING");
	struct rlimit rl;
	int cap = MAX_PENDING, ret;

	if (v) {
		ret = btcp_parse_int("HETSGD_BOOT_MAX_PENDING", v, 1, 1 << 20, &cap);
		if (ret)
			return ret;
	}
	/* Leave descriptors for the ranks and the program; EMFILE is handled anyway. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)cap + (rlim_t)size + 64 > rl.rlim_cur)
		cap = rl.rlim_cur > (rlim_t)size + 64 + 8 ? (int)(rl.rlim_cur - (rlim_t)size - 64) : 8;
	return cap;
}

/* Rank 0's admission state with its limits from the environment, listening; NULL on error. */
static struct btcp_admit *admit_new(struct hetsgd_boot *boot, struct tcp_state *st, const uint8_t key[16],
				    const struct rendezvous *rv, int timeout_s, int *err)
{
	struct btcp_admit *x = calloc(1, sizeof(*x));
	const char *v;
	int i, backlog, size = boot->size;

	*err = -ENOMEM;
	if (!x)
		return NULL;
	*x = (struct btcp_admit){ .boot = boot, .st = st, .rv = *rv, .lfd = -1, .t0 = now_ms(),
				  .handshake_ms = HANDSHAKE_MS, .per_source = PER_SOURCE };
	memcpy(x->key, key, sizeof(x->key));
	v = getenv("HETSGD_BOOT_HANDSHAKE_MS");
	*err = v ? btcp_parse_int("HETSGD_BOOT_HANDSHAKE_MS", v, 10, 600000, &x->handshake_ms) : 0;
	v = getenv("HETSGD_BOOT_PER_SOURCE");
	if (!*err && v)
		*err = btcp_parse_int("HETSGD_BOOT_PER_SOURCE", v, 1, 1 << 20, &x->per_source);
	if (x->handshake_ms > timeout_s * 1000)
		x->handshake_ms = timeout_s * 1000;
	x->cap = *err ? 0 : max_pending(size);
	if (x->cap < 0)
		*err = x->cap;
	if (*err) {
		btcp_admit_close(x);
		return NULL;
	}
	x->conns = calloc((size_t)x->cap, sizeof(*x->conns));
	x->slot = calloc((size_t)x->cap + 1, sizeof(*x->slot));
	x->told = calloc((size_t)size, 1);
	/* The collectives poll the peers and then the admission: room for both. */
	free(st->pfd);
	st->pfd = calloc((size_t)size + (size_t)x->cap + 1, sizeof(*st->pfd));
	if (!x->conns || !x->slot || !x->told || !st->pfd) {
		btcp_admit_close(x);
		*err = hetsgd_err(-ENOMEM, "tcp bootstrap: out of memory for %d pending connections: "
				  "lower HETSGD_BOOT_MAX_PENDING", x->cap);
		return NULL;
	}
	for (i = 0; i < x->cap; i++) {
		x->conns[i].state = CS_FREE;
		x->conns[i].fd = -1;
	}
	/* Room for the ranks and a flood in the kernel's queue: its overflow drops ranks' SYNs too. */
	backlog = size + x->cap + 16 < 65535 ? size + x->cap + 16 : 65535;
	*err = btcp_root_listen(rv, backlog, &x->lfd);
	if (*err) {
		btcp_admit_close(x);
		return NULL;
	}
	return x;
}

/*
 * The last word on the rendezvous' refusals: its totals (the handshakes
 * still under way count when it failed); later refusals start afresh.
 */
static void rendezvous_summary(struct btcp_admit *x, int ret)
{
	char line[1536], body[1400];
	unsigned sum = 0;
	int i;

	for (i = 0; ret && i < x->cap; i++)
		if (x->conns[i].state == CS_HELLO || x->conns[i].state == CS_PROOF)
			refuse(x, &x->conns[i], RF_LATE, "the rendezvous failed");
	for (i = 0; i < RF_COUNT; i++)
		sum += x->rf.total[i];
	if (!sum)
		return;
	btcp_refusals_format(&x->rf, 0, body, sizeof(body));
	snprintf(line, sizeof(line), "tcp bootstrap: rendezvous %s after %.1f s; refused %u "
		 "connection%s in all: %s", ret ? "failed" : "complete",
		 (double)(now_ms() - x->t0) / 1000.0, sum, sum == 1 ? "" : "s", body);
	btcp_emit_line(line);
	btcp_refusals_window(&x->rf, now_ms());
}

int btcp_root_open(struct hetsgd_boot *boot, struct tcp_state *st, const uint8_t key[16],
		   const struct rendezvous *rv, int timeout_s)
{
	int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
	struct btcp_admit *x;
	int ret;

	if (rv->from_slurm) {
		const char *me = getenv("SLURMD_NODENAME");

		if (me && strcmp(me, rv->host))
			return hetsgd_err(-EADDRNOTAVAIL,
					  "rank 0 runs on node %s, but the other ranks will look for it on %s, the first node of "
					  "the Slurm node list: use srun's default task distribution, or set HETSGD_RENDEZVOUS=host:port "
					  "to rank 0's host on every rank", me, rv->host);
	}
	x = admit_new(boot, st, key, rv, timeout_s, &ret);
	if (!x)
		return ret;
	while (!ret && x->joined < boot->size - 1)
		ret = now_ms() >= deadline ? btcp_timeout_err(&x->rf, st, boot->size, rv, x->accepted, timeout_s)
					   : admit_turn(x, deadline);
	if (!ret)
		ret = linger(x);
	if (ret && x->stopped) {
		char msg[1024];

		snprintf(msg, sizeof(msg), "%s", hetsgd_errmsg());	/* grace() may log over it */
		grace(x);
		hetsgd_err(ret, "%s", msg);
	}
	rendezvous_summary(x, ret);
	if (ret) {
		btcp_admit_close(x);
		return ret;
	}
	st->adm = x;
	btcp_admit_pause(x);
	return 0;
}

void btcp_admit_pause(struct btcp_admit *x)
{
	if (x && !x->away_since)
		x->away_since = now_ms();
}

void btcp_admit_close(struct btcp_admit *x)
{
	int i;

	if (!x)
		return;
	for (i = 0; x->conns && i < x->cap; i++)
		if (x->conns[i].state == CS_HELLO || x->conns[i].state == CS_PROOF)
			refuse(x, &x->conns[i], RF_LATE, "rank 0 closed the bootstrap");
	if (x->rf.win_sum)
		btcp_refusals_flush(&x->rf, now_ms());	/* nothing counted goes unsaid */
	if (x->lfd >= 0)
		close(x->lfd);
	memset(x->key, 0, sizeof(x->key));
	free(x->conns);
	free(x->slot);
	free(x->told);
	free(x);
}
