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
struct bind_short {
	int cpus, need;		/* see struct eng's short_cpus */
};

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

/*
 * A launcher that binds each task to fewer CPUs than its threads (Slurm
 * >= 22.05 when srun is not given -c, or a site default of one CPU per
 * task) leaves every rank unpinned and sharing cores: the run is slower
 * and noisier, and only summary.txt would say why.  One line from rank 0,
 * at start, for all of them.
 */
static void warn_short_bindings(const struct bind_short *all, const char (*hosts)[64], int size)
{
	int n = 0, first = -1;

	for (int r = 0; r < size; r++)
		if (all[r].cpus > 0) {
			n++;
			if (first < 0)
				first = r;
		}
	if (!n)
		return;
	hetsgd_log(HETSGD_LOG_WARN, "engine",
		   "%d of %d ranks run unpinned: the launcher bound each to fewer CPUs than its threads need "
		   "(rank %d on %.63s: %d CPU%s for %d threads); give every task its CPUs, e.g. "
		   "srun -c \"$SLURM_CPUS_PER_TASK\" --cpu-bind=cores (Slurm >= 22.05 no longer passes sbatch's "
		   "--cpus-per-task to srun) or export SRUN_CPUS_PER_TASK, or use fewer --threads",
		   n, size, first, hosts[first], all[first].cpus, all[first].cpus == 1 ? "" : "s",
		   all[first].need);
}

void gather_placements(struct eng *e, struct hetsgd_boot *boot, struct hetsgd_engine_result *res)
{
	struct {
		char host[64];
		char placement[sizeof(res->placement)];
		struct bind_short b;
	} me, *all;
	struct bind_short *shorts;
	char (*hosts)[64];
	int rank = e->rank, size = e->size;

	memset(&me, 0, sizeof(me));
	gethostname(me.host, sizeof(me.host) - 1);
	memcpy(me.placement, res->placement, sizeof(me.placement));
	me.placement[sizeof(me.placement) - 1] = 0;
	me.b.cpus = e->short_cpus;
	me.b.need = e->short_need;
	all = calloc((size_t)size, sizeof(*all));
	if (!all || hetsgd_boot_allgather(boot, &me, all, sizeof(me)) || rank != 0) {
		free(all);
		return;
	}
	shorts = calloc((size_t)size, sizeof(*shorts));
	hosts = calloc((size_t)size, sizeof(*hosts));
	if (shorts && hosts) {
		for (int r = 0; r < size; r++) {
			shorts[r] = all[r].b;
			memcpy(hosts[r], all[r].host, sizeof(hosts[r]));
		}
		warn_short_bindings(shorts, (const char (*)[64])hosts, size);
	}
	free(shorts);
	free(hosts);
	res->placements = calloc((size_t)size, sizeof(*res->placements));
	if (res->placements) {
		res->nplacements = (uint32_t)size;
		for (int r = 0; r < size; r++)
			snprintf(res->placements[r], sizeof(res->placements[r]), "%.63s: %s",
				 all[r].host, all[r].placement);
	}
	free(all);
}

void gather_footprints(struct eng *e, struct hetsgd_boot *boot, struct hetsgd_engine_result *res)
{
	struct hetsgd_tp_footprint *all, *lo = &res->fp_workers_min, *hi = &res->fp_workers_max;

	if (hetsgd_tp_get_footprint(e->tp, &res->fp))
		memset(&res->fp, 0, sizeof(res->fp));
	all = calloc((size_t)e->size, sizeof(*all));
	if (!all || hetsgd_boot_allgather(boot, &res->fp, all, sizeof(res->fp)) || e->rank != 0 ||
	    e->size < 2) {
		free(all);
		return;
	}
	*lo = *hi = all[1];
	/* the workers only: a sharded parameter server's shard ranks come after */
	for (int r = 2; r <= (int)e->n; r++) {
		const struct hetsgd_tp_footprint *f = &all[r];

		lo->peers = f->peers < lo->peers ? f->peers : lo->peers;
		lo->conns = f->conns < lo->conns ? f->conns : lo->conns;
		lo->registered_bytes = f->registered_bytes < lo->registered_bytes ? f->registered_bytes
										  : lo->registered_bytes;
		lo->connect_s = f->connect_s < lo->connect_s ? f->connect_s : lo->connect_s;
		hi->peers = f->peers > hi->peers ? f->peers : hi->peers;
		hi->conns = f->conns > hi->conns ? f->conns : hi->conns;
		hi->registered_bytes = f->registered_bytes > hi->registered_bytes ? f->registered_bytes
										  : hi->registered_bytes;
		hi->connect_s = f->connect_s > hi->connect_s ? f->connect_s : hi->connect_s;
	}
	res->fp_workers_ok = 1;
	free(all);
}

/*
 * Oversubscribed inside a binding narrower than the machine: the launcher,
 * not the machine, is short of CPUs.  A local run of more ranks than
 * cores is not (every rank sees every CPU), and says so only in
 * summary.txt.
 */
static int bound_short(struct eng *e, int need)
{
	cpu_set_t set;
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	int have;

	if (sched_getaffinity(0, sizeof(set), &set) || online <= 0)
		return 0;
	have = CPU_COUNT(&set);
	if (have >= online || have >= need)
		return 0;
	e->short_cpus = have;
	e->short_need = need;
	return 1;
}

void eng_place(struct eng *e, struct hetsgd_boot *boot, struct hetsgd_engine_result *res)
{
	/* every rank asks for the same, so that the node's plans agree */
	struct hetsgd_topo_req req = { .compute_threads = e->cfg->compute_threads > 0 ?
							  e->cfg->compute_threads : 1 };
	int lr, ls, ret;

	e->bind = 0;
	e->short_cpus = e->short_need = 0;
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
	else if (bound_short(e, req.compute_threads + 1))
		snprintf(res->placement, sizeof(res->placement),
			 "unpinned: the launcher bound this rank to %d CPU%s for its %d threads (srun -c)",
			 e->short_cpus, e->short_cpus == 1 ? "" : "s", e->short_need);
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
