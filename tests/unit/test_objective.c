/*
 * Objectives: gradients against central finite differences, known values,
 * the weighted quadratic optimum, and argument checking.
 *
 * Finite differences run on the float loss with step H = 1e-2 on problems
 * whose losses are O(1).  The loss's rounding error (double-summed batch,
 * float dot products: ~1e-6 relative) divided by 2H gives ~1e-4; the
 * truncation error H^2/6 |f'''| is ~1e-5 for these smooth losses.  The
 * tolerance 2e-3 + 1e-2 |g| sits an order above both and two orders below
 * the errors a wrong term makes (a dropped 1/m, lambda x, bias or
 * activation derivative moves components by >= 5e-2 here; checked by
 * breaking each such term in objective.c and seeing these tests fail).
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "hetsgd_algo.h"

#define H 1e-2f
#define ATOL 2e-3f
#define RTOL 1e-2f

static uint64_t rng_state;

static float urand(void)	/* uniform in [-1, 1) */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (float)(z >> 40) * 0x1p-23f - 1.0f;
}

#define N 40
#define P 6
#define C 3
#define NBIG 150	/* more than one CHUNK of rows */

/* a small data set, dense and the same values as CSR (about 1/3 zeros) */
struct fixture {
	float x[NBIG * P];
	uint64_t row_ptr[NBIG + 1];
	uint32_t col[NBIG * P];
	float val[NBIG * P];
	int32_t lab2[NBIG], lab3[NBIG];
	float target[NBIG];
	uint32_t idx[NBIG];
	struct hetsgd_dataset dense, sparse;
};

static struct fixture fx;

static void make_data(size_t n)
{
	size_t i, j, nnz = 0;

	rng_state = 42;
	memset(&fx, 0, sizeof(fx));
	fx.row_ptr[0] = 0;
	for (i = 0; i < n; i++) {
		for (j = 0; j < P; j++) {
			float v = urand();

			if (fabsf(v) < 0.33f)
				v = 0.0f;
			fx.x[i * P + j] = v;
			if (v != 0.0f) {
				fx.col[nnz] = (uint32_t)j;
				fx.val[nnz++] = v;
			}
		}
		fx.row_ptr[i + 1] = nnz;
		fx.lab2[i] = urand() > 0.0f;
		fx.lab3[i] = (int32_t)(i % C);
		fx.target[i] = urand();
		fx.idx[i] = (uint32_t)((i * 7) % n);	/* a permutation: 7 is prime to n */
	}
	fx.dense = (struct hetsgd_dataset){ .n = n, .p = P, .dense = fx.x,
		.labels = fx.lab2, .targets = fx.target, .classes = 2 };
	fx.sparse = (struct hetsgd_dataset){ .n = n, .p = P, .row_ptr = fx.row_ptr,
		.col = fx.col, .val = fx.val, .labels = fx.lab2,
		.targets = fx.target, .classes = 2 };
}

static void as_multiclass(void)
{
	fx.dense.labels = fx.sparse.labels = fx.lab3;
	fx.dense.classes = fx.sparse.classes = C;
}

static void rand_model(float *x, size_t d, float scale)
{
	size_t j;

	for (j = 0; j < d; j++)
		x[j] = scale * urand();
}

/* analytic gradient against central differences, every coordinate */
static void check_fd(struct hetsgd_objective *obj, float *x,
		     const struct hetsgd_dataset *data, const uint32_t *idx,
		     size_t m)
{
	size_t d = obj->d, j;
	float *g = calloc(d, sizeof(float)), lo, hi, l0, l1;

	cr_assert_not_null(g);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, data, idx, m, &l0, g), 0,
		     "%s", hetsgd_algo_errmsg());
	cr_assert_eq(hetsgd_objective_loss(obj, x, data, idx, m, &l1), 0);
	cr_assert_float_eq(l0, l1, 1e-6f * (1 + fabsf(l0)), "loss_grad and loss disagree");
	for (j = 0; j < d; j++) {
		float xj = x[j], fd;

		x[j] = xj + H;
		cr_assert_eq(hetsgd_objective_loss(obj, x, data, idx, m, &hi), 0);
		x[j] = xj - H;
		cr_assert_eq(hetsgd_objective_loss(obj, x, data, idx, m, &lo), 0);
		x[j] = xj;
		fd = (hi - lo) / (2 * H);
		cr_expect(fabsf(g[j] - fd) <= ATOL + RTOL * fabsf(fd),
			  "%s: d/dx[%zu]: analytic %g, finite difference %g",
			  hetsgd_obj_kind_name(obj->kind), j, (double)g[j], (double)fd);
	}
	free(g);
}

