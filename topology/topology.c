/*
 * Topology: discovery with hwloc, the placement plan, and applying it with
 * hwloc (threads) and libnuma (memory).
 *
 * The plan is a pure function of the machine and the request: every rank
 * of a node computes the whole node's plan and keeps its own part, which
 * is what lets ranks stay off each other's cores without a message.
 */
#include <config.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hwloc.h>
#include <numa.h>
#include <numaif.h>

#include "hetsgd_topology.h"

#define TOPO_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Larger CPU numbers than this in a CPU list are typos, not machines. */
#define CPU_LIST_MAX (1u << 20)

/* ---- errors ------------------------------------------------------------- */

const char *hetsgd_topo_errmsg(void)
{
	return hetsgd_errmsg();
}

#define topo_err hetsgd_error

/* ---- the machine --------------------------------------------------------- */

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

int hetsgd_topo_is_thissystem(const struct hetsgd_topo *t)
{
	return t ? t->thissystem : 0;
}

const char *hetsgd_topo_source(const struct hetsgd_topo *t)
{
	return t ? t->source : "";
}

int hetsgd_topo_ndevices(const struct hetsgd_topo *t)
{
	return t ? t->ndev : 0;
}

const char *hetsgd_topo_device_name(const struct hetsgd_topo *t, int i)
{
	if (!t || i < 0 || i >= t->ndev)
		return NULL;
	return t->dev[i].name;
}

static hwloc_const_bitmap_t machine_cpus(hwloc_topology_t topo)
{
#if HWLOC_API_VERSION >= 0x00020100
	return hwloc_topology_get_allowed_cpuset(topo);
#else
	return hwloc_topology_get_topology_cpuset(topo);
#endif
}

static hwloc_const_bitmap_t machine_mems(hwloc_topology_t topo)
{
#if HWLOC_API_VERSION >= 0x00020100
	return hwloc_topology_get_allowed_nodeset(topo);
#else
	return hwloc_topology_get_topology_nodeset(topo);
#endif
}

static void list_str(char *buf, size_t len, hwloc_const_bitmap_t set)
{
	if (hwloc_bitmap_iszero(set))
		snprintf(buf, len, "(none)");
	else
		hwloc_bitmap_list_snprintf(buf, len, set);
}

/* mlx5_2 before mlx5_10: digit runs compare as numbers. */
static int natcmp(const char *a, const char *b)
{
	while (*a && *b) {
		if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
			size_t la, lb;
			int c;

			while (*a == '0' && isdigit((unsigned char)a[1]))
				a++;
			while (*b == '0' && isdigit((unsigned char)b[1]))
				b++;
			for (la = 0; isdigit((unsigned char)a[la]); la++)
				;
			for (lb = 0; isdigit((unsigned char)b[lb]); lb++)
				;
			if (la != lb)
				return la < lb ? -1 : 1;
			c = strncmp(a, b, la);
			if (c)
				return c;
			a += la;
			b += lb;
		} else if (*a != *b) {
			return (unsigned char)*a - (unsigned char)*b;
		} else {
			a++;
			b++;
		}
	}
	return (unsigned char)*a - (unsigned char)*b;
}

static int dev_cmp(const void *x, const void *y)
{
	const struct topo_dev *a = x, *b = y;

	return natcmp(a->name, b->name);
}

static struct topo_dev *dev_add(struct hetsgd_topo *t, const char *name)
{
	struct topo_dev *d;

	d = realloc(t->dev, (size_t)(t->ndev + 1) * sizeof(*d));
	if (!d)
		return NULL;
	t->dev = d;
	d = &t->dev[t->ndev];
	memset(d, 0, sizeof(*d));
	d->nodeset = hwloc_bitmap_alloc();
	if (!d->nodeset)
		return NULL;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->active = -1;
	t->ndev++;
	return d;
}

/* A device we know nothing about is local to every NUMA node. */
static void dev_everywhere(struct hetsgd_topo *t, struct topo_dev *d)
{
	d->everywhere = 1;
	d->locality = hwloc_get_root_obj(t->topo);
	hwloc_bitmap_copy(d->nodeset, hwloc_topology_get_topology_nodeset(t->topo));
}

