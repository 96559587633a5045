/*
 * shm provider: the same one-sided semantics between processes of one host.
 *
 * Every rank creates one POSIX shared-memory segment per sender, holding
 * the ring that sender writes into, and each sender maps only the rings
 * meant for it: a rank that goes wrong can scribble over its own rings
 * and nothing else (not another peer's slots, not another peer's credit
 * words).  A sender copies a block into its ring, records length and
 * kind, then publishes it with a release-store of its `written` counter
 * (the doorbell).  The receiver's progress acquire-loads `written`, checks
 * it against what the credits allow, and copies the block out before
 * anyone looks at it (tp_recv_landed); its release-stores of `released`
 * are the credits.  Each counter has one writer and its own cache line.
 * Segments are unlinked as soon as every rank has mapped them, so a crash
 * leaves nothing behind in /dev/shm.
 *
 * Close: a sender says bye by a release-store of 1 into a word of its
 * own in the header page of the segment it writes into (SEG_BYE_OFF);
 * puts are completed copies, so nothing of its can follow.  Nothing in
 * shm needs the farewell for safety (a segment outlives every mapping of
 * it), but it keeps close's meaning the same on every provider: a rank
 * leaves once every live peer is done with it.
 *
 * A peer's death: there is no connection to break, so each rank watches
 * its peers' processes.  The pids are exchanged at open; each is held as
 * a pidfd (pidfd_open), which turns readable when that process ends (a
 * zombie counts: it will never write again), and one poll() over all of
 * them runs from progress at most every WATCH_S seconds.  Without
 * pidfds (kernels before 5.3) kill(pid, 0) and the state in
 * /proc/PID/stat stand in, one call each per peer.  Only the process's
 * end counts, never silence: a peer that is slow or descheduled stays up.
 * A peer whose pid this rank cannot see at open (another pid namespace)
 * is not watched; its death then shows only as silence.
 *
 * What this isolation is worth: ranks on one host run as one user, who
 * can reach any of them through ptrace or /proc/PID/mem; it contains a
 * rank that goes wrong, not a hostile process of the same user.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hetsgd_topology.h"
#include "transport_priv.h"

#define SHM_MAGIC 0x6865747367647368ull	/* "hetsgdsh" */
#define SHM_VERSION 3u		/* 3: the bye word */
#define CACHELINE 64u
#define PAGE 4096u
#define SEG_HDR_BYTES PAGE
#define SEG_BYE_OFF (2 * CACHELINE)	/* in the header page: the sender's bye */
#define WATCH_S 0.1		/* seconds between looks at the peers' processes */
#define WATCH_EVERY 32u		/* progress calls between looks at the clock */

struct seg_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t receiver;
	uint32_t sender;
	uint32_t slots;
	uint64_t slot_bytes;
};

struct slot_meta {
	uint32_t len;
	uint32_t kind;
};

struct shm_state {
	uint64_t token;
	size_t ring_bytes, meta_off, data_off, seg_bytes;
	char **in;		/* in[s]: the ring s writes into here (our segment) */
	char **out;		/* out[r]: our ring in rank r's segment for us */
	uint64_t *sent;		/* puts made to each peer */
	/* the peers' processes: pid, pidfd (-1: kill/proc fallback, -2: not
	 * watched), when to look next */
	int64_t *pid;
	int *pidfd;
	struct pollfd *pfd;
	uint32_t watch_countdown;
	double next_watch;
};

/* What each rank contributes at open. */
struct shm_hello {
	uint64_t token;		/* rank 0's names this job's segments */
	int64_t pid;
};

static size_t round_up(size_t x, size_t a)
{
	return (x + a - 1) / a * a;
}

/* The ring inside a segment. */
static char *ring(char *seg)
{
	return seg + SEG_HDR_BYTES;
}

static uint64_t *ring_written(char *r) { return (uint64_t *)r; }
static uint64_t *ring_released(char *r) { return (uint64_t *)(r + CACHELINE); }

static struct slot_meta *ring_meta(struct shm_state *st, char *r)
{
	return (struct slot_meta *)(r + st->meta_off);
}

static char *ring_slot(struct shm_state *st, struct hetsgd_tp *tp, char *r, uint32_t slot)
{
	return r + st->data_off + (size_t)slot * tp->attr.slot_bytes;
}

static void seg_name(char *buf, size_t len, uint64_t token, int receiver, int sender)
{
	snprintf(buf, len, "/hetsgd-%016" PRIx64 "-%d-%d", token, receiver, sender);
}

