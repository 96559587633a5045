/*
 * Topology: exact plans on machines we do not have (hwloc XML files in
 * tests/data/topo, written by gen.py there, and synthetic descriptions),
 * the Slurm and MPI local-rank variables, the errors a user can cause,
 * and, on this machine, that a thread really lands on its CPU and memory
 * really lands on its node.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* sched_getcpu, CPU_* */
#endif
#include <criterion/criterion.h>
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hetsgd_topology.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers -------------------------------------------------------------- */

static const char *data_path(const char *name)
{
	static char path[4096];
	const char *dir = getenv("HETSGD_TEST_DATA");

	snprintf(path, sizeof(path), "%s/topo/%s", dir && *dir ? dir : "tests/data", name);
	cr_assert_eq(access(path, R_OK), 0, "%s is missing: run from the source tree or set HETSGD_TEST_DATA",
		     path);
	return path;
}

static struct hetsgd_topo *open_src(const char *source)
{
	struct hetsgd_topo *t = NULL;
	int ret = hetsgd_topo_open(source, &t);

	cr_assert_eq(ret, 0, "open %s: %d %s", source, ret, hetsgd_topo_errmsg());
	cr_assert_not_null(t);
	return t;
}

static struct hetsgd_topo *open_xml(const char *name)
{
	return open_src(data_path(name));
}

static void plan_ok(const struct hetsgd_topo *t, const struct hetsgd_topo_req *tmpl, int rank,
		    struct hetsgd_topo_plan *p)
{
	struct hetsgd_topo_req req = *tmpl;
	int ret;

	req.local_rank = rank;
	ret = hetsgd_topo_plan(t, &req, p);
	cr_assert_eq(ret, 0, "plan rank %d: %d %s", rank, ret, hetsgd_topo_errmsg());
}

/* The exact plan: device, memory node, progress CPU, compute CPUs (-1 ends). */
static void expect(const struct hetsgd_topo_plan *p, const char *dev, int node, int progress,
		   const int *compute)
{
	int i;

	cr_assert_str_eq(p->device, dev, "rank %d device", p->local_rank);
	cr_assert_eq(p->numa_node, node, "rank %d memory node %d, want %d (%s)", p->local_rank,
		     p->numa_node, node, p->reason);
	cr_assert_eq(p->progress_pu, progress, "rank %d progress CPU %d, want %d (%s)", p->local_rank,
		     p->progress_pu, progress, p->reason);
	for (i = 0; compute[i] >= 0; i++)
		cr_assert_eq(p->compute_pus[i], compute[i], "rank %d compute thread %d: CPU %d, want %d (%s)",
			     p->local_rank, i, p->compute_pus[i], compute[i], p->reason);
	cr_assert_eq(p->ncompute, i, "rank %d has %d compute CPUs, want %d", p->local_rank, p->ncompute, i);
	cr_assert_eq(p->oversubscribed, 0, "rank %d", p->local_rank);
}

#define C(...) ((const int[]){ __VA_ARGS__, -1 })

/* Plans of all ranks never share a CPU (unless oversubscribed). */
static void expect_disjoint(const struct hetsgd_topo *t, const struct hetsgd_topo_req *tmpl)
{
	static struct hetsgd_topo_plan p;
	char seen[4096] = { 0 };
	int r, i;

	for (r = 0; r < tmpl->local_size; r++) {
		plan_ok(t, tmpl, r, &p);
		cr_assert(p.progress_pu >= 0 && p.progress_pu < 4096);
		cr_assert_eq(seen[p.progress_pu], 0, "CPU %d given twice", p.progress_pu);
		seen[p.progress_pu] = 1;
		for (i = 0; i < p.ncompute; i++) {
			cr_assert_eq(seen[p.compute_pus[i]], 0, "CPU %d given twice", p.compute_pus[i]);
			seen[p.compute_pus[i]] = 1;
		}
	}
}

static int in_list(int cpu, int lo, int hi)
{
	return cpu >= lo && cpu <= hi;
}

/* ---- (a) two sockets, the NIC on socket 1 ---------------------------------- */

Test(plan_xml, two_sockets_nic_on_socket1_four_ranks)
{
	struct hetsgd_topo *t = open_xml("two-socket-nic1.xml");
	struct hetsgd_topo_req req = { .local_size = 4, .compute_threads = 1 };
	struct hetsgd_topo_plan p[4];
	int r;

	/* ib0, eno1 and sda are OS devices too, but not RDMA ones. */
	cr_assert_eq(hetsgd_topo_ndevices(t), 1);
	cr_assert_str_eq(hetsgd_topo_device_name(t, 0), "mlx5_0");
	cr_assert_null(hetsgd_topo_device_name(t, 1));
	cr_assert_eq(hetsgd_topo_is_thissystem(t), 0);
	for (r = 0; r < 4; r++)
		plan_ok(t, &req, r, &p[r]);
	/* Socket 1 (CPUs 4-7, hyperthreads 12-15) holds two ranks of two cores. */
	expect(&p[0], "mlx5_0", 1, 4, C(5));
	expect(&p[1], "mlx5_0", 1, 6, C(7));
	/* The other two overflow to socket 0, memory with their cores. */
	expect(&p[2], "mlx5_0", 0, 0, C(1));
	expect(&p[3], "mlx5_0", 0, 2, C(3));
	cr_assert(strstr(p[0].reason, "NUMA node 1"), "%s", p[0].reason);
	cr_assert(strstr(p[2].reason, "overflowed"), "%s", p[2].reason);
	cr_assert(strstr(p[2].reason, "memory on node 0"), "%s", p[2].reason);
	cr_assert_eq(p[3].local_rank, 3);
	cr_assert_eq(p[3].local_size, 4);
	hetsgd_topo_close(t);
}

