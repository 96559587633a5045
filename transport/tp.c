/*
 * Transport front end: attributes, send-buffer pool, the receive-side
 * slot bookkeeping shared by every provider, and the event FIFO.
 *
 * Credits: a sender may write slot (n mod slots) of a peer's ring only when
 * the peer has released the first n - slots + 1 blocks.  Releases may come
 * in any order, so the receiver reports the length of the *contiguous*
 * released prefix: a slot released early is reported once every older one
 * is released too, and no slot the caller still holds is ever reused.
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hetsgd_topology.h"
#include "transport_priv.h"

#define DEFAULT_SLOT_BYTES ((size_t)64 * 1024 + 64)
#define DEFAULT_SLOTS 8u
/*
 * verbs: the ring left open is sized from the device at open
 * (tp_verbs_depth.c, agree_depth() below); this is what checks see before
 * that, and the rule's floor: the send window and the credit batch take a
 * quarter of the ring each (tp_verbs.c), half is left for the receiver's
 * lag; with 8 slots the soft-RoCE bed's receiver fell behind by more than
 * that now and then (3 credit waits in 300 puts of 64 KiB), with 16 never.
 */
#define DEFAULT_SLOTS_VERBS 16u
#define MAX_SLOTS 4096u		/* the immediate has 16 bits for the slot */
#define MAX_SLOT_BYTES ((size_t)1 << 30)

/* Every provider, by its enum value: the only place that lists them. */
static const struct tp_provider *const providers[] = {
	[HETSGD_PROV_SHM] = &hetsgd_tp_shm,
	[HETSGD_PROV_VERBS] = &hetsgd_tp_verbs,
};
#define NPROV (sizeof(providers) / sizeof(providers[0]))

static const struct tp_provider *provider_of(enum hetsgd_provider prov)
{
	return (unsigned)prov < NPROV ? providers[prov] : NULL;
}

int hetsgd_provider_parse(const char *name, enum hetsgd_provider *prov)
{
	char known[128] = "";

	for (unsigned i = 0; i < NPROV; i++) {
		if (!providers[i])
			continue;
		if (name && !strcmp(name, providers[i]->name)) {
			*prov = (enum hetsgd_provider)i;
			return 0;
		}
		snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s (%s)",
			 *known ? " or " : "", providers[i]->name, providers[i]->what);
	}
	return hetsgd_err(-EINVAL, "unknown provider '%s': use %s", name ? name : "(null)", known);
}

const char *hetsgd_provider_name(enum hetsgd_provider prov)
{
	const struct tp_provider *p = provider_of(prov);

	return p ? p->name : "invalid";
}

static const char *const pattern_names[] = {
	[HETSGD_TP_ALL] = "all",
	[HETSGD_TP_STAR] = "star",
};
#define NPATTERN (sizeof(pattern_names) / sizeof(pattern_names[0]))

int hetsgd_tp_pattern_parse(const char *name, enum hetsgd_tp_pattern *pat)
{
	for (unsigned i = 0; i < NPATTERN; i++)
		if (name && !strcmp(name, pattern_names[i])) {
			*pat = (enum hetsgd_tp_pattern)i;
			return 0;
		}
	return hetsgd_err(-EINVAL, "unknown connection pattern '%s': use all (every pair of ranks) "
			  "or star (rank 0 with every rank)", name ? name : "(null)");
}

const char *hetsgd_tp_pattern_name(enum hetsgd_tp_pattern pat)
{
	return (unsigned)pat < NPATTERN ? pattern_names[pat] : "invalid";
}

/* A centre of the star: rank 0 and the last hubs - 1 ranks. */
static int pattern_hub(const struct hetsgd_tp_attr *a, int size, int r)
{
	return r == 0 || (a->hubs > 1 && r >= size - (int)(a->hubs - 1));
}

