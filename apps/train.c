/*
 * hetsgd-train: the main job.  One command trains a model with LOSCAR-SGD,
 * Rescaled ASGD or a baseline, on this host (forking the server and the
 * workers) or under srun (one rank per task), and writes metrics, worker
 * statistics, the model and plots into an output folder.
 *
 * The whole configuration is checked before any rank starts; ranks
 * launched separately (srun) agree on a hash of it at bootstrap and refuse
 * to train otherwise.  See usage() for the options.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hetsgd_algo.h"
#include "hetsgd_topology.h"
#include "hetsgd_transport.h"
#include "plot.h"
#include "quote.h"

#define PATH_MAX_LEN 1024

enum data_kind { DATA_FMNIST = 1, DATA_SYNTH, DATA_SYNTH_REG, DATA_LIBSVM, DATA_NONE };
enum split_kind { SPLIT_IID = 1, SPLIT_DIRICHLET };
enum launch_kind { LAUNCH_AUTO = 1, LAUNCH_LOCAL, LAUNCH_SRUN };
enum prog_kind { PROG_AUTO = 1, PROG_BAR, PROG_PLAIN, PROG_NONE };

/* Every option; the canonical dump of this struct is what ranks hash. */
struct opts {
	enum hetsgd_method method;
	enum hetsgd_policy policy;
	uint64_t ringmaster_r;
	enum hetsgd_merge merge;
	int overlap;
	uint32_t k;
	double k_fraction;
	double round_s;
	double comm_delay_s;
	enum hetsgd_obj_kind objective;
	uint32_t hidden;
	double lambda;
	int bias;
	uint32_t dim;			/* quad */
	char data[PATH_MAX_LEN];	/* fashion-mnist, synth, synth-regression, or a LIBSVM file */
	char test[PATH_MAX_LEN];
	char per_worker[PATH_MAX_LEN];	/* LIBSVM files, "{i}" = worker number */
	enum split_kind split;
	double alpha;
	double test_fraction;
	uint64_t synth_n;
	uint32_t synth_p, synth_classes;
	uint64_t eval_samples;
	int workers;
	enum hetsgd_profile_kind profile;
	double time_unit;
	double noise;
	int shuffle;
	int threads;
	double gamma;
	uint32_t batch;
	char provider[16];		/* auto, shm, verbs */
	char device[64];
	uint64_t seed;
	double time_s;
	double epochs;
	double target_loss, target_acc;
	double eval_interval;
	int pin;
	/* not hashed: where output goes and how it looks */
	char out[PATH_MAX_LEN];
	char name[128];
	enum launch_kind launch;
	enum prog_kind progress;
	int force, no_plots, check_only;
};

enum opt_id {
	O_METHOD = 256, O_POLICY, O_RINGMASTER_R, O_MERGE, O_OVERLAP, O_NO_OVERLAP, O_K, O_K_FRACTION,
	O_ROUND_TIME, O_COMM_DELAY, O_OBJECTIVE, O_HIDDEN, O_LAMBDA, O_BIAS, O_DIM, O_DATA, O_TEST,
	O_PER_WORKER, O_SPLIT, O_ALPHA, O_TEST_FRACTION, O_SYNTH_N, O_SYNTH_P, O_SYNTH_CLASSES,
	O_EVAL_SAMPLES, O_WORKERS, O_PROFILE, O_TIME_UNIT, O_NOISE, O_SHUFFLE, O_THREADS, O_GAMMA,
	O_BATCH, O_PROVIDER, O_DEVICE, O_SEED, O_TIME, O_EPOCHS, O_TARGET_LOSS, O_TARGET_ACC,
	O_EVAL_INTERVAL, O_PIN, O_OUT, O_NAME, O_LAUNCH, O_PROGRESS, O_FORCE, O_NO_PLOTS, O_CHECK,
	O_CONFIG, O_HELP, O_END
};

struct optdef {
	const char *name;
	int id;
	int has_arg;
	const char *arg;
	const char *help;
};

static const struct optdef optdefs[] = {
	{ "method", O_METHOD, 1, "M", "asgd | sync | loscar (default asgd)" },
	{ "policy", O_POLICY, 1, "P", "asgd: rescaled | vanilla | delay-adaptive | ringmaster (default rescaled)" },
	{ "ringmaster-r", O_RINGMASTER_R, 1, "R", "ringmaster: drop gradients with delay >= R (default: workers)" },
	{ "merge", O_MERGE, 1, "R", "loscar: delay-corrected | overwrite (default delay-corrected)" },
	{ "overlap", O_OVERLAP, 1, "yes|no", "loscar: keep stepping while the average is in flight (default yes)" },
	{ "no-overlap", O_NO_OVERLAP, 0, NULL, "loscar: same as --overlap no" },
	{ "k", O_K, 1, "K", "loscar: coordinates averaged per round (default: d / 10)" },
	{ "k-fraction", O_K_FRACTION, 1, "F", "loscar: K as a fraction of d, 0 < F <= 1 (1: dense)" },
	{ "round-time", O_ROUND_TIME, 1, "S", "loscar: seconds of local steps per round (default 0.05)" },
	{ "comm-delay", O_COMM_DELAY, 1, "S", "loscar: emulated extra delay of each average (default 0)" },
	{ "objective", O_OBJECTIVE, 1, "O", "softmax | logreg | lsq | mlp | quad (default softmax)" },
	{ "hidden", O_HIDDEN, 1, "H", "mlp: hidden units (default 64)" },
	{ "lambda", O_LAMBDA, 1, "L", "softmax, logreg: L2 regularisation (default 0 / 1e-4 for logreg)" },
	{ "bias", O_BIAS, 1, "yes|no", "softmax: a bias per class (default yes)" },
	{ "dim", O_DIM, 1, "D", "quad: model dimension (default 100)" },
	{ "data", O_DATA, 1, "D", "fashion-mnist | synth | synth-regression | FILE.svm (default fashion-mnist)" },
	{ "test", O_TEST, 1, "FILE", "LIBSVM test set (default: a held-out part of the data)" },
	{ "data-per-worker", O_PER_WORKER, 1, "PATTERN", "one LIBSVM file per worker, {i} = 0, 1, ... (needs --test)" },
	{ "split", O_SPLIT, 1, "S", "iid | dirichlet (default dirichlet for labelled data)" },
	{ "alpha", O_ALPHA, 1, "A", "dirichlet: concentration (default 0.5; small = heterogeneous)" },
	{ "test-fraction", O_TEST_FRACTION, 1, "F", "held-out share when there is no test set (default 0.2)" },
	{ "synth-n", O_SYNTH_N, 1, "N", "synth: samples (default 20000)" },
	{ "synth-p", O_SYNTH_P, 1, "P", "synth: features (default 32)" },
	{ "synth-classes", O_SYNTH_CLASSES, 1, "C", "synth: classes (default 10)" },
	{ "eval-samples", O_EVAL_SAMPLES, 1, "N", "training samples the loss is measured on (default 5000; 0: all)" },
	{ "workers", O_WORKERS, 1, "N", "workers (default 4 locally; under srun: tasks - 1)" },
	{ "profile", O_PROFILE, 1, "P", "compute time profile: const | linear | sqrt | squared | random (default linear)" },
	{ "time-unit", O_TIME_UNIT, 1, "S", "seconds per gradient of the profile's unit (default 0.002; 0: no padding)" },
	{ "noise", O_NOISE, 1, "S", "lognormal per-step noise of compute times (default 0.1)" },
	{ "shuffle", O_SHUFFLE, 0, NULL, "assign the profile's times to workers in a seeded random order" },
	{ "threads", O_THREADS, 1, "T", "compute threads per worker (default 1)" },
	{ "gamma", O_GAMMA, 1, "G", "step size (default 0.05; sync: 0.2)" },
	{ "batch", O_BATCH, 1, "B", "minibatch (default 32)" },
	{ "provider", O_PROVIDER, 1, "P", "auto | shm | verbs (default auto: verbs when an RDMA device exists)" },
	{ "device", O_DEVICE, 1, "DEV", "verbs: RDMA device (default: from the topology plan)" },
	{ "seed", O_SEED, 1, "S", "seed of data split, sampling, masks, profile (default 1)" },
	{ "time", O_TIME, 1, "S", "training time budget in seconds (default 30 when no other budget)" },
	{ "epochs", O_EPOCHS, 1, "E", "budget in passes over the training data" },
	{ "target-loss", O_TARGET_LOSS, 1, "L", "stop when the loss reaches L" },
	{ "target-acc", O_TARGET_ACC, 1, "A", "stop when the test accuracy reaches A (0 .. 1)" },
	{ "eval-interval", O_EVAL_INTERVAL, 1, "S", "seconds between evaluations (default: budget / 40)" },
	{ "pin", O_PIN, 1, "auto|yes|no", "bind threads per the topology plan (default auto)" },
	{ "out", O_OUT, 1, "DIR", "output folder (default runs/NAME)" },
	{ "name", O_NAME, 1, "NAME", "run name (default: method-policy-or-merge)" },
	{ "launch", O_LAUNCH, 1, "L", "auto | local | srun (default auto: srun when launched by it)" },
	{ "progress", O_PROGRESS, 1, "P", "auto | bar | plain | none (default auto: bar on a terminal)" },
	{ "force", O_FORCE, 0, NULL, "reuse an output folder that holds a previous run" },
	{ "no-plots", O_NO_PLOTS, 0, NULL, "do not run gnuplot" },
	{ "check", O_CHECK, 0, NULL, "validate the configuration and the data, print it, exit" },
	{ "config", O_CONFIG, 1, "FILE", "read options from FILE (lines 'name = value'; # comments)" },
	{ "help", O_HELP, 0, NULL, "this help" },
	{ NULL, 0, 0, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: hetsgd-train [OPTIONS]\n"
		"Train with LOSCAR-SGD, Rescaled ASGD or a baseline on heterogeneous workers.\n"
		"Locally it forks a server and the workers; under srun each task is a rank\n"
		"(rank 0 the server).  Options (also usable as 'name = value' in --config):\n");
	for (const struct optdef *d = optdefs; d->name; d++) {
		char left[64];

		snprintf(left, sizeof(left), "--%s%s%s", d->name, d->arg ? " " : "", d->arg ? d->arg : "");
		fprintf(f, "  %-26s %s\n", left, d->help);
	}
	fprintf(f, "Outputs in the folder: metrics.csv, workers.csv, model.bin, summary.txt,\n"
		"loss.png, loss-work.png, accuracy.png.  Exit status: 0 trained, 1 failed,\n"
		"2 bad configuration.\n");
}

