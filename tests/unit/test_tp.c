/*
 * Transport semantics on the shm provider with real processes: credits
 * and back-pressure, out-of-order release, argument errors; and the verbs
 * provider's error when no device exists.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <infiniband/verbs.h>
#include <numa.h>
#include <numaif.h>

#include "hetsgd_transport.h"
/* Internal to the library (transport/conn_auth.c), exported for tests. */
#include "transport_priv.h"

#define CHECK(cond, code) do { if (!(cond)) { fprintf(stderr, "line %d: %s: %s\n", __LINE__, #cond, \
						hetsgd_errmsg()); return code; } } while (0)

static int open_shm(struct hetsgd_boot *b, uint32_t slots, struct hetsgd_tp **tp)
{
	struct hetsgd_tp_attr a;

	hetsgd_tp_attr_init(&a);
	a.provider = HETSGD_PROV_SHM;
	a.slots = slots;
	a.slot_bytes = 256;
	a.tx_bufs = 4;
	return hetsgd_tp_open(b, &a, tp);
}

static int put_byte(struct hetsgd_tp *tp, int peer, uint8_t v)
{
	struct hetsgd_tx *tx;
	int ret = hetsgd_tp_tx_get(tp, &tx);

	if (ret)
		return ret;
	memset(tx->data, v, 100);
	ret = hetsgd_tp_put(tp, peer, tx, 100, v);
	hetsgd_tp_tx_put(tp, tx);
	return ret;
}

/* Receive exactly n blocks (spinning on progress), recording slots and bytes. */
static int recv_n(struct hetsgd_tp *tp, int n, uint32_t *slots, uint8_t *vals)
{
	struct hetsgd_ev ev[8];
	int got = 0, i, r, spins = 0;

	while (got < n) {
		r = hetsgd_tp_progress(tp, ev, 8);
		if (r < 0)
			return r;
		for (i = 0; i < r; i++) {
			if (ev[i].type != HETSGD_EV_RECV)
				continue;
			if (got == n || ev[i].len != 100 || ((const uint8_t *)ev[i].data)[99] != ev[i].kind)
				return -EBADMSG;
			slots[got] = ev[i].slot;
			vals[got] = ev[i].kind;
			got++;
		}
		if (++spins > 50000000)
			return -ETIMEDOUT;
	}
	return 0;
}

static int credits_rank(struct hetsgd_boot *b, void *arg)
{
	struct hetsgd_tp *tp;
	uint32_t slots[4];
	uint8_t vals[4];

	(void)arg;
	CHECK(open_shm(b, 2, &tp) == 0, 10);
	if (hetsgd_boot_rank(b) == 0) {
		CHECK(put_byte(tp, 1, 'A') == 0, 11);
		CHECK(put_byte(tp, 1, 'B') == 0, 12);
		CHECK(put_byte(tp, 1, 'C') == -EAGAIN, 13);	/* ring full */
		hetsgd_boot_barrier(b);				/* 1: receiver takes both */
		hetsgd_boot_barrier(b);				/* 2: it released B only */
		CHECK(put_byte(tp, 1, 'C') == -EAGAIN, 14);	/* A's slot still held */
		hetsgd_boot_barrier(b);
		hetsgd_boot_barrier(b);				/* 4: A released too */
		CHECK(put_byte(tp, 1, 'C') == 0, 15);
		CHECK(put_byte(tp, 1, 'D') == 0, 16);
		CHECK(put_byte(tp, 1, 'E') == -EAGAIN, 17);
		hetsgd_boot_barrier(b);
	} else {
		hetsgd_boot_barrier(b);
		CHECK(recv_n(tp, 2, slots, vals) == 0, 20);
		CHECK(vals[0] == 'A' && vals[1] == 'B' && slots[0] == 0 && slots[1] == 1, 21);
		CHECK(hetsgd_tp_release(tp, 0, slots[1]) == 0, 22);
		CHECK(hetsgd_tp_release(tp, 0, slots[1]) == -EINVAL, 23);	/* twice */
		CHECK(strstr(hetsgd_errmsg(), "exactly once"), 24);
		hetsgd_boot_barrier(b);
		hetsgd_boot_barrier(b);
		CHECK(hetsgd_tp_release(tp, 0, slots[0]) == 0, 25);
		hetsgd_boot_barrier(b);
		hetsgd_boot_barrier(b);
		CHECK(recv_n(tp, 2, slots, vals) == 0, 26);
		CHECK(vals[0] == 'C' && vals[1] == 'D' && slots[0] == 0 && slots[1] == 1, 27);
		CHECK(hetsgd_tp_release(tp, 0, slots[0]) == 0, 28);
		CHECK(hetsgd_tp_release(tp, 0, slots[1]) == 0, 29);
	}
	CHECK(hetsgd_tp_close(tp) == 0, 30);
	return 0;
}