Test(objective, lsq_closed_form)
{
	float a[] = { 1, 2, 3, 4 }, b[] = { 1, 2 }, x[] = { 1, 1 }, g[2], l;
	uint32_t idx[] = { 0, 1 };
	struct hetsgd_dataset ds = { .n = 2, .p = 2, .dense = a, .targets = b };
	struct hetsgd_objective *obj;

	cr_assert_eq(hetsgd_objective_lsq_create(2, &obj), 0);
	cr_assert_eq(obj->d, 2);
	/* residuals 3 - 1 = 2, 7 - 2 = 5: (4 + 25) / 4; A^T r / 2 */
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &ds, idx, 2, &l, g), 0);
	cr_expect_float_eq(l, 7.25f, 1e-6f);
	cr_expect_float_eq(g[0], 8.5f, 1e-6f);
	cr_expect_float_eq(g[1], 12.0f, 1e-6f);
	hetsgd_objective_destroy(obj);
}

Test(objective, lsq_gradient)
{
	struct hetsgd_objective *obj;
	float x[P];

	make_data(N);
	rand_model(x, P, 1.0f);
	cr_assert_eq(hetsgd_objective_lsq_create(P, &obj), 0);
	check_fd(obj, x, &fx.dense, fx.idx, 17);
	check_fd(obj, x, &fx.sparse, fx.idx, 17);
	hetsgd_objective_destroy(obj);
}

Test(objective, logreg_at_zero)
{
	struct hetsgd_objective *obj;
	float x[P] = { 0 }, g[P], l;
	size_t i, j;

	make_data(N);
	cr_assert_eq(hetsgd_objective_logreg_create(P, 0.5f, &obj), 0);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &fx.dense, fx.idx, N, &l, g), 0);
	cr_expect_float_eq(l, (float)log(2.0), 1e-6f);
	/* at 0 every sigmoid is 1/2: g = -1/(2N) sum y_i a_i */
	for (j = 0; j < P; j++) {
		double s = 0;

		for (i = 0; i < N; i++)
			s += (fx.lab2[i] ? 1.0 : -1.0) * fx.x[i * P + j];
		cr_expect_float_eq(g[j], (float)(-s / (2 * N)), 1e-6f);
	}
	/* the regulariser: lambda/2 ||x||^2 with every a_i.dense = 0 */
	memset(fx.x, 0, sizeof(fx.x));
	x[0] = 2.0f;
	cr_assert_eq(hetsgd_objective_loss(obj, x, &fx.dense, fx.idx, N, &l), 0);
	cr_expect_float_eq(l, (float)log(2.0) + 1.0f, 1e-6f);
	hetsgd_objective_destroy(obj);
}

Test(objective, logreg_gradient_dense_sparse)
{
	struct hetsgd_objective *obj;
	float x[P], gd[P], gs[P], ld, ls;
	size_t j;

	make_data(N);
	rand_model(x, P, 1.0f);
	cr_assert_eq(hetsgd_objective_logreg_create(P, 0.3f, &obj), 0);
	check_fd(obj, x, &fx.dense, fx.idx, N);
	check_fd(obj, x, &fx.sparse, fx.idx, 13);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &fx.dense, fx.idx, N, &ld, gd), 0);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &fx.sparse, fx.idx, N, &ls, gs), 0);
	cr_expect_float_eq(ld, ls, 1e-5f);
	for (j = 0; j < P; j++)
		cr_expect_float_eq(gd[j], gs[j], 1e-5f);
	hetsgd_objective_destroy(obj);
}

