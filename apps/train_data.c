/* hetsgd-train: loading and splitting the data, the objectives. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train_data.h"

int train_algo_err(char *err, size_t n, const char *what)
{
	return train_err(err, n, "%s: %s", what, hetsgd_algo_errmsg());
}

/* LIBSVM's first column: a target for least squares, else a class label. */
static unsigned svm_flags(const struct opts *o)
{
	return o->objective == HETSGD_OBJ_LSQ ? HETSGD_LIBSVM_TARGETS : 0;
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
		return train_algo_err(err, n, "--test-fraction");
	}
	ret = hetsgd_dataset_subset(all, ho.index, ho.offset[1], &j->train);
	if (!ret && ho.offset[2] > ho.offset[1])
		ret = hetsgd_dataset_subset(all, ho.index + ho.offset[1], ho.offset[2] - ho.offset[1],
					    &j->test);
	hetsgd_split_free(&ho);
	hetsgd_dataset_free(all);
	return ret ? train_algo_err(err, n, "holding out the test set") : 0;
}

static void subst_i(char *dst, size_t cap, const char *pat, int i)
{
	const char *p = strstr(pat, "{i}");

	snprintf(dst, cap, "%.*s%d%s", (int)(p - pat), pat, i, p + 3);
}

/* --objective quad: no data, one quadratic per worker. */
static int load_quad(struct job *j, char *err, size_t n)
{
	const struct opts *o = j->o;
	int W = j->nworkers;

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
		return train_algo_err(err, n, "generating the quadratics");
	j->data_label = "heterogeneous quadratics";
	return 0;
}

/* One LIBSVM file per worker (--data-per-worker) and the test file. */
static int worker_sample(struct job *j, int i, const struct hetsgd_dataset *ds, const uint64_t *idx,
			 uint64_t m, char *err, size_t n);

static int load_per_worker(struct job *j, int keep, int server, char *err, size_t n)
{
	const struct opts *o = j->o;
	int W = j->nworkers, ret = 0;

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
	if (!ret && hetsgd_libsvm_load_many_as((const char *const *)paths, (uint32_t)W + 1, 0, svm_flags(o), all))
		ret = train_algo_err(err, n, "loading the per-worker files");
	for (int i = 0; i <= W; i++)
		free(paths[i]);
	free(paths);
	if (ret) {
		free(all);
		return ret;
	}
	for (int i = 0; i < W && server && !ret; i++)
		ret = worker_sample(j, i, &all[i], NULL, all[i].n, err, n);
	if (ret) {
		for (int i = 0; i <= W; i++)
			hetsgd_dataset_free(&all[i]);
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
	return 0;
}

/*
 * Worker i's evaluation sample, for rank 0: up to eval-samples / workers
 * rows (at least one; all of them with --eval-samples 0) evenly spaced
 * over ds's rows idx[0 .. m) (idx NULL: all rows).  The loss reported is
 * the mean over workers of their losses on these: f = (1/n) sum_i f_i.
 */
static int worker_sample(struct job *j, int i, const struct hetsgd_dataset *ds, const uint64_t *idx,
			 uint64_t m, char *err, size_t n)
{
	const struct opts *o = j->o;
	uint64_t want = o->eval_samples ? o->eval_samples / (uint64_t)j->nworkers : m, *pick;
	int ret;

	if (!j->weval) {
		j->weval = calloc((size_t)j->nworkers, sizeof(*j->weval));
		j->weval_ptr = calloc((size_t)j->nworkers, sizeof(*j->weval_ptr));
		if (!j->weval || !j->weval_ptr)
			return train_err(err, n, "out of memory");
	}
	if (want < 1)
		want = 1;
	if (want > m)
		want = m;
	pick = malloc(want * sizeof(*pick));
	if (!pick)
		return train_err(err, n, "out of memory");
	for (uint64_t k = 0; k < want; k++) {
		uint64_t r = k * m / want;

		pick[k] = idx ? idx[r] : r;
	}
	ret = hetsgd_dataset_subset(ds, pick, want, &j->weval[i]);
	free(pick);
	if (ret)
		return train_algo_err(err, n, "a worker's evaluation sample");
	j->weval_ptr[i] = &j->weval[i];
	return 0;
}

/* One data set (Fashion-MNIST, generated, LIBSVM) into j->train and j->test. */
static int load_pooled(struct job *j, char *err, size_t n)
{
	const struct opts *o = j->o;
	int ret;

	if (!strcmp(o->data, "fashion-mnist")) {
		if (hetsgd_fashion_mnist_load(0, &j->train) || hetsgd_fashion_mnist_load(1, &j->test))
			return train_algo_err(err, n, "--data fashion-mnist");
		j->data_label = "Fashion-MNIST";
	} else if (!strcmp(o->data, "synth") || !strcmp(o->data, "synth-regression")) {
		struct hetsgd_dataset all;
		int reg = !strcmp(o->data, "synth-regression");

		if (reg ? hetsgd_synth_regression(o->synth_n, o->synth_p, 0.1f, o->seed, &all, NULL)
			: hetsgd_synth_classification(o->synth_n, o->synth_p, o->synth_classes, o->seed, &all))
			return train_algo_err(err, n, "generating data");
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
			if (hetsgd_libsvm_load_many_as(paths, 2, 0, svm_flags(o), two))
				return train_algo_err(err, n, "loading the LIBSVM files");
			j->train = two[0];
			j->test = two[1];
		} else {
			struct hetsgd_dataset all;

			if (hetsgd_libsvm_load_as(o->data, 0, svm_flags(o), &all))
				return train_algo_err(err, n, "--data");
			ret = hold_out(j, &all, err, n);
			if (ret)
				return ret;
		}
		j->data_label = o->data;
	}
	j->p = j->train.p;
	j->classes = j->train.classes;
	j->ntrain = j->train.n;
	return 0;
}

