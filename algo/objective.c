/*
 * Objectives: least squares, logistic and softmax regression, a
 * one-hidden-layer MLP and diagonal quadratics.
 *
 * Every kind implements one evaluator that computes, on a batch, any of
 * the loss, the gradient and the number of correct predictions; the
 * public calls only choose which of the three they want.  Dense batches
 * are processed CHUNK rows at a time so that the scratch is allocated once,
 * at creation, and nothing is allocated on the hot path.
 */
#include <config.h>

#include "blas_priv.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algo_priv.h"

/*
 * Rows gathered per BLAS call.  Large enough for sgemm to run at speed,
 * small enough that the MLP's scratch stays in L2 for MNIST-sized inputs.
 * Changing it changes the float rounding of the results (summation order).
 */
#define CHUNK 64u

struct obj_priv;

/*
 * loss_sum: sum of the per-sample losses (without regularisation), or
 * NULL; grad: d floats receiving the gradient of the *mean* loss without
 * regularisation, or NULL; correct: number of correct predictions, or NULL.
 * idx NULL means rows 0 .. m-1.  Arguments are already checked.
 */
typedef void (*eval_fn)(struct hetsgd_objective *obj, const float *x,
			const struct hetsgd_dataset *data, const uint32_t *idx,
			size_t m, double *loss_sum, float *grad, size_t *correct);

struct obj_priv {
	eval_fn eval;
	float lambda;		/* LOGREG, SOFTMAX */
	size_t nreg;		/* leading coordinates of x that lambda applies to */
	int bias;		/* SOFTMAX */
	size_t hidden;		/* MLP */
	enum hetsgd_act act;	/* MLP */
	float *g;		/* d: gradient accumulator, copied out on success */
	float *rows;		/* CHUNK x p gathered dense rows */
	float *z;		/* CHUNK x C logits, then their gradients */
	float *h;		/* CHUNK x hidden activations (MLP) */
	float *dh;		/* CHUNK x hidden gradients (MLP) */
	float *qa, *qb;		/* QUAD */
};

static inline size_t row_of(const uint32_t *idx, size_t k)
{
	return idx ? idx[k] : k;
}

/* ---- data sets ---- */

int hetsgd_dataset_check(const struct hetsgd_dataset *data)
{
	size_t i;

	if (!data)
		return algo_err(-EINVAL, "dataset: data is NULL");
	if (data->n == 0 || data->p == 0)
		return algo_err(-EINVAL, "dataset: empty (n = %zu, p = %zu)",
				(size_t)data->n, (size_t)data->p);
	if (data->n > (size_t)UINT32_MAX + 1)
		return algo_err(-EOVERFLOW, "dataset: %zu samples do not fit 32-bit batch indices",
				data->n);
	if (!data->dense == !data->row_ptr)
		return algo_err(-EINVAL, "dataset: set exactly one of x (dense) and row_ptr (CSR)");
	if (data->row_ptr) {
		if (!data->col || !data->val)
			return algo_err(-EINVAL, "dataset: CSR needs row_ptr, col_idx and values");
		if (data->row_ptr[0] != 0)
			return algo_err(-EINVAL, "dataset: row_ptr[0] is %llu, must be 0",
					(unsigned long long)data->row_ptr[0]);
		for (i = 0; i < data->n; i++) {
			uint64_t j;

			if (data->row_ptr[i + 1] < data->row_ptr[i])
				return algo_err(-EINVAL, "dataset: row_ptr decreases at row %zu", i);
			for (j = data->row_ptr[i]; j < data->row_ptr[i + 1]; j++)
				if (data->col[j] >= data->p)
					return algo_err(-ERANGE,
							"dataset: row %zu has column %u, beyond p = %zu (LIBSVM indices are 1-based: shift them down)",
							i, data->col[j], (size_t)data->p);
		}
	}
	if (data->labels) {
		if (data->classes < 2)
			return algo_err(-EINVAL, "dataset: labels given with nclass = %u (need >= 2)",
					data->classes);
		for (i = 0; i < data->n; i++)
			if (data->labels[i] < 0 || (uint32_t)data->labels[i] >= data->classes)
				return algo_err(-ERANGE, "dataset: label %d of row %zu is outside 0..%u",
						data->labels[i], i, data->classes - 1);
	}
	return 0;
}