Test(tp_shm, credits_and_out_of_order_release, .timeout = 30)
{
	int st[2];

	cr_assert_eq(hetsgd_boot_local_run(2, credits_rank, NULL, st), 0, "%s (statuses %x %x)",
		     hetsgd_errmsg(), st[0], st[1]);
}

static int errors_rank(struct hetsgd_boot *b, void *arg)
{
	struct hetsgd_tp *tp;
	struct hetsgd_tx *tx, fake = { 0 };
	struct hetsgd_ev ev;
	int me = hetsgd_boot_rank(b);

	(void)arg;
	CHECK(open_shm(b, 2, &tp) == 0, 10);
	CHECK(hetsgd_tp_slot_bytes(tp) == 256 && hetsgd_tp_size(tp) == 2 && hetsgd_tp_rank(tp) == me, 11);
	CHECK(strstr(hetsgd_tp_describe(tp), "shm"), 12);
	CHECK(hetsgd_tp_tx_get(tp, &tx) == 0, 13);
	CHECK(hetsgd_tp_put(tp, me, tx, 8, 0) == -EINVAL, 14);			/* to self */
	CHECK(hetsgd_tp_put(tp, 2, tx, 8, 0) == -EINVAL, 15);			/* no such rank */
	CHECK(hetsgd_tp_put(tp, 1 - me, tx, 257, 0) == -EMSGSIZE, 16);		/* beyond the slot */
	CHECK(strstr(hetsgd_errmsg(), "slot_bytes"), 17);
	CHECK(hetsgd_tp_put(tp, 1 - me, &fake, 8, 0) == -EINVAL, 18);		/* not from the pool */
	CHECK(hetsgd_tp_release(tp, 1 - me, 0) == -EINVAL, 19);		/* nothing held */
	CHECK(hetsgd_tp_release(tp, 1 - me, 99) == -EINVAL, 20);
	CHECK(hetsgd_tp_progress(tp, &ev, 0) == 0, 21);
	CHECK(hetsgd_tp_progress(tp, NULL, 1) == -EINVAL, 22);
	hetsgd_tp_tx_put(tp, tx);
	/* Four buffers, then the pool is empty: -EAGAIN, not a crash. */
	{
		struct hetsgd_tx *t[5];
		int i;

		for (i = 0; i < 4; i++)
			CHECK(hetsgd_tp_tx_get(tp, &t[i]) == 0, 23);
		CHECK(hetsgd_tp_tx_get(tp, &t[4]) == -EAGAIN, 24);
		for (i = 0; i < 4; i++)
			hetsgd_tp_tx_put(tp, t[i]);
		CHECK(hetsgd_tp_tx_get(tp, &t[0]) == 0, 25);
		hetsgd_tp_tx_put(tp, t[0]);
	}
	CHECK(hetsgd_tp_close(tp) == 0, 30);
	return 0;
}

Test(tp_shm, argument_errors, .timeout = 30)
{
	cr_assert_eq(hetsgd_boot_local_run(2, errors_rank, NULL, NULL), 0, "%s", hetsgd_errmsg());
}

static int bad_attr_rank(struct hetsgd_boot *b, void *arg)
{
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp = NULL;

	(void)arg;
	hetsgd_tp_attr_init(&a);
	a.slot_bytes = 100;
	CHECK(hetsgd_tp_open(b, &a, &tp) == -EINVAL && !tp, 1);
	CHECK(strstr(hetsgd_errmsg(), "multiple of 64"), 2);
	hetsgd_tp_attr_init(&a);
	a.slots = 100000;
	CHECK(hetsgd_tp_open(b, &a, &tp) == -EINVAL, 3);
	return 0;
}