Test(objective, logreg_extreme_margins_are_finite)
{
	float a[] = { 1e4f, -1e4f }, x[] = { 10.0f }, g[1], l;
	int32_t lab[] = { 0, 0 };	/* first sample wrong by 1e5, second right */
	uint32_t idx[] = { 0, 1 };
	struct hetsgd_dataset ds = { .n = 2, .p = 1, .dense = a, .labels = lab, .classes = 2 };
	struct hetsgd_objective *obj;

	cr_assert_eq(hetsgd_objective_logreg_create(1, 0.0f, &obj), 0);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &ds, idx, 2, &l, g), 0);
	cr_expect(isfinite(l) && isfinite(g[0]));
	cr_expect_float_eq(l, 5e4f, 1.0f);	/* (1e5 + ~0) / 2 */
	cr_expect_float_eq(g[0], 5e3f, 1.0f);	/* (1 * 1e4 + 0) / 2 */
	hetsgd_objective_destroy(obj);
}

/* log1p keeps the tiny loss of a well-classified sample; log(1 + e) would not */
Test(objective, logreg_small_losses_keep_precision)
{
	float a[] = { 30.0f }, x[] = { 1.0f }, g[1], l;
	int32_t lab[] = { 1 };
	uint32_t idx[] = { 0 };
	struct hetsgd_dataset ds = { .n = 1, .p = 1, .dense = a, .labels = lab, .classes = 2 };
	struct hetsgd_objective *obj;
	double want = log1p(exp(-30.0));

	cr_assert_eq(hetsgd_objective_logreg_create(1, 0.0f, &obj), 0);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &ds, idx, 1, &l, g), 0);
	cr_expect(fabs(l - want) <= 1e-6 * want, "loss %g, want %g", (double)l, want);
	cr_expect(fabs(g[0] + 30.0 * exp(-30.0)) <= 1e-5 * 30.0 * exp(-30.0));
	hetsgd_objective_destroy(obj);
}

Test(objective, softmax_at_zero_is_log_c)
{
	struct hetsgd_objective *obj;
	float x[C * P + C] = { 0 }, l;

	make_data(N);
	as_multiclass();
	cr_assert_eq(hetsgd_objective_softmax_create(P, C, 1, 0.1f, &obj), 0);
	cr_assert_eq(obj->d, C * P + C);
	cr_assert_eq(hetsgd_objective_loss(obj, x, &fx.dense, fx.idx, N, &l), 0);
	cr_expect_float_eq(l, (float)log(C), 1e-6f);
	cr_assert_eq(hetsgd_objective_loss(obj, x, &fx.sparse, fx.idx, N, &l), 0);
	cr_expect_float_eq(l, (float)log(C), 1e-6f);
	hetsgd_objective_destroy(obj);
}

Test(objective, softmax_gradient)
{
	struct hetsgd_objective *obj;
	float x[C * P + C];

	make_data(N);
	as_multiclass();
	rand_model(x, C * P + C, 1.0f);
	cr_assert_eq(hetsgd_objective_softmax_create(P, C, 1, 0.2f, &obj), 0);
	check_fd(obj, x, &fx.dense, fx.idx, N);
	check_fd(obj, x, &fx.sparse, fx.idx, 11);
	hetsgd_objective_destroy(obj);
	cr_assert_eq(hetsgd_objective_softmax_create(P, C, 0, 0.0f, &obj), 0);
	cr_assert_eq(obj->d, C * P);
	check_fd(obj, x, &fx.dense, fx.idx, 9);
	check_fd(obj, x, &fx.sparse, fx.idx, 9);
	hetsgd_objective_destroy(obj);
}

