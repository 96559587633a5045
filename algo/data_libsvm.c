/*
 * LIBSVM text files: one file, or one per worker made to agree on the
 * feature count and the classes.
 *
 * Lines are cut from data_gz_read_full() chunks rather than read line by
 * line (as gzgets would): a line reader cannot
 * tell how many bytes it stored when a line holds a NUL byte, and garbage
 * input must give an error, not a silently shortened line.
 */
#include <config.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_priv.h"

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
	int targets;		/* HETSGD_LIBSVM_TARGETS: column 1 is a real target */
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
	if (data_grow((void **)&s->distinct, &s->cap_distinct, s->ndistinct + 1, sizeof(double)))
		return data_oom("LIBSVM labels");
	memmove(s->distinct + lo + 1, s->distinct + lo,
		(s->ndistinct - lo) * sizeof(double));
	s->distinct[lo] = v;
	s->ndistinct++;
	return 0;
}

/* Print at most 40 characters of a token for a message. */
#define TOK_FMT "'%.*s%s'"
#define TOK_ARGS(t, l) (int)((l) > 40 ? 40 : (l)), (t), ((l) > 40 ? "..." : "")

/* The next token of *p .. end, NULL at the end; *p moves past it. */
static char *svm_token(char **p, char *end, size_t *tl)
{
	char *tok;

	while (*p < end && is_space(**p))
		(*p)++;
	if (*p == end)
		return NULL;
	tok = *p;
	while (*p < end && !is_space(**p))
		(*p)++;
	*tl = (size_t)(*p - tok);
	return tok;
}

