/*
 * The placement plan.  It is a pure function of the machine and the
 * request: every rank of a node computes the whole node's plan and keeps
 * its own part, which is what lets ranks stay off each other's cores
 * without a message.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topo_priv.h"

/* Larger CPU numbers than this in a CPU list are typos, not machines. */
#define CPU_LIST_MAX (1u << 20)

/* A core, represented by the PU our thread would get on it. */
struct unit {
	hwloc_obj_t pu;
	int node;		/* OS index of its NUMA node, -1 if none */
};

static int parse_cpulist(const char *s, hwloc_bitmap_t set)
{
	const char *p = s;

	hwloc_bitmap_zero(set);
	while (isspace((unsigned char)*p))
		p++;
	if (!*p)
		return topo_err(-EINVAL, "the CPU list \"%s\" is empty: a binding that leaves no CPU cannot run anything; give CPUs like \"0-3,8\"",
				s);
	for (;;) {
		unsigned long a, b;
		char *end;

		if (!isdigit((unsigned char)*p))
			goto bad;
		errno = 0;
		a = strtoul(p, &end, 10);
		if (errno || a >= CPU_LIST_MAX)
			goto bad;
		p = end;
		b = a;
		if (*p == '-') {
			p++;
			if (!isdigit((unsigned char)*p))
				goto bad;
			b = strtoul(p, &end, 10);
			if (errno || b >= CPU_LIST_MAX || b < a)
				goto bad;
			p = end;
		}
		hwloc_bitmap_set_range(set, (unsigned)a, (int)b);
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			return 0;
		if (*p != ',')
			goto bad;
		p++;
		while (isspace((unsigned char)*p))
			p++;
	}
bad:
	return topo_err(-EINVAL,
			"malformed CPU list \"%s\" near \"%s\": use the Linux list format, ascending ranges separated by commas, e.g. \"0-3,8\"",
			s, p);
}

static int pu_node(const struct hetsgd_topo *t, hwloc_obj_t pu)
{
	hwloc_obj_t node = NULL;

	while ((node = hwloc_get_next_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, node)))
		if (node->cpuset && hwloc_bitmap_isset(node->cpuset, pu->os_index))
			return (int)node->os_index;
	return -1;
}

/* The allowed cores in hwloc's order; PUs when hwloc shows no cores. */
static int build_units(const struct hetsgd_topo *t, hwloc_const_bitmap_t cpus,
		       struct unit **out, int *nout)
{
	int npu = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PU);
	hwloc_obj_t last_core = NULL;
	struct unit *u;
	int i, n = 0;

	u = calloc(npu > 0 ? (size_t)npu : 1, sizeof(*u));
	if (!u)
		return topo_err(-ENOMEM, "out of memory planning the placement");
	for (i = 0; i < npu; i++) {
		hwloc_obj_t pu = hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_PU, (unsigned)i);
		hwloc_obj_t core;

		if (!hwloc_bitmap_isset(cpus, pu->os_index))
			continue;
		/* A core's PUs are consecutive in hwloc's order: the first allowed one stands for it. */
		core = hwloc_get_ancestor_obj_by_type(t->topo, HWLOC_OBJ_CORE, pu);
		if (core && core == last_core)
			continue;
		last_core = core;
		u[n].pu = pu;
		u[n].node = pu_node(t, pu);
		n++;
	}
	*out = u;
	*nout = n;
	return 0;
}

static int is_local(const struct hetsgd_topo *t, const struct unit *u, int dev)
{
	if (dev < 0 || t->dev[dev].everywhere)
		return 1;
	return u->node >= 0 && hwloc_bitmap_isset(t->dev[dev].nodeset, (unsigned)u->node);
}

struct near {
	int key;		/* larger is nearer */
	int unit;
};

static int near_cmp(const void *x, const void *y)
{
	const struct near *a = x, *b = y;

	if (a->key != b->key)
		return a->key > b->key ? -1 : 1;
	return a->unit - b->unit;
}

