/*
 * PMIx bootstrap (srun --mpi=pmix, and any PMIx launcher).
 * allgather = put under a key unique to this collective, commit, fence
 * with data collection, then get every rank's value.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport_priv.h"

#ifdef HAVE_PMIX
#include <pmix.h>

struct pmix_state {
	pmix_proc_t me;
};

static int pmix_allgather(struct hetsgd_boot *boot, const void *mine,
			  void *all, size_t len)
{
	struct pmix_state *st = boot->priv;
	char key[PMIX_MAX_KEYLEN + 1];
	pmix_value_t val, *got;
	pmix_info_t info;
	bool collect = true;
	pmix_status_t rc;
	int r;

	snprintf(key, sizeof(key), "hetsgd.ag.%u", boot->seq);
	PMIX_VALUE_CONSTRUCT(&val);
	val.type = PMIX_BYTE_OBJECT;
	val.data.bo.bytes = (char *)mine;
	val.data.bo.size = len;
	rc = PMIx_Put(PMIX_GLOBAL, key, &val);
	if (rc == PMIX_SUCCESS)
		rc = PMIx_Commit();
	if (rc != PMIX_SUCCESS)
		return hetsgd_err(-EIO, "PMIx_Put/Commit of %zu bytes failed: %s",
				  len, PMIx_Error_string(rc));

	PMIX_INFO_CONSTRUCT(&info);
	PMIX_INFO_LOAD(&info, PMIX_COLLECT_DATA, &collect, PMIX_BOOL);
	rc = PMIx_Fence(NULL, 0, &info, 1);
	PMIX_INFO_DESTRUCT(&info);
	if (rc != PMIX_SUCCESS)
		return hetsgd_err(-EIO, "PMIx_Fence failed: %s (a rank died or left the job?)",
				  PMIx_Error_string(rc));

	for (r = 0; r < boot->size; r++) {
		pmix_proc_t peer;

		PMIX_PROC_LOAD(&peer, st->me.nspace, (pmix_rank_t)r);
		rc = PMIx_Get(&peer, key, NULL, 0, &got);
		if (rc != PMIX_SUCCESS)
			return hetsgd_err(-EIO, "PMIx_Get of rank %d's '%s' failed: %s",
					  r, key, PMIx_Error_string(rc));
		if (got->type != PMIX_BYTE_OBJECT || got->data.bo.size != len) {
			size_t size = got->type == PMIX_BYTE_OBJECT ? got->data.bo.size : 0;

			PMIX_VALUE_RELEASE(got);
			return hetsgd_err(-EPROTO,
					  "rank %d contributed %zu bytes to collective %u, this rank %zu: "
					  "every rank must make the same calls in the same order",
					  r, size, boot->seq, len);
		}
		if (len)
			memcpy((char *)all + (size_t)r * len, got->data.bo.bytes, len);
		PMIX_VALUE_RELEASE(got);
	}
	return 0;
}

static int pmix_barrier(struct hetsgd_boot *boot)
{
	pmix_status_t rc = PMIx_Fence(NULL, 0, NULL, 0);

	(void)boot;
	if (rc != PMIX_SUCCESS)
		return hetsgd_err(-EIO, "PMIx_Fence failed: %s", PMIx_Error_string(rc));
	return 0;
}

/* Slurm's PMIx plugin kills the step when a task that has not finalized
 * dies: leaving early keeps the survivors of a rank's death running. */
static void pmix_leave(struct hetsgd_boot *boot)
{
	(void)boot;
	PMIx_Finalize(NULL, 0);
}

static void pmix_close(struct hetsgd_boot *boot)
{
	if (!boot->left)
		PMIx_Finalize(NULL, 0);
	free(boot->priv);
	boot->priv = NULL;
}

static const struct hetsgd_boot_ops pmix_ops = {
	.allgather = pmix_allgather,
	.barrier = pmix_barrier,
	.leave = pmix_leave,
	.close = pmix_close,
};

int hetsgd_boot_pmix_open(struct hetsgd_boot *boot)
{
	struct pmix_state *st = calloc(1, sizeof(*st));
	pmix_value_t *val;
	pmix_proc_t wild;
	pmix_status_t rc;

	if (!st)
		return hetsgd_err(-ENOMEM, "out of memory");
	rc = PMIx_Init(&st->me, NULL, 0);
	if (rc != PMIX_SUCCESS) {
		free(st);
		return hetsgd_err(-ENOTCONN,
				  "PMIx_Init failed: %s: start the ranks with srun --mpi=pmix "
				  "(srun --mpi=list shows what this Slurm offers), or pick another bootstrap",
				  PMIx_Error_string(rc));
	}
	PMIX_PROC_LOAD(&wild, st->me.nspace, PMIX_RANK_WILDCARD);
	rc = PMIx_Get(&wild, PMIX_JOB_SIZE, NULL, 0, &val);
	if (rc != PMIX_SUCCESS || val->type != PMIX_UINT32) {
		if (rc == PMIX_SUCCESS)
			PMIX_VALUE_RELEASE(val);
		PMIx_Finalize(NULL, 0);
		free(st);
		return hetsgd_err(-EIO, "PMIx did not give the job size: %s",
				  PMIx_Error_string(rc));
	}
	boot->size = (int)val->data.uint32;
	PMIX_VALUE_RELEASE(val);
	boot->rank = (int)st->me.rank;
	boot->priv = st;
	boot->ops = &pmix_ops;
	return 0;
}

#else /* !HAVE_PMIX */

int hetsgd_boot_pmix_open(struct hetsgd_boot *boot)
{
	(void)boot;
	return hetsgd_err(-ENOTSUP,
			  "this hetsgd was built without PMIx: install libpmix-dev and reconfigure "
			  "(./configure --with-pmix), or use --mpi=pmi2");
}

#endif
