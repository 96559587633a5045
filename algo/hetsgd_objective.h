/*
 * hetsgd objectives: least squares, logistic and softmax regression, an MLP,
 * heterogeneous quadratics; numbers are float (the wire is binary32).
 *
 * Part of hetsgd's algorithm room; hetsgd_algo.h includes every part.
 * Conventions, as in the rest of hetsgd: a call returns 0 or a negative
 * errno value; a failed call leaves a sentence naming the cause and the
 * fix in hetsgd_errmsg(); outputs are written only on success.
 */
#ifndef HETSGD_OBJECTIVE_H
#define HETSGD_OBJECTIVE_H

#include <stddef.h>
#include <stdint.h>

#include "hetsgd_data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- objectives --------------------------------------------------------- */

/*
 * Precision: the model travels as binary32, so models, features and
 * gradients are float and the kernels accumulate in float through CBLAS
 * (sdot, saxpy, sgemm).  Only the scalar loss of a batch is summed in
 * double (it costs nothing and keeps large batches from losing the small
 * terms); it is returned as float.  A result is a deterministic function of
 * the inputs for a given BLAS build and BLAS thread count; the project runs
 * one BLAS thread per compute thread (hetsgd_engine_run sets it for
 * OpenBLAS, BLIS, MKL and FlexiBLAS; with another CBLAS set it in the
 * environment, e.g. OMP_NUM_THREADS=1).
 *
 * Threads: an objective instance owns one scratch buffer, so an instance
 * must be used by one thread at a time; give every compute thread its own
 * instance (they are cheap: the scratch is a few hundred KiB at most).
 */

enum hetsgd_obj_kind {
	HETSGD_OBJ_LSQ = 1,	/* least squares */
	HETSGD_OBJ_LOGREG,	/* L2-regularised binary logistic regression */
	HETSGD_OBJ_SOFTMAX,	/* multinomial logistic regression */
	HETSGD_OBJ_MLP,		/* one hidden layer, softmax cross-entropy */
	HETSGD_OBJ_QUAD,	/* 0.5 (x - b)^T diag(a) (x - b) */
};

enum hetsgd_act {
	HETSGD_ACT_RELU = 0,	/* derivative 0 at 0 */
	HETSGD_ACT_TANH,
};

struct hetsgd_objective;

/*
 * The vtable.  Call through the hetsgd_objective_*() wrappers below: they
 * check the arguments every kind shares before dispatching.
 * loss_grad writes the batch loss to *loss and its gradient (d floats) to
 * grad; accuracy is NULL for objectives that are not classifiers.
 */
struct hetsgd_objective_ops {
	int (*loss)(struct hetsgd_objective *obj, const float *x,
		    const struct hetsgd_dataset *data, const uint32_t *idx,
		    size_t m, float *loss);
	int (*loss_grad)(struct hetsgd_objective *obj, const float *x,
			 const struct hetsgd_dataset *data, const uint32_t *idx,
			 size_t m, float *loss, float *grad);
	int (*accuracy)(struct hetsgd_objective *obj, const float *x,
			const struct hetsgd_dataset *data, double *acc);
	void (*destroy)(struct hetsgd_objective *obj);
};

/* Read-only for callers. */
struct hetsgd_objective {
	enum hetsgd_obj_kind kind;
	size_t d;		/* length of the model vector */
	size_t p;		/* features the data must have (0: QUAD) */
	uint32_t nclass;	/* classes (0: not a classifier) */
	const struct hetsgd_objective_ops *ops;
	void *priv;
};

/*
 * Least squares, d = p:  f(x) = 1/(2m) sum_i (a_i.x - b_i)^2, b = target.
 * Dense or CSR features.
 */
int hetsgd_objective_lsq_create(size_t p, struct hetsgd_objective **obj);

/*
 * Binary logistic regression, d = p (no bias: append a constant feature if
 * one is wanted):
 *   f(x) = 1/m sum_i log(1 + exp(-y_i a_i.x)) + lambda/2 ||x||^2,
 * y_i = +1 for label 1, -1 for label 0.  Dense or CSR features.
 * accuracy: predicts label 1 when a.x > 0.
 */
int hetsgd_objective_logreg_create(size_t p, float lambda,
				   struct hetsgd_objective **obj);