Test(objective, softmax_huge_logits_are_finite)
{
	float a[] = { 1.0f }, x[] = { 1e4f, -1e4f }, g[2], l;
	int32_t lab[] = { 1 };
	uint32_t idx[] = { 0 };
	struct hetsgd_dataset ds = { .n = 1, .p = 1, .dense = a, .labels = lab, .classes = 2 };
	struct hetsgd_objective *obj;

	cr_assert_eq(hetsgd_objective_softmax_create(1, 2, 0, 0.0f, &obj), 0);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &ds, idx, 1, &l, g), 0);
	cr_expect_float_eq(l, 2e4f, 1.0f);
	cr_expect_float_eq(g[0], 1.0f, 1e-6f);
	cr_expect_float_eq(g[1], -1.0f, 1e-6f);
	hetsgd_objective_destroy(obj);
}

/* the batch gradient over several CHUNKs is the mean of per-sample ones */
static void check_chunked(struct hetsgd_objective *obj, const float *x,
			  const struct hetsgd_dataset *data)
{
	size_t d = obj->d, i, j;
	float *g = calloc(d, sizeof(float)), *gi = calloc(d, sizeof(float));
	double *mean = calloc(d, sizeof(double)), lmean = 0;
	float l, li;

	cr_assert(g && gi && mean);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, data, fx.idx, NBIG, &l, g), 0);
	for (i = 0; i < NBIG; i++) {
		cr_assert_eq(hetsgd_objective_loss_grad(obj, x, data, &fx.idx[i], 1, &li, gi), 0);
		lmean += li / (double)NBIG;
		for (j = 0; j < d; j++)
			mean[j] += gi[j] / (double)NBIG;
	}
	cr_expect_float_eq(l, (float)lmean, 1e-5f);
	for (j = 0; j < d; j++)
		cr_expect_float_eq(g[j], (float)mean[j], 1e-5f, "coordinate %zu", j);
	free(g);
	free(gi);
	free(mean);
}

Test(objective, batches_longer_than_a_chunk)
{
	struct hetsgd_objective *obj;
	float x[C * P + C], xm[4 * P + 4 + C * 4 + C];

	make_data(NBIG);
	as_multiclass();
	rand_model(x, C * P + C, 1.0f);
	cr_assert_eq(hetsgd_objective_softmax_create(P, C, 1, 0.0f, &obj), 0);
	check_chunked(obj, x, &fx.dense);
	check_chunked(obj, x, &fx.sparse);
	hetsgd_objective_destroy(obj);
	cr_assert_eq(hetsgd_objective_mlp_create(P, 4, C, HETSGD_ACT_TANH, &obj), 0);
	cr_assert_eq(hetsgd_mlp_init(obj, 7, xm), 0);
	check_chunked(obj, xm, &fx.dense);
	hetsgd_objective_destroy(obj);
}

Test(objective, mlp_gradient)
{
	struct hetsgd_objective *obj;
	enum hetsgd_act acts[] = { HETSGD_ACT_TANH, HETSGD_ACT_RELU };
	size_t nh = 5, d = nh * P + nh + C * nh + C, a, j;
	float x[5 * P + 5 + C * 5 + C], l;

	make_data(N);
	as_multiclass();
	for (a = 0; a < 2; a++) {
		cr_assert_eq(hetsgd_objective_mlp_create(P, nh, C, acts[a], &obj), 0);
		cr_assert_eq(obj->d, d);
		cr_assert_eq(hetsgd_mlp_init(obj, 1234, x), 0);
		/* nonzero biases, so their gradients are exercised off zero */
		for (j = nh * P; j < nh * P + nh; j++)
			x[j] = 0.3f * urand();
		for (j = d - C; j < d; j++)
			x[j] = 0.3f * urand();
		check_fd(obj, x, &fx.dense, fx.idx, N);
		memset(x, 0, sizeof(x));
		cr_assert_eq(hetsgd_objective_loss(obj, x, &fx.dense, fx.idx, N, &l), 0);
		cr_expect_float_eq(l, (float)log(C), 1e-6f);
		hetsgd_objective_destroy(obj);
	}
}