Test(tp_shm, bad_attributes_are_refused)
{
	cr_assert_eq(hetsgd_boot_local_run(1, bad_attr_rank, NULL, NULL), 0, "%s", hetsgd_errmsg());
}

Test(tp, provider_names)
{
	enum hetsgd_provider p;

	cr_assert_eq(hetsgd_provider_parse("verbs", &p), 0);
	cr_assert_eq(p, HETSGD_PROV_VERBS);
	cr_assert_eq(hetsgd_provider_parse("shm", &p), 0);
	cr_assert_eq(p, HETSGD_PROV_SHM);
	cr_assert_eq(hetsgd_provider_parse("ucx", &p), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "'ucx'"));
	cr_assert_str_eq(hetsgd_provider_name(HETSGD_PROV_VERBS), "verbs");
}

Test(tp, pattern_names)
{
	enum hetsgd_tp_pattern p;

	cr_assert_eq(hetsgd_tp_pattern_parse("star", &p), 0);
	cr_assert_eq(p, HETSGD_TP_STAR);
	cr_assert_eq(hetsgd_tp_pattern_parse("all", &p), 0);
	cr_assert_eq(p, HETSGD_TP_ALL);
	cr_assert_eq(hetsgd_tp_pattern_parse("ring", &p), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "'ring'") && strstr(hetsgd_errmsg(), "star"));
	cr_assert_str_eq(hetsgd_tp_pattern_name(HETSGD_TP_STAR), "star");
	cr_assert_str_eq(hetsgd_tp_pattern_name((enum hetsgd_tp_pattern)7), "invalid");
}

/* Rank 2 declares another pattern than rank 0: open fails on every rank,
 * naming the rank and both patterns; a bad pattern value is refused. */
static int pattern_mismatch_rank(struct hetsgd_boot *b, void *arg)
{
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp = NULL;
	int me = hetsgd_boot_rank(b);

	(void)arg;
	hetsgd_tp_attr_init(&a);
	a.pattern = me == 2 ? HETSGD_TP_ALL : HETSGD_TP_STAR;
	CHECK(hetsgd_tp_open(b, &a, &tp) == -EINVAL && !tp, 1);
	CHECK(strstr(hetsgd_errmsg(), "rank 2") && strstr(hetsgd_errmsg(), "pattern all") &&
	      strstr(hetsgd_errmsg(), "with star"), 2);
	a.pattern = (enum hetsgd_tp_pattern)9;
	CHECK(hetsgd_tp_open(b, &a, &tp) == -EINVAL && !tp, 3);
	CHECK(strstr(hetsgd_errmsg(), "pattern 9"), 4);
	/* and the same pattern everywhere opens, with release for a non-peer refused */
	a.pattern = HETSGD_TP_STAR;
	CHECK(hetsgd_tp_open(b, &a, &tp) == 0, 5);
	CHECK(hetsgd_tp_peer_up(tp, 0) == (me != 0) && hetsgd_tp_peer_up(tp, 1) == (me == 0), 6);
	if (me == 1) {
		CHECK(hetsgd_tp_release(tp, 2, 0) == -EINVAL, 7);
		CHECK(strstr(hetsgd_errmsg(), "not a peer") && strstr(hetsgd_errmsg(), "star"), 8);
	}
	CHECK(hetsgd_tp_close(tp) == 0, 9);
	return 0;
}

Test(tp_shm, every_rank_declares_the_same_pattern, .timeout = 30)
{
	cr_assert_eq(hetsgd_boot_local_run(3, pattern_mismatch_rank, NULL, NULL), 0, "%s", hetsgd_errmsg());
}

static int verbs_nodev_rank(struct hetsgd_boot *b, void *arg)
{
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp = NULL;
	int ret;

	(void)arg;
	hetsgd_tp_attr_init(&a);
	a.provider = HETSGD_PROV_VERBS;
	ret = hetsgd_tp_open(b, &a, &tp);
	CHECK(ret == -ENODEV && !tp, 1);
	CHECK(strstr(hetsgd_errmsg(), "rdma link add"), 2);
	return 0;
}

