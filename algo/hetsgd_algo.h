/*
 * hetsgd algorithms: objectives, data, and the engine that runs
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

#include "hetsgd_transport.h"

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
 * One LIBSVM file per worker (each worker's own data, as in federated
 * settings): load paths[0 .. k) into out[0 .. k) so that the sets agree
 * with each other, as one file would with itself:
 *  - p is the largest index over all files (or p_hint, as above);
 *  - classes come from the union of the labels of all files, mapped by
 *    the rule of hetsgd_libsvm_load(), so that label 3 is the same class
 *    on every worker even when a worker never sees label 2.
 * Every set carries the union in label_values.  On failure nothing is
 * returned and the message names the file.
 */
int hetsgd_libsvm_load_many(const char *const *paths, uint32_t k,
			    uint32_t p_hint, struct hetsgd_dataset *out);

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

/* ---- heterogeneous compute: time profiles ------------------------------ */

/*
 * One machine reproduces a heterogeneous cluster by padding each gradient
 * computation of worker i (0-based, of n) to a target time.  Mean seconds
 * per gradient, with c = unit_s:
 *   CONST    c
 *   LINEAR   c (i + 1)
 *   SQRT     c (1 + sqrt(i))
 *   SQUARED  c (1 + i^2)
 *   RANDOM   c (1 + (n - 1) u_i), u_i uniform in [0, 1) from seed
 * With shuffle set, worker i takes the mean of position pi(i) of a seeded
 * permutation pi instead of position i (the papers shuffle tau_i = i + 1).
 * With noise > 0, every step's target is the mean times exp(noise z -
 * noise^2 / 2), z ~ N(0, 1) drawn from (seed, i, step): a lognormal factor
 * whose mean is 1.  A step whose real computation takes longer than its
 * target is not padded (the engine counts these overruns).
 */
enum hetsgd_profile_kind {
	HETSGD_PROFILE_CONST = 1,
	HETSGD_PROFILE_LINEAR,
	HETSGD_PROFILE_SQRT,
	HETSGD_PROFILE_SQUARED,
	HETSGD_PROFILE_RANDOM,
};

struct hetsgd_profile {
	enum hetsgd_profile_kind kind;
	double unit_s;		/* c; 0: no padding at all (run flat out) */
	double noise;		/* lognormal sigma per step, 0 .. 2 */
	int shuffle;
	uint64_t seed;
};

/* "const", "linear", "sqrt", "squared", "random"; -EINVAL otherwise. */
int hetsgd_profile_parse(const char *name, enum hetsgd_profile_kind *kind);
const char *hetsgd_profile_name(enum hetsgd_profile_kind kind);

/* Mean seconds per gradient of worker i of n (-EINVAL for a bad profile). */
int hetsgd_profile_mean(const struct hetsgd_profile *prof, uint32_t i,
			uint32_t n, double *tau);

/* Target seconds of step `step` of worker i whose mean is `mean`. */
double hetsgd_profile_step(const struct hetsgd_profile *prof, double mean,
			   uint32_t i, uint64_t step);

/* ---- Rescaled ASGD: tau estimation and step-size policies ------------- */

/*
 * Online estimate of each worker's seconds per gradient, from the times
 * the workers report with their gradients.  Robust: the estimate is the
 * median of the last `window` reports, so one slow step (a page fault, a
 * preempted core) does not move it, and a worker that really speeds up or
 * slows down is followed within window / 2 + 1 reports.
 *
 * Active workers: a worker joins with its first report and leaves with
 * hetsgd_tau_leave(), or when it has not reported for stale_s plus four
 * times its estimate (it died, stalled or was descheduled): tau_max is the
 * largest estimate among active workers, so the rescaling follows workers
 * that join or leave.  A stale worker rejoins with its next report.
 */
struct hetsgd_tau_est {
	uint32_t n;
	uint32_t window;
	double stale_s;
	double *hist;		/* n * window reports, ring per worker */
	uint32_t *count;	/* reports in the ring (<= window) */
	uint32_t *pos;		/* next ring position */
	double *last;		/* time of the last report */
	double *est;		/* current median; 0 before the first report */
	uint8_t *left;
};

/* window 1 .. 1024; stale_s > 0. */
int hetsgd_tau_init(struct hetsgd_tau_est *e, uint32_t n, uint32_t window,
		    double stale_s);
