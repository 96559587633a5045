/*
 * hetsgd-train's options as one table (train_opts.h says what comes from
 * it).  An entry is what UCX's config fields are: a name, a type with its
 * bounds, the field it sets (offsetof), its help, and here also the
 * condition under which it applies: an option given where it does not
 * apply is a contradiction, and the printed configuration holds exactly
 * the options that apply, so that --config reads it back unchanged.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "quote.h"
#include "train_opts.h"

enum opt_type {
	T_LIB = 1,	/* an enum of the library: parse and name functions */
	T_CHOICE,	/* an int chosen from names[], value = index + base */
	T_BOOL,		/* yes | no */
	T_FLAG,		/* no value: sets 1 */
	T_U32, T_U64, T_INT, T_DBL,
	T_STR,		/* text, no control characters */
	T_ACTION,	/* no field: --no-overlap, --config, --help, --version */
};

enum {
	F_HASH = 1,	/* part of the configuration (dumped, hashed) */
	F_UNSET0 = 2,	/* zero or "" means not set: not dumped */
	F_NODUMP = 4,	/* resolved into another option */
	F_RUN = 8,	/* how long and where the run goes, not its trajectory:
			 * left out of the training hash (--resume may change it) */
};

struct optdef {
	const char *name;
	enum opt_type type;
	size_t off;			/* offsetof(struct opts, field) */
	size_t cap;			/* T_STR: the field's size */
	double lo, hi;			/* numbers */
	const char *const *names;	/* T_CHOICE, by value - base */
	int count, base;
	int (*parse)(const char *v, int *out);	/* T_LIB */
	const char *(*lib_name)(int v);
	const char *arg, *help;
	unsigned flags;
	int (*applies)(const struct opts *o);	/* NULL: always */
	const char *applies_to;			/* for the message */
	int (*check)(const struct opts *o, const char *v, char *err, size_t n);	/* more rules */
	void (*help_fn)(FILE *f, const char *left);	/* help from elsewhere */
};

/* ---- the library's enums, as ints ------------------------------------------- */

#define LIB_ENUM(kind, type)                                                         \
	static int parse_##kind(const char *v, int *out)                             \
	{                                                                            \
		enum type e;                                                         \
		int r = hetsgd_##kind##_parse(v, &e);                                \
		if (!r)                                                              \
			*out = (int)e;                                               \
		return r;                                                            \
	}                                                                            \
	static const char *name_##kind(int v) { return hetsgd_##kind##_name((enum type)v); }

LIB_ENUM(method, hetsgd_method)
LIB_ENUM(policy, hetsgd_policy)
LIB_ENUM(merge, hetsgd_merge)
LIB_ENUM(profile, hetsgd_profile_kind)
LIB_ENUM(averaging, hetsgd_averaging)

/* The command line's names (the library's own differ: least-squares, logistic). */
static const char *const objective_names[] = { "lsq", "logreg", "softmax", "mlp", "quad" };
static const char *const split_names[] = { "iid", "dirichlet" };
static const char *const launch_names[] = { "auto", "local", "srun" };
static const char *const progress_names[] = { "auto", "bar", "plain", "none" };
static const char *const pin_names[] = { "auto", "no", "yes" };		/* -1, 0, 1 */
static const char *const provider_names[] = { "auto", "shm", "verbs" };

/* The choices come from the library's table of policies. */
static void policy_help(FILE *f, const char *left)
{
	char names[256];

	hetsgd_policy_list(names, sizeof(names), " | ");
	fprintf(f, "  %-26s asgd: %s (default %s)\n", left, names, hetsgd_policy_name(HETSGD_POLICY_RESCALED));
	for (size_t i = 0; hetsgd_policy_at(i); i++)
		fprintf(f, "  %-26s   %-15s %s\n", "", hetsgd_policy_at(i)->name, hetsgd_policy_at(i)->help);
}

/* ---- when an option applies ----------------------------------------------------- */

static int is_asgd(const struct opts *o) { return o->method == HETSGD_METHOD_ASGD; }
static int is_loscar(const struct opts *o) { return o->method == HETSGD_METHOD_LOSCAR; }
static int is_malenia(const struct opts *o) { return o->method == HETSGD_METHOD_MALENIA; }
static int rounds_by_time(const struct opts *o)
{
	return o->method == HETSGD_METHOD_LOSCAR && !o->round_steps;
}
static int averages(const struct opts *o)
{
	return o->method == HETSGD_METHOD_LOSCAR || o->method == HETSGD_METHOD_SYNC;
}
static int is_ringmaster(const struct opts *o)
{
	return is_asgd(o) && o->policy == HETSGD_POLICY_RINGMASTER;
}
static int is_quad(const struct opts *o) { return o->objective == HETSGD_OBJ_QUAD; }
static int has_data(const struct opts *o) { return !is_quad(o); }
static int is_mlp(const struct opts *o) { return o->objective == HETSGD_OBJ_MLP; }
static int is_softmax(const struct opts *o) { return o->objective == HETSGD_OBJ_SOFTMAX; }
static int is_regularised(const struct opts *o)
{
	return o->objective == HETSGD_OBJ_SOFTMAX || o->objective == HETSGD_OBJ_LOGREG;
}
static int pooled_data(const struct opts *o) { return has_data(o) && !o->per_worker[0]; }
static int is_dirichlet(const struct opts *o) { return pooled_data(o) && o->split == SPLIT_DIRICHLET; }
static int is_synth(const struct opts *o) { return has_data(o) && !strncmp(o->data, "synth", 5); }
static int is_synth_classes(const struct opts *o) { return is_synth(o) && strcmp(o->data, "synth-regression"); }
static int holds_out(const struct opts *o)
{
	return has_data(o) && !o->test[0] && strcmp(o->data, "fashion-mnist");
}
static int uses_device(const struct opts *o) { return strcmp(o->provider, "shm"); }

