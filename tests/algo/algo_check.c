/*
 * Engine integration checks: real ranks (local launcher) over a real
 * transport (shm, or verbs on soft-RoCE in the test bed).  Each scenario
 * states its tolerance, checks it on the server rank and prints PASS or
 * FAIL with the numbers.
 *
 *   hetsgd-algo-check --scenario NAME [--provider shm|verbs] [--seed S]
 *                     [--budget SECONDS] [--method M] [--policy P]
 *                     [--merge R] [--no-overlap] [--k K | --k-percent P]
 *                     [--min-acc A] [--synth] [--threads T] [--verbose]
 *
 * Scenarios:
 *   quad      4 workers, heterogeneous quadratics, tau_i = c (i + 1):
 *             rescaled ASGD ends nearer the optimum x* of the average,
 *             vanilla ASGD nearer the frequency-weighted x_w (weights: the
 *             gradients each worker really delivered); each within a
 *             quarter of |x* - x_w| of its own target.  Malenia and
 *             Ringleader must end within the same distance of x*.
 *   loscar-sgd  LOSCAR with one worker and K = d and the delay-corrected
 *             merge equals plain SGD step for step: bitwise, after however
 *             many steps the worker took; with overwrite it must differ.
 *   overlap   LOSCAR with a 40 ms emulated delay on every average: with
 *             overlap the workers take steps while blocks are in flight;
 *             without, they take none and wait.
 *   sharded   LOSCAR (rounds of 3 steps, no overlap) and SYNC, each with
 *             server and with sharded averaging on the same seed: every
 *             worker takes bitwise the same average (SYNC: model) in every
 *             round both runs reached.
 *   abort     a worker whose data is bad fails at its first step: every
 *             rank fails within 10 s with a message naming the cause.
 *   fmnist    softmax regression on Fashion-MNIST, 4 workers with tau_i =
 *             c (i + 1), Dirichlet(0.5) split: test accuracy >= --min-acc
 *             for the given method.  With --synth: 6000 generated samples
 *             of 4 Gaussian blobs in 32 dimensions instead (SKIP, exit 77,
 *             when Fashion-MNIST is not installed and --synth is not given).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hetsgd_algo.h"
#include "hetsgd_transport.h"

struct opts {
	const char *scenario;
	enum hetsgd_provider prov;
	uint64_t seed;
	double budget;
	enum hetsgd_method method;
	enum hetsgd_policy policy;
	enum hetsgd_merge merge;
	int overlap;
	uint32_t k;
	double k_percent;	/* K = d * k_percent / 100 when > 0 */
	double min_acc;
	int threads;		/* compute threads per worker */
	int synth;		/* generated blobs instead of Fashion-MNIST */
	int verbose;
};

/* What every rank sees (set up before the fork). */
struct job {
	const struct opts *o;
	struct hetsgd_engine_cfg cfg;
	size_t d;
	uint32_t n;
	/* quad */
	float **qa, **qb;
	/* data */
	struct hetsgd_dataset train, test, eval;
	struct hetsgd_dataset *shard;
	float *x0;
	int expect_fail;	/* the scenario wants the engine to fail */
};

static int fail(const char *what)
{
	fprintf(stderr, "FAIL: %s: %s\n", what, hetsgd_algo_errmsg());
	return 1;
}

/* What a scenario set up (the parent's copy; ranks exit without freeing). */
static void job_free(struct job *j, uint32_t nshards)
{
	for (uint32_t i = 0; j->qa && i < j->n; i++) {
		free(j->qa[i]);
		free(j->qb[i]);
	}
	free(j->qa);
	free(j->qb);
	for (uint32_t i = 0; j->shard && i < nshards; i++)
		hetsgd_dataset_free(&j->shard[i]);
	free(j->shard);
	hetsgd_dataset_free(&j->train);
	hetsgd_dataset_free(&j->test);
	hetsgd_dataset_free(&j->eval);
	free(j->x0);
}

static int run_rank(struct hetsgd_boot *boot, struct job *j, float *x_out,
		    struct hetsgd_engine_result *res)
{
	struct hetsgd_tp_attr ta;
	struct hetsgd_engine_io io = { .x0 = j->x0, .d = j->d, .x_out = x_out };
	struct hetsgd_objective *obj = NULL;
	int rank = hetsgd_boot_rank(boot), ret;

