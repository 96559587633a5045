/*
 * hetsgd-train's options: one table (apps/train_opts.c) gives each option
 * its name, type, bounds, field, help and the condition under which it
 * applies; the command line, the config file, --help, the contradiction
 * checks and the printed configuration (which --config reads back into
 * the same configuration hash) all come from it.  Private to apps/.
 */
#ifndef HETSGD_TRAIN_OPTS_H
#define HETSGD_TRAIN_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hetsgd_algo.h"

#define PATH_MAX_LEN 1024

enum split_kind { SPLIT_IID = 1, SPLIT_DIRICHLET };
enum launch_kind { LAUNCH_AUTO = 1, LAUNCH_LOCAL, LAUNCH_SRUN };
enum prog_kind { PROG_AUTO = 1, PROG_BAR, PROG_PLAIN, PROG_NONE };

/* Index of each option in the table; GIVEN() is by these. */
enum opt_id {
	O_METHOD, O_POLICY, O_RINGMASTER_R, O_MALENIA_S, O_MERGE, O_OVERLAP, O_NO_OVERLAP, O_K, O_K_FRACTION,
	O_ROUND_TIME, O_ROUND_STEPS, O_AVERAGING, O_SERVERS, O_COMM_DELAY, O_OBJECTIVE, O_HIDDEN, O_LAMBDA, O_BIAS, O_DIM, O_DATA, O_TEST,
	O_PER_WORKER, O_SPLIT, O_ALPHA, O_TEST_FRACTION, O_SYNTH_N, O_SYNTH_P, O_SYNTH_CLASSES,
	O_EVAL_SAMPLES, O_WORKERS, O_MIN_WORKERS, O_PROFILE, O_TIME_UNIT, O_NOISE, O_SHUFFLE, O_THREADS, O_GAMMA,
	O_BATCH, O_PROVIDER, O_DEVICE, O_SEED, O_INIT, O_TIME, O_EPOCHS, O_TARGET_LOSS, O_TARGET_ACC,
	O_EVAL_INTERVAL, O_PIN, O_CHECKPOINT_EVERY, O_OUT, O_NAME, O_LAUNCH, O_PROGRESS, O_FORCE,
	O_NO_PLOTS, O_CHECK, O_CONFIG, O_RESUME, O_HELP, O_VERSION, O_COUNT
};

/* Every option; the printed configuration of this struct is what ranks hash. */
struct opts {
	int method;			/* enum hetsgd_method */
	int policy;			/* enum hetsgd_policy */
	uint64_t ringmaster_r;
	double malenia_s;		/* 0: the number of workers */
	int merge;			/* enum hetsgd_merge */
	int overlap;
	uint32_t k;
	double k_fraction;
	double round_s;
	uint32_t round_steps;		/* 0: rounds by time */
	int averaging;			/* enum hetsgd_averaging */
	uint32_t servers;		/* asgd: shards of the model, one rank each */
	double comm_delay_s;
	int objective;			/* enum hetsgd_obj_kind */
	uint32_t hidden;
	double lambda;
	int bias;
	uint32_t dim;			/* quad */
	char data[PATH_MAX_LEN];	/* fashion-mnist, synth, synth-regression, or a LIBSVM file */
	char test[PATH_MAX_LEN];
	char per_worker[PATH_MAX_LEN];	/* LIBSVM files, "{i}" = worker number */
	int split;			/* enum split_kind; 0 until resolved */
	double alpha;
	double test_fraction;
	uint64_t synth_n;
	uint32_t synth_p, synth_classes;
	uint64_t eval_samples;
	int workers;
	int profile;			/* enum hetsgd_profile_kind */
	double time_unit;
	double noise;
	int shuffle;
	int threads;
	uint32_t min_workers;		/* stop when fewer workers are left */
	double gamma;
	uint32_t batch;
	char provider[16];		/* auto, shm, verbs */
	char device[64];
	uint64_t seed;
	char init[PATH_MAX_LEN];	/* start from this model.bin ("": the default start) */
	double time_s;
	double epochs;
	double target_loss, target_acc;
	double eval_interval;
	int pin;			/* -1 auto, 0 no, 1 yes */
	double checkpoint_every;	/* seconds of training; 0: none */
	/* not hashed: where output goes and how it looks */
	char resume[PATH_MAX_LEN];	/* the checkpoint file --resume goes on from */
	char resume_dir[PATH_MAX_LEN];	/* its folder (the default --out) */
	char out[PATH_MAX_LEN];
	char name[128];
	int launch;			/* enum launch_kind */
	int progress;			/* enum prog_kind */
	int force, no_plots, check_only;
	unsigned char given[O_COUNT];	/* set explicitly (for contradictions) */
	int config_depth;
};

#define GIVEN(o, id) ((o)->given[id])

/* Write the message into err (n bytes) and return -EINVAL. */
int train_err(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void opts_default(struct opts *o);
/* The command line over o; --help and --version print and exit 0. */
int opts_parse_args(struct opts *o, int argc, char **argv, char *err, size_t n);
int opts_read_config(struct opts *o, const char *path, char *err, size_t n);
/* Contradictions that need no data; resolves the defaults that depend on other options. */
int opts_check(struct opts *o, char *err, size_t n);
/*
 * The configuration as 'name = value' lines, in the table's order, only
 * the options that apply: what ranks hash, what summary.txt records, and
 * what --config reads back into the same configuration.
 */
void opts_dump(const struct opts *o, const char *provider, FILE *f);
uint64_t opts_hash(const struct opts *o, const char *provider);
/*
 * The training configuration: the options that decide the run's
 * trajectory, without those that say only how long and where it runs
 * (provider, device, budgets, targets, evaluation interval, pinning,
 * --min-workers, --init, --checkpoint-every), which a resumed run may
 * change.  A checkpoint records its hash; --resume compares it.
 */
uint64_t opts_train_hash(const struct opts *o);
/*
 * The training options that differ between o and a printed configuration
 * (a checkpoint's), as "name: VALUE here, VALUE there" joined by "; "
 * into buf; 0 when none differ.
 */
int opts_train_diff(const struct opts *o, const char *other, char *buf, size_t n);
/* The file name of a checkpoint in a run's folder. */
#define CHECKPOINT_NAME "checkpoint.hck"
/* One 'key = value' line, the value quoted so that it cannot forge a key. */
void opts_kv(FILE *f, const char *key, const char *value);

/*
 * Read the config file at path over the defaults and check the result
 * for contradictions, as `hetsgd-train --config path` does before it
 * looks at any data: 0, or -EINVAL with the reason in err (n bytes).
 * Opens nothing but path, prints nothing, never exits (the fuzz harness
 * of the config parser calls it).
 */
int train_config_check(const char *path, char *err, size_t n);

#endif