/* A bad reaction-time setting (the ring's depth rule) fails open on every rank, naming it. */
static int verbs_bad_sched_rank(struct hetsgd_boot *b, void *arg)
{
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp = NULL;

	(void)arg;
	hetsgd_tp_attr_init(&a);
	a.provider = HETSGD_PROV_VERBS;
	CHECK(hetsgd_tp_open(b, &a, &tp) == -EINVAL && !tp, 1);
	CHECK(strstr(hetsgd_errmsg(), hetsgd_boot_rank(b) == 0 ? "HETSGD_SCHED_US" : "size its ring"), 2);
	/* given slots skip the rule, and the setting with it */
	a.slots = 4;
	CHECK(hetsgd_tp_open(b, &a, &tp) != -EINVAL || !strstr(hetsgd_errmsg(), "HETSGD_SCHED_US"), 3);
	if (tp)
		hetsgd_tp_close(tp);
	return 0;
}

static int verbs_bad_sched_setup(struct hetsgd_boot *b, void *arg)
{
	/* only rank 0 has the bad value: rank 1 must still fail, naming rank 0 */
	if (hetsgd_boot_rank(b) == 0)
		setenv("HETSGD_SCHED_US", "soon", 1);
	return verbs_bad_sched_rank(b, arg);
}

Test(tp_verbs, a_bad_reaction_time_is_a_clear_error, .timeout = 30)
{
	cr_assert_eq(hetsgd_boot_local_run(2, verbs_bad_sched_setup, NULL, NULL), 0, "%s", hetsgd_errmsg());
}

Test(tp_verbs, no_device_is_a_clear_error)
{
	int n = 0;
	struct ibv_device **d = ibv_get_device_list(&n);

	if (d)
		ibv_free_device_list(d);
	if (n > 0)
		cr_skip_test("this host has an RDMA device; the verbs tests run in make check-rdma");
	cr_assert_eq(hetsgd_boot_local_run(1, verbs_nodev_rank, NULL, NULL), 0, "%s", hetsgd_errmsg());
}

/* The transport's buffers live on the node the caller asked for. */
static int numa_rank(struct hetsgd_boot *b, void *arg)
{
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp = NULL;
	struct hetsgd_tx *tx;
	int node = -1, ret;

	(void)arg;
	hetsgd_tp_attr_init(&a);
	a.numa_node = 0;
	CHECK(hetsgd_tp_open(b, &a, &tp) == 0, 1);
	CHECK(hetsgd_tp_tx_get(tp, &tx) == 0, 2);
	ret = get_mempolicy(&node, NULL, 0, tx->data, MPOL_F_NODE | MPOL_F_ADDR);
	CHECK(ret == 0 && node == 0, 3);
	hetsgd_tp_tx_put(tp, tx);
	CHECK(hetsgd_tp_close(tp) == 0, 4);

	/* A node that does not exist is refused with the reason. */
	a.numa_node = numa_max_node() + 1;
	CHECK(hetsgd_tp_open(b, &a, &tp) == -EINVAL, 5);
	CHECK(strstr(hetsgd_errmsg(), "NUMA node"), 6);
	a.numa_node = -2;
	CHECK(hetsgd_tp_open(b, &a, &tp) == -EINVAL, 7);
	return 0;
}

Test(tp_shm, buffers_on_the_requested_numa_node)
{
	if (numa_available() < 0)
		cr_skip_test("this kernel has no NUMA support");
	cr_assert_eq(hetsgd_boot_local_run(1, numa_rank, NULL, NULL), 0, "%s", hetsgd_errmsg());
}

/* ---- connection proofs (conn_auth.c) --------------------------------------- */

static void job_key(const char *secret, uint8_t fill, uint8_t key[16])
{
	uint8_t nonce0[16];

	memset(nonce0, fill, sizeof(nonce0));
	cr_assert_eq(tp_job_key(secret, nonce0, key), 0);
}

