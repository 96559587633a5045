/*
 * A peer that lies: the receiver must stay inside its own buffers and name
 * the rank that misbehaved.  Built with -DHETSGD_TEST_HOOKS, which gives a
 * rank raw writes into its peers' memory, the way a hostile or broken
 * process holding the same mappings and keys could write.
 *
 *   hetsgd-hostile-check --provider shm|verbs --scenario S
 *
 *   rewrite        rank 1 puts a valid indexed block to rank 0, then, after
 *                  rank 0 has decoded it and before rank 0 applies it,
 *                  rewrites the indices in its staging slot to point far
 *                  outside the model; then announces a slot rank 0 still
 *                  holds.  Rank 0 must apply exactly the indices it
 *                  validated (decode checks them in rank 0's own copy)
 *                  and then fail naming rank 1.
 *   forge          rank 1 tries to raise the credit word that rank 2 and
 *                  rank 0 keep for each other.  Its write must not land:
 *                  rank 0 must not overwrite the blocks rank 2 still holds,
 *                  and must never blame rank 2.
 *   poll-len       (verbs) rank 1 writes into its polled ring at rank 0 a
 *                  block header with the right flag and a length far past
 *                  the polled path's limit: rank 0 must fail naming rank 1,
 *                  having copied nothing.
 *   poll-credit    (verbs) rank 1 writes a whole polled block whose credit
 *                  word says it released blocks rank 0 never sent: rank 0
 *                  must fail naming rank 1.
 *   connect-bogus  (verbs) rank 2 first sends rank 0 three connection
 *                  requests without a valid proof of the job key; they are
 *                  refused and the job connects and runs.
 *   connect-dup    (verbs) rank 2 claims its rank twice with valid proofs:
 *                  the open fails at once, naming both addresses.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hetsgd_transport.h"
#include "transport_priv.h"

#define D 1024u
#define COUNT 16u
#define SLOTS 4u
#define HDR 40u		/* struct hetsgd_block_hdr: the indices follow it */

