/*
 * Topology: discovery with hwloc (the machine, its RDMA devices, the
 * process's binding) and the local rank.  The placement plan is plan.c,
 * applying it bind.c, the reports report.c.
 */
#include <config.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hwloc.h>

#include "topo_priv.h"

/* ---- errors ------------------------------------------------------------- */

const char *hetsgd_topo_errmsg(void)
{
	return hetsgd_errmsg();
}

/* ---- the machine --------------------------------------------------------- */

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