/* The pattern's rule: symmetric in (a, b), so both ends agree. */
static int pattern_pairs(const struct hetsgd_tp_attr *at, int size, int a, int b)
{
	if (a == b)
		return 0;
	return at->pattern == HETSGD_TP_ALL || pattern_hub(at, size, a) || pattern_hub(at, size, b);
}

void hetsgd_tp_attr_init(struct hetsgd_tp_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	attr->provider = HETSGD_PROV_SHM;
	attr->slot_bytes = DEFAULT_SLOT_BYTES;
	attr->slots = 0;	/* the provider's default, resolved at open */
	attr->tx_bufs = 0;
	attr->verbs.gid_index = -1;
	attr->numa_node = -1;
}

void *tp_alloc(const struct hetsgd_tp *tp, size_t bytes)
{
	return hetsgd_topo_alloc(tp->attr.numa_node, bytes);
}

void tp_free(void *p, size_t bytes)
{
	hetsgd_topo_free(p, bytes);
}

void tp_evq_push(struct hetsgd_tp *tp, const struct hetsgd_ev *ev)
{
	uint32_t tail = (tp->evq_head + tp->evq_len) % tp->evq_cap;

	tp->evq[tail] = *ev;
	tp->evq_len++;
}

void tp_peer_down(struct hetsgd_tp *tp, int peer, const char *fmt, ...)
{
	struct hetsgd_ev ev = { .type = HETSGD_EV_PEER_DOWN, .peer = peer };
	va_list ap;

	if (!tp_is_peer(tp, peer) || tp->down[peer])
		return;
	tp->down[peer] = 1;
	va_start(ap, fmt);
	vsnprintf(tp->down_why[peer], sizeof(tp->down_why[peer]), fmt, ap);
	va_end(ap);
	ev.why = tp->down_why[peer];
	tp_evq_push(tp, &ev);
}

int hetsgd_tp_peer_up(const struct hetsgd_tp *tp, int peer)
{
	return tp_is_peer(tp, peer) && !tp->down[peer];
}

int hetsgd_tp_is_peer(const struct hetsgd_tp *tp, int peer)
{
	return tp && tp_is_peer(tp, peer);
}

int hetsgd_tp_get_footprint(const struct hetsgd_tp *tp, struct hetsgd_tp_footprint *fp)
{
	if (!tp || !fp)
		return hetsgd_err(-EINVAL, "hetsgd_tp_get_footprint: NULL endpoint or output");
	fp->peers = (uint32_t)tp->npeers;
	fp->conns = tp->fp_conns;
	fp->registered_bytes = tp->fp_registered;
	fp->connect_s = tp->connect_s;
	return 0;
}

int tp_recv_landed(struct hetsgd_tp *tp, int peer, uint32_t slot,
		   const void *data, size_t len, uint8_t kind)
{
	uint32_t expect = (uint32_t)(tp->recvd[peer] % tp->attr.slots);
	struct hetsgd_ev ev = { .type = HETSGD_EV_RECV, .peer = peer, .kind = kind,
				.slot = slot, .data = data, .len = len };

	/* A peer that skips or reuses a slot breaks the credit protocol. */
	if (slot != expect || tp->held[(size_t)tp->pidx[peer] * tp->attr.slots + slot])
		return hetsgd_err(-EPROTO,
				  "rank %d wrote slot %u of its ring here, expected slot %u%s: "
				  "the peers run incompatible transports or memory was corrupted",
				  peer, slot, expect,
				  tp->held[(size_t)tp->pidx[peer] * tp->attr.slots + slot] ? " (still held)" : "");
	if (len > tp->attr.slot_bytes)
		return hetsgd_err(-EPROTO, "rank %d wrote %zu bytes into a %zu-byte slot",
				  peer, len, tp->attr.slot_bytes);
	tp->held[(size_t)tp->pidx[peer] * tp->attr.slots + slot] = 1;
	tp->recvd[peer]++;
	tp->stats.recvs++;
	tp_evq_push(tp, &ev);
	return 0;
}