/* Nearness of a core to a device: its nodes first, then the deepest shared ancestor. */
static int nearness(const struct hetsgd_topo *t, const struct unit *u, int dev)
{
	hwloc_obj_t common;

	if (is_local(t, u, dev))
		return INT_MAX;
	common = hwloc_get_common_ancestor_obj(t->topo, u->pu, t->dev[dev].locality);
	return common ? common->depth : 0;
}

struct layout {
	int size, need, nunits;
	int *rdev;		/* device of each rank, -1 none */
	int *take;		/* rank r's cores: take[r * need .. + need) */
	char *overflow;		/* rank r left its device's nodes */
	int oversubscribed;
	int devs_skipped;	/* devices without an active port were passed over */
};

static void layout_free(struct layout *l)
{
	free(l->rdev);
	free(l->take);
	free(l->overflow);
}

static int lay_out(const struct hetsgd_topo *t, const struct unit *u, struct layout *l)
{
	char *claimed = calloc((size_t)l->nunits, 1);
	struct near *order = calloc((size_t)l->nunits, sizeof(*order));
	int r, i, k;

	if (!claimed || !order) {
		free(claimed);
		free(order);
		return topo_err(-ENOMEM, "out of memory planning the placement");
	}
	/* Local blocks, in local-rank order. */
	for (r = 0; r < l->size; r++) {
		int free_local = 0;

		for (i = 0; i < l->nunits; i++)
			free_local += !claimed[i] && is_local(t, &u[i], l->rdev[r]);
		if (free_local < l->need) {
			l->overflow[r] = 1;
			continue;
		}
		for (i = 0, k = 0; i < l->nunits && k < l->need; i++) {
			if (claimed[i] || !is_local(t, &u[i], l->rdev[r]))
				continue;
			claimed[i] = 1;
			l->take[r * l->need + k++] = i;
		}
	}
	/* Overflow: the nearest free cores; enough remain, the caller checked. */
	for (r = 0; r < l->size; r++) {
		int n = 0;

		if (!l->overflow[r])
			continue;
		for (i = 0; i < l->nunits; i++) {
			if (claimed[i])
				continue;
			order[n].key = nearness(t, &u[i], l->rdev[r]);
			order[n].unit = i;
			n++;
		}
		qsort(order, (size_t)n, sizeof(*order), near_cmp);
		for (k = 0; k < l->need && k < n; k++) {
			claimed[order[k].unit] = 1;
			l->take[r * l->need + k] = order[k].unit;
		}
	}
	free(claimed);
	free(order);
	return 0;
}

/* Which devices ranks are dealt to when none is requested. */
static int usable_devices(const struct hetsgd_topo *t, int *cand)
{
	int i, n = 0;

	for (i = 0; i < t->ndev; i++)
		if (t->dev[i].active != 0)
			cand[n++] = i;
	if (n)
		return n;
	for (i = 0; i < t->ndev; i++)
		cand[n++] = i;
	return n;
}