/* ---- shared kernels ---- */

static float row_dot(const struct hetsgd_dataset *data, size_t i,
		     const float *w)
{
	const uint64_t *rp = data->row_ptr;
	float s = 0.0f;
	uint64_t j;

	if (data->dense)
		return cblas_sdot((int)data->p, data->dense + i * data->p, 1, w, 1);
	for (j = rp[i]; j < rp[i + 1]; j++)
		s += data->val[j] * w[data->col[j]];
	return s;
}

/* g += alpha * a_i */
static void row_axpy(const struct hetsgd_dataset *data, size_t i, float alpha,
		     float *g)
{
	const uint64_t *rp = data->row_ptr;
	uint64_t j;

	if (data->dense) {
		cblas_saxpy((int)data->p, alpha, data->dense + i * data->p, 1, g, 1);
		return;
	}
	for (j = rp[i]; j < rp[i + 1]; j++)
		g[data->col[j]] += alpha * data->val[j];
}

static void gather_rows(const struct hetsgd_dataset *data, const uint32_t *idx,
			size_t k0, size_t mb, float *rows)
{
	size_t k, p = data->p;

	for (k = 0; k < mb; k++)
		memcpy(rows + k * p, data->dense + row_of(idx, k0 + k) * p,
		       p * sizeof(float));
}

/* log(1 + exp(-t)) without overflow for either sign of t. */
static double logistic_loss(double t)
{
	if (t > 0)
		return log1p(exp(-t));
	return -t + log1p(exp(t));
}

/* 1 / (1 + exp(t)) = sigmoid(-t), without overflow. */
static double sigmoid_neg(double t)
{
	double e;

	if (t >= 0) {
		e = exp(-t);
		return e / (1.0 + e);
	}
	return 1.0 / (1.0 + exp(t));
}

static uint32_t argmax(const float *z, uint32_t c)
{
	uint32_t k, best = 0;

	for (k = 1; k < c; k++)
		if (z[k] > z[best])
			best = k;
	return best;
}

/*
 * Cross-entropy of one row of logits z against class y, with log-sum-exp
 * shifted by the maximum so that no exp() overflows.  When want_grad,
 * z is overwritten by scale * (softmax(z) - onehot(y)).
 */
static double softmax_row(float *z, uint32_t c, int32_t y, float scale,
			  int want_grad)
{
	double s = 0.0, lse, loss;
	float mx = z[0];
	uint32_t k;

	for (k = 1; k < c; k++)
		if (z[k] > mx)
			mx = z[k];
	for (k = 0; k < c; k++)
		s += exp((double)z[k] - mx);
	lse = mx + log(s);
	loss = lse - z[y];
	if (want_grad)
		for (k = 0; k < c; k++)
			z[k] = (float)exp((double)z[k] - lse) * scale -
			       ((int32_t)k == y ? scale : 0.0f);
	return loss;
}

/* ---- least squares and logistic regression ---- */

static void linear_eval(struct hetsgd_objective *obj, const float *x,
			const struct hetsgd_dataset *data, const uint32_t *idx,
			size_t m, double *loss_sum, float *grad, size_t *correct)
{
	float invm = 1.0f / (float)m;
	double sum = 0.0;
	size_t k, ok = 0;

	for (k = 0; k < m; k++) {
		size_t i = row_of(idx, k);
		float z = row_dot(data, i, x), coef;

		if (obj->kind == HETSGD_OBJ_LSQ) {
			float r = z - data->targets[i];

			sum += 0.5 * (double)r * r;
			coef = r;
		} else {
			double y = data->labels[i] == 1 ? 1.0 : -1.0;

			sum += logistic_loss(y * z);
			coef = (float)(-y * sigmoid_neg(y * z));
			ok += (z > 0.0f) == (data->labels[i] == 1);
		}
		if (grad)
			row_axpy(data, i, coef * invm, grad);
	}
	if (loss_sum)
		*loss_sum = sum;
	if (correct)
		*correct = ok;
}

