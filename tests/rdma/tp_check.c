/*
 * Transport integration check: N ranks (local launcher) put thousands of
 * blocks to each other under a seeded random schedule with small rings, so
 * back-pressure (-EAGAIN) is constant and slots are released out of order.
 * Every block carries (src, dst, seq) and a pattern derived from them; the
 * receiver checks that each sender's blocks arrive exactly once and in
 * order, with the right length, kind and every byte.
 *
 * With --pattern star only rank 0 and each other rank are paired: blocks go
 * over those pairs only, each rank checks its footprint (rank 0: n - 1
 * peers and queue pairs or segments, the others 1), that a put to a rank
 * outside the pattern is refused with -EINVAL, and on shm that the only
 * segments mapped in its address space are those of its pairs.
 *
 * With --more a put is a burst of 1 to 24 blocks to one peer by
 * hetsgd_tp_put_more(), the last of them sometimes by hetsgd_tp_put(), and
 * on verbs the check asserts that bursts shared doorbells (fewer
 * ibv_post_send calls than puts) and that no block was lost, duplicated
 * or reordered on the way.
 *
 *   hetsgd-tp-check --provider shm|verbs [--ranks N] [--puts P] [--seed S]
 *                   [--slots K] [--slot-bytes B] [--pattern all|star] [--more]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hetsgd_transport.h"

struct cfg {
	enum hetsgd_provider prov;
	enum hetsgd_tp_pattern pattern;
	int ranks;
	int puts;		/* per ordered pair */
	uint64_t seed;
	uint32_t slots;
	size_t slot_bytes;
	int quiet;
	int more;		/* bursts by hetsgd_tp_put_more() */
};

struct blk_hdr {
	uint32_t src, dst;
	uint64_t seq;
};

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static uint64_t key(const struct cfg *c, uint32_t src, uint32_t dst, uint64_t seq)
{
	return mix(c->seed ^ mix((uint64_t)src << 40 ^ (uint64_t)dst << 20 ^ seq));
}

/* Lengths cover tiny, odd and full-slot blocks. */
static size_t blk_len(const struct cfg *c, uint32_t src, uint32_t dst, uint64_t seq)
{
	uint64_t k = key(c, src, dst, seq);
	size_t min = sizeof(struct blk_hdr);

	switch (k % 4) {
	case 0: return min;
	case 1: return c->slot_bytes;
	default: return min + (k >> 8) % (c->slot_bytes - min + 1);
	}
}

static uint8_t blk_kind(const struct cfg *c, uint32_t src, uint32_t dst, uint64_t seq)
{
	return (uint8_t)(key(c, src, dst, seq) >> 56);
}

static void fill(const struct cfg *c, uint8_t *p, size_t len, uint64_t k)
{
	size_t i;

	for (i = sizeof(struct blk_hdr); i < len; i++) {
		if ((i & 7) == 0 || i == sizeof(struct blk_hdr))
			k = mix(k + i);
		p[i] = (uint8_t)(k >> ((i & 7) * 8));
	}
	(void)c;
}

static int check_block(const struct cfg *c, int me, const struct hetsgd_ev *ev, uint64_t expect_seq)
{
	struct blk_hdr h;
	static uint8_t *want;
	static size_t want_cap;
	size_t len, i;

	if (ev->len < sizeof(h)) {
		fprintf(stderr, "tp-check: rank %d: block of %zu bytes from %d is too short\n", me, ev->len, ev->peer);
		return -1;
	}
	memcpy(&h, ev->data, sizeof(h));
	if (h.src != (uint32_t)ev->peer || h.dst != (uint32_t)me || h.seq != expect_seq) {
		fprintf(stderr, "tp-check: rank %d: from %d got block src %u dst %u seq %" PRIu64
			", expected seq %" PRIu64 " (lost, duplicated or reordered)\n",
			me, ev->peer, h.src, h.dst, h.seq, expect_seq);
		return -1;
	}
	len = blk_len(c, h.src, h.dst, h.seq);
	if (ev->len != len || ev->kind != blk_kind(c, h.src, h.dst, h.seq)) {
		fprintf(stderr, "tp-check: rank %d: block %" PRIu64 " from %d: %zu bytes kind %u, expected %zu kind %u\n",
			me, h.seq, ev->peer, ev->len, ev->kind, len, blk_kind(c, h.src, h.dst, h.seq));
		return -1;
	}
	if (want_cap < len) {
		free(want);
		want = malloc(len);
		want_cap = len;
	}
	fill(c, want, len, key(c, h.src, h.dst, h.seq));
	for (i = sizeof(h); i < len; i++) {
		if (((const uint8_t *)ev->data)[i] != want[i]) {
			fprintf(stderr, "tp-check: rank %d: block %" PRIu64 " from %d: byte %zu is 0x%02x, expected 0x%02x\n",
				me, h.seq, ev->peer, i, ((const uint8_t *)ev->data)[i], want[i]);
			return -1;
		}
	}
	return 0;
}