Test(plan_xml, two_sockets_one_rank_with_three_threads_each)
{
	struct hetsgd_topo *t = open_xml("two-socket-nic1.xml");
	struct hetsgd_topo_req req = { .local_size = 2, .compute_threads = 3 };
	struct hetsgd_topo_plan p;

	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_0", 1, 4, C(5, 6, 7));
	plan_ok(t, &req, 1, &p);
	expect(&p, "mlx5_0", 0, 0, C(1, 2, 3));
	hetsgd_topo_close(t);
}

Test(plan_xml, describe_two_sockets_exactly)
{
	struct hetsgd_topo *t = open_xml("two-socket-nic1.xml");
	const char *path = data_path("two-socket-nic1.xml");
	char *buf = NULL, want[2048];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_eq(hetsgd_topo_describe(t, f), 0);
	fclose(f);
	snprintf(want, sizeof(want),
		 "Machine: %s\n"
		 "  2 packages, 2 NUMA nodes, 8 cores, 16 CPUs\n"
		 "  NUMA node 0: 1.0 GiB, 4 cores, CPUs 0-3,8-11\n"
		 "  NUMA node 1: 1.0 GiB, 4 cores, CPUs 4-7,12-15\n"
		 "  RDMA devices:\n"
		 "    mlx5_0: NUMA node 1, PCI 0000:81:00.0, port active\n"
		 "  Allowed CPUs: 0-15 (the whole machine)\n", path);
	cr_assert_str_eq(buf, want);
	free(buf);
	hetsgd_topo_close(t);
}

/* ---- (b) one NIC per socket -------------------------------------------------- */

Test(plan_xml, two_nics_ranks_alternate_devices)
{
	struct hetsgd_topo *t = open_xml("two-nics.xml");
	struct hetsgd_topo_req req = { .local_size = 4, .compute_threads = 1 };
	struct hetsgd_topo_plan p[4];
	int r;

	cr_assert_eq(hetsgd_topo_ndevices(t), 2);
	for (r = 0; r < 4; r++)
		plan_ok(t, &req, r, &p[r]);
	expect(&p[0], "mlx5_0", 0, 0, C(1));
	expect(&p[1], "mlx5_1", 1, 4, C(5));
	expect(&p[2], "mlx5_0", 0, 2, C(3));
	expect(&p[3], "mlx5_1", 1, 6, C(7));
	cr_assert(strstr(p[1].reason, "round-robin over 2 devices"), "%s", p[1].reason);
	hetsgd_topo_close(t);
}

Test(plan_xml, two_nics_requested_device_takes_every_rank)
{
	struct hetsgd_topo *t = open_xml("two-nics.xml");
	struct hetsgd_topo_req req = { .local_size = 2, .compute_threads = 1, .device = "mlx5_1" };
	struct hetsgd_topo_plan p;

	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_1", 1, 4, C(5));
	plan_ok(t, &req, 1, &p);
	expect(&p, "mlx5_1", 1, 6, C(7));
	hetsgd_topo_close(t);
}

Test(plan_xml, device_without_active_port_is_passed_over)
{
	struct hetsgd_topo *t = open_xml("port-down.xml");
	struct hetsgd_topo_req req = { .local_size = 2, .compute_threads = 1 };
	struct hetsgd_topo_plan p;

	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_1", 1, 4, C(5));
	plan_ok(t, &req, 1, &p);
	expect(&p, "mlx5_1", 1, 6, C(7));
	cr_assert(strstr(p.reason, "active port"), "%s", p.reason);
	/* Asked for by name, a device is used even with its port down. */
	req.device = "mlx5_0";
	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_0", 0, 0, C(1));
	hetsgd_topo_close(t);
}

Test(plan_xml, soft_roce_is_local_to_every_node)
{
	struct hetsgd_topo *t = open_xml("soft-roce.xml");
	struct hetsgd_topo_req req = { .local_size = 4, .compute_threads = 1 };
	struct hetsgd_topo_plan p[4];
	int r;

	cr_assert_eq(hetsgd_topo_ndevices(t), 1);
	cr_assert_str_eq(hetsgd_topo_device_name(t, 0), "rxe0");
	for (r = 0; r < 4; r++)
		plan_ok(t, &req, r, &p[r]);
	expect(&p[0], "rxe0", 0, 0, C(1));
	expect(&p[1], "rxe0", 0, 2, C(3));
	expect(&p[2], "rxe0", 1, 4, C(5));
	expect(&p[3], "rxe0", 1, 6, C(7));
	cr_assert(strstr(p[0].reason, "no PCI locality"), "%s", p[0].reason);
	hetsgd_topo_close(t);
}