/* j->train split into the workers' shards (those keep asks for) and, for
 * the server, the evaluation set. */
static int make_shards(struct job *j, int keep, int server, char *err, size_t n)
{
	const struct opts *o = j->o;
	struct hetsgd_split sp = { 0 };
	int W = j->nworkers, ret;

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
		return train_algo_err(err, n, "splitting the data");
	for (int i = 0; i < W && !ret; i++)
		if (keep == -1 || keep == i)
			ret = hetsgd_dataset_subset(&j->train, sp.index + sp.offset[i],
						    sp.offset[i + 1] - sp.offset[i], &j->shard[i]);
	if (ret) {
		hetsgd_split_free(&sp);
		return train_algo_err(err, n, "making the workers' shards");
	}
	for (int i = 0; i < W && server && !ret; i++)
		ret = worker_sample(j, i, &j->train, sp.index + sp.offset[i], sp.offset[i + 1] - sp.offset[i],
				    err, n);
	hetsgd_split_free(&sp);
	if (ret)
		return ret;
	if (ret)
		return train_algo_err(err, n, "making the workers' shards");
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
			return train_algo_err(err, n, "the evaluation set");
	}
	if (keep != -1)
		hetsgd_dataset_free(&j->train);	/* srun: keep what this rank uses */
	return 0;
}

/* The objective fits the data; the model's size from both. */
static int size_model(struct job *j, char *err, size_t n)
{
	const struct opts *o = j->o;

	if (o->objective == HETSGD_OBJ_LOGREG && j->classes != 2)
		return train_err(err, n, "--objective logreg is binary; %s has %u classes: use softmax",
			   j->data_label, j->classes);
	if (o->objective == HETSGD_OBJ_LSQ && (!strcmp(o->data, "fashion-mnist") || !strcmp(o->data, "synth")) &&
	    !o->per_worker[0])
		return train_err(err, n, "--objective lsq needs regression targets: use --data synth-regression or a LIBSVM file whose first column is the target");
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
	return 0;
}

/* The model's limits, LOSCAR's K, and the initial model. */
/* One model's shape, for a message. */
static void shape_text(char *buf, size_t n, const struct hetsgd_model_info *m)
{
	snprintf(buf, n, "%s with p = %u, classes = %u, hidden = %u%s, d = %llu",
		 hetsgd_obj_kind_name(m->kind), m->p, m->classes, m->hidden, m->flags & 1 ? ", bias" : "",
		 (unsigned long long)m->d);
}

