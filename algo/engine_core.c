/*
 * The engine's shared core: placement, the mask set-up and the transport
 * error, for every rank (engine_core.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* sched_getaffinity, CPU_ISSET */
#endif
#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_core.h"

int tp_error(int ret, const char *what)
{
	return algo_err(ret, "%s: %s", what, hetsgd_errmsg());
}

int eng_mask_init(struct eng *e, struct hetsgd_mask *mask)
{
	int ret;

	if (!e->k)
		return 0;
	ret = hetsgd_mask_init(mask, e->k, (uint32_t)e->d);
	return ret ? algo_err(ret, "mask of K = %u: %s", e->k, hetsgd_errmsg()) : 0;
}

/*
 * Did the launcher divide this node among its ranks already?  srun with
 * task/affinity (--cpu-bind=cores), mpirun --bind-to core and taskset per
 * rank give each rank a CPU set of its own; a plan that shares one set
 * among the node's ranks would then find too few cores in each rank's
 * binding and leave every thread unpinned.  Ranks on one host (by name)
 * whose sets are pairwise disjoint plan alone inside their own.
 * Collective: every rank calls it, whatever its node holds.
 */
#define BIND_WORDS 16		/* 1024 CPUs */
struct bind_info {
	char host[64];
	uint64_t cpus[BIND_WORDS];
};

static int launcher_divided(struct hetsgd_boot *boot, int rank, int size)
{
	struct bind_info me, *all;
	cpu_set_t set;
	int local = 0, disjoint = 1;

	memset(&me, 0, sizeof(me));
	gethostname(me.host, sizeof(me.host) - 1);
	if (!sched_getaffinity(0, sizeof(set), &set))
		for (int c = 0; c < BIND_WORDS * 64 && c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				me.cpus[c / 64] |= 1ull << (c % 64);
	all = calloc((size_t)size, sizeof(*all));
	/* a broken bootstrap shows again, with its reason, when the transport opens */
	if (!all || hetsgd_boot_allgather(boot, &me, all, sizeof(me))) {
		free(all);
		return 0;
	}
	for (int r = 0; r < size; r++) {
		if (r == rank || strncmp(all[r].host, me.host, sizeof(me.host)))
			continue;
		local++;
		for (int w = 0; w < BIND_WORDS; w++)
			if (all[r].cpus[w] & me.cpus[w])
				disjoint = 0;
	}
	free(all);
	return local > 0 && disjoint;
}

void gather_placements(struct hetsgd_boot *boot, int rank, int size, struct hetsgd_engine_result *res)
{
	struct { char host[64]; char placement[sizeof(res->placement)]; } me, *all;

	memset(&me, 0, sizeof(me));
	gethostname(me.host, sizeof(me.host) - 1);
	memcpy(me.placement, res->placement, sizeof(me.placement));
	me.placement[sizeof(me.placement) - 1] = 0;
	all = calloc((size_t)size, sizeof(*all));
	if (!all || hetsgd_boot_allgather(boot, &me, all, sizeof(me)) || rank != 0) {
		free(all);
		return;
	}
	res->placements = calloc((size_t)size, sizeof(*res->placements));
	if (res->placements) {
		res->nplacements = (uint32_t)size;
		for (int r = 0; r < size; r++)
			snprintf(res->placements[r], sizeof(res->placements[r]), "%.63s: %s",
				 all[r].host, all[r].placement);
	}
	free(all);
}

void eng_place(struct eng *e, struct hetsgd_boot *boot, struct hetsgd_engine_result *res)
{
	/* every rank asks for the same, so that the node's plans agree */
	struct hetsgd_topo_req req = { .compute_threads = e->cfg->compute_threads > 0 ?
							  e->cfg->compute_threads : 1 };
	int lr, ls, ret;

	e->bind = 0;
	e->plan.numa_node = -1;
	if (hetsgd_topo_local_rank(&lr, &ls)) {
		/* the local launcher, or a launcher we do not know: all on one node */
		lr = e->rank;
		ls = e->size;
	}
	if (launcher_divided(boot, e->rank, e->size)) {
		lr = 0;
		ls = 1;
	}
	req.local_rank = lr;
	req.local_size = ls;
	if (hetsgd_topo_open(NULL, &e->topo)) {
		snprintf(res->placement, sizeof(res->placement), "unpinned: %s",
			 hetsgd_topo_errmsg());
		return;
	}
	ret = hetsgd_topo_plan(e->topo, &req, &e->plan);
	if (ret == -ENOSPC) {
		req.oversubscribe = 1;
		ret = hetsgd_topo_plan(e->topo, &req, &e->plan);
	}
	if (ret) {
		snprintf(res->placement, sizeof(res->placement), "unpinned: %s",
			 hetsgd_topo_errmsg());
		e->plan.numa_node = -1;
		return;
	}
	e->bind = e->cfg->pin == 1 || (e->cfg->pin == -1 && !e->plan.oversubscribed);
	if (e->bind) {
		char cpus[96] = "";
		size_t off = 0;

		for (int t = 0; t < e->plan.ncompute && off + 12 < sizeof(cpus); t++)
			off += (size_t)snprintf(cpus + off, sizeof(cpus) - off, "%s%d", t ? "," : "",
						e->plan.compute_pus[t]);
		snprintf(res->placement, sizeof(res->placement),
			 "progress on cpu %d, compute on cpu %s, memory on node %d",
			 e->plan.progress_pu, cpus, e->plan.numa_node);
	}
	else if (e->cfg->pin == 0)
		snprintf(res->placement, sizeof(res->placement), "unpinned, as asked (pin 0)");
	else
		snprintf(res->placement, sizeof(res->placement),
			 "unpinned: %d ranks x %d threads share the cores (pinning would stack them; pin with --pin yes)",
			 ls, req.compute_threads + 1);
}

/* ---- stop on a signal ---- */

/* The first signal that asked this process's run to stop, or 0.  A
 * lock-free atomic: safe in a handler and between threads. */
static atomic_int stop_signo;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop flag must be lock-free to be set from a handler");

void hetsgd_engine_request_stop(int signo)
{
	int none = 0;

	if (signo > 0)
		atomic_compare_exchange_strong(&stop_signo, &none, signo);
}

int hetsgd_engine_stop_signal(void)
{
	return atomic_load(&stop_signo);
}
