/*
 * hetsgd algorithms: objectives, data and (to come) the engine that runs
 * LOSCAR-SGD, Rescaled ASGD and their baselines over the transport.
 *
 * Conventions, as in the rest of hetsgd: a call returns 0 or a negative
 * errno value; a failed call leaves a sentence naming the cause and the
 * fix in hetsgd_algo_errmsg(); outputs are written only on success.
 * Numbers are float (the transport's wire format is binary32).
 */
#ifndef HETSGD_ALGO_H
#define HETSGD_ALGO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The message of the last failed call of this room in this thread. */
const char *hetsgd_algo_errmsg(void);

/* ---- data: LIBSVM, Fashion-MNIST IDX, generated data, splits ---------- */

/* Distinct labels a LIBSVM file may hold. */
#define HETSGD_MAX_CLASSES 65536u

/*
 * n samples of p features.  Exactly one storage is set:
 *  - dense: n * p floats, row-major (sample i is dense[i * p .. i * p + p));
 *  - CSR:   row_ptr[n + 1], col[nnz], val[nnz] with nnz = row_ptr[n];
 *           sample i is col/val[row_ptr[i] .. row_ptr[i + 1]), columns
 *           0-based and strictly increasing within a row.
 * Classification: labels[n] in 0 .. classes - 1 (binary: 0/1 with
 * classes = 2, label 1 the positive class; LIBSVM's -1/+1 is mapped so).
 * Regression: targets[n] (least squares).  A set may carry both.
 * label_values[classes], when not NULL, is the label as the file wrote it
 * for each class (LIBSVM); NULL for IDX and generated data, where class k
 * is label k.
 * The loaders allocate every array and hetsgd_dataset_free() releases
 * them; a set built by hand over the caller's arrays must not be freed
 * with it.  Objectives only read a set and never keep it.  Run
 * hetsgd_dataset_check() once on a set made by hand: the objectives check
 * only what costs O(batch) per call, not CSR column indices.
 */
struct hetsgd_dataset {
	uint64_t n;
	uint32_t p;
	uint32_t classes;
	float *dense;
	uint64_t *row_ptr;
	uint32_t *col;
	float *val;
	int32_t *labels;
	float *targets;
	double *label_values;
};

/* Free the arrays and zero the struct; NULL and a zeroed struct are accepted. */
void hetsgd_dataset_free(struct hetsgd_dataset *ds);

/* Nonzeros in CSR storage, n * p for dense storage. */
uint64_t hetsgd_dataset_nnz(const struct hetsgd_dataset *ds);

/*
 * Copy the samples idx[0 .. k) (in that order, repeats allowed) of ds into
 * out with the same storage kind, classes and label_values.
 */
int hetsgd_dataset_subset(const struct hetsgd_dataset *ds,
			  const uint64_t *idx, uint64_t k,
			  struct hetsgd_dataset *out);

/*
 * Load a LIBSVM text file, plain or gzip-compressed (detected from the
 * content, not the name), into CSR storage.
 *
 * Line: "label idx:val idx:val ..." with 1-based, strictly increasing
 * indices; "#" starts a comment; blank lines are skipped; no line length
 * limit.  Values must be finite and fit in a float.  p is the largest index,
 * or p_hint when that is larger; with p_hint nonzero an index above p_hint
 * is an error (use it to load a test file with the training file's p).
 *
 * Labels are numbers that must be integers ("+1", "-1", "1.0", "3").  They
 * map to classes as follows, and label_values keeps the original value of
 * each class:
 *  - every label in {-1, +1}: -1 -> 0, +1 -> 1, classes = 2 (even when
 *    the file holds only one of them);
 *  - every label in {0, 1}: identity, classes = 2;
 *  - otherwise the distinct labels in increasing order map to 0, 1, ...
 *    (so LIBSVM's 1-based multi-class files become 0-based).
 * More than HETSGD_MAX_CLASSES distinct labels is an error.
 *
 * Every bad line is reported as "path:line: what is wrong; fix".
 * Numbers are parsed with strtod in the C locale the process is in: do not
 * load while a locale with a decimal comma is active.
 */
int hetsgd_libsvm_load(const char *path, uint32_t p_hint,
		       struct hetsgd_dataset *out);

/*
 * Load an IDX image file (magic 0x00000803: uint8 n x rows x cols) and its
 * IDX label file (magic 0x00000801: uint8 n), plain or gzip-compressed, as
 * dense storage with p = rows * cols, pixels scaled to [0, 1] (x / 255).
 * Labels must be < 10 (MNIST and Fashion-MNIST); classes = 10 so that a
 * test set missing a class still agrees with its training set.  Truncated
 * files, trailing bytes, a wrong magic and differing counts are errors.
 */
int hetsgd_idx_load(const char *images_path, const char *labels_path,
		    struct hetsgd_dataset *out);