/* ---- (c) one NUMA node, no device (like this machine) ---------------------- */

Test(plan_synthetic, one_numa_node_no_device)
{
	struct hetsgd_topo *t = open_src("synthetic:pack:1 core:2 pu:1");
	struct hetsgd_topo_req req = { .local_size = 1, .compute_threads = 1 };
	struct hetsgd_topo_plan p;

	cr_assert_eq(hetsgd_topo_ndevices(t), 0);
	cr_assert_str_eq(hetsgd_topo_source(t), "synthetic:pack:1 core:2 pu:1");
	plan_ok(t, &req, 0, &p);
	expect(&p, "", 0, 0, C(1));
	cr_assert(strstr(p.reason, "no RDMA device"), "%s", p.reason);
	hetsgd_topo_close(t);
}

Test(plan_synthetic, never_two_threads_on_hyperthreads_of_one_core)
{
	/* Core 0 has CPUs 0-1, core 1 has CPUs 2-3. */
	struct hetsgd_topo *t = open_src("synthetic:pack:1 core:2 pu:2");
	struct hetsgd_topo_req req = { .local_size = 1, .compute_threads = 1 };
	struct hetsgd_topo_plan p;

	plan_ok(t, &req, 0, &p);
	expect(&p, "", 0, 0, C(2));
	/* Bound to the second hyperthreads only: those are the cores' CPUs then. */
	req.cpuset = "1,3";
	plan_ok(t, &req, 0, &p);
	expect(&p, "", 0, 1, C(3));
	hetsgd_topo_close(t);
}

Test(plan_synthetic, machine_without_cores_uses_cpus)
{
	struct hetsgd_topo *t = open_src("synthetic:pack:1 pu:4");
	struct hetsgd_topo_req req = { .local_size = 2, .compute_threads = 1 };
	struct hetsgd_topo_plan p;

	plan_ok(t, &req, 1, &p);
	expect(&p, "", 0, 2, C(3));
	hetsgd_topo_close(t);
}

Test(plan_synthetic, environment_names_the_topology)
{
	struct hetsgd_topo *t;

	setenv("HETSGD_TOPOLOGY", "synthetic:pack:2 numa:1 core:3 pu:1", 1);
	t = open_src(NULL);
	cr_assert_eq(hetsgd_topo_is_thissystem(t), 0);
	cr_assert_str_eq(hetsgd_topo_source(t), "synthetic:pack:2 numa:1 core:3 pu:1");
	hetsgd_topo_close(t);
	/* An explicit source wins over the environment. */
	t = open_src("synthetic:pack:1 core:1 pu:1");
	cr_assert_str_eq(hetsgd_topo_source(t), "synthetic:pack:1 core:1 pu:1");
	hetsgd_topo_close(t);
}

/* ---- (d) already bound by the launcher ------------------------------------- */

Test(plan_bound, stays_inside_the_binding)
{
	struct hetsgd_topo *t = open_xml("two-socket-nic1.xml");
	struct hetsgd_topo_req req = { .local_size = 2, .compute_threads = 1, .cpuset = "4-7" };
	struct hetsgd_topo_plan p;

	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_0", 1, 4, C(5));
	plan_ok(t, &req, 1, &p);
	expect(&p, "mlx5_0", 1, 6, C(7));

	/* Bound away from the NIC's socket: stay there, memory with the cores. */
	req.cpuset = "0-3";
	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_0", 0, 0, C(1));
	cr_assert(strstr(p.reason, "hold none of its cores"), "%s", p.reason);
	plan_ok(t, &req, 1, &p);
	expect(&p, "mlx5_0", 0, 2, C(3));

	/* Half on each side: the leftover local core first, then the nearest. */
	req.cpuset = "3-6";
	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_0", 1, 4, C(5));
	plan_ok(t, &req, 1, &p);
	expect(&p, "mlx5_0", 1, 6, C(3));
	hetsgd_topo_close(t);

	/* Two NICs, a hole on node 0: rank 2 keeps its last local core, memory ties to the NIC's node. */
	t = open_xml("two-nics.xml");
	req.local_size = 3;
	req.cpuset = "0-2,4-7";
	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_0", 0, 0, C(1));
	plan_ok(t, &req, 1, &p);
	expect(&p, "mlx5_1", 1, 4, C(5));
	plan_ok(t, &req, 2, &p);
	expect(&p, "mlx5_0", 0, 2, C(6));
	cr_assert(strstr(p.reason, "overflowed"), "%s", p.reason);
	hetsgd_topo_close(t);
}