Test(objective, mlp_init_is_deterministic)
{
	struct hetsgd_objective *obj;
	size_t nh = 8, d, j;
	float *x1, *x2, *x3, s1 = sqrtf(6.0f / (P + 8)), s2 = sqrtf(6.0f / (8 + C));

	cr_assert_eq(hetsgd_objective_mlp_create(P, nh, C, HETSGD_ACT_TANH, &obj), 0);
	d = obj->d;
	x1 = calloc(d, sizeof(float));
	x2 = calloc(d, sizeof(float));
	x3 = calloc(d, sizeof(float));
	cr_assert(x1 && x2 && x3);
	cr_assert_eq(hetsgd_mlp_init(obj, 99, x1), 0);
	cr_assert_eq(hetsgd_mlp_init(obj, 99, x2), 0);
	cr_assert_eq(hetsgd_mlp_init(obj, 100, x3), 0);
	cr_expect_eq(memcmp(x1, x2, d * sizeof(float)), 0);
	cr_expect_neq(memcmp(x1, x3, d * sizeof(float)), 0);
	for (j = 0; j < nh * P; j++)
		cr_expect(fabsf(x1[j]) <= s1);
	for (j = nh * P; j < nh * P + nh; j++)
		cr_expect_eq(x1[j], 0.0f);
	for (j = nh * P + nh; j < d - C; j++)
		cr_expect(fabsf(x1[j]) <= s2);
	for (j = d - C; j < d; j++)
		cr_expect_eq(x1[j], 0.0f);
	free(x1);
	free(x2);
	free(x3);
	hetsgd_objective_destroy(obj);
}

Test(objective, deterministic)
{
	struct hetsgd_objective *obj;
	float x[C * P + C], g1[C * P + C], g2[C * P + C], l1, l2;

	make_data(NBIG);
	as_multiclass();
	rand_model(x, C * P + C, 1.0f);
	cr_assert_eq(hetsgd_objective_softmax_create(P, C, 1, 0.1f, &obj), 0);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &fx.dense, fx.idx, NBIG, &l1, g1), 0);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, &fx.dense, fx.idx, NBIG, &l2, g2), 0);
	cr_expect_eq(memcmp(&l1, &l2, sizeof(l1)), 0);
	cr_expect_eq(memcmp(g1, g2, sizeof(g1)), 0);
	hetsgd_objective_destroy(obj);
}

Test(objective, accuracy)
{
	float a[] = { 1, 0, 0, 1, -1, 0, 0, -1 };
	int32_t lab2[] = { 1, 1, 0, 1 }, lab4[] = { 0, 1, 2, 2 };
	float xl[] = { 1, 1 };	/* a.dense = 1, 1, -1, -1: 3 of 4 right */
	/* classes: 0 <- +e1, 1 <- +e2, 2 <- -e1, 3 <- -e2 */
	float xs[] = { 1, 0, 0, 1, -1, 0, 0, -1 };
	struct hetsgd_dataset ds = { .n = 4, .p = 2, .dense = a, .labels = lab2, .classes = 2 };
	struct hetsgd_objective *obj;
	double acc;

	cr_assert_eq(hetsgd_objective_logreg_create(2, 0.0f, &obj), 0);
	cr_assert_eq(hetsgd_objective_accuracy(obj, xl, &ds, &acc), 0);
	cr_expect_float_eq(acc, 0.75, 1e-12);
	hetsgd_objective_destroy(obj);

	ds.labels = lab4;
	ds.classes = 4;
	cr_assert_eq(hetsgd_objective_softmax_create(2, 4, 0, 0.0f, &obj), 0);
	cr_assert_eq(hetsgd_objective_accuracy(obj, xs, &ds, &acc), 0);
	cr_expect_float_eq(acc, 0.75, 1e-12);	/* row 3 is class 3, labelled 2 */
	hetsgd_objective_destroy(obj);
}