static void tx_recycle(struct hetsgd_tp *tp, struct tp_tx *tx)
{
	if (!tx->held && !tx->inflight) {
		tx->next_free = tp->tx_free;
		tp->tx_free = tx;
	}
}

void tp_put_completed(struct hetsgd_tp *tp, int peer, struct tp_tx *tx, uint8_t kind)
{
	struct hetsgd_ev ev = { .type = HETSGD_EV_SENT, .peer = peer, .kind = kind,
				.tx = &tx->pub };

	tx->inflight--;
	tp->inflight_puts--;
	tp_evq_push(tp, &ev);
	tx_recycle(tp, tx);
}

int64_t tp_release_slot(struct hetsgd_tp *tp, int peer, uint32_t slot)
{
	uint32_t S = tp->attr.slots;
	uint8_t *held = tp->held + (size_t)tp->pidx[peer] * S;

	if (slot >= S || held[slot] != 1)
		return hetsgd_err(-EINVAL,
				  "release of slot %u from rank %d, which the caller does not hold: "
				  "release each received block exactly once",
				  slot, peer);
	held[slot] = 2;		/* released, waiting for the older ones */
	while (tp->rel_head[peer] < tp->recvd[peer] && held[tp->rel_head[peer] % S] == 2) {
		held[tp->rel_head[peer] % S] = 0;
		tp->rel_head[peer]++;
	}
	return (int64_t)tp->rel_head[peer];
}

int tp_agree(struct hetsgd_tp *tp, int ret, const char *stage)
{
	int *all = calloc((size_t)tp->size, sizeof(int)), r, bad = 0;

	if (!all)
		return hetsgd_err(-ENOMEM, "out of memory");
	if (hetsgd_boot_allgather(tp->boot, &ret, all, sizeof(int))) {
		free(all);
		return -EIO;
	}
	for (r = 0; r < tp->size && !bad; r++) {
		bad = all[r];
		if (bad && r != tp->rank && !ret)
			hetsgd_err(bad, "%s transport: rank %d failed to %s (%s); see that rank's message",
				   tp->prov->name, r, stage, strerror(-bad));
	}
	free(all);
	return ret ? ret : bad;
}

static int check_attr(const struct hetsgd_tp_attr *a)
{
	if (!provider_of(a->provider))
		return hetsgd_err(-EINVAL, "transport provider %d is not one of hetsgd_provider_parse()'s",
				  (int)a->provider);
	if (a->slots < 1 || a->slots > MAX_SLOTS)
		return hetsgd_err(-EINVAL, "%u slots per peer: use 1 to %u", a->slots, MAX_SLOTS);
	if (a->slot_bytes < 64 || a->slot_bytes > MAX_SLOT_BYTES || a->slot_bytes % 64)
		return hetsgd_err(-EINVAL,
				  "slot size %zu bytes: use a multiple of 64 between 64 and %zu",
				  a->slot_bytes, MAX_SLOT_BYTES);
	if (a->tx_bufs < 1 || a->tx_bufs > 65535)
		return hetsgd_err(-EINVAL, "%u send buffers: use 1 to 65535", a->tx_bufs);
	if ((unsigned)a->pattern >= NPATTERN)
		return hetsgd_err(-EINVAL, "connection pattern %d is not one of hetsgd_tp_pattern_parse()'s",
				  (int)a->pattern);
	if (a->hubs > 65535)
		return hetsgd_err(-EINVAL, "%u hubs: use 1 to 65535", a->hubs);
	if (a->hubs > 1 && a->pattern != HETSGD_TP_STAR)
		return hetsgd_err(-EINVAL, "%u hubs apply to the star pattern, not %s: drop hubs or open a star",
				  a->hubs, hetsgd_tp_pattern_name(a->pattern));
	if (a->numa_node < -1)
		return hetsgd_err(-EINVAL, "NUMA node %d: use a node of hetsgd_topo_plan(), or -1 for anywhere",
				  a->numa_node);
	return 0;
}

