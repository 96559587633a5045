/* Splits of a data set: iid or Dirichlet(alpha) across workers, and a
 * held-out test part. */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_priv.h"

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
	r.index = data_alloc_array(n, sizeof(*r.index));
	pos = data_alloc_array(parts, sizeof(*pos));
	if (!r.offset || !r.index || !pos) {
		free(pos);
		hetsgd_split_free(&r);
		return data_oom("a split");
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

/* The identity permutation of n samples and an owner per sample (all 0). */
static int identity_alloc(uint64_t n, uint64_t **perm, uint32_t **owner)
{
	uint64_t i;

	*perm = data_alloc_array(n, sizeof(**perm));
	*owner = data_alloc_array(n, sizeof(**owner));
	if (!*perm || !*owner) {
		free(*perm);
		free(*owner);
		return data_oom("a split");
	}
	for (i = 0; i < n; i++) {
		(*perm)[i] = i;
		(*owner)[i] = 0;
	}
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
	ret = identity_alloc(n, &perm, &owner);
	if (ret)
		return ret;
	shuffle(perm, n, &s);
	/* position i of the permutation goes to part floor(i * workers / n) */
	for (i = 0; i < n; i++)
		owner[perm[i]] = (uint32_t)(((unsigned __int128)i * workers) / n);
	ret = split_from_owner(owner, n, workers, out);
	free(perm);
	free(owner);
	return ret;
}

/*
 * One class's samples seg[0 .. m) dealt to the workers in shares drawn
 * from Dirichlet(alpha): owner[] and count[] are updated; q holds one
 * double per worker.
 */
static void dirichlet_class(uint64_t *seg, uint64_t m, uint32_t workers, double alpha,
			    uint64_t *s, double *q, uint32_t *owner, uint64_t *count)
{
	uint64_t prev = 0, i;
	double mx = -INFINITY, sum = 0, cum = 0;
	uint32_t k;

	/* drawn even for an empty class: the stream stays aligned */
	for (k = 0; k < workers; k++) {
		q[k] = rng_log_gamma(s, alpha);
		if (q[k] > mx)
			mx = q[k];
	}
	for (k = 0; k < workers; k++) {
		q[k] = exp(q[k] - mx);
		sum += q[k];
	}
	shuffle(seg, m, s);
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

/* No empty worker: the largest gives its highest-numbered sample. */
static void fill_empty_workers(uint32_t *owner, uint64_t n, uint64_t *count, uint32_t workers)
{
	uint64_t i;

	for (uint32_t k = 0; k < workers; k++) {
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
}

int hetsgd_split_dirichlet(const int32_t *labels, uint64_t n,
			   uint32_t classes, uint32_t workers, double alpha,
			   uint64_t seed, struct hetsgd_split *out)
{
	uint64_t *byclass = NULL, *cstart = NULL, *pos = NULL, *count = NULL;
	uint64_t s = seed, i;
	uint32_t *owner = NULL, c;
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
	byclass = data_alloc_array(n, sizeof(*byclass));
	cstart = calloc((size_t)classes + 1, sizeof(*cstart));
	pos = calloc(classes, sizeof(*pos));
	count = calloc(workers, sizeof(*count));
	owner = data_alloc_array(n, sizeof(*owner));
	q = data_alloc_array(workers, sizeof(*q));
	if (!byclass || !cstart || !pos || !count || !owner || !q) {
		ret = data_oom("a split");
		goto out;
	}
	/* the samples grouped by class, by counting sort */
	for (i = 0; i < n; i++)
		cstart[labels[i] + 1]++;
	for (c = 0; c < classes; c++)
		cstart[c + 1] += cstart[c];
	for (i = 0; i < n; i++) {
		c = (uint32_t)labels[i];
		byclass[cstart[c] + pos[c]++] = i;
	}
	for (c = 0; c < classes; c++)
		dirichlet_class(byclass + cstart[c], cstart[c + 1] - cstart[c], workers, alpha,
				&s, q, owner, count);
	fill_empty_workers(owner, n, count, workers);
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
	ret = identity_alloc(n, &perm, &owner);
	if (ret)
		return ret;
	shuffle(perm, n, &s);
	for (i = 0; i < ntest; i++)
		owner[perm[i]] = 1;
	ret = split_from_owner(owner, n, 2, out);
	free(perm);
	free(owner);
	return ret;
}
