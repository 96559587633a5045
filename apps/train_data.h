/*
 * hetsgd-train's job: the options, the data and the model as every rank
 * sees them.  train_data.c loads the data and makes the objectives;
 * train.c runs the ranks.  Private to apps/.
 */
#ifndef HETSGD_TRAIN_DATA_H
#define HETSGD_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>

#include "hetsgd_algo.h"
#include "outfile.h"
#include "train_opts.h"

struct job {
	struct opts *o;
	int load_failed;		/* srun: this rank could not load its data */
	int out_ready;			/* local: main() prepared the output folder */
	char provider[16];
	uint64_t hash;
	int nworkers;
	size_t d;
	uint32_t p, classes;
	struct hetsgd_dataset train, test, eval;
	struct hetsgd_dataset *shard;	/* per worker; NULL entries in srun mode except own */
	/* rank 0: each worker's evaluation sample, from its own data, and
	 * pointers to them for the engine (NULL for quadratics) */
	struct hetsgd_dataset *weval;
	const struct hetsgd_dataset **weval_ptr;
	uint64_t ntrain;
	float **qa, **qb;		/* quad */
	float *qavg_a, *qavg_b;		/* the average objective's a and its optimum x* */
	float *x0;			/* the start: the default, --init's model or the checkpoint's */
	uint64_t init_hash;		/* --init, --resume: a hash of its values (0: none) */
	struct hetsgd_ckpt ck;		/* --resume: the checkpoint (every rank) */
	int resumed;
	uint64_t train_hash;		/* opts_train_hash and the data's identity */
	const char *data_label;
	/* rank 0's outputs */
	struct outfile metrics;		/* metrics.csv.part while the run goes */
	int out_begun;			/* the folder was cleared and the run's files begun */
	char out_err[1024];		/* the first write that failed during the run */
	/* --checkpoint-every: metrics.csv's rows so far, for the checkpoint
	 * (the evaluation thread appends, the server's thread saves) */
	pthread_mutex_t rows_mu;
	char *rows;
	size_t rows_len, rows_cap;
	int tty;
	double last_line;
	int line_open;
};

/* train_err() with the algorithm room's message after "what: ". */
int train_algo_err(char *err, size_t n, const char *what);

/*
 * Load and split.  keep -1: every worker's shard (local launcher: the
 * children share the parent's memory); keep >= 0: only that worker's,
 * -2: none (srun: a rank holds what it uses).  The server needs the eval
 * and test sets.
 */
int job_load(struct job *j, int keep, int server, char *err, size_t n);
/* Worker worker's objective, or the server's (the average one) for -1. */
int job_objective(const struct job *j, int worker, struct hetsgd_objective **obj);
/* Everything job_load() made (the ranks of a local run share it). */
void job_free(struct job *j);
/*
 * The engine's configuration of the training itself from the options (and
 * the data's size): what hetsgd-train and hetsgd-sim share.  The fields of
 * a real run only (threads, pinning, min workers, checkpoints, resume)
 * stay at hetsgd_engine_cfg_init's values; hetsgd-train sets them.
 */
void job_engine_cfg(const struct job *j, struct hetsgd_engine_cfg *c);

#endif