static void device_list(const struct hetsgd_topo *t, char *buf, size_t len)
{
	size_t off = 0;
	int i;

	buf[0] = 0;
	for (i = 0; i < t->ndev && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", t->dev[i].name);
}

static int choose_devices(const struct hetsgd_topo *t, const struct hetsgd_topo_req *req,
			  struct layout *l, int *ncand)
{
	int *cand, r, i, n;

	if (req->device) {
		char names[256];

		for (i = 0; i < t->ndev; i++)
			if (!strcmp(t->dev[i].name, req->device))
				break;
		if (i == t->ndev) {
			if (!t->ndev)
				return topo_err(-ENODEV,
						"no RDMA device named \"%s\": %s has no RDMA device at all; leave the device unset to plan without one",
						req->device, t->source);
			device_list(t, names, sizeof(names));
			return topo_err(-ENODEV,
					"no RDMA device named \"%s\" on %s: its devices are %s; name one of them, or leave the device unset to let hetsgd choose",
					req->device, t->source, names);
		}
		for (r = 0; r < l->size; r++)
			l->rdev[r] = i;
		*ncand = 1;
		return 0;
	}
	if (!t->ndev) {
		for (r = 0; r < l->size; r++)
			l->rdev[r] = -1;
		*ncand = 0;
		return 0;
	}
	cand = calloc((size_t)t->ndev, sizeof(*cand));
	if (!cand)
		return topo_err(-ENOMEM, "out of memory planning the placement");
	n = usable_devices(t, cand);
	l->devs_skipped = n < t->ndev;
	for (r = 0; r < l->size; r++)
		l->rdev[r] = cand[r % n];
	free(cand);
	*ncand = n;
	return 0;
}

/* The CPUs a plan may use: the request's list, inside the allowed set. */
static int effective_cpus(const struct hetsgd_topo *t, const char *list, hwloc_bitmap_t eff)
{
	char a[256], b[256];
	hwloc_bitmap_t out;
	int ret = 0;

	if (!list) {
		hwloc_bitmap_copy(eff, t->cpus);
		if (hwloc_bitmap_iszero(eff))
			return topo_err(-EINVAL,
					"this process is bound to no CPU of %s: the launcher's binding leaves no core; check srun --cpu-bind or taskset",
					t->source);
		return 0;
	}
	ret = parse_cpulist(list, eff);
	if (ret)
		return ret;
	out = hwloc_bitmap_alloc();
	if (!out)
		return topo_err(-ENOMEM, "out of memory planning the placement");
	hwloc_bitmap_andnot(out, eff, hwloc_topology_get_complete_cpuset(t->topo));
	if (!hwloc_bitmap_iszero(out)) {
		list_str(a, sizeof(a), out);
		list_str(b, sizeof(b), hwloc_topology_get_complete_cpuset(t->topo));
		ret = topo_err(-EINVAL,
			       "CPU%s %s of the CPU list \"%s\" %s not exist on %s (its CPUs are %s): choose CPUs of that machine",
			       hwloc_bitmap_weight(out) == 1 ? "" : "s", a, list,
			       hwloc_bitmap_weight(out) == 1 ? "does" : "do", t->source, b);
		goto out;
	}
	hwloc_bitmap_andnot(out, eff, t->cpus);
	if (!hwloc_bitmap_iszero(out)) {
		list_str(a, sizeof(a), out);
		list_str(b, sizeof(b), t->cpus);
		ret = topo_err(-EINVAL,
			       "CPU%s %s of the CPU list \"%s\" %s outside the CPUs this process may use (%s, %s): placement never leaves that binding; choose CPUs inside it or widen the binding",
			       hwloc_bitmap_weight(out) == 1 ? "" : "s", a, list,
			       hwloc_bitmap_weight(out) == 1 ? "is" : "are", b,
			       t->cpus_bound ? "its launcher's binding" : "the machine's allowed CPUs");
	}
out:
	hwloc_bitmap_free(out);
	return ret;
}

/* The allowed node with most of these cores; ties: the device's, then the lowest. */
static int memory_node(const struct hetsgd_topo *t, const struct unit *u,
		       const int *take, int n, int dev)
{
	int best = -1, best_count = -1, best_dev = 0;
	unsigned node;

	hwloc_bitmap_foreach_begin(node, t->mems) {
		int count = 0, on_dev, i;

		for (i = 0; i < n; i++)
			count += u[take[i]].node == (int)node;
		on_dev = dev >= 0 && hwloc_bitmap_isset(t->dev[dev].nodeset, node);
		if (count > best_count || (count == best_count && on_dev && !best_dev)) {
			best = (int)node;
			best_count = count;
			best_dev = on_dev;
		}
	} hwloc_bitmap_foreach_end();
	return best;
}

static void explain(const struct hetsgd_topo *t, const struct layout *l, const struct unit *u,
		    int rank, int ncand, hwloc_const_bitmap_t eff, int mem, char *buf, size_t len)
{
	char cpus[128], nodes[64], extra[160] = "";
	int dev = l->rdev[rank], local = 0, i;
	const struct topo_dev *d = dev >= 0 ? &t->dev[dev] : NULL;
	size_t off;

	list_str(cpus, sizeof(cpus), eff);
	if (d)
		list_str(nodes, sizeof(nodes), d->nodeset);
	for (i = 0; d && i < l->nunits; i++)
		local += is_local(t, &u[i], dev);
	if (d && ncand > 1)
		snprintf(extra, sizeof(extra), " (ranks dealt round-robin over %d devices%s)", ncand,
			 ncand < t->ndev ? " with an active port" : "");
	else if (d && ncand == 1 && t->ndev > 1 && l->devs_skipped)
		snprintf(extra, sizeof(extra), " (the only device with an active port)");

	if (l->oversubscribed)
		off = (size_t)snprintf(buf, len,
				       "oversubscribed: %d rank%s x %d threads need %d cores but the allowed CPUs (%s) hold %d; threads share cores round-robin",
				       l->size, l->size == 1 ? "" : "s", l->need, l->size * l->need, cpus, l->nunits);
	else if (!d)
		off = (size_t)snprintf(buf, len, "no RDMA device: cores in order from the allowed CPUs %s", cpus);
	else if (d->everywhere)
		off = (size_t)snprintf(buf, len,
				       "%s has no PCI locality (soft-RoCE or another virtual device), so every NUMA node is local%s: cores in order from the allowed CPUs %s",
				       d->name, extra, cpus);
	else if (l->overflow[rank] && !local)
		off = (size_t)snprintf(buf, len,
				       "%s is attached to NUMA node %s%s, but the allowed CPUs %s hold none of its cores: the nearest allowed cores instead",
				       d->name, nodes, extra, cpus);
	else if (l->overflow[rank])
		off = (size_t)snprintf(buf, len,
				       "%s is attached to NUMA node %s%s, where lower ranks left fewer than %d free allowed cores: overflowed to the nearest free cores",
				       d->name, nodes, extra, l->need);
	else
		off = (size_t)snprintf(buf, len, "%s is attached to NUMA node %s%s: cores there",
				       d->name, nodes, extra);
	if (off >= len)
		return;
	if (mem >= 0 && d && !d->everywhere && !hwloc_bitmap_isset(d->nodeset, (unsigned)mem))
		snprintf(buf + off, len - off, "; memory on node %d, which holds most of them", mem);
	else if (mem >= 0 && t->mems_bound)
		snprintf(buf + off, len - off, "; memory on node %d within the process's memory binding", mem);
}

static int oversubscribe_allowed(const struct hetsgd_topo_req *req)
{
	const char *env = getenv("HETSGD_OVERSUBSCRIBE");

	return req->oversubscribe || (env && *env && strcmp(env, "0"));
}

static int check_req(const struct hetsgd_topo_req *req)
{
	if (req->local_size < 1 || req->local_rank < 0 || req->local_rank >= req->local_size)
		return topo_err(-EINVAL,
				"local rank %d of %d is not a rank of this node: need 0 <= local_rank < local_size",
				req->local_rank, req->local_size);
	if (req->compute_threads < 1 || req->compute_threads > HETSGD_TOPO_MAX_THREADS - 1)
		return topo_err(-EINVAL, "%d compute threads per rank: give 1 to %d",
				req->compute_threads, HETSGD_TOPO_MAX_THREADS - 1);
	if (req->local_size > INT_MAX / (req->compute_threads + 1))
		return topo_err(-EINVAL, "%d ranks x %d threads overflows: give fewer ranks",
				req->local_size, req->compute_threads + 1);
	return 0;
}

/* Every rank's cores: laid out, or shared round-robin when they do not
 * fit and oversubscription is allowed. */
static int place_ranks(const struct hetsgd_topo *t, const struct hetsgd_topo_req *req,
		       const struct unit *u, hwloc_const_bitmap_t eff, struct layout *l)
{
	char cpus[128];
	int i;

	if (l->size * l->need <= l->nunits)
		return lay_out(t, u, l);
	if (!oversubscribe_allowed(req)) {
		list_str(cpus, sizeof(cpus), eff);
		return topo_err(-ENOSPC,
				"%d rank%s x (%d compute + 1 progress) threads need %d cores, but the allowed CPUs (%s) hold only %d core%s: "
				"use fewer compute threads or ranks per node, widen the binding (srun --cpus-per-task, taskset), "
				"or allow oversubscription (HETSGD_OVERSUBSCRIBE=1)",
				l->size, l->size == 1 ? "" : "s", req->compute_threads, l->size * l->need, cpus,
				l->nunits, l->nunits == 1 ? "" : "s");
	}
	l->oversubscribed = 1;
	for (i = 0; i < l->size * l->need; i++)
		l->take[i] = i % l->nunits;
	return 0;
}

/* This rank's part of the node's layout. */
static void plan_fill(const struct hetsgd_topo *t, const struct hetsgd_topo_req *req,
		      const struct layout *l, const struct unit *u, int ncand,
		      hwloc_const_bitmap_t eff, struct hetsgd_topo_plan *p)
{
	int r = req->local_rank, i;

	p->local_rank = r;
	p->local_size = l->size;
	if (l->rdev[r] >= 0)
		snprintf(p->device, sizeof(p->device), "%s", t->dev[l->rdev[r]].name);
	p->numa_node = memory_node(t, u, &l->take[r * l->need], l->need, l->rdev[r]);
	p->progress_pu = (int)u[l->take[r * l->need]].pu->os_index;
	p->ncompute = req->compute_threads;
	for (i = 0; i < p->ncompute; i++)
		p->compute_pus[i] = (int)u[l->take[r * l->need + 1 + i]].pu->os_index;
	p->oversubscribed = l->oversubscribed;
	explain(t, l, u, r, ncand, eff, p->numa_node, p->reason, sizeof(p->reason));
}

int hetsgd_topo_plan(const struct hetsgd_topo *t, const struct hetsgd_topo_req *req,
		     struct hetsgd_topo_plan *out)
{
	struct layout l = { 0 };
	struct hetsgd_topo_plan *p = NULL;
	struct unit *u = NULL;
	hwloc_bitmap_t eff = NULL;
	int ret, ncand = 0;

	if (!t || !req || !out)
		return topo_err(-EINVAL, "hetsgd_topo_plan: topo, req and plan must not be NULL");
	ret = check_req(req);
	if (ret)
		return ret;
	eff = hwloc_bitmap_alloc();
	p = calloc(1, sizeof(*p));
	if (!eff || !p) {
		ret = topo_err(-ENOMEM, "out of memory planning the placement");
		goto out;
	}
	ret = effective_cpus(t, req->cpuset, eff);
	if (ret)
		goto out;
	ret = build_units(t, eff, &u, &l.nunits);
	if (ret)
		goto out;
	if (!l.nunits) {
		char cpus[128];

		list_str(cpus, sizeof(cpus), eff);
		ret = topo_err(-EINVAL, "the allowed CPUs %s hold no core of %s: widen the binding",
			       cpus, t->source);
		goto out;
	}
	l.size = req->local_size;
	l.need = req->compute_threads + 1;
	l.rdev = calloc((size_t)l.size, sizeof(*l.rdev));
	l.take = calloc((size_t)l.size * (size_t)l.need, sizeof(*l.take));
	l.overflow = calloc((size_t)l.size, 1);
	if (!l.rdev || !l.take || !l.overflow) {
		ret = topo_err(-ENOMEM, "out of memory planning %d ranks", l.size);
		goto out;
	}
	ret = choose_devices(t, req, &l, &ncand);
	if (!ret)
		ret = place_ranks(t, req, u, eff, &l);
	if (ret)
		goto out;
	plan_fill(t, req, &l, u, ncand, eff, p);
	memcpy(out, p, sizeof(*out));
	ret = 0;
out:
	layout_free(&l);
	free(u);
	free(p);
	hwloc_bitmap_free(eff);
	return ret;
}