static uint64_t values_hash(const float *x, size_t d)
{
	uint64_t h = 0xcbf29ce484222325ull;	/* FNV-1a over the values */

	for (size_t i = 0; i < d * sizeof(float); i++) {
		h ^= ((const unsigned char *)x)[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/*
 * --init: x0 from a saved model, which must be one this run could have
 * trained (same objective, features, classes, hidden units, bias, d).
 * Every rank loads the same file; j->init_hash (of its values) goes into
 * the configuration hash, so ranks that read different files refuse.
 */
static int init_from_model(struct job *j, char *err, size_t n)
{
	const struct opts *o = j->o;
	struct hetsgd_model_info mi, run = { .d = j->d, .kind = o->objective, .p = j->p,
					     .classes = j->classes };
	struct hetsgd_objective *obj = NULL;
	char a[160], b[160];
	float *x = NULL;
	int r;

	if (o->objective == HETSGD_OBJ_MLP)
		run.hidden = o->hidden;
	if (o->objective == HETSGD_OBJ_SOFTMAX && o->bias)
		run.flags = 1;
	if (hetsgd_model_load(o->init, &mi, &x))
		return train_err(err, n, "--init %s: %s", o->init, hetsgd_algo_errmsg());
	/* the objective the file was trained for (a quadratic has none to build) */
	r = hetsgd_model_objective(&mi, 0, &obj);
	hetsgd_objective_destroy(obj);
	if (r && r != -ENOTSUP) {
		free(x);
		return train_err(err, n, "--init %s: %s", o->init, hetsgd_algo_errmsg());
	}
	if (mi.kind != run.kind || mi.p != run.p || mi.classes != run.classes || mi.hidden != run.hidden ||
	    (mi.flags & 1) != run.flags || mi.d != run.d) {
		free(x);
		shape_text(a, sizeof(a), &mi);
		shape_text(b, sizeof(b), &run);
		return train_err(err, n, "--init %s holds a model of %s, but this run trains %s: start from a model of the same objective and data",
				 o->init, a, b);
	}
	memcpy(j->x0, x, j->d * sizeof(float));
	free(x);
	j->init_hash = values_hash(j->x0, j->d);
	return 0;
}

/*
 * --resume: x0 is the checkpoint's model.  Every rank loads the file (a
 * resumed run needs the run's folder where every rank sees it, as HPC
 * file systems give); its hash goes into the configuration hash, so
 * ranks that read different checkpoints refuse.  Whether it was made by
 * this configuration is checked by the caller (check_resume).
 */
static int init_from_checkpoint(struct job *j, char *err, size_t n)
{
	const struct opts *o = j->o;

	if (hetsgd_ckpt_load(o->resume, &j->ck))
		return train_err(err, n, "--resume %s: %s (a resumed run needs the run's folder on a file system every node sees)",
				 o->resume_dir, hetsgd_algo_errmsg());
	j->resumed = 1;
	if (j->ck.d != j->d || j->ck.n != (uint32_t)j->nworkers || j->ck.method != (uint32_t)o->method)
		return train_err(err, n, "--resume %s: the checkpoint is of %s with %u workers and d = %llu; this run would be %s with %d workers and d = %zu: resume with the run's own configuration",
				 o->resume_dir, hetsgd_method_name((enum hetsgd_method)j->ck.method), j->ck.n,
				 (unsigned long long)j->ck.d, hetsgd_method_name((enum hetsgd_method)o->method),
				 j->nworkers, j->d);
	/* its rows go into metrics.csv as they are: numbers, commas, lines */
	if ((j->ck.extra_len && j->ck.extra[j->ck.extra_len - 1] != '\n') ||
	    strspn(j->ck.extra, "0123456789.,-+eEinfa\n") != j->ck.extra_len)
		return train_err(err, n, "--resume %s: the checkpoint's metrics rows hold something other than numbers: it was not written by hetsgd-train",
				 o->resume_dir);
	memcpy(j->x0, j->ck.x, j->d * sizeof(float));
	j->init_hash = values_hash(j->x0, j->d) ^ (uint64_t)j->ck.round ^ j->ck.config_hash;
	return 0;
}

static int init_model(struct job *j, char *err, size_t n)
{
	struct opts *o = j->o;

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
			return train_algo_err(err, n, "initialising the MLP");
		hetsgd_objective_destroy(obj);
	}
	/* a resumed run's model is the checkpoint's, whatever --init said */
	if (o->resume[0])
		return init_from_checkpoint(j, err, n);
	return o->init[0] ? init_from_model(j, err, n) : 0;
}

int job_load(struct job *j, int keep, int server, char *err, size_t n)
{
	int ret;

	j->shard = calloc((size_t)j->nworkers, sizeof(*j->shard));
	if (!j->shard)
		return train_err(err, n, "out of memory");
	if (j->o->objective == HETSGD_OBJ_QUAD) {
		ret = load_quad(j, err, n);
	} else if (j->o->per_worker[0]) {
		ret = load_per_worker(j, keep, server, err, n);
		if (!ret)
			ret = size_model(j, err, n);
	} else {
		ret = load_pooled(j, err, n);
		if (!ret)
			ret = make_shards(j, keep, server, err, n);
		if (!ret)
			ret = size_model(j, err, n);
	}
	return ret ? ret : init_model(j, err, n);
}

int job_objective(const struct job *j, int worker, struct hetsgd_objective **obj)
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

void job_free(struct job *j)
{
	for (int i = 0; j->shard && i < j->nworkers; i++)
		hetsgd_dataset_free(&j->shard[i]);
	free(j->shard);
	for (int i = 0; j->weval && i < j->nworkers; i++)
		hetsgd_dataset_free(&j->weval[i]);
	free(j->weval);
	free(j->weval_ptr);
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
	hetsgd_ckpt_free(&j->ck);
	free(j->rows);
	memset(j, 0, sizeof(*j));
}

void job_engine_cfg(const struct job *j, struct hetsgd_engine_cfg *c)
{
	const struct opts *o = j->o;

	hetsgd_engine_cfg_init(c);
	c->method = o->method;
	c->policy = o->policy;
	c->ringmaster_r = o->ringmaster_r;
	c->malenia_s = o->malenia_s;
	c->merge = o->merge;
	c->overlap = o->overlap;
	c->k = o->k;
	c->round_s = o->round_s;
	c->round_steps = o->round_steps;
	c->averaging = (enum hetsgd_averaging)o->averaging;
	c->servers = o->servers;
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
}