void hetsgd_tau_fini(struct hetsgd_tau_est *e);	/* zeroed struct accepted */
/* A report of tau seconds at time now; -EINVAL for a bad worker, tau or now. */
int hetsgd_tau_report(struct hetsgd_tau_est *e, uint32_t worker, double tau,
		      double now);
void hetsgd_tau_leave(struct hetsgd_tau_est *e, uint32_t worker);
/* The estimate (0 before the first report). */
double hetsgd_tau_get(const struct hetsgd_tau_est *e, uint32_t worker);
/* Whether the worker counts at time now. */
int hetsgd_tau_active(const struct hetsgd_tau_est *e, uint32_t worker,
		      double now);
/* Largest estimate over active workers at time now; 0 when none. */
double hetsgd_tau_max(const struct hetsgd_tau_est *e, double now);

enum hetsgd_policy {
	HETSGD_POLICY_VANILLA = 1,	/* gamma */
	HETSGD_POLICY_DELAY_ADAPTIVE,	/* gamma n / max(n, delay) */
	HETSGD_POLICY_RINGMASTER,	/* gamma; drop when delay >= R */
	HETSGD_POLICY_RESCALED,		/* gamma tau_i / tau_max */
};

/* "vanilla", "delay-adaptive", "ringmaster", "rescaled"; -EINVAL otherwise. */
int hetsgd_policy_parse(const char *name, enum hetsgd_policy *policy);
const char *hetsgd_policy_name(enum hetsgd_policy policy);

/*
 * Step size for a gradient computed `delay` server updates ago by a worker
 * whose estimate is tau_i, with tau_max over active workers and n workers.
 * Returns 0 when the policy discards the gradient (Ringmaster, delay >=
 * R).  RESCALED with tau_i or tau_max unknown (0) falls back to gamma.
 */
double hetsgd_policy_gamma(enum hetsgd_policy policy, double gamma,
			   uint32_t n, uint64_t delay, uint64_t ringmaster_r,
			   double tau_i, double tau_max);

/* ---- LOSCAR-SGD: the merge ---------------------------------------------- */

enum hetsgd_merge {
	HETSGD_MERGE_DELAY_CORRECTED = 1,	/* x[S] += mbar - y[S] */
	HETSGD_MERGE_OVERWRITE,			/* x[S]  = mbar */
};

/* "delay-corrected", "overwrite"; -EINVAL otherwise. */
int hetsgd_merge_parse(const char *name, enum hetsgd_merge *merge);
const char *hetsgd_merge_name(enum hetsgd_merge merge);

/*
 * Merge the average mbar of the K masked coordinates idx[0 .. k) into the
 * worker's current model x (z in ALGORITHMS.md), whose values at the
 * snapshot were y: y[j] and mbar[j] belong to coordinate idx[j].
 */
void hetsgd_loscar_merge(enum hetsgd_merge merge, float *x,
			 const uint32_t *idx, uint32_t k, const float *y,
			 const float *mbar);

/* ---- the engine --------------------------------------------------------- */

/*
 * A job of n + 1 ranks: rank 0 is the server (it holds the model for
 * ASGD and synchronous SGD, and averages for LOSCAR), ranks 1 .. n are
 * workers 0 .. n - 1.  A worker is compute threads (one by default; more
 * split each batch), pinned per the topology plan, and a progress step
 * (the calling thread, pinned too)
 * that drives the transport: it hands blocks from the compute thread to
 * the network and landed blocks to the compute thread, so computation
 * never waits for the network unless the method says so.  The methods
 * are callbacks over that loop (engine.c) and differ only in their math.
 *
 *   ASGD    worker: compute g at its model, write it (dense, or indexed
 *           when that is smaller) with its seconds per gradient; wait
 *           for the model the server writes back.  Server: x -= gamma_i g
 *           with gamma_i from the policy; write x to that worker only.
 *   SYNC    synchronous minibatch SGD: the server averages one gradient
 *           from every worker, steps, writes x to all.
 *   LOSCAR  worker: local steps for round_s seconds; snapshot the K
 *           masked values (mask from (seed, round), the same on every
 *           rank); write them; keep stepping (overlap) or wait (no
 *           overlap) until the average lands; merge; next round.
 *           Server: average the n blocks of a round, write it to all.
 *           K = d is the dense baseline.
 */