/* ---- softmax regression ---- */

static void softmax_eval(struct hetsgd_objective *obj, const float *x,
			 const struct hetsgd_dataset *data, const uint32_t *idx,
			 size_t m, double *loss_sum, float *grad, size_t *correct)
{
	struct obj_priv *pv = obj->priv;
	size_t p = obj->p, k0, k;
	uint32_t c = obj->nclass, j;
	const float *b = pv->bias ? x + (size_t)c * p : NULL;
	float *gb = grad && pv->bias ? grad + (size_t)c * p : NULL;
	float invm = 1.0f / (float)m;
	double sum = 0.0;
	size_t ok = 0;

	for (k0 = 0; k0 < m; k0 += CHUNK) {
		size_t mb = m - k0 < CHUNK ? m - k0 : CHUNK;
		float *z = pv->z;

		if (data->dense) {
			/* Z = R W^T: one sgemm for the chunk */
			gather_rows(data, idx, k0, mb, pv->rows);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
				    (int)mb, (int)c, (int)p, 1.0f, pv->rows,
				    (int)p, x, (int)p, 0.0f, z, (int)c);
		} else {
			for (k = 0; k < mb; k++)
				for (j = 0; j < c; j++)
					z[k * c + j] = row_dot(data, row_of(idx, k0 + k),
							       x + (size_t)j * p);
		}
		for (k = 0; k < mb; k++) {
			int32_t y = data->labels[row_of(idx, k0 + k)];
			float *zr = z + k * c;

			if (b)
				cblas_saxpy((int)c, 1.0f, b, 1, zr, 1);
			ok += argmax(zr, c) == (uint32_t)y;
			sum += softmax_row(zr, c, y, invm, grad != NULL);
		}
		if (!grad)
			continue;
		/* dW += G^T R; db += column sums of G */
		if (data->dense) {
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
				    (int)c, (int)p, (int)mb, 1.0f, z, (int)c,
				    pv->rows, (int)p, 1.0f, grad, (int)p);
		} else {
			for (k = 0; k < mb; k++)
				for (j = 0; j < c; j++)
					row_axpy(data, row_of(idx, k0 + k), z[k * c + j],
						 grad + (size_t)j * p);
		}
		if (gb)
			for (k = 0; k < mb; k++)
				cblas_saxpy((int)c, 1.0f, z + k * c, 1, gb, 1);
	}
	if (loss_sum)
		*loss_sum = sum;
	if (correct)
		*correct = ok;
}

/* ---- one-hidden-layer MLP ---- */

