/*
 * Data sets: what every loader shares (growing arrays, subsets, reads).
 * The loaders and generators are data_libsvm.c, data_idx.c,
 * data_synth.c and data_split.c.
 *
 * Files are read through zlib's gz* calls, which read plain files too, so
 * compression is detected from the content.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "data_priv.h"

int data_oom(const char *what)
{
	return algo_err(-ENOMEM, "out of memory allocating %s: free memory or load a smaller data set", what);
}

int data_grow(void **p, uint64_t *cap, uint64_t need, size_t sz)
{
	uint64_t c = *cap ? *cap : 64;
	void *q;

	if (need <= *cap)
		return 0;
	while (c < need) {
		if (c > UINT64_MAX / 2)
			return -ENOMEM;
		c *= 2;
	}
	if (c > SIZE_MAX / sz)
		return -ENOMEM;
	q = realloc(*p, (size_t)c * sz);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

void hetsgd_dataset_free(struct hetsgd_dataset *ds)
{
	if (!ds)
		return;
	free(ds->dense);
	free(ds->row_ptr);
	free(ds->col);
	free(ds->val);
	free(ds->labels);
	free(ds->targets);
	free(ds->label_values);
	memset(ds, 0, sizeof(*ds));
}

uint64_t hetsgd_dataset_nnz(const struct hetsgd_dataset *ds)
{
	if (ds->row_ptr)
		return ds->row_ptr[ds->n];
	return ds->n * ds->p;
}

void *data_alloc_array(uint64_t count, size_t sz)
{
	if (count > SIZE_MAX / sz)
		return NULL;
	return malloc(count ? (size_t)count * sz : 1);
}

int hetsgd_dataset_subset(const struct hetsgd_dataset *ds,
			  const uint64_t *idx, uint64_t k,
			  struct hetsgd_dataset *out)
{
	struct hetsgd_dataset r = { .n = k, .p = ds->p, .classes = ds->classes };
	uint64_t i, nnz = 0;

	for (i = 0; i < k; i++)
		if (idx[i] >= ds->n)
			return algo_err(-EINVAL, "subset index %llu is out of range (n = %llu): pass indices below n",
					(unsigned long long)idx[i], (unsigned long long)ds->n);
	if (ds->labels && !(r.labels = data_alloc_array(k, sizeof(*r.labels))))
		goto nomem;
	if (ds->targets && !(r.targets = data_alloc_array(k, sizeof(*r.targets))))
		goto nomem;
	if (ds->label_values) {
		r.label_values = data_alloc_array(ds->classes, sizeof(double));
		if (!r.label_values)
			goto nomem;
		memcpy(r.label_values, ds->label_values, ds->classes * sizeof(double));
	}
	if (ds->row_ptr) {
		for (i = 0; i < k; i++)
			nnz += ds->row_ptr[idx[i] + 1] - ds->row_ptr[idx[i]];
		r.row_ptr = data_alloc_array(k + 1, sizeof(*r.row_ptr));
		r.col = data_alloc_array(nnz, sizeof(*r.col));
		r.val = data_alloc_array(nnz, sizeof(*r.val));
		if (!r.row_ptr || !r.col || !r.val)
			goto nomem;
		r.row_ptr[0] = 0;
		for (i = 0; i < k; i++) {
			uint64_t b = ds->row_ptr[idx[i]], e = ds->row_ptr[idx[i] + 1];

			memcpy(r.col + r.row_ptr[i], ds->col + b, (e - b) * sizeof(*r.col));
			memcpy(r.val + r.row_ptr[i], ds->val + b, (e - b) * sizeof(*r.val));
			r.row_ptr[i + 1] = r.row_ptr[i] + (e - b);
		}
	} else {
		if (ds->p && k > UINT64_MAX / ds->p)
			goto nomem;
		r.dense = data_alloc_array(k * ds->p, sizeof(float));
		if (!r.dense)
			goto nomem;
		for (i = 0; i < k; i++)
			memcpy(r.dense + i * ds->p, ds->dense + idx[i] * ds->p,
			       (size_t)ds->p * sizeof(float));
	}
	for (i = 0; i < k; i++) {
		if (r.labels)
			r.labels[i] = ds->labels[idx[i]];
		if (r.targets)
			r.targets[i] = ds->targets[idx[i]];
	}
	*out = r;
	return 0;
nomem:
	hetsgd_dataset_free(&r);
	return data_oom("a subset");
}

/* ---------------------------------------------------------------- gz I/O */

int data_gz_open_read(const char *path, gzFile *out)
{
	gzFile f;

	if (!path)
		return algo_err(-EINVAL, "file name is NULL: pass a path");
	errno = 0;
	f = gzopen(path, "rb");
	if (!f) {
		int e = errno ? errno : ENOMEM;

		return algo_err(-e, "cannot open %s: %s; check the path and its permissions",
				path, strerror(e));
	}
	gzbuffer(f, 128 * 1024);
	*out = f;
	return 0;
}

int64_t data_gz_read_full(gzFile f, const char *path, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		unsigned chunk = len - got > (1u << 30) ? (1u << 30) : (unsigned)(len - got);
		int r = gzread(f, (char *)buf + got, chunk);

		if (r < 0) {
			int zerr;
			const char *m = gzerror(f, &zerr);

			return algo_err(-EIO, "%s: read error: %s; the file is damaged or truncated: fetch it again",
					path, zerr == Z_ERRNO ? strerror(errno) : m);
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got < len) {
		int zerr;
		const char *m = gzerror(f, &zerr);

		/* zlib reports a cut gzip stream as Z_BUF_ERROR, not as -1 */
		if (zerr != Z_OK)
			return algo_err(-EIO, "%s: read error: %s; the gzip file is damaged or truncated: fetch it again",
					path, m);
	}
	return (int64_t)got;
}
