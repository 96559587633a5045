/* Generated data: Gaussian classes around random centres, and a linear
 * model with Gaussian noise. */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_priv.h"

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
	centers = data_alloc_array((uint64_t)classes * p, sizeof(float));
	r.dense = data_alloc_array(n * p, sizeof(float));
	r.labels = data_alloc_array(n, sizeof(*r.labels));
	if (!centers || !r.dense || !r.labels) {
		free(centers);
		hetsgd_dataset_free(&r);
		return data_oom("synthetic data");
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
	wt = data_alloc_array(p, sizeof(float));
	r.dense = data_alloc_array(n * p, sizeof(float));
	r.targets = data_alloc_array(n, sizeof(float));
	if (!wt || !r.dense || !r.targets) {
		free(wt);
		hetsgd_dataset_free(&r);
		return data_oom("synthetic data");
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
