/*
 * IDX files (MNIST's format) and Fashion-MNIST where Debian's
 * dataset-fashion-mnist installs it.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "data_priv.h"

static uint32_t be32(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	       (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static int idx_header(struct data_gz *f, const char *path, uint32_t magic,
		      unsigned ndims, uint32_t *dims)
{
	unsigned char h[16];
	size_t want = 4 + 4 * (size_t)ndims;
	int64_t r = data_gz_read_full(f, path, h, want);
	unsigned i;

	if (r < 0)
		return (int)r;
	if (r >= 4 && be32(h) != magic)
		return algo_err(-EBADMSG, "%s: bad IDX magic 0x%08x, expected 0x%08x (%s); pass the %s file",
				path, be32(h), magic,
				magic == 0x803 ? "uint8 images, 3 dimensions" : "uint8 labels, 1 dimension",
				magic == 0x803 ? "images" : "labels");
	if ((size_t)r < want)
		return algo_err(-EBADMSG, "%s: truncated IDX header (%lld of %zu bytes); fetch the file again",
				path, (long long)r, want);
	for (i = 0; i < ndims; i++)
		dims[i] = be32(h + 4 + 4 * i);
	return 0;
}

/* A file must end where its header says. */
static int idx_check_end(struct data_gz *f, const char *path)
{
	unsigned char c;
	int64_t r = data_gz_read_full(f, path, &c, 1);

	if (r < 0)
		return (int)r;
	if (r > 0)
		return algo_err(-EBADMSG, "%s: trailing bytes after the data the IDX header announces; the file is damaged: fetch it again",
				path);
	return 0;
}

/*
 * The pixels of f, scaled to [0, 1], into r->dense, read through chunk
 * (64 KiB).  They grow with the data read, so a damaged header that
 * announces terabytes gives "truncated", not a huge allocation.
 */
static int idx_read_pixels(struct data_gz *f, const char *path, unsigned char *chunk,
			   struct hetsgd_dataset *r)
{
	uint64_t total = r->n * r->p, done = 0, cap = 0, i;

	while (done < total) {
		size_t want = total - done > (1 << 16) ? (1 << 16) : (size_t)(total - done);
		int64_t got;

		if (done + want > cap) {
			uint64_t c = cap ? cap : (uint64_t)1 << 24;
			float *nd;

			while (c < done + want)
				c *= 2;
			if (c > total)
				c = total;
			nd = c > SIZE_MAX / sizeof(float) ? NULL :
			     realloc(r->dense, (size_t)c * sizeof(float));
			if (!nd)
				return data_oom("IDX images");
			r->dense = nd;
			cap = c;
		}
		got = data_gz_read_full(f, path, chunk, want);
		if (got < 0)
			return (int)got;
		for (i = 0; i < (uint64_t)got; i++)
			r->dense[done + i] = (float)chunk[i] / 255.0f;
		done += (uint64_t)got;
		if ((size_t)got < want)
			return algo_err(-EBADMSG, "%s: truncated: %llu of %llu pixel bytes; fetch the file again",
					path, (unsigned long long)done,
					(unsigned long long)total);
	}
	return idx_check_end(f, path);
}

/* The r->n labels of f into r->labels, read through chunk (64 KiB). */
static int idx_read_labels(struct data_gz *f, const char *path, unsigned char *chunk,
			   struct hetsgd_dataset *r)
{
	uint64_t done, i;

	r->labels = data_alloc_array(r->n, sizeof(*r->labels));
	if (!r->labels)
		return data_oom("IDX labels");
	for (done = 0; done < r->n;) {
		size_t want = r->n - done > (1 << 16) ? (1 << 16) : (size_t)(r->n - done);
		int64_t got = data_gz_read_full(f, path, chunk, want);

		if (got < 0)
			return (int)got;
		for (i = 0; i < (uint64_t)got; i++) {
			if (chunk[i] >= 10)
				return algo_err(-EBADMSG, "%s: label %u of sample %llu is not below 10; pass an MNIST or Fashion-MNIST label file",
						path, chunk[i], (unsigned long long)(done + i));
			r->labels[done + i] = chunk[i];
		}
		done += (uint64_t)got;
		if ((size_t)got < want)
			return algo_err(-EBADMSG, "%s: truncated: %llu of %llu labels; fetch the file again",
					path, (unsigned long long)done,
					(unsigned long long)r->n);
	}
	return idx_check_end(f, path);
}

