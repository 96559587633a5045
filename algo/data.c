/*
 * Data: LIBSVM text, IDX files, generated data, and splits across workers.
 *
 * Files are read through zlib's gz* calls, which read plain files too, so
 * compression is detected from the content.  Lines are cut from gzread()
 * chunks rather than gzgets(): gzgets cannot tell how many bytes it stored
 * when a line holds a NUL byte, and garbage input must give an error, not
 * a silently shortened line.
 */
#include <config.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "algo_priv.h"

static int oom(const char *what)
{
	return algo_err(-ENOMEM, "out of memory allocating %s: free memory or load a smaller data set", what);
}

/* Grow *p (elements of size sz) to hold at least need; doubles the capacity. */
static int grow(void **p, uint64_t *cap, uint64_t need, size_t sz)
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

static void *alloc_array(uint64_t count, size_t sz)
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
	if (ds->labels && !(r.labels = alloc_array(k, sizeof(*r.labels))))
		goto nomem;
	if (ds->targets && !(r.targets = alloc_array(k, sizeof(*r.targets))))
		goto nomem;
	if (ds->label_values) {
		r.label_values = alloc_array(ds->classes, sizeof(double));
		if (!r.label_values)
			goto nomem;
		memcpy(r.label_values, ds->label_values, ds->classes * sizeof(double));
	}
	if (ds->row_ptr) {
		for (i = 0; i < k; i++)
			nnz += ds->row_ptr[idx[i] + 1] - ds->row_ptr[idx[i]];
		r.row_ptr = alloc_array(k + 1, sizeof(*r.row_ptr));
		r.col = alloc_array(nnz, sizeof(*r.col));
		r.val = alloc_array(nnz, sizeof(*r.val));
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
		r.dense = alloc_array(k * ds->p, sizeof(float));
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
	return oom("a subset");
}

/* ---------------------------------------------------------------- gz I/O */

static int gz_open_read(const char *path, gzFile *out)
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

/* Read up to len bytes; returns the count read or a negative errno. */
static int64_t gz_read_full(gzFile f, const char *path, void *buf, size_t len)
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

/* ---------------------------------------------------------------- LIBSVM */