static void dev_from_hwloc(struct hetsgd_topo *t, struct topo_dev *d, hwloc_obj_t os)
{
	hwloc_obj_t p;
	unsigned i;

	for (p = os->parent; p; p = p->parent) {
		if (p->type == HWLOC_OBJ_PCI_DEVICE) {
			snprintf(d->pci, sizeof(d->pci), "%04x:%02x:%02x.%01x",
				 p->attr->pcidev.domain, p->attr->pcidev.bus,
				 p->attr->pcidev.dev, p->attr->pcidev.func);
			break;
		}
	}
	d->locality = hwloc_get_non_io_ancestor_obj(t->topo, os);
	if (!d->locality || d->locality == hwloc_get_root_obj(t->topo))
		dev_everywhere(t, d);
	else
		hwloc_bitmap_copy(d->nodeset, d->locality->nodeset);
	/* Port<N>State holds the IB port state number: 4 is ACTIVE. */
	for (i = 0; i < os->infos_count; i++) {
		const char *n = os->infos[i].name;
		size_t l = strlen(n);

		if (strncmp(n, "Port", 4) || l < 10 || strcmp(n + l - 5, "State"))
			continue;
		if (d->active < 0)
			d->active = 0;
		if (!strcmp(os->infos[i].value, "4"))
			d->active = 1;
	}
}

static int read_small(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = 0;
	return (int)n;
}

/*
 * hwloc hides virtual devices (rxe, siw live under /sys/devices/virtual)
 * unless HWLOC_VIRTUAL_LINUX_OSDEV=1, and a library must not set another
 * library's environment; so list them here.  A device with a NUMA node in
 * sysfs gets that node, any other one every node.
 */
static int scan_sysfs_devices(struct hetsgd_topo *t)
{
	DIR *dir = opendir("/sys/class/infiniband");
	struct dirent *de;

	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		char path[800], buf[64];
		struct topo_dev *d;
		DIR *ports;
		int i, known = 0;

		if (de->d_name[0] == '.' || !strncmp(de->d_name, "scif", 4))
			continue;
		for (i = 0; i < t->ndev; i++)
			known |= !strcmp(t->dev[i].name, de->d_name);
		if (known)
			continue;
		d = dev_add(t, de->d_name);
		if (!d) {
			closedir(dir);
			return topo_err(-ENOMEM, "out of memory listing RDMA devices");
		}
		dev_everywhere(t, d);
		snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device/numa_node", de->d_name);
		if (read_small(path, buf, sizeof(buf)) > 0 && atoi(buf) >= 0) {
			hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(t->topo, (unsigned)atoi(buf));

			if (node) {
				d->everywhere = 0;
				/* A NUMA node's parent is the normal object it hangs off. */
				d->locality = node->parent;
				hwloc_bitmap_only(d->nodeset, node->os_index);
			}
		}
		snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports", de->d_name);
		ports = opendir(path);
		while (ports) {
			struct dirent *pe = readdir(ports);

			if (!pe) {
				closedir(ports);
				break;
			}
			if (pe->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/%s/state",
				 de->d_name, pe->d_name);
			if (read_small(path, buf, sizeof(buf)) > 0) {
				if (d->active < 0)
					d->active = 0;
				if (atoi(buf) == 4)
					d->active = 1;
			}
		}
	}
	closedir(dir);
	return 0;
}

static int find_devices(struct hetsgd_topo *t)
{
	hwloc_obj_t os = NULL;
	int ret;

	while ((os = hwloc_get_next_osdev(t->topo, os))) {
		struct topo_dev *d;

		if (os->attr->osdev.type != HWLOC_OBJ_OSDEV_OPENFABRICS || !os->name)
			continue;
		/* Bull's BXI shares the OpenFabrics type but is not verbs. */
		if (os->subtype && !strcmp(os->subtype, "BXI"))
			continue;
		d = dev_add(t, os->name);
		if (!d)
			return topo_err(-ENOMEM, "out of memory listing RDMA devices");
		dev_from_hwloc(t, d, os);
	}
	if (t->thissystem) {
		ret = scan_sysfs_devices(t);
		if (ret)
			return ret;
	}
	if (t->ndev > 1)
		qsort(t->dev, (size_t)t->ndev, sizeof(*t->dev), dev_cmp);
	return 0;
}

