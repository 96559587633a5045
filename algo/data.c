/*
 * Data sets: what every loader shares (growing arrays, subsets, reads).
 * The loaders and generators are data_libsvm.c, data_idx.c,
 * data_synth.c and data_split.c.
 *
 * Files are plain or gzip, told apart by their content (data_gz_*).
 */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
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

/*
 * Plain or gzip files, told apart by their first two bytes (1f 8b).  Not
 * zlib's gz* calls: they ignore whatever follows the last gzip member, so
 * rows appended to a .gz file, or the rest of a damaged one, vanished
 * without a word.  Here the members are inflated one after another and
 * anything after the last one that is not another member is an error.
 */
struct data_gz {
	FILE *fp;
	int gzip, eof, zinit;
	int ended;			/* gzip: the last member is done */
	z_stream z;
	unsigned char *in;		/* GZ_BUF bytes: in[pos .. len) unread */
	size_t pos, len;
	uint64_t off;			/* file offset of in[0] */
};

#define GZ_BUF (128u * 1024)

/* Keep at least want unread bytes in the buffer while the file has them. */
static int gz_fill(struct data_gz *f, size_t want)
{
	if (f->len - f->pos >= want || f->eof)
		return 0;
	memmove(f->in, f->in + f->pos, f->len - f->pos);
	f->off += f->pos;
	f->len -= f->pos;
	f->pos = 0;
	while (f->len < want && !f->eof) {
		size_t n = fread(f->in + f->len, 1, GZ_BUF - f->len, f->fp);

		if (n == 0) {
			if (ferror(f->fp))
				return -errno ? -errno : -EIO;
			f->eof = 1;
		}
		f->len += n;
	}
	return 0;
}

int data_gz_open_read(const char *path, struct data_gz **out)
{
	struct data_gz *f;
	int e;

	if (!path)
		return algo_err(-EINVAL, "file name is NULL: pass a path");
	f = calloc(1, sizeof(*f));
	if (!f || !(f->in = malloc(GZ_BUF))) {
		free(f);
		return data_oom("a read buffer");
	}
	f->fp = fopen(path, "rb");
	if (!f->fp) {
		e = errno ? errno : ENOMEM;
		data_gz_close(f);
		return algo_err(-e, "cannot open %s: %s; check the path and its permissions", path, strerror(e));
	}
	e = gz_fill(f, 2);
	if (e) {
		data_gz_close(f);
		return algo_err(e, "%s: read error: %s", path, strerror(-e));
	}
	f->gzip = f->len >= 2 && f->in[0] == 0x1f && f->in[1] == 0x8b;
	if (f->gzip) {
		if (inflateInit2(&f->z, 15 + 16) != Z_OK) {
			data_gz_close(f);
			return data_oom("a gzip stream");
		}
		f->zinit = 1;
	}
	*out = f;
	return 0;
}

void data_gz_close(struct data_gz *f)
{
	if (!f)
		return;
	if (f->zinit)
		inflateEnd(&f->z);
	if (f->fp)
		fclose(f->fp);
	free(f->in);
	free(f);
}

/* One gzip member ended: another must follow, or the end of the file. */
static int gz_member_end(struct data_gz *f, const char *path)
{
	int e = gz_fill(f, 2);

	if (e)
		return algo_err(e, "%s: read error: %s", path, strerror(-e));
	if (f->pos == f->len)
		return 1;	/* the end */
	if (f->len - f->pos >= 2 && f->in[f->pos] == 0x1f && f->in[f->pos + 1] == 0x8b) {
		inflateReset(&f->z);
		return 0;
	}
	return algo_err(-EBADMSG, "%s: %zu bytes at offset %llu after the end of the gzip data: the file was damaged "
			"or appended to; recompress it whole (gzip FILE) or fetch it again",
			path, f->len - f->pos, (unsigned long long)(f->off + f->pos));
}

static int64_t gz_inflate(struct data_gz *f, const char *path, unsigned char *buf, size_t len)
{
	size_t got = 0;

	while (got < len && !f->ended) {
		size_t ask = len - got > UINT_MAX ? UINT_MAX : len - got;
		int e = gz_fill(f, 1), r;

		if (e)
			return algo_err(e, "%s: read error: %s", path, strerror(-e));
		if (f->pos == f->len)
			return algo_err(-EIO, "%s: the gzip data ends in the middle: the file is truncated; fetch it again",
					path);
		f->z.next_in = f->in + f->pos;
		f->z.avail_in = (uInt)(f->len - f->pos);
		f->z.next_out = buf + got;
		f->z.avail_out = (uInt)ask;
		r = inflate(&f->z, Z_NO_FLUSH);
		f->pos = f->len - f->z.avail_in;
		got += ask - f->z.avail_out;
		if (r == Z_STREAM_END) {
			e = gz_member_end(f, path);
			if (e < 0)
				return e;
			f->ended = e > 0;
		} else if (r != Z_OK && r != Z_BUF_ERROR) {
			return algo_err(-EIO, "%s: the gzip data is damaged (%s): fetch the file again", path,
					f->z.msg ? f->z.msg : "inflate failed");
		}
	}
	return (int64_t)got;
}

int64_t data_gz_read_full(struct data_gz *f, const char *path, void *buf, size_t len)
{
	size_t got = 0;

	if (f->gzip)
		return gz_inflate(f, path, buf, len);
	while (got < len) {
		size_t n;
		int e = gz_fill(f, 1);

		if (e)
			return algo_err(e, "%s: read error: %s", path, strerror(-e));
		if (f->pos == f->len)
			break;
		n = f->len - f->pos < len - got ? f->len - f->pos : len - got;
		memcpy((char *)buf + got, f->in + f->pos, n);
		f->pos += n;
		got += n;
	}
	return (int64_t)got;
}
