/*
 * hetsgd-train's outputs, written by rank 0 (train_out.c): the progress
 * line, metrics.csv as points arrive, and model.bin, workers.csv and
 * summary.txt at the end, each under a temporary name renamed into place.
 * Private to apps/.
 */
#ifndef HETSGD_TRAIN_OUT_H
#define HETSGD_TRAIN_OUT_H

#include <stddef.h>

#include "hetsgd_algo.h"
#include "train_data.h"

double dist_opt(const struct job *j, const float *x);
void on_eval(void *arg, const struct hetsgd_eval_point *pt);
void on_lost(void *arg, const struct hetsgd_worker_stats *w);
int on_checkpoint(void *arg, struct hetsgd_ckpt *ck);
int out_holds_run(const struct opts *o, char *reason, size_t n);
int prepare_out(const struct opts *o, char *err, size_t n);
/* The run's folder begun: the previous run's files cleared, summary.txt
 * "unfinished", metrics.csv.part with its header (and a resumed run's
 * rows so far): 0, or -1 with err set. */
int begin_out(struct job *j, char *err, size_t n);
int clear_out(const struct opts *o, char *err, size_t n);
int write_text_file(const struct opts *o, const char *name, char *err, size_t n,
			   void (*fn)(FILE *f, const void *a, const void *b, const void *c),
			   const void *a, const void *b, const void *c);
void unfinished_fn(FILE *f, const void *a, const void *b, const void *c);
void write_failure(const struct job *j, const char *why);
void summary_fn(FILE *f, const void *a, const void *b, const void *c);
int write_outputs(struct job *j, const struct hetsgd_engine_result *res, const float *x,
			 char *err, size_t n);

#endif