/* The class label that starts a line: tok .. tok + tl. */
static int svm_label(struct svm_state *s, const char *tok, size_t tl, uint64_t ln, double *out)
{
	double label;
	char *q;

	if (memchr(tok, ':', tl))
		return algo_err(-EBADMSG, "%s:%llu: label missing: the line starts with " TOK_FMT "; each line must start with the class label",
				s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
	errno = 0;
	label = strtod(tok, &q);
	if (q != tok + tl || tl == 0)
		return algo_err(-EBADMSG, "%s:%llu: label " TOK_FMT " is not a number; each line must start with the class label",
				s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
	if (s->targets) {
		if (!isfinite(label) || fabs(label) > FLT_MAX)
			return algo_err(-EOVERFLOW, "%s:%llu: target " TOK_FMT " is not a finite number within float range",
					s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
		*out = label;
		return 0;
	}
	if (!isfinite(label) || fabs(label) > 2147483647.0)
		return algo_err(-EOVERFLOW, "%s:%llu: label " TOK_FMT " is out of range; labels must be integers that fit in 32 bits",
				s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
	if (label != floor(label))
		return algo_err(-EBADMSG, "%s:%llu: label " TOK_FMT " is not an integer; only classification data is supported here (for regression targets, use --objective lsq)",
				s->path, (unsigned long long)ln, TOK_ARGS(tok, tl));
	if (label == 0)
		label = 0;	/* -0 and 0 are one class */
	*out = label;
	return add_distinct(s, label, ln);
}

/* Append feature idx (1-based) with value v to the current row. */
static int svm_add_feature(struct svm_state *s, unsigned long long idx, double v)
{
	if (s->nnz == s->cap_nnz) {
		/* val grows in step with col: same capacity */
		float *nv;

		if (data_grow((void **)&s->col, &s->cap_nnz, s->nnz + 1, sizeof(*s->col)))
			return data_oom("LIBSVM features");
		nv = realloc(s->val, (size_t)s->cap_nnz * sizeof(*nv));
		if (!nv)
			return data_oom("LIBSVM values");
		s->val = nv;
	}
	s->col[s->nnz] = (uint32_t)(idx - 1);
	s->val[s->nnz] = (float)v;
	s->nnz++;
	if (idx > s->max_idx)
		s->max_idx = (uint32_t)idx;
	return 0;
}

/* One index:value token (NUL-terminated) after index *last. */
static int svm_feature(struct svm_state *s, char *tok, size_t tl, uint64_t ln, uint64_t *last)
{
	char *colon = memchr(tok, ':', tl), *q;
	unsigned long long idx;
	double v;

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
	if (idx <= *last)
		return algo_err(-EBADMSG, "%s:%llu: decreasing index %llu after %llu in " TOK_FMT ": indices must be strictly increasing; sort the features of each line",
				s->path, (unsigned long long)ln, idx, (unsigned long long)*last, TOK_ARGS(tok, tl));
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
	*last = idx;
	return svm_add_feature(s, idx, v);
}

/* Close the current row with its label. */
static int svm_add_row(struct svm_state *s, double label)
{
	if (s->n == s->cap_rows) {
		/* row_ptr grows in step with lab: one more entry */
		uint64_t *nr;

		if (data_grow((void **)&s->lab, &s->cap_rows, s->n + 1, sizeof(*s->lab)))
			return data_oom("LIBSVM labels");
		nr = realloc(s->row_ptr, (size_t)(s->cap_rows + 1) * sizeof(*nr));
		if (!nr)
			return data_oom("LIBSVM rows");
		s->row_ptr = nr;
	}
	s->lab[s->n] = label;
	s->n++;
	s->row_ptr[s->n] = s->nnz;
	return 0;
}

/* One line: the label, then index:value tokens; '#' starts a comment. */
static int svm_line(struct svm_state *s, char *line, size_t len, uint64_t ln)
{
	char *p = line, *end = line + len, *q, *tok;
	uint64_t last = 0;
	double label = 0;
	size_t tl;
	int ret;

	if (memchr(line, '\0', len))
		return algo_err(-EBADMSG, "%s:%llu: NUL byte in line: this is not a LIBSVM text file; pass the right file",
				s->path, (unsigned long long)ln);
	q = memchr(line, '#', len);
	if (q)
		end = q;
	*end = '\0';
	tok = svm_token(&p, end, &tl);
	if (!tok)
		return 0;	/* blank or comment */
	ret = svm_label(s, tok, tl, ln, &label);
	if (ret)
		return ret;
	while ((tok = svm_token(&p, end, &tl))) {
		*p = '\0';	/* p < end or p == end, and *end is '\0' */
		ret = svm_feature(s, tok, tl, ln, &last);
		if (ret)
			return ret;
		if (p < end)
			p++;
	}
	return svm_add_row(s, label);
}

/* The class of label v among the sorted values (v is one of them). */
static int32_t class_of(const double *values, uint32_t classes, double v)
{
	uint64_t lo = 0, hi = classes - 1;

	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;

		if (values[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (int32_t)lo;
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
	if (s->targets) {
		r.targets = data_alloc_array(s->n, sizeof(*r.targets));
		if (!r.targets)
			return data_oom("LIBSVM targets");
		for (i = 0; i < s->n; i++)
			r.targets[i] = (float)s->lab[i];
		goto features;
	}
	r.classes = (pm1 || b01) ? 2 : (uint32_t)s->ndistinct;
	r.labels = data_alloc_array(s->n, sizeof(*r.labels));
	r.label_values = data_alloc_array(r.classes, sizeof(double));
	if (!r.labels || !r.label_values) {
		hetsgd_dataset_free(&r);
		return data_oom("LIBSVM labels");
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
	for (i = 0; i < s->n; i++)
		r.labels[i] = class_of(r.label_values, r.classes, s->lab[i]);
features:
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
			return data_oom("LIBSVM features");
		}
	}
	*out = r;
	return 0;
}

int hetsgd_libsvm_load(const char *path, uint32_t p_hint,
		       struct hetsgd_dataset *out)
{
	return hetsgd_libsvm_load_as(path, p_hint, 0, out);
}

int hetsgd_libsvm_load_as(const char *path, uint32_t p_hint, unsigned flags,
			  struct hetsgd_dataset *out)
{
	struct svm_state s = { .path = path, .p_hint = p_hint, .targets = !!(flags & HETSGD_LIBSVM_TARGETS) };
	char *buf = NULL;
	uint64_t cap = 0, len = 0, start = 0, ln = 0;
	struct data_gz *f;
	int ret, eof = 0;

	if (!out)
		return algo_err(-EINVAL, "output dataset is NULL: pass a struct hetsgd_dataset");
	ret = data_gz_open_read(path, &f);
	if (ret)
		return ret;
	s.row_ptr = calloc(1, sizeof(*s.row_ptr));
	if (!s.row_ptr) {
		ret = data_oom("LIBSVM rows");
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
		if (data_grow((void **)&buf, &cap, len + 65536 + 1, 1)) {
			ret = data_oom("a LIBSVM line");
			goto out;
		}
		r = data_gz_read_full(f, path, buf + len, (size_t)(cap - len - 1));
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
	data_gz_close(f);
	free(buf);
	free(s.row_ptr);
	free(s.col);
	free(s.val);
	free(s.lab);
	free(s.distinct);
	return ret;
}

/* ---- one file per worker ---- */

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/*
 * The sorted labels that the rows of the k sets use, made binary by the
 * rules of hetsgd_libsvm_load() over the union; u has room for the sum
 * of the sets' classes + 2.
 */
static int union_labels(const struct hetsgd_dataset *ds, uint32_t k, double *u, uint64_t *count)
{
	uint64_t nu = 0, m = 0;
	int pm1 = 1, b01 = 1;

	/* the labels the rows use: a file of only "+1" also lists -1 as a
	 * class, which must not turn another file's {0, 1} into 3 classes */
	for (uint32_t i = 0; i < k; i++) {
		uint8_t *used = calloc(ds[i].classes, 1);

		if (!used)
			return algo_err(-ENOMEM, "libsvm_load_many: out of memory");
		for (uint64_t r = 0; r < ds[i].n; r++)
			used[ds[i].labels[r]] = 1;
		for (uint32_t c = 0; c < ds[i].classes; c++)
			if (used[c])
				u[nu++] = ds[i].label_values[c];
		free(used);
	}
	qsort(u, nu, sizeof(*u), cmp_dbl);
	for (uint64_t i = 0; i < nu; i++)
		if (m == 0 || u[i] != u[m - 1])
			u[m++] = u[i];
	nu = m;
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
	if (nu > HETSGD_MAX_CLASSES)
		return algo_err(-EOVERFLOW, "libsvm_load_many: the files hold %llu distinct labels together; the limit is %u",
				(unsigned long long)nu, HETSGD_MAX_CLASSES);
	*count = nu;
	return 0;
}

/* Give d the common classes (the sorted values u) and feature count p. */
static int relabel(struct hetsgd_dataset *d, const double *u, uint32_t classes, uint32_t p)
{
	double *lv = data_alloc_array(classes, sizeof(double));

	if (!lv)
		return algo_err(-ENOMEM, "libsvm_load_many: out of memory");
	memcpy(lv, u, classes * sizeof(double));
	for (uint64_t r = 0; r < d->n; r++)
		d->labels[r] = class_of(lv, classes, d->label_values[d->labels[r]]);
	free(d->label_values);
	d->label_values = lv;
	d->classes = classes;
	d->p = p;
	return 0;
}

int hetsgd_libsvm_load_many(const char *const *paths, uint32_t k,
			    uint32_t p_hint, struct hetsgd_dataset *out)
{
	return hetsgd_libsvm_load_many_as(paths, k, p_hint, 0, out);
}

int hetsgd_libsvm_load_many_as(const char *const *paths, uint32_t k, uint32_t p_hint,
			       unsigned flags, struct hetsgd_dataset *out)
{
	struct hetsgd_dataset *ds;
	double *u = NULL;
	uint64_t nu = 0, total = 0;
	uint32_t p = p_hint;
	int ret = 0;

	if (!paths || !out || k == 0)
		return algo_err(-EINVAL, "libsvm_load_many: need at least one file");
	ds = calloc(k, sizeof(*ds));
	if (!ds)
		return algo_err(-ENOMEM, "libsvm_load_many: out of memory");
	for (uint32_t i = 0; i < k && !ret; i++) {
		ret = hetsgd_libsvm_load_as(paths[i], p_hint, flags, &ds[i]);
		if (!ret) {
			if (ds[i].p > p)
				p = ds[i].p;
			total += ds[i].classes;
		}
	}
	if (ret)
		goto fail;
	if (flags & HETSGD_LIBSVM_TARGETS) {
		/* targets need no common classes: only the common feature count */
		for (uint32_t i = 0; i < k; i++)
			ds[i].p = p;
		goto done;
	}
	u = malloc((total + 2) * sizeof(*u));
	if (!u) {
		ret = algo_err(-ENOMEM, "libsvm_load_many: out of memory");
		goto fail;
	}
	ret = union_labels(ds, k, u, &nu);
	for (uint32_t i = 0; i < k && !ret; i++)
		ret = relabel(&ds[i], u, (uint32_t)nu, p);
	if (ret)
		goto fail;
	free(u);
done:
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