int hetsgd_idx_load(const char *images_path, const char *labels_path,
		    struct hetsgd_dataset *out)
{
	struct hetsgd_dataset r = { 0 };
	struct data_gz *fi = NULL, *fl = NULL;
	uint32_t di[3], dl[1];
	unsigned char *chunk = NULL;
	int ret;

	if (!out)
		return algo_err(-EINVAL, "output dataset is NULL: pass a struct hetsgd_dataset");
	ret = data_gz_open_read(images_path, &fi);
	if (ret)
		return ret;
	ret = data_gz_open_read(labels_path, &fl);
	if (ret)
		goto out;
	ret = idx_header(fi, images_path, 0x00000803, 3, di);
	if (ret)
		goto out;
	ret = idx_header(fl, labels_path, 0x00000801, 1, dl);
	if (ret)
		goto out;
	if (di[0] != dl[0]) {
		ret = algo_err(-EBADMSG, "%s holds %u images but %s holds %u labels; pass files of the same set (train or t10k)",
			       images_path, di[0], labels_path, dl[0]);
		goto out;
	}
	if (di[0] == 0 || di[1] == 0 || di[2] == 0 ||
	    (uint64_t)di[1] * di[2] > UINT32_MAX) {
		ret = algo_err(-EBADMSG, "%s: bad IDX dimensions %u x %u x %u; the file is damaged: fetch it again",
			       images_path, di[0], di[1], di[2]);
		goto out;
	}
	r.n = di[0];
	r.p = di[1] * di[2];
	r.classes = 10;
	chunk = malloc(1 << 16);
	if (!chunk) {
		ret = data_oom("IDX images");
		goto out;
	}
	ret = idx_read_pixels(fi, images_path, chunk, &r);
	if (!ret)
		ret = idx_read_labels(fl, labels_path, chunk, &r);
	if (ret)
		goto out;
	*out = r;
	r = (struct hetsgd_dataset){ 0 };
out:
	free(chunk);
	hetsgd_dataset_free(&r);
	if (fl)
		data_gz_close(fl);
	data_gz_close(fi);
	return ret;
}

static int readable(const char *dir, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s.gz", dir, name);
	if (!access(buf, R_OK))
		return 1;
	snprintf(buf, len, "%s/%s", dir, name);
	return !access(buf, R_OK);
}

int hetsgd_fashion_mnist_dir(const char **dir)
{
	const char *d = getenv(HETSGD_FASHION_MNIST_ENV);
	char path[4096];

	if (!d || !*d)
		d = HETSGD_FASHION_MNIST_DEFAULT_DIR;
	if (!readable(d, "train-images-idx3-ubyte", path, sizeof(path)))
		return algo_err(-ENOENT, "Fashion-MNIST not found: no readable %s/train-images-idx3-ubyte(.gz); install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set %s to the folder holding the IDX files",
				d, HETSGD_FASHION_MNIST_ENV);
	*dir = d;
	return 0;
}

int hetsgd_fashion_mnist_load(int test, struct hetsgd_dataset *out)
{
	const char *dir, *pre = test ? "t10k" : "train";
	char name[64], img[4096], lab[4096];
	int ret = hetsgd_fashion_mnist_dir(&dir);

	if (ret)
		return ret;
	snprintf(name, sizeof(name), "%s-images-idx3-ubyte", pre);
	if (!readable(dir, name, img, sizeof(img)))
		return algo_err(-ENOENT, "Fashion-MNIST: no readable %s/%s(.gz); reinstall the Debian package dataset-fashion-mnist",
				dir, name);
	snprintf(name, sizeof(name), "%s-labels-idx1-ubyte", pre);
	if (!readable(dir, name, lab, sizeof(lab)))
		return algo_err(-ENOENT, "Fashion-MNIST: no readable %s/%s(.gz); reinstall the Debian package dataset-fashion-mnist",
				dir, name);
	return hetsgd_idx_load(img, lab, out);
}