/* ---- more rules for a few values -------------------------------------------------- */

static int check_pattern(const struct opts *o, const char *v, char *err, size_t n)
{
	(void)o;
	return strstr(v, "{i}") ? 0 :
	       train_err(err, n, "--data-per-worker %s: the pattern needs {i}, the worker's number (e.g. part-{i}.svm)", v);
}

static int check_name(const struct opts *o, const char *v, char *err, size_t n)
{
	(void)o;
	return strpbrk(v, "/,\"'") ? train_err(err, n, "--name %s: use letters, digits, '-', '_' and '.'", v) : 0;
}

/* ---- the table ---------------------------------------------------------------------- */

#define F(field) offsetof(struct opts, field)
#define LIB(k) .type = T_LIB, .parse = parse_##k, .lib_name = name_##k
#define CHOICE(a, b) .type = T_CHOICE, .names = (a), .base = (b), .count = sizeof(a) / sizeof((a)[0])
#define STR(field) .type = T_STR, .off = F(field), .cap = sizeof(((struct opts *)0)->field)

static const struct optdef optdefs[O_COUNT] = {
	[O_METHOD] = { "method", LIB(method), .off = F(method), .arg = "M", .flags = F_HASH,
		       .help = "asgd | sync | loscar | malenia | ringleader (default asgd)" },
	[O_POLICY] = { "policy", LIB(policy), .off = F(policy), .arg = "P", .flags = F_HASH,
		       .applies = is_asgd, .applies_to = "--method asgd", .help_fn = policy_help },
	[O_RINGMASTER_R] = { "ringmaster-r", T_U64, F(ringmaster_r), 0, 1, 1 << 30, .arg = "R",
			     .flags = F_HASH | F_UNSET0, .applies = is_ringmaster,
			     .applies_to = "--method asgd --policy ringmaster",
			     .help = "ringmaster: drop gradients with delay >= R (default: workers)" },
	[O_MALENIA_S] = { "malenia-s", T_DBL, F(malenia_s), 0, 1e-6, 1e9, .arg = "S",
			  .flags = F_HASH | F_UNSET0, .applies = is_malenia,
			  .applies_to = "--method malenia",
			  .help = "malenia: step once (1/n sum 1/b_i)^-1 >= S/n, b_i the gradients of worker i at the model (default: workers)" },
	[O_MERGE] = { "merge", LIB(merge), .off = F(merge), .arg = "R", .flags = F_HASH,
		      .applies = is_loscar, .applies_to = "--method loscar",
		      .help = "loscar: delay-corrected | overwrite (default delay-corrected)" },
	[O_OVERLAP] = { "overlap", T_BOOL, F(overlap), .arg = "yes|no", .flags = F_HASH,
			.applies = is_loscar, .applies_to = "--method loscar",
			.help = "loscar: keep stepping while the average is in flight (default yes)" },
	[O_NO_OVERLAP] = { "no-overlap", T_ACTION, .help = "loscar: same as --overlap no" },
	[O_K] = { "k", T_U32, F(k), 0, 1, UINT32_MAX, .arg = "K", .flags = F_HASH | F_UNSET0,
		  .applies = is_loscar, .applies_to = "--method loscar",
		  .help = "loscar: coordinates averaged per round (default: d / 10)" },
	/* Resolved into --k once d is known: the printed configuration gives k. */
	[O_K_FRACTION] = { "k-fraction", T_DBL, F(k_fraction), 0, 1e-9, 1, .arg = "F", .flags = F_NODUMP,
			   .applies = is_loscar, .applies_to = "--method loscar",
			   .help = "loscar: K as a fraction of d, 0 < F <= 1 (1: dense)" },
	[O_ROUND_TIME] = { "round-time", T_DBL, F(round_s), 0, 1e-4, 3600, .arg = "S", .flags = F_HASH,
			   .applies = rounds_by_time, .applies_to = "--method loscar without --round-steps",
			   .help = "loscar: seconds of local steps per round (default 0.05)" },
	[O_ROUND_STEPS] = { "round-steps", T_U32, F(round_steps), 0, 1, 1 << 30, .arg = "N",
			    .flags = F_HASH | F_UNSET0, .applies = is_loscar, .applies_to = "--method loscar",
			    .help = "loscar: a round is N local steps instead of --round-time (with --overlap no, "
				    "a run is then the same step for step whatever the timing)" },
	[O_AVERAGING] = { "averaging", LIB(averaging), .off = F(averaging), .arg = "A", .flags = F_HASH,
			  .applies = averages, .applies_to = "--method loscar or sync",
			  .help = "loscar, sync: server (rank 0 averages) | sharded (each worker averages a "
				  "shard, writing straight to the others) | auto (default: sharded from "
				  "16 workers on)" },
	[O_SERVERS] = { "servers", T_U32, F(servers), 0, 1, HETSGD_MAX_SERVERS, .arg = "S",
			.flags = F_HASH, .applies = is_asgd, .applies_to = "--method asgd",
			.help = "asgd: split the model over S server ranks (rank 0 and S - 1 ranks after "
				"the workers; default 1); each steps its shard with the same gamma_i" },
	[O_COMM_DELAY] = { "comm-delay", T_DBL, F(comm_delay_s), 0, 0, 3600, .arg = "S", .flags = F_HASH,
			   .applies = is_loscar, .applies_to = "--method loscar",
			   .help = "loscar: emulated extra delay of each average (default 0)" },
	[O_OBJECTIVE] = { "objective", CHOICE(objective_names, HETSGD_OBJ_LSQ), .off = F(objective), .arg = "O",
			  .flags = F_HASH, .help = "softmax | logreg | lsq | mlp | quad (default softmax)" },
	[O_HIDDEN] = { "hidden", T_U32, F(hidden), 0, 1, 1 << 20, .arg = "H", .flags = F_HASH,
		       .applies = is_mlp, .applies_to = "--objective mlp", .help = "mlp: hidden units (default 64)" },
	[O_LAMBDA] = { "lambda", T_DBL, F(lambda), 0, 0, 1e6, .arg = "L", .flags = F_HASH,
		       .applies = is_regularised, .applies_to = "--objective softmax or logreg",
		       .help = "softmax, logreg: L2 regularisation (default 0 / 1e-4 for logreg)" },
	[O_BIAS] = { "bias", T_BOOL, F(bias), .arg = "yes|no", .flags = F_HASH, .applies = is_softmax,
		     .applies_to = "--objective softmax", .help = "softmax: a bias per class (default yes)" },
	[O_DIM] = { "dim", T_U32, F(dim), 0, 1, 1 << 28, .arg = "D", .flags = F_HASH, .applies = is_quad,
		    .applies_to = "--objective quad; other objectives take d from the data",
		    .help = "quad: model dimension (default 100)" },
	[O_DATA] = { "data", STR(data), .arg = "D", .flags = F_HASH, .applies = pooled_data,
		     .applies_to = "one data set for all workers",
		     .help = "fashion-mnist | synth | synth-regression | FILE.svm (default fashion-mnist)" },
	[O_TEST] = { "test", STR(test), .arg = "FILE", .flags = F_HASH | F_UNSET0, .applies = has_data,
		     .applies_to = "data sets", .help = "LIBSVM test set (default: a held-out part of the data)" },
	[O_PER_WORKER] = { "data-per-worker", STR(per_worker), .arg = "PATTERN", .flags = F_HASH | F_UNSET0,
			   .applies = has_data, .applies_to = "data sets", .check = check_pattern,
			   .help = "one LIBSVM file per worker, {i} = 0, 1, ... (needs --test)" },
	[O_SPLIT] = { "split", CHOICE(split_names, SPLIT_IID), .off = F(split), .arg = "S", .flags = F_HASH,
		      .applies = pooled_data, .applies_to = "one data set for all workers",
		      .help = "iid | dirichlet (default dirichlet for labelled data)" },
	[O_ALPHA] = { "alpha", T_DBL, F(alpha), 0, 1e-6, 1e6, .arg = "A", .flags = F_HASH,
		      .applies = is_dirichlet, .applies_to = "--split dirichlet",
		      .help = "dirichlet: concentration (default 0.5; small = heterogeneous)" },
	[O_TEST_FRACTION] = { "test-fraction", T_DBL, F(test_fraction), 0, 0, 0.9, .arg = "F", .flags = F_HASH,
			      .applies = holds_out, .applies_to = "data without a test set",
			      .help = "held-out share when there is no test set (default 0.2)" },
	[O_SYNTH_N] = { "synth-n", T_U64, F(synth_n), 0, 2, 4294967296.0, .arg = "N", .flags = F_HASH,
			.applies = is_synth, .applies_to = "--data synth or synth-regression",
			.help = "synth: samples (default 20000)" },
	[O_SYNTH_P] = { "synth-p", T_U32, F(synth_p), 0, 1, 1 << 20, .arg = "P", .flags = F_HASH,
			.applies = is_synth, .applies_to = "--data synth or synth-regression",
			.help = "synth: features (default 32)" },
	[O_SYNTH_CLASSES] = { "synth-classes", T_U32, F(synth_classes), 0, 2, 1 << 16, .arg = "C",
			      .flags = F_HASH, .applies = is_synth_classes,
			      .applies_to = "--data synth (synth-regression has no classes)",
			      .help = "synth: classes (default 10)" },
	[O_EVAL_SAMPLES] = { "eval-samples", T_U64, F(eval_samples), 0, 0, 4294967296.0, .arg = "N",
			     .flags = F_HASH, .applies = has_data, .applies_to = "data sets",
			     .help = "training samples the loss is measured on (default 5000; 0: all)" },
	[O_WORKERS] = { "workers", T_INT, F(workers), 0, 1, 4096, .arg = "N", .flags = F_HASH,
			.help = "workers (default 4 locally; under srun: tasks - servers)" },
	[O_MIN_WORKERS] = { "min-workers", T_U32, F(min_workers), 0, 1, 4096, .arg = "N",
			    .flags = F_HASH | F_RUN,
			    .help = "stop the run, every output written, when fewer workers are left "
				    "(a worker whose process ends is dropped; default 1)" },
	[O_PROFILE] = { "profile", LIB(profile), .off = F(profile), .arg = "P", .flags = F_HASH,
			.help = "compute time profile: const | linear | sqrt | squared | random (default linear)" },
	[O_TIME_UNIT] = { "time-unit", T_DBL, F(time_unit), 0, 0, 60, .arg = "S", .flags = F_HASH,
			  .help = "seconds per gradient of the profile's unit (default 0.002; 0: no padding)" },
	[O_NOISE] = { "noise", T_DBL, F(noise), 0, 0, 2, .arg = "S", .flags = F_HASH,
		      .help = "lognormal per-step noise of compute times (default 0.1)" },
	[O_SHUFFLE] = { "shuffle", T_FLAG, F(shuffle), .flags = F_HASH | F_UNSET0,
			.help = "assign the profile's times to workers in a seeded random order" },
	[O_THREADS] = { "threads", T_INT, F(threads), 0, 1, 256, .arg = "T", .flags = F_HASH,
			.help = "compute threads per worker (default 1)" },
	[O_GAMMA] = { "gamma", T_DBL, F(gamma), 0, 1e-12, 1e6, .arg = "G", .flags = F_HASH,
		      .help = "step size (default 0.05; sync, malenia, ringleader: 0.2)" },
	[O_BATCH] = { "batch", T_U32, F(batch), 0, 1, 1 << 24, .arg = "B", .flags = F_HASH,
		      .help = "minibatch (default 32)" },
	[O_PROVIDER] = { "provider", CHOICE(provider_names, 0), .off = F(provider), .arg = "P", .flags = F_HASH | F_RUN,
			 .help = "auto | shm | verbs (default auto: verbs when an RDMA device exists)" },
	[O_DEVICE] = { "device", STR(device), .arg = "DEV", .flags = F_HASH | F_UNSET0 | F_RUN, .applies = uses_device,
		       .applies_to = "--provider verbs or auto; --provider shm uses no RDMA device",
		       .help = "verbs: RDMA device (default: from the topology plan)" },
	[O_SEED] = { "seed", T_U64, F(seed), 0, 0, 18446744073709551615.0, .arg = "S", .flags = F_HASH,
		     .help = "seed of data split, sampling, masks, profile (default 1)" },
	[O_INIT] = { "init", STR(init), .arg = "MODEL", .flags = F_HASH | F_UNSET0 | F_RUN,
		     .help = "start from a saved model (a run's model.bin) instead of the default start" },
	[O_TIME] = { "time", T_DBL, F(time_s), 0, 0.01, 1e7, .arg = "S", .flags = F_HASH | F_UNSET0 | F_RUN,
		     .help = "training time budget in seconds (default 30 when no other budget)" },
	[O_EPOCHS] = { "epochs", T_DBL, F(epochs), 0, 1e-6, 1e6, .arg = "E", .flags = F_HASH | F_UNSET0 | F_RUN,
		       .applies = has_data, .applies_to = "data sets; quadratics have no data, use --time",
		       .help = "budget in passes over the training data" },
	[O_TARGET_LOSS] = { "target-loss", T_DBL, F(target_loss), 0, 1e-30, 1e30, .arg = "L",
			    .flags = F_HASH | F_UNSET0 | F_RUN, .help = "stop when the loss reaches L" },
	[O_TARGET_ACC] = { "target-acc", T_DBL, F(target_acc), 0, 1e-9, 1, .arg = "A",
			   .flags = F_HASH | F_UNSET0 | F_RUN, .applies = has_data, .applies_to = "classification data",
			   .help = "stop when the test accuracy reaches A (0 .. 1)" },
	[O_EVAL_INTERVAL] = { "eval-interval", T_DBL, F(eval_interval), 0, 0.001, 1e6, .arg = "S",
			      .flags = F_HASH | F_RUN, .help = "seconds between evaluations (default: budget / 40)" },
	[O_PIN] = { "pin", CHOICE(pin_names, -1), .off = F(pin), .arg = "auto|yes|no", .flags = F_HASH | F_RUN,
		    .help = "bind threads per the topology plan (default auto)" },
	[O_CHECKPOINT_EVERY] = { "checkpoint-every", T_DBL, F(checkpoint_every), 0, 0.01, 1e7, .arg = "S",
				 .flags = F_HASH | F_UNSET0 | F_RUN,
				 .help = "write OUT/" CHECKPOINT_NAME " every S seconds of training and when the run stops (default: none)" },
	[O_OUT] = { "out", STR(out), .arg = "DIR", .help = "output folder (default runs/NAME)" },
	[O_NAME] = { "name", STR(name), .arg = "NAME", .check = check_name,
		     .help = "run name (default: method-policy-or-merge)" },
	[O_LAUNCH] = { "launch", CHOICE(launch_names, LAUNCH_AUTO), .off = F(launch), .arg = "L",
		       .help = "auto | local | srun (default auto: srun when launched by it)" },
	[O_PROGRESS] = { "progress", CHOICE(progress_names, PROG_AUTO), .off = F(progress), .arg = "P",
			 .help = "auto | bar | plain | none (default auto: bar on a terminal)" },
	[O_FORCE] = { "force", T_FLAG, F(force), .help = "reuse an output folder that holds a previous run" },
	[O_NO_PLOTS] = { "no-plots", T_FLAG, F(no_plots), .help = "do not run gnuplot" },
	[O_CHECK] = { "check", T_FLAG, F(check_only),
		      .help = "validate the configuration and the data, print it, exit" },
	[O_CONFIG] = { "config", T_ACTION, .arg = "FILE",
		       .help = "read options from FILE ('name = value' lines, # comments; what --check prints)" },
	[O_RESUME] = { "resume", T_ACTION, .arg = "DIR",
		       .help = "go on from DIR/" CHECKPOINT_NAME " (a stopped or killed run): its configuration, then the options after --resume; only how long and where it runs may change (output: DIR)" },
	[O_HELP] = { "help", T_ACTION, .help = "this help (also -h)" },
	[O_VERSION] = { "version", T_ACTION, .help = "the version of hetsgd" },
};