static void mlp_eval(struct hetsgd_objective *obj, const float *x,
		     const struct hetsgd_dataset *data, const uint32_t *idx,
		     size_t m, double *loss_sum, float *grad, size_t *correct)
{
	struct obj_priv *pv = obj->priv;
	size_t p = obj->p, nh = pv->hidden, k0, k, j;
	uint32_t c = obj->nclass;
	const float *w1 = x, *b1 = w1 + nh * p, *w2 = b1 + nh, *b2 = w2 + c * nh;
	float *gw1 = grad, *gb1 = NULL, *gw2 = NULL, *gb2 = NULL;
	float invm = 1.0f / (float)m;
	double sum = 0.0;
	size_t ok = 0;

	if (grad) {
		gb1 = gw1 + nh * p;
		gw2 = gb1 + nh;
		gb2 = gw2 + c * nh;
	}
	for (k0 = 0; k0 < m; k0 += CHUNK) {
		size_t mb = m - k0 < CHUNK ? m - k0 : CHUNK;
		float *r = pv->rows, *h = pv->h, *z = pv->z, *dh = pv->dh;

		gather_rows(data, idx, k0, mb, r);
		/* H = act(R W1^T + b1) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mb,
			    (int)nh, (int)p, 1.0f, r, (int)p, w1, (int)p, 0.0f,
			    h, (int)nh);
		for (k = 0; k < mb; k++) {
			float *hr = h + k * nh;

			for (j = 0; j < nh; j++) {
				float v = hr[j] + b1[j];

				if (pv->act == HETSGD_ACT_RELU)
					hr[j] = v > 0.0f ? v : 0.0f;
				else
					hr[j] = tanhf(v);
			}
		}
		/* Z = H W2^T + b2 */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mb,
			    (int)c, (int)nh, 1.0f, h, (int)nh, w2, (int)nh, 0.0f,
			    z, (int)c);
		for (k = 0; k < mb; k++) {
			int32_t y = data->labels[row_of(idx, k0 + k)];
			float *zr = z + k * c;

			cblas_saxpy((int)c, 1.0f, b2, 1, zr, 1);
			ok += argmax(zr, c) == (uint32_t)y;
			sum += softmax_row(zr, c, y, invm, grad != NULL);
		}
		if (!grad)
			continue;
		/* backward: G = z (already scaled by 1/m) */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c,
			    (int)nh, (int)mb, 1.0f, z, (int)c, h, (int)nh, 1.0f,
			    gw2, (int)nh);
		for (k = 0; k < mb; k++)
			cblas_saxpy((int)c, 1.0f, z + k * c, 1, gb2, 1);
		/* dH = G W2, times act'(pre) expressed through H itself */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mb,
			    (int)nh, (int)c, 1.0f, z, (int)c, w2, (int)nh, 0.0f,
			    dh, (int)nh);
		for (k = 0; k < mb * nh; k++) {
			if (pv->act == HETSGD_ACT_RELU)
				dh[k] = h[k] > 0.0f ? dh[k] : 0.0f;
			else
				dh[k] *= 1.0f - h[k] * h[k];
		}
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nh,
			    (int)p, (int)mb, 1.0f, dh, (int)nh, r, (int)p, 1.0f,
			    gw1, (int)p);
		for (k = 0; k < mb; k++)
			cblas_saxpy((int)nh, 1.0f, dh + k * nh, 1, gb1, 1);
	}
	if (loss_sum)
		*loss_sum = sum;
	if (correct)
		*correct = ok;
}

/* ---- quadratic ---- */

static void quad_eval(struct hetsgd_objective *obj, const float *x,
		      const struct hetsgd_dataset *data, const uint32_t *idx,
		      size_t m, double *loss_sum, float *grad, size_t *correct)
{
	struct obj_priv *pv = obj->priv;
	double sum = 0.0;
	size_t j;

	(void)data;
	(void)idx;
	(void)m;
	(void)correct;
	for (j = 0; j < obj->d; j++) {
		float r = x[j] - pv->qb[j];

		sum += 0.5 * (double)pv->qa[j] * r * r;
		if (grad)
			grad[j] = pv->qa[j] * r;
	}
	if (loss_sum)
		*loss_sum = sum;
}

/* ---- argument checks and dispatch ---- */

static int check_batch(const struct hetsgd_objective *obj, const char *fn,
		       const struct hetsgd_dataset *data, const uint32_t *idx,
		       size_t m)
{
	size_t k;

	if (obj->kind == HETSGD_OBJ_QUAD)
		return 0;
	if (!data)
		return algo_err(-EINVAL, "%s: data is NULL", fn);
	if (data->p != obj->p)
		return algo_err(-EINVAL, "%s: data has %zu features, the %s objective expects %zu",
				fn, (size_t)data->p, hetsgd_obj_kind_name(obj->kind), obj->p);
	if (!data->dense && (!data->row_ptr || !data->col || !data->val))
		return algo_err(-EINVAL, "%s: data has neither dense x nor complete CSR arrays", fn);
	if (!data->dense && obj->kind == HETSGD_OBJ_MLP)
		return algo_err(-ENOTSUP, "%s: the MLP needs dense features; this data set is CSR", fn);
	if (obj->kind == HETSGD_OBJ_LSQ && !data->targets)
		return algo_err(-EINVAL, "%s: least squares needs data->targets", fn);
	if (obj->nclass && !data->labels)
		return algo_err(-EINVAL, "%s: the %s objective needs data->labels", fn,
				hetsgd_obj_kind_name(obj->kind));
	if (obj->nclass && data->classes && data->classes != obj->nclass)
		return algo_err(-EINVAL, "%s: data has %u classes, the objective %u", fn,
				data->classes, obj->nclass);
	if (m == 0)
		return algo_err(-EINVAL, "%s: empty batch (m = 0)", fn);
	for (k = 0; k < m; k++) {
		size_t i = row_of(idx, k);

		if (i >= data->n)
			return algo_err(-ERANGE, "%s: batch index %zu at position %zu is beyond n = %zu",
					fn, i, k, data->n);
		if (obj->nclass && (data->labels[i] < 0 ||
				    (uint32_t)data->labels[i] >= obj->nclass))
			return algo_err(-ERANGE, "%s: label %d of row %zu is outside 0..%u%s",
					fn, data->labels[i], i, obj->nclass - 1,
					obj->kind == HETSGD_OBJ_LOGREG ?
					" (binary labels are 0/1, not -1/+1)" : "");
	}
	return 0;
}