struct held { int peer; uint32_t slot; };

/* The pattern's rule, written again here from its documentation. */
static int paired(const struct cfg *c, int a, int b)
{
	return a != b && (c->pattern == HETSGD_TP_ALL || a == 0 || b == 0);
}

/*
 * What the endpoint holds must be what the pattern asks: peers and
 * connections, a put outside the pattern refused, and (shm) no segment of
 * another pair mapped here.  The shm segments are unlinked once mapped;
 * /proc/self/maps still names them "/dev/shm/hetsgd-TOKEN-RECEIVER-SENDER".
 */
static int check_footprint(const struct cfg *c, struct hetsgd_tp *tp, int me, int n)
{
	struct hetsgd_tp_footprint fp;
	uint32_t want = 0;
	struct hetsgd_tx *tx;
	int r, ret;

	for (r = 0; r < n; r++) {
		want += (uint32_t)paired(c, me, r);
		if (hetsgd_tp_is_peer(tp, r) != paired(c, me, r)) {
			fprintf(stderr, "tp-check: rank %d: is_peer(%d) = %d under %s\n", me, r,
				hetsgd_tp_is_peer(tp, r), hetsgd_tp_pattern_name(c->pattern));
			return -1;
		}
	}
	if (hetsgd_tp_get_footprint(tp, &fp) || fp.peers != want || fp.conns != want ||
	    fp.registered_bytes < (uint64_t)want * c->slots * c->slot_bytes || fp.connect_s <= 0) {
		fprintf(stderr, "tp-check: rank %d: footprint %u peers, %u conns, %llu bytes, %.4f s; "
			"want %u peers and conns under %s\n", me, fp.peers, fp.conns,
			(unsigned long long)fp.registered_bytes, fp.connect_s, want,
			hetsgd_tp_pattern_name(c->pattern));
		return -1;
	}
	/* a rank outside the pattern: -EINVAL with both ranks named */
	for (r = 1; r < n; r++)
		if (r != me && !paired(c, me, r))
			break;
	if (r < n) {
		if (hetsgd_tp_tx_get(tp, &tx)) {
			fprintf(stderr, "tp-check: rank %d: tx_get: %s\n", me, hetsgd_errmsg());
			return -1;
		}
		ret = hetsgd_tp_put(tp, r, tx, 64, 1);
		hetsgd_tp_tx_put(tp, tx);
		if (ret != -EINVAL || !strstr(hetsgd_errmsg(), "pattern")) {
			fprintf(stderr, "tp-check: rank %d: put to non-peer %d returned %d (%s), want -EINVAL\n",
				me, r, ret, hetsgd_errmsg());
			return -1;
		}
	}
	if (c->prov == HETSGD_PROV_SHM) {
		FILE *f = fopen("/proc/self/maps", "r");
		char line[512];
		uint32_t segs = 0;

		while (f && fgets(line, sizeof(line), f)) {
			char *p = strstr(line, "/hetsgd-");
			int a, b;

			if (!p || sscanf(p, "/hetsgd-%*16[0-9a-f]-%d-%d", &a, &b) != 2)
				continue;
			if (!paired(c, a, b) || (a != me && b != me)) {
				fprintf(stderr, "tp-check: rank %d maps segment %d<-%d, outside the %s pattern\n",
					me, a, b, hetsgd_tp_pattern_name(c->pattern));
				fclose(f);
				return -1;
			}
			segs++;
		}
		if (f)
			fclose(f);
		if (!f || segs != 2 * want) {
			fprintf(stderr, "tp-check: rank %d maps %u shm segments, want %u (its rings and its peers')\n",
				me, segs, 2 * want);
			return -1;
		}
	}
	return 0;
}