/* The send buffers' free list, the receive copies and the event queue;
 * what was allocated is freed by the caller's unwinding. */
static int alloc_bookkeeping(struct hetsgd_tp *tp)
{
	uint32_t i;
	int r;

	tp->pidx = calloc((size_t)tp->size, sizeof(int));
	if (!tp->pidx)
		return hetsgd_err(-ENOMEM, "out of memory");
	for (r = 0; r < tp->size; r++)
		tp->pidx[r] = pattern_pairs(&tp->attr, tp->size, tp->rank, r) ? tp->npeers++ : -1;
	tp->txs = calloc(tp->attr.tx_bufs, sizeof(*tp->txs));
	tp->recvd = calloc((size_t)tp->size, sizeof(uint64_t));
	tp->rel_head = calloc((size_t)tp->size, sizeof(uint64_t));
	tp->held = calloc((size_t)tp->npeers * tp->attr.slots + 1, 1);
	tp->down = calloc((size_t)tp->size, 1);
	tp->waiting = calloc((size_t)tp->size, 1);
	tp->down_why = calloc((size_t)tp->size, sizeof(*tp->down_why));
	tp->bye = calloc((size_t)tp->size, 1);
	/* Room for every block that can be outstanding plus every put,
	 * plus one PEER_DOWN per peer. */
	tp->evq_cap = tp_ev_ranks(tp) * tp->attr.slots * 2 + tp->attr.tx_bufs + 16 + tp_ev_ranks(tp);
	tp->evq = calloc(tp->evq_cap, sizeof(*tp->evq));
	if (!tp->txs || !tp->recvd || !tp->rel_head || !tp->held || !tp->evq || !tp->down ||
	    !tp->down_why || !tp->bye || !tp->waiting)
		return hetsgd_err(-ENOMEM, "out of memory for the transport's bookkeeping (%d ranks, %u slots)",
				  tp->size, tp->attr.slots);
	for (i = tp->attr.tx_bufs; i-- > 0;) {
		tp->txs[i].index = i;
		tp->txs[i].pub.data = (char *)tp->tx_mem + (size_t)i * tp->attr.slot_bytes;
		tp->txs[i].pub.cap = tp->attr.slot_bytes;
		tp->txs[i].next_free = tp->tx_free;
		tp->tx_free = &tp->txs[i];
	}
	return 0;
}

/* Undoes alloc_bookkeeping() and the send buffers. */
static void free_bookkeeping(struct hetsgd_tp *tp)
{
	free(tp->evq);
	free(tp->bye);
	free(tp->down_why);
	free(tp->waiting);
	free(tp->down);
	free(tp->held);
	free(tp->rel_head);
	free(tp->recvd);
	free(tp->pidx);
	tp_free(tp->tx_mem, (size_t)tp->attr.tx_bufs * tp->attr.slot_bytes);
	free(tp->txs);
}

/*
 * The ring's depth (collective where the provider has a depth hook).
 * Given (attr.slots), it is the caller's; every rank must give the same,
 * which open checks.  Left open, each rank's provider proposes one from
 * its device (verbs: the bandwidth-delay product, tp_verbs_depth.c) and
 * says the most its device and memory take; the job takes the largest
 * proposal, cut to the smallest cap, so that every rank's ring is the
 * same and fits every device.
 */
