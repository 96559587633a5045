/*
 * The engine's shared core: placement, the mask set-up and the transport
 * error, for every rank (engine_core.h).
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>

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

void eng_place(struct eng *e, struct hetsgd_engine_result *res)
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
