/*
 * hetsgd model files: a trained model on disk, with a checksum, and the
 * checkpoints a run resumes from.
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

/*
 * A checkpoint: what a run needs to go on after it was stopped or killed
 * (hetsgd-train --checkpoint-every, --resume).  The server's state at a
 * consistent point: the model every worker restarts from, the step or
 * round, every worker's progress (its step count positions its batch
 * sampler, its profile's noise and, with the round, LOSCAR's masks: every
 * stream of the engine is counter-based or replayed, so no generator
 * state is stored), its statistics and its tau estimate; plus two texts
 * the caller owns: the configuration and anything else (hetsgd-train
 * keeps the metrics rows so far there).  Format (little-endian,
 * version 1):
 *
 *   offset  bytes  field
 *        0      8  magic "HSGDCKP1"
 *        8      4  format version (1)
 *       12      4  header bytes (128)
 *       16      8  total file bytes
 *       24      4  CRC-32 (zlib's) of the whole file with this field zero
 *       28      4  method (enum hetsgd_method)
 *       32      4  n, workers
 *       36      4  zero
 *       40      8  d, model values
 *       48      8  configuration hash (the caller's)
 *       56      8  training seconds when it was taken (binary64)
 *       64      8  updates: the server's model version (ASGD, SYNC,
 *                  MALENIA, RINGLEADER) or rounds averaged (LOSCAR)
 *       72      8  round: LOSCAR's next round (else = updates)
 *       80      8  gradients computed by all workers
 *       88      8  gradients the server dropped
 *       96      8  configuration text bytes
 *      104      8  extra bytes
 *      112     16  zero
 *      128  4 * d  the model (binary32)
 *        .   80 n  per worker: steps, rounds, overlap steps, dropped,
 *                  overruns, messages sent (u64); compute, idle and
 *                  elapsed seconds, tau estimate (binary64)
 *        .      .  the configuration text, then the extra bytes
 *
 * save writes PATH.tmp, fsyncs it, renames it over PATH and fsyncs the
 * folder, so PATH is the previous checkpoint or the new one, whole, even
 * across a crash of the machine.  load checks everything (sizes against
 * the file, checksum, finite non-negative figures) and names what is
 * wrong; free releases what load made.
 */
#define HETSGD_CKPT_MAGIC "HSGDCKP1"
#define HETSGD_CKPT_VERSION 1u

struct hetsgd_ckpt_worker {
	uint64_t steps;		/* gradients computed, as the server last heard */
	uint64_t rounds, overlap_steps, dropped, overruns, sent;
	double compute_s, idle_s, elapsed_s;
	double tau_est;		/* the server's estimate (0: none yet) */
};

struct hetsgd_ckpt {
	uint32_t method;	/* enum hetsgd_method */
	uint32_t n;
	uint64_t d;
	uint64_t config_hash;
	double t;
	uint64_t updates, round, grads, dropped;
	float *x;				/* d */
	struct hetsgd_ckpt_worker *workers;	/* n */
	char *config;		/* config_len bytes, no NUL inside; load adds one after */
	size_t config_len;
	char *extra;		/* extra_len bytes; load adds a NUL after */
	size_t extra_len;
};

int hetsgd_ckpt_save(const char *path, const struct hetsgd_ckpt *ck);
/* Parse a checkpoint held in memory (what load does after reading). */
int hetsgd_ckpt_parse(const void *buf, size_t len, const char *name, struct hetsgd_ckpt *ck);
int hetsgd_ckpt_load(const char *path, struct hetsgd_ckpt *ck);
/* What parse or load made; a zeroed or NULL ckpt is accepted. */
void hetsgd_ckpt_free(struct hetsgd_ckpt *ck);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_MODEL_H */