static void opts_default(struct opts *o)
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
	o->split = 0;		/* per data */
	o->alpha = 0.5;
	o->test_fraction = 0.2;
	o->synth_n = 20000;
	o->synth_p = 32;
	o->synth_classes = 10;
	o->eval_samples = 5000;
	o->workers = 0;		/* 4, or srun's */
	o->profile = HETSGD_PROFILE_LINEAR;
	o->time_unit = 0.002;
	o->noise = 0.1;
	o->threads = 1;
	o->gamma = -1;		/* per method */
	o->batch = 32;
	snprintf(o->provider, sizeof(o->provider), "auto");
	o->seed = 1;
	o->pin = -1;
	o->launch = LAUNCH_AUTO;
	o->progress = PROG_AUTO;
}

/* ---- parsing ---- */

static int bad(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int num(const char *name, const char *v, double lo, double hi, double *out,
	       char *err, size_t n)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(d) || d < lo || d > hi)
		return bad(err, n, "--%s %s: give a number from %g to %g", name, v, lo, hi);
	*out = d;
	return 0;
}

static int whole(const char *name, const char *v, uint64_t lo, uint64_t hi, uint64_t *out,
		 char *err, size_t n)
{
	char *end;
	unsigned long long u;

	errno = 0;
	if (*v == '-' || *v == '+')
		return bad(err, n, "--%s %s: give a whole number from %llu to %llu", name, v,
			   (unsigned long long)lo, (unsigned long long)hi);
	u = strtoull(v, &end, 10);
	if (errno || end == v || *end || u < lo || u > hi)
		return bad(err, n, "--%s %s: give a whole number from %llu to %llu", name, v,
			   (unsigned long long)lo, (unsigned long long)hi);
	*out = u;
	return 0;
}

static int yesno(const char *name, const char *v, int *out, char *err, size_t n)
{
	if (!strcmp(v, "yes") || !strcmp(v, "1") || !strcmp(v, "true")) {
		*out = 1;
		return 0;
	}
	if (!strcmp(v, "no") || !strcmp(v, "0") || !strcmp(v, "false")) {
		*out = 0;
		return 0;
	}
	return bad(err, n, "--%s %s: give yes or no", name, v);
}

/*
 * Every text option goes through here.  A control character is refused:
 * these values are written into plot.gp (a newline in --out ended a gnuplot
 * string and ran the rest as commands) and into 'key = value' lines of
 * summary.txt and the printed configuration (a newline there would forge a
 * key when the file is read back with --config).  No real path or device
 * name needs one, so refusing beats escaping for every reader.
 */