Test(plan_bound, every_rank_of_every_binding_stays_inside)
{
	static const struct {
		const char *cpuset;
		int lo, hi, ranks, threads;
	} cases[] = {
		{ "8-15", 8, 15, 4, 1 }, { "2-13", 2, 13, 2, 3 }, { "8-15", 8, 15, 2, 3 }, { "5", 5, 5, 1, 0 },
		{ "0-15", 0, 15, 2, 3 }, { "6-9", 6, 9, 2, 1 },
	};
	struct hetsgd_topo *t = open_xml("two-nics.xml");
	struct hetsgd_topo_plan p;
	size_t c;
	int r, i;

	for (c = 0; c < ARRAY_LEN(cases); c++) {
		struct hetsgd_topo_req req = { .local_size = cases[c].ranks,
					       .compute_threads = cases[c].threads ? cases[c].threads : 1,
					       .cpuset = cases[c].cpuset,
					       .oversubscribe = !cases[c].threads };

		if (!req.oversubscribe)
			expect_disjoint(t, &req);
		for (r = 0; r < req.local_size; r++) {
			plan_ok(t, &req, r, &p);
			cr_assert(in_list(p.progress_pu, cases[c].lo, cases[c].hi), "%s: CPU %d",
				  cases[c].cpuset, p.progress_pu);
			for (i = 0; i < p.ncompute; i++)
				cr_assert(in_list(p.compute_pus[i], cases[c].lo, cases[c].hi), "%s: CPU %d",
					  cases[c].cpuset, p.compute_pus[i]);
		}
	}
	hetsgd_topo_close(t);
}

Test(plan_bound, bad_bindings_are_refused_clearly)
{
	static const struct {
		const char *cpuset, *words;
	} bad[] = {
		{ "", "empty" },		{ "  ", "empty" },
		{ "16-17", "do not exist" },	{ "14-20", "16-20" },
		{ "3-1", "malformed" },		{ "1,,2", "malformed" },
		{ "a", "malformed" },		{ "0-3:2", "malformed" },
		{ "-1", "malformed" },		{ "99999999999", "malformed" },
	};
	struct hetsgd_topo *t = open_xml("two-socket-nic1.xml");
	struct hetsgd_topo_req req = { .local_size = 1, .compute_threads = 1 };
	struct hetsgd_topo_plan p, before;
	size_t i;

	memset(&p, 0xab, sizeof(p));
	before = p;
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		req.cpuset = bad[i].cpuset;
		cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -EINVAL, "cpuset \"%s\"", bad[i].cpuset);
		cr_assert(strstr(hetsgd_topo_errmsg(), bad[i].words), "\"%s\": %s", bad[i].cpuset,
			  hetsgd_topo_errmsg());
		cr_assert_eq(memcmp(&p, &before, sizeof(p)), 0, "the plan must be untouched on failure");
	}
	/* Whitespace a shell or a sysfs file leaves is fine. */
	req.cpuset = " 4-5 , 7\n";
	plan_ok(t, &req, 0, &p);
	expect(&p, "mlx5_0", 1, 4, C(5));
	hetsgd_topo_close(t);
}

/* ---- (e) more ranks than cores ---------------------------------------------- */

Test(plan_oversubscribe, refused_with_the_numbers)
{
	struct hetsgd_topo *t = open_src("synthetic:pack:1 core:2 pu:1");
	struct hetsgd_topo_req req = { .local_size = 2, .compute_threads = 2 };
	struct hetsgd_topo_plan p;

	unsetenv("HETSGD_OVERSUBSCRIBE");
	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -ENOSPC);
	cr_assert(strstr(hetsgd_topo_errmsg(), "2 ranks x (2 compute + 1 progress) threads need 6 cores"),
		  "%s", hetsgd_topo_errmsg());
	cr_assert(strstr(hetsgd_topo_errmsg(), "allowed CPUs (0-1) hold only 2 cores"), "%s", hetsgd_topo_errmsg());
	cr_assert(strstr(hetsgd_topo_errmsg(), "HETSGD_OVERSUBSCRIBE=1"), "%s", hetsgd_topo_errmsg());
	setenv("HETSGD_OVERSUBSCRIBE", "0", 1);
	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -ENOSPC);
	hetsgd_topo_close(t);
}

Test(plan_oversubscribe, wraps_deterministically_when_allowed)
{
	struct hetsgd_topo *t = open_src("synthetic:pack:1 core:2 pu:1");
	struct hetsgd_topo_req req = { .local_size = 2, .compute_threads = 2, .oversubscribe = 1 };
	struct hetsgd_topo_plan p;

	unsetenv("HETSGD_OVERSUBSCRIBE");
	/* Slots 0-2 and 3-5 over cores 0, 1: rank 0 gets 0,1,0; rank 1 gets 1,0,1. */
	plan_ok(t, &req, 0, &p);
	cr_assert_eq(p.oversubscribed, 1);
	cr_assert_eq(p.progress_pu, 0);
	cr_assert_eq(p.ncompute, 2);
	cr_assert_eq(p.compute_pus[0], 1);
	cr_assert_eq(p.compute_pus[1], 0);
	cr_assert_eq(p.numa_node, 0);
	cr_assert(strstr(p.reason, "oversubscribed"), "%s", p.reason);
	plan_ok(t, &req, 1, &p);
	cr_assert_eq(p.oversubscribed, 1);
	cr_assert_eq(p.progress_pu, 1);
	cr_assert_eq(p.compute_pus[0], 0);
	cr_assert_eq(p.compute_pus[1], 1);

	/* The environment allows it too. */
	req.oversubscribe = 0;
	setenv("HETSGD_OVERSUBSCRIBE", "1", 1);
	plan_ok(t, &req, 1, &p);
	cr_assert_eq(p.oversubscribed, 1);
	cr_assert_eq(p.progress_pu, 1);
	hetsgd_topo_close(t);
}

