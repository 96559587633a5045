/*
 * A peer that dies mid-stream: rank 1 takes a few blocks and is killed
 * (SIGKILL, no close).  Rank 0 keeps putting; its transport must report
 * HETSGD_EV_PEER_DOWN for rank 1, with the reason, within 2 s of the
 * death, refuse later puts to it with -EPIPE naming it, stay usable
 * (progress goes on), and close without hanging: close waits for the live
 * peers only (a rank that is down counts as arrived).  Rank 0 streams in
 * bursts by hetsgd_tp_put_more() (every fourth put a plain one), so writes
 * held in a chain meet the death too, and a put_more to the dead rank is
 * refused like a put.
 *
 *   hetsgd-peer-death-check --provider shm|verbs
 *
 * shm watches the peer's process (pidfd); verbs sees the connection end
 * (rdma_cm DISCONNECTED) or a write fail.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hetsgd_transport.h"

static int death_pipe[2];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int rank_main(struct hetsgd_boot *b, void *arg)
{
	enum hetsgd_provider *prov = arg;
	struct hetsgd_tp_attr a;
	struct hetsgd_tp *tp;
	struct hetsgd_ev ev[16];
	struct hetsgd_tx *tx;
	int me = hetsgd_boot_rank(b), got = 0, n, i, ret = 0, down = 0;
	unsigned puts = 0;
	double t0 = now_s(), t_down = 0, t_death = 0;
	char why[512] = "";

	hetsgd_tp_attr_init(&a);
	a.provider = *prov;
	a.slots = 4;
	a.slot_bytes = 4096;
	if (hetsgd_tp_open(b, &a, &tp)) {
		fprintf(stderr, "peer-death: rank %d: open: %s\n", me, hetsgd_errmsg());
		return 1;
	}
	if (me == 1) {
		while (got < 10 && now_s() - t0 < 30) {
			n = hetsgd_tp_progress(tp, ev, 16);
			for (i = 0; i < n; i++)
				if (ev[i].type == HETSGD_EV_RECV && !hetsgd_tp_release(tp, 0, ev[i].slot))
					got++;
		}
		t_death = now_s();
		if (write(death_pipe[1], &t_death, sizeof(t_death)) != sizeof(t_death))
			return 1;
		kill(getpid(), SIGKILL);
	}
	close(death_pipe[1]);
	/* Rank 0: put until the transport says that rank 1 is down. */
	while (!down && now_s() - t0 < 60) {
		n = hetsgd_tp_progress(tp, ev, 16);
		if (n < 0) {
			fprintf(stderr, "peer-death: FAIL: the endpoint failed instead of one peer: %s\n",
				hetsgd_errmsg());
			return 1;
		}
		for (i = 0; i < n; i++)
			if (ev[i].type == HETSGD_EV_PEER_DOWN) {
				if (ev[i].peer != 1 || !ev[i].why) {
					fprintf(stderr, "peer-death: FAIL: PEER_DOWN for rank %d\n", ev[i].peer);
					return 1;
				}
				down = 1;
				t_down = now_s();
				snprintf(why, sizeof(why), "%s", ev[i].why);
			}
		if (down || hetsgd_tp_tx_get(tp, &tx))
			continue;
		ret = (++puts % 4 ? hetsgd_tp_put_more : hetsgd_tp_put)(tp, 1, tx, 1000, 1);
		hetsgd_tp_tx_put(tp, tx);
		if (ret && ret != -EAGAIN) {
			fprintf(stderr, "peer-death: FAIL: a put failed before PEER_DOWN: %s\n", hetsgd_errmsg());
			return 1;
		}
	}
	if (!down) {
		fprintf(stderr, "peer-death: FAIL: rank 0 saw no PEER_DOWN within 60 s of rank 1's death\n");
		return 1;
	}
	if (read(death_pipe[0], &t_death, sizeof(t_death)) != sizeof(t_death))
		t_death = t0;
	printf("peer-death: rank 0 noticed %.3f s after the death: %s\n", t_down - t_death, why);
	if (!strstr(why, "rank 1")) {
		fprintf(stderr, "peer-death: FAIL: the reason does not name rank 1\n");
		return 1;
	}
	if (t_down - t_death > 2.0) {
		fprintf(stderr, "peer-death: FAIL: noticed after %.3f s; the bound is 2 s\n", t_down - t_death);
		return 1;
	}
	/* Later puts to it fail and say why; the endpoint still works. */
	if (hetsgd_tp_tx_get(tp, &tx)) {
		fprintf(stderr, "peer-death: FAIL: no send buffer after the death: %s\n", hetsgd_errmsg());
		return 1;
	}
	ret = hetsgd_tp_put(tp, 1, tx, 100, 1);
	hetsgd_tp_tx_put(tp, tx);
	if (ret != -EPIPE || !strstr(hetsgd_errmsg(), "rank 1") || hetsgd_tp_peer_up(tp, 1)) {
		fprintf(stderr, "peer-death: FAIL: a put to the dead rank returned %d (%s)\n", ret,
			hetsgd_errmsg());
		return 1;
	}
	if (hetsgd_tp_tx_get(tp, &tx)) {
		fprintf(stderr, "peer-death: FAIL: no send buffer after the death: %s\n", hetsgd_errmsg());
		return 1;
	}
	ret = hetsgd_tp_put_more(tp, 1, tx, 100, 1);
	hetsgd_tp_tx_put(tp, tx);
	if (ret != -EPIPE || !strstr(hetsgd_errmsg(), "rank 1")) {
		fprintf(stderr, "peer-death: FAIL: a put_more to the dead rank returned %d (%s)\n", ret,
			hetsgd_errmsg());
		return 1;
	}
	if (hetsgd_tp_progress(tp, ev, 16) < 0) {
		fprintf(stderr, "peer-death: FAIL: progress failed after the death: %s\n", hetsgd_errmsg());
		return 1;
	}
	ret = hetsgd_tp_close(tp);
	if (ret) {
		fprintf(stderr, "peer-death: FAIL: close returned %d: %s\n", ret, hetsgd_errmsg());
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	enum hetsgd_provider prov;
	int st[2] = { 0, 0 }, ret;

	if (argc != 3 || strcmp(argv[1], "--provider") || hetsgd_provider_parse(argv[2], &prov)) {
		fprintf(stderr, "usage: hetsgd-peer-death-check --provider shm|verbs\n");
		return 2;
	}
	if (pipe(death_pipe))
		return 2;
	ret = hetsgd_boot_local_run(2, rank_main, &prov, st);
	if (!WIFEXITED(st[0]) || WEXITSTATUS(st[0]) != 0) {
		fprintf(stderr, "peer-death: FAIL: rank 0 status 0x%x\n", st[0]);
		return 1;
	}
	if (!WIFSIGNALED(st[1]) || WTERMSIG(st[1]) != SIGKILL) {
		fprintf(stderr, "peer-death: FAIL: rank 1 was meant to die by SIGKILL (status 0x%x)\n", st[1]);
		return 1;
	}
	/* The launcher names the killed rank, not one that failed after it. */
	if (ret != -ECHILD || !strstr(hetsgd_errmsg(), "rank 1 was killed by signal 9")) {
		fprintf(stderr, "peer-death: FAIL: the launcher said %d: %s\n", ret, hetsgd_errmsg());
		return 1;
	}
	printf("peer-death: PASS (%s): PEER_DOWN named rank 1, puts to it fail, the endpoint and close work\n",
	       argv[2]);
	return 0;
}