/* For this machine, the launcher's binding narrows what we may use. */
static int read_bindings(struct hetsgd_topo *t)
{
	hwloc_bitmap_t b;
	hwloc_membind_policy_t pol;

	t->cpus = hwloc_bitmap_dup(machine_cpus(t->topo));
	t->mems = hwloc_bitmap_dup(machine_mems(t->topo));
	b = hwloc_bitmap_alloc();
	if (!t->cpus || !t->mems || !b) {
		hwloc_bitmap_free(b);
		return topo_err(-ENOMEM, "out of memory reading the process binding");
	}
	if (t->thissystem) {
		if (!hwloc_get_cpubind(t->topo, b, HWLOC_CPUBIND_PROCESS) && !hwloc_bitmap_iszero(b)) {
			hwloc_bitmap_and(t->cpus, t->cpus, b);
			t->cpus_bound = !hwloc_bitmap_isequal(t->cpus, machine_cpus(t->topo));
		}
		/* Only a strict binding limits us; a preference or interleave does not. */
		if (!hwloc_get_membind(t->topo, b, &pol, HWLOC_MEMBIND_BYNODESET) &&
		    pol == HWLOC_MEMBIND_BIND && hwloc_bitmap_intersects(b, t->mems)) {
			hwloc_bitmap_and(t->mems, t->mems, b);
			t->mems_bound = !hwloc_bitmap_isequal(t->mems, machine_mems(t->topo));
		}
	}
	hwloc_bitmap_free(b);
	return 0;
}

/*
 * Linux's own backend finds PCI devices and their locality from sysfs.
 * The libpciaccess plugin only adds vendor names, leaks about 600 KB per
 * load (LeakSanitizer fails every test that opens this machine), and the
 * GPU plugins initialise drivers or probe X displays: seconds, for
 * nothing a placement needs.  A name hwloc does not know is ignored.
 */
