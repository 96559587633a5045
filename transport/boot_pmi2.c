/*
 * PMI2 bootstrap (srun --mpi=pmi2).
 * PMI2's key-value space holds short strings (PMI2_MAX_VALLEN), so a
 * contribution is hex-encoded in chunks under keys unique to the
 * collective, the rank and the chunk; a fence publishes them.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport_priv.h"

#ifdef HAVE_PMI2
#include <slurm/pmi2.h>

/* Raw bytes per key: hex doubles it, and it must stay under the limit. */
#define PMI2_CHUNK 480

static const char hexdig[] = "0123456789abcdef";

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int pmi2_allgather(struct hetsgd_boot *boot, const void *mine,
			  void *all, size_t len)
{
	char key[PMI2_MAX_KEYLEN], val[PMI2_MAX_VALLEN + 1];
	const unsigned char *src = mine;
	size_t nchunks = (len + PMI2_CHUNK - 1) / PMI2_CHUNK, c, i;
	int rc, r;

	/* Chunk count goes first so a length mismatch is caught, not misread. */
	for (c = 0; c <= nchunks; c++) {
		if (c == 0) {
			snprintf(val, sizeof(val), "%zu", len);
		} else {
			size_t off = (c - 1) * PMI2_CHUNK;
			size_t n = len - off < PMI2_CHUNK ? len - off : PMI2_CHUNK;

			for (i = 0; i < n; i++) {
				val[2 * i] = hexdig[src[off + i] >> 4];
				val[2 * i + 1] = hexdig[src[off + i] & 15];
			}
			val[2 * n] = '\0';
		}
		snprintf(key, sizeof(key), "hg%u.%d.%zu", boot->seq, boot->rank, c);
		rc = PMI2_KVS_Put(key, val);
		if (rc != PMI2_SUCCESS)
			return hetsgd_err(-EIO, "PMI2_KVS_Put(%s) failed with code %d", key, rc);
	}
	rc = PMI2_KVS_Fence();
	if (rc != PMI2_SUCCESS)
		return hetsgd_err(-EIO, "PMI2_KVS_Fence failed with code %d (a rank died?)", rc);

	for (r = 0; r < boot->size; r++) {
		unsigned char *dst = (unsigned char *)all + (size_t)r * len;

		for (c = 0; c <= nchunks; c++) {
			int got = 0;

			snprintf(key, sizeof(key), "hg%u.%d.%zu", boot->seq, r, c);
			rc = PMI2_KVS_Get(boot->jobid, r, key, val, sizeof(val) - 1, &got);
			if (rc != PMI2_SUCCESS || got < 0 || got >= (int)sizeof(val))
				return hetsgd_err(-EIO, "PMI2_KVS_Get(%s) from rank %d failed with code %d",
						  key, r, rc);
			val[got] = '\0';
			if (c == 0) {
				char *end;
				unsigned long long theirs = strtoull(val, &end, 10);

				if (*end || theirs != len)
					return hetsgd_err(-EPROTO,
							  "rank %d contributed %s bytes to collective %u, this rank %zu: "
							  "every rank must make the same calls in the same order",
							  r, val, boot->seq, len);
				continue;
			}
			{
				size_t off = (c - 1) * PMI2_CHUNK;
				size_t n = len - off < PMI2_CHUNK ? len - off : PMI2_CHUNK;

				if (strlen(val) != 2 * n)
					return hetsgd_err(-EPROTO, "PMI2 value %s from rank %d is %zu chars, expected %zu",
							  key, r, strlen(val), 2 * n);
				for (i = 0; i < n; i++) {
					int hi = unhex(val[2 * i]), lo = unhex(val[2 * i + 1]);

					if (hi < 0 || lo < 0)
						return hetsgd_err(-EPROTO, "PMI2 value %s from rank %d is not hex", key, r);
					dst[off + i] = (unsigned char)(hi << 4 | lo);
				}
			}
		}
	}
	return 0;
}

static int pmi2_barrier(struct hetsgd_boot *boot)
{
	int rc = PMI2_KVS_Fence();

	(void)boot;
	if (rc != PMI2_SUCCESS)
		return hetsgd_err(-EIO, "PMI2_KVS_Fence failed with code %d", rc);
	return 0;
}

static void pmi2_leave(struct hetsgd_boot *boot)
{
	(void)boot;
	PMI2_Finalize();
}

static void pmi2_close(struct hetsgd_boot *boot)
{
	if (!boot->left)
		PMI2_Finalize();
}

static const struct hetsgd_boot_ops pmi2_ops = {
	.allgather = pmi2_allgather,
	.barrier = pmi2_barrier,
	.leave = pmi2_leave,
	.close = pmi2_close,
};

int hetsgd_boot_pmi2_open(struct hetsgd_boot *boot)
{
	int spawned = 0, size = 0, rank = 0, appnum = 0, rc;

	/* Without PMI_FD, Slurm's libpmi2 would fall back to a singleton. */
	if (!getenv("PMI_FD"))
		return hetsgd_err(-ENOTCONN,
				  "PMI2 needs PMI_FD from the launcher: start the ranks with srun --mpi=pmi2");
	rc = PMI2_Init(&spawned, &size, &rank, &appnum);
	if (rc != PMI2_SUCCESS)
		return hetsgd_err(-ENOTCONN,
				  "PMI2_Init failed with code %d: start the ranks with srun --mpi=pmi2", rc);
	rc = PMI2_Job_GetId(boot->jobid, sizeof(boot->jobid));
	if (rc != PMI2_SUCCESS) {
		PMI2_Finalize();
		return hetsgd_err(-EIO, "PMI2_Job_GetId failed with code %d", rc);
	}
	if (size < 1 || rank < 0 || rank >= size) {
		PMI2_Finalize();
		return hetsgd_err(-EPROTO, "PMI2 gave rank %d of %d", rank, size);
	}
	boot->rank = rank;
	boot->size = size;
	boot->ops = &pmi2_ops;
	return 0;
}

#else /* !HAVE_PMI2 */

int hetsgd_boot_pmi2_open(struct hetsgd_boot *boot)
{
	(void)boot;
	return hetsgd_err(-ENOTSUP,
			  "this hetsgd was built without PMI2: install libpmi2-0-dev and reconfigure "
			  "(./configure --with-pmi2), or use --mpi=pmix");
}

#endif