/* The provider is text in struct opts (the library resolves "auto"). */
#define PROVIDER_IS_TEXT(id) ((id) == O_PROVIDER)

static void usage(FILE *f)
{
	fprintf(f, "usage: hetsgd-train [OPTIONS]\n"
		"Train with LOSCAR-SGD, Rescaled ASGD or a baseline on heterogeneous workers.\n"
		"Locally it forks a server and the workers; under srun each task is a rank\n"
		"(rank 0 the server).  Options (also usable as 'name = value' in --config):\n");
	for (int i = 0; i < O_COUNT; i++) {
		const struct optdef *d = &optdefs[i];
		char left[64];

		snprintf(left, sizeof(left), "--%s%s%s", d->name, d->arg ? " " : "", d->arg ? d->arg : "");
		if (d->help_fn)
			d->help_fn(f, left);
		else
			fprintf(f, "  %-26s %s\n", left, d->help);
	}
	fprintf(f, "Outputs in the folder: metrics.csv, workers.csv, model.bin, summary.txt,\n"
		"loss.png, loss-work.png, accuracy.png.  Exit status: 0 trained, 1 failed,\n"
		"2 bad configuration.\n");
}

int train_err(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void opts_default(struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->method = HETSGD_METHOD_ASGD;
	o->policy = HETSGD_POLICY_RESCALED;
	o->merge = HETSGD_MERGE_DELAY_CORRECTED;
	o->overlap = 1;
	o->round_s = 0.05;
	o->objective = HETSGD_OBJ_SOFTMAX;
	o->hidden = 64;
	o->lambda = -1;		/* per objective */
	o->bias = 1;
	o->dim = 100;
	snprintf(o->data, sizeof(o->data), "fashion-mnist");
	o->alpha = 0.5;
	o->test_fraction = 0.2;
	o->synth_n = 20000;
	o->synth_p = 32;
	o->synth_classes = 10;
	o->eval_samples = 5000;
	o->profile = HETSGD_PROFILE_LINEAR;
	o->time_unit = 0.002;
	o->noise = 0.1;
	o->threads = 1;
	o->min_workers = 1;
	o->servers = 1;
	o->gamma = -1;		/* per method */
	o->batch = 32;
	snprintf(o->provider, sizeof(o->provider), "auto");
	o->seed = 1;
	o->pin = -1;
	o->launch = LAUNCH_AUTO;
	o->progress = PROG_AUTO;
}

/* ---- setting one option --------------------------------------------------------------- */

static int set_number(const struct optdef *d, void *field, const char *v, char *err, size_t n)
{
	char *end;
	double x;

	errno = 0;
	if (d->type == T_DBL) {
		x = strtod(v, &end);
		if (errno || end == v || *end || !isfinite(x) || x < d->lo || x > d->hi)
			return train_err(err, n, "--%s %s: give a number from %g to %g", d->name, v, d->lo, d->hi);
		*(double *)field = x;
		return 0;
	}
	unsigned long long u = strtoull(v, &end, 10);

	if (*v == '-' || *v == '+' || errno || end == v || *end || (double)u < d->lo || (double)u > d->hi)
		return train_err(err, n, "--%s %s: give a whole number from %.0f to %.0f", d->name, v, d->lo, d->hi);
	if (d->type == T_U32)
		*(uint32_t *)field = (uint32_t)u;
	else if (d->type == T_U64)
		*(uint64_t *)field = u;
	else
		*(int *)field = (int)u;
	return 0;
}

static int set_choice(const struct optdef *d, void *field, const char *v, char *err, size_t n)
{
	char list[256] = "";
	int count = d->count;

	for (int i = 0; i < count; i++) {
		if (!strcmp(v, d->names[i])) {
			if (PROVIDER_IS_TEXT(d - optdefs))
				snprintf(field, sizeof(((struct opts *)0)->provider), "%s", v);
			else
				*(int *)field = i + d->base;
			return 0;
		}
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
			 i == 0 ? "" : i == count - 1 ? " or " : ", ", d->names[i]);
	}
	return train_err(err, n, "--%s %s: use %s", d->name, v, list);
}