static void unmap_set(struct hetsgd_tp *tp, struct shm_state *st, char **set)
{
	int r;

	for (r = 0; set && r < tp->size; r++)
		if (set[r])
			munmap(set[r], st->seg_bytes);
}

/* Create the segment that sender s writes into; its pages live on our node. */
static int create_ring(struct hetsgd_tp *tp, struct shm_state *st, int s)
{
	char name[64];
	struct seg_hdr *h;
	void *p;
	int fd, ret;

	seg_name(name, sizeof(name), st->token, tp->rank, s);
	fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (fd < 0)
		return hetsgd_err(-errno, "shm_open(%s): %s: is /dev/shm mounted and writable?",
				  name, strerror(errno));
	if (ftruncate(fd, (off_t)st->seg_bytes)) {
		ret = -errno;
		hetsgd_err(ret, "ftruncate of %s to %zu bytes: %s", name, st->seg_bytes, strerror(-ret));
		goto unlink;
	}
	p = mmap(NULL, st->seg_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		hetsgd_err(ret, "mmap of %zu bytes of shared memory: %s", st->seg_bytes, strerror(-ret));
		goto unlink;
	}
	/* The rings are read here: their pages belong on this rank's node. */
	ret = hetsgd_topo_bind_memory(p, st->seg_bytes, tp->attr.numa_node);
	if (ret) {
		hetsgd_err(ret, "shm transport: %s", hetsgd_topo_errmsg());
		goto unmap;
	}
	/* Reserve now: a short /dev/shm must fail here, not SIGBUS later. */
	ret = -posix_fallocate(fd, 0, (off_t)st->seg_bytes);
	if (ret) {
		hetsgd_err(ret,
			   "cannot reserve %zu KiB in /dev/shm for rank %d's staging ring from rank %d (%s): "
			   "free or enlarge /dev/shm (mount -o remount,size=..., or docker --shm-size), "
			   "or use fewer/smaller slots",
			   st->seg_bytes >> 10, tp->rank, s, strerror(-ret));
		goto unmap;
	}
	close(fd);
	h = p;
	h->version = SHM_VERSION;
	h->receiver = (uint32_t)tp->rank;
	h->sender = (uint32_t)s;
	h->slots = tp->attr.slots;
	h->slot_bytes = tp->attr.slot_bytes;
	__atomic_store_n(&h->magic, SHM_MAGIC, __ATOMIC_RELEASE);
	st->in[s] = p;
	return 0;

unmap:
	munmap(p, st->seg_bytes);
unlink:
	close(fd);
	shm_unlink(name);
	return ret;
}

/* Map the ring that rank r created for us, and nothing else of r's. */
static int map_ring(struct hetsgd_tp *tp, struct shm_state *st, int r)
{
	char name[64];
	struct stat sb;
	struct seg_hdr *h;
	void *p;
	int fd;

	seg_name(name, sizeof(name), st->token, r, tp->rank);
	fd = shm_open(name, O_RDWR, 0);
	if (fd < 0)
		return hetsgd_err(-errno, "shm_open(%s) of rank %d: %s: do all ranks run on this host as the same user?",
				  name, r, strerror(errno));
	if (fstat(fd, &sb)) {
		int e = errno;

		close(fd);
		return hetsgd_err(-e, "fstat of rank %d's segment %s: %s", r, name, strerror(e));
	}
	if ((size_t)sb.st_size != st->seg_bytes) {
		close(fd);
		return hetsgd_err(-EPROTO, "rank %d's segment is %lld bytes, expected %zu: "
				  "all ranks must open the transport with the same slots and slot_bytes",
				  r, (long long)sb.st_size, st->seg_bytes);
	}
	/* Map the pages now: a first put must not pay a fault per page. */
	p = mmap(NULL, st->seg_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return hetsgd_err(-errno, "mmap of rank %d's segment: %s", r, strerror(errno));
	st->out[r] = p;
	h = p;
	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != SHM_MAGIC || h->version != SHM_VERSION ||
	    h->receiver != (uint32_t)r || h->sender != (uint32_t)tp->rank || h->slots != tp->attr.slots ||
	    h->slot_bytes != tp->attr.slot_bytes)
		return hetsgd_err(-EPROTO,
				  "rank %d's segment for rank %d has version %u, ring %u<-%u, %u slots of %llu bytes; "
				  "expected version %u, %u slots of %zu bytes: run the same build and settings on every rank",
				  r, tp->rank, h->version, h->receiver, h->sender, h->slots,
				  (unsigned long long)h->slot_bytes, SHM_VERSION, tp->attr.slots, tp->attr.slot_bytes);
	return 0;
}