static void skip_components(hwloc_topology_t topo)
{
#if HWLOC_API_VERSION >= 0x00020100
	static const char *const skip[] = {
		"pci", "opencl", "gl", "cuda", "nvml", "rsmi", "levelzero",
	};
	size_t i;

	for (i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		hwloc_topology_set_components(topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, skip[i]);
#else
	(void)topo;
#endif
}

int hetsgd_topo_open(const char *source, struct hetsgd_topo **out)
{
	const char *from = "";
	struct hetsgd_topo *t;
	int ret;

	if (!out)
		return topo_err(-EINVAL, "hetsgd_topo_open: the output pointer is NULL");
	if (!source) {
		const char *env = getenv("HETSGD_TOPOLOGY");

		if (env && *env) {
			source = env;
			from = " (from HETSGD_TOPOLOGY)";
		}
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return topo_err(-ENOMEM, "out of memory opening the topology");
	t->source = strdup(source ? source : "this machine");
	if (!t->source || hwloc_topology_init(&t->topo)) {
		free(t->source);
		free(t);
		return topo_err(-ENOMEM, "out of memory initialising hwloc");
	}
	/* Keep PCI and OS devices: RDMA locality is the point of this room. */
	hwloc_topology_set_io_types_filter(t->topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	skip_components(t->topo);

	if (source && !strncmp(source, "synthetic:", 10)) {
		if (hwloc_topology_set_synthetic(t->topo, source + 10)) {
			ret = topo_err(-EINVAL,
				       "invalid hwloc synthetic description \"%s\"%s: write levels like \"synthetic:pack:2 numa:1 core:8 pu:2\" (see lstopo --help)",
				       source + 10, from);
			goto out_close;
		}
	} else if (source) {
		if (access(source, R_OK)) {
			ret = -errno;
			topo_err(ret,
				 "cannot read the topology file \"%s\"%s: %s; give an XML file written by lstopo --of xml, or synthetic:<description>",
				 source, from, strerror(-ret));
			goto out_close;
		}
		if (hwloc_topology_set_xml(t->topo, source)) {
			ret = topo_err(-EINVAL,
				       "hwloc cannot read \"%s\"%s as an XML topology (%s): give a file written by lstopo --of xml, or synthetic:<description>",
				       source, from, strerror(errno));
			goto out_close;
		}
	}
	if (hwloc_topology_load(t->topo)) {
		ret = topo_err(-EINVAL,
			       "hwloc could not load the topology of %s%s (%s): for a file, check that it is an hwloc XML export (lstopo --of xml)",
			       t->source, from, strerror(errno));
		goto out_close;
	}
	t->thissystem = hwloc_topology_is_thissystem(t->topo);
	ret = read_bindings(t);
	if (!ret)
		ret = find_devices(t);
	if (ret)
		goto out_close;
	*out = t;
	return 0;

out_close:
	hetsgd_topo_close(t);
	return ret;
}

void hetsgd_topo_close(struct hetsgd_topo *t)
{
	int i;

	if (!t)
		return;
	for (i = 0; i < t->ndev; i++)
		hwloc_bitmap_free(t->dev[i].nodeset);
	free(t->dev);
	hwloc_bitmap_free(t->cpus);
	hwloc_bitmap_free(t->mems);
	if (t->topo)
		hwloc_topology_destroy(t->topo);
	free(t->source);
	free(t);
}

/* ---- local rank ------------------------------------------------------------ */

/* 1 and *v when set, 0 when unset, -EINVAL when not a number >= 0. */
static int env_int(const char *name, int *v)
{
	long l;
	int ret = hetsgd_env_long(name, 0, INT_MAX, &l);

	if (ret == 1)
		*v = (int)l;
	return ret;
}

/* Entry `node` of Slurm's compressed list "4(x2),3"; -EINVAL if bad. */
static int slurm_tasks_on(const char *name, const char *list, int node, int *tasks)
{
	const char *p = list;
	long at = 0;
	int found = 0;

	for (;;) {
		long n, reps = 1;
		char *end;

		errno = 0;
		n = strtol(p, &end, 10);
		if (errno || end == p || !isdigit((unsigned char)*p) || n < 1 || n > INT_MAX)
			goto bad;
		p = end;
		if (!strncmp(p, "(x", 2)) {
			reps = strtol(p + 2, &end, 10);
			if (end == p + 2 || *end != ')' || reps < 1 || reps > INT_MAX)
				goto bad;
			p = end + 1;
		}
		if (!found && node < at + reps) {
			*tasks = (int)n;
			found = 1;
		}
		at += reps;
		if (!*p)
			break;
		if (*p != ',')
			goto bad;
		p++;
	}
	if (!found)
		return topo_err(-EINVAL,
				"%s=\"%s\" lists %ld nodes but this is node %d: the Slurm environment is inconsistent (was it copied from another step?)",
				name, list, at, node);
	return 0;
bad:
	return topo_err(-EINVAL, "%s=\"%s\" is not a Slurm task list like \"4(x2),3\": fix or unset it",
			name, list);
}

static int pair(const char *rname, const char *sname, int *rank, int *size)
{
	int r = 0, s = 0, got_r, got_s;

	got_r = env_int(rname, &r);
	if (got_r < 0)
		return got_r;
	got_s = env_int(sname, &s);
	if (got_s < 0)
		return got_s;
	if (!got_r && !got_s)
		return 0;
	if (!got_r || !got_s)
		return topo_err(-EINVAL, "%s is set but %s is not: set both or neither",
				got_r ? rname : sname, got_r ? sname : rname);
	if (s < 1 || r >= s)
		return topo_err(-EINVAL, "%s=%d does not fit %s=%d: the local rank must be below the local size",
				rname, r, sname, s);
	*rank = r;
	*size = s;
	return 1;
}

static int slurm_local(int *rank, int *size)
{
	static const char *const lists[][2] = {
		{ "SLURM_STEP_TASKS_PER_NODE", "SLURM_STEP_NODEID" },
		{ "SLURM_TASKS_PER_NODE", "SLURM_NODEID" },
	};
	int r = 0, s = 0, node, got, ret;
	size_t i;

	got = env_int("SLURM_LOCALID", &r);
	if (got <= 0)
		return got;
	for (i = 0; i < sizeof(lists) / sizeof(lists[0]) && !s; i++) {
		const char *list = getenv(lists[i][0]);

		if (!list || !*list)
			continue;
		node = 0;
		ret = env_int(lists[i][1], &node);
		if (ret < 0)
			return ret;
		ret = slurm_tasks_on(lists[i][0], list, node, &s);
		if (ret)
			return ret;
	}
	if (!s) {
		got = env_int("SLURM_NTASKS_PER_NODE", &s);
		if (got < 0)
			return got;
		if (!got || s < 1)
			return topo_err(-EINVAL,
					"SLURM_LOCALID is set but neither SLURM_STEP_TASKS_PER_NODE, SLURM_TASKS_PER_NODE nor SLURM_NTASKS_PER_NODE says how many tasks share this node: "
					"launch with srun, or set HETSGD_LOCAL_RANK and HETSGD_LOCAL_SIZE");
	}
	if (r >= s)
		return topo_err(-EINVAL,
				"SLURM_LOCALID=%d but Slurm reports %d tasks on this node: the environment is inconsistent; set HETSGD_LOCAL_RANK and HETSGD_LOCAL_SIZE",
				r, s);
	*rank = r;
	*size = s;
	return 1;
}

int hetsgd_topo_local_rank(int *rank, int *size)
{
	int r = 0, s = 0, got;

	if (!rank || !size)
		return topo_err(-EINVAL, "hetsgd_topo_local_rank: rank and size must not be NULL");
	got = pair("HETSGD_LOCAL_RANK", "HETSGD_LOCAL_SIZE", &r, &s);
	if (!got)
		got = pair("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", &r, &s);
	if (!got)
		got = pair("MPI_LOCALRANKID", "MPI_LOCALNRANKS", &r, &s);
	if (!got)
		got = slurm_local(&r, &s);
	if (got < 0)
		return got;
	if (!got)
		return topo_err(-ENOENT,
				"no local rank in the environment (none of HETSGD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, SLURM_LOCALID): "
				"use the launcher's own rank and size, or set HETSGD_LOCAL_RANK and HETSGD_LOCAL_SIZE");
	*rank = r;
	*size = s;
	return 0;
}

/* ---- the plan -------------------------------------------------------------- */

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

int hetsgd_topo_plan(const struct hetsgd_topo *t, const struct hetsgd_topo_req *req,
		     struct hetsgd_topo_plan *out)
{
	struct layout l = { 0 };
	struct hetsgd_topo_plan *p = NULL;
	struct unit *u = NULL;
	hwloc_bitmap_t eff = NULL;
	int ret, ncand = 0, r, i;

	if (!t || !req || !out)
		return topo_err(-EINVAL, "hetsgd_topo_plan: topo, req and plan must not be NULL");
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
	if (ret)
		goto out;

	if (l.size * l.need > l.nunits) {
		char cpus[128];

		if (!oversubscribe_allowed(req)) {
			list_str(cpus, sizeof(cpus), eff);
			ret = topo_err(-ENOSPC,
				       "%d rank%s x (%d compute + 1 progress) threads need %d cores, but the allowed CPUs (%s) hold only %d core%s: "
				       "use fewer compute threads or ranks per node, widen the binding (srun --cpus-per-task, taskset), "
				       "or allow oversubscription (HETSGD_OVERSUBSCRIBE=1)",
				       l.size, l.size == 1 ? "" : "s", req->compute_threads, l.size * l.need, cpus,
				       l.nunits, l.nunits == 1 ? "" : "s");
			goto out;
		}
		l.oversubscribed = 1;
		for (i = 0; i < l.size * l.need; i++)
			l.take[i] = i % l.nunits;
	} else {
		ret = lay_out(t, u, &l);
		if (ret)
			goto out;
	}

	r = req->local_rank;
	p->local_rank = r;
	p->local_size = l.size;
	if (l.rdev[r] >= 0)
		snprintf(p->device, sizeof(p->device), "%s", t->dev[l.rdev[r]].name);
	p->numa_node = memory_node(t, u, &l.take[r * l.need], l.need, l.rdev[r]);
	p->progress_pu = (int)u[l.take[r * l.need]].pu->os_index;
	p->ncompute = req->compute_threads;
	for (i = 0; i < p->ncompute; i++)
		p->compute_pus[i] = (int)u[l.take[r * l.need + 1 + i]].pu->os_index;
	p->oversubscribed = l.oversubscribed;
	explain(t, &l, u, r, ncand, eff, p->numa_node, p->reason, sizeof(p->reason));
	memcpy(out, p, sizeof(*out));
	ret = 0;
out:
	layout_free(&l);
	free(u);
	free(p);
	hwloc_bitmap_free(eff);
	return ret;
}

/* ---- applying it ----------------------------------------------------------- */

int hetsgd_topo_bind_thread(const struct hetsgd_topo *t, int os_pu)
{
	char cpus[128];
	hwloc_bitmap_t set;
	int ret = 0;

	if (!t)
		return topo_err(-EINVAL, "hetsgd_topo_bind_thread: topo is NULL");
	if (!t->thissystem)
		return topo_err(-EINVAL,
				"cannot bind a thread with the topology of %s: it does not describe this machine; "
				"open it with source NULL (and HETSGD_TOPOLOGY unset) to bind threads",
				t->source);
	if (os_pu < 0 || !hwloc_bitmap_isset(t->cpus, (unsigned)os_pu)) {
		list_str(cpus, sizeof(cpus), t->cpus);
		return topo_err(-EINVAL,
				"CPU %d is outside the CPUs this process may use (%s): threads never leave the launcher's binding; bind to a CPU of the plan",
				os_pu, cpus);
	}
	set = hwloc_bitmap_alloc();
	if (!set)
		return topo_err(-ENOMEM, "out of memory binding a thread");
	hwloc_bitmap_only(set, (unsigned)os_pu);
	if (hwloc_set_cpubind(t->topo, set, HWLOC_CPUBIND_THREAD)) {
		ret = -errno;
		topo_err(ret, "binding this thread to CPU %d failed: %s; check that the CPU is online and in this process's cgroup",
			 os_pu, strerror(-ret));
	}
	hwloc_bitmap_free(set);
	return ret;
}

static size_t page_round(size_t bytes, size_t pg)
{
	return (bytes + pg - 1) / pg * pg;
}

void *hetsgd_topo_alloc(int numa_node, size_t bytes)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), len, off;
	int numa = numa_node >= 0 && numa_available() >= 0;
	void *p;
	int e;

	if (!bytes) {
		topo_err(-EINVAL, "hetsgd_topo_alloc: 0 bytes requested");
		errno = EINVAL;
		return NULL;
	}
	if (bytes > SIZE_MAX - pg) {
		topo_err(-ENOMEM, "hetsgd_topo_alloc: %zu bytes cannot be allocated", bytes);
		errno = ENOMEM;
		return NULL;
	}
	if (numa && (numa_node > numa_max_node() || !numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)numa_node))) {
		topo_err(-EINVAL,
			 "NUMA node %d is not one this process may allocate on (nodes 0-%d exist; cgroups and numactl may forbid some): "
			 "use the node of hetsgd_topo_plan(), or -1 for no placement",
			 numa_node, numa_max_node());
		errno = EINVAL;
		return NULL;
	}
	len = page_round(bytes, pg);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		e = errno;
		topo_err(-e, "cannot map %zu bytes: %s; lower the buffer sizes or raise the memory limit",
			 len, strerror(e));
		errno = e;
		return NULL;
	}
	if (numa && hetsgd_topo_bind_memory(p, len, numa_node)) {
		e = errno;
		munmap(p, len);
		errno = e;
		return NULL;
	}
	/* Fault every page in now, under the policy (anonymous pages are zero). */
	for (off = 0; off < len; off += pg)
		((volatile char *)p)[off] = 0;
	return p;
}