/* lambda/2 ||x[0..nreg)||^2, its gradient added to g */
static double add_reg(const struct hetsgd_objective *obj, const float *x,
		      float *g)
{
	struct obj_priv *pv = obj->priv;

	if (pv->lambda == 0.0f || pv->nreg == 0)
		return 0.0;
	if (g)
		cblas_saxpy((int)pv->nreg, pv->lambda, x, 1, g, 1);
	return 0.5 * pv->lambda * cblas_sdot((int)pv->nreg, x, 1, x, 1);
}

static int obj_loss(struct hetsgd_objective *obj, const float *x,
		    const struct hetsgd_dataset *data, const uint32_t *idx,
		    size_t m, float *loss)
{
	struct obj_priv *pv = obj->priv;
	double sum;
	int rc;

	rc = check_batch(obj, "hetsgd_objective_loss", data, idx, m);
	if (rc)
		return rc;
	pv->eval(obj, x, data, idx, m, &sum, NULL, NULL);
	if (obj->kind != HETSGD_OBJ_QUAD)
		sum /= (double)m;
	*loss = (float)(sum + add_reg(obj, x, NULL));
	return 0;
}

static int obj_loss_grad(struct hetsgd_objective *obj, const float *x,
			 const struct hetsgd_dataset *data, const uint32_t *idx,
			 size_t m, float *loss, float *grad)
{
	struct obj_priv *pv = obj->priv;
	double sum;
	int rc;

	rc = check_batch(obj, "hetsgd_objective_loss_grad", data, idx, m);
	if (rc)
		return rc;
	/* accumulate in private scratch so grad is untouched on failure */
	memset(pv->g, 0, obj->d * sizeof(float));
	pv->eval(obj, x, data, idx, m, &sum, pv->g, NULL);
	if (obj->kind != HETSGD_OBJ_QUAD)
		sum /= (double)m;
	sum += add_reg(obj, x, pv->g);
	memcpy(grad, pv->g, obj->d * sizeof(float));
	if (loss)
		*loss = (float)sum;
	return 0;
}

static int obj_accuracy(struct hetsgd_objective *obj, const float *x,
			const struct hetsgd_dataset *data, double *acc)
{
	struct obj_priv *pv = obj->priv;
	size_t ok;
	int rc;

	rc = check_batch(obj, "hetsgd_objective_accuracy", data, NULL,
			 data ? data->n : 0);
	if (rc)
		return rc;
	pv->eval(obj, x, data, NULL, data->n, NULL, NULL, &ok);
	*acc = (double)ok / (double)data->n;
	return 0;
}

static void obj_destroy(struct hetsgd_objective *obj)
{
	struct obj_priv *pv = obj->priv;

	free(pv->g);
	free(pv->rows);
	free(pv->z);
	free(pv->h);
	free(pv->dh);
	free(pv->qa);
	free(pv->qb);
	free(pv);
	free(obj);
}

static const struct hetsgd_objective_ops classifier_ops = {
	.loss = obj_loss,
	.loss_grad = obj_loss_grad,
	.accuracy = obj_accuracy,
	.destroy = obj_destroy,
};