/*
 * Text: a control character is refused.  These values are written into
 * plot.gp (a newline in --out ended a gnuplot string and ran the rest as
 * commands) and into 'key = value' lines of summary.txt and the printed
 * configuration (a newline there would forge a key when the file is read
 * back with --config).  No real path or device name needs one, so
 * refusing beats escaping for every reader.
 */
static int set_text(const struct optdef *d, char *dst, const char *v, char *err, size_t n)
{
	const char *c = quote_find_ctl(v);

	if (c)
		return train_err(err, n, "--%s: the value holds a control character (byte 0x%02x at offset %td), which plot.gp and summary.txt cannot hold: use one without newlines, tabs or other control characters",
				 d->name, (unsigned char)*c, c - v);
	if (strlen(v) >= d->cap)
		return train_err(err, n, "--%s: the value is longer than %zu characters", d->name, d->cap - 1);
	if (!*v)
		return train_err(err, n, "--%s: the value is empty", d->name);
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static int opts_read_resume(struct opts *o, const char *v, char *err, size_t n);

static int set_opt(struct opts *o, int id, const char *v, char *err, size_t n)
{
	const struct optdef *d = &optdefs[id];
	void *field = (char *)o + d->off;
	int r = 0;

	o->given[id] = 1;
	switch (d->type) {
	case T_LIB:
		if (d->parse(v, field))
			r = train_err(err, n, "--%s %s: %s", d->name, v, hetsgd_errmsg());
		break;
	case T_CHOICE:
		r = set_choice(d, PROVIDER_IS_TEXT(id) ? o->provider : field, v, err, n);
		break;
	case T_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "1") || !strcmp(v, "true"))
			*(int *)field = 1;
		else if (!strcmp(v, "no") || !strcmp(v, "0") || !strcmp(v, "false"))
			*(int *)field = 0;
		else
			r = train_err(err, n, "--%s %s: give yes or no", d->name, v);
		break;
	case T_FLAG:
		*(int *)field = 1;
		break;
	case T_U32:
	case T_U64:
	case T_INT:
	case T_DBL:
		r = set_number(d, field, v, err, n);
		break;
	case T_STR:
		r = set_text(d, field, v, err, n);
		break;
	case T_ACTION:
		if (id == O_NO_OVERLAP) {
			o->given[O_OVERLAP] = 1;
			o->overlap = 0;
		} else if (id == O_CONFIG) {
			r = opts_read_config(o, v, err, n);
		} else if (id == O_RESUME) {
			r = opts_read_resume(o, v, err, n);
		}
		break;
	}
	if (!r && d->check)
		r = d->check(o, v, err, n);
	return r;
}