static int copy_str(const char *name, const char *v, char *dst, size_t cap, char *err, size_t n)
{
	const char *c = quote_find_ctl(v);

	if (c)
		return bad(err, n, "--%s: the value holds a control character (byte 0x%02x at offset %td), which plot.gp and summary.txt cannot hold: use one without newlines, tabs or other control characters",
			   name, (unsigned char)*c, c - v);
	if (strlen(v) >= cap)
		return bad(err, n, "--%s: the value is longer than %zu characters", name, cap - 1);
	if (!*v)
		return bad(err, n, "--%s: the value is empty", name);
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static const struct optdef *def_of(int id)
{
	for (const struct optdef *d = optdefs; d->name; d++)
		if (d->id == id)
			return d;
	return NULL;
}

/* given[id - O_METHOD]: set explicitly (for contradictions) */
static unsigned char given[O_END - O_METHOD];

static int read_config(struct opts *o, const char *path, char *err, size_t n);

static int set_opt(struct opts *o, int id, const char *v, char *err, size_t n)
{
	const char *nm = def_of(id)->name;
	uint64_t u;
	int r = 0;

	given[id - O_METHOD] = 1;
	switch (id) {
	case O_METHOD:
		if (hetsgd_method_parse(v, &o->method))
			return bad(err, n, "--method %s: use asgd, sync or loscar", v);
		break;
	case O_POLICY:
		if (hetsgd_policy_parse(v, &o->policy))
			return bad(err, n, "--policy %s: use rescaled, vanilla, delay-adaptive or ringmaster", v);
		break;
	case O_RINGMASTER_R:
		r = whole(nm, v, 1, 1u << 30, &o->ringmaster_r, err, n);
		break;
	case O_MERGE:
		if (hetsgd_merge_parse(v, &o->merge))
			return bad(err, n, "--merge %s: use delay-corrected or overwrite", v);
		break;
	case O_OVERLAP:
		r = yesno(nm, v, &o->overlap, err, n);
		break;
	case O_NO_OVERLAP:
		given[O_OVERLAP - O_METHOD] = 1;
		o->overlap = 0;
		break;
	case O_K:
		r = whole(nm, v, 1, UINT32_MAX, &u, err, n);
		o->k = (uint32_t)u;
		break;
	case O_K_FRACTION:
		r = num(nm, v, 1e-9, 1, &o->k_fraction, err, n);
		if (!r && o->k_fraction <= 0)
			r = bad(err, n, "--k-fraction %s: must be above 0", v);
		break;
	case O_ROUND_TIME:
		r = num(nm, v, 1e-4, 3600, &o->round_s, err, n);
		break;
	case O_COMM_DELAY:
		r = num(nm, v, 0, 3600, &o->comm_delay_s, err, n);
		break;
	case O_OBJECTIVE:
		if (!strcmp(v, "softmax"))
			o->objective = HETSGD_OBJ_SOFTMAX;
		else if (!strcmp(v, "logreg"))
			o->objective = HETSGD_OBJ_LOGREG;
		else if (!strcmp(v, "lsq"))
			o->objective = HETSGD_OBJ_LSQ;
		else if (!strcmp(v, "mlp"))
			o->objective = HETSGD_OBJ_MLP;
		else if (!strcmp(v, "quad"))
			o->objective = HETSGD_OBJ_QUAD;
		else
			return bad(err, n, "--objective %s: use softmax, logreg, lsq, mlp or quad", v);
		break;
	case O_HIDDEN:
		r = whole(nm, v, 1, 1u << 20, &u, err, n);
		o->hidden = (uint32_t)u;
		break;
	case O_LAMBDA:
		r = num(nm, v, 0, 1e6, &o->lambda, err, n);
		break;
	case O_BIAS:
		r = yesno(nm, v, &o->bias, err, n);
		break;
	case O_DIM:
		r = whole(nm, v, 1, 1u << 28, &u, err, n);
		o->dim = (uint32_t)u;
		break;
	case O_DATA:
		r = copy_str(nm, v, o->data, sizeof(o->data), err, n);
		break;
	case O_TEST:
		r = copy_str(nm, v, o->test, sizeof(o->test), err, n);
		break;
	case O_PER_WORKER:
		r = copy_str(nm, v, o->per_worker, sizeof(o->per_worker), err, n);
		if (!r && !strstr(v, "{i}"))
			r = bad(err, n, "--data-per-worker %s: the pattern needs {i}, the worker's number (e.g. part-{i}.svm)", v);
		break;
	case O_SPLIT:
		if (!strcmp(v, "iid"))
			o->split = SPLIT_IID;
		else if (!strcmp(v, "dirichlet"))
			o->split = SPLIT_DIRICHLET;
		else
			return bad(err, n, "--split %s: use iid or dirichlet", v);
		break;
	case O_ALPHA:
		r = num(nm, v, 1e-6, 1e6, &o->alpha, err, n);
		break;
	case O_TEST_FRACTION:
		r = num(nm, v, 0, 0.9, &o->test_fraction, err, n);
		break;
	case O_SYNTH_N:
		r = whole(nm, v, 2, 1ull << 32, &o->synth_n, err, n);
		break;
	case O_SYNTH_P:
		r = whole(nm, v, 1, 1u << 20, &u, err, n);
		o->synth_p = (uint32_t)u;
		break;
	case O_SYNTH_CLASSES:
		r = whole(nm, v, 2, 1u << 16, &u, err, n);
		o->synth_classes = (uint32_t)u;
		break;
	case O_EVAL_SAMPLES:
		r = whole(nm, v, 0, 1ull << 32, &o->eval_samples, err, n);
		break;
	case O_WORKERS:
		r = whole(nm, v, 1, 4096, &u, err, n);
		o->workers = (int)u;
		break;
	case O_PROFILE:
		if (hetsgd_profile_parse(v, &o->profile))
			return bad(err, n, "--profile %s: use const, linear, sqrt, squared or random", v);
		break;
	case O_TIME_UNIT:
		r = num(nm, v, 0, 60, &o->time_unit, err, n);
		break;
	case O_NOISE:
		r = num(nm, v, 0, 2, &o->noise, err, n);
		break;
	case O_SHUFFLE:
		o->shuffle = 1;
		break;
	case O_THREADS:
		r = whole(nm, v, 1, 256, &u, err, n);
		o->threads = (int)u;
		break;
	case O_GAMMA:
		r = num(nm, v, 1e-12, 1e6, &o->gamma, err, n);
		break;
	case O_BATCH:
		r = whole(nm, v, 1, 1u << 24, &u, err, n);
		o->batch = (uint32_t)u;
		break;
	case O_PROVIDER:
		if (strcmp(v, "auto") && strcmp(v, "shm") && strcmp(v, "verbs"))
			return bad(err, n, "--provider %s: use auto, shm or verbs", v);
		snprintf(o->provider, sizeof(o->provider), "%s", v);
		break;
	case O_DEVICE:
		r = copy_str(nm, v, o->device, sizeof(o->device), err, n);
		break;
	case O_SEED:
		r = whole(nm, v, 0, UINT64_MAX, &o->seed, err, n);
		break;
	case O_TIME:
		r = num(nm, v, 0.01, 1e7, &o->time_s, err, n);
		break;
	case O_EPOCHS:
		r = num(nm, v, 1e-6, 1e6, &o->epochs, err, n);
		break;
	case O_TARGET_LOSS:
		r = num(nm, v, 1e-30, 1e30, &o->target_loss, err, n);
		break;
	case O_TARGET_ACC:
		r = num(nm, v, 1e-9, 1, &o->target_acc, err, n);
		break;
	case O_EVAL_INTERVAL:
		r = num(nm, v, 0.001, 1e6, &o->eval_interval, err, n);
		break;
	case O_PIN:
		if (!strcmp(v, "auto"))
			o->pin = -1;
		else
			r = yesno(nm, v, &o->pin, err, n);
		break;
	case O_OUT:
		r = copy_str(nm, v, o->out, sizeof(o->out), err, n);
		break;
	case O_NAME:
		r = copy_str(nm, v, o->name, sizeof(o->name), err, n);
		if (!r && strpbrk(v, "/,\n\"'"))
			r = bad(err, n, "--name %s: use letters, digits, '-', '_' and '.'", v);
		break;
	case O_LAUNCH:
		if (!strcmp(v, "auto"))
			o->launch = LAUNCH_AUTO;
		else if (!strcmp(v, "local"))
			o->launch = LAUNCH_LOCAL;
		else if (!strcmp(v, "srun"))
			o->launch = LAUNCH_SRUN;
		else
			return bad(err, n, "--launch %s: use auto, local or srun", v);
		break;
	case O_PROGRESS:
		if (!strcmp(v, "auto"))
			o->progress = PROG_AUTO;
		else if (!strcmp(v, "bar"))
			o->progress = PROG_BAR;
		else if (!strcmp(v, "plain"))
			o->progress = PROG_PLAIN;
		else if (!strcmp(v, "none"))
			o->progress = PROG_NONE;
		else
			return bad(err, n, "--progress %s: use auto, bar, plain or none", v);
		break;
	case O_FORCE:
		o->force = 1;
		break;
	case O_NO_PLOTS:
		o->no_plots = 1;
		break;
	case O_CHECK:
		o->check_only = 1;
		break;
	case O_CONFIG:
		r = read_config(o, v, err, n);
		break;
	default:
		return bad(err, n, "internal: option %d", id);
	}
	return r;
}

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

/* "name = value" or "name value" or a flag "name"; # starts a comment */
static int read_config(struct opts *o, const char *path, char *err, size_t n)
{
	static int depth;
	FILE *f;
	char line[4096];
	unsigned lineno = 0;
	int r = 0;

	if (depth > 0)
		return bad(err, n, "%s: --config inside a config file is not allowed", path);
	f = fopen(path, "r");
	if (!f)
		return bad(err, n, "--config %s: %s", path, strerror(errno));
	depth++;
	while (!r && fgets(line, sizeof(line), f)) {
		char *s, *key, *val = NULL, *hash;
		const struct optdef *d;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			r = bad(err, n, "%s:%u: line longer than %zu characters", path, lineno, sizeof(line) - 2);
			break;
		}
		hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		s = trim(line);
		if (!*s)
			continue;
		key = s;
		s += strcspn(s, " \t=");
		if (*s) {
			*s++ = 0;
			val = trim(s);
			if (*val == '=')
				val = trim(val + 1);
		}
		for (d = optdefs; d->name && strcmp(d->name, key); d++)
			;
		if (!d->name || d->id == O_CONFIG || d->id == O_HELP) {
			r = bad(err, n, "%s:%u: unknown option '%s' (hetsgd-train --help lists them)",
				path, lineno, key);
			break;
		}
		if (d->has_arg && (!val || !*val)) {
			r = bad(err, n, "%s:%u: %s needs a value", path, lineno, key);
			break;
		}
		if (!d->has_arg && val && *val) {
			r = bad(err, n, "%s:%u: %s takes no value", path, lineno, key);
			break;
		}
		r = set_opt(o, d->id, val ? val : "", err, n);
		if (r) {
			char tmp[512];

			snprintf(tmp, sizeof(tmp), "%s:%u: %s", path, lineno, err);
			snprintf(err, n, "%s", tmp);
		}
	}
	depth--;
	fclose(f);
	return r;
}

static int parse_args(struct opts *o, int argc, char **argv, char *err, size_t n)
{
	struct option lo[sizeof(optdefs) / sizeof(optdefs[0])];
	int i = 0, c;

	for (const struct optdef *d = optdefs; d->name; d++, i++) {
		lo[i].name = d->name;
		lo[i].has_arg = d->has_arg ? required_argument : no_argument;
		lo[i].flag = NULL;
		lo[i].val = d->id;
	}
	memset(&lo[i], 0, sizeof(lo[i]));
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		if (c == O_HELP) {
			usage(stdout);
			exit(0);
		}
		if (c == '?')
			return bad(err, n, "unknown option '%s' (hetsgd-train --help lists them)",
				   argv[optind - 1]);
		if (c == ':')
			return bad(err, n, "option '%s' needs a value", argv[optind - 1]);
		if (set_opt(o, c, optarg ? optarg : "", err, n))
			return -EINVAL;
	}
	if (optind < argc)
		return bad(err, n, "unexpected argument '%s': options start with --", argv[optind]);
	return 0;
}

#define GIVEN(id) given[(id) - O_METHOD]