struct opts {
	enum hetsgd_provider prov;
	const char *scenario;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define FAIL(...) do { fprintf(stderr, "hostile-check: rank %d: FAIL: ", me); \
		       fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)

/* Wait up to t seconds for a RECV event (or any error). */
static int wait_recv(struct hetsgd_tp *tp, struct hetsgd_ev *ev, double t)
{
	double t0 = now_s();
	int n;

	while (now_s() - t0 < t) {
		n = hetsgd_tp_progress(tp, ev, 1);
		if (n < 0)
			return n;
		if (n == 1 && ev->type == HETSGD_EV_RECV)
			return 1;
	}
	return 0;
}

/*
 * Drive progress for t seconds; the first error is returned.  A peer
 * reported down counts as one (-ECONNRESET, its reason in the message):
 * a connection broken by a refused write ends only that peer.
 */
static int spin(struct hetsgd_tp *tp, double t)
{
	struct hetsgd_ev ev[8];
	double t0 = now_s();
	int n;

	while (now_s() - t0 < t) {
		if ((n = hetsgd_tp_progress(tp, ev, 8)) < 0)
			return n;
		for (int i = 0; i < n; i++)
			if (ev[i].type == HETSGD_EV_PEER_DOWN)
				return hetsgd_error(-ECONNRESET, "rank %d is down: %s", ev[i].peer,
						    ev[i].why ? ev[i].why : "?");
	}
	return 0;
}

static int put_block(struct hetsgd_tp *tp, int peer, const uint32_t *idx, const float *val, uint32_t count,
		     uint16_t kind)
{
	struct hetsgd_block_hdr h = { .kind = kind, .sender = (uint32_t)hetsgd_tp_rank(tp), .dim = D };
	struct hetsgd_tx *tx;
	size_t len;
	int ret;

	if ((ret = hetsgd_tp_tx_get(tp, &tx)))
		return ret;
	ret = hetsgd_block_encode_sparse(tx->data, tx->cap, &h, idx, val, count, &len);
	if (!ret)
		ret = hetsgd_tp_put(tp, peer, tx, len, (uint8_t)kind);
	hetsgd_tp_tx_put(tp, tx);
	return ret;
}

static int rewrite(struct hetsgd_boot *b, struct hetsgd_tp *tp, int me)
{
	uint32_t idx[COUNT];
	float val[COUNT];
	unsigned j;

	for (j = 0; j < COUNT; j++) {
		idx[j] = j * (D / COUNT);
		val[j] = (float)(j + 1);
	}
	if (me == 1) {
		uint8_t evil[64];
		uint64_t t0;
		int ret;

		while ((ret = put_block(tp, 0, idx, val, COUNT, 1)) == -EAGAIN)
			spin(tp, 0.001);
		if (ret)
			FAIL("put: %s", hetsgd_errmsg());
		if (hetsgd_boot_barrier(b))		/* B1: rank 0 has checked the block */
			return 1;
		memset(evil, 0xf0, sizeof(evil));	/* index 0xf0f0f0f0: 16 GiB out */
		ret = hetsgd_tp_test_write(tp, 0, TP_TEST_SLOT, 0, 0, HDR, evil, sizeof(evil));
		if (ret)
			FAIL("the rewrite of its own slot was refused (%d): the test cannot attack", ret);
		ret = spin(tp, 0.3);			/* let the write land */
		if (ret)
			FAIL("progress after the rewrite: %s", hetsgd_errmsg());
		if (hetsgd_boot_barrier(b))		/* B2: rank 0 applies now */
			return 1;
		if (hetsgd_boot_barrier(b))		/* B3: rank 0 applied */
			return 1;
		t0 = 0;
		ret = hetsgd_tp_test_write(tp, 0, TP_TEST_REPLAY, 0, 0, 0, &t0, 8);
		if (ret)
			FAIL("the replay was refused (%d): the test cannot attack", ret);
		(void)spin(tp, 0.3);
		return hetsgd_boot_barrier(b) ? 1 : 0;	/* B4 */
	}

	static uint32_t idx_copy[D];
	struct hetsgd_block_limits lim = { .dim = D, .nranks = 2, .max_bytes = hetsgd_tp_slot_bytes(tp),
					   .idx_copy = idx_copy };
	struct hetsgd_block blk;
	struct hetsgd_ev ev;
	float *model = calloc(D, sizeof(float));
	int ret;

	if (!model)
		FAIL("out of memory");
	ret = wait_recv(tp, &ev, 10);
	if (ret != 1)
		FAIL("no block from rank 1 (%s)", ret < 0 ? hetsgd_errmsg() : "timeout");
	if (hetsgd_block_decode(ev.data, ev.len, &lim, &blk))
		FAIL("the valid block was refused: %s", hetsgd_errmsg());
	if (hetsgd_boot_barrier(b) || hetsgd_boot_barrier(b))	/* B1, B2 */
		return 1;
	/* The scatter every consumer does: it uses what decode checked. */
	for (j = 0; j < blk.count; j++)
		model[blk.idx[j]] += blk.val[j];
	for (j = 0; j < COUNT; j++)
		if (model[idx[j]] != val[j])
			FAIL("model[%u] = %g after the apply, expected %g: the block changed after it was checked",
			     idx[j], model[idx[j]], val[j]);
	free(model);
	if (hetsgd_boot_barrier(b))			/* B3 */
		return 1;
	ret = spin(tp, 5);
	if (ret == 0)
		FAIL("rank 1 announced slot 0, which this rank still holds, and nothing noticed");
	if (!strstr(hetsgd_errmsg(), "rank 1"))
		FAIL("the replay was caught, but the message does not name rank 1: %s", hetsgd_errmsg());
	printf("hostile-check: rewrite: applied what was checked; then: %s\n", hetsgd_errmsg());
	return hetsgd_boot_barrier(b) ? 1 : 0;		/* B4 */
}

static int forge(struct hetsgd_boot *b, struct hetsgd_tp *tp, int me)
{
	uint32_t idx[1] = { 7 };
	float val[1];
	int ret, sent = 0, all[3];

	if (me == 1) {
		uint64_t lie = (uint64_t)1 << 40;

		ret = hetsgd_tp_test_write(tp, 0, TP_TEST_CREDIT, 2, 0, 0, &lie, sizeof(lie));
		if (ret == -EACCES) {
			printf("hostile-check: forge: rank 1 has no mapping of rank 2's ring at rank 0\n");
		} else if (ret) {
			FAIL("the forged write could not be tried: %s", hetsgd_errmsg());
		} else {
			ret = spin(tp, 3);
			if (!ret)
				FAIL("rank 1's write into rank 2's credit line at rank 0 completed without error");
			printf("hostile-check: forge: rank 1's write was refused: %s\n", hetsgd_errmsg());
		}
	}
	if (hetsgd_boot_barrier(b))		/* F1: the forgery was tried */
		return 1;
	if (me == 0) {
		double t0;

		for (sent = 0; sent < (int)SLOTS; ) {
			val[0] = (float)sent;
			ret = put_block(tp, 2, idx, val, 1, 2);
			if (ret == -EAGAIN && !spin(tp, 0.001))
				continue;
			if (ret)
				break;
			sent++;
		}
		/* Rank 2 holds every slot: one more put must wait for a credit. */
		t0 = now_s();
		while (!ret && now_s() - t0 < 1.0) {
			val[0] = -1;
			ret = put_block(tp, 2, idx, val, 1, 2);
			if (ret == 0)
				FAIL("a put went through while rank 2 held all %u slots: forged credits were believed",
				     SLOTS);
			if (ret == -EAGAIN)
				ret = spin(tp, 0.001);
		}
		if (ret && strstr(hetsgd_errmsg(), "rank 2"))
			FAIL("rank 2 is blamed for rank 1's forgery: %s", hetsgd_errmsg());
		if (ret && !strstr(hetsgd_errmsg(), "rank 1"))
			FAIL("the endpoint failed without naming rank 1: %s", hetsgd_errmsg());
		printf("hostile-check: forge: rank 0 %s\n",
		       ret ? hetsgd_errmsg() : "waited for rank 2's credits, as it should");
	}
	if (hetsgd_boot_allgather(b, &sent, all, sizeof(int)))	/* F2 */
		return 1;
	if (me == 2) {
		struct hetsgd_ev ev;
		static uint32_t idx_copy[D];
		struct hetsgd_block_limits lim = { .dim = D, .nranks = 3, .max_bytes = hetsgd_tp_slot_bytes(tp),
						   .idx_copy = idx_copy };
		struct hetsgd_block blk;

		for (int k = 0; k < all[0]; k++) {
			ret = wait_recv(tp, &ev, 10);
			if (ret != 1)
				FAIL("block %d of %d from rank 0 missing (%s)", k, all[0],
				     ret < 0 ? hetsgd_errmsg() : "timeout");
			if (hetsgd_block_decode(ev.data, ev.len, &lim, &blk) || blk.count != 1 ||
			    blk.val[0] != (float)k)
				FAIL("block %d from rank 0 was overwritten (value %g)", k, blk.count ? blk.val[0] : -1.0);
		}
		printf("hostile-check: forge: rank 2 received its %d blocks intact\n", all[0]);
	}
	return 0;
}

/* Word i of an LL line: data in the low half, block 0's flag (1) in the high. */
static uint64_t ll_line(uint32_t data)
{
	return (uint64_t)1 << 32 | data;
}

static int poll_lie(struct hetsgd_boot *b, struct hetsgd_tp *tp, int me, int credit)
{
	if (me == 1) {
		uint64_t w[3];
		int ret;

		if (credit) {	/* 4 bytes, kind 1; credit 0x7fffffff; data */
			w[0] = ll_line(4u | 1u << 24);
			w[1] = ll_line(0x7fffffffu);
			w[2] = ll_line(0xdeadbeefu);
		} else {	/* 0xffffff bytes announced */
			w[0] = ll_line(0xffffffu | 1u << 24);
		}
		ret = hetsgd_tp_test_write(tp, 0, TP_TEST_POLL, 0, 0, 0, w, credit ? sizeof(w) : 8);
		if (ret)
			FAIL("the polled-ring write was refused (%d): %s", ret, hetsgd_errmsg());
		(void)spin(tp, 0.5);
	} else if (me == 0) {
		int ret = spin(tp, 5);

		if (!ret)
			FAIL("rank 1 wrote a %s into its polled ring here and nothing noticed",
			     credit ? "credit for blocks never sent" : "length past the limit");
		if (!strstr(hetsgd_errmsg(), "rank 1"))
			FAIL("the lie was caught, but the message does not name rank 1: %s", hetsgd_errmsg());
		printf("hostile-check: %s: %s\n", credit ? "poll-credit" : "poll-len", hetsgd_errmsg());
	}
	return hetsgd_boot_barrier(b) ? 1 : 0;
}

static int rank_main(struct hetsgd_boot *b, void *arg)
{
	const struct opts *o = arg;
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp;
	int me = hetsgd_boot_rank(b), ret;
	double t0 = now_s();

	hetsgd_tp_attr_init(&a);
	a.provider = o->prov;
	a.slots = SLOTS;
	a.slot_bytes = 4096;
	ret = hetsgd_tp_open(b, &a, &tp);
	if (!strcmp(o->scenario, "connect-dup")) {
		if (!ret)
			FAIL("the job opened although rank 2 claimed its rank twice");
		if (me == 0) {
			if (!strstr(hetsgd_errmsg(), "twice"))
				FAIL("the open failed, but not for the duplicate: %s", hetsgd_errmsg());
			printf("hostile-check: connect-dup: failed in %.1f s: %s\n", now_s() - t0, hetsgd_errmsg());
		}
		return 0;
	}
	if (ret)
		FAIL("open: %s", hetsgd_errmsg());
	if (!strcmp(o->scenario, "rewrite"))
		ret = rewrite(b, tp, me);
	else if (!strcmp(o->scenario, "forge"))
		ret = forge(b, tp, me);
	else if (!strncmp(o->scenario, "poll-", 5))
		ret = poll_lie(b, tp, me, !strcmp(o->scenario, "poll-credit"));
	else {
		/* connect-bogus: the job runs; one block each way proves it. */
		uint32_t idx[1] = { 1 };
		float val[1] = { 2 };
		struct hetsgd_ev ev;

		if (me == 0) {
			while ((ret = put_block(tp, 2, idx, val, 1, 3)) == -EAGAIN)
				spin(tp, 0.001);
		} else if (me == 2) {
			ret = wait_recv(tp, &ev, 10) == 1 ? 0 : -1;
		}
		if (ret)
			FAIL("after the refused requests the job did not run: %s", hetsgd_errmsg());
		if (me == 2)
			printf("hostile-check: connect-bogus: connected and delivered after the refusals\n");
	}
	hetsgd_tp_close(tp);
	return ret;
}

int main(int argc, char **argv)
{
	struct opts o = { .prov = HETSGD_PROV_SHM, .scenario = "rewrite" };
	int n, i;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--provider") && !hetsgd_provider_parse(argv[i + 1], &o.prov))
			continue;
		if (!strcmp(argv[i], "--scenario")) {
			o.scenario = argv[i + 1];
			continue;
		}
		fprintf(stderr, "usage: %s --provider shm|verbs --scenario rewrite|forge|poll-len|poll-credit|"
			"connect-bogus|connect-dup\n",
			argv[0]);
		return 2;
	}
	if (!strncmp(o.scenario, "poll-", 5) && o.prov != HETSGD_PROV_VERBS) {
		fprintf(stderr, "hostile-check: %s needs --provider verbs\n", o.scenario);
		return 2;
	}
	if (!strncmp(o.scenario, "connect-", 8)) {
		if (o.prov != HETSGD_PROV_VERBS) {
			fprintf(stderr, "hostile-check: %s needs --provider verbs\n", o.scenario);
			return 2;
		}
		setenv("HETSGD_TEST_CONNECT", o.scenario + 8, 1);
	}
	n = !strcmp(o.scenario, "rewrite") || !strncmp(o.scenario, "poll-", 5) ? 2 : 3;
	if (hetsgd_boot_local_run(n, rank_main, &o, NULL)) {
		fprintf(stderr, "hostile-check: %s: %s\n", o.scenario, hetsgd_errmsg());
		return 1;
	}
	printf("hostile-check: %s over %s: PASS\n", o.scenario, hetsgd_provider_name(o.prov));
	return 0;
}
