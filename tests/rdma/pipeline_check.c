/*
 * The pipeline is deep enough: in a bandwidth stream of 64 KiB .. 1 MiB
 * blocks (rank 0 to rank 1, which releases each block as soon as it sees
 * it, as hetsgd-bench does), the sender waits on its send window, never on
 * a credit, once the stream runs (after a warm-up of a quarter of the
 * blocks: a receiver not yet back from the barrier lets any ring fill).  The transport counts both (hetsgd_tp_get_stats); this asserts
 * that no put to rank 1 was refused for want of a credit, that every block
 * arrived whole, and, so that the test can fail, that something did hold
 * the sender back (the window), i.e. the stream ran at the link's pace.
 *
 *   hetsgd-pipeline-check --provider verbs [--slots K] [--blocks N]
 *
 * shm has no send window (a put is a memcpy): it exits 77 there.  It runs
 * in the RDMA bed (make check-rdma), where a device exists.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hetsgd_transport.h"

static const size_t sizes[] = { 64 << 10, 256 << 10, 1 << 20 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

struct cfg {
	enum hetsgd_provider prov;
	uint32_t slots;		/* 0: the transport's default */
	int blocks;		/* per size, at 64 KiB; fewer for larger blocks */
};

static int fail(int me, const char *what)
{
	fprintf(stderr, "pipeline-check: rank %d: %s: %s\n", me, what, hetsgd_errmsg());
	return 1;
}

/*
 * One buffer, filled once, put n times (as hetsgd-bench streams).  The
 * counters are read into *s0 after `warm` puts: until the receiver's
 * process is back from the barrier and polling, any ring fills.
 */
static int sender(struct hetsgd_tp *tp, size_t size, int n, int warm, struct hetsgd_tp_stats *s0)
{
	struct hetsgd_tx *tx;
	struct hetsgd_ev ev[32];
	int i, m, ret;

	if (hetsgd_tp_tx_get(tp, &tx))
		return -EIO;
	memset(tx->data, 0x5a, size);
	for (i = 0; i < n; i++) {
		if (i == warm)
			hetsgd_tp_get_stats(tp, s0);
		while ((ret = hetsgd_tp_put(tp, 1, tx, size, 7)) == -EAGAIN) {
			m = hetsgd_tp_progress(tp, ev, 32);
			if (m < 0)
				return m;
		}
		if (ret)
			return ret;
	}
	hetsgd_tp_tx_put(tp, tx);
	return 0;
}

static int receiver(struct hetsgd_tp *tp, size_t size, int n)
{
	struct hetsgd_ev ev[32];
	int got = 0, k, m, ret;

	while (got < n) {
		m = hetsgd_tp_progress(tp, ev, 32);
		if (m < 0)
			return m;
		for (k = 0; k < m; k++) {
			const unsigned char *d = ev[k].data;

			if (ev[k].type != HETSGD_EV_RECV)
				continue;
			if (ev[k].len != size || ev[k].kind != 7 || d[0] != 0x5a || d[size - 1] != 0x5a) {
				fprintf(stderr, "pipeline-check: block %d of %zu bytes: got %zu bytes, kind %u, "
					"first byte 0x%02x, last 0x%02x\n", got, size, ev[k].len, ev[k].kind, d[0],
					d[ev[k].len ? ev[k].len - 1 : 0]);
				return -EBADMSG;
			}
			got++;
			ret = hetsgd_tp_release(tp, ev[k].peer, ev[k].slot);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static int rank_main(struct hetsgd_boot *boot, void *arg)
{
	const struct cfg *c = arg;
	struct hetsgd_tp_attr attr;
	struct hetsgd_tp_stats s_start, s0, s1;
	struct hetsgd_tp *tp;
	int me = hetsgd_boot_rank(boot), bad = 0;
	unsigned i;

	alarm(300);	/* a hang is a failure, not a stuck bed */
	hetsgd_tp_attr_init(&attr);
	attr.provider = c->prov;
	attr.slots = c->slots;
	attr.slot_bytes = sizes[NSIZES - 1];
	attr.tx_bufs = 2;
	if (hetsgd_tp_open(boot, &attr, &tp))
		return fail(me, "open");
	if (me == 0)
		printf("pipeline-check: %s\n", hetsgd_tp_describe(tp));
	for (i = 0; i < NSIZES; i++) {	/* every size, even after a failure: both ranks run the same loop */
		int n = (int)((size_t)c->blocks * sizes[0] / sizes[i]), warm;
		int ret;

		if (n < 16)
			n = 16;
		warm = n / 4;
		if (hetsgd_boot_barrier(boot))
			return fail(me, "barrier");
		hetsgd_tp_get_stats(tp, &s_start);
		ret = me == 0 ? sender(tp, sizes[i], n, warm, &s0) : receiver(tp, sizes[i], n);
		if (ret)
			return fail(me, "stream");
		hetsgd_tp_get_stats(tp, &s1);
		if (me == 0) {
			uint64_t cw = s1.credit_waits - s0.credit_waits + s1.queue_waits - s0.queue_waits;
			uint64_t qw = s1.window_waits - s0.window_waits;

			printf("pipeline-check: %7zu-byte blocks x %4d: %" PRIu64 " credit or send-queue waits, %" PRIu64
			       " send-window waits (after the first %d, the warm-up; in all %" PRIu64 " credit waits)\n",
			       sizes[i], n, cw, qw, warm, s1.credit_waits - s_start.credit_waits);
			fflush(stdout);
			if (cw) {
				fprintf(stderr, "pipeline-check: FAIL: the sender waited %" PRIu64 " times for a credit or a "
					"send-queue entry streaming %zu-byte blocks: the pipeline is credit-bound\n", cw, sizes[i]);
				bad = 1;
			}
			if (!qw) {
				fprintf(stderr, "pipeline-check: FAIL: nothing held the sender back streaming %zu-byte "
					"blocks: the window is not in force, the test proves nothing\n", sizes[i]);
				bad = 1;
			}
		}
	}
	if (hetsgd_tp_close(tp))
		return fail(me, "close");
	return bad;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "slots", required_argument, NULL, 'S' },
		{ "blocks", required_argument, NULL, 'n' },
		{ 0 }
	};
	struct cfg c = { .prov = HETSGD_PROV_VERBS, .blocks = 400 };
	int opt;

	while ((opt = getopt_long(argc, argv, "p:S:n:", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (hetsgd_provider_parse(optarg, &c.prov)) {
				fprintf(stderr, "pipeline-check: %s\n", hetsgd_errmsg());
				return 2;
			}
			break;
		case 'S': c.slots = (uint32_t)atoi(optarg); break;
		case 'n': c.blocks = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: hetsgd-pipeline-check --provider verbs [--slots K] [--blocks N]\n");
			return 2;
		}
	}
	if (c.prov != HETSGD_PROV_VERBS) {
		printf("SKIP: pipeline-check: shm has no send window; the check is for --provider verbs\n");
		return 77;
	}
	if (c.blocks < 1 || c.slots > 4096) {
		fprintf(stderr, "pipeline-check: --blocks must be >= 1 and --slots 0 (the default) to 4096\n");
		return 2;
	}
	if (hetsgd_boot_local_run(2, rank_main, &c, NULL)) {
		fprintf(stderr, "pipeline-check: FAIL: %s\n", hetsgd_errmsg());
		return 1;
	}
	printf("pipeline-check: PASS: no credit waits in the bandwidth streams\n");
	return 0;
}