/* ---- the config file --------------------------------------------------------------------- */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

static int find_opt(const char *name)
{
	for (int i = 0; i < O_COUNT; i++)
		if (!strcmp(optdefs[i].name, name))
			return i;
	return -1;
}

/* One line: "name = value", "name value", or a flag "name". */
static int config_line(struct opts *o, char *s, const char *path, unsigned lineno, char *err, size_t n)
{
	char *key = s, *val = NULL;
	const struct optdef *d;
	int id;

	s += strcspn(s, " \t=");
	if (*s) {
		*s++ = 0;
		val = trim(s);
		if (*val == '=')
			val = trim(val + 1);
	}
	id = find_opt(key);
	if (id < 0 || id == O_CONFIG || id == O_RESUME || id == O_HELP || id == O_VERSION)
		return train_err(err, n, "%s:%u: unknown option '%s' (hetsgd-train --help lists them)", path, lineno, key);
	d = &optdefs[id];
	if (d->arg && (!val || !*val))
		return train_err(err, n, "%s:%u: %s needs a value", path, lineno, key);
	if (!d->arg && val && *val)
		return train_err(err, n, "%s:%u: %s takes no value", path, lineno, key);
	if (set_opt(o, id, val ? val : "", err, n)) {
		char tmp[512];

		snprintf(tmp, sizeof(tmp), "%s:%u: %s", path, lineno, err);
		snprintf(err, n, "%s", tmp);
		return -EINVAL;
	}
	return 0;
}

