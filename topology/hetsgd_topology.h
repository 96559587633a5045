/*
 * hetsgd topology: where each rank's threads and memory go.
 *
 * hwloc describes the machine (NUMA nodes, cores, and which NUMA nodes
 * each RDMA device is attached to); a plan gives each rank on a node a
 * device, a NUMA node for its staging buffers and model, one core for its
 * progress step and one core per compute thread; hwloc and libnuma apply
 * it.  On a machine with one NUMA node and no RDMA device this degrades to
 * plain pinning.
 *
 * Conventions (as in the rest of hetsgd): a call returns 0 or a negative
 * errno value; a failed call leaves a sentence naming the cause and the
 * fix in hetsgd_errmsg(); outputs are written only on success.  An
 * open topology is read-only: any thread may use it at the same time as
 * others, until hetsgd_topo_close().  Every CPU number here is an OS
 * index (what taskset, Slurm and /proc/cpuinfo call a CPU), and every
 * NUMA node number an OS index (what numactl calls a node).  This header
 * needs neither hwloc's nor libnuma's.
 */
#ifndef HETSGD_TOPOLOGY_H
#define HETSGD_TOPOLOGY_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Services every room of hetsgd shares (this room is the one they may all
 * depend on).
 *
 * hetsgd_errmsg(): the message of the last failed hetsgd call in this
 * thread, whichever room failed ("" if none).  hetsgd_error() records one
 * and returns err; it is for the library's own rooms, and a message may
 * quote the one it replaces.  hetsgd_clock_s(): CLOCK_MONOTONIC in
 * seconds.  hetsgd_env_long(): an integer setting from the environment:
 * 0 when unset or empty, 1 with *out set, -EINVAL (and a message naming
 * the variable and the range) otherwise.
 */