/* ---- (f) and other bad requests ---------------------------------------------- */

Test(plan_errors, unknown_device_names_those_that_exist)
{
	struct hetsgd_topo *t = open_xml("two-nics.xml");
	struct hetsgd_topo_req req = { .local_size = 1, .compute_threads = 1, .device = "mlx5_9" };
	struct hetsgd_topo_plan p;

	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -ENODEV);
	cr_assert(strstr(hetsgd_topo_errmsg(), "\"mlx5_9\""), "%s", hetsgd_topo_errmsg());
	cr_assert(strstr(hetsgd_topo_errmsg(), "mlx5_0, mlx5_1"), "%s", hetsgd_topo_errmsg());
	hetsgd_topo_close(t);

	t = open_src("synthetic:pack:1 core:2 pu:1");
	req.device = "rxe0";
	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -ENODEV);
	cr_assert(strstr(hetsgd_topo_errmsg(), "no RDMA device at all"), "%s", hetsgd_topo_errmsg());
	hetsgd_topo_close(t);
}

Test(plan_errors, bad_requests)
{
	struct hetsgd_topo *t = open_src("synthetic:pack:1 core:4 pu:1");
	struct hetsgd_topo_req req = { .local_size = 2, .compute_threads = 1 };
	struct hetsgd_topo_plan p;

	req.local_rank = 2;
	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -EINVAL);
	cr_assert(strstr(hetsgd_topo_errmsg(), "local rank 2 of 2"), "%s", hetsgd_topo_errmsg());
	req.local_rank = -1;
	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -EINVAL);
	req.local_rank = 0;
	req.local_size = 0;
	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -EINVAL);
	req.local_size = 1;
	req.compute_threads = 0;
	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -EINVAL);
	req.compute_threads = HETSGD_TOPO_MAX_THREADS;
	cr_assert_eq(hetsgd_topo_plan(t, &req, &p), -EINVAL);
	cr_assert_eq(hetsgd_topo_plan(NULL, &req, &p), -EINVAL);
	cr_assert_eq(hetsgd_topo_plan(t, NULL, &p), -EINVAL);
	cr_assert_eq(hetsgd_topo_plan(t, &req, NULL), -EINVAL);
	hetsgd_topo_close(t);
}

Test(open_errors, missing_file_and_bad_synthetic)
{
	struct hetsgd_topo *t = (void *)0x1;

	cr_assert_eq(hetsgd_topo_open("/nonexistent/machine.xml", &t), -ENOENT);
	cr_assert(strstr(hetsgd_topo_errmsg(), "/nonexistent/machine.xml"), "%s", hetsgd_topo_errmsg());
	cr_assert(strstr(hetsgd_topo_errmsg(), "lstopo --of xml"), "%s", hetsgd_topo_errmsg());
	cr_assert_eq(t, (void *)0x1, "output untouched on failure");
	cr_assert_eq(hetsgd_topo_open("synthetic:bogus:2", &t), -EINVAL);
	cr_assert(strstr(hetsgd_topo_errmsg(), "synthetic"), "%s", hetsgd_topo_errmsg());
	cr_assert_eq(hetsgd_topo_open(data_path("gen.py"), &t), -EINVAL);
	cr_assert_eq(t, (void *)0x1);
	cr_assert_eq(hetsgd_topo_open(NULL, NULL), -EINVAL);
	hetsgd_topo_close(NULL);
}

/* ---- (g) local rank from the launcher ------------------------------------------ */

static void clear_launcher_env(void)
{
	static const char *const vars[] = {
		"HETSGD_LOCAL_RANK", "HETSGD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
		"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "SLURM_LOCALID",
		"SLURM_STEP_TASKS_PER_NODE", "SLURM_STEP_NODEID", "SLURM_TASKS_PER_NODE",
		"SLURM_NODEID", "SLURM_NTASKS_PER_NODE",
	};
	size_t i;

	for (i = 0; i < ARRAY_LEN(vars); i++)
		unsetenv(vars[i]);
}

static void local_is(int want_rank, int want_size)
{
	int r = -1, s = -1, ret = hetsgd_topo_local_rank(&r, &s);

	cr_assert_eq(ret, 0, "%d %s", ret, hetsgd_topo_errmsg());
	cr_assert_eq(r, want_rank);
	cr_assert_eq(s, want_size);
}

static void local_fails(int want, const char *words)
{
	int r = -7, s = -7;

	cr_assert_eq(hetsgd_topo_local_rank(&r, &s), want);
	cr_assert(strstr(hetsgd_topo_errmsg(), words), "%s", hetsgd_topo_errmsg());
	cr_assert(r == -7 && s == -7, "outputs untouched on failure");
}

