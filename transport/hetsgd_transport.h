/*
 * hetsgd transport: the one-sided block transport and the out-of-band
 * bootstrap it is built on.
 *
 * Conventions (as in rdma-core and libfabric): a call returns 0 or a
 * negative errno value; a failed call leaves a sentence naming the cause
 * and the fix in hetsgd_errmsg(); outputs are written only on success.
 */
#ifndef HETSGD_TRANSPORT_H
#define HETSGD_TRANSPORT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The message of the last failed hetsgd call in this thread ("" if none). */
const char *hetsgd_errmsg(void);

/*
 * Bootstrap: rank, size and the two collectives the transport needs to
 * exchange connection data before any RDMA traffic exists.
 */
enum hetsgd_boot_kind {
	HETSGD_BOOT_AUTO = 0,	/* PMIx, then PMI2, from the environment */
	HETSGD_BOOT_PMIX,	/* srun --mpi=pmix, prterun, mpirun */
	HETSGD_BOOT_PMI2,	/* srun --mpi=pmi2 */
	HETSGD_BOOT_LOCAL,	/* ranks forked by hetsgd_boot_local_run() */
};

struct hetsgd_boot;

/* "auto", "pmix", "pmi2" or "local"; -EINVAL for anything else. */
int hetsgd_boot_kind_parse(const char *name, enum hetsgd_boot_kind *kind);
const char *hetsgd_boot_kind_name(enum hetsgd_boot_kind kind);

/*
 * Join the job that launched this process.  HETSGD_BOOT_LOCAL cannot be
 * opened this way: local ranks receive their handle from
 * hetsgd_boot_local_run().  -ENOTSUP when the backend was not built in,
 * -ENOENT when AUTO finds no launcher in the environment.
 */
int hetsgd_boot_open(enum hetsgd_boot_kind kind, struct hetsgd_boot **boot);

int hetsgd_boot_rank(const struct hetsgd_boot *boot);
int hetsgd_boot_size(const struct hetsgd_boot *boot);
enum hetsgd_boot_kind hetsgd_boot_get_kind(const struct hetsgd_boot *boot);

/*
 * Every rank contributes len bytes; all receives size * len bytes ordered
 * by rank.  Every rank must call with the same len, in the same order of
 * collectives; a mismatch is reported (-EPROTO) where the backend can see it.
 */
int hetsgd_boot_allgather(struct hetsgd_boot *boot, const void *mine,
			  void *all, size_t len);
int hetsgd_boot_barrier(struct hetsgd_boot *boot);

/* Leave the job and free the handle; NULL is accepted. */
void hetsgd_boot_close(struct hetsgd_boot *boot);

/*
 * Local launcher: fork nranks processes on this host, each of which runs
 * fn(boot, arg) and exits with its return value (0 = success).  The
 * calling process serves the collectives and waits for every rank.
 * Returns 0 when every rank returned 0; otherwise -ECHILD and the first
 * failure is described in hetsgd_errmsg().  When statuses is not NULL it
 * receives nranks wait(2) statuses.  Ranks must not return from fn into
 * the caller's stack: the launcher _exit()s them after flushing stdio.
 */
typedef int (*hetsgd_rank_fn)(struct hetsgd_boot *boot, void *arg);
int hetsgd_boot_local_run(int nranks, hetsgd_rank_fn fn, void *arg,
			  int *statuses);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_TRANSPORT_H */