/* Hold each peer's process as a pidfd, or fall back to kill(pid, 0). */
static void watch_open(struct hetsgd_tp *tp, struct shm_state *st)
{
	for (int r = 0; r < tp->size; r++) {
		st->pidfd[r] = -2;
		if (!tp_is_peer(tp, r) || st->pid[r] <= 0)
			continue;
#ifdef SYS_pidfd_open
		st->pidfd[r] = (int)syscall(SYS_pidfd_open, (pid_t)st->pid[r], 0);
		if (st->pidfd[r] >= 0)
			continue;
#endif
		/* every peer was alive at the allgather: ESRCH means that its
		 * pid is not ours to see (another pid namespace) */
		st->pidfd[r] = kill((pid_t)st->pid[r], 0) == 0 || errno == EPERM ? -1 : -2;
	}
}

/* Whether pid has ended, without a pidfd: gone, or a zombie. */
static int pid_ended(int64_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	int ended = 0;

	if (kill((pid_t)pid, 0) && errno == ESRCH)
		return 1;
	snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	/* "pid (comm) S ...": the state follows the last ')' */
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ')
		ended = p[2] == 'Z' || p[2] == 'X';
	fclose(f);
	return ended;
}

/* At most every WATCH_S: report the peers whose process has ended. */
static void watch_peers(struct hetsgd_tp *tp, struct shm_state *st)
{
	double now;
	nfds_t n = 0;
	int r;

	if (++st->watch_countdown < WATCH_EVERY)
		return;
	st->watch_countdown = 0;
	now = hetsgd_clock_s();
	if (now < st->next_watch)
		return;
	st->next_watch = now + WATCH_S;
	for (r = 0; r < tp->size; r++) {
		if (r == tp->rank || tp->down[r] || st->pidfd[r] == -2)
			continue;
		if (st->pidfd[r] >= 0) {
			st->pfd[n].fd = st->pidfd[r];
			st->pfd[n].events = POLLIN;
			st->pfd[n++].revents = 0;
		} else if (pid_ended(st->pid[r])) {
			tp_peer_down(tp, r, "rank %d (process %lld) has ended: it exited or was killed",
				     r, (long long)st->pid[r]);
		}
	}
	if (!n || poll(st->pfd, n, 0) <= 0)
		return;
	for (nfds_t i = 0; i < n; i++) {
		if (!st->pfd[i].revents)
			continue;
		for (r = 0; r < tp->size; r++)
			if (st->pidfd[r] == st->pfd[i].fd)
				tp_peer_down(tp, r, "rank %d (process %lld) has ended: it exited or was killed",
					     r, (long long)st->pid[r]);
	}
}

static void shm_free(struct hetsgd_tp *tp, struct shm_state *st)
{
	for (int r = 0; st->pidfd && r < tp->size; r++)
		if (st->pidfd[r] >= 0)
			close(st->pidfd[r]);
	free(st->pidfd);
	free(st->pid);
	free(st->pfd);
	unmap_set(tp, st, st->in);
	unmap_set(tp, st, st->out);
	free(st->in);
	free(st->out);
	free(st->sent);
	free(st);
}