/* Contradictions that need no data. */
static int check_opts(struct opts *o, char *err, size_t n)
{
	static const int loscar_only[] = { O_MERGE, O_OVERLAP, O_K, O_K_FRACTION, O_ROUND_TIME, O_COMM_DELAY };

	if (o->method != HETSGD_METHOD_ASGD && (GIVEN(O_POLICY) || GIVEN(O_RINGMASTER_R)))
		return bad(err, n, "--policy and --ringmaster-r apply to --method asgd, not %s",
			   hetsgd_method_name(o->method));
	if (GIVEN(O_RINGMASTER_R) && o->policy != HETSGD_POLICY_RINGMASTER)
		return bad(err, n, "--ringmaster-r applies to --policy ringmaster");
	if (o->method != HETSGD_METHOD_LOSCAR)
		for (size_t i = 0; i < sizeof(loscar_only) / sizeof(loscar_only[0]); i++)
			if (GIVEN(loscar_only[i]))
				return bad(err, n, "--%s applies to --method loscar, not %s",
					   def_of(loscar_only[i])->name, hetsgd_method_name(o->method));
	if (GIVEN(O_K) && GIVEN(O_K_FRACTION))
		return bad(err, n, "--k and --k-fraction both give K: keep one");
	if (o->objective == HETSGD_OBJ_QUAD) {
		if (GIVEN(O_DATA) || GIVEN(O_TEST) || GIVEN(O_PER_WORKER) || GIVEN(O_SPLIT) ||
		    GIVEN(O_EPOCHS) || GIVEN(O_TARGET_ACC))
			return bad(err, n, "--objective quad makes its own heterogeneous quadratics: drop --data, --test, --data-per-worker, --split, --epochs and --target-acc");
		o->split = 0;
	} else if (GIVEN(O_DIM)) {
		return bad(err, n, "--dim applies to --objective quad; other objectives take d from the data");
	}
	if (GIVEN(O_HIDDEN) && o->objective != HETSGD_OBJ_MLP)
		return bad(err, n, "--hidden applies to --objective mlp");
	if (GIVEN(O_BIAS) && o->objective != HETSGD_OBJ_SOFTMAX)
		return bad(err, n, "--bias applies to --objective softmax");
	if (GIVEN(O_LAMBDA) && o->objective != HETSGD_OBJ_SOFTMAX && o->objective != HETSGD_OBJ_LOGREG)
		return bad(err, n, "--lambda applies to --objective softmax or logreg");
	if (GIVEN(O_PER_WORKER)) {
		if (GIVEN(O_DATA) || GIVEN(O_SPLIT) || GIVEN(O_ALPHA))
			return bad(err, n, "--data-per-worker gives every worker its own file: drop --data, --split and --alpha");
		if (!GIVEN(O_TEST))
			return bad(err, n, "--data-per-worker needs --test FILE: the held-out set the server evaluates on");
	}
	if (GIVEN(O_TEST) && GIVEN(O_TEST_FRACTION))
		return bad(err, n, "--test gives the test set; --test-fraction would hold out another: keep one");
	if ((GIVEN(O_SYNTH_N) || GIVEN(O_SYNTH_P) || GIVEN(O_SYNTH_CLASSES)) &&
	    strcmp(o->data, "synth") && strcmp(o->data, "synth-regression"))
		return bad(err, n, "--synth-n, --synth-p and --synth-classes apply to --data synth or synth-regression");
	if (GIVEN(O_SYNTH_CLASSES) && !strcmp(o->data, "synth-regression"))
		return bad(err, n, "--synth-classes: synth-regression has no classes");
	if (GIVEN(O_TEST) && (!strcmp(o->data, "fashion-mnist") && !GIVEN(O_PER_WORKER)))
		return bad(err, n, "--test is for LIBSVM data; Fashion-MNIST brings its own test set");
	if (!strcmp(o->provider, "shm") && GIVEN(O_DEVICE))
		return bad(err, n, "--device names an RDMA device; --provider shm uses none");
	if (o->time_s == 0 && o->epochs == 0 && o->target_loss == 0 && o->target_acc == 0)
		o->time_s = 30;
	if (o->gamma < 0)
		o->gamma = o->method == HETSGD_METHOD_SYNC ? 0.2 : 0.05;
	if (o->eval_interval == 0)
		o->eval_interval = o->time_s > 0 ? o->time_s / 40 : 0.5;
	if (o->lambda < 0)
		o->lambda = o->objective == HETSGD_OBJ_LOGREG ? 1e-4 : 0;
	if (!o->split && o->objective != HETSGD_OBJ_QUAD)
		o->split = (o->objective == HETSGD_OBJ_LSQ || !strcmp(o->data, "synth-regression")) ?
			   SPLIT_IID : SPLIT_DIRICHLET;
	if (GIVEN(O_ALPHA) && o->split != SPLIT_DIRICHLET)
		return bad(err, n, "--alpha applies to --split dirichlet");
	if (o->objective == HETSGD_OBJ_LSQ && o->split == SPLIT_DIRICHLET)
		return bad(err, n, "--split dirichlet splits by label; least squares has none: use --split iid");
	if (!o->name[0]) {
		if (o->method == HETSGD_METHOD_ASGD)
			snprintf(o->name, sizeof(o->name), "asgd-%s", hetsgd_policy_name(o->policy));
		else if (o->method == HETSGD_METHOD_LOSCAR)
			snprintf(o->name, sizeof(o->name), "loscar-%s%s", hetsgd_merge_name(o->merge),
				 o->overlap ? "" : "-no-overlap");
		else
			snprintf(o->name, sizeof(o->name), "sync");
	}
	if (!o->out[0])
		snprintf(o->out, sizeof(o->out), "runs/%s", o->name);
	return 0;
}

/* One 'key = value' line; a text value goes through quote_kv so that it
 * cannot end the line early and forge another key. */
static void kv(FILE *f, const char *key, const char *value)
{
	fprintf(f, "%s = ", key);
	quote_kv(f, value);
	fputc('\n', f);
}

/* The configuration as text, in a fixed order: what ranks hash, and what
 * summary.txt records. */
static void dump_config(const struct opts *o, const char *provider, FILE *f)
{
	fprintf(f, "method = %s\n", hetsgd_method_name(o->method));
	if (o->method == HETSGD_METHOD_ASGD)
		fprintf(f, "policy = %s\nringmaster-r = %llu\n", hetsgd_policy_name(o->policy),
			(unsigned long long)o->ringmaster_r);
	if (o->method == HETSGD_METHOD_LOSCAR)
		fprintf(f, "merge = %s\noverlap = %s\nk = %u\nk-fraction = %.17g\nround-time = %.17g\ncomm-delay = %.17g\n",
			hetsgd_merge_name(o->merge), o->overlap ? "yes" : "no", o->k, o->k_fraction,
			o->round_s, o->comm_delay_s);
	fprintf(f, "objective = %s\n", hetsgd_obj_kind_name(o->objective));
	if (o->objective == HETSGD_OBJ_MLP)
		fprintf(f, "hidden = %u\n", o->hidden);
	if (o->objective == HETSGD_OBJ_SOFTMAX)
		fprintf(f, "bias = %s\n", o->bias ? "yes" : "no");
	fprintf(f, "lambda = %.17g\n", o->lambda);
	if (o->objective == HETSGD_OBJ_QUAD) {
		fprintf(f, "dim = %u\n", o->dim);
	} else {
		if (o->per_worker[0]) {
			kv(f, "data-per-worker", o->per_worker);
		} else {
			kv(f, "data", o->data);
			fprintf(f, "split = %s\n", o->split == SPLIT_IID ? "iid" : "dirichlet");
		}
		if (o->split == SPLIT_DIRICHLET && !o->per_worker[0])
			fprintf(f, "alpha = %.17g\n", o->alpha);
		if (o->test[0])
			kv(f, "test", o->test);
		else if (strcmp(o->data, "fashion-mnist"))
			fprintf(f, "test-fraction = %.17g\n", o->test_fraction);
		if (!strncmp(o->data, "synth", 5))
			fprintf(f, "synth-n = %llu\nsynth-p = %u\nsynth-classes = %u\n",
				(unsigned long long)o->synth_n, o->synth_p, o->synth_classes);
		fprintf(f, "eval-samples = %llu\n", (unsigned long long)o->eval_samples);
	}
	fprintf(f, "workers = %d\nprofile = %s\ntime-unit = %.17g\nnoise = %.17g\nshuffle = %s\n",
		o->workers, hetsgd_profile_name(o->profile), o->time_unit, o->noise,
		o->shuffle ? "yes" : "no");
	fprintf(f, "threads = %d\ngamma = %.17g\nbatch = %u\n", o->threads, o->gamma, o->batch);
	kv(f, "provider", provider);
	kv(f, "device", o->device[0] ? o->device : "(plan)");
	fprintf(f, "seed = %llu\n", (unsigned long long)o->seed);
	fprintf(f, "time = %.17g\nepochs = %.17g\ntarget-loss = %.17g\ntarget-acc = %.17g\neval-interval = %.17g\npin = %d\n",
		o->time_s, o->epochs, o->target_loss, o->target_acc, o->eval_interval, o->pin);
}

static uint64_t config_hash(const struct opts *o, const char *provider)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	uint64_t h = 0xcbf29ce484222325ull;	/* FNV-1a */

	if (!f)
		return 0;
	dump_config(o, provider, f);
	fclose(f);
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)buf[i];
		h *= 0x100000001b3ull;
	}
	free(buf);
	return h;
}

/* ---- data ---- */

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
	uint64_t ntrain;
	float **qa, **qb;		/* quad */
	float *qavg_a, *qavg_b;		/* the average objective's a and its optimum x* */
	float *x0;
	const char *data_label;
	/* rank 0's outputs */
	FILE *metrics;
	int tty;
	double last_line;
	int line_open;
};

static int algo_fail(char *err, size_t n, const char *what)
{
	return bad(err, n, "%s: %s", what, hetsgd_algo_errmsg());
}

static int file_readable(const char *path, const char *opt, char *err, size_t n)
{
	if (access(path, R_OK))
		return bad(err, n, "%s %s: %s", opt, path, strerror(errno));
	return 0;
}

/* Split all into j->train and a held-out j->test (--test-fraction); all is
 * consumed. */