int hetsgd_topo_bind_memory(void *p, size_t bytes, int numa_node)
{
	struct bitmask *mask;
	long rc;
	int e;

	if (numa_node < 0 || numa_available() < 0)
		return 0;
	if (numa_node > numa_max_node() || !numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)numa_node)) {
		errno = EINVAL;
		return topo_err(-EINVAL, "NUMA node %d is not one this process may allocate on (nodes 0-%d exist)",
				numa_node, numa_max_node());
	}
	mask = numa_allocate_nodemask();
	if (!mask) {
		errno = ENOMEM;
		return topo_err(-ENOMEM, "out of memory allocating a NUMA node mask");
	}
	numa_bitmask_setbit(mask, (unsigned)numa_node);
	/* The kernel reads maxnode - 1 bits: the +1 is libnuma's convention too. */
	rc = mbind(p, bytes, MPOL_BIND, mask->maskp, mask->size + 1, 0);
	e = errno;
	numa_bitmask_free(mask);
	/* A seccomp profile may forbid mbind: placement is a speed-up only. */
	if (rc && e != EPERM && e != ENOSYS) {
		errno = e;
		return topo_err(-e, "binding %zu bytes to NUMA node %d failed: %s", bytes, numa_node, strerror(e));
	}
	return 0;
}