	hetsgd_tp_attr_init(&ta);
	ta.provider = j->o->prov;
	if (j->qa) {
		if (rank > 0)
			ret = hetsgd_objective_quad_create(j->d, j->qa[rank - 1], j->qb[rank - 1], &obj);
		else
			ret = 0;
	} else {
		ret = hetsgd_objective_softmax_create(j->train.p, j->train.classes, 1, 0.0f, &obj);
		io.data = rank > 0 ? &j->shard[rank - 1] : NULL;
		io.eval = &j->eval;
		io.test = &j->test;
	}
	if (ret)
		return fail("objective");
	io.obj = obj;
	{
		struct hetsgd_objective *more[16] = { 0 };

		for (int t = 1; t < j->cfg.compute_threads && t <= 16 && !ret; t++)
			ret = j->qa ? hetsgd_objective_quad_create(j->d, j->qa[rank - 1], j->qb[rank - 1], &more[t - 1])
				    : hetsgd_objective_softmax_create(j->train.p, j->train.classes, 1, 0.0f, &more[t - 1]);
		io.thread_obj = more;
		if (!ret)
			ret = hetsgd_engine_run(boot, &ta, &j->cfg, &io, res);
		else
			fail("objective");
		for (int t = 0; t < 16; t++)
			hetsgd_objective_destroy(more[t]);
	}
	hetsgd_objective_destroy(obj);
	if (ret)
		return j->expect_fail ? 1 : fail("engine");
	return 0;
}

static void print_stats(const struct hetsgd_engine_result *r)
{
	printf("  %s; %s; stopped by %s after %.2f s, %llu updates, %llu gradients, %llu dropped\n",
	       r->provider, r->placement, r->stop_reason, r->elapsed_s,
	       (unsigned long long)r->updates, (unsigned long long)r->grads,
	       (unsigned long long)r->dropped);
	for (uint32_t i = 0; i < r->nworkers; i++) {
		const struct hetsgd_worker_stats *w = &r->workers[i];

		printf("  worker %u: %llu steps, %llu rounds, %llu in flight, tau target %.1f ms est %.1f ms, idle %.0f%%, %llu overruns\n",
		       w->worker, (unsigned long long)w->steps, (unsigned long long)w->rounds,
		       (unsigned long long)w->overlap_steps, 1e3 * w->tau_target, 1e3 * w->tau_est,
		       w->elapsed_s > 0 ? 100 * w->idle_s / w->elapsed_s : 0.0,
		       (unsigned long long)w->overruns);
	}
}

