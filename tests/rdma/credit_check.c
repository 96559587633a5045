/*
 * Credit liveness: the receiver releases fewer blocks than a credit batch
 * (slots/4 on verbs) and keeps holding the rest, waiting for more data
 * from the same sender.  The sender, whose ring is full, must still learn
 * of the released slot and send the next block; otherwise both wait
 * forever.  The receiver holds the full ring 50 ms first, so the sender
 * surely waits: its counters must show exactly one wait for a credit (one
 * stretch of refusals, however many retries) and none for anything else.
 *
 *   hetsgd-credit-check --provider shm|verbs
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hetsgd_transport.h"

#define SLOTS 8

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int rank_main(struct hetsgd_boot *b, void *arg)
{
	enum hetsgd_provider *prov = arg;
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp;
	struct hetsgd_ev ev[16];
	uint32_t slots[SLOTS + 1];
	int me = hetsgd_boot_rank(b), got = 0, i, n, ret;
	double t0;

	hetsgd_tp_attr_init(&a);
	a.provider = *prov;
	a.slots = SLOTS;
	a.slot_bytes = 128;
	if (hetsgd_tp_open(b, &a, &tp)) {
		fprintf(stderr, "credit-check: rank %d: %s\n", me, hetsgd_errmsg());
		return 1;
	}
	if (me == 0) {
		struct hetsgd_tx *tx;
		int sent = 0;

		t0 = now_s();
		while (sent < SLOTS + 1) {
			if (now_s() - t0 > 10) {
				fprintf(stderr, "credit-check: FAIL: sent %d blocks; block %d never got a credit "
					"although the receiver released a slot\n", sent, sent);
				return 1;
			}
			n = hetsgd_tp_progress(tp, ev, 16);
			if (n < 0 || hetsgd_tp_tx_get(tp, &tx))
				continue;
			memset(tx->data, sent, 64);
			ret = hetsgd_tp_put(tp, 1, tx, 64, (uint8_t)sent);
			hetsgd_tp_tx_put(tp, tx);
			if (ret == 0)
				sent++;
			else if (ret != -EAGAIN) {
				fprintf(stderr, "credit-check: put: %s\n", hetsgd_errmsg());
				return 1;
			}
		}
		printf("credit-check: the sender got its credit after %.3f s\n", now_s() - t0);
		{
			struct hetsgd_tp_stats st;

			/* The receiver held the full ring 50 ms: one wait, however many retries. */
			if (hetsgd_tp_get_stats(tp, &st) || st.credit_waits != 1 || st.queue_waits != 0 ||
			    st.puts != SLOTS + 1) {
				fprintf(stderr, "credit-check: FAIL: the counters say %llu puts, %llu credit waits, %llu "
					"queue waits; expected %d, 1 and 0\n", (unsigned long long)st.puts,
					(unsigned long long)st.credit_waits, (unsigned long long)st.queue_waits, SLOTS + 1);
				return 1;
			}
		}
	} else {
		t0 = now_s();
		while (got < SLOTS + 1) {
			if (now_s() - t0 > 10) {
				fprintf(stderr, "credit-check: FAIL: received %d of %d blocks\n", got, SLOTS + 1);
				return 1;
			}
			n = hetsgd_tp_progress(tp, ev, 16);
			if (n < 0) {
				fprintf(stderr, "credit-check: progress: %s\n", hetsgd_errmsg());
				return 1;
			}
			for (i = 0; i < n; i++) {
				if (ev[i].type != HETSGD_EV_RECV)
					continue;
				if (ev[i].kind != got) {
					fprintf(stderr, "credit-check: FAIL: block %d arrived as %u\n", got, ev[i].kind);
					return 1;
				}
				slots[got++] = ev[i].slot;
				/*
				 * The ring is full: hold it 50 ms, so that the
				 * sender surely waits, then release the first
				 * block only, fewer than a batch (2 of 8 slots).
				 */
				if (got == SLOTS) {
					struct timespec hold = { 0, 50 * 1000 * 1000 };

					nanosleep(&hold, NULL);
					if (hetsgd_tp_release(tp, 1 - me, slots[0]))
						return 1;
				}
			}
		}
		for (i = 1; i < SLOTS + 1; i++)
			if (hetsgd_tp_release(tp, 1 - me, slots[i]))
				return 1;
	}
	if (hetsgd_tp_close(tp)) {
		fprintf(stderr, "credit-check: rank %d: close: %s\n", me, hetsgd_errmsg());
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	enum hetsgd_provider prov;

	if (argc != 3 || strcmp(argv[1], "--provider") || hetsgd_provider_parse(argv[2], &prov)) {
		fprintf(stderr, "usage: hetsgd-credit-check --provider shm|verbs\n");
		return 2;
	}
	if (hetsgd_boot_local_run(2, rank_main, &prov, NULL)) {
		fprintf(stderr, "credit-check: FAIL: %s\n", hetsgd_errmsg());
		return 1;
	}
	printf("credit-check: PASS (%s): a sender blocked on a full ring learned of 1 released slot "
	       "while the receiver held the other 7, and counted one credit wait\n", argv[2]);
	return 0;
}
