/*
 * A peer that dies mid-stream: rank 1 takes a few blocks and is killed
 * (SIGKILL, no close).  Rank 0 keeps putting; its transport must report
 * the failure with the peer's rank and a reason within the retry budget,
 * keep saying so on every later call, and close without hanging.
 *
 *   hetsgd-peer-death-check --provider verbs
 *
 * verbs only: the peer's NIC stops acknowledging, which the sender sees.
 * Over shm a dead peer only stops releasing slots (puts say -EAGAIN); the
 * launcher, not the transport, notices that process.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hetsgd_transport.h"

static int rank_main(struct hetsgd_boot *b, void *arg)
{
	enum hetsgd_provider *prov = arg;
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp;
	struct hetsgd_ev ev[16];
	struct hetsgd_tx *tx;
	int me = hetsgd_boot_rank(b), got = 0, n, i, ret = 0;
	time_t t0;
	char first[512];

	hetsgd_tp_attr_init(&a);
	a.provider = *prov;
	a.slots = 4;
	a.slot_bytes = 4096;
	if (hetsgd_tp_open(b, &a, &tp)) {
		fprintf(stderr, "peer-death: rank %d: open: %s\n", me, hetsgd_errmsg());
		return 1;
	}
	t0 = time(NULL);
	if (me == 1) {
		while (got < 10 && time(NULL) - t0 < 30) {
			n = hetsgd_tp_progress(tp, ev, 16);
			for (i = 0; i < n; i++)
				if (ev[i].type == HETSGD_EV_RECV && !hetsgd_tp_release(tp, 0, ev[i].slot))
					got++;
		}
		kill(getpid(), SIGKILL);
	}
	/* Rank 0: put until the transport notices that rank 1 is gone. */
	while (time(NULL) - t0 < 120) {
		n = hetsgd_tp_progress(tp, ev, 16);
		if (n < 0) {
			ret = n;
			break;
		}
		if (hetsgd_tp_tx_get(tp, &tx))
			continue;
		ret = hetsgd_tp_put(tp, 1, tx, 1000, 1);
		hetsgd_tp_tx_put(tp, tx);
		if (ret && ret != -EAGAIN)
			break;
		ret = 0;
	}
	snprintf(first, sizeof(first), "%s", hetsgd_errmsg());
	if (!ret) {
		fprintf(stderr, "peer-death: FAIL: rank 0 saw no error within 120 s of rank 1's death\n");
		return 1;
	}
	printf("peer-death: rank 0 noticed after %ld s: %s\n", (long)(time(NULL) - t0), first);
	if (!strstr(first, "rank 1")) {
		fprintf(stderr, "peer-death: FAIL: the error does not name rank 1\n");
		return 1;
	}
	/* Every later call repeats the reason instead of a bare failure. */
	if (hetsgd_tp_progress(tp, ev, 16) != -EIO || !strstr(hetsgd_errmsg(), first)) {
		fprintf(stderr, "peer-death: FAIL: a later call lost the reason: %s\n", hetsgd_errmsg());
		return 1;
	}
	/* Close frees everything; its barrier fails since rank 1 is gone. */
	ret = hetsgd_tp_close(tp);
	printf("peer-death: close returned %d (%s)\n", ret, ret ? hetsgd_errmsg() : "ok");
	return 0;
}

int main(int argc, char **argv)
{
	enum hetsgd_provider prov;
	int st[2] = { 0, 0 };

	if (argc != 3 || strcmp(argv[1], "--provider") || hetsgd_provider_parse(argv[2], &prov) ||
	    prov != HETSGD_PROV_VERBS) {
		fprintf(stderr, "usage: hetsgd-peer-death-check --provider verbs\n");
		return 2;
	}
	hetsgd_boot_local_run(2, rank_main, &prov, st);
	/* The launcher reports rank 1's death; what matters is rank 0's verdict. */
	if (!WIFEXITED(st[0]) || WEXITSTATUS(st[0]) != 0) {
		fprintf(stderr, "peer-death: FAIL: rank 0 status 0x%x\n", st[0]);
		return 1;
	}
	if (!WIFSIGNALED(st[1]) || WTERMSIG(st[1]) != SIGKILL) {
		fprintf(stderr, "peer-death: FAIL: rank 1 was meant to die by SIGKILL (status 0x%x)\n", st[1]);
		return 1;
	}
	printf("peer-death: PASS (%s): the dead peer was named, the reason kept, close returned\n", argv[2]);
	return 0;
}