Test(local_rank, nothing_set)
{
	clear_launcher_env();
	local_fails(-ENOENT, "HETSGD_LOCAL_RANK");
}

Test(local_rank, slurm_compressed_task_lists)
{
	clear_launcher_env();
	setenv("SLURM_LOCALID", "2", 1);
	setenv("SLURM_TASKS_PER_NODE", "4(x2),3", 1);
	local_is(2, 4);			/* no node id: the first node */
	setenv("SLURM_NODEID", "1", 1);
	local_is(2, 4);
	setenv("SLURM_NODEID", "2", 1);
	local_is(2, 3);
	setenv("SLURM_NODEID", "3", 1);
	local_fails(-EINVAL, "lists 3 nodes but this is node 3");
	setenv("SLURM_NODEID", "2", 1);
	setenv("SLURM_LOCALID", "3", 1);
	local_fails(-EINVAL, "SLURM_LOCALID=3 but Slurm reports 3 tasks");

	/* The step's own list and node id win over the job's. */
	setenv("SLURM_LOCALID", "1", 1);
	setenv("SLURM_STEP_TASKS_PER_NODE", "2,5(x3)", 1);
	setenv("SLURM_STEP_NODEID", "3", 1);
	local_is(1, 5);
	unsetenv("SLURM_STEP_NODEID");
	local_is(1, 2);
}

Test(local_rank, slurm_fallbacks_and_malformed_values)
{
	static const char *const bad[] = { "4(x", "4(x0)", "x", "4,", "0", "4(x2)3", "-1", "4,3x" };
	size_t i;

	clear_launcher_env();
	setenv("SLURM_LOCALID", "0", 1);
	local_fails(-EINVAL, "SLURM_NTASKS_PER_NODE");
	setenv("SLURM_NTASKS_PER_NODE", "8", 1);
	local_is(0, 8);

	for (i = 0; i < ARRAY_LEN(bad); i++) {
		setenv("SLURM_TASKS_PER_NODE", bad[i], 1);
		local_fails(-EINVAL, "SLURM_TASKS_PER_NODE");
	}
	unsetenv("SLURM_TASKS_PER_NODE");
	setenv("SLURM_LOCALID", "one", 1);
	local_fails(-EINVAL, "SLURM_LOCALID=\"one\"");
}

Test(local_rank, overrides_and_mpi_launchers)
{
	clear_launcher_env();
	setenv("SLURM_LOCALID", "0", 1);
	setenv("SLURM_TASKS_PER_NODE", "1", 1);
	/* mpirun under an allocation: its daemons' SLURM_LOCALID is not ours. */
	setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);
	setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
	local_is(3, 4);
	setenv("MPI_LOCALRANKID", "1", 1);
	setenv("MPI_LOCALNRANKS", "2", 1);
	local_is(3, 4);
	unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
	unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
	local_is(1, 2);
	setenv("HETSGD_LOCAL_RANK", "5", 1);
	setenv("HETSGD_LOCAL_SIZE", "6", 1);
	local_is(5, 6);
	unsetenv("HETSGD_LOCAL_SIZE");
	local_fails(-EINVAL, "HETSGD_LOCAL_SIZE");
	setenv("HETSGD_LOCAL_SIZE", "5", 1);
	local_fails(-EINVAL, "below the local size");
	cr_assert_eq(hetsgd_topo_local_rank(NULL, NULL), -EINVAL);
}

/* ---- (h) this machine: the binding and the memory node really take ----------- */

static int only_cpu(const cpu_set_t *set)
{
	int cpu, found = -1;

	if (CPU_COUNT(set) != 1)
		return -1;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, set))
			found = cpu;
	return found;
}

struct bind_arg {
	const struct hetsgd_topo *t;
	int cpu;
	int ret, bound, ran_on;
};

static void *bind_thread_main(void *p)
{
	struct bind_arg *a = p;
	cpu_set_t set;

	a->ret = hetsgd_topo_bind_thread(a->t, a->cpu);
	CPU_ZERO(&set);
	sched_getaffinity(0, sizeof(set), &set);
	a->bound = only_cpu(&set);
	a->ran_on = sched_getcpu();
	return NULL;
}

