/*
 * hetsgd model files: a trained model on disk, with a checksum.
 *
 * Part of hetsgd's algorithm room; hetsgd_algo.h includes every part.
 * Conventions, as in the rest of hetsgd: a call returns 0 or a negative
 * errno value; a failed call leaves a sentence naming the cause and the
 * fix in hetsgd_errmsg(); outputs are written only on success.
 */
#ifndef HETSGD_MODEL_H
#define HETSGD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "hetsgd_objective.h"

#ifdef __cplusplus
extern "C" {
#endif

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
 * The objective a model file was trained for, ready to evaluate it:
 * lambda is the L2 term to include in its loss (0: the data loss alone).
 * -ENOTSUP for a quadratic (it has no data; its distance to the optimum
 * is in the run's summary.txt), -EBADMSG when the header's d does not
 * match what its kind, p, classes and hidden units make.
 */
int hetsgd_model_objective(const struct hetsgd_model_info *info, float lambda,
			   struct hetsgd_objective **obj);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_MODEL_H */