static int rank_main(struct hetsgd_boot *boot, void *arg)
{
	const struct cfg *c = arg;
	struct hetsgd_tp_attr attr;
	struct hetsgd_tp *tp;
	int me = hetsgd_boot_rank(boot), n = hetsgd_boot_size(boot), ret, i;
	uint64_t *sent = calloc((size_t)n, sizeof(uint64_t)), *got = calloc((size_t)n, sizeof(uint64_t));
	uint64_t rng = mix(c->seed + (uint64_t)me), total_sent = 0, total_got = 0, eagain = 0, sent_ev = 0;
	uint64_t want_total = 0;
	struct held *held = calloc((size_t)n * c->slots, sizeof(*held));
	struct hetsgd_tx *tx = NULL;
	size_t nheld = 0;
	time_t start = time(NULL);

	for (i = 0; i < n; i++)
		want_total += paired(c, me, i) ? (uint64_t)c->puts : 0;
	hetsgd_tp_attr_init(&attr);
	attr.provider = c->prov;
	attr.pattern = c->pattern;
	attr.slots = c->slots;
	attr.slot_bytes = c->slot_bytes;
	attr.tx_bufs = 4;
	ret = hetsgd_tp_open(boot, &attr, &tp);
	if (ret) {
		fprintf(stderr, "tp-check: rank %d: open: %s\n", me, hetsgd_errmsg());
		return 1;
	}
	if (me == 0 && !c->quiet)
		printf("tp-check: %s\n", hetsgd_tp_describe(tp));
	if (check_footprint(c, tp, me, n))
		return 1;

	while (total_got < want_total || total_sent < want_total || sent_ev < want_total) {
		struct hetsgd_ev ev[16];
		uint64_t r = rng = mix(rng);

		if (time(NULL) - start > 120) {
			fprintf(stderr, "tp-check: rank %d: stuck after 120 s: sent %" PRIu64 "/%" PRIu64
				", received %" PRIu64 "/%" PRIu64 ", %zu slots held (seed %" PRIu64 ")\n",
				me, total_sent, want_total, total_got, want_total, nheld, c->seed);
			return 1;
		}
		if (r % 3 == 0 && total_sent < want_total) {
			/* Put to a random peer that still has blocks to get. */
			int peer = (int)((r >> 8) % (uint64_t)n), tries;
			/* --more: a burst, held by the transport until its last put or the next progress */
			int burst = c->more ? 1 + (int)((r >> 40) % 24) : 1, b;
			int last_plain = (r >> 48) & 1;

			for (tries = 0; tries < n && (!paired(c, me, peer) || sent[peer] >= (uint64_t)c->puts); tries++)
				peer = (peer + 1) % n;
			for (b = 0; b < burst && paired(c, me, peer) && sent[peer] < (uint64_t)c->puts; b++) {
				struct blk_hdr h = { (uint32_t)me, (uint32_t)peer, sent[peer] };
				size_t len = blk_len(c, h.src, h.dst, h.seq);
				uint8_t kind = blk_kind(c, h.src, h.dst, h.seq);

				if (!tx && hetsgd_tp_tx_get(tp, &tx) == -EAGAIN)
					tx = NULL;
				if (!tx)
					break;	/* every buffer in flight: progress gives them back */
				{
					memcpy(tx->data, &h, sizeof(h));
					fill(c, tx->data, len, key(c, h.src, h.dst, h.seq));
					ret = c->more && !(last_plain && b == burst - 1)
					      ? hetsgd_tp_put_more(tp, peer, tx, len, kind)
					      : hetsgd_tp_put(tp, peer, tx, len, kind);
					if (ret == 0) {
						hetsgd_tp_tx_put(tp, tx);
						tx = NULL;
						sent[peer]++;
						total_sent++;
					} else if (ret == -EAGAIN) {
						eagain++;
						break;
					} else {
						fprintf(stderr, "tp-check: rank %d: put: %s\n", me, hetsgd_errmsg());
						return 1;
					}
				}
			}
		}
		ret = hetsgd_tp_progress(tp, ev, (int)(1 + (r >> 16) % 16));
		if (ret < 0) {
			fprintf(stderr, "tp-check: rank %d: progress: %s\n", me, hetsgd_errmsg());
			return 1;
		}
		for (i = 0; i < ret; i++) {
			if (ev[i].type == HETSGD_EV_SENT) {
				sent_ev++;
				continue;
			}
			if (check_block(c, me, &ev[i], got[ev[i].peer])) {
				fprintf(stderr, "tp-check: FAIL with seed %" PRIu64 "\n", c->seed);
				return 1;
			}
			got[ev[i].peer]++;
			total_got++;
			held[nheld].peer = ev[i].peer;
			held[nheld].slot = ev[i].slot;
			nheld++;
		}
		/* Release a random held block: out of order, sometimes late. */
		if (nheld && ((r >> 24) % 4 != 0 || nheld == (size_t)n * c->slots)) {
			size_t k = (size_t)((r >> 32) % nheld);

			ret = hetsgd_tp_release(tp, held[k].peer, held[k].slot);
			if (ret) {
				fprintf(stderr, "tp-check: rank %d: release: %s\n", me, hetsgd_errmsg());
				return 1;
			}
			held[k] = held[--nheld];
		}
	}
	while (nheld) {
		nheld--;
		if (hetsgd_tp_release(tp, held[nheld].peer, held[nheld].slot)) {
			fprintf(stderr, "tp-check: rank %d: release: %s\n", me, hetsgd_errmsg());
			return 1;
		}
	}
	if (tx)
		hetsgd_tp_tx_put(tp, tx);
	{
		/*
		 * Over verbs both paths must have carried blocks: the polled one
		 * (up to HETSGD_POLL_MAX, default 1024 bytes; 0 turns it off)
		 * and the one by immediate; interleaved on one pair, they test
		 * that the receiver keeps their order.
		 */
		struct hetsgd_tp_stats st;
		const char *pm = getenv("HETSGD_POLL_MAX");
		int off = pm && !strcmp(pm, "0");

		hetsgd_tp_get_stats(tp, &st);
		if (!c->quiet)
			printf("tp-check: rank %d: %" PRIu64 " puts (%" PRIu64 " polled), %" PRIu64 " received (%"
			       PRIu64 " polled)\n", me, st.puts, st.puts_polled, st.recvs, st.recvs_polled);
		if (c->prov == HETSGD_PROV_VERBS && c->slot_bytes > 1024 &&
		    (off ? st.puts_polled || st.recvs_polled
			 : !st.puts_polled || !st.recvs_polled || st.puts_polled == st.puts)) {
			fprintf(stderr, "tp-check: rank %d: HETSGD_POLL_MAX=%s, yet %" PRIu64 " of %" PRIu64
				" puts and %" PRIu64 " of %" PRIu64 " receives went by the polled path\n", me,
				pm ? pm : "(unset)", st.puts_polled, st.puts, st.recvs_polled, st.recvs);
			return 1;
		}
		/* bursts shared doorbells: on verbs fewer posts than puts; shm has none */
		if (c->more && (c->prov == HETSGD_PROV_VERBS ? !(st.doorbells < st.puts) : st.doorbells != 0)) {
			fprintf(stderr, "tp-check: rank %d: %" PRIu64 " puts in bursts took %" PRIu64
				" doorbells: the chains of hetsgd_tp_put_more did not form\n", me, st.puts, st.doorbells);
			return 1;
		}
		if (!c->quiet && c->more)
			printf("tp-check: rank %d: %" PRIu64 " puts in %" PRIu64 " doorbells\n", me, st.puts,
			       st.doorbells);
	}
	ret = hetsgd_tp_close(tp);
	if (ret) {
		fprintf(stderr, "tp-check: rank %d: close: %s\n", me, hetsgd_errmsg());
		return 1;
	}
	if (!c->quiet)
		printf("tp-check: rank %d: sent %" PRIu64 ", received and verified %" PRIu64
		       " blocks exactly once, in order; %" PRIu64 " puts met back-pressure\n",
		       me, total_sent, total_got, eagain);
	free(sent);
	free(got);
	free(held);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "ranks", required_argument, NULL, 'n' },
		{ "puts", required_argument, NULL, 'k' },
		{ "seed", required_argument, NULL, 's' },
		{ "slots", required_argument, NULL, 'S' },
		{ "slot-bytes", required_argument, NULL, 'B' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "pattern", required_argument, NULL, 'P' },
		{ "more", no_argument, NULL, 'm' },
		{ 0 }
	};
	struct cfg c = { .prov = HETSGD_PROV_SHM, .ranks = 4, .puts = 1000, .slots = 3,
			 .slot_bytes = 4096 };
	int opt, ret;
	char *end;

	c.seed = (uint64_t)time(NULL);
	while ((opt = getopt_long(argc, argv, "p:n:k:s:S:B:qP:m", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (hetsgd_provider_parse(optarg, &c.prov)) {
				fprintf(stderr, "tp-check: %s\n", hetsgd_errmsg());
				return 2;
			}
			break;
		case 'n': c.ranks = atoi(optarg); break;
		case 'k': c.puts = atoi(optarg); break;
		case 's': c.seed = strtoull(optarg, &end, 0); break;
		case 'S': c.slots = (uint32_t)atoi(optarg); break;
		case 'B': c.slot_bytes = (size_t)atol(optarg); break;
		case 'q': c.quiet = 1; break;
		case 'm': c.more = 1; break;
		case 'P':
			if (hetsgd_tp_pattern_parse(optarg, &c.pattern)) {
				fprintf(stderr, "tp-check: %s\n", hetsgd_errmsg());
				return 2;
			}
			break;
		default:
			fprintf(stderr, "usage: hetsgd-tp-check --provider shm|verbs [--ranks N] [--puts P] [--seed S] "
				"[--slots K] [--slot-bytes B] [--pattern all|star] [--more]\n");
			return 2;
		}
	}
	if (c.ranks < 2 || c.ranks > 64 || c.puts < 1 || c.slot_bytes < 64 || c.slot_bytes % 64) {
		fprintf(stderr, "tp-check: need 2..64 ranks, puts >= 1, slot-bytes a multiple of 64 >= 64\n");
		return 2;
	}
	printf("tp-check: provider %s, %d ranks, pattern %s, %d puts per pair%s, %u slots of %zu bytes, seed %" PRIu64 "\n",
	       hetsgd_provider_name(c.prov), c.ranks, hetsgd_tp_pattern_name(c.pattern), c.puts,
	       c.more ? " in bursts (put_more)" : "", c.slots, c.slot_bytes, c.seed);
	fflush(stdout);
	ret = hetsgd_boot_local_run(c.ranks, rank_main, &c, NULL);
	if (ret) {
		fprintf(stderr, "tp-check: FAIL (seed %" PRIu64 "): %s\n", c.seed, hetsgd_errmsg());
		return 1;
	}
	printf("tp-check: PASS: %d ranks, %" PRIu64 " blocks over the %s pattern's pairs, footprints as the pattern says, "
	       "every byte verified, each delivered exactly once\n",
	       c.ranks, (uint64_t)c.puts * (c.pattern == HETSGD_TP_STAR ? 2 * (uint64_t)(c.ranks - 1)
					: (uint64_t)c.ranks * (uint64_t)(c.ranks - 1)),
	       hetsgd_tp_pattern_name(c.pattern));
	return 0;
}