static const struct hetsgd_objective_ops plain_ops = {
	.loss = obj_loss,
	.loss_grad = obj_loss_grad,
	.accuracy = NULL,
	.destroy = obj_destroy,
};

int hetsgd_objective_loss(struct hetsgd_objective *obj, const float *x,
			  const struct hetsgd_dataset *data, const uint32_t *idx,
			  size_t m, float *loss)
{
	if (!obj || !x || !loss)
		return algo_err(-EINVAL, "hetsgd_objective_loss: obj, x and loss must not be NULL");
	if (!idx && obj->kind != HETSGD_OBJ_QUAD)
		return algo_err(-EINVAL, "hetsgd_objective_loss: idx is NULL");
	return obj->ops->loss(obj, x, data, idx, m, loss);
}

int hetsgd_objective_loss_grad(struct hetsgd_objective *obj, const float *x,
			       const struct hetsgd_dataset *data,
			       const uint32_t *idx, size_t m, float *loss,
			       float *grad)
{
	if (!obj || !x || !grad)
		return algo_err(-EINVAL, "hetsgd_objective_loss_grad: obj, x and grad must not be NULL");
	if (!idx && obj->kind != HETSGD_OBJ_QUAD)
		return algo_err(-EINVAL, "hetsgd_objective_loss_grad: idx is NULL");
	return obj->ops->loss_grad(obj, x, data, idx, m, loss, grad);
}

int hetsgd_objective_accuracy(struct hetsgd_objective *obj, const float *x,
			      const struct hetsgd_dataset *data, double *acc)
{
	if (!obj || !x || !acc)
		return algo_err(-EINVAL, "hetsgd_objective_accuracy: obj, x and acc must not be NULL");
	if (!obj->ops->accuracy)
		return algo_err(-ENOTSUP, "hetsgd_objective_accuracy: the %s objective is not a classifier",
				hetsgd_obj_kind_name(obj->kind));
	return obj->ops->accuracy(obj, x, data, acc);
}

void hetsgd_objective_destroy(struct hetsgd_objective *obj)
{
	if (obj)
		obj->ops->destroy(obj);
}

const char *hetsgd_obj_kind_name(enum hetsgd_obj_kind kind)
{
	switch (kind) {
	case HETSGD_OBJ_LSQ:
		return "least-squares";
	case HETSGD_OBJ_LOGREG:
		return "logistic";
	case HETSGD_OBJ_SOFTMAX:
		return "softmax";
	case HETSGD_OBJ_MLP:
		return "mlp";
	case HETSGD_OBJ_QUAD:
		return "quadratic";
	}
	return "invalid";
}

/* ---- constructors ---- */

/* BLAS takes int dimensions: every product we pass must fit one. */
static int fits_int(size_t a, size_t b, size_t *out)
{
	size_t r;

	if (__builtin_mul_overflow(a, b, &r) || r > INT_MAX)
		return 0;
	if (out)
		*out = r;
	return 1;
}

static float *falloc(size_t count)
{
	return calloc(count ? count : 1, sizeof(float));
}

static int obj_new(enum hetsgd_obj_kind kind, size_t d, size_t p,
		   uint32_t nclass, eval_fn eval, struct hetsgd_objective **out)
{
	struct hetsgd_objective *obj = calloc(1, sizeof(*obj));
	struct obj_priv *pv = calloc(1, sizeof(*pv));

	if (!obj || !pv || !(pv->g = falloc(d))) {
		free(pv);
		free(obj);
		return algo_err(-ENOMEM, "objective: out of memory for d = %zu", d);
	}
	obj->kind = kind;
	obj->d = d;
	obj->p = p;
	obj->nclass = nclass;
	obj->ops = nclass ? &classifier_ops : &plain_ops;
	obj->priv = pv;
	pv->eval = eval;
	*out = obj;
	return 0;
}

static int check_lambda(const char *fn, float lambda)
{
	if (!(lambda >= 0.0f) || isinf(lambda))
		return algo_err(-EINVAL, "%s: lambda must be finite and >= 0 (got %g)",
				fn, (double)lambda);
	return 0;
}