Test(this_machine, threads_and_memory_land_where_planned)
{
	struct hetsgd_topo_req req = { .local_size = 1, .compute_threads = 1, .oversubscribe = 1 };
	struct hetsgd_topo_plan p;
	struct hetsgd_topo *t;
	struct bind_arg a = { 0 };
	pthread_t th;
	cpu_set_t start, now;
	size_t bytes = 1 << 20, pg = (size_t)sysconf(_SC_PAGESIZE), n = bytes / pg, i;
	void **pages;
	int *status;
	unsigned char *mem;

	unsetenv("HETSGD_TOPOLOGY");
	CPU_ZERO(&start);
	cr_assert_eq(sched_getaffinity(0, sizeof(start), &start), 0);
	t = open_src(NULL);
	cr_assert_eq(hetsgd_topo_is_thissystem(t), 1);
	plan_ok(t, &req, 0, &p);
	cr_log_info("this machine: %s, node %d, progress CPU %d, compute CPU %d; %s",
		    *p.device ? p.device : "no device", p.numa_node, p.progress_pu, p.compute_pus[0], p.reason);
	cr_assert(CPU_ISSET(p.progress_pu, &start), "progress CPU %d outside the binding", p.progress_pu);
	cr_assert(CPU_ISSET(p.compute_pus[0], &start), "compute CPU %d outside the binding", p.compute_pus[0]);
	if (CPU_COUNT(&start) >= 2)
		cr_assert_neq(p.progress_pu, p.compute_pus[0]);
	cr_assert_geq(p.numa_node, 0);

	/* The calling thread is the progress step... */
	cr_assert_eq(hetsgd_topo_bind_thread(t, p.progress_pu), 0, "%s", hetsgd_topo_errmsg());
	CPU_ZERO(&now);
	cr_assert_eq(sched_getaffinity(0, sizeof(now), &now), 0);
	cr_assert_eq(only_cpu(&now), p.progress_pu);
	cr_assert_eq(sched_getcpu(), p.progress_pu);
	/* ...and a compute thread binds itself. */
	a.t = t;
	a.cpu = p.compute_pus[0];
	cr_assert_eq(pthread_create(&th, NULL, bind_thread_main, &a), 0);
	pthread_join(th, NULL);
	cr_assert_eq(a.ret, 0);
	cr_assert_eq(a.bound, p.compute_pus[0]);
	cr_assert_eq(a.ran_on, p.compute_pus[0]);
	/* Binding never leaves the launcher's binding. */
	cr_assert_eq(hetsgd_topo_bind_thread(t, 100000), -EINVAL);
	cr_assert(strstr(hetsgd_topo_errmsg(), "outside"), "%s", hetsgd_topo_errmsg());
	cr_assert_eq(hetsgd_topo_bind_thread(t, -1), -EINVAL);

	mem = hetsgd_topo_alloc(p.numa_node, bytes);
	cr_assert_not_null(mem, "%s", hetsgd_topo_errmsg());
	cr_assert_eq((uintptr_t)mem % pg, 0);
	for (i = 0; i < bytes; i++)
		cr_assert_eq(mem[i], 0, "byte %zu not zero", i);
	if (numa_available() < 0) {
		cr_log_warn("no NUMA support in this kernel: the memory node cannot be checked");
	} else {
		int node = -1;

		pages = calloc(n, sizeof(*pages));
		status = calloc(n, sizeof(*status));
		for (i = 0; i < n; i++) {
			pages[i] = mem + i * pg;
			status[i] = -1;
		}
		/* nodes NULL: query where each page is. */
		cr_assert_eq(numa_move_pages(0, n, pages, NULL, status, 0), 0);
		for (i = 0; i < n; i++)
			cr_assert_eq(status[i], p.numa_node, "page %zu is on node %d, want %d", i, status[i],
				     p.numa_node);
		cr_assert_eq(get_mempolicy(&node, NULL, 0, mem + bytes / 2, MPOL_F_NODE | MPOL_F_ADDR), 0);
		cr_assert_eq(node, p.numa_node);
		free(pages);
		free(status);
	}
	hetsgd_topo_free(mem, bytes);
	hetsgd_topo_close(t);
}

Test(this_machine, describe_and_plan_print)
{
	struct hetsgd_topo_req req = { .local_size = 1, .compute_threads = 1, .oversubscribe = 1 };
	struct hetsgd_topo_plan p;
	struct hetsgd_topo *t;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	unsetenv("HETSGD_TOPOLOGY");
	t = open_src(NULL);
	plan_ok(t, &req, 0, &p);
	f = open_memstream(&buf, &len);
	cr_assert_eq(hetsgd_topo_describe(t, f), 0);
	cr_assert_eq(hetsgd_topo_plan_print(&p, f), 0);
	cr_assert_eq(hetsgd_topo_describe_json(t, f), 0);
	fclose(f);
	cr_assert(strstr(buf, "Machine: this machine\n"), "%s", buf);
	cr_assert(strstr(buf, "NUMA node 0"), "%s", buf);
	cr_assert(strstr(buf, "\"this_machine\": true"), "%s", buf);
	free(buf);
	hetsgd_topo_close(t);
}

Test(alloc, edge_cases)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *m;

	errno = 0;
	cr_assert_null(hetsgd_topo_alloc(0, 0));
	cr_assert_eq(errno, EINVAL);
	/* No node: plain page-aligned zeroed memory, any size. */
	m = hetsgd_topo_alloc(-1, 3);
	cr_assert_not_null(m);
	cr_assert_eq((uintptr_t)m % pg, 0);
	cr_assert_eq(m[0] | m[1] | m[2] | m[pg - 1], 0);
	m[pg - 1] = 1;		/* the whole page is ours */
	hetsgd_topo_free(m, 3);
	hetsgd_topo_free(NULL, 10);
	if (numa_available() >= 0) {
		errno = 0;
		cr_assert_null(hetsgd_topo_alloc(numa_max_node() + 1, pg));
		cr_assert_eq(errno, EINVAL);
		cr_assert(strstr(hetsgd_topo_errmsg(), "NUMA node"), "%s", hetsgd_topo_errmsg());
	}
	errno = 0;
	cr_assert_null(hetsgd_topo_alloc(-1, SIZE_MAX));
	cr_assert_eq(errno, ENOMEM);
}