/* 'name = value' lines from f (named path in messages) over o. */
static int read_config_stream(struct opts *o, FILE *f, const char *path, char *err, size_t n)
{
	char line[4096];
	unsigned lineno = 0;
	int r = 0;

	if (o->config_depth > 0)
		return train_err(err, n, "%s: --config inside a config file is not allowed", path);
	o->config_depth++;
	while (!r && fgets(line, sizeof(line), f)) {
		char *s, *hash;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			r = train_err(err, n, "%s:%u: line longer than %zu characters", path, lineno, sizeof(line) - 2);
			break;
		}
		hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		s = trim(line);
		if (*s)
			r = config_line(o, s, path, lineno, err, n);
	}
	o->config_depth--;
	return r;
}

int opts_read_config(struct opts *o, const char *path, char *err, size_t n)
{
	FILE *f = fopen(path, "r");
	int r;

	if (!f)
		return train_err(err, n, "--config %s: %s", path, strerror(errno));
	r = read_config_stream(o, f, path, err, n);
	fclose(f);
	return r;
}

/*
 * --resume DIR (or the checkpoint file itself): the configuration the
 * checkpoint was made with, over o, as --config reads a file; the
 * checkpoint is loaded whole here, so that a damaged one is refused
 * before anything starts.
 */
static int opts_read_resume(struct opts *o, const char *v, char *err, size_t n)
{
	struct hetsgd_ckpt ck;
	struct stat st;
	char path[PATH_MAX_LEN], dir[PATH_MAX_LEN];
	int isdir = !stat(v, &st) && S_ISDIR(st.st_mode), r;
	FILE *f;

	if (o->resume[0])
		return train_err(err, n, "--resume given twice: a run goes on from one checkpoint");
	if ((size_t)snprintf(path, sizeof(path), isdir ? "%s/" CHECKPOINT_NAME : "%s", v) >= sizeof(path))
		return train_err(err, n, "--resume %s: the path is too long", v);
	snprintf(dir, sizeof(dir), "%s", v);
	if (!isdir) {
		char *slash = strrchr(dir, '/');

		if (slash)
			*slash = 0;
		else
			snprintf(dir, sizeof(dir), ".");
	}
	if (isdir && stat(path, &st) && errno == ENOENT)
		return train_err(err, n, "--resume %s: the folder holds no %s: the run was made without --checkpoint-every, or it is not a run's folder",
				 v, CHECKPOINT_NAME);
	if (hetsgd_ckpt_load(path, &ck))
		return train_err(err, n, "--resume %s: %s", v, hetsgd_algo_errmsg());
	f = ck.config_len ? fmemopen(ck.config, ck.config_len, "r") : NULL;
	if (!f) {
		hetsgd_ckpt_free(&ck);
		return train_err(err, n, "--resume %s: the checkpoint holds no configuration", v);
	}
	r = read_config_stream(o, f, path, err, n);
	fclose(f);
	hetsgd_ckpt_free(&ck);
	if (r)
		return r;
	snprintf(o->resume, sizeof(o->resume), "%s", path);
	snprintf(o->resume_dir, sizeof(o->resume_dir), "%s", dir);
	return 0;
}

/* ---- the command line ---------------------------------------------------------------------- */

