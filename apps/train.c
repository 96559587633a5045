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
#include "train_opts.h"

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
	return train_err(err, n, "%s: %s", what, hetsgd_algo_errmsg());
}

static int file_readable(const char *path, const char *opt, char *err, size_t n)
{
	if (access(path, R_OK))
		return train_err(err, n, "%s %s: %s", opt, path, strerror(errno));
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
		return train_err(err, n, "out of memory");
	if (o->objective == HETSGD_OBJ_QUAD) {
		/* heterogeneous quadratics: worker i's optimum sits around 2 (i - (n-1)/2);
		 * the server's loss is then f(x) - f(x*) of the average objective */
		j->d = o->dim;
		j->qa = calloc((size_t)W, sizeof(float *));
		j->qb = calloc((size_t)W, sizeof(float *));
		j->qavg_a = malloc(o->dim * sizeof(float));
		j->qavg_b = malloc(o->dim * sizeof(float));
		if (!j->qa || !j->qb || !j->qavg_a || !j->qavg_b)
			return train_err(err, n, "out of memory");
		for (int i = 0; i < W; i++) {
			j->qa[i] = malloc(o->dim * sizeof(float));
			j->qb[i] = malloc(o->dim * sizeof(float));
			if (!j->qa[i] || !j->qb[i])
				return train_err(err, n, "out of memory");
		}
		if (hetsgd_quad_generate(o->dim, (size_t)W, o->seed, j->qa, j->qb, j->qavg_a, j->qavg_b))
			return algo_fail(err, n, "generating the quadratics");
		j->data_label = "heterogeneous quadratics";
		goto model;
	}

	if (o->per_worker[0]) {
		char **paths = calloc((size_t)W + 1, sizeof(char *));
		struct hetsgd_dataset *all = calloc((size_t)W + 1, sizeof(*all));

		if (!paths || !all) {
			free(paths);
			free(all);
			return train_err(err, n, "out of memory");
		}
		for (int i = 0; i <= W && !ret; i++) {
			paths[i] = malloc(PATH_MAX_LEN + 16);
			if (!paths[i]) {
				ret = train_err(err, n, "out of memory");
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
		return train_err(err, n, "%llu training samples cannot feed %d workers: use fewer workers or more data",
			   (unsigned long long)j->train.n, W);
	if (o->split == SPLIT_DIRICHLET) {
		if (!j->train.labels)
			return train_err(err, n, "--split dirichlet needs labels; this data has none: use --split iid");
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
			return train_err(err, n, "out of memory");
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
		return train_err(err, n, "--objective logreg is binary; %s has %u classes: use softmax",
			   j->data_label, j->classes);
	if (o->objective == HETSGD_OBJ_LSQ && strcmp(o->data, "synth-regression"))
		return train_err(err, n, "--objective lsq needs regression targets: use --data synth-regression (LIBSVM labels are read as classes)");
	if (o->objective != HETSGD_OBJ_LSQ && !strcmp(o->data, "synth-regression"))
		return train_err(err, n, "--data synth-regression has targets, not labels: use --objective lsq");
	if (o->objective == HETSGD_OBJ_MLP && (o->per_worker[0] || strcmp(o->data, "fashion-mnist")) &&
	    strncmp(o->data, "synth", 5))
		return train_err(err, n, "--objective mlp needs dense features; LIBSVM data is sparse: use softmax or logreg");
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
		return train_err(err, n, "the model would have %zu values; the limit is 2^28", j->d);
	if (o->method == HETSGD_METHOD_LOSCAR) {
		if (o->k > j->d)
			return train_err(err, n, "--k %u exceeds the model dimension d = %zu: use K <= d (K = d is the dense baseline)",
				   o->k, j->d);
		if (!o->k)
			o->k = o->k_fraction > 0 ? (uint32_t)ceil(o->k_fraction * (double)j->d)
						 : (uint32_t)((j->d + 9) / 10);
		if (o->k > j->d)
			o->k = (uint32_t)j->d;
	}
	if (o->epochs > 0 && o->objective == HETSGD_OBJ_QUAD)
		return train_err(err, n, "--epochs: quadratics have no data; use --time");
	j->x0 = calloc(j->d, sizeof(float));
	if (!j->x0)
		return train_err(err, n, "out of memory for a model of %zu values", j->d);
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
		return train_err(err, n, "--out %s: cannot create it: %s", o->out, strerror(-r));
	snprintf(path, sizeof(path), "%s/metrics.csv", o->out);
	if (!o->force && access(path, F_OK) == 0)
		return train_err(err, n, "--out %s holds a previous run (metrics.csv): choose another folder or pass --force",
			   o->out);
	snprintf(path, sizeof(path), "%s/.hetsgd-write-test", o->out);
	{
		FILE *f = fopen(path, "w");

		if (!f)
			return train_err(err, n, "--out %s is not writable: %s", o->out, strerror(errno));
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
		return train_err(err, n, "cannot write %s: %s", path, strerror(errno));
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
		return train_err(err, n, "cannot write %s: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/summary.txt", o->out);
	f = fopen(path, "w");
	if (!f)
		return train_err(err, n, "cannot write %s: %s", path, strerror(errno));
	fputs("# hetsgd-train run ", f);
	quote_kv(f, o->name);
	fputc('\n', f);
	opts_kv(f, "name", o->name);
	fprintf(f, "config-hash = %016llx\n", (unsigned long long)j->hash);
	opts_dump(o, j->provider, f);
	/* placement can quote the system's own text (device names, errors) */
	opts_kv(f, "transport", res->provider);
	opts_kv(f, "placement", res->placement);
	opts_kv(f, "data-label", j->data_label);
	fprintf(f, "d = %zu\ntraining-samples = %llu\n", j->d, (unsigned long long)j->ntrain);
	opts_kv(f, "stop-reason", res->stop_reason);
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
		return train_err(err, n, "cannot write %s: %s", path, strerror(errno));
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
		train_err(err, n, "cannot write %s: %s", path, strerror(errno));
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
			return train_err(err, n, "out of memory");
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
	if (opts_parse_args(&o, argc, argv, err, sizeof(err)) || opts_check(&o, err, sizeof(err))) {
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
	j.hash = opts_hash(&o, j.provider);
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
			opts_dump(&o, j.provider, stdout);
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