void hetsgd_topo_free(void *p, size_t bytes)
{
	if (!p || !bytes)
		return;
	munmap(p, page_round(bytes, (size_t)sysconf(_SC_PAGESIZE)));
}

/* ---- reports ----------------------------------------------------------------- */

static int stream_ok(FILE *f)
{
	return ferror(f) ? topo_err(-EIO, "writing the topology report failed") : 0;
}

/*
 * Bytes of the well-formed UTF-8 sequence at s (1 to 4), or 0 when there is
 * none: a stray continuation byte, an overlong form, a surrogate, a code
 * point above U+10FFFF or a sequence cut short (the NUL ends it).
 */
static int utf8_len(const unsigned char *s)
{
	unsigned cp, min;
	int n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1fu;
		min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0fu;
		min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07u;
		min = 0x10000;
	} else {
		return 0;
	}
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * JSON text must be UTF-8, and names here come from the system and the
 * user (device names, --device, --cpuset, --topology paths): a byte that
 * is not part of well-formed UTF-8 becomes U+FFFD, so one odd file name
 * cannot make the whole report unreadable to a strict parser.
 */
int hetsgd_topo_print_json_string(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return stream_ok(f);
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		int len;

		if (c >= 0x80) {
			len = utf8_len((const unsigned char *)s);
			if (!len) {
				fputs("\\ufffd", f);
				continue;
			}
			fwrite(s, 1, (size_t)len, f);
			s += len - 1;
			continue;
		}
		switch (c) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (c < 0x20 || c == 0x7f)
				fprintf(f, "\\u%04x", c);
			else
				fputc(c, f);
		}
	}
	fputc('"', f);
	return stream_ok(f);
}