Test(objective, quad_gradient_and_value)
{
	float a[] = { 1, 2, 4 }, b[] = { 1, -1, 0.5f }, x[] = { 0, 0, 0 }, g[3], l;
	struct hetsgd_objective *obj;

	cr_assert_eq(hetsgd_objective_quad_create(3, a, b, &obj), 0);
	cr_assert_eq(hetsgd_objective_loss_grad(obj, x, NULL, NULL, 0, &l, g), 0);
	cr_expect_float_eq(l, 0.5f * (1 + 2 + 4 * 0.25f), 1e-6f);
	cr_expect_float_eq(g[0], -1.0f, 1e-6f);
	cr_expect_float_eq(g[1], 2.0f, 1e-6f);
	cr_expect_float_eq(g[2], -2.0f, 1e-6f);
	check_fd(obj, x, NULL, NULL, 0);
	cr_assert_eq(hetsgd_objective_loss(obj, b, NULL, NULL, 0, &l), 0);
	cr_expect_eq(l, 0.0f);
	cr_expect_eq(hetsgd_objective_accuracy(obj, x, NULL, &(double){ 0 }), -ENOTSUP);
	hetsgd_objective_destroy(obj);
}

Test(objective, quad_weighted_optimum)
{
	enum { K = 4, D = 5 };
	float a[K][D], b[K][D], xs[D], g[D], gi[D], l, lo, lp;
	const float *ap[K], *bp[K];
	double w[K] = { 1.0, 0.5, 1.0 / 3, 0.25 };	/* 1/tau, tau = i + 1 */
	struct hetsgd_objective *obj[K];
	size_t i, j, s;

	rng_state = 5;
	for (i = 0; i < K; i++) {
		for (j = 0; j < D; j++) {
			a[i][j] = 1.5f + urand();	/* in [0.5, 2.5) */
			b[i][j] = 3.0f * urand();
		}
		ap[i] = a[i];
		bp[i] = b[i];
		cr_assert_eq(hetsgd_objective_quad_create(D, a[i], b[i], &obj[i]), 0);
	}
	for (s = 0; s < 2; s++) {
		const double *ws = s ? w : NULL;

		cr_assert_eq(hetsgd_quad_weighted_optimum(D, K, ap, bp, ws, xs), 0);
		/* sum_i w_i grad f_i(x*) = 0, and x* beats every nudge of it */
		memset(g, 0, sizeof(g));
		lo = 0;
		for (i = 0; i < K; i++) {
			cr_assert_eq(hetsgd_objective_loss_grad(obj[i], xs, NULL, NULL, 0, &l, gi), 0);
			lo += (ws ? (float)ws[i] : 1.0f) * l;
			for (j = 0; j < D; j++)
				g[j] += (ws ? (float)ws[i] : 1.0f) * gi[j];
		}
		for (j = 0; j < D; j++)
			cr_expect(fabsf(g[j]) < 1e-5f, "weighted gradient[%zu] = %g at x*",
				  j, (double)g[j]);
		for (j = 0; j < D; j++) {
			float keep = xs[j], step;

			for (step = -0.01f; step <= 0.01f; step += 0.02f) {
				xs[j] = keep + step;
				lp = 0;
				for (i = 0; i < K; i++) {
					cr_assert_eq(hetsgd_objective_loss(obj[i], xs, NULL, NULL, 0, &l), 0);
					lp += (ws ? (float)ws[i] : 1.0f) * l;
				}
				cr_expect_gt(lp, lo);
			}
			xs[j] = keep;
		}
	}
	/* a single quadratic's optimum is its b */
	cr_assert_eq(hetsgd_quad_weighted_optimum(D, 1, ap, bp, NULL, xs), 0);
	for (j = 0; j < D; j++)
		cr_expect_float_eq(xs[j], b[0][j], 1e-6f);
	for (i = 0; i < K; i++)
		hetsgd_objective_destroy(obj[i]);
}