static int hold_out(struct job *j, struct hetsgd_dataset *all, char *err, size_t n)
{
	struct hetsgd_split ho;
	int ret;

	if (hetsgd_split_holdout(all->n, j->o->test_fraction, j->o->seed, &ho)) {
		hetsgd_dataset_free(all);
		return algo_fail(err, n, "--test-fraction");
	}
	ret = hetsgd_dataset_subset(all, ho.index, ho.offset[1], &j->train);
	if (!ret && ho.offset[2] > ho.offset[1])
		ret = hetsgd_dataset_subset(all, ho.index + ho.offset[1], ho.offset[2] - ho.offset[1],
					    &j->test);
	hetsgd_split_free(&ho);
	hetsgd_dataset_free(all);
	return ret ? algo_fail(err, n, "holding out the test set") : 0;
}

static void subst_i(char *dst, size_t cap, const char *pat, int i)
{
	const char *p = strstr(pat, "{i}");

	snprintf(dst, cap, "%.*s%d%s", (int)(p - pat), pat, i, p + 3);
}

/*
 * Load and split.  keep -1: every worker's shard (local launcher: the
 * children share the parent's memory); keep >= 0: only that worker's,
 * -2: none (srun: a rank holds what it uses).  The server needs the eval
 * and test sets.
 */
static int load_data(struct job *j, int keep, int server, char *err, size_t n)
{
	struct opts *o = j->o;
	struct hetsgd_split sp = { 0 };
	int ret = 0;
	int W = j->nworkers;

	j->shard = calloc((size_t)W, sizeof(*j->shard));
	if (!j->shard)
		return bad(err, n, "out of memory");
	if (o->objective == HETSGD_OBJ_QUAD) {
		/* heterogeneous quadratics: worker i's optimum sits around 2 (i - (n-1)/2) */
		uint64_t s = o->seed * 0x9e3779b97f4a7c15ull + 1;
		double *num = calloc(o->dim, sizeof(double)), *den = calloc(o->dim, sizeof(double));

		j->d = o->dim;
		j->qa = calloc((size_t)W, sizeof(float *));
		j->qb = calloc((size_t)W, sizeof(float *));
		j->qavg_a = malloc(o->dim * sizeof(float));
		j->qavg_b = malloc(o->dim * sizeof(float));
		if (!num || !den || !j->qa || !j->qb || !j->qavg_a || !j->qavg_b) {
			free(num);
			free(den);
			return bad(err, n, "out of memory");
		}
		for (int i = 0; i < W; i++) {
			j->qa[i] = malloc(o->dim * sizeof(float));
			j->qb[i] = malloc(o->dim * sizeof(float));
			if (!j->qa[i] || !j->qb[i]) {
				free(num);
				free(den);
				return bad(err, n, "out of memory");
			}
			for (uint32_t c = 0; c < o->dim; c++) {
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				j->qa[i][c] = 0.5f + (float)((s >> 40) % 1000) / 666.0f;
				j->qb[i][c] = 2.0f * ((float)i - 0.5f * (float)(W - 1)) +
					      (float)((s >> 20) % 1000) / 1000.0f - 0.5f;
				num[c] += (double)j->qa[i][c] * j->qb[i][c];
				den[c] += j->qa[i][c];
			}
		}
		/* (1/n) sum f_i = 0.5 (x - x*)^T diag(mean a) (x - x*) + const:
		 * the server's loss is then f(x) - f(x*) */
		for (uint32_t c = 0; c < o->dim; c++) {
			j->qavg_a[c] = (float)(den[c] / W);
			j->qavg_b[c] = (float)(num[c] / den[c]);
		}
		free(num);
		free(den);
		j->data_label = "heterogeneous quadratics";
		goto model;
	}

	if (o->per_worker[0]) {
		char **paths = calloc((size_t)W + 1, sizeof(char *));
		struct hetsgd_dataset *all = calloc((size_t)W + 1, sizeof(*all));

		if (!paths || !all) {
			free(paths);
			free(all);
			return bad(err, n, "out of memory");
		}
		for (int i = 0; i <= W && !ret; i++) {
			paths[i] = malloc(PATH_MAX_LEN + 16);
			if (!paths[i]) {
				ret = bad(err, n, "out of memory");
				break;
			}
			if (i < W)
				subst_i(paths[i], PATH_MAX_LEN + 16, o->per_worker, i);
			else
				snprintf(paths[i], PATH_MAX_LEN + 16, "%s", o->test);
			ret = file_readable(paths[i], i < W ? "--data-per-worker" : "--test", err, n);
		}
		if (!ret && hetsgd_libsvm_load_many((const char *const *)paths, (uint32_t)W + 1, 0, all))
			ret = algo_fail(err, n, "loading the per-worker files");
		for (int i = 0; i <= W; i++)
			free(paths[i]);
		free(paths);
		if (ret) {
			free(all);
			return ret;
		}
		for (int i = 0; i < W; i++) {
			j->ntrain += all[i].n;
			if (keep == -1 || keep == i)
				j->shard[i] = all[i];
			else
				hetsgd_dataset_free(&all[i]);
		}
		j->test = all[W];
		free(all);
		j->p = j->test.p;
		j->classes = j->test.classes;
		/* the server measures the loss on the test set too: there is no
		 * pooled training set to sample from */
		j->data_label = "one LIBSVM file per worker";
		goto check;
	}

	if (!strcmp(o->data, "fashion-mnist")) {
		if (hetsgd_fashion_mnist_load(0, &j->train) || hetsgd_fashion_mnist_load(1, &j->test))
			return algo_fail(err, n, "--data fashion-mnist");
		j->data_label = "Fashion-MNIST";
	} else if (!strcmp(o->data, "synth") || !strcmp(o->data, "synth-regression")) {
		struct hetsgd_dataset all;
		int reg = !strcmp(o->data, "synth-regression");

		if (reg ? hetsgd_synth_regression(o->synth_n, o->synth_p, 0.1f, o->seed, &all, NULL)
			: hetsgd_synth_classification(o->synth_n, o->synth_p, o->synth_classes, o->seed, &all))
			return algo_fail(err, n, "generating data");
		ret = hold_out(j, &all, err, n);
		if (ret)
			return ret;
		j->data_label = reg ? "generated regression data" : "generated classification data";
	} else {
		if (file_readable(o->data, "--data", err, n))
			return -ENOENT;
		if (o->test[0]) {
			const char *paths[2] = { o->data, o->test };
			struct hetsgd_dataset two[2];

			if (file_readable(o->test, "--test", err, n))
				return -ENOENT;
			if (hetsgd_libsvm_load_many(paths, 2, 0, two))
				return algo_fail(err, n, "loading the LIBSVM files");
			j->train = two[0];
			j->test = two[1];
		} else {
			struct hetsgd_dataset all;

			if (hetsgd_libsvm_load(o->data, 0, &all))
				return algo_fail(err, n, "--data");
			ret = hold_out(j, &all, err, n);
			if (ret)
				return ret;
		}
		j->data_label = o->data;
	}
	j->p = j->train.p;
	j->classes = j->train.classes;
	j->ntrain = j->train.n;
	if (j->train.n < (uint64_t)W)
		return bad(err, n, "%llu training samples cannot feed %d workers: use fewer workers or more data",
			   (unsigned long long)j->train.n, W);
	if (o->split == SPLIT_DIRICHLET) {
		if (!j->train.labels)
			return bad(err, n, "--split dirichlet needs labels; this data has none: use --split iid");
		ret = hetsgd_split_dirichlet(j->train.labels, j->train.n, j->train.classes, (uint32_t)W,
					     o->alpha, o->seed, &sp);
	} else {
		ret = hetsgd_split_iid(j->train.n, (uint32_t)W, o->seed, &sp);
	}
	if (ret)
		return algo_fail(err, n, "splitting the data");
	for (int i = 0; i < W && !ret; i++)
		if (keep == -1 || keep == i)
			ret = hetsgd_dataset_subset(&j->train, sp.index + sp.offset[i],
						    sp.offset[i + 1] - sp.offset[i], &j->shard[i]);
	hetsgd_split_free(&sp);
	if (ret)
		return algo_fail(err, n, "making the workers' shards");
	if (server) {
		uint64_t m = o->eval_samples && o->eval_samples < j->train.n ? o->eval_samples : j->train.n;
		uint64_t *idx = malloc(m * sizeof(*idx));

		if (!idx)
			return bad(err, n, "out of memory");
		/* evenly spaced: the loss of every part of the data, every time */
		for (uint64_t i = 0; i < m; i++)
			idx[i] = i * j->train.n / m;
		ret = hetsgd_dataset_subset(&j->train, idx, m, &j->eval);
		free(idx);
		if (ret)
			return algo_fail(err, n, "the evaluation set");
	}
	if (keep != -1)
		hetsgd_dataset_free(&j->train);	/* srun: keep what this rank uses */
check:
	if (o->objective == HETSGD_OBJ_LOGREG && j->classes != 2)
		return bad(err, n, "--objective logreg is binary; %s has %u classes: use softmax",
			   j->data_label, j->classes);
	if (o->objective == HETSGD_OBJ_LSQ && strcmp(o->data, "synth-regression"))
		return bad(err, n, "--objective lsq needs regression targets: use --data synth-regression (LIBSVM labels are read as classes)");
	if (o->objective != HETSGD_OBJ_LSQ && !strcmp(o->data, "synth-regression"))
		return bad(err, n, "--data synth-regression has targets, not labels: use --objective lsq");
	if (o->objective == HETSGD_OBJ_MLP && (o->per_worker[0] || strcmp(o->data, "fashion-mnist")) &&
	    strncmp(o->data, "synth", 5))
		return bad(err, n, "--objective mlp needs dense features; LIBSVM data is sparse: use softmax or logreg");
	switch (o->objective) {
	case HETSGD_OBJ_SOFTMAX:
		j->d = (size_t)j->p * j->classes + (o->bias ? j->classes : 0);
		break;
	case HETSGD_OBJ_MLP:
		j->d = (size_t)o->hidden * j->p + o->hidden + (size_t)j->classes * o->hidden + j->classes;
		break;
	default:
		j->d = j->p;
		break;
	}
model:
	if (j->d > (1u << 28))
		return bad(err, n, "the model would have %zu values; the limit is 2^28", j->d);
	if (o->method == HETSGD_METHOD_LOSCAR) {
		if (o->k > j->d)
			return bad(err, n, "--k %u exceeds the model dimension d = %zu: use K <= d (K = d is the dense baseline)",
				   o->k, j->d);
		if (!o->k)
			o->k = o->k_fraction > 0 ? (uint32_t)ceil(o->k_fraction * (double)j->d)
						 : (uint32_t)((j->d + 9) / 10);
		if (o->k > j->d)
			o->k = (uint32_t)j->d;
	}
	if (o->epochs > 0 && o->objective == HETSGD_OBJ_QUAD)
		return bad(err, n, "--epochs: quadratics have no data; use --time");
	j->x0 = calloc(j->d, sizeof(float));
	if (!j->x0)
		return bad(err, n, "out of memory for a model of %zu values", j->d);
	if (o->objective == HETSGD_OBJ_MLP) {
		struct hetsgd_objective *obj;

		if (hetsgd_objective_mlp_create(j->p, o->hidden, j->classes, HETSGD_ACT_RELU, &obj) ||
		    hetsgd_mlp_init(obj, o->seed, j->x0))
			return algo_fail(err, n, "initialising the MLP");
		hetsgd_objective_destroy(obj);
	}
	return 0;
}