static int agree_depth(struct hetsgd_tp *tp, uint32_t asked)
{
	struct { uint32_t asked, want, cap; } mine = { asked, 0, MAX_SLOTS }, *all;
	uint32_t want = 0, cap = MAX_SLOTS, npeers = 0;
	int r, rcap = 0, ret = 0;

	if (!tp->prov->depth) {
		snprintf(tp->depth_why, sizeof(tp->depth_why), "%s", asked ? "given" : "the provider's default");
		return 0;
	}
	for (r = 0; r < tp->size; r++)
		npeers += (uint32_t)pattern_pairs(&tp->attr, tp->size, tp->rank, r);
	if (!asked)
		ret = tp->prov->depth(tp, npeers, &mine.want, &mine.cap, tp->depth_why, sizeof(tp->depth_why));
	if (ret)
		mine.want = 0;	/* tells the others */
	else if (asked)
		snprintf(tp->depth_why, sizeof(tp->depth_why), "given");
	all = calloc((size_t)tp->size, sizeof(*all));
	if (!all)
		return hetsgd_err(-ENOMEM, "out of memory");
	if (hetsgd_boot_allgather(tp->boot, &mine, all, sizeof(mine))) {
		free(all);
		return -EIO;
	}
	for (r = 0; r < tp->size && !ret; r++)
		if (!all[r].asked && !all[r].want)
			ret = hetsgd_err(-EINVAL, "%s transport: rank %d failed to size its ring; see that rank's message",
					 tp->prov->name, r);
	for (r = 0; r < tp->size; r++) {
		if (all[r].asked)
			continue;	/* a rank that gave its own; open's checks compare them */
		if (all[r].want > want)
			want = all[r].want;
		if (all[r].cap < cap) {
			cap = all[r].cap;
			rcap = r;
		}
	}
	free(all);
	if (ret || asked)
		return ret;
	if (want > cap) {
		hetsgd_log(HETSGD_LOG_WARN, "transport", "rank %d: the device asks for %u slots per peer; rank %d's "
			   "device or memory takes at most %u: the ring has %u (see transport/README.md, Pipeline depth)",
			   tp->rank, want, rcap, cap, cap);
		want = cap;
	}
	if (want < 1 || want > MAX_SLOTS)
		want = DEFAULT_SLOTS_VERBS;
	tp->attr.slots = want;
	if (strlen(tp->depth_why) + 32 < sizeof(tp->depth_why))
		snprintf(tp->depth_why + strlen(tp->depth_why), sizeof(tp->depth_why) - strlen(tp->depth_why),
			 "; job: %u", want);
	return 0;
}

/* Collective: every rank must declare the pattern rank 0 declared. */
static int check_pattern(struct hetsgd_tp *tp)
{
	/* the pattern and its hubs in one word: both ends must agree on both */
	int32_t mine = (int32_t)tp->attr.pattern | (int32_t)(tp->attr.hubs > 1 ? tp->attr.hubs << 8 : 0),
		*all = calloc((size_t)tp->size, sizeof(int32_t));
	int ret = 0;

	if (hetsgd_boot_allgather(tp->boot, &mine, all ? all : &mine, all ? sizeof(mine) : 0)) {
		free(all);
		return all ? -EIO : hetsgd_err(-ENOMEM, "out of memory");
	}
	if (!all)
		return hetsgd_err(-ENOMEM, "out of memory");
	for (int r = 1; r < tp->size && !ret; r++)
		if (all[r] != all[0])
			ret = hetsgd_err(-EINVAL, "rank %d opened the transport with connection pattern %s "
					 "(%d hubs), rank 0 with %s (%d hubs): every rank must declare the same pattern",
					 r, hetsgd_tp_pattern_name((enum hetsgd_tp_pattern)(all[r] & 0xff)),
					 all[r] >> 8 ? all[r] >> 8 : 1,
					 hetsgd_tp_pattern_name((enum hetsgd_tp_pattern)(all[0] & 0xff)),
					 all[0] >> 8 ? all[0] >> 8 : 1);
	free(all);
	return ret;
}

int hetsgd_tp_open(struct hetsgd_boot *boot, const struct hetsgd_tp_attr *attr,
		   struct hetsgd_tp **out)
{
	struct hetsgd_tp *tp;
	struct hetsgd_tp_attr a;
	uint32_t asked;
	double t0;
	int ret;