int hetsgd_objective_lsq_create(size_t p, struct hetsgd_objective **obj)
{
	if (!obj)
		return algo_err(-EINVAL, "hetsgd_objective_lsq_create: obj is NULL");
	if (p == 0 || p > INT_MAX)
		return algo_err(-EINVAL, "hetsgd_objective_lsq_create: p = %zu must be in 1..%d",
				p, INT_MAX);
	return obj_new(HETSGD_OBJ_LSQ, p, p, 0, linear_eval, obj);
}

int hetsgd_objective_logreg_create(size_t p, float lambda,
				   struct hetsgd_objective **obj)
{
	struct hetsgd_objective *o;
	int rc;

	if (!obj)
		return algo_err(-EINVAL, "hetsgd_objective_logreg_create: obj is NULL");
	if (p == 0 || p > INT_MAX)
		return algo_err(-EINVAL, "hetsgd_objective_logreg_create: p = %zu must be in 1..%d",
				p, INT_MAX);
	rc = check_lambda("hetsgd_objective_logreg_create", lambda);
	if (rc)
		return rc;
	rc = obj_new(HETSGD_OBJ_LOGREG, p, p, 2, linear_eval, &o);
	if (rc)
		return rc;
	((struct obj_priv *)o->priv)->lambda = lambda;
	((struct obj_priv *)o->priv)->nreg = p;
	*obj = o;
	return 0;
}

int hetsgd_objective_softmax_create(size_t p, uint32_t nclass, int bias,
				    float lambda,
				    struct hetsgd_objective **obj)
{
	const char *fn = "hetsgd_objective_softmax_create";
	struct hetsgd_objective *o;
	struct obj_priv *pv;
	size_t wsz, d, rsz;
	int rc;

	if (!obj)
		return algo_err(-EINVAL, "%s: obj is NULL", fn);
	if (p == 0 || nclass < 2)
		return algo_err(-EINVAL, "%s: need p >= 1 and nclass >= 2 (got p = %zu, nclass = %u)",
				fn, p, nclass);
	if (!fits_int(p, nclass, &wsz) || !fits_int(p, CHUNK, &rsz) ||
	    wsz + nclass > INT_MAX)
		return algo_err(-EOVERFLOW, "%s: p = %zu, nclass = %u is too large for BLAS int dimensions",
				fn, p, nclass);
	rc = check_lambda(fn, lambda);
	if (rc)
		return rc;
	d = wsz + (bias ? nclass : 0);
	rc = obj_new(HETSGD_OBJ_SOFTMAX, d, p, nclass, softmax_eval, &o);
	if (rc)
		return rc;
	pv = o->priv;
	pv->lambda = lambda;
	pv->nreg = wsz;
	pv->bias = !!bias;
	pv->rows = falloc(rsz);
	pv->z = falloc((size_t)CHUNK * nclass);
	if (!pv->rows || !pv->z) {
		obj_destroy(o);
		return algo_err(-ENOMEM, "%s: out of memory for the scratch", fn);
	}
	*obj = o;
	return 0;
}

int hetsgd_objective_mlp_create(size_t p, size_t hidden, uint32_t nclass,
				enum hetsgd_act act,
				struct hetsgd_objective **obj)
{
	const char *fn = "hetsgd_objective_mlp_create";
	struct hetsgd_objective *o;
	struct obj_priv *pv;
	size_t w1, w2, d, rsz, hsz;
	int rc;