static int make_objective(const struct job *j, int worker, struct hetsgd_objective **obj)
{
	const struct opts *o = j->o;

	switch (o->objective) {
	case HETSGD_OBJ_SOFTMAX:
		return hetsgd_objective_softmax_create(j->p, j->classes, o->bias, (float)o->lambda, obj);
	case HETSGD_OBJ_LOGREG:
		return hetsgd_objective_logreg_create(j->p, (float)o->lambda, obj);
	case HETSGD_OBJ_LSQ:
		return hetsgd_objective_lsq_create(j->p, obj);
	case HETSGD_OBJ_MLP:
		return hetsgd_objective_mlp_create(j->p, o->hidden, j->classes, HETSGD_ACT_RELU, obj);
	case HETSGD_OBJ_QUAD:
		if (worker < 0)
			return hetsgd_objective_quad_create(j->d, j->qavg_a, j->qavg_b, obj);
		return hetsgd_objective_quad_create(j->d, j->qa[worker], j->qb[worker], obj);
	default:
		return -EINVAL;
	}
}

/* ---- progress and outputs (rank 0) ---- */

static double dist_opt(const struct job *j, const float *x)
{
	double s = 0;

	for (size_t c = 0; c < j->d; c++)
		s += ((double)x[c] - j->qavg_b[c]) * ((double)x[c] - j->qavg_b[c]);
	return sqrt(s);
}

static void csv_num(FILE *f, double v, int last)
{
	if (isnan(v))
		fputs(last ? "\n" : ",", f);
	else
		fprintf(f, "%.6g%s", v, last ? "\n" : ",");
}

static void on_eval(void *arg, const struct hetsgd_eval_point *pt)
{
	struct job *j = arg;
	const struct opts *o = j->o;
	double epochs = j->ntrain ? (double)pt->grads * o->batch / (double)j->ntrain : NAN;
	double dist = o->objective == HETSGD_OBJ_QUAD && pt->x ? dist_opt(j, pt->x) : NAN;
	char line[256];

	if (j->metrics) {
		fprintf(j->metrics, "%.3f,%llu,%llu,", pt->t, (unsigned long long)pt->grads,
			(unsigned long long)pt->updates);
		csv_num(j->metrics, epochs, 0);
		csv_num(j->metrics, pt->loss, 0);
		csv_num(j->metrics, pt->acc, 0);
		csv_num(j->metrics, pt->gnorm, 0);
		csv_num(j->metrics, pt->idle_share, 0);
		csv_num(j->metrics, dist, 0);
		fprintf(j->metrics, "%d\n", pt->final);
		fflush(j->metrics);
	}
	if (o->progress == PROG_NONE)
		return;
	{
		int off = snprintf(line, sizeof(line), "%s %6.1f s  %s %llu  loss %.4g", o->name, pt->t,
				   o->method == HETSGD_METHOD_LOSCAR ? "rounds" : "updates",
				   (unsigned long long)pt->updates, pt->loss);

		if (!isnan(pt->acc))
			off += snprintf(line + off, sizeof(line) - (size_t)off, "  acc %.4f", pt->acc);
		if (!isnan(dist))
			off += snprintf(line + off, sizeof(line) - (size_t)off, "  |x-x*| %.4g", dist);
		snprintf(line + off, sizeof(line) - (size_t)off, "  %.0f grad/s  waiting %.0f%%",
			 pt->t > 0 ? (double)pt->grads / pt->t : 0.0, 100 * pt->idle_share);
	}
	if (j->tty) {
		printf("\r\033[K%s%s", line, pt->final ? "\n" : "");
		j->line_open = !pt->final;
	} else if (pt->final || pt->t == 0 || pt->t - j->last_line >= 2.0) {
		/* a log: a line every 2 s is enough, whatever the evaluations */
		printf("%s%s\n", line, pt->final ? "  (final)" : "");
		j->last_line = pt->t;
	}
	fflush(stdout);
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX_LEN];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0777) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0777) && errno != EEXIST)
		return -errno;
	return 0;
}

/* The folder must be ours to write and must not hold a run we would
 * overwrite without being told to. */
static int prepare_out(const struct opts *o, char *err, size_t n)
{
	char path[PATH_MAX_LEN + 32];
	int r = mkdir_p(o->out);

	if (r)
		return bad(err, n, "--out %s: cannot create it: %s", o->out, strerror(-r));
	snprintf(path, sizeof(path), "%s/metrics.csv", o->out);
	if (!o->force && access(path, F_OK) == 0)
		return bad(err, n, "--out %s holds a previous run (metrics.csv): choose another folder or pass --force",
			   o->out);
	snprintf(path, sizeof(path), "%s/.hetsgd-write-test", o->out);
	{
		FILE *f = fopen(path, "w");

		if (!f)
			return bad(err, n, "--out %s is not writable: %s", o->out, strerror(errno));
		fclose(f);
		remove(path);
	}
	return 0;
}