	if (!boot || !out)
		return hetsgd_err(-EINVAL, "hetsgd_tp_open: NULL bootstrap or output");
	hetsgd_tp_attr_init(&a);
	if (attr)
		a = *attr;
	if (!a.slot_bytes)
		a.slot_bytes = DEFAULT_SLOT_BYTES;
	asked = a.slots;
	if (!a.slots)	/* for the checks; the depth is agreed below */
		a.slots = a.provider == HETSGD_PROV_VERBS ? DEFAULT_SLOTS_VERBS : DEFAULT_SLOTS;
	if (!a.tx_bufs)
		a.tx_bufs = 2 * a.slots;
	ret = check_attr(&a);
	if (ret)
		return ret;

	tp = calloc(1, sizeof(*tp));
	if (!tp)
		return hetsgd_err(-ENOMEM, "out of memory");
	tp->boot = boot;
	tp->attr = a;
	tp->rank = hetsgd_boot_rank(boot);
	tp->size = hetsgd_boot_size(boot);
	tp->prov = provider_of(a.provider);
	ret = agree_depth(tp, asked);
	if (ret) {
		free(tp);
		return ret;
	}
	if (!(attr && attr->tx_bufs))
		tp->attr.tx_bufs = 2 * tp->attr.slots;
	a = tp->attr;

	tp->tx_mem = tp_alloc(tp, a.tx_bufs * a.slot_bytes);
	if (!tp->tx_mem) {
		ret = hetsgd_err(errno == EINVAL ? -EINVAL : -ENOMEM,
				 "cannot allocate %u send buffers of %zu bytes: %s",
				 a.tx_bufs, a.slot_bytes, hetsgd_topo_errmsg());
		goto free_mem;
	}
	ret = alloc_bookkeeping(tp);
	if (ret)
		goto free_mem;

	ret = check_pattern(tp);
	if (ret)
		goto free_mem;
	t0 = hetsgd_clock_s();
	ret = tp->prov->open(tp);
	if (ret)
		goto free_mem;
	tp->connect_s = hetsgd_clock_s() - t0;
	/* device, address, GID index and MTU: what a cluster user checks first */
	hetsgd_log(HETSGD_LOG_INFO, "transport", "open: %s", tp->desc);
	*out = tp;
	return 0;

free_mem:
	free_bookkeeping(tp);
	free(tp);
	return ret;
}

/* Every peer has said bye and taken ours, or is down. */
static int farewell_done(const struct hetsgd_tp *tp)
{
	for (int r = 0; r < tp->size; r++)
		if (tp_is_peer(tp, r) && !tp->down[r] &&
		    (tp->bye[r] & (TP_BYE_IN | TP_BYE_SENT)) != (TP_BYE_IN | TP_BYE_SENT))
			return 0;
	return 1;
}

/*
 * Close's rendezvous, over the transport itself and among the live peers
 * only, so that it is the same under every bootstrap and a dead peer
 * cannot hold it (a bootstrap barrier waits for every rank: PMI2's and
 * PMIx's fences hang on a rank killed by a signal, the TCP rendezvous
 * fails every rank).  Each rank, once its own writes have completed,
 * tells each live peer "bye" (nothing more will come from me), then
 * waits until every peer has either said bye to it and taken its bye,
 * or is down (PEER_DOWN counts as arrived).  Then no peer writes into
 * this rank's memory any more, and none of this rank's writes is still
 * on its way: the memory can go.  A peer that is alive but never closes
 * holds this rank here, as a barrier would.
 */
static int tp_farewell(struct hetsgd_tp *tp)
{
	int r, ret, spins = 0;

	/* the caller is closing: events it did not take are moot */
	tp->evq_len = 0;
	while (!farewell_done(tp)) {
		for (r = 0; r < tp->size; r++) {
			if (!tp_is_peer(tp, r) || tp->down[r] || (tp->bye[r] & TP_BYE_POSTED))
				continue;
			ret = tp->prov->bye(tp, r);
			if (ret == 0)
				tp->bye[r] |= TP_BYE_POSTED;
			else if (ret != -EAGAIN)
				return ret;
		}
		ret = tp->prov->farewell(tp);
		if (ret)
			return ret;
		tp->evq_len = 0;	/* PEER_DOWN events: tp->down says it */
		/* waiting on peers that still work: give them the CPU */
		if (++spins > 64)
			usleep(1000);
	}
	return 0;
}