	if (!obj)
		return algo_err(-EINVAL, "%s: obj is NULL", fn);
	if (p == 0 || hidden == 0 || nclass < 2)
		return algo_err(-EINVAL, "%s: need p, hidden >= 1 and nclass >= 2 (got %zu, %zu, %u)",
				fn, p, hidden, nclass);
	if (act != HETSGD_ACT_RELU && act != HETSGD_ACT_TANH)
		return algo_err(-EINVAL, "%s: unknown activation %d", fn, (int)act);
	if (!fits_int(p, hidden, &w1) || !fits_int(hidden, nclass, &w2) ||
	    !fits_int(p, CHUNK, &rsz) || !fits_int(hidden, CHUNK, &hsz) ||
	    w1 + hidden + w2 + nclass > INT_MAX)
		return algo_err(-EOVERFLOW, "%s: %zu x %zu x %u is too large for BLAS int dimensions",
				fn, p, hidden, nclass);
	d = w1 + hidden + w2 + nclass;
	rc = obj_new(HETSGD_OBJ_MLP, d, p, nclass, mlp_eval, &o);
	if (rc)
		return rc;
	pv = o->priv;
	pv->hidden = hidden;
	pv->act = act;
	pv->rows = falloc(rsz);
	pv->z = falloc((size_t)CHUNK * nclass);
	pv->h = falloc(hsz);
	pv->dh = falloc(hsz);
	if (!pv->rows || !pv->z || !pv->h || !pv->dh) {
		obj_destroy(o);
		return algo_err(-ENOMEM, "%s: out of memory for the scratch", fn);
	}
	*obj = o;
	return 0;
}

/* uniform in [-s, s): 24 random bits are exact in a float */
static float uniform_sym(uint64_t *st, float s)
{
	float u = (float)(splitmix64(st) >> 40) * 0x1p-24f;

	return (2.0f * u - 1.0f) * s;
}

int hetsgd_mlp_init(const struct hetsgd_objective *obj, uint64_t seed,
		    float *x)
{
	const struct obj_priv *pv;
	size_t p, nh, j;
	uint32_t c;
	float s1, s2;
	uint64_t st = seed;

	if (!obj || !x)
		return algo_err(-EINVAL, "hetsgd_mlp_init: obj and x must not be NULL");
	if (obj->kind != HETSGD_OBJ_MLP)
		return algo_err(-EINVAL, "hetsgd_mlp_init: objective is %s, not mlp",
				hetsgd_obj_kind_name(obj->kind));
	pv = obj->priv;
	p = obj->p;
	nh = pv->hidden;
	c = obj->nclass;
	/* ReLU halves the variance it passes on: He scaling keeps it */
	if (pv->act == HETSGD_ACT_RELU)
		s1 = sqrtf(6.0f / (float)p);
	else
		s1 = sqrtf(6.0f / (float)(p + nh));
	s2 = sqrtf(6.0f / (float)(nh + c));
	for (j = 0; j < nh * p; j++)
		x[j] = uniform_sym(&st, s1);
	memset(x + nh * p, 0, nh * sizeof(float));
	for (j = 0; j < c * nh; j++)
		x[nh * p + nh + j] = uniform_sym(&st, s2);
	memset(x + nh * p + nh + c * nh, 0, c * sizeof(float));
	return 0;
}

int hetsgd_objective_quad_create(size_t d, const float *a, const float *b,
				 struct hetsgd_objective **obj)
{
	const char *fn = "hetsgd_objective_quad_create";
	struct hetsgd_objective *o;
	struct obj_priv *pv;
	size_t j;
	int rc;

	if (!obj || !a || !b)
		return algo_err(-EINVAL, "%s: obj, a and b must not be NULL", fn);
	if (d == 0 || d > INT_MAX)
		return algo_err(-EINVAL, "%s: d = %zu must be in 1..%d", fn, d, INT_MAX);
	for (j = 0; j < d; j++) {
		if (!(a[j] > 0.0f) || isinf(a[j]))
			return algo_err(-EINVAL, "%s: a[%zu] = %g: the diagonal must be finite and > 0",
					fn, j, (double)a[j]);
		if (!isfinite(b[j]))
			return algo_err(-EINVAL, "%s: b[%zu] is not finite", fn, j);
	}
	rc = obj_new(HETSGD_OBJ_QUAD, d, 0, 0, quad_eval, &o);
	if (rc)
		return rc;
	pv = o->priv;
	pv->qa = falloc(d);
	pv->qb = falloc(d);
	if (!pv->qa || !pv->qb) {
		obj_destroy(o);
		return algo_err(-ENOMEM, "%s: out of memory for d = %zu", fn, d);
	}
	memcpy(pv->qa, a, d * sizeof(float));
	memcpy(pv->qb, b, d * sizeof(float));
	*obj = o;
	return 0;
}