static double dist(const float *a, const float *b, size_t d)
{
	double s = 0;

	for (size_t i = 0; i < d; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return sqrt(s);
}

/* ---- quad ---- */

struct quad_ctx {
	struct job *j;
	float *xstar, *xw;
};

static int quad_rank(struct hetsgd_boot *boot, void *arg)
{
	struct quad_ctx *q = arg;
	struct job *j = q->j;
	float *x = calloc(j->d, sizeof(float)), *xw = calloc(j->d, sizeof(float));
	struct hetsgd_engine_result res;
	double ds, dw, gap, w[4];
	int ret = run_rank(boot, j, x, &res), ok;

	if (ret || hetsgd_boot_rank(boot) != 0) {
		hetsgd_engine_result_free(&res);
		free(x);
		free(xw);
		return ret;
	}
	/*
	 * Vanilla ASGD's limit weighs worker i by how often its gradients
	 * really arrived: 1 / (compute + round trip), not the profile's
	 * 1 / tau_i.  On a fast network they agree; in the soft-RoCE bed the
	 * round trip is milliseconds and they do not.  So the weights are
	 * the workers' measured gradient counts over the same run.
	 */
	for (uint32_t i = 0; i < j->n; i++)
		w[i] = (double)res.workers[i].steps;
	hetsgd_quad_weighted_optimum(j->d, j->n, (const float *const *)j->qa,
				     (const float *const *)j->qb, w, xw);
	gap = dist(q->xstar, xw, j->d);
	ds = dist(x, q->xstar, j->d);
	dw = dist(x, xw, j->d);
	if (j->cfg.method != HETSGD_METHOD_ASGD || j->cfg.policy == HETSGD_POLICY_RESCALED)
		ok = ds < 0.25 * gap && ds < dw;
	else
		ok = dw < 0.25 * gap && dw < ds;
	/* without real heterogeneity the test would prove nothing */
	ok = ok && gap > 0.3 * dist(q->xstar, q->xw, j->d);
	printf("%s: %s%s: |x - x*| = %.4f, |x - x_w| = %.4f, |x* - x_w| = %.4f (must be within %.4f of %s; x_w weighs workers by measured frequency %.0f:%.0f:%.0f:%.0f; by the profile |x* - x_w| would be %.4f)\n",
	       ok ? "PASS" : "FAIL",
	       j->cfg.method == HETSGD_METHOD_ASGD ? hetsgd_policy_name(j->cfg.policy) :
						     hetsgd_method_name(j->cfg.method),
	       j->cfg.method == HETSGD_METHOD_ASGD ? " ASGD" : "", ds, dw, gap, 0.25 * gap,
	       j->cfg.method != HETSGD_METHOD_ASGD || j->cfg.policy == HETSGD_POLICY_RESCALED ?
	       "x*" : "x_w", w[0], w[1], w[2], w[3],
	       dist(q->xstar, q->xw, j->d));
	print_stats(&res);
	hetsgd_engine_result_free(&res);
	free(x);
	free(xw);
	return ok ? 0 : 1;
}

static int scenario_quad(const struct opts *o)
{
	struct job j = { .o = o, .d = 8, .n = 4 };
	struct quad_ctx q = { .j = &j };
	double w[4];
	int bad = 0;

	j.qa = calloc(j.n, sizeof(float *));
	j.qb = calloc(j.n, sizeof(float *));
	j.x0 = calloc(j.d, sizeof(float));
	q.xstar = calloc(j.d, sizeof(float));
	q.xw = calloc(j.d, sizeof(float));
	for (uint32_t i = 0; i < j.n; i++) {
		j.qa[i] = malloc(j.d * sizeof(float));
		j.qb[i] = malloc(j.d * sizeof(float));
	}
	/* hetsgd-train's quadratics: one generator for the programs and the tests */
	if (hetsgd_quad_generate(j.d, j.n, o->seed, j.qa, j.qb, NULL, NULL)) {
		fprintf(stderr, "algo-check: %s\n", hetsgd_errmsg());
		return 1;
	}
	hetsgd_engine_cfg_init(&j.cfg);
	j.cfg.method = HETSGD_METHOD_ASGD;
	j.cfg.gamma = 0.02f;
	j.cfg.seed = o->seed;
	j.cfg.profile.kind = HETSGD_PROFILE_LINEAR;
	j.cfg.profile.unit_s = 0.002;
	j.cfg.budget_s = o->budget > 0 ? o->budget : 3.0;
	for (uint32_t i = 0; i < j.n; i++) {
		double tau;

		hetsgd_profile_mean(&j.cfg.profile, i, j.n, &tau);
		w[i] = 1.0 / tau;
	}
	hetsgd_quad_weighted_optimum(j.d, j.n, (const float *const *)j.qa,
				     (const float *const *)j.qb, NULL, q.xstar);
	hetsgd_quad_weighted_optimum(j.d, j.n, (const float *const *)j.qa,
				     (const float *const *)j.qb, w, q.xw);
	/*
	 * Rescaled and vanilla ASGD; then Malenia and Ringleader, which weigh
	 * every worker the same by construction (one step per round, the mean
	 * of each worker's mean gradient): they must approach x* too, with the
	 * same tolerance.  One step per round of the slowest worker (8 ms)
	 * makes fewer steps than ASGD, so they take a larger gamma; with exact
	 * gradients (quadratics) they land on x* to 1e-4 in well under 1.5 s.
	 */
	for (int p = 0; p < 4; p++) {
		j.cfg.method = p < 2 ? HETSGD_METHOD_ASGD :
			       p == 2 ? HETSGD_METHOD_MALENIA : HETSGD_METHOD_RINGLEADER;
		j.cfg.policy = p == 1 ? HETSGD_POLICY_VANILLA : HETSGD_POLICY_RESCALED;
		j.cfg.gamma = p < 2 ? 0.02f : 0.1f;
		j.cfg.budget_s = o->budget > 0 ? o->budget : p < 2 ? 3.0 : 1.5;
		if (hetsgd_boot_local_run((int)j.n + 1, quad_rank, &q, NULL)) {
			fprintf(stderr, "FAIL: %s\n", hetsgd_errmsg());
			bad = 1;
		}
	}
	free(q.xstar);
	free(q.xw);
	job_free(&j, 0);
	return bad;
}

/* ---- loscar-sgd ---- */

static int loscar_sgd_rank(struct hetsgd_boot *boot, void *arg)
{
	struct job *j = arg;
	float *x = calloc(j->d, sizeof(float)), *xr = malloc(j->d * sizeof(float));
	struct hetsgd_engine_result res;
	struct hetsgd_objective *obj;
	int ret = run_rank(boot, j, x, &res), ok;
	size_t diff = 0, bits = 0;

	if (ret || hetsgd_boot_rank(boot) != 0) {
		hetsgd_engine_result_free(&res);
		free(x);
		free(xr);
		return ret;
	}
	memcpy(xr, j->x0, j->d * sizeof(float));
	if (hetsgd_objective_softmax_create(j->train.p, j->train.classes, 1, 0.0f, &obj) ||
	    hetsgd_sgd_reference(obj, &j->shard[0], xr, j->cfg.gamma, j->cfg.batch,
				 res.workers[0].steps, j->cfg.seed, 0))
		return fail("reference");
	hetsgd_objective_destroy(obj);
	for (size_t i = 0; i < j->d; i++) {
		/* a team of T threads sums T partial means: the same up to rounding */
		if (j->cfg.compute_threads > 1)
			diff += fabsf(x[i] - xr[i]) > 1e-3f * (1.0f + fabsf(xr[i]));
		else
			diff += memcmp(&x[i], &xr[i], sizeof(float)) != 0;
		bits += memcmp(&x[i], &xr[i], sizeof(float)) != 0;
	}
	if (j->cfg.merge == HETSGD_MERGE_DELAY_CORRECTED)
		/* and a team that really split its batches rounds differently */
		ok = diff == 0 && (j->cfg.compute_threads > 1) == (bits > 0);
	else	/* overwrite throws away the steps taken in flight */
		ok = diff > 0;
	ok = ok && res.workers[0].steps > 10 && res.workers[0].rounds > 3 &&
	     res.workers[0].overlap_steps > 0;
	printf("%s: LOSCAR %s (1 worker of %d compute threads, K = d, %llu rounds, %llu steps, %llu of them in flight) vs plain SGD: %zu of %zu coordinates differ%s (must be %s)\n",
	       ok ? "PASS" : "FAIL", hetsgd_merge_name(j->cfg.merge),
	       j->cfg.compute_threads > 1 ? j->cfg.compute_threads : 1,
	       (unsigned long long)res.workers[0].rounds,
	       (unsigned long long)res.workers[0].steps,
	       (unsigned long long)res.workers[0].overlap_steps, diff, j->d,
	       j->cfg.compute_threads > 1 ? " by more than 1e-3 relative" : "",
	       j->cfg.merge != HETSGD_MERGE_DELAY_CORRECTED ? "> 0: the in-flight steps are lost" :
	       j->cfg.compute_threads > 1 ? "0, and some bits must differ: the team splits batches" : "0, bitwise");
	hetsgd_engine_result_free(&res);
	free(x);
	free(xr);
	return ok ? 0 : 1;
}

/* ---- data: Fashion-MNIST, or generated blobs with --synth ---- */

static int load_data(struct job *j, uint32_t workers, int dirichlet)
{
	struct hetsgd_split sp;
	uint64_t *idx;
	int ret;

	uint64_t ne;

	if (j->o->synth) {
		/* small enough for the soft-RoCE bed's emulated CPU */
		struct hetsgd_dataset all;
		struct hetsgd_split ho;

		ret = hetsgd_synth_classification(6000, 32, 4, j->o->seed, &all);
		if (!ret)
			ret = hetsgd_split_holdout(all.n, 1.0 / 6, j->o->seed, &ho);
		if (ret)
			return fail("synthetic data");
		ret = hetsgd_dataset_subset(&all, ho.index, ho.offset[1], &j->train);
		if (!ret)
			ret = hetsgd_dataset_subset(&all, ho.index + ho.offset[1],
						    ho.offset[2] - ho.offset[1], &j->test);
		hetsgd_split_free(&ho);
		hetsgd_dataset_free(&all);
		if (ret)
			return fail("synthetic split");
	} else {
		ret = hetsgd_fashion_mnist_load(0, &j->train);
		if (!ret)
			ret = hetsgd_fashion_mnist_load(1, &j->test);
		if (ret) {
			fprintf(stderr, "SKIP: %s\n", hetsgd_algo_errmsg());
			return 77;
		}
	}
	/* loss on at most 5000 training samples keeps evaluations cheap */
	ne = j->train.n < 5000 ? j->train.n : 5000;
	idx = malloc(ne * sizeof(*idx));
	for (uint64_t i = 0; i < ne; i++)
		idx[i] = i * (j->train.n / ne);
	ret = hetsgd_dataset_subset(&j->train, idx, ne, &j->eval);
	free(idx);
	if (ret)
		return fail("eval subset");
	ret = dirichlet ? hetsgd_split_dirichlet(j->train.labels, j->train.n, j->train.classes,
						 workers, 0.5, j->o->seed, &sp)
			: hetsgd_split_iid(j->train.n, workers, j->o->seed, &sp);
	if (ret)
		return fail("split");
	j->shard = calloc(workers, sizeof(*j->shard));
	for (uint32_t i = 0; i < workers && !ret; i++)
		ret = hetsgd_dataset_subset(&j->train, sp.index + sp.offset[i],
					    sp.offset[i + 1] - sp.offset[i], &j->shard[i]);
	hetsgd_split_free(&sp);
	if (ret)
		return fail("shards");
	j->n = workers;
	j->d = (size_t)j->train.p * j->train.classes + j->train.classes;
	j->x0 = calloc(j->d, sizeof(float));
	return 0;
}

static int scenario_loscar_sgd(const struct opts *o)
{
	struct opts oo = *o;
	struct job j = { .o = &oo };
	int ret;

	oo.synth = 1;		/* any data will do: this is about the steps */
	ret = load_data(&j, 1, 0);
	if (ret) {
		job_free(&j, 1);
		return ret;
	}
	hetsgd_engine_cfg_init(&j.cfg);
	j.cfg.method = HETSGD_METHOD_LOSCAR;
	j.cfg.k = 0;		/* d */
	j.cfg.round_s = 0.02;
	j.cfg.comm_delay_s = 0.005;	/* so that steps happen in flight */
	j.cfg.gamma = 0.05f;
	j.cfg.seed = o->seed;
	j.cfg.profile.unit_s = 0.001;
	j.cfg.budget_s = o->budget > 0 ? o->budget : 1.0;
	j.cfg.compute_threads = o->threads;
	for (int m = 0; m < 2; m++) {
		j.cfg.merge = m ? HETSGD_MERGE_OVERWRITE : HETSGD_MERGE_DELAY_CORRECTED;
		if (hetsgd_boot_local_run(2, loscar_sgd_rank, &j, NULL)) {
			fprintf(stderr, "FAIL: %s\n", hetsgd_errmsg());
			ret = 1;
		}
	}
	job_free(&j, 1);
	return ret;
}

/* ---- overlap ---- */

static int overlap_rank(struct hetsgd_boot *boot, void *arg)
{
	struct job *j = arg;
	struct hetsgd_engine_result res;
	uint64_t inflight = 0, rounds = 0;
	double idle = 0, wall = 0;
	int ret = run_rank(boot, j, NULL, &res), ok;

	if (ret || hetsgd_boot_rank(boot) != 0) {
		hetsgd_engine_result_free(&res);
		return ret;
	}
	for (uint32_t i = 0; i < res.nworkers; i++) {
		inflight += res.workers[i].overlap_steps;
		rounds += res.workers[i].rounds;
		idle += res.workers[i].idle_s;
		wall += res.workers[i].elapsed_s;
	}
	/* 40 ms in flight per round and 2 .. 4 ms per step: ~10 steps per
	 * worker and round with overlap; none without */
	if (j->cfg.overlap)
		ok = rounds >= 8 && inflight >= 4 * rounds && idle < 0.2 * wall;
	else
		ok = rounds >= 8 && inflight == 0 && idle > 0.3 * wall;
	printf("%s: LOSCAR %s overlap: %llu steps in flight over %llu worker-rounds, workers idle %.0f%% (%s)\n",
	       ok ? "PASS" : "FAIL", j->cfg.overlap ? "with" : "without",
	       (unsigned long long)inflight, (unsigned long long)rounds, 100 * idle / wall,
	       j->cfg.overlap ? "must be >= 4 per round, idle < 20%" : "must be 0, idle > 30%");
	print_stats(&res);
	hetsgd_engine_result_free(&res);
	return ok ? 0 : 1;
}

static int scenario_overlap(const struct opts *o)
{
	struct opts oo = *o;
	struct job j = { .o = &oo };
	int ret, bad = 0;

	oo.synth = 1;
	ret = load_data(&j, 2, 0);
	if (ret) {
		job_free(&j, 2);
		return ret;
	}
	hetsgd_engine_cfg_init(&j.cfg);
	j.cfg.method = HETSGD_METHOD_LOSCAR;
	j.cfg.k = (uint32_t)(j.d / 10);
	j.cfg.round_s = 0.02;
	j.cfg.comm_delay_s = 0.04;
	j.cfg.seed = o->seed;
	j.cfg.profile.kind = HETSGD_PROFILE_LINEAR;
	j.cfg.profile.unit_s = 0.002;
	j.cfg.budget_s = o->budget > 0 ? o->budget : 1.5;
	for (int ov = 1; ov >= 0; ov--) {
		j.cfg.overlap = ov;
		if (hetsgd_boot_local_run(3, overlap_rank, &j, NULL)) {
			fprintf(stderr, "FAIL: %s\n", hetsgd_errmsg());
			bad = 1;
		}
	}
	job_free(&j, 2);
	return bad;
}

/* ---- sharded ---- */

/*
 * What each worker took in each round, as a 64-bit FNV-1a of the bytes:
 * shared between the forked ranks and the parent (MAP_SHARED).
 */
#define SH_WORKERS 5
#define SH_ROUNDS 4096

struct sh_trace {
	uint64_t dig[2][SH_WORKERS][SH_ROUNDS];
	uint64_t cnt[2][SH_WORKERS];	/* rounds recorded: the highest + 1 */
	uint64_t first[2][SH_WORKERS];	/* the first round recorded (SYNC: version 1) */
	int run;			/* 0: server averaging, 1: sharded */
};

static void sh_on_average(void *arg, uint32_t worker, uint64_t round, const float *v, size_t count)
{
	struct sh_trace *t = arg;
	const unsigned char *p = (const unsigned char *)v;
	uint64_t h = 0xcbf29ce484222325ull;

	if (worker >= SH_WORKERS || round >= SH_ROUNDS)
		return;
	for (size_t i = 0; i < count * sizeof(float); i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	t->dig[t->run][worker][round] = h;
	if (round + 1 > t->cnt[t->run][worker])
		t->cnt[t->run][worker] = round + 1;
	if (!t->first[t->run][worker] || round < t->first[t->run][worker])
		t->first[t->run][worker] = round + 1;	/* + 1: 0 means unset */
}

static int sharded_rank(struct hetsgd_boot *boot, void *arg)
{
	struct job *j = arg;
	struct hetsgd_engine_result res;
	int ret = run_rank(boot, j, NULL, &res);

	if (!ret)
		hetsgd_engine_result_free(&res);
	return ret;
}

/*
 * LOSCAR (rounds of 3 steps, no overlap: the same steps whatever the
 * timing) and SYNC, each with server then sharded averaging on the same
 * seed, 5 workers (shards of uneven length): every worker must take the
 * same bits in every round both runs reached, and every worker the same
 * bits as worker 0 (one average per round).
 */
static int scenario_sharded(const struct opts *o)
{
	struct opts oo = *o;
	struct job j = { .o = &oo };
	struct sh_trace *t;
	int ret, bad = 0;

	oo.synth = 1;
	ret = load_data(&j, SH_WORKERS, 0);
	if (ret) {
		job_free(&j, SH_WORKERS);
		return ret;
	}
	t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED) {
		perror("mmap");
		job_free(&j, SH_WORKERS);
		return 1;
	}
	for (int m = 0; m < 2; m++) {
		uint64_t common = UINT64_MAX, from = 1, differ = 0, changes = 0;
		int failed = 0;

		memset(t, 0, sizeof(*t));
		hetsgd_engine_cfg_init(&j.cfg);
		j.cfg.method = m == 0 ? HETSGD_METHOD_LOSCAR : HETSGD_METHOD_SYNC;
		j.cfg.k = (uint32_t)(j.d / 4);
		j.cfg.round_steps = m == 0 ? 3 : 0;
		j.cfg.overlap = 0;
		j.cfg.gamma = m == 0 ? 0.05f : 0.2f;
		j.cfg.seed = o->seed;
		/* rxe in a TCG guest takes far longer per message than shm */
		j.cfg.budget_s = o->budget > 0 ? o->budget : o->prov == HETSGD_PROV_VERBS ? 4.0 : 1.0;
		j.cfg.eval_interval_s = 0.25;	/* snapshots on the way */
		j.cfg.on_average = sh_on_average;
		j.cfg.on_average_arg = t;
		for (t->run = 0; t->run < 2; t->run++) {
			j.cfg.averaging = t->run ? HETSGD_AVERAGING_SHARDED : HETSGD_AVERAGING_SERVER;
			if (hetsgd_boot_local_run(SH_WORKERS + 1, sharded_rank, &j, NULL)) {
				fprintf(stderr, "FAIL: %s averaging: %s\n",
					hetsgd_averaging_name(j.cfg.averaging), hetsgd_errmsg());
				failed = 1;
			}
		}
		for (int r = 0; r < 2; r++)
			for (int i = 0; i < SH_WORKERS; i++) {
				if (t->cnt[r][i] < common)
					common = t->cnt[r][i];
				if (t->first[r][i] > from)
					from = t->first[r][i];
			}
		from--;
		for (uint64_t k = from; common != UINT64_MAX && k < common; k++) {
			for (int r = 0; r < 2; r++)
				for (int i = 0; i < SH_WORKERS; i++)
					differ += t->dig[r][i][k] != t->dig[0][0][k];
			changes += k > from && t->dig[0][0][k] != t->dig[0][0][k - 1];
		}
		/* at least 20 rounds in common, and averages that move */
		ret = !failed && common != UINT64_MAX && common >= from + 20 && !differ &&
		      changes + 1 >= (common - from) / 2;
		printf("%s: %s, 5 workers, server vs sharded averaging over %s: rounds %llu .. %llu in both runs, %llu of %llu (worker, run, round) results differ from worker 0's of the server run (must be 0, over >= 20 rounds)\n",
		       ret ? "PASS" : "FAIL", m == 0 ? "LOSCAR (3 steps per round, no overlap)" : "SYNC",
		       hetsgd_provider_name(o->prov), (unsigned long long)from,
		       common == UINT64_MAX ? 0ull : (unsigned long long)common - 1,
		       (unsigned long long)differ,
		       common == UINT64_MAX || common < from ? 0ull :
		       (unsigned long long)(2 * SH_WORKERS * (common - from)));
		bad |= !ret;
	}
	munmap(t, sizeof(*t));
	job_free(&j, SH_WORKERS);
	return bad;
}

/* ---- abort ---- */

/*
 * Worker 1's data has labels outside the classes, so its first step fails.
 * Every rank must fail fast (not after the stall time) and say why: the
 * bad worker names the label, the server names the worker, the other
 * worker names the server.
 */
static int abort_rank(struct hetsgd_boot *boot, void *arg)
{
	struct job *j = arg;
	struct hetsgd_engine_result res;
	int rank = hetsgd_boot_rank(boot), ret = run_rank(boot, j, NULL, &res);
	const char *msg = hetsgd_algo_errmsg();
	const char *want = rank == 2 ? "label" : rank == 0 ? "rank 2 failed" : "rank 0 failed";
	int ok = ret != 0 && strstr(msg, want);

	if (ret == 0)
		hetsgd_engine_result_free(&res);
	printf("%s: with %d compute threads, rank %d %s: \"%s\" (it must stop with a message naming \"%s\")\n",
	       ok ? "PASS" : "FAIL", j->cfg.compute_threads > 1 ? j->cfg.compute_threads : 1, rank,
	       ret ? "stopped as it must" : "finished, which it must not", ret ? msg : "", want);
	return ok ? 0 : 1;
}

static int scenario_abort(const struct opts *o)
{
	struct opts oo = *o;
	struct job j = { .o = &oo };
	struct timespec t0, t1;
	double secs;
	int ret;

	oo.synth = 1;
	ret = load_data(&j, 2, 0);
	if (ret) {
		job_free(&j, 2);
		return ret;
	}
	for (uint64_t i = 0; i < j.shard[1].n; i++)
		j.shard[1].labels[i] = 99;
	j.expect_fail = 1;
	hetsgd_engine_cfg_init(&j.cfg);
	j.cfg.method = HETSGD_METHOD_ASGD;
	j.cfg.seed = o->seed;
	j.cfg.budget_s = 30;
	j.cfg.compute_threads = o->threads;	/* the helpers' failure path too */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = hetsgd_boot_local_run(3, abort_rank, &j, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
	job_free(&j, 2);
	printf("%s: a failing worker ends the run on every rank in %.1f s (must be < 10 s, the stall time is 60 s)\n",
	       !ret && secs < 10 ? "PASS" : "FAIL", secs);
	return !ret && secs < 10 ? 0 : 1;
}

/* ---- fmnist ---- */

static void on_eval(void *arg, const struct hetsgd_eval_point *pt)
{
	const struct job *j = arg;

	if (j->o->verbose)
		printf("  t %.2f s  grads %llu  updates %llu  loss %.4f  acc %.4f  idle %.0f%%%s\n",
		       pt->t, (unsigned long long)pt->grads, (unsigned long long)pt->updates,
		       pt->loss, pt->acc, 100 * pt->idle_share, pt->final ? "  (final)" : "");
}

static int fmnist_rank(struct hetsgd_boot *boot, void *arg)
{
	struct job *j = arg;
	struct hetsgd_engine_result res;
	int ret = run_rank(boot, j, NULL, &res), ok;
	double acc;
	char what[96];

	if (ret || hetsgd_boot_rank(boot) != 0) {
		hetsgd_engine_result_free(&res);
		return ret;
	}
	acc = res.npoints ? res.points[res.npoints - 1].acc : NAN;
	ok = acc >= j->o->min_acc;
	if (j->cfg.method == HETSGD_METHOD_ASGD)
		snprintf(what, sizeof(what), "%s ASGD", hetsgd_policy_name(j->cfg.policy));
	else if (j->cfg.method == HETSGD_METHOD_LOSCAR)
		snprintf(what, sizeof(what), "LOSCAR %s, %s overlap, K = %u of %zu",
			 hetsgd_merge_name(j->cfg.merge), j->cfg.overlap ? "with" : "no",
			 j->cfg.k ? j->cfg.k : (uint32_t)j->d, j->d);
	else if (j->cfg.method == HETSGD_METHOD_SYNC)
		snprintf(what, sizeof(what), "synchronous SGD");
	else
		snprintf(what, sizeof(what), "%s", hetsgd_method_name(j->cfg.method));
	printf("%s: %s on %s (softmax, 4 workers of %d compute threads, Dirichlet 0.5) over %s: test accuracy %.4f (must be >= %.2f)\n",
	       ok ? "PASS" : "FAIL", what, j->o->synth ? "generated blobs" : "Fashion-MNIST",
	       j->cfg.compute_threads > 1 ? j->cfg.compute_threads : 1,
	       hetsgd_provider_name(j->o->prov), acc, j->o->min_acc);
	print_stats(&res);
	hetsgd_engine_result_free(&res);
	return ok ? 0 : 1;
}

static int scenario_fmnist(const struct opts *o)
{
	struct job j = { .o = o };
	int ret = load_data(&j, 4, 1);
	if (ret) {
		job_free(&j, 4);
		return ret;
	}
	hetsgd_engine_cfg_init(&j.cfg);
	j.cfg.method = o->method;
	j.cfg.policy = o->policy;
	j.cfg.merge = o->merge;
	j.cfg.overlap = o->overlap;
	j.cfg.k = o->k_percent > 0 ? (uint32_t)((double)j.d * o->k_percent / 100.0) : o->k;
	j.cfg.round_s = 0.02;
	/* one step per round of all the workers' gradients: sync's gamma */
	j.cfg.gamma = o->method == HETSGD_METHOD_SYNC || o->method == HETSGD_METHOD_MALENIA ||
		      o->method == HETSGD_METHOD_RINGLEADER ? 0.2f : 0.05f;
	j.cfg.seed = o->seed;
	j.cfg.profile.kind = HETSGD_PROFILE_LINEAR;
	j.cfg.profile.unit_s = 0.001;
	j.cfg.profile.noise = 0.1;
	j.cfg.budget_s = o->budget > 0 ? o->budget : 3.0;
	j.cfg.eval_interval_s = 0.5;
	j.cfg.compute_threads = o->threads;
	j.cfg.on_eval = on_eval;
	j.cfg.on_eval_arg = &j;
	ret = hetsgd_boot_local_run(5, fmnist_rank, &j, NULL) ? 1 : 0;
	if (ret)
		fprintf(stderr, "FAIL: %s\n", hetsgd_errmsg());
	job_free(&j, 4);
	return ret;
}

static void usage(void)
{
	fprintf(stderr, "usage: hetsgd-algo-check --scenario quad|loscar-sgd|overlap|abort|sharded|fmnist [--provider shm|verbs]\n"
		"       [--seed S] [--budget SECONDS] [--method asgd|sync|loscar|malenia|ringleader] [--policy P] [--merge R]\n"
		"       [--no-overlap] [--k K | --k-percent P] [--min-acc A] [--synth] [--threads T] [--verbose]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "scenario", required_argument, NULL, 's' },
		{ "provider", required_argument, NULL, 'p' },
		{ "seed", required_argument, NULL, 'S' },
		{ "budget", required_argument, NULL, 'b' },
		{ "method", required_argument, NULL, 'm' },
		{ "policy", required_argument, NULL, 'P' },
		{ "merge", required_argument, NULL, 'r' },
		{ "no-overlap", no_argument, NULL, 'n' },
		{ "k", required_argument, NULL, 'k' },
		{ "min-acc", required_argument, NULL, 'a' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "synth", no_argument, NULL, 'y' },
		{ "k-percent", required_argument, NULL, 'K' },
		{ "threads", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .prov = HETSGD_PROV_SHM, .seed = 1, .method = HETSGD_METHOD_ASGD,
			  .policy = HETSGD_POLICY_RESCALED, .merge = HETSGD_MERGE_DELAY_CORRECTED,
			  .overlap = 1, .min_acc = 0.70 };
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's': o.scenario = optarg; break;
		case 'p':
			if (hetsgd_provider_parse(optarg, &o.prov)) {
				fprintf(stderr, "%s\n", hetsgd_errmsg());
				return 2;
			}
			break;
		case 'S': o.seed = strtoull(optarg, NULL, 0); break;
		case 'b': o.budget = atof(optarg); break;
		case 'm':
			if (hetsgd_method_parse(optarg, &o.method)) {
				fprintf(stderr, "%s\n", hetsgd_algo_errmsg());
				return 2;
			}
			break;
		case 'P':
			if (hetsgd_policy_parse(optarg, &o.policy)) {
				fprintf(stderr, "%s\n", hetsgd_algo_errmsg());
				return 2;
			}
			break;
		case 'r':
			if (hetsgd_merge_parse(optarg, &o.merge)) {
				fprintf(stderr, "%s\n", hetsgd_algo_errmsg());
				return 2;
			}
			break;
		case 'n': o.overlap = 0; break;
		case 'k': o.k = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'a': o.min_acc = atof(optarg); break;
		case 'v': o.verbose = 1; break;
		case 'y': o.synth = 1; break;
		case 'K': o.k_percent = atof(optarg); break;
		case 't': o.threads = atoi(optarg); break;
		default: usage(); return 2;
		}
	}
	if (!o.scenario) {
		usage();
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(o.scenario, "quad"))
		return scenario_quad(&o);
	if (!strcmp(o.scenario, "loscar-sgd"))
		return scenario_loscar_sgd(&o);
	if (!strcmp(o.scenario, "overlap"))
		return scenario_overlap(&o);
	if (!strcmp(o.scenario, "abort"))
		return scenario_abort(&o);
	if (!strcmp(o.scenario, "sharded"))
		return scenario_sharded(&o);
	if (!strcmp(o.scenario, "fmnist"))
		return scenario_fmnist(&o);
	usage();
	return 2;
}