const char *hetsgd_errmsg(void);
int hetsgd_error(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double hetsgd_clock_s(void);
int hetsgd_env_long(const char *name, long lo, long hi, long *out);

/*
 * The library's log: one line per event on stderr, in one write, as
 *
 *   hetsgd 12:34:56.789 rank 3 transport: MESSAGE
 *
 * (local time; "rank ?" until a bootstrap has said which rank this is).
 * What is printed is chosen by the environment, read at the first line:
 *
 *   HETSGD_LOG=error|warn|info|debug[:SUBSYS,...]   (default warn)
 *   HETSGD_LOG_SUBSYS=SUBSYS,...                    (default all)
 *
 * SUBSYS is one of boot, transport, topo, engine, data, app or all; a
 * leading ^ excludes it (as NCCL_DEBUG_SUBSYS).  The subsystem list
 * filters info and debug lines only: errors and warnings (refusals,
 * summaries, a rank left unpinned) always show at their level, so a
 * narrowed log never hides a problem.  An invalid value gets one warning
 * line naming the variable and the allowed values, then the default.
 *
 * hetsgd_log_configure(log, subsys): parse these two strings instead of
 * the environment (NULL: that variable's value from the environment);
 * 0, or -EINVAL after the warning line and the defaults.  Programs need
 * not call it.  hetsgd_log_set_rank(): the rank for this thread's lines
 * and, as a fallback, for every thread's (the bootstraps call it).
 * hetsgd_log_enabled(): whether a line at level for subsys would show,
 * to skip work that only feeds a debug line.
 */
enum hetsgd_log_level {
	HETSGD_LOG_ERROR = 0,
	HETSGD_LOG_WARN = 1,
	HETSGD_LOG_INFO = 2,
	HETSGD_LOG_DEBUG = 3,
};

int hetsgd_log_configure(const char *log, const char *subsys);
void hetsgd_log_set_rank(int rank);
int hetsgd_log_enabled(enum hetsgd_log_level level, const char *subsys);
void hetsgd_log(enum hetsgd_log_level level, const char *subsys, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The same as hetsgd_errmsg(), kept for programs written against 0.1. */
const char *hetsgd_topo_errmsg(void);

struct hetsgd_topo;

/*
 * Load a machine description.
 *
 * source:
 *   NULL                   $HETSGD_TOPOLOGY when it is set and not empty
 *                          (same syntax as below), else this machine.
 *   "synthetic:<desc>"     an hwloc synthetic machine, e.g.
 *                          "synthetic:pack:2 numa:1 core:8 pu:2"
 *   anything else          the path of an hwloc XML file (lstopo --of xml)
 *
 * This machine is discovered with PCI and OS devices kept (hwloc's
 * "important" I/O filter), so the OpenFabrics devices (mlx5_0, rxe0, ...)
 * appear with their locality.  Virtual RDMA devices such as soft-RoCE
 * (rxe) and soft-iWARP (siw) have no PCI parent, and hwloc hides them
 * unless HWLOC_VIRTUAL_LINUX_OSDEV=1: they are also read from
 * /sys/class/infiniband, and are treated as local to every NUMA node.
 *
 * For this machine, the CPU and memory binding of the calling process are
 * read here, once: that is the binding a launcher gave it (Slurm's
 * --cpu-bind, taskset, numactl, a cgroup), and every plan stays inside
 * it.  Open the topology before binding any thread of the process.
 *
 * -ENOENT for a missing XML file, -EINVAL for one hwloc cannot read or a
 * bad synthetic description, -ENOMEM.
 */
int hetsgd_topo_open(const char *source, struct hetsgd_topo **topo);

/* NULL is accepted. */
void hetsgd_topo_close(struct hetsgd_topo *topo);

/* 1 when topo describes the machine this process runs on, else 0. */
int hetsgd_topo_is_thissystem(const struct hetsgd_topo *topo);

/* "this machine", "synthetic:<desc>" or the XML path. */
const char *hetsgd_topo_source(const struct hetsgd_topo *topo);

/*
 * RDMA devices, in natural name order (mlx5_2 before mlx5_10): the order
 * in which ranks are dealt to devices.  device_name returns NULL for an
 * index out of range.
 */
int hetsgd_topo_ndevices(const struct hetsgd_topo *topo);
const char *hetsgd_topo_device_name(const struct hetsgd_topo *topo, int i);

/*
 * This process's rank among the ranks of its job on this node, and their
 * number.  The first source that is set wins:
 *
 *   HETSGD_LOCAL_RANK, HETSGD_LOCAL_SIZE     explicit override (both)
 *   OMPI_COMM_WORLD_LOCAL_RANK, _LOCAL_SIZE  mpirun / prterun
 *   MPI_LOCALRANKID, MPI_LOCALNRANKS         MPICH's Hydra
 *   SLURM_LOCALID and the tasks on this node srun
 *
 * MPI launchers come before Slurm because under an allocation they start
 * their daemons with srun, and every rank then inherits its daemon's
 * SLURM_LOCALID (0).  Slurm's tasks on this node: entry SLURM_STEP_NODEID
 * of SLURM_STEP_TASKS_PER_NODE, else entry SLURM_NODEID of
 * SLURM_TASKS_PER_NODE (node 0 when the id is unset), else
 * SLURM_NTASKS_PER_NODE; the lists have Slurm's compressed form
 * "4(x2),3" (4, 4, 3).
 *
 * -ENOENT when none of these is set (the caller then uses its own
 * launcher's rank and size, e.g. the local launcher's); -EINVAL when a
 * variable is malformed or inconsistent (rank >= size).
 */
int hetsgd_topo_local_rank(int *rank, int *size);

/* Most threads (compute + progress) one rank can be given. */
#define HETSGD_TOPO_MAX_THREADS 1024
#define HETSGD_TOPO_NAME_MAX 64

struct hetsgd_topo_req {
	int local_rank;		/* 0 <= local_rank < local_size */
	int local_size;		/* ranks of the job on this node */
	int compute_threads;	/* per rank, >= 1; the progress step adds one */
	/* NULL: choose (below).  Otherwise every rank uses this device. */
	const char *device;
	/*
	 * NULL: for this machine, the process's binding at open; for an XML
	 * or synthetic machine, the whole machine.  Otherwise a Linux CPU
	 * list ("0-3,8") that must lie inside that set: it simulates, or
	 * narrows, a launcher's binding.
	 */
	const char *cpuset;
	/* Allow more threads than cores (also: HETSGD_OVERSUBSCRIBE=1). */
	int oversubscribe;
};

struct hetsgd_topo_plan {
	int local_rank;
	int local_size;
	char device[HETSGD_TOPO_NAME_MAX];	/* "" when there is none */
	int numa_node;		/* for staging buffers and the model; -1: none */
	int progress_pu;	/* the progress step's CPU */
	int ncompute;		/* = compute_threads */
	int compute_pus[HETSGD_TOPO_MAX_THREADS];	/* thread i's CPU */
	int oversubscribed;	/* 1: some of our threads share a core */
	char reason[320];	/* why, for a person */
};

/*
 * Plan the placement of rank req->local_rank.  Every rank of the node
 * computes the same plan for all ranks and keeps its own part, so ranks
 * never collide without talking to each other.
 *
 * Cores: the unit is a core, represented by its first allowed PU (in
 * hwloc's order), so two of our threads never share a core through its
 * hyperthreads while free cores remain; a machine hwloc shows without
 * cores uses PUs.  Each rank needs compute_threads + 1 cores.
 *
 * 1. Devices.  Ranks are dealt round-robin by local rank over the devices
 *    with an active port (all devices when none reports one), or all use
 *    req->device.  A device is local to the NUMA nodes of its first
 *    non-I/O ancestor in hwloc; a device without PCI parent (soft-RoCE)
 *    to every node.  Without devices every rank is local to every node.
 * 2. Local blocks.  In local-rank order, each rank takes the first
 *    compute_threads + 1 still-free allowed cores of its device's NUMA
 *    nodes, when that many are left; so the ranks that share a locality
 *    split its cores into contiguous blocks, rank by rank.
 * 3. Overflow.  Then, in local-rank order, each rank that found too few
 *    takes the free allowed cores nearest its device: the leftovers on
 *    the device's nodes, then by the deepest common hwloc ancestor, then
 *    in hwloc's order.  Its reason says so.
 * 4. Not enough allowed cores for every rank: -ENOSPC, with the numbers
 *    and the fixes, unless oversubscription is allowed; then every rank's
 *    slot s (rank * (threads + 1) + thread) gets core s modulo the allowed
 *    cores, in hwloc's order, and plan->oversubscribed is set.
 *
 * The progress step gets the rank's first core (the nearest its device),
 * compute thread i the next.  Memory: the allowed NUMA node holding most
 * of the rank's cores, ties going to the device's node, then to the
 * lowest number; for this machine, "allowed" also honours the process's
 * memory binding (numactl --membind, cgroup cpuset.mems).
 *
 * -EINVAL for a bad request (sizes, a malformed cpuset, a cpuset outside
 * the machine or outside the process binding, one that leaves no core);
 * -ENODEV for an unknown device (the message lists those that exist);
 * -ENOSPC as above.
 */
int hetsgd_topo_plan(const struct hetsgd_topo *topo,
		     const struct hetsgd_topo_req *req,
		     struct hetsgd_topo_plan *plan);

/*
 * Bind the calling thread to one CPU.  Only for the machine this process
 * runs on (-EINVAL for an XML or synthetic one), and only inside the
 * process's binding read at open (-EINVAL otherwise): a thread is never
 * moved outside what its launcher gave.
 */
int hetsgd_topo_bind_thread(const struct hetsgd_topo *topo, int os_pu);

/*
 * Page-aligned, zeroed memory bound (MPOL_BIND) to NUMA node numa_node,
 * for staging rings, send buffers and models.  Its pages are faulted in
 * here, so placement does not depend on which thread touches them first
 * and the hot path takes no page fault.  numa_node -1, or a kernel
 * without NUMA support: plain page-aligned memory.  When the kernel
 * refuses the policy (a container's seccomp profile may forbid mbind)
 * the memory is returned unbound: placement is a speed-up, not a
 * correctness requirement.
 *
 * Returns NULL and sets errno (and hetsgd_topo_errmsg()) on failure:
 * EINVAL for bytes 0 or a node this process may not use, ENOMEM.
 * Free with hetsgd_topo_free() and the same bytes, never with free().
 */
void *hetsgd_topo_alloc(int numa_node, size_t bytes);
void hetsgd_topo_free(void *p, size_t bytes);	/* NULL is accepted */

/*
 * Bind pages of an existing mapping (e.g. a shared-memory segment, before
 * its pages are first allocated) to numa_node, as hetsgd_topo_alloc does.
 * 0 also when numa_node is -1, the kernel has no NUMA support, or mbind is
 * forbidden; -EINVAL for a node this process may not use.
 */
int hetsgd_topo_bind_memory(void *p, size_t bytes, int numa_node);

/*
 * Reports for people and for programs.  describe: the machine (NUMA
 * nodes with their cores and memory, RDMA devices with their locality,
 * the allowed CPUs); plan_print: one rank's plan in two lines.  The
 * _json variants write one JSON object (no newline after it).
 * print_json_string writes s as a JSON string literal, or null for NULL:
 * " and \ escaped, every control character (below 0x20, and 0x7f) as
 * \n, \r, \t or \u00XX, well-formed UTF-8 as it is, and each byte that
 * is not part of well-formed UTF-8 as \ufffd.
 * Each returns 0, or -EIO when the stream reports an error.
 */
int hetsgd_topo_describe(const struct hetsgd_topo *topo, FILE *f);
int hetsgd_topo_describe_json(const struct hetsgd_topo *topo, FILE *f);
int hetsgd_topo_plan_print(const struct hetsgd_topo_plan *plan, FILE *f);
int hetsgd_topo_plan_print_json(const struct hetsgd_topo_plan *plan, FILE *f);
int hetsgd_topo_print_json_string(FILE *f, const char *s);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_TOPOLOGY_H */