Test(objective, bad_inputs)
{
	struct hetsgd_objective *obj = NULL, *lsq;
	float x[C * P + C] = { 0 }, g[C * P + C], l = 123.0f, a0[] = { 1, 0 }, b0[] = { 0, 0 };
	const float *ap[] = { a0 }, *bp[] = { b0 };
	double wz[] = { 0.0 };
	uint32_t bad_idx[] = { 0, N };
	size_t j;

	make_data(N);
	cr_expect_eq(hetsgd_objective_logreg_create(0, 0.0f, &obj), -EINVAL);
	cr_expect_eq(hetsgd_objective_logreg_create(P, -1.0f, &obj), -EINVAL);
	cr_expect_eq(hetsgd_objective_logreg_create(P, NAN, &obj), -EINVAL);
	cr_expect_eq(hetsgd_objective_logreg_create(P, 0.0f, NULL), -EINVAL);
	cr_expect_eq(hetsgd_objective_softmax_create(P, 1, 0, 0.0f, &obj), -EINVAL);
	cr_expect_eq(hetsgd_objective_softmax_create((size_t)1 << 30, 4, 0, 0.0f, &obj), -EOVERFLOW);
	cr_expect_eq(hetsgd_objective_mlp_create(P, 0, C, HETSGD_ACT_RELU, &obj), -EINVAL);
	cr_expect_eq(hetsgd_objective_mlp_create(P, 4, C, (enum hetsgd_act)7, &obj), -EINVAL);
	cr_expect_eq(hetsgd_objective_quad_create(2, a0, b0, &obj), -EINVAL);	/* a[1] = 0 */
	cr_expect_eq(hetsgd_quad_weighted_optimum(2, 1, ap, bp, NULL, x), -EINVAL);
	a0[1] = 1;
	cr_expect_eq(hetsgd_quad_weighted_optimum(2, 1, ap, bp, wz, x), -EINVAL);
	cr_expect_null(obj, "a failed constructor wrote its output");
	cr_expect_neq(hetsgd_algo_errmsg()[0], '\0');

	cr_assert_eq(hetsgd_objective_logreg_create(P, 0.0f, &obj), 0);
	memset(g, 0x55, sizeof(g));
	cr_expect_eq(hetsgd_objective_loss_grad(obj, x, &fx.dense, fx.idx, 0, &l, g), -EINVAL);
	cr_expect(strstr(hetsgd_algo_errmsg(), "empty batch"), "%s", hetsgd_algo_errmsg());
	cr_expect_eq(hetsgd_objective_loss_grad(obj, x, NULL, fx.idx, 4, &l, g), -EINVAL);
	cr_expect_eq(hetsgd_objective_loss_grad(obj, x, &fx.dense, NULL, 4, &l, g), -EINVAL);
	cr_expect_eq(hetsgd_objective_loss_grad(obj, NULL, &fx.dense, fx.idx, 4, &l, g), -EINVAL);
	cr_expect_eq(hetsgd_objective_loss_grad(obj, x, &fx.dense, bad_idx, 2, &l, g), -ERANGE);
	fx.dense.p = P + 1;
	cr_expect_eq(hetsgd_objective_loss(obj, x, &fx.dense, fx.idx, 4, &l), -EINVAL);
	cr_expect(strstr(hetsgd_algo_errmsg(), "features"), "%s", hetsgd_algo_errmsg());
	fx.dense.p = P;
	fx.lab2[fx.idx[1]] = -1;	/* -1/+1 labels are refused, with a hint */
	cr_expect_eq(hetsgd_objective_loss(obj, x, &fx.dense, fx.idx, 4, &l), -ERANGE);
	cr_expect(strstr(hetsgd_algo_errmsg(), "0/1"), "%s", hetsgd_algo_errmsg());
	cr_expect_eq(hetsgd_dataset_check(&fx.dense), -ERANGE);
	fx.lab2[fx.idx[1]] = 1;
	fx.dense.labels = NULL;
	cr_expect_eq(hetsgd_objective_loss(obj, x, &fx.dense, fx.idx, 4, &l), -EINVAL);
	fx.dense.labels = fx.lab2;
	cr_expect_eq(l, 123.0f, "loss written on failure");
	for (j = 0; j < P; j++)
		cr_expect_eq(g[j], g[0], "gradient written on failure");
	hetsgd_objective_destroy(obj);

	cr_assert_eq(hetsgd_objective_lsq_create(P, &lsq), 0);
	cr_expect_eq(hetsgd_objective_accuracy(lsq, x, &fx.dense, &(double){ 0 }), -ENOTSUP);
	fx.dense.targets = NULL;
	cr_expect_eq(hetsgd_objective_loss(lsq, x, &fx.dense, fx.idx, 4, &l), -EINVAL);
	hetsgd_objective_destroy(lsq);

	as_multiclass();
	cr_assert_eq(hetsgd_objective_mlp_create(P, 3, C, HETSGD_ACT_RELU, &obj), 0);
	cr_expect_eq(hetsgd_objective_loss(obj, x, &fx.sparse, fx.idx, 4, &l), -ENOTSUP);
	fx.dense.classes = C + 1;
	cr_expect_eq(hetsgd_objective_loss(obj, x, &fx.dense, fx.idx, 4, &l), -EINVAL);
	hetsgd_objective_destroy(obj);
	hetsgd_objective_destroy(NULL);
}