static int shm_open_tp(struct hetsgd_tp *tp)
{
	struct shm_state *st = calloc(1, sizeof(*st));
	struct shm_hello mine = { .pid = getpid() }, *hello = NULL;
	char name[64];
	int ret, r;

	if (!st)
		return hetsgd_err(-ENOMEM, "out of memory");
	/*
	 * Slots start on page boundaries (when slot_bytes is a multiple of the
	 * page size), as the send buffers do: a copy whose source and
	 * destination differ by a few hundred bytes modulo 4 KiB runs into
	 * 4K aliasing and loses up to half its bandwidth.
	 */
	st->meta_off = 2 * CACHELINE;
	st->data_off = round_up(st->meta_off + tp->attr.slots * sizeof(struct slot_meta), PAGE);
	st->ring_bytes = round_up(st->data_off + (size_t)tp->attr.slots * tp->attr.slot_bytes, PAGE);
	st->seg_bytes = SEG_HDR_BYTES + st->ring_bytes;
	st->in = calloc((size_t)tp->size, sizeof(char *));
	st->out = calloc((size_t)tp->size, sizeof(char *));
	st->sent = calloc((size_t)tp->size, sizeof(uint64_t));
	st->pid = calloc((size_t)tp->size, sizeof(int64_t));
	st->pidfd = calloc((size_t)tp->size, sizeof(int));
	st->pfd = calloc((size_t)tp->size, sizeof(struct pollfd));
	hello = calloc((size_t)tp->size, sizeof(*hello));
	ret = (!st->in || !st->out || !st->sent || !st->pid || !st->pidfd || !st->pfd || !hello)
		? hetsgd_err(-ENOMEM, "out of memory") : 0;
	for (r = 0; st->pidfd && r < tp->size; r++)
		st->pidfd[r] = -2;

	/* Rank 0's random token names this job's segments. */
	if (!ret && getrandom(&mine.token, sizeof(mine.token), 0) != sizeof(mine.token))
		ret = hetsgd_err(-errno, "getrandom: %s", strerror(errno));
	if (hetsgd_boot_allgather(tp->boot, &mine, hello ? hello : &mine,
				  hello ? sizeof(mine) : 0)) {
		ret = ret ? ret : -EIO;
		goto fail;
	}
	if (hello) {
		st->token = hello[0].token;
		for (r = 0; r < tp->size; r++)
			st->pid[r] = hello[r].pid;
	}
	/* Only the pattern's pairs: no segment between ranks that never talk. */
	for (r = 0; !ret && r < tp->size; r++)
		if (tp_is_peer(tp, r))
			ret = create_ring(tp, st, r);
	ret = tp_agree(tp, ret, "create its shared-memory rings");
	for (r = 0; !ret && r < tp->size; r++)
		if (tp_is_peer(tp, r))
			ret = map_ring(tp, st, r);
	ret = tp_agree(tp, ret, "map its rings in its peers' shared memory");
	for (r = 0; st->in && r < tp->size; r++)
		if (st->in[r]) {
			seg_name(name, sizeof(name), st->token, tp->rank, r);
			shm_unlink(name);
		}
	if (ret)
		goto fail;
	free(hello);
	watch_open(tp, st);
	tp->priv = st;
	/* counted from what exists, not from the pattern */
	for (r = 0; r < tp->size; r++)
		tp->fp_conns += st->in[r] != NULL;
	tp->fp_registered = (uint64_t)tp->fp_conns * st->seg_bytes + (uint64_t)tp->attr.tx_bufs * tp->attr.slot_bytes;
	snprintf(tp->desc, sizeof(tp->desc),
		 "shm: %d ranks, %d peers (%s), %u slots of %zu bytes per peer, one %zu KiB segment per ring",
		 tp->size, tp->npeers, hetsgd_tp_pattern_name(tp->attr.pattern), tp->attr.slots,
		 tp->attr.slot_bytes, st->seg_bytes >> 10);
	return hetsgd_boot_barrier(tp->boot) ? -EIO : 0;

fail:
	free(hello);
	shm_free(tp, st);
	return ret;
}

static int shm_put(struct hetsgd_tp *tp, int peer, struct tp_tx *tx, size_t len, uint8_t kind,
		   int more __attribute__((unused)))
{
	struct shm_state *st = tp->priv;
	char *r = ring(st->out[peer]);
	uint64_t rel = __atomic_load_n(ring_released(r), __ATOMIC_ACQUIRE);
	uint32_t slot;

	if (rel > st->sent[peer])
		return hetsgd_err(-EPROTO, "rank %d released %llu blocks of ours but we sent %llu",
				  peer, (unsigned long long)rel, (unsigned long long)st->sent[peer]);
	if (st->sent[peer] - rel >= tp->attr.slots)
		return tp_wait(tp, peer, TP_WAIT_CREDIT);
	slot = (uint32_t)(st->sent[peer] % tp->attr.slots);
	memcpy(ring_slot(st, tp, r, slot), tx->pub.data, len);
	ring_meta(st, r)[slot].len = (uint32_t)len;
	ring_meta(st, r)[slot].kind = kind;
	st->sent[peer]++;
	__atomic_store_n(ring_written(r), st->sent[peer], __ATOMIC_RELEASE);
	/* The copy is done: the source buffer is free again at once. */
	tp_put_completed(tp, peer, tx, kind);
	return 0;
}

