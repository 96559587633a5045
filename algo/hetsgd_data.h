/*
 * hetsgd data sets: LIBSVM, Fashion-MNIST IDX, generated data, splits.
 *
 * Part of hetsgd's algorithm room; hetsgd_algo.h includes every part.
 * Conventions, as in the rest of hetsgd: a call returns 0 or a negative
 * errno value; a failed call leaves a sentence naming the cause and the
 * fix in hetsgd_errmsg(); outputs are written only on success.
 */
#ifndef HETSGD_DATA_H
#define HETSGD_DATA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

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
 * The same for regression data: the first column of each line is a
 * real-valued target (finite, within float range), read into
 * out->targets; classes = 0, labels and label_values NULL.  The loaders
 * above keep refusing a label that is not an integer.
 */
#define HETSGD_LIBSVM_TARGETS 1u
int hetsgd_libsvm_load_as(const char *path, uint32_t p_hint, unsigned flags,
			  struct hetsgd_dataset *out);
int hetsgd_libsvm_load_many_as(const char *const *paths, uint32_t k, uint32_t p_hint,
			       unsigned flags, struct hetsgd_dataset *out);

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

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_DATA_H */