Test(objective, dataset_check)
{
	make_data(N);
	cr_expect_eq(hetsgd_dataset_check(&fx.dense), 0, "%s", hetsgd_algo_errmsg());
	cr_expect_eq(hetsgd_dataset_check(&fx.sparse), 0, "%s", hetsgd_algo_errmsg());
	fx.col[3] = P;
	cr_expect_eq(hetsgd_dataset_check(&fx.sparse), -ERANGE);
	fx.col[3] = 0;
	fx.row_ptr[5] = fx.row_ptr[6] + 1;
	cr_expect_eq(hetsgd_dataset_check(&fx.sparse), -EINVAL);
	fx.sparse.dense = fx.x;
	cr_expect_eq(hetsgd_dataset_check(&fx.sparse), -EINVAL);
	cr_expect_eq(hetsgd_dataset_check(NULL), -EINVAL);
}

Test(quad, generate_is_seeded_heterogeneous_and_averages_exactly)
{
	enum { D = 16, K = 4 };
	float a0[K][D], b0[K][D], a1[K][D], b1[K][D], avg_a[D], avg_b[D];
	float *pa0[K], *pb0[K], *pa1[K], *pb1[K];

	for (int i = 0; i < K; i++) {
		pa0[i] = a0[i], pb0[i] = b0[i], pa1[i] = a1[i], pb1[i] = b1[i];
	}
	cr_assert_eq(hetsgd_quad_generate(D, K, 7, pa0, pb0, avg_a, avg_b), 0, "%s", hetsgd_errmsg());
	cr_assert_eq(hetsgd_quad_generate(D, K, 7, pa1, pb1, NULL, NULL), 0);
	cr_expect_eq(memcmp(a0, a1, sizeof(a0)), 0, "the same seed gives the same quadratics");
	cr_expect_eq(memcmp(b0, b1, sizeof(b0)), 0);
	cr_assert_eq(hetsgd_quad_generate(D, K, 8, pa1, pb1, NULL, NULL), 0);
	cr_expect_neq(memcmp(a0, a1, sizeof(a0)), 0, "another seed, other quadratics");
	for (int j = 0; j < D; j++) {
		double num = 0, den = 0;

		for (int i = 0; i < K; i++) {
			cr_expect(a0[i][j] >= 0.5f && a0[i][j] <= 2.0f, "a[%d][%d] = %g", i, j, a0[i][j]);
			/* worker i's optimum: 2 (i - 1.5) +- 0.5 */
			cr_expect(fabsf(b0[i][j] - 2.0f * ((float)i - 1.5f)) <= 0.5f, "b[%d][%d] = %g", i, j, b0[i][j]);
			num += (double)a0[i][j] * b0[i][j];
			den += a0[i][j];
		}
		cr_expect_float_eq(avg_a[j], den / K, 1e-6);
		cr_expect_float_eq(avg_b[j], num / den, 1e-5);
	}
	cr_expect_eq(hetsgd_quad_generate(0, K, 7, pa0, pb0, NULL, NULL), -EINVAL);
	cr_expect_eq(hetsgd_quad_generate(D, K, 7, pa0, pb0, avg_a, NULL), -EINVAL);
}