struct svm_state {
	const char *path;
	uint32_t p_hint;
	uint64_t n, cap_rows;
	uint64_t nnz, cap_nnz;
	uint64_t *row_ptr;
	uint32_t *col;
	float *val;
	double *lab;		/* raw label per row */
	uint32_t max_idx;
	double *distinct;	/* sorted distinct labels */
	uint64_t ndistinct, cap_distinct;
};

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Insert label v into the sorted distinct set; false when the set is full. */
static int add_distinct(struct svm_state *s, double v, uint64_t line)
{
	uint64_t lo = 0, hi = s->ndistinct;

	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;

		if (s->distinct[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->ndistinct && s->distinct[lo] == v)
		return 0;
	if (s->ndistinct >= HETSGD_MAX_CLASSES)
		return algo_err(-EOVERFLOW, "%s:%llu: too many classes: label %g would be class %u, the limit is %u; check that column 1 holds class labels (regression targets are not supported)",
				s->path, (unsigned long long)line, v,
				HETSGD_MAX_CLASSES + 1, HETSGD_MAX_CLASSES);
	if (grow((void **)&s->distinct, &s->cap_distinct, s->ndistinct + 1, sizeof(double)))
		return oom("LIBSVM labels");
	memmove(s->distinct + lo + 1, s->distinct + lo,
		(s->ndistinct - lo) * sizeof(double));
	s->distinct[lo] = v;
	s->ndistinct++;
	return 0;
}

/* Print at most 40 characters of a token for a message. */
#define TOK_FMT "'%.*s%s'"
#define TOK_ARGS(t, l) (int)((l) > 40 ? 40 : (l)), (t), ((l) > 40 ? "..." : "")

/* Long: one LIBSVM line token by token, each failure with its own message; not split in the engine restructure. */
static int svm_line(struct svm_state *s, char *line, size_t len, uint64_t ln)
{
	char *p = line, *end = line + len, *q, *tok;
	double label, v;
	uint64_t last = 0;
	size_t tl;
	int ret;

	if (memchr(line, '\0', len))
		return algo_err(-EBADMSG, "%s:%llu: NUL byte in line: this is not a LIBSVM text file; pass the right file",
				s->path, (unsigned long long)ln);
	q = memchr(line, '#', len);
	if (q)
		end = q;
	*end = '\0';
	while (p < end && (is_space(*p)))
		p++;
	if (p == end)
		return 0;	/* blank or comment */

	tok = p;
	while (p < end && !is_space(*p))
		p++;
	tl = (size_t)(p - tok);
	if (memchr(tok, ':', tl))
		return algo_err(-EBADMSG, "%s:%llu: label missing: the line starts with " TOK_FMT "; each line must start with the class label",
				s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
	errno = 0;
	label = strtod(tok, &q);
	if (q != p || tl == 0)
		return algo_err(-EBADMSG, "%s:%llu: label " TOK_FMT " is not a number; each line must start with the class label",
				s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
	if (!isfinite(label) || fabs(label) > 2147483647.0)
		return algo_err(-EOVERFLOW, "%s:%llu: label " TOK_FMT " is out of range; labels must be integers that fit in 32 bits",
				s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
	if (label != floor(label))
		return algo_err(-EBADMSG, "%s:%llu: label " TOK_FMT " is not an integer; only classification data is supported",
				s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
	if (label == 0)
		label = 0;	/* -0 and 0 are one class */
	ret = add_distinct(s, label, ln);
	if (ret)
		return ret;

	for (;;) {
		char *colon;
		unsigned long long idx;

		while (p < end && is_space(*p))
			p++;
		if (p == end)
			break;
		tok = p;
		while (p < end && !is_space(*p))
			p++;
		tl = (size_t)(p - tok);
		*p = '\0';	/* p < end or p == end, and *end is '\0' */
		colon = memchr(tok, ':', tl);
		if (!colon)
			return algo_err(-EBADMSG, "%s:%llu: missing colon in " TOK_FMT "; features are written index:value",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
		if (colon == tok || *tok < '0' || *tok > '9')
			return algo_err(-EBADMSG, "%s:%llu: index in " TOK_FMT " is not a number; features are written index:value with a positive integer index",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
		errno = 0;
		idx = strtoull(tok, &q, 10);
		if (q != colon)
			return algo_err(-EBADMSG, "%s:%llu: index in " TOK_FMT " is not a number; features are written index:value with a positive integer index",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
		if (errno == ERANGE || idx > UINT32_MAX)
			return algo_err(-EOVERFLOW, "%s:%llu: index overflow in " TOK_FMT ": the limit is %u",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl), UINT32_MAX);
		if (idx == 0)
			return algo_err(-EBADMSG, "%s:%llu: index 0 in " TOK_FMT ": LIBSVM indices start at 1; add 1 to every index of a 0-based file",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
		if (idx <= last)
			return algo_err(-EBADMSG, "%s:%llu: decreasing index %llu after %llu in " TOK_FMT ": indices must be strictly increasing; sort the features of each line",
					s->path, (unsigned long long)ln, idx, (unsigned long long)last, TOK_ARGS(tok, tl));
		if (s->p_hint && idx > s->p_hint)
			return algo_err(-EBADMSG, "%s:%llu: index %llu exceeds the %u features expected; pass p_hint 0 or the larger feature count",
					s->path, (unsigned long long)ln, idx, s->p_hint);
		if (colon[1] == '\0')
			return algo_err(-EBADMSG, "%s:%llu: value missing in " TOK_FMT "; features are written index:value",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
		errno = 0;
		v = strtod(colon + 1, &q);
		if (q == colon + 1 || *q != '\0')
			return algo_err(-EBADMSG, "%s:%llu: non-numeric value in " TOK_FMT "; values must be decimal numbers",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
		if (isnan(v) || (isinf(v) && errno != ERANGE))
			return algo_err(-EBADMSG, "%s:%llu: NaN/inf value in " TOK_FMT "; values must be finite: clean the data",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
		if (isinf(v) || fabs(v) > FLT_MAX)
			return algo_err(-EOVERFLOW, "%s:%llu: value overflow in " TOK_FMT ": a float holds at most %g; rescale the feature",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl), (double)FLT_MAX);
		if (s->nnz == s->cap_nnz) {
			/* val grows in step with col: same capacity */
			float *nv;

			if (grow((void **)&s->col, &s->cap_nnz, s->nnz + 1, sizeof(*s->col)))
				return oom("LIBSVM features");
			nv = realloc(s->val, (size_t)s->cap_nnz * sizeof(*nv));
			if (!nv)
				return oom("LIBSVM values");
			s->val = nv;
		}
		s->col[s->nnz] = (uint32_t)(idx - 1);
		s->val[s->nnz] = (float)v;
		s->nnz++;
		last = idx;
		if (idx > s->max_idx)
			s->max_idx = (uint32_t)idx;
		if (p < end)
			p++;
	}

	if (s->n == s->cap_rows) {
		/* row_ptr grows in step with lab: one more entry */
		uint64_t *nr;

		if (grow((void **)&s->lab, &s->cap_rows, s->n + 1, sizeof(*s->lab)))
			return oom("LIBSVM labels");
		nr = realloc(s->row_ptr, (size_t)(s->cap_rows + 1) * sizeof(*nr));
		if (!nr)
			return oom("LIBSVM rows");
		s->row_ptr = nr;
	}
	s->lab[s->n] = label;
	s->n++;
	s->row_ptr[s->n] = s->nnz;
	return 0;
}

static int svm_finish(struct svm_state *s, struct hetsgd_dataset *out)
{
	struct hetsgd_dataset r = { 0 };
	int pm1 = 1, b01 = 1;
	uint64_t i, k;

	if (s->n == 0)
		return algo_err(-EBADMSG, "%s: no samples: the file is empty or holds only comments; pass a LIBSVM data file",
				s->path);
	for (k = 0; k < s->ndistinct; k++) {
		if (s->distinct[k] != -1 && s->distinct[k] != 1)
			pm1 = 0;
		if (s->distinct[k] != 0 && s->distinct[k] != 1)
			b01 = 0;
	}
	r.n = s->n;
	r.p = s->p_hint > s->max_idx ? s->p_hint : s->max_idx;
	r.classes = (pm1 || b01) ? 2 : (uint32_t)s->ndistinct;
	r.labels = alloc_array(s->n, sizeof(*r.labels));
	r.label_values = alloc_array(r.classes, sizeof(double));
	if (!r.labels || !r.label_values) {
		hetsgd_dataset_free(&r);
		return oom("LIBSVM labels");
	}
	if (pm1) {
		r.label_values[0] = -1;
		r.label_values[1] = 1;
	} else if (b01) {
		r.label_values[0] = 0;
		r.label_values[1] = 1;
	} else {
		memcpy(r.label_values, s->distinct, r.classes * sizeof(double));
	}
	for (i = 0; i < s->n; i++) {
		uint64_t lo = 0, hi = r.classes - 1;

		while (lo < hi) {
			uint64_t mid = (lo + hi) / 2;

			if (r.label_values[mid] < s->lab[i])
				lo = mid + 1;
			else
				hi = mid;
		}
		r.labels[i] = (int32_t)lo;
	}
	r.row_ptr = s->row_ptr;
	r.col = s->col;
	r.val = s->val;
	s->row_ptr = NULL;
	s->col = NULL;
	s->val = NULL;
	if (!r.col) {	/* no feature at all: keep the arrays non-NULL */
		r.col = malloc(sizeof(*r.col));
		r.val = malloc(sizeof(*r.val));
		if (!r.col || !r.val) {
			hetsgd_dataset_free(&r);
			return oom("LIBSVM features");
		}
	}
	*out = r;
	return 0;
}

int hetsgd_libsvm_load(const char *path, uint32_t p_hint,
		       struct hetsgd_dataset *out)
{
	struct svm_state s = { .path = path, .p_hint = p_hint };
	char *buf = NULL;
	uint64_t cap = 0, len = 0, start = 0, ln = 0;
	gzFile f;
	int ret, eof = 0;

	if (!out)
		return algo_err(-EINVAL, "output dataset is NULL: pass a struct hetsgd_dataset");
	ret = gz_open_read(path, &f);
	if (ret)
		return ret;
	s.row_ptr = calloc(1, sizeof(*s.row_ptr));
	if (!s.row_ptr) {
		ret = oom("LIBSVM rows");
		goto out;
	}
	/*
	 * buf[start .. len) holds unparsed bytes; each complete line is parsed
	 * in place (the newline becomes the terminator).
	 */
	while (!eof) {
		int64_t r;
		char *nl;

		if (start > 0 && start == len) {
			start = len = 0;
		} else if (start > 0 && len - start < cap / 4) {
			memmove(buf, buf + start, len - start);
			len -= start;
			start = 0;
		}
		if (grow((void **)&buf, &cap, len + 65536 + 1, 1)) {
			ret = oom("a LIBSVM line");
			goto out;
		}
		r = gz_read_full(f, path, buf + len, (size_t)(cap - len - 1));
		if (r < 0) {
			ret = (int)r;
			goto out;
		}
		if ((uint64_t)r < cap - len - 1)
			eof = 1;
		len += (uint64_t)r;
		while (start < len && (nl = memchr(buf + start, '\n', len - start))) {
			ln++;
			*nl = '\0';
			ret = svm_line(&s, buf + start, (size_t)(nl - (buf + start)), ln);
			if (ret)
				goto out;
			start = (uint64_t)(nl - buf) + 1;
		}
		if (eof && start < len) {	/* last line without newline */
			ln++;
			buf[len] = '\0';
			ret = svm_line(&s, buf + start, (size_t)(len - start), ln);
			if (ret)
				goto out;
			start = len;
		}
	}
	ret = svm_finish(&s, out);
out:
	gzclose(f);
	free(buf);
	free(s.row_ptr);
	free(s.col);
	free(s.val);
	free(s.lab);
	free(s.distinct);
	return ret;
}

/* ---------------------------------------------------------------- IDX */

static uint32_t be32(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	       (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static int idx_header(gzFile f, const char *path, uint32_t magic,
		      unsigned ndims, uint32_t *dims)
{
	unsigned char h[16];
	size_t want = 4 + 4 * (size_t)ndims;
	int64_t r = gz_read_full(f, path, h, want);
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
static int idx_check_end(gzFile f, const char *path)
{
	unsigned char c;
	int64_t r = gz_read_full(f, path, &c, 1);

	if (r < 0)
		return (int)r;
	if (r > 0)
		return algo_err(-EBADMSG, "%s: trailing bytes after the data the IDX header announces; the file is damaged: fetch it again",
				path);
	return 0;
}

/* Long: two IDX files, each header field checked with its own message; not split in the engine restructure. */
int hetsgd_idx_load(const char *images_path, const char *labels_path,
		    struct hetsgd_dataset *out)
{
	struct hetsgd_dataset r = { 0 };
	gzFile fi = NULL, fl = NULL;
	uint32_t di[3], dl[1];
	unsigned char *chunk = NULL;
	uint64_t total, done = 0, cap = 0, i;
	int ret;

	if (!out)
		return algo_err(-EINVAL, "output dataset is NULL: pass a struct hetsgd_dataset");
	ret = gz_open_read(images_path, &fi);
	if (ret)
		return ret;
	ret = gz_open_read(labels_path, &fl);
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
	total = r.n * r.p;
	chunk = malloc(1 << 16);
	if (!chunk) {
		ret = oom("IDX images");
		goto out;
	}
	/*
	 * The pixels grow with the data read, so a damaged header that
	 * announces terabytes gives "truncated", not a huge allocation.
	 */
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
			     realloc(r.dense, (size_t)c * sizeof(float));
			if (!nd) {
				ret = oom("IDX images");
				goto out;
			}
			r.dense = nd;
			cap = c;
		}
		got = gz_read_full(fi, images_path, chunk, want);
		if (got < 0) {
			ret = (int)got;
			goto out;
		}
		for (i = 0; i < (uint64_t)got; i++)
			r.dense[done + i] = (float)chunk[i] / 255.0f;
		done += (uint64_t)got;
		if ((size_t)got < want) {
			ret = algo_err(-EBADMSG, "%s: truncated: %llu of %llu pixel bytes; fetch the file again",
				       images_path, (unsigned long long)done,
				       (unsigned long long)total);
			goto out;
		}
	}
	ret = idx_check_end(fi, images_path);
	if (ret)
		goto out;
	r.labels = alloc_array(r.n, sizeof(*r.labels));
	if (!r.labels) {
		ret = oom("IDX labels");
		goto out;
	}
	for (done = 0; done < r.n;) {
		size_t want = r.n - done > (1 << 16) ? (1 << 16) : (size_t)(r.n - done);
		int64_t got = gz_read_full(fl, labels_path, chunk, want);

		if (got < 0) {
			ret = (int)got;
			goto out;
		}
		for (i = 0; i < (uint64_t)got; i++) {
			if (chunk[i] >= 10) {
				ret = algo_err(-EBADMSG, "%s: label %u of sample %llu is not below 10; pass an MNIST or Fashion-MNIST label file",
					       labels_path, chunk[i],
					       (unsigned long long)(done + i));
				goto out;
			}
			r.labels[done + i] = chunk[i];
		}
		done += (uint64_t)got;
		if ((size_t)got < want) {
			ret = algo_err(-EBADMSG, "%s: truncated: %llu of %llu labels; fetch the file again",
				       labels_path, (unsigned long long)done,
				       (unsigned long long)r.n);
			goto out;
		}
	}
	ret = idx_check_end(fl, labels_path);
	if (ret)
		goto out;
	*out = r;
	r = (struct hetsgd_dataset){ 0 };
out:
	free(chunk);
	hetsgd_dataset_free(&r);
	if (fl)
		gzclose(fl);
	gzclose(fi);
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

/* ---------------------------------------------------------------- PRNG */

/* Uniform in [0, 1). */
static double rng_uniform(uint64_t *s)
{
	return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

/* Uniform in 0 .. bound - 1 (Lemire's multiply, bias below 2^-32 for our bounds). */
static uint64_t rng_below(uint64_t *s, uint64_t bound)
{
	return (uint64_t)(((unsigned __int128)splitmix64(s) * bound) >> 64);
}

static double rng_normal(uint64_t *s)
{
	double u1 = 1.0 - rng_uniform(s);	/* (0, 1]: log is finite */
	double u2 = rng_uniform(s);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* log of a Gamma(a, 1) variate, a > 0 (Marsaglia-Tsang). */
static double rng_log_gamma(uint64_t *s, double a)
{
	double boost = 0, d, c, x, v, u;

	if (a < 1) {
		/* G(a) = G(a + 1) * U^(1/a); kept in log space for tiny a */
		boost = log(1.0 - rng_uniform(s)) / a;
		a += 1;
	}
	d = a - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		do {
			x = rng_normal(s);
			v = 1 + c * x;
		} while (v <= 0);
		v = v * v * v;
		u = 1.0 - rng_uniform(s);
		if (u < 1 - 0.0331 * x * x * x * x ||
		    log(u) < 0.5 * x * x + d * (1 - v + log(v)))
			return log(d * v) + boost;
	}
}

static void shuffle(uint64_t *a, uint64_t n, uint64_t *s)
{
	uint64_t i;

	for (i = n; i > 1; i--) {
		uint64_t j = rng_below(s, i), t = a[i - 1];

		a[i - 1] = a[j];
		a[j] = t;
	}
}

/* ---------------------------------------------------------------- synth */

int hetsgd_synth_classification(uint64_t n, uint32_t p, uint32_t classes,
				uint64_t seed, struct hetsgd_dataset *out)
{
	struct hetsgd_dataset r = { .n = n, .p = p, .classes = classes };
	float *centers;
	uint64_t s = seed, i;
	uint32_t j;

	if (!out || n == 0 || p == 0 || classes < 2 || classes > HETSGD_MAX_CLASSES)
		return algo_err(-EINVAL, "synthetic classification needs n >= 1, p >= 1 and 2 <= classes <= %u (got n %llu, p %u, classes %u)",
				HETSGD_MAX_CLASSES, (unsigned long long)n, p, classes);
	if (n > UINT64_MAX / p)
		return algo_err(-EOVERFLOW, "n * p overflows: make the data set smaller");
	centers = alloc_array((uint64_t)classes * p, sizeof(float));
	r.dense = alloc_array(n * p, sizeof(float));
	r.labels = alloc_array(n, sizeof(*r.labels));
	if (!centers || !r.dense || !r.labels) {
		free(centers);
		hetsgd_dataset_free(&r);
		return oom("synthetic data");
	}
	for (i = 0; i < (uint64_t)classes * p; i++)
		centers[i] = (float)(2.0 * rng_normal(&s));
	for (i = 0; i < n; i++) {
		uint32_t c = (uint32_t)rng_below(&s, classes);

		r.labels[i] = (int32_t)c;
		for (j = 0; j < p; j++)
			r.dense[i * p + j] = centers[(uint64_t)c * p + j] +
					     (float)rng_normal(&s);
	}
	free(centers);
	*out = r;
	return 0;
}

int hetsgd_synth_regression(uint64_t n, uint32_t p, float noise,
			    uint64_t seed, struct hetsgd_dataset *out,
			    float *w)
{
	struct hetsgd_dataset r = { .n = n, .p = p };
	float *wt;
	uint64_t s = seed, i;
	uint32_t j;

	if (!out || n == 0 || p == 0 || !(noise >= 0) || isinf(noise))
		return algo_err(-EINVAL, "synthetic regression needs n >= 1, p >= 1 and a finite noise >= 0 (got n %llu, p %u, noise %g)",
				(unsigned long long)n, p, (double)noise);
	if (n > UINT64_MAX / p)
		return algo_err(-EOVERFLOW, "n * p overflows: make the data set smaller");
	wt = alloc_array(p, sizeof(float));
	r.dense = alloc_array(n * p, sizeof(float));
	r.targets = alloc_array(n, sizeof(float));
	if (!wt || !r.dense || !r.targets) {
		free(wt);
		hetsgd_dataset_free(&r);
		return oom("synthetic data");
	}
	for (j = 0; j < p; j++)
		wt[j] = (float)(rng_normal(&s) / sqrt((double)p));
	for (i = 0; i < n; i++) {
		double y = 0;

		for (j = 0; j < p; j++) {
			float x = (float)rng_normal(&s);

			r.dense[i * p + j] = x;
			y += (double)x * wt[j];
		}
		r.targets[i] = (float)(y + noise * rng_normal(&s));
	}
	if (w)
		memcpy(w, wt, p * sizeof(float));
	free(wt);
	*out = r;
	return 0;
}

/* ---------------------------------------------------------------- splits */

void hetsgd_split_free(struct hetsgd_split *split)
{
	if (!split)
		return;
	free(split->offset);
	free(split->index);
	memset(split, 0, sizeof(*split));
}

/* Build a split from owner[i] by counting sort: indices end up increasing. */
static int split_from_owner(const uint32_t *owner, uint64_t n, uint32_t parts,
			    struct hetsgd_split *out)
{
	struct hetsgd_split r = { .parts = parts, .n = n };
	uint64_t *pos, i;
	uint32_t k;

	r.offset = calloc((size_t)parts + 1, sizeof(*r.offset));
	r.index = alloc_array(n, sizeof(*r.index));
	pos = alloc_array(parts, sizeof(*pos));
	if (!r.offset || !r.index || !pos) {
		free(pos);
		hetsgd_split_free(&r);
		return oom("a split");
	}
	for (i = 0; i < n; i++)
		r.offset[owner[i] + 1]++;
	for (k = 0; k < parts; k++)
		r.offset[k + 1] += r.offset[k];
	memcpy(pos, r.offset, parts * sizeof(*pos));
	for (i = 0; i < n; i++)
		r.index[pos[owner[i]]++] = i;
	free(pos);
	*out = r;
	return 0;
}

static int split_args(uint64_t n, uint32_t workers, const void *out)
{
	if (!out)
		return algo_err(-EINVAL, "output split is NULL: pass a struct hetsgd_split");
	if (workers == 0 || n < workers)
		return algo_err(-EINVAL, "cannot split %llu samples over %u workers without leaving one empty; use at most n workers",
				(unsigned long long)n, workers);
	if (n > SIZE_MAX / sizeof(uint64_t))
		return algo_err(-EOVERFLOW, "%llu samples are too many to index", (unsigned long long)n);
	return 0;
}

int hetsgd_split_iid(uint64_t n, uint32_t workers, uint64_t seed,
		     struct hetsgd_split *out)
{
	uint64_t *perm, s = seed, i;
	uint32_t *owner;
	int ret = split_args(n, workers, out);

	if (ret)
		return ret;
	perm = alloc_array(n, sizeof(*perm));
	owner = alloc_array(n, sizeof(*owner));
	if (!perm || !owner) {
		free(perm);
		free(owner);
		return oom("a split");
	}
	for (i = 0; i < n; i++)
		perm[i] = i;
	shuffle(perm, n, &s);
	/* position i of the permutation goes to part floor(i * workers / n) */
	for (i = 0; i < n; i++)
		owner[perm[i]] = (uint32_t)(((unsigned __int128)i * workers) / n);
	ret = split_from_owner(owner, n, workers, out);
	free(perm);
	free(owner);
	return ret;
}

/* Long: per-class Dirichlet draws and the assignment in one pass; not split in the engine restructure. */
int hetsgd_split_dirichlet(const int32_t *labels, uint64_t n,
			   uint32_t classes, uint32_t workers, double alpha,
			   uint64_t seed, struct hetsgd_split *out)
{
	uint64_t *byclass = NULL, *cstart = NULL, *pos = NULL, *count = NULL;
	uint64_t s = seed, i;
	uint32_t *owner = NULL, c, k;
	double *q = NULL;
	int ret = split_args(n, workers, out);

	if (ret)
		return ret;
	if (!labels || classes == 0 || !(alpha > 0) || isinf(alpha))
		return algo_err(-EINVAL, "Dirichlet split needs labels, classes >= 1 and a finite alpha > 0 (got classes %u, alpha %g)",
				classes, alpha);
	for (i = 0; i < n; i++)
		if (labels[i] < 0 || (uint32_t)labels[i] >= classes)
			return algo_err(-EINVAL, "label %d of sample %llu is outside 0 .. %u; pass the data set's class count",
					labels[i], (unsigned long long)i, classes - 1);
	byclass = alloc_array(n, sizeof(*byclass));
	cstart = calloc((size_t)classes + 1, sizeof(*cstart));
	pos = calloc(classes, sizeof(*pos));
	count = calloc(workers, sizeof(*count));
	owner = alloc_array(n, sizeof(*owner));
	q = alloc_array(workers, sizeof(*q));
	if (!byclass || !cstart || !pos || !count || !owner || !q) {
		ret = oom("a split");
		goto out;
	}
	for (i = 0; i < n; i++)
		cstart[labels[i] + 1]++;
	for (c = 0; c < classes; c++)
		cstart[c + 1] += cstart[c];
	for (i = 0; i < n; i++) {
		c = (uint32_t)labels[i];
		byclass[cstart[c] + pos[c]++] = i;
	}
	for (c = 0; c < classes; c++) {
		uint64_t m = cstart[c + 1] - cstart[c], prev = 0;
		uint64_t *seg = byclass + cstart[c];
		double mx = -INFINITY, sum = 0, cum = 0;

		/* drawn even for an empty class: the stream stays aligned */
		for (k = 0; k < workers; k++) {
			q[k] = rng_log_gamma(&s, alpha);
			if (q[k] > mx)
				mx = q[k];
		}
		for (k = 0; k < workers; k++) {
			q[k] = exp(q[k] - mx);
			sum += q[k];
		}
		shuffle(seg, m, &s);
		for (k = 0; k < workers; k++) {
			uint64_t cut;

			cum += q[k];
			if (k == workers - 1) {
				cut = m;
			} else {
				double x = cum / sum * (double)m;

				cut = x >= (double)m ? m : (uint64_t)llround(x);
				if (cut < prev)
					cut = prev;
			}
			for (i = prev; i < cut; i++)
				owner[seg[i]] = k;
			count[k] += cut - prev;
			prev = cut;
		}
	}
	/* no empty worker: the largest gives its highest-numbered sample */
	for (k = 0; k < workers; k++) {
		uint32_t big = 0, j;

		if (count[k])
			continue;
		for (j = 1; j < workers; j++)
			if (count[j] > count[big])
				big = j;
		for (i = n; i-- > 0;)
			if (owner[i] == big)
				break;
		owner[i] = k;
		count[big]--;
		count[k]++;
	}
	ret = split_from_owner(owner, n, workers, out);
out:
	free(byclass);
	free(cstart);
	free(pos);
	free(count);
	free(owner);
	free(q);
	return ret;
}

int hetsgd_split_holdout(uint64_t n, double fraction, uint64_t seed,
			 struct hetsgd_split *out)
{
	uint64_t *perm, s = seed, i, ntest;
	uint32_t *owner;
	int ret;

	if (!out)
		return algo_err(-EINVAL, "output split is NULL: pass a struct hetsgd_split");
	if (!(fraction >= 0 && fraction < 1) || n == 0)
		return algo_err(-EINVAL, "held-out fraction %g of %llu samples: pass a fraction in [0, 1) and n >= 1",
				fraction, (unsigned long long)n);
	ntest = (uint64_t)llround(fraction * (double)n);
	if (ntest >= n)
		return algo_err(-EINVAL, "held-out fraction %g leaves no training sample of %llu; use a smaller fraction",
				fraction, (unsigned long long)n);
	perm = alloc_array(n, sizeof(*perm));
	owner = alloc_array(n, sizeof(*owner));
	if (!perm || !owner) {
		free(perm);
		free(owner);
		return oom("a split");
	}
	for (i = 0; i < n; i++) {
		perm[i] = i;
		owner[i] = 0;
	}
	shuffle(perm, n, &s);
	for (i = 0; i < ntest; i++)
		owner[perm[i]] = 1;
	ret = split_from_owner(owner, n, 2, out);
	free(perm);
	free(owner);
	return ret;
}

/* ---- one file per worker ---- */

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Long: k files loaded and made to agree on features and classes; not split in the engine restructure. */
int hetsgd_libsvm_load_many(const char *const *paths, uint32_t k,
			    uint32_t p_hint, struct hetsgd_dataset *out)
{
	struct hetsgd_dataset *ds;
	double *u = NULL;
	uint64_t nu = 0, total = 0;
	uint32_t p = p_hint, classes;
	int ret = 0, pm1 = 1, b01 = 1;

	if (!paths || !out || k == 0)
		return algo_err(-EINVAL, "libsvm_load_many: need at least one file");
	ds = calloc(k, sizeof(*ds));
	if (!ds)
		return algo_err(-ENOMEM, "libsvm_load_many: out of memory");
	for (uint32_t i = 0; i < k && !ret; i++) {
		ret = hetsgd_libsvm_load(paths[i], p_hint, &ds[i]);
		if (!ret) {
			if (ds[i].p > p)
				p = ds[i].p;
			total += ds[i].classes;
		}
	}
	if (ret)
		goto fail;
	u = malloc((total + 2) * sizeof(*u));
	if (!u) {
		ret = algo_err(-ENOMEM, "libsvm_load_many: out of memory");
		goto fail;
	}
	/* the labels the rows use: a file of only "+1" also lists -1 as a
	 * class, which must not turn another file's {0, 1} into 3 classes */
	for (uint32_t i = 0; i < k; i++) {
		uint8_t *used = calloc(ds[i].classes, 1);

		if (!used) {
			ret = algo_err(-ENOMEM, "libsvm_load_many: out of memory");
			goto fail;
		}
		for (uint64_t r = 0; r < ds[i].n; r++)
			used[ds[i].labels[r]] = 1;
		for (uint32_t c = 0; c < ds[i].classes; c++)
			if (used[c])
				u[nu++] = ds[i].label_values[c];
		free(used);
	}
	qsort(u, nu, sizeof(*u), cmp_dbl);
	{
		uint64_t m = 0;

		for (uint64_t i = 0; i < nu; i++)
			if (m == 0 || u[i] != u[m - 1])
				u[m++] = u[i];
		nu = m;
	}
	for (uint64_t i = 0; i < nu; i++) {
		pm1 &= u[i] == -1.0 || u[i] == 1.0;
		b01 &= u[i] == 0.0 || u[i] == 1.0;
	}
	if (pm1 || b01) {
		/* the binary rules of hetsgd_libsvm_load(), over the union */
		u[0] = pm1 ? -1.0 : 0.0;
		u[1] = 1.0;	/* u has total + 2 slots */
		nu = 2;
	}
	if (nu > HETSGD_MAX_CLASSES) {
		ret = algo_err(-EOVERFLOW, "libsvm_load_many: the files hold %llu distinct labels together; the limit is %u",
			       (unsigned long long)nu, HETSGD_MAX_CLASSES);
		goto fail;
	}
	classes = (uint32_t)nu;
	for (uint32_t i = 0; i < k; i++) {
		struct hetsgd_dataset *d = &ds[i];
		double *lv = alloc_array(classes, sizeof(double));

		if (!lv) {
			ret = algo_err(-ENOMEM, "libsvm_load_many: out of memory");
			goto fail;
		}
		memcpy(lv, u, classes * sizeof(double));
		for (uint64_t r = 0; r < d->n; r++) {
			double v = d->label_values[d->labels[r]];
			uint64_t lo = 0, hi = classes - 1;

			while (lo < hi) {
				uint64_t mid = (lo + hi) / 2;

				if (lv[mid] < v)
					lo = mid + 1;
				else
					hi = mid;
			}
			d->labels[r] = (int32_t)lo;
		}
		free(d->label_values);
		d->label_values = lv;
		d->classes = classes;
		d->p = p;
	}
	free(u);
	memcpy(out, ds, k * sizeof(*ds));
	free(ds);
	return 0;
fail:
	free(u);
	for (uint32_t i = 0; i < k; i++)
		hetsgd_dataset_free(&ds[i]);
	free(ds);
	return ret;
}