int opts_parse_args(struct opts *o, int argc, char **argv, char *err, size_t n)
{
	struct option lo[O_COUNT + 1];
	int c;

	for (int i = 0; i < O_COUNT; i++) {
		lo[i].name = optdefs[i].name;
		lo[i].has_arg = optdefs[i].arg ? required_argument : no_argument;
		lo[i].flag = NULL;
		lo[i].val = 256 + i;
	}
	memset(&lo[O_COUNT], 0, sizeof(lo[O_COUNT]));
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		if (c == 'h' || c == 256 + O_HELP) {
			usage(stdout);
			exit(0);
		}
		if (c == 256 + O_VERSION) {
			printf("hetsgd-train (hetsgd) %s\n", PACKAGE_VERSION);
			exit(0);
		}
		if (c == '?')
			return train_err(err, n, "unknown option '%s' (hetsgd-train --help lists them)", argv[optind - 1]);
		if (c == ':')
			return train_err(err, n, "option '%s' needs a value", argv[optind - 1]);
		if (set_opt(o, c - 256, optarg ? optarg : "", err, n))
			return -EINVAL;
	}
	if (optind < argc)
		return train_err(err, n, "unexpected argument '%s': options start with --", argv[optind]);
	return 0;
}

/* ---- contradictions and the defaults that depend on other options ------------------------------ */

/* What the data and the budget need, beyond "applies". */
static int check_combinations(const struct opts *o, char *err, size_t n)
{
	if (GIVEN(o, O_K) && GIVEN(o, O_K_FRACTION))
		return train_err(err, n, "--k and --k-fraction both give K: keep one");
	if (is_quad(o) && (GIVEN(o, O_DATA) || GIVEN(o, O_TEST) || GIVEN(o, O_PER_WORKER) || GIVEN(o, O_SPLIT) ||
			   GIVEN(o, O_EPOCHS) || GIVEN(o, O_TARGET_ACC)))
		return train_err(err, n, "--objective quad makes its own heterogeneous quadratics: drop --data, --test, --data-per-worker, --split, --epochs and --target-acc");
	if (GIVEN(o, O_PER_WORKER)) {
		if (GIVEN(o, O_DATA) || GIVEN(o, O_SPLIT) || GIVEN(o, O_ALPHA))
			return train_err(err, n, "--data-per-worker gives every worker its own file: drop --data, --split and --alpha");
		if (!GIVEN(o, O_TEST))
			return train_err(err, n, "--data-per-worker needs --test FILE: the held-out set the server evaluates on");
	}
	if (GIVEN(o, O_TEST) && GIVEN(o, O_TEST_FRACTION))
		return train_err(err, n, "--test gives the test set; --test-fraction would hold out another: keep one");
	if (GIVEN(o, O_TEST) && !strcmp(o->data, "fashion-mnist") && !GIVEN(o, O_PER_WORKER))
		return train_err(err, n, "--test is for LIBSVM data; Fashion-MNIST brings its own test set");
	return 0;
}

static void resolve_defaults(struct opts *o)
{
	if (o->time_s == 0 && o->epochs == 0 && o->target_loss == 0 && o->target_acc == 0)
		o->time_s = 30;
	if (o->gamma < 0)
		o->gamma = o->method == HETSGD_METHOD_SYNC || o->method == HETSGD_METHOD_MALENIA ||
			   o->method == HETSGD_METHOD_RINGLEADER ? 0.2 : 0.05;
	if (o->eval_interval == 0)
		o->eval_interval = o->time_s > 0 ? o->time_s / 40 : 0.5;
	if (o->lambda < 0)
		o->lambda = o->objective == HETSGD_OBJ_LOGREG ? 1e-4 : 0;
	if (is_quad(o))
		o->split = 0;
	else if (!o->split)
		o->split = (o->objective == HETSGD_OBJ_LSQ || !strcmp(o->data, "synth-regression")) ?
			   SPLIT_IID : SPLIT_DIRICHLET;
	if (!o->name[0]) {
		if (o->method == HETSGD_METHOD_ASGD)
			snprintf(o->name, sizeof(o->name), "asgd-%s", name_policy(o->policy));
		else if (o->method == HETSGD_METHOD_LOSCAR)
			snprintf(o->name, sizeof(o->name), "loscar-%s%s", name_merge(o->merge),
				 o->overlap ? "" : "-no-overlap");
		else
			snprintf(o->name, sizeof(o->name), "%s", name_method(o->method));
	}
	if (!o->out[0] && o->resume[0])
		snprintf(o->out, sizeof(o->out), "%s", o->resume_dir);
	if (!o->out[0])
		snprintf(o->out, sizeof(o->out), "runs/%s", o->name);
}

int opts_check(struct opts *o, char *err, size_t n)
{
	int r = check_combinations(o, err, n);

	if (r)
		return r;
	resolve_defaults(o);
	/* After the defaults: whether --alpha applies depends on the split. */
	for (int i = 0; i < O_COUNT; i++)
		if (GIVEN(o, i) && optdefs[i].applies && !optdefs[i].applies(o))
			return train_err(err, n, "--%s applies to %s: drop it, or change what it depends on",
					 optdefs[i].name, optdefs[i].applies_to);
	if (o->objective == HETSGD_OBJ_LSQ && o->split == SPLIT_DIRICHLET)
		return train_err(err, n, "--split dirichlet splits by label; least squares has none: use --split iid");
	return 0;
}

int train_config_check(const char *path, char *err, size_t n)
{
	struct opts o;

	opts_default(&o);
	if (opts_read_config(&o, path, err, n) || opts_check(&o, err, n))
		return -EINVAL;
	return 0;
}

/* ---- the printed configuration ----------------------------------------------------------------- */

void opts_kv(FILE *f, const char *key, const char *value)
{
	fprintf(f, "%s = ", key);
	quote_kv(f, value);
	fputc('\n', f);
}