static int write_outputs(struct job *j, const struct hetsgd_engine_result *res, const float *x,
			 char *err, size_t n)
{
	const struct opts *o = j->o;
	char path[PATH_MAX_LEN + 32];
	struct hetsgd_model_info mi = { .d = j->d, .kind = o->objective, .p = j->p,
					.classes = j->classes, .config_hash = j->hash };
	FILE *f;
	const struct hetsgd_eval_point *last = res->npoints ? &res->points[res->npoints - 1] : NULL;

	if (o->objective == HETSGD_OBJ_MLP)
		mi.hidden = o->hidden;
	if (o->objective == HETSGD_OBJ_SOFTMAX && o->bias)
		mi.flags = 1;
	snprintf(path, sizeof(path), "%s/model.bin", o->out);
	if (hetsgd_model_save(path, &mi, x))
		return algo_fail(err, n, "saving the model");
	snprintf(path, sizeof(path), "%s/workers.csv", o->out);
	f = fopen(path, "w");
	if (!f)
		return bad(err, n, "cannot write %s: %s", path, strerror(errno));
	fprintf(f, "worker,tau_target_s,tau_est_s,steps,rounds,overlap_steps,dropped,overruns,compute_s,idle_s,elapsed_s,idle_share,bytes_sent,bytes_recv\n");
	for (uint32_t i = 0; i < res->nworkers; i++) {
		const struct hetsgd_worker_stats *w = &res->workers[i];

		fprintf(f, "%u,%.6g,%.6g,%llu,%llu,%llu,%llu,%llu,%.3f,%.3f,%.3f,%.4f,%llu,%llu\n",
			w->worker, w->tau_target, w->tau_est, (unsigned long long)w->steps,
			(unsigned long long)w->rounds, (unsigned long long)w->overlap_steps,
			(unsigned long long)w->dropped, (unsigned long long)w->overruns, w->compute_s,
			w->idle_s, w->elapsed_s, w->elapsed_s > 0 ? w->idle_s / w->elapsed_s : 0.0,
			(unsigned long long)w->bytes_sent, (unsigned long long)w->bytes_recv);
	}
	if (fclose(f))
		return bad(err, n, "cannot write %s: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/summary.txt", o->out);
	f = fopen(path, "w");
	if (!f)
		return bad(err, n, "cannot write %s: %s", path, strerror(errno));
	fputs("# hetsgd-train run ", f);
	quote_kv(f, o->name);
	fputc('\n', f);
	kv(f, "name", o->name);
	fprintf(f, "config-hash = %016llx\n", (unsigned long long)j->hash);
	dump_config(o, j->provider, f);
	/* placement can quote the system's own text (device names, errors) */
	kv(f, "transport", res->provider);
	kv(f, "placement", res->placement);
	/* every rank's, by host: a line per rank says where it really ran */
	for (uint32_t r = 0; r < res->nplacements; r++) {
		fprintf(f, "placement-rank-%u = ", r);
		quote_kv(f, res->placements[r]);
		fputc('\n', f);
	}
	kv(f, "data-label", j->data_label);
	fprintf(f, "d = %zu\ntraining-samples = %llu\n", j->d, (unsigned long long)j->ntrain);
	kv(f, "stop-reason", res->stop_reason);
	fprintf(f, "elapsed-s = %.3f\nupdates = %llu\ngradients = %llu\ndropped = %llu\n",
		res->elapsed_s, (unsigned long long)res->updates,
		(unsigned long long)res->grads, (unsigned long long)res->dropped);
	if (last) {
		fprintf(f, "final-loss = %.6g\nfinal-accuracy = %.6g\nfinal-grad-norm = %.6g\nwaiting-share = %.4f\n",
			last->loss, last->acc, last->gnorm, last->idle_share);
		if (o->objective == HETSGD_OBJ_QUAD)
			fprintf(f, "final-distance-to-optimum = %.6g\n", dist_opt(j, x));
	}
	if (fclose(f))
		return bad(err, n, "cannot write %s: %s", path, strerror(errno));
	return 0;
}

/* ---- the ranks ---- */