static int shm_progress(struct hetsgd_tp *tp)
{
	struct shm_state *st = tp->priv;
	int s, ret;

	watch_peers(tp, st);
	for (s = 0; s < tp->size; s++) {
		char *r;
		uint64_t w;

		/* nothing from a peer may follow its PEER_DOWN: its ring is not read */
		if (!tp_is_peer(tp, s) || tp->down[s])
			continue;
		r = ring(st->in[s]);
		w = __atomic_load_n(ring_written(r), __ATOMIC_ACQUIRE);
		if (w < tp->recvd[s] || w - tp->rel_head[s] > tp->attr.slots)
			return hetsgd_err(-EPROTO,
					  "rank %d's ring here says %llu blocks written; %llu received and %llu released "
					  "allow at most %u: the peer broke the credit protocol",
					  s, (unsigned long long)w, (unsigned long long)tp->recvd[s],
					  (unsigned long long)tp->rel_head[s], tp->attr.slots);
		while (tp->recvd[s] < w) {
			uint32_t slot = (uint32_t)(tp->recvd[s] % tp->attr.slots);
			struct slot_meta *sm = &ring_meta(st, r)[slot], m;

			/* Read once: the sender can change them under us. */
			m.len = __atomic_load_n(&sm->len, __ATOMIC_RELAXED);
			m.kind = __atomic_load_n(&sm->kind, __ATOMIC_RELAXED);

			if (m.kind > 255)
				return hetsgd_err(-EPROTO, "rank %d wrote kind %u (> 255)", s, m.kind);
			ret = tp_recv_landed(tp, s, slot, ring_slot(st, tp, r, slot), m.len, (uint8_t)m.kind);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int shm_release(struct hetsgd_tp *tp, int peer, uint32_t slot)
{
	struct shm_state *st = tp->priv;
	int64_t head = tp_release_slot(tp, peer, slot);

	if (head < 0)
		return (int)head;
	__atomic_store_n(ring_released(ring(st->in[peer])), (uint64_t)head,
			 __ATOMIC_RELEASE);
	return 0;
}

static int shm_quiesce(struct hetsgd_tp *tp)
{
	(void)tp;
	return 0;	/* every put is a completed copy */
}

static uint64_t *bye_word(char *seg)
{
	return (uint64_t *)(seg + SEG_BYE_OFF);
}

static int shm_bye(struct hetsgd_tp *tp, int peer)
{
	struct shm_state *st = tp->priv;

	__atomic_store_n(bye_word(st->out[peer]), 1, __ATOMIC_RELEASE);
	tp_bye_sent(tp, peer);
	return 0;
}

static int shm_farewell(struct hetsgd_tp *tp)
{
	struct shm_state *st = tp->priv;

	/* the farewell loop sleeps between calls: look at the peers each time */
	st->watch_countdown = WATCH_EVERY;
	st->next_watch = 0;
	watch_peers(tp, st);
	for (int s = 0; s < tp->size; s++)
		if (tp_is_peer(tp, s) && !tp->down[s] && __atomic_load_n(bye_word(st->in[s]), __ATOMIC_ACQUIRE))
			tp_bye_landed(tp, s);
	return 0;
}

static void shm_close(struct hetsgd_tp *tp)
{
	struct shm_state *st = tp->priv;

	if (!st)
		return;
	shm_free(tp, st);
	tp->priv = NULL;
}

#ifdef HETSGD_TEST_HOOKS
static int shm_test_write(struct hetsgd_tp *tp, int peer, int target, int victim, uint32_t slot,
			  size_t off, const void *data, size_t len)
{
	struct shm_state *st = tp->priv;
	char *r = ring(st->out[peer]);

	(void)victim;
	switch (target) {
	case TP_TEST_SLOT:
		memcpy(ring_slot(st, tp, r, slot) + off, data, len);
		return 0;
	case TP_TEST_REPLAY:
		/* One more doorbell than the credits allow. */
		__atomic_store_n(ring_written(r), st->sent[peer] + tp->attr.slots, __ATOMIC_RELEASE);
		return 0;
	default:
		/* Another rank's ring at peer is not mapped in this process. */
		return -EACCES;
	}
}
#define SHM_TEST_WRITE shm_test_write
#else
#define SHM_TEST_WRITE NULL
#endif

const struct tp_provider hetsgd_tp_shm = {
	.name = "shm",
	.what = "one host",
	.open = shm_open_tp,
	.put = shm_put,
	.progress = shm_progress,
	.release = shm_release,
	.quiesce = shm_quiesce,
	.bye = shm_bye,
	.farewell = shm_farewell,
	.close = shm_close,
	.test_write = SHM_TEST_WRITE,
};
