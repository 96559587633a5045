/* Reports of the machine and of a plan, as text and as JSON. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "topo_priv.h"

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