int hetsgd_tp_close(struct hetsgd_tp *tp)
{
	int ret = 0;

	if (!tp)
		return 0;
	/* A failed endpoint says no bye: its peers see it go down instead. */
	if (!tp->failed)
		ret = tp->prov->quiesce(tp);
	if (!tp->failed && !ret)
		ret = tp_farewell(tp);
	tp->prov->close(tp);
	free_bookkeeping(tp);
	free(tp);
	return ret;
}

/* The endpoint is unusable from now on; remember why for later calls. */
static void tp_fail(struct hetsgd_tp *tp)
{
	tp->failed = 1;
	snprintf(tp->fail_msg, sizeof(tp->fail_msg), "%s", hetsgd_errmsg());
}

static int failed_again(const struct hetsgd_tp *tp)
{
	return hetsgd_err(-EIO, "the transport failed earlier (%s): close it and open a new one", tp->fail_msg);
}

int hetsgd_tp_rank(const struct hetsgd_tp *tp)
{
	return tp->rank;
}

int hetsgd_tp_size(const struct hetsgd_tp *tp)
{
	return tp->size;
}

size_t hetsgd_tp_slot_bytes(const struct hetsgd_tp *tp)
{
	return tp->attr.slot_bytes;
}

uint32_t hetsgd_tp_slots(const struct hetsgd_tp *tp)
{
	return tp->attr.slots;
}

const char *hetsgd_tp_describe(const struct hetsgd_tp *tp)
{
	return tp->desc;
}

int hetsgd_tp_tx_get(struct hetsgd_tp *tp, struct hetsgd_tx **out)
{
	struct tp_tx *tx;

	if (tp->failed)
		return failed_again(tp);
	if (!tp->tx_free) {
		int ret = tp->prov->progress(tp);

		if (ret)
			return ret;
		if (!tp->tx_free)
			return -EAGAIN;
	}
	tx = tp->tx_free;
	tp->tx_free = tx->next_free;
	tx->next_free = NULL;
	tx->held = 1;
	*out = &tx->pub;
	return 0;
}

static struct tp_tx *tx_of(struct hetsgd_tp *tp, struct hetsgd_tx *pub)
{
	struct tp_tx *tx = (struct tp_tx *)pub;

	if (!pub || tx < tp->txs || tx >= tp->txs + tp->attr.tx_bufs || &tx->pub != pub)
		return NULL;
	return tx;
}

void hetsgd_tp_tx_put(struct hetsgd_tp *tp, struct hetsgd_tx *pub)
{
	struct tp_tx *tx = tx_of(tp, pub);

	if (!tx || !tx->held)
		return;
	tx->held = 0;
	tx_recycle(tp, tx);
}