/*
 * Softmax regression with C = nclass >= 2 classes.  Layout of x:
 *   W: C x p row-major (row c = weights of class c), then, when bias is
 *   nonzero, b: C floats.  d = C p (+ C).
 *   f(x) = 1/m sum_i [logsumexp(z_i) - z_i[y_i]] + lambda/2 ||W||^2,
 *   z_i = W a_i (+ b); the bias is not regularised.  Dense or CSR features.
 * accuracy: argmax of z, ties to the lowest class.
 */
int hetsgd_objective_softmax_create(size_t p, uint32_t nclass, int bias,
				    float lambda,
				    struct hetsgd_objective **obj);

/*
 * One-hidden-layer perceptron p -> h -> C with softmax cross-entropy
 * (mean over the batch, no regularisation).  Layout of x, in order:
 *   W1: h x p row-major, b1: h, W2: C x h row-major, b2: C;
 *   d = h p + h + C h + C.
 *   z = W2 act(W1 a + b1) + b2.
 * Dense features only (-ENOTSUP on CSR data).
 */
int hetsgd_objective_mlp_create(size_t p, size_t hidden, uint32_t nclass,
				enum hetsgd_act act,
				struct hetsgd_objective **obj);

/*
 * Deterministic initialisation of an MLP's x (d floats) from seed: W1 and
 * W2 uniform in [-s, s] with s = sqrt(6 / (fan_in + fan_out)) (Glorot;
 * fan_in only, "He", for ReLU's W1), biases 0.  The draws come from a
 * splitmix64 stream and integer-to-float conversion, so every architecture
 * gets the same bits.
 */
int hetsgd_mlp_init(const struct hetsgd_objective *obj, uint64_t seed,
		    float *x);

/*
 * Quadratic f(x) = 0.5 (x - b)^T diag(a) (x - b), every a[j] > 0 and
 * finite; a and b (d floats each) are copied.  It needs no data: loss and
 * loss_grad accept data = NULL, idx = NULL, m = 0 and ignore them if given.
 * Its minimiser is b.
 */
int hetsgd_objective_quad_create(size_t d, const float *a, const float *b,
				 struct hetsgd_objective **obj);

/*
 * Heterogeneous quadratics for k workers in d dimensions, drawn from seed
 * (the one generator the programs and the tests use): a_i[j] in
 * [0.5, 2.0], and worker i's optimum b_i[j] = 2 (i - (k - 1) / 2) plus
 * a spread in [-0.5, 0.5), so that the workers disagree.  a[i] and b[i]
 * are the caller's d floats each.  avg_a and avg_b (d floats each, or
 * both NULL) receive the average objective as one quadratic:
 * (1/k) sum_i f_i = 0.5 (x - avg_b)^T diag(avg_a) (x - avg_b) + const.
 */
int hetsgd_quad_generate(size_t d, size_t k, uint64_t seed, float *const *a, float *const *b,
			 float *avg_a, float *avg_b);

/*
 * Exact minimiser of sum_i w_i f_i for k diagonal quadratics f_i as above:
 *   x*[j] = sum_i w_i a_i[j] b_i[j] / sum_i w_i a_i[j]
 * computed in double.  a[i], b[i] are d floats each; w (k doubles, >= 0,
 * positive sum) may be NULL for equal weights (the optimum of the plain
 * average, Rescaled ASGD's target; the frequency weights w_i ~ 1/tau_i give
 * vanilla ASGD's limit).
 */
int hetsgd_quad_weighted_optimum(size_t d, size_t k, const float *const *a,
				 const float *const *b, const double *w,
				 float *xstar);

/* Loss of x on the batch data[idx[0..m-1]] (m >= 1 for data objectives). */
int hetsgd_objective_loss(struct hetsgd_objective *obj, const float *x,
			  const struct hetsgd_dataset *data, const uint32_t *idx,
			  size_t m, float *loss);

/* Loss (loss may be NULL) and gradient (d floats) on the same batch. */
int hetsgd_objective_loss_grad(struct hetsgd_objective *obj, const float *x,
			       const struct hetsgd_dataset *data,
			       const uint32_t *idx, size_t m, float *loss,
			       float *grad);

/* Fraction of all n samples classified correctly; -ENOTSUP for LSQ, QUAD. */
int hetsgd_objective_accuracy(struct hetsgd_objective *obj, const float *x,
			      const struct hetsgd_dataset *data, double *acc);

/* NULL is accepted. */
void hetsgd_objective_destroy(struct hetsgd_objective *obj);

const char *hetsgd_obj_kind_name(enum hetsgd_obj_kind kind);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_OBJECTIVE_H */