/* ---- (i) a described machine cannot bind threads ----------------------------- */

Test(this_machine, xml_topology_cannot_bind)
{
	struct hetsgd_topo *t = open_xml("two-socket-nic1.xml");

	cr_assert_eq(hetsgd_topo_bind_thread(t, 0), -EINVAL);
	cr_assert(strstr(hetsgd_topo_errmsg(), "does not describe this machine"), "%s", hetsgd_topo_errmsg());
	hetsgd_topo_close(t);
	t = open_src("synthetic:pack:1 core:2 pu:1");
	cr_assert_eq(hetsgd_topo_bind_thread(t, 0), -EINVAL);
	hetsgd_topo_close(t);
}

/* ---- reports ------------------------------------------------------------------ */

static char *capture_json_string(const char *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_eq(hetsgd_topo_print_json_string(f, s), 0);
	fclose(f);
	return buf;
}

Test(report, json_strings_are_escaped)
{
	char *s = capture_json_string("a\"b\\c\nd\t\x01\x1f\x7f" "é");

	cr_assert_str_eq(s, "\"a\\\"b\\\\c\\nd\\t\\u0001\\u001f\\u007f" "é\"");
	free(s);
	s = capture_json_string(NULL);
	cr_assert_str_eq(s, "null");
	free(s);
}

/* Every byte below 0x20: the short forms JSON has for \n \r \t, \u00XX for
 * the rest; nothing raw may remain, or a strict parser refuses the text. */
Test(report, json_every_control_character_is_escaped)
{
	char in[32], want[32 * 6 + 3], *s;
	size_t w = 0;

	want[w++] = '"';
	for (int c = 1; c < 0x20; c++) {
		in[c - 1] = (char)c;
		if (c == '\n' || c == '\r' || c == '\t')
			w += (size_t)sprintf(want + w, "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
		else
			w += (size_t)sprintf(want + w, "\\u%04x", c);
	}
	in[31] = 0;
	want[w++] = '"';
	want[w] = 0;
	s = capture_json_string(in);
	cr_assert_str_eq(s, want);
	free(s);
	/* a device name or --cpuset trying to close the string and add a key */
	s = capture_json_string("mlx5_0\", \"admin\": true, \"x\": \"\\");
	cr_assert_str_eq(s, "\"mlx5_0\\\", \\\"admin\\\": true, \\\"x\\\": \\\"\\\\\"");
	free(s);
}

/* JSON text is UTF-8: well-formed sequences pass as they are, every other
 * byte (from a file name in another encoding, say) becomes U+FFFD. */
Test(report, json_utf8_is_kept_and_bad_bytes_replaced)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", "\"\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e\"" },
		{ "a\xff" "b", "\"a\\ufffdb\"" },				/* never valid */
		{ "\x80", "\"\\ufffd\"" },				/* stray continuation */
		{ "\xc0\xaf", "\"\\ufffd\\ufffd\"" },		/* overlong '/' */
		{ "\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"" },	/* overlong, 3 bytes */
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },	/* a surrogate */
		{ "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" },	/* above U+10FFFF */
		{ "\xe2\x82", "\"\\ufffd\\ufffd\"" },			/* cut short by the end */
		{ "\xe2\x82\"", "\"\\ufffd\\ufffd\\\"\"" },		/* cut short by a quote */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = capture_json_string(cases[i].in);

		cr_assert_str_eq(s, cases[i].want, "case %zu", i);
		free(s);
	}
}

Test(report, plan_json_and_text_exactly)
{
	struct hetsgd_topo *t = open_xml("two-socket-nic1.xml");
	struct hetsgd_topo_req req = { .local_size = 4, .compute_threads = 1 };
	struct hetsgd_topo_plan p;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	plan_ok(t, &req, 3, &p);
	cr_assert_eq(hetsgd_topo_plan_print_json(&p, f), 0);
	fputc('|', f);
	cr_assert_eq(hetsgd_topo_plan_print(&p, f), 0);
	fclose(f);
	cr_assert_str_eq(buf,
			 "{\"local_rank\": 3, \"local_size\": 4, \"device\": \"mlx5_0\", \"numa_node\": 0, "
			 "\"progress_pu\": 2, \"compute_pus\": [3], \"oversubscribed\": false, "
			 "\"reason\": \"mlx5_0 is attached to NUMA node 1, where lower ranks left fewer than 2 free "
			 "allowed cores: overflowed to the nearest free cores; memory on node 0, which holds most of them\"}"
			 "|  rank 3: device mlx5_0, memory on NUMA node 0, progress on CPU 2, compute on CPU 3\n"
			 "    mlx5_0 is attached to NUMA node 1, where lower ranks left fewer than 2 free "
			 "allowed cores: overflowed to the nearest free cores; memory on node 0, which holds most of them\n");
	free(buf);
	hetsgd_topo_close(t);
}