/* Where Debian 12's package dataset-fashion-mnist installs the files. */
#define HETSGD_FASHION_MNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
/* Environment variable that overrides it. */
#define HETSGD_FASHION_MNIST_ENV "HETSGD_FASHION_MNIST_DIR"

/*
 * The Fashion-MNIST directory: $HETSGD_FASHION_MNIST_DIR when set and not
 * empty, else HETSGD_FASHION_MNIST_DEFAULT_DIR.  *dir points to the
 * environment or to a constant (do not free).  -ENOENT, with a message
 * naming the package, when train-images-idx3-ubyte(.gz) is not readable
 * there.
 */
int hetsgd_fashion_mnist_dir(const char **dir);

/*
 * Load Fashion-MNIST from hetsgd_fashion_mnist_dir(): the 60000 training
 * images when test is 0, the 10000 test images otherwise.  Each file is
 * looked up as NAME.gz, then NAME.
 */
int hetsgd_fashion_mnist_load(int test, struct hetsgd_dataset *out);

/*
 * Generated data.  The generator is splitmix64 seeded with seed, normals
 * by Box-Muller; the integer stream is the same everywhere, but the floats
 * go through log, sqrt and cos, so datasets are bit-identical for a seed
 * on one platform and libm build, and may differ in the last bits across
 * libm builds.
 *
 * Classification: one Gaussian blob per class: center ~ N(0, 2^2) per
 * feature, sample = center of a uniformly drawn class + N(0, 1) noise.
 * Dense, classes >= 2.
 */
int hetsgd_synth_classification(uint64_t n, uint32_t p, uint32_t classes,
				 uint64_t seed, struct hetsgd_dataset *out);

/*
 * Regression: x ~ N(0, 1) per feature, w ~ N(0, 1/p) per feature (drawn
 * first), target = <x, w> + noise * N(0, 1).  Dense, labels NULL,
 * classes 0.  When w is not NULL it receives the p true weights.
 */
int hetsgd_synth_regression(uint64_t n, uint32_t p, float noise,
			    uint64_t seed, struct hetsgd_dataset *out,
			    float *w);

/*
 * A partition of sample indices 0 .. n - 1 into parts: part k holds
 * index[offset[k] .. offset[k + 1]) in increasing order; offset has parts + 1
 * entries, offset[parts] = n.  Both arrays are owned by the split;
 * hetsgd_split_free() releases them.
 */
struct hetsgd_split {
	uint32_t parts;
	uint64_t n;
	uint64_t *offset;
	uint64_t *index;
};

/* Free the arrays and zero the struct; NULL and a zeroed struct are accepted. */
void hetsgd_split_free(struct hetsgd_split *split);

/*
 * IID: a seeded random permutation cut into workers parts whose sizes differ
 * by at most one.  Needs n >= workers (no worker is left empty).
 */
int hetsgd_split_iid(uint64_t n, uint32_t workers, uint64_t seed,
		     struct hetsgd_split *out);

/*
 * Dirichlet label split (Hsu et al. 2019): for each class c in turn, draw
 * q ~ Dirichlet(alpha, ..., alpha) over the workers (Gamma variates by
 * Marsaglia-Tsang, in log space so alpha << 1 cannot underflow), shuffle
 * the samples of class c and cut them in proportion to q.  Small alpha
 * gives each worker few classes; large alpha approaches IID.
 *
 * No worker is left empty: while one is, the largest worker (lowest number
 * on a tie) gives it its highest-numbered sample.  Needs n >= workers and
 * labels in 0 .. classes - 1.  Deterministic for a seed on one platform
 * and libm build (see the generators).
 */
int hetsgd_split_dirichlet(const int32_t *labels, uint64_t n,
			   uint32_t classes, uint32_t workers, double alpha,
			   uint64_t seed, struct hetsgd_split *out);

/*
 * Held-out test split: two parts, part 0 the training samples, part 1
 * round(fraction * n) test samples drawn at random.  fraction in [0, 1);
 * the training part must not be empty.
 */
int hetsgd_split_holdout(uint64_t n, double fraction, uint64_t seed,
			 struct hetsgd_split *out);


/* Shape, CSR structure and label range of a whole data set: O(n + nnz). */
int hetsgd_dataset_check(const struct hetsgd_dataset *data);

/* ---- objectives --------------------------------------------------------- */

/*
 * Precision: the model travels as binary32, so models, features and
 * gradients are float and the kernels accumulate in float through CBLAS
 * (sdot, saxpy, sgemm).  Only the scalar loss of a batch is summed in
 * double (it costs nothing and keeps large batches from losing the small
 * terms); it is returned as float.  A result is a deterministic function of
 * the inputs for a given BLAS build and BLAS thread count; the project runs
 * one BLAS thread per compute thread (OPENBLAS_NUM_THREADS=1 or
 * openblas_set_num_threads(1)).
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

#endif /* HETSGD_ALGO_H */