static int count_inside(const struct hetsgd_topo *t, hwloc_const_bitmap_t set, hwloc_obj_type_t type)
{
	if (!set)
		return 0;
	return hwloc_get_nbobjs_inside_cpuset_by_type(t->topo, set, type);
}

/* Cores, or PUs on a machine hwloc shows without cores. */
static int cores_inside(const struct hetsgd_topo *t, hwloc_const_bitmap_t set)
{
	if (hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_CORE) > 0)
		return count_inside(t, set, HWLOC_OBJ_CORE);
	return count_inside(t, set, HWLOC_OBJ_PU);
}

static const char *plural(int n)
{
	return n == 1 ? "" : "s";
}

static const char *port_word(int active)
{
	return active > 0 ? ", port active" : active == 0 ? ", no active port" : "";
}

int hetsgd_topo_describe(const struct hetsgd_topo *t, FILE *f)
{
	hwloc_obj_t node = NULL;
	char buf[256], all[256];
	int n, i;

	if (!t || !f)
		return topo_err(-EINVAL, "hetsgd_topo_describe: topo and f must not be NULL");
	n = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PACKAGE);
	fprintf(f, "Machine: %s\n", t->source);
	fprintf(f, "  %d package%s, %d NUMA node%s, %d core%s, %d CPU%s\n",
		n, plural(n),
		hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_NUMANODE),
		plural(hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_NUMANODE)),
		cores_inside(t, hwloc_topology_get_topology_cpuset(t->topo)),
		plural(cores_inside(t, hwloc_topology_get_topology_cpuset(t->topo))),
		hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PU),
		plural(hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PU)));
	while ((node = hwloc_get_next_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, node))) {
		int c = cores_inside(t, node->cpuset);

		list_str(buf, sizeof(buf), node->cpuset);
		fprintf(f, "  NUMA node %u: %.1f GiB, %d core%s, CPUs %s\n", node->os_index,
			(double)node->attr->numanode.local_memory / (1024.0 * 1024 * 1024),
			c, plural(c), buf);
	}
	if (!t->ndev)
		fprintf(f, "  RDMA devices: none\n");
	else
		fprintf(f, "  RDMA devices:\n");
	for (i = 0; i < t->ndev; i++) {
		const struct topo_dev *d = &t->dev[i];

		list_str(buf, sizeof(buf), d->nodeset);
		if (d->everywhere)
			fprintf(f, "    %s: every NUMA node (no PCI locality)%s\n", d->name, port_word(d->active));
		else
			fprintf(f, "    %s: NUMA node %s%s%s%s\n", d->name, buf,
				*d->pci ? ", PCI " : "", d->pci, port_word(d->active));
	}
	list_str(buf, sizeof(buf), t->cpus);
	list_str(all, sizeof(all), machine_cpus(t->topo));
	if (t->cpus_bound)
		fprintf(f, "  Allowed CPUs: %s (the process's binding; the machine has %s)\n", buf, all);
	else
		fprintf(f, "  Allowed CPUs: %s (the whole machine)\n", buf);
	if (t->mems_bound) {
		list_str(buf, sizeof(buf), t->mems);
		fprintf(f, "  Allowed NUMA nodes: %s (the process's memory binding)\n", buf);
	}
	return stream_ok(f);
}

static void json_int_list(FILE *f, hwloc_const_bitmap_t set)
{
	unsigned id;
	int first = 1;

	fputc('[', f);
	hwloc_bitmap_foreach_begin(id, set) {
		fprintf(f, "%s%u", first ? "" : ", ", id);
		first = 0;
	} hwloc_bitmap_foreach_end();
	fputc(']', f);
}