enum hetsgd_method {
	HETSGD_METHOD_ASGD = 1,
	HETSGD_METHOD_SYNC,
	HETSGD_METHOD_LOSCAR,
};

/* "asgd", "sync", "loscar"; -EINVAL otherwise. */
int hetsgd_method_parse(const char *name, enum hetsgd_method *method);
const char *hetsgd_method_name(enum hetsgd_method method);

struct hetsgd_eval_point {
	double t;		/* seconds since the start of training */
	uint64_t grads;		/* gradients computed by all workers (work) */
	uint64_t updates;	/* server updates (ASGD, SYNC) or rounds (LOSCAR) */
	double loss;		/* on the eval set; NaN without one */
	double gnorm;		/* norm of the eval set's full gradient; NaN without */
	double acc;		/* on the test set; NaN without one or for non-classifiers */
	double idle_share;	/* workers' time waiting for the network / their time */
	int final;		/* the point of the final model */
	/* the evaluated model (d floats): valid during the callback only,
	 * NULL in hetsgd_engine_result's stored points */
	const float *x;
};

/* Called on the server, in time order: on its evaluation thread, and for
 * the final point on the thread that called hetsgd_engine_run(). */
typedef void (*hetsgd_eval_fn)(void *arg, const struct hetsgd_eval_point *pt);

struct hetsgd_engine_cfg {
	enum hetsgd_method method;
	enum hetsgd_policy policy;	/* ASGD */
	uint64_t ringmaster_r;		/* RINGMASTER's R; 0: n */
	enum hetsgd_merge merge;	/* LOSCAR */
	int overlap;			/* LOSCAR: 1 keep stepping, 0 wait */
	uint32_t k;			/* LOSCAR: coordinates per round; 0: d */
	double round_s;			/* LOSCAR: local phase of a round */
	double comm_delay_s;		/* LOSCAR: the server holds each average
					 * this long (emulates a slow network) */
	float gamma;			/* step size */
	uint32_t batch;			/* minibatch (ignored for QUAD) */
	uint64_t seed;			/* sampling, masks, profile */
	struct hetsgd_profile profile;
	double budget_s;		/* stop after this long; 0: no limit */
	uint64_t budget_grads;		/* ... or this many gradients; 0: none */
	double target_loss;		/* stop when eval loss <= this; 0: off */
	double target_acc;		/* stop when test accuracy >= this; 0: off */
	double eval_interval_s;		/* 0: no intermediate evaluations */
	uint32_t tau_window;		/* 0: 8 */
	double tau_stale_s;		/* 0: 2 s */
	int compute_threads;		/* per worker (0: 1); each step's batch is
					 * split between them; deterministic for a
					 * given count, and hetsgd_sgd_reference()
					 * matches one thread */
	int pin;			/* 1 bind threads per the plan, 0 never,
					 * -1 unless the plan oversubscribes */
	double stall_s;			/* a worker waiting this long for a reply,
					 * or a server hearing from no worker, beyond
					 * the silence expected (a round, a delayed
					 * average, 4 steps of the slowest worker),
					 * fails the run; 0: 60 s */
	hetsgd_eval_fn on_eval;
	void *on_eval_arg;
};

/* Defaults: rescaled ASGD, gamma 0.05, batch 32, LOSCAR delay-corrected
 * with overlap and round_s 0.05, const profile without padding, 10 s. */
void hetsgd_engine_cfg_init(struct hetsgd_engine_cfg *cfg);

/*
 * Check a configuration for n workers and a d-dimensional model before
 * any rank starts: every contradiction gets one sentence (-EINVAL).
 */
int hetsgd_engine_cfg_check(const struct hetsgd_engine_cfg *cfg, uint32_t n,
			    size_t d);

/* What a rank brings.  The engine never frees any of it. */
struct hetsgd_engine_io {
	/* worker: f_i, used by its compute thread only; server: for
	 * evaluation, used by its evaluation thread only (may be NULL). */
	struct hetsgd_objective *obj;
	/* worker with compute_threads T > 1: T - 1 more instances of the same
	 * objective, one per extra thread (an instance is single-threaded) */
	struct hetsgd_objective *const *thread_obj;
	const struct hetsgd_dataset *data;	/* worker: its samples; NULL for QUAD */
	const struct hetsgd_dataset *eval;	/* server: loss set (optional) */
	const struct hetsgd_dataset *test;	/* server: accuracy set (optional) */
	const float *x0;			/* d floats, the same on every rank */
	size_t d;
	float *x_out;				/* server, optional: the final model */
};