static FILE *open_metrics(const struct opts *o, char *err, size_t n)
{
	char path[PATH_MAX_LEN + 32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/metrics.csv", o->out);
	f = fopen(path, "w");
	if (!f) {
		bad(err, n, "cannot write %s: %s", path, strerror(errno));
		return NULL;
	}
	fprintf(f, "time_s,grads,updates,epochs,loss,accuracy,grad_norm,wait_share,dist_opt,final\n");
	return f;
}

/* The server's objective (for evaluation), or worker rank-1's and one
 * more instance per extra compute thread. */
static int make_rank_objectives(const struct job *j, int rank, struct hetsgd_objective **obj,
				struct hetsgd_objective ***more, char *err, size_t n)
{
	int threads = rank > 0 ? j->o->threads : 1;

	if (make_objective(j, rank - 1, obj))
		return algo_fail(err, n, rank ? "the worker's objective" : "the server's objective");
	if (threads > 1) {
		*more = calloc((size_t)threads, sizeof(**more));
		if (!*more)
			return bad(err, n, "out of memory");
		for (int t = 0; t < threads - 1; t++)
			if (make_objective(j, rank - 1, &(*more)[t]))
				return algo_fail(err, n, "an objective for an extra compute thread");
	}
	return 0;
}

/* The engine's configuration from the options (and the data's size). */
static void engine_cfg(const struct opts *o, const struct job *j, struct hetsgd_engine_cfg *c)
{
	hetsgd_engine_cfg_init(c);
	c->method = o->method;
	c->policy = o->policy;
	c->ringmaster_r = o->ringmaster_r;
	c->merge = o->merge;
	c->overlap = o->overlap;
	c->k = o->k;
	c->round_s = o->round_s;
	c->comm_delay_s = o->comm_delay_s;
	c->gamma = (float)o->gamma;
	c->batch = o->batch;
	c->seed = o->seed;
	c->profile.kind = o->profile;
	c->profile.unit_s = o->time_unit;
	c->profile.noise = o->noise;
	c->profile.shuffle = o->shuffle;
	c->profile.seed = o->seed;
	c->budget_s = o->time_s;
	if (o->epochs > 0)
		c->budget_grads = (uint64_t)ceil(o->epochs * (double)j->ntrain / o->batch);
	c->target_loss = o->target_loss;
	c->target_acc = o->target_acc;
	c->eval_interval_s = o->eval_interval;
	c->compute_threads = o->threads;
	c->pin = o->pin;
}

/* Everything load_data() made (the ranks of a local run share it). */
static void job_free(struct job *j)
{
	for (int i = 0; j->shard && i < j->nworkers; i++)
		hetsgd_dataset_free(&j->shard[i]);
	free(j->shard);
	for (int i = 0; j->qa && i < j->nworkers; i++) {
		free(j->qa[i]);
		free(j->qb[i]);
	}
	free(j->qa);
	free(j->qb);
	free(j->qavg_a);
	free(j->qavg_b);
	hetsgd_dataset_free(&j->train);
	hetsgd_dataset_free(&j->test);
	hetsgd_dataset_free(&j->eval);
	free(j->x0);
	memset(j, 0, sizeof(*j));
}

struct agree {
	uint64_t hash;
	int32_t ok;		/* rank 0: the output folder is ready */
	int32_t pad;
	char host[64];		/* shm needs every rank on one host */
};

static int rank_main(struct hetsgd_boot *boot, void *arg)
{
	struct job *j = arg;
	struct opts *o = j->o;
	int rank = hetsgd_boot_rank(boot), size = hetsgd_boot_size(boot), ret;
	struct agree me = { .hash = j->hash, .ok = 1 }, *all;
	int shm = !strcmp(j->provider, "shm");
	struct hetsgd_engine_cfg cfg;
	struct hetsgd_engine_io io = { .x0 = j->x0, .d = j->d };
	struct hetsgd_engine_result res;
	struct hetsgd_tp_attr ta;
	struct hetsgd_objective *obj = NULL, **more = NULL;
	float *x = NULL;
	char err[1024] = "";

	engine_cfg(o, j, &cfg);
	hetsgd_tp_attr_init(&ta);
	hetsgd_provider_parse(j->provider, &ta.provider);
	if (o->device[0])
		ta.device = o->device;
	/* everything that can fail here fails before the agreement below, so
	 * that no rank is left waiting for one that gave up */
	if (j->load_failed)
		me.ok = 0;
	else if (rank == 0 && !j->out_ready && prepare_out(o, err, sizeof(err)))
		me.ok = 0;
	else if (rank == 0 && !(j->metrics = open_metrics(o, err, sizeof(err))))
		me.ok = 0;
	else if (make_rank_objectives(j, rank, &obj, &more, err, sizeof(err)))
		me.ok = 0;
	if (rank == 0 && me.ok) {
		j->tty = o->progress == PROG_BAR || (o->progress == PROG_AUTO && isatty(1));
		cfg.on_eval = on_eval;
		cfg.on_eval_arg = j;
		x = malloc(j->d * sizeof(float));
		io.x_out = x;
		io.eval = j->eval.n ? &j->eval : j->test.n ? &j->test : NULL;
		io.test = j->test.n ? &j->test : NULL;
		if (!x) {
			snprintf(err, sizeof(err), "out of memory for a model of %zu values", j->d);
			me.ok = 0;
		}
	} else if (rank > 0) {
		io.data = o->objective == HETSGD_OBJ_QUAD ? NULL : &j->shard[rank - 1];
		io.thread_obj = more;
	}
	if (!me.ok && err[0] && rank != 0)
		fprintf(stderr, "hetsgd-train: rank %d: %s\n", rank, err);

	/* one agreement before any training: same configuration everywhere,
	 * every rank ready */
	gethostname(me.host, sizeof(me.host) - 1);
	all = calloc((size_t)size, sizeof(*all));
	if (!all || hetsgd_boot_allgather(boot, &me, all, sizeof(me))) {
		fprintf(stderr, "hetsgd-train: rank %d: bootstrap exchange failed: %s\n", rank,
			hetsgd_errmsg());
		ret = 1;
		goto out;
	}
	for (int r = 1; r < size; r++)
		if (all[r].ok && all[0].ok && all[r].hash != all[0].hash) {
			if (rank == 0 || rank == r)
				fprintf(stderr, "hetsgd-train: rank %d runs a different configuration than rank 0 (hash %016llx, rank 0 %016llx): launch every rank with the same options, data and hetsgd build; refusing to train\n",
					r, (unsigned long long)all[r].hash,
					(unsigned long long)all[0].hash);
			ret = 2;
			goto out;
		}
	for (int r = 1; r < size && shm; r++)
		if (strncmp(all[r].host, all[0].host, sizeof(all[r].host))) {
			if (rank == 0)
				fprintf(stderr, "hetsgd-train: --provider shm%s needs every rank on one host; rank %d runs on %s, rank 0 on %s: use nodes with RDMA devices and --provider verbs, or one node\n",
					strcmp(o->provider, "auto") ? "" : " (auto found no RDMA device)",
					r, all[r].host, all[0].host);
			ret = 2;
			goto out;
		}
	for (int r = 0; r < size; r++)
		if (!all[r].ok) {
			/* rank r said why; the others say who stopped them */
			if (r == 0 && rank == 0 && err[0])
				fprintf(stderr, "hetsgd-train: %s\n", err);
			else if (rank == 0 && r != 0)
				fprintf(stderr, "hetsgd-train: rank %d could not start (its message is above); no rank trains\n", r);
			ret = 2;
			goto out;
		}
	free(all);
	all = NULL;

	io.obj = obj;
	ret = hetsgd_engine_run(boot, &ta, &cfg, &io, &res);
	if (j->line_open)
		printf("\n");
	if (ret) {
		fprintf(stderr, "hetsgd-train: rank %d: %s\n", rank, hetsgd_algo_errmsg());
	} else if (rank == 0) {
		const struct hetsgd_eval_point *last = res.npoints ? &res.points[res.npoints - 1] : NULL;

		fclose(j->metrics);
		j->metrics = NULL;
		if (write_outputs(j, &res, x, err, sizeof(err))) {
			fprintf(stderr, "hetsgd-train: %s\n", err);
			ret = 1;
		} else {
			printf("hetsgd-train: %s stopped by %s after %.1f s: %llu %s, %llu gradients",
			       o->name, res.stop_reason, res.elapsed_s, (unsigned long long)res.updates,
			       o->method == HETSGD_METHOD_LOSCAR ? "rounds" : "updates",
			       (unsigned long long)res.grads);
			if (last)
				printf(", loss %.4g", last->loss);
			if (last && !isnan(last->acc))
				printf(", test accuracy %.4f", last->acc);
			if (o->objective == HETSGD_OBJ_QUAD)
				printf(", |x - x*| %.4g", dist_opt(j, x));
			printf("\n");
			if (!o->no_plots) {
				const char *runs[1] = { o->out }, *labels[1] = { o->name };
				int pr = plot_runs(o->out, "", runs, labels, 1, err, sizeof(err));

				if (pr)
					printf("hetsgd-train: plots: %s\n", err);
			}
			printf("hetsgd-train: outputs in %s: metrics.csv workers.csv model.bin summary.txt%s%s\n",
			       o->out, o->no_plots ? "" : " loss.png loss-work.png",
			       o->no_plots || !j->classes ? "" : " accuracy.png");
		}
	}
	if (ret == 0)
		hetsgd_engine_result_free(&res);
out:
	free(all);
	if (j->metrics)
		fclose(j->metrics);
	j->metrics = NULL;
	hetsgd_objective_destroy(obj);
	for (int t = 0; more && t < o->threads - 1; t++)
		hetsgd_objective_destroy(more[t]);
	free(more);
	free(x);
	return ret == 2 ? 2 : ret ? 1 : 0;
}

/* Launched by srun (or a PMI launcher) with more than one task? */
static int under_launcher(void)
{
	const char *nt = getenv("SLURM_STEP_NUM_TASKS");

	if (getenv("PMIX_RANK") || getenv("PMI_RANK") || getenv("HETSGD_RANK"))
		return 1;
	/* srun sets the step's task count; a batch script (sbatch) has an
	 * allocation but no step, and runs locally */
	return nt && atoi(nt) > 1;
}

static void resolve_provider(struct job *j)
{
	struct hetsgd_topo *topo;
	int ndev = 0;

	if (strcmp(j->o->provider, "auto")) {
		snprintf(j->provider, sizeof(j->provider), "%s", j->o->provider);
		return;
	}
	if (j->o->device[0]) {
		snprintf(j->provider, sizeof(j->provider), "verbs");
		return;
	}
	if (hetsgd_topo_open(NULL, &topo) == 0) {
		ndev = hetsgd_topo_ndevices(topo);
		hetsgd_topo_close(topo);
	}
	snprintf(j->provider, sizeof(j->provider), "%s", ndev > 0 ? "verbs" : "shm");
}

int main(int argc, char **argv)
{
	struct opts o;
	struct job j = { .o = &o };
	char err[1024] = "";
	int srun, ret, rc, rank = -1;
	struct hetsgd_boot *boot = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	opts_default(&o);
	if (parse_args(&o, argc, argv, err, sizeof(err)) || check_opts(&o, err, sizeof(err))) {
		fprintf(stderr, "hetsgd-train: %s\n", err);
		return 2;
	}
	srun = o.launch == LAUNCH_SRUN || (o.launch == LAUNCH_AUTO && under_launcher());
	if (srun) {
		ret = hetsgd_boot_open(HETSGD_BOOT_AUTO, &boot);
		if (ret) {
			fprintf(stderr, "hetsgd-train: cannot join the job: %s\n", hetsgd_errmsg());
			return 1;
		}
		rank = hetsgd_boot_rank(boot);
		if (hetsgd_boot_size(boot) < 2) {
			fprintf(stderr, "hetsgd-train: the job has 1 task; it needs a server and at least one worker: srun -n 2 or more (or run without srun for a local run)\n");
			hetsgd_boot_close(boot);
			return 2;
		}
		if (o.workers && o.workers != hetsgd_boot_size(boot) - 1) {
			if (rank == 0)
				fprintf(stderr, "hetsgd-train: --workers %d contradicts the job's %d tasks (one server + %d workers): drop --workers or change -n\n",
					o.workers, hetsgd_boot_size(boot), hetsgd_boot_size(boot) - 1);
			hetsgd_boot_close(boot);
			return 2;
		}
		o.workers = hetsgd_boot_size(boot) - 1;
	} else if (!o.workers) {
		o.workers = 4;
	}
	j.nworkers = o.workers;
	resolve_provider(&j);
	if (!srun && o.workers > 64) {
		fprintf(stderr, "hetsgd-train: --workers %d: a local run forks at most 64 workers; use srun for more\n",
			o.workers);
		return 2;
	}
	/* a local run refuses a used output folder before loading anything */
	if (!srun && !o.check_only) {
		if (prepare_out(&o, err, sizeof(err))) {
			fprintf(stderr, "hetsgd-train: %s\n", err);
			return 2;
		}
		j.out_ready = 1;
	}
	/* everything that needs the data is checked here, before training */
	ret = load_data(&j, srun ? (rank > 0 ? rank - 1 : -2) : -1, !srun || rank == 0, err,
			sizeof(err));
	if (ret) {
		if (srun)
			fprintf(stderr, "hetsgd-train: rank %d: %s\n", rank, err);
		else
			fprintf(stderr, "hetsgd-train: %s\n", err);
		rc = 2;
		if (srun && !o.check_only) {
			/* under srun the other ranks wait for this one: tell them */
			j.load_failed = 1;
			rank_main(boot, &j);
		}
		goto done;
	}
	{
		struct hetsgd_engine_cfg c;

		engine_cfg(&o, &j, &c);
		if (hetsgd_engine_cfg_check(&c, (uint32_t)o.workers, j.d)) {
			if (rank <= 0)
				fprintf(stderr, "hetsgd-train: %s\n", hetsgd_algo_errmsg());
			rc = 2;
			goto done;
		}
	}
	j.hash = config_hash(&o, j.provider);
	/* and what the data came out as: the same options can read different
	 * files on different nodes */
	j.hash ^= (j.ntrain * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)j.d << 20) ^ ((uint64_t)j.classes << 50);
	if (rank <= 0) {
		char samples[64] = "";

		if (j.ntrain)
			snprintf(samples, sizeof(samples), "%llu training samples, ",
				 (unsigned long long)j.ntrain);
		printf("hetsgd-train: %s: %s on %s (%sd = %zu), %d workers (%s profile, unit %.3g s), %s, %s launch; output %s\n",
		       o.name, hetsgd_obj_kind_name(o.objective), j.data_label, samples, j.d, o.workers,
		       hetsgd_profile_name(o.profile), o.time_unit, j.provider, srun ? "srun" : "local",
		       o.out);
	}
	if (o.check_only) {
		if (rank <= 0) {
			printf("hetsgd-train: configuration ok (hash %016llx):\n", (unsigned long long)j.hash);
			dump_config(&o, j.provider, stdout);
		}
		rc = 0;
	} else if (srun) {
		rc = rank_main(boot, &j);
	} else if (hetsgd_boot_local_run(o.workers + 1, rank_main, &j, NULL)) {
		/* each rank said what went wrong; the launcher says who */
		fprintf(stderr, "hetsgd-train: %s\n", hetsgd_errmsg());
		rc = 1;
	} else {
		rc = 0;
	}
done:
	hetsgd_boot_close(boot);
	job_free(&j);
	return rc;
}