int hetsgd_topo_describe_json(const struct hetsgd_topo *t, FILE *f)
{
	hwloc_obj_t node = NULL;
	char buf[256];
	int i, first = 1;

	if (!t || !f)
		return topo_err(-EINVAL, "hetsgd_topo_describe_json: topo and f must not be NULL");
	fputs("{\"source\": ", f);
	hetsgd_topo_print_json_string(f, t->source);
	fprintf(f, ", \"this_machine\": %s, \"packages\": %d, \"cores\": %d, \"cpus\": %d, \"numa_nodes\": [",
		t->thissystem ? "true" : "false",
		hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PACKAGE),
		cores_inside(t, hwloc_topology_get_topology_cpuset(t->topo)),
		hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_PU));
	while ((node = hwloc_get_next_obj_by_type(t->topo, HWLOC_OBJ_NUMANODE, node))) {
		list_str(buf, sizeof(buf), node->cpuset);
		fprintf(f, "%s{\"node\": %u, \"memory_bytes\": %llu, \"cores\": %d, \"cpus\": ",
			first ? "" : ", ", node->os_index,
			(unsigned long long)node->attr->numanode.local_memory,
			cores_inside(t, node->cpuset));
		hetsgd_topo_print_json_string(f, buf);
		fputc('}', f);
		first = 0;
	}
	fputs("], \"rdma_devices\": [", f);
	for (i = 0; i < t->ndev; i++) {
		const struct topo_dev *d = &t->dev[i];

		fprintf(f, "%s{\"name\": ", i ? ", " : "");
		hetsgd_topo_print_json_string(f, d->name);
		fputs(", \"numa_nodes\": ", f);
		json_int_list(f, d->nodeset);
		fprintf(f, ", \"pci_locality\": %s, \"pci\": ", d->everywhere ? "false" : "true");
		hetsgd_topo_print_json_string(f, *d->pci ? d->pci : NULL);
		fprintf(f, ", \"port_active\": %s}",
			d->active > 0 ? "true" : d->active == 0 ? "false" : "null");
	}
	list_str(buf, sizeof(buf), t->cpus);
	fputs("], \"allowed_cpus\": ", f);
	hetsgd_topo_print_json_string(f, buf);
	fprintf(f, ", \"bound_by_launcher\": %s, \"allowed_numa_nodes\": ", t->cpus_bound ? "true" : "false");
	json_int_list(f, t->mems);
	fputc('}', f);
	return stream_ok(f);
}

int hetsgd_topo_plan_print(const struct hetsgd_topo_plan *p, FILE *f)
{
	int i;

	if (!p || !f)
		return topo_err(-EINVAL, "hetsgd_topo_plan_print: plan and f must not be NULL");
	fprintf(f, "  rank %d: device %s, memory on NUMA node ", p->local_rank,
		*p->device ? p->device : "none");
	if (p->numa_node >= 0)
		fprintf(f, "%d", p->numa_node);
	else
		fputs("(none)", f);
	fprintf(f, ", progress on CPU %d, compute on CPU%s ", p->progress_pu, p->ncompute > 1 ? "s" : "");
	for (i = 0; i < p->ncompute; i++)
		fprintf(f, "%s%d", i ? "," : "", p->compute_pus[i]);
	fprintf(f, "%s\n    %s\n", p->oversubscribed ? " (oversubscribed)" : "", p->reason);
	return stream_ok(f);
}

int hetsgd_topo_plan_print_json(const struct hetsgd_topo_plan *p, FILE *f)
{
	int i;

	if (!p || !f)
		return topo_err(-EINVAL, "hetsgd_topo_plan_print_json: plan and f must not be NULL");
	fprintf(f, "{\"local_rank\": %d, \"local_size\": %d, \"device\": ", p->local_rank, p->local_size);
	hetsgd_topo_print_json_string(f, *p->device ? p->device : NULL);
	fprintf(f, ", \"numa_node\": %d, \"progress_pu\": %d, \"compute_pus\": [", p->numa_node, p->progress_pu);
	for (i = 0; i < p->ncompute; i++)
		fprintf(f, "%s%d", i ? ", " : "", p->compute_pus[i]);
	fprintf(f, "], \"oversubscribed\": %s, \"reason\": ", p->oversubscribed ? "true" : "false");
	hetsgd_topo_print_json_string(f, p->reason);
	fputc('}', f);
	return stream_ok(f);
}