Test(conn_auth, a_request_proves_the_job_key_rank_ring_and_queue_pair)
{
	struct tp_conn c = { .type = TP_CONN_REQ, .rank = 3, .target = 1, .rkey = 0xabcd,
			     .ring = 0x7f0012345000ull, .nonce = 42 }, out;
	uint8_t key[16], other[16], pd[TP_CONN_LEN];

	job_key("0123456789abcdef", 7, key);
	tp_conn_pack(key, &c, 0x111, 0, pd);
	cr_assert_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REQ, 0x111, 0, &out), 0, "%s", hetsgd_errmsg());
	cr_expect_eq(out.rank, 3);
	cr_expect_eq(out.target, 1);
	cr_expect_eq(out.rkey, 0xabcd);
	cr_expect_eq(out.ring, 0x7f0012345000ull);
	cr_expect_eq(out.nonce, 42);

	/* Another job (other nonce), another secret, another queue pair. */
	job_key("0123456789abcdef", 8, other);
	cr_expect_eq(tp_conn_parse(other, pd, sizeof(pd), TP_CONN_REQ, 0x111, 0, &out), -EACCES);
	job_key("fedcba9876543210", 7, other);
	cr_expect_eq(tp_conn_parse(other, pd, sizeof(pd), TP_CONN_REQ, 0x111, 0, &out), -EACCES);
	job_key(NULL, 7, other);
	cr_expect_eq(tp_conn_parse(other, pd, sizeof(pd), TP_CONN_REQ, 0x111, 0, &out), -EACCES);
	cr_expect_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REQ, 0x112, 0, &out), -EACCES);
	cr_expect(strstr(hetsgd_errmsg(), "not a rank of this job"), "%s", hetsgd_errmsg());

	/* Any bit changed in the body: the proof fails. */
	for (size_t i = 4; i < 32; i++) {
		pd[i] ^= 0x10;
		cr_expect_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REQ, 0x111, 0, &out), -EACCES, "byte %zu", i);
		pd[i] ^= 0x10;
	}
}

Test(conn_auth, malformed_private_data_is_refused_without_reading_past_it)
{
	struct tp_conn c = { .type = TP_CONN_REQ, .rank = 2, .target = 0 }, out;
	uint8_t key[16], pd[TP_CONN_LEN], junk[56];

	job_key(NULL, 1, key);
	tp_conn_pack(key, &c, 5, 0, pd);
	for (size_t n = 0; n < TP_CONN_LEN; n++)
		cr_expect_eq(tp_conn_parse(key, pd, n, TP_CONN_REQ, 5, 0, &out), -EBADMSG, "length %zu", n);
	cr_expect_eq(tp_conn_parse(key, NULL, 40, TP_CONN_REQ, 5, 0, &out), -EBADMSG);
	memset(junk, 0x5a, sizeof(junk));
	cr_expect_eq(tp_conn_parse(key, junk, sizeof(junk), TP_CONN_REQ, 5, 0, &out), -EBADMSG);
	pd[2] = 9;
	cr_expect_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REQ, 5, 0, &out), -EPROTO);
	cr_expect(strstr(hetsgd_errmsg(), "same hetsgd"), "%s", hetsgd_errmsg());
}

Test(conn_auth, an_answer_is_bound_to_its_request_and_an_abort_passes_as_a_request)
{
	struct tp_conn rep = { .type = TP_CONN_REP, .rank = 0, .target = 2, .nonce = 9 }, out;
	struct tp_conn abt = { .type = TP_CONN_ABORT, .rank = 2, .target = 0 };
	uint8_t key[16], pd[TP_CONN_LEN];

	job_key(NULL, 3, key);
	tp_conn_pack(key, &rep, 77, 1234, pd);
	cr_expect_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REP, 77, 1234, &out), 0, "%s", hetsgd_errmsg());
	cr_expect_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REP, 77, 1235, &out), -EACCES);
	/* An answer is not a request, nor the reverse. */
	cr_expect_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REQ, 77, 1234, &out), -EBADMSG);
	tp_conn_pack(key, &abt, 0, 0, pd);
	cr_expect_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REQ, 0, 0, &out), 0, "%s", hetsgd_errmsg());
	cr_expect_eq(out.type, TP_CONN_ABORT);
	cr_expect_eq(tp_conn_parse(key, pd, sizeof(pd), TP_CONN_REP, 0, 0, &out), -EBADMSG);
}