struct hetsgd_worker_stats {
	uint32_t worker;
	uint64_t steps;		/* gradients computed */
	uint64_t sent;		/* messages written */
	uint64_t rounds;	/* LOSCAR rounds merged */
	uint64_t overlap_steps;	/* LOSCAR steps taken while a block was in flight */
	uint64_t dropped;	/* gradients the server discarded (Ringmaster) */
	uint64_t overruns;	/* steps longer than their profile target */
	double tau_target;	/* the profile's mean, seconds */
	double tau_est;		/* the server's estimate at the end */
	double compute_s;	/* seconds computing or padding */
	double idle_s;		/* seconds waiting for the network */
	double elapsed_s;
	uint64_t bytes_sent;
	uint64_t bytes_recv;
};

struct hetsgd_engine_result {
	double elapsed_s;
	uint64_t updates;	/* server updates (ASGD, SYNC) or rounds (LOSCAR) */
	uint64_t grads;
	uint64_t dropped;
	char stop_reason[64];	/* "time budget", "gradient budget", "target loss", ... */
	uint32_t nworkers;
	struct hetsgd_worker_stats *workers;	/* server: all; worker: its own */
	size_t npoints;
	struct hetsgd_eval_point *points;	/* server: the evaluations */
	char provider[256];	/* hetsgd_tp_describe() of this rank */
	char placement[160];	/* where this rank's threads went */
	uint32_t nplacements;	/* server: every rank's, "host: placement" */
	char (*placements)[232];
};

void hetsgd_engine_result_free(struct hetsgd_engine_result *res);

/*
 * Run one training job on this rank (collective over boot).  tp_attr
 * chooses the provider and device; the engine sizes the slots for the
 * model.  Returns 0 on every rank when training finished; otherwise a
 * negative errno with the reason in hetsgd_algo_errmsg().
 */
int hetsgd_engine_run(struct hetsgd_boot *boot,
		      const struct hetsgd_tp_attr *tp_attr,
		      const struct hetsgd_engine_cfg *cfg,
		      const struct hetsgd_engine_io *io,
		      struct hetsgd_engine_result *res);

/*
 * A trained model on disk.  Format (little-endian, version 1):
 *
 *   offset  bytes  field
 *        0      8  magic "HSGDMDL1"
 *        8      4  format version (1)
 *       12      4  header bytes (64)
 *       16      8  d, the number of values
 *       24      4  objective kind (enum hetsgd_obj_kind)
 *       28      4  p, features
 *       32      4  classes (0: not a classifier)
 *       36      4  hidden units (MLP; else 0)
 *       40      4  flags: bit 0 = softmax bias
 *       44      4  CRC-32 (zlib's) of the d * 4 value bytes
 *       48      8  hash of the training configuration
 *       56      8  zero
 *       64  4 * d  the model, IEEE-754 binary32 (layouts: see the
 *                  objectives above)
 *
 * save writes PATH.tmp and renames it over PATH, so a reader never sees
 * half a model.  load checks magic, version, sizes and checksum, and
 * names what is wrong; *x is malloc()ed.
 */
#define HETSGD_MODEL_MAGIC "HSGDMDL1"
#define HETSGD_MODEL_VERSION 1u

struct hetsgd_model_info {
	uint64_t d;
	enum hetsgd_obj_kind kind;
	uint32_t p;
	uint32_t classes;
	uint32_t hidden;
	uint32_t flags;
	uint64_t config_hash;
};

int hetsgd_model_save(const char *path, const struct hetsgd_model_info *info,
		      const float *x);
int hetsgd_model_load(const char *path, struct hetsgd_model_info *info,
		      float **x);

/*
 * The worker's sampler and step, run sequentially: `steps` SGD steps
 * x -= gamma g on batches drawn exactly as the engine's worker `worker`
 * draws them for this seed.  The reference that LOSCAR with one worker
 * and K = d must reproduce.
 */
int hetsgd_sgd_reference(struct hetsgd_objective *obj,
			 const struct hetsgd_dataset *data, float *x,
			 float gamma, uint32_t batch, uint64_t steps,
			 uint64_t seed, uint32_t worker);


#ifdef __cplusplus
}
#endif

#endif /* HETSGD_ALGO_H */