static void dump_one(const struct optdef *d, const struct opts *o, FILE *f)
{
	const void *field = (const char *)o + d->off;

	switch (d->type) {
	case T_LIB:
		fprintf(f, "%s = %s\n", d->name, d->lib_name(*(const int *)field));
		break;
	case T_CHOICE:
		if (PROVIDER_IS_TEXT(d - optdefs))
			opts_kv(f, d->name, o->provider);
		else
			fprintf(f, "%s = %s\n", d->name, d->names[*(const int *)field - d->base]);
		break;
	case T_BOOL:
		fprintf(f, "%s = %s\n", d->name, *(const int *)field ? "yes" : "no");
		break;
	case T_FLAG:
		fprintf(f, "%s\n", d->name);
		break;
	case T_U32:
		fprintf(f, "%s = %u\n", d->name, *(const uint32_t *)field);
		break;
	case T_U64:
		fprintf(f, "%s = %llu\n", d->name, (unsigned long long)*(const uint64_t *)field);
		break;
	case T_INT:
		fprintf(f, "%s = %d\n", d->name, *(const int *)field);
		break;
	case T_DBL:
		fprintf(f, "%s = %.17g\n", d->name, *(const double *)field);
		break;
	case T_STR:
		opts_kv(f, d->name, field);
		break;
	case T_ACTION:
		break;
	}
}

static int is_unset(const struct optdef *d, const struct opts *o)
{
	const void *field = (const char *)o + d->off;

	switch (d->type) {
	case T_U32:
		return !*(const uint32_t *)field;
	case T_U64:
		return !*(const uint64_t *)field;
	case T_INT:
	case T_FLAG:
		return !*(const int *)field;
	case T_DBL:
		return *(const double *)field == 0;
	case T_STR:
		return !*(const char *)field;
	default:
		return 0;
	}
}

/* The printed configuration without the options whose flags hit skip. */
static void dump_without(const struct opts *o, const char *provider, unsigned skip, FILE *f)
{
	struct opts t = *o;

	/* What ran, not what was asked: "auto" resolved. */
	snprintf(t.provider, sizeof(t.provider), "%s", provider);
	for (int i = 0; i < O_COUNT; i++) {
		const struct optdef *d = &optdefs[i];

		if (!(d->flags & F_HASH) || (d->flags & (F_NODUMP | skip)) || (d->applies && !d->applies(&t)) ||
		    ((d->flags & F_UNSET0) && is_unset(d, &t)))
			continue;
		dump_one(d, &t, f);
	}
}

void opts_dump(const struct opts *o, const char *provider, FILE *f)
{
	dump_without(o, provider, 0, f);
}

static uint64_t fnv1a(const char *buf, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)buf[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* The dump (skip as above) in a malloc()ed string; NULL when out of memory. */
static char *dump_text(const struct opts *o, const char *provider, unsigned skip, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	if (!f)
		return NULL;
	dump_without(o, provider, skip, f);
	fclose(f);
	return buf;
}

uint64_t opts_train_hash(const struct opts *o)
{
	size_t len = 0;
	char *buf = dump_text(o, o->provider, F_RUN, &len);
	uint64_t h = buf ? fnv1a(buf, len) : 0;

	free(buf);
	return h;
}

/* The key of a printed line ("name = value" or a flag "name"): its length. */
static size_t line_key(const char *l, size_t len)
{
	size_t k = 0;

	while (k < len && l[k] != ' ' && l[k] != '=')
		k++;
	return k;
}

/* Line of text (len bytes) whose key is key[0 .. klen); NULL when none. */
static const char *find_line(const char *text, const char *key, size_t klen, size_t *llen)
{
	for (const char *l = text; *l;) {
		const char *e = strchr(l, '\n');
		size_t len = e ? (size_t)(e - l) : strlen(l);

		if (line_key(l, len) == klen && !memcmp(l, key, klen)) {
			*llen = len;
			return l;
		}
		l += len + (e != NULL);
	}
	return NULL;
}

/* Whether the option named key[0 .. klen) is left out of the training hash. */
static int key_is_run(const char *key, size_t klen)
{
	for (int i = 0; i < O_COUNT; i++)
		if (strlen(optdefs[i].name) == klen && !memcmp(optdefs[i].name, key, klen))
			return (optdefs[i].flags & F_RUN) != 0;
	return 0;
}

/* The lines of a whose training option is missing or other in b, into buf. */
static void diff_side(const char *a, const char *b, int a_here, char *buf, size_t n, int *count)
{
	for (const char *l = a; *l;) {
		const char *e = strchr(l, '\n'), *m;
		size_t len = e ? (size_t)(e - l) : strlen(l), k = line_key(l, len), mlen = 0;

		m = find_line(b, l, k, &mlen);
		if (k && !key_is_run(l, k) && (!m || mlen != len || memcmp(m, l, len)) && (a_here || !m)) {
			size_t used = strlen(buf);
			const char *here = a_here ? l : m, *there = a_here ? m : l;
			int hl = (int)(a_here ? len : mlen), tl = (int)(a_here ? mlen : len);

			if (used + 1 < n)
				snprintf(buf + used, n - used, "%s%.*s (here: %.*s; checkpoint: %.*s)",
					 *count ? "; " : "", (int)k, l, here ? hl : 5, here ? here : "unset",
					 there ? tl : 5, there ? there : "unset");
			(*count)++;
		}
		l += len + (e != NULL);
	}
}

int opts_train_diff(const struct opts *o, const char *other, char *buf, size_t n)
{
	size_t len = 0;
	char *mine = dump_text(o, o->provider, F_RUN, &len);
	int count = 0;

	if (n)
		buf[0] = 0;
	if (!mine)
		return 0;
	diff_side(mine, other, 1, buf, n, &count);
	diff_side(other, mine, 0, buf, n, &count);
	free(mine);
	return count;
}

uint64_t opts_hash(const struct opts *o, const char *provider)
{
	size_t len = 0;
	char *buf = dump_text(o, provider, 0, &len);
	uint64_t h = buf ? fnv1a(buf, len) : 0;

	free(buf);
	return h;
}