static int tp_put(struct hetsgd_tp *tp, int peer, struct hetsgd_tx *pub, size_t len, uint8_t kind,
		  int more)
{
	struct tp_tx *tx = tx_of(tp, pub);
	int ret;

	if (tp->failed)
		return failed_again(tp);
	if (peer < 0 || peer >= tp->size || peer == tp->rank)
		return hetsgd_err(-EINVAL, "put to rank %d: use another rank in 0..%d", peer, tp->size - 1);
	if (!tp_is_peer(tp, peer))
		return hetsgd_err(-EINVAL, "put from rank %d to rank %d: the connection pattern %s does not "
				  "connect them (star: rank 0 with every rank); open with the all pattern to reach it",
				  tp->rank, peer, hetsgd_tp_pattern_name(tp->attr.pattern));
	if (!tx || !tx->held)
		return hetsgd_err(-EINVAL, "put from a buffer not taken with hetsgd_tp_tx_get()");
	if (tp->down[peer])
		return hetsgd_err(-EPIPE, "put to rank %d, which is down: %s", peer, tp->down_why[peer]);
	if (len > tp->attr.slot_bytes)
		return hetsgd_err(-EMSGSIZE, "put of %zu bytes exceeds the %zu-byte slot: open the transport with a larger slot_bytes",
				  len, tp->attr.slot_bytes);
	/*
	 * Every in-flight put will queue a SENT event, and every slot a peer
	 * may fill a RECV event: keep room for all of them plus this one.
	 */
	if (tp_evq_room(tp) < tp_ev_ranks(tp) * tp->attr.slots + tp->inflight_puts + 1)
		return tp_wait(tp, peer, TP_WAIT_QUEUE);
	tx->inflight++;
	tp->inflight_puts++;
	ret = tp->prov->put(tp, peer, tx, len, kind, more);
	if (ret == 0) {
		tp->waiting[peer] = 0;
		tp->stats.puts++;
		return 0;
	}
	tx->inflight--;
	tp->inflight_puts--;
	if (ret != -EAGAIN)
		tp_fail(tp);
	return ret;
}

int hetsgd_tp_put(struct hetsgd_tp *tp, int peer, struct hetsgd_tx *pub, size_t len, uint8_t kind)
{
	return tp_put(tp, peer, pub, len, kind, 0);
}

int hetsgd_tp_put_more(struct hetsgd_tp *tp, int peer, struct hetsgd_tx *pub, size_t len, uint8_t kind)
{
	return tp_put(tp, peer, pub, len, kind, 1);
}

int hetsgd_tp_progress(struct hetsgd_tp *tp, struct hetsgd_ev *ev, int max)
{
	int n = 0, ret;

	if (tp->failed)
		return failed_again(tp);
	if (max < 0 || (max > 0 && !ev))
		return hetsgd_err(-EINVAL, "hetsgd_tp_progress: bad event array");
	ret = tp->prov->progress(tp);
	if (ret) {
		tp_fail(tp);
		return ret;
	}
	while (n < max && tp->evq_len) {
		ev[n++] = tp->evq[tp->evq_head];
		tp->evq_head = (tp->evq_head + 1) % tp->evq_cap;
		tp->evq_len--;
	}
	return n;
}

int hetsgd_tp_release(struct hetsgd_tp *tp, int peer, uint32_t slot)
{
	int ret;

	if (tp->failed)
		return failed_again(tp);
	if (!tp_is_peer(tp, peer))
		return hetsgd_err(-EINVAL, "release for rank %d at rank %d: not a peer under connection pattern %s",
				  peer, tp->rank, hetsgd_tp_pattern_name(tp->attr.pattern));
	/* Nobody is left to tell: the bookkeeping only. */
	if (tp->down[peer]) {
		int64_t head = tp_release_slot(tp, peer, slot);

		return head < 0 ? (int)head : 0;
	}
	ret = tp->prov->release(tp, peer, slot);
	if (ret && ret != -EINVAL)
		tp_fail(tp);
	return ret;
}

int hetsgd_tp_get_stats(const struct hetsgd_tp *tp, struct hetsgd_tp_stats *st)
{
	if (!tp || !st)
		return hetsgd_err(-EINVAL, "hetsgd_tp_get_stats: NULL endpoint or output");
	*st = tp->stats;
	return 0;
}

#ifdef HETSGD_TEST_HOOKS
int hetsgd_tp_test_write(struct hetsgd_tp *tp, int peer, enum tp_test_target target, int victim,
			 uint32_t slot, size_t off, const void *data, size_t len)
{
	if (tp->failed)
		return failed_again(tp);
	if (!tp_is_peer(tp, peer) || slot >= tp->attr.slots ||
	    off + len > tp->attr.slot_bytes)
		return hetsgd_err(-EINVAL, "test write: bad peer, slot or range");
	return tp->prov->test_write(tp, peer, (int)target, victim, slot, off, data, len);
}
#endif
