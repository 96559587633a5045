/*
 * Private to topology/: the machine as topology.c opens it, shared with
 * the plan (plan.c), applying it (bind.c) and the reports (report.c).
 */
#ifndef HETSGD_TOPO_PRIV_H
#define HETSGD_TOPO_PRIV_H

#include <stdio.h>

#include <hwloc.h>

#include "hetsgd_topology.h"

#define topo_err hetsgd_error

struct topo_dev {
	char name[HETSGD_TOPO_NAME_MAX];
	char pci[32];		/* bus id of its PCI function, "" if none */
	hwloc_bitmap_t nodeset;	/* the NUMA nodes it is local to */
	hwloc_obj_t locality;	/* its first non-I/O ancestor (or the root) */
	int everywhere;		/* no locality known: local to every node */
	int active;		/* 1: a port is ACTIVE, 0: none is, -1: unknown */
};

struct hetsgd_topo {
	hwloc_topology_t topo;
	char *source;
	int thissystem;
	hwloc_bitmap_t cpus;	/* allowed CPUs: the machine and the binding at open */
	hwloc_bitmap_t mems;	/* allowed NUMA nodes: the machine and the membind */
	int cpus_bound;		/* cpus is narrower than the machine */
	int mems_bound;
	int ndev;
	struct topo_dev *dev;
};

static inline hwloc_const_bitmap_t machine_cpus(hwloc_topology_t topo)
{
#if HWLOC_API_VERSION >= 0x00020100
	return hwloc_topology_get_allowed_cpuset(topo);
#else
	return hwloc_topology_get_topology_cpuset(topo);
#endif
}

static inline hwloc_const_bitmap_t machine_mems(hwloc_topology_t topo)
{
#if HWLOC_API_VERSION >= 0x00020100
	return hwloc_topology_get_allowed_nodeset(topo);
#else
	return hwloc_topology_get_topology_nodeset(topo);
#endif
}

static inline void list_str(char *buf, size_t len, hwloc_const_bitmap_t set)
{
	if (hwloc_bitmap_iszero(set))
		snprintf(buf, len, "(none)");
	else
		hwloc_bitmap_list_snprintf(buf, len, set);
}

#endif
