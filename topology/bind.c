/* Applying a plan: threads bound with hwloc, memory placed with libnuma. */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <numa.h>
#include <numaif.h>

#include "topo_priv.h"

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
