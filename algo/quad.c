/*
 * Heterogeneous quadratics: the one generator that hetsgd-train and the
 * tests draw them from, and the exact optimum of any weighting of them
 * (hetsgd_objective.h).  Pure functions: no objective state.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "algo_priv.h"

int hetsgd_quad_generate(size_t d, size_t k, uint64_t seed, float *const *a, float *const *b,
			 float *avg_a, float *avg_b)
{
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

	if (!d || !k || !a || !b || (!avg_a) != (!avg_b))
		return algo_err(-EINVAL, "hetsgd_quad_generate: need d, k >= 1, a and b, and both averages or none");
	for (size_t i = 0; i < k; i++) {
		if (!a[i] || !b[i])
			return algo_err(-EINVAL, "hetsgd_quad_generate: worker %zu has no arrays", i);
		for (size_t c = 0; c < d; c++) {
			/* an LCG: the same quadratics from a seed on every machine */
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			a[i][c] = 0.5f + (float)((s >> 40) % 1000) / 666.0f;
			b[i][c] = 2.0f * ((float)i - 0.5f * (float)(k - 1)) +
				  (float)((s >> 20) % 1000) / 1000.0f - 0.5f;
		}
	}
	for (size_t c = 0; avg_a && c < d; c++) {
		double num = 0, den = 0;

		for (size_t i = 0; i < k; i++) {
			num += (double)a[i][c] * b[i][c];
			den += a[i][c];
		}
		avg_a[c] = (float)(den / (double)k);
		avg_b[c] = (float)(num / den);
	}
	return 0;
}

int hetsgd_quad_weighted_optimum(size_t d, size_t k, const float *const *a,
				 const float *const *b, const double *w,
				 float *xstar)
{
	const char *fn = "hetsgd_quad_weighted_optimum";
	double wsum = 0.0;
	size_t i, j;

	if (!a || !b || !xstar || d == 0 || k == 0)
		return algo_err(-EINVAL, "%s: need d, k >= 1 and non-NULL a, b, xstar", fn);
	for (i = 0; i < k; i++) {
		if (!a[i] || !b[i])
			return algo_err(-EINVAL, "%s: a[%zu] or b[%zu] is NULL", fn, i, i);
		if (w && (!(w[i] >= 0.0) || isinf(w[i])))
			return algo_err(-EINVAL, "%s: weight w[%zu] = %g must be finite and >= 0",
					fn, i, w[i]);
		wsum += w ? w[i] : 1.0;
		for (j = 0; j < d; j++)
			if (!(a[i][j] > 0.0f) || isinf(a[i][j]))
				return algo_err(-EINVAL, "%s: a[%zu][%zu] = %g must be finite and > 0",
						fn, i, j, (double)a[i][j]);
	}
	if (!(wsum > 0.0))
		return algo_err(-EINVAL, "%s: the weights sum to zero", fn);
	for (j = 0; j < d; j++) {
		double num = 0.0, den = 0.0;

		for (i = 0; i < k; i++) {
			double wa = (w ? w[i] : 1.0) * a[i][j];

			num += wa * b[i][j];
			den += wa;
		}
		xstar[j] = (float)(num / den);
	}
	return 0;
}
