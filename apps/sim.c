/*
 * hetsgd-sim: hetsgd-train's job as a discrete-event simulation
 * (algo/hetsgd_sim.h).  The same options and data as hetsgd-train, plus
 * a network model; the same outputs (metrics.csv, workers.csv, model.bin,
 * summary.txt) against simulated time, so that thousands of workers run
 * on one machine in seconds.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hetsgd_algo.h"
#include "outfile.h"
#include "plot.h"
#include "quote.h"
#include "train_data.h"
#include "train_opts.h"
#include "train_out.h"

#define MAX_WORKERS 1048576

/* The network model's options, on top of hetsgd-train's table. */
struct simopts {
	double latency_us;
	double gbps;		/* every link, Gb/s; 0: infinite */
	double server_gbps;	/* the server's link; 0: as the others */
	enum hetsgd_sim_averaging averaging;
	double model_bytes;	/* the model's bytes on the wire; 0: 4 d */
	double step_overhead_us;	/* added to every padded compute step */
	double step_floor_us;		/* the least a compute step takes */
	int workers;		/* 0: not given */
};

static const struct simopt {
	const char *name, *arg, *help;
	double lo, hi;
} simopt_table[] = {
	{ "latency", "US", "one-way latency of every message, microseconds (default 2)", 0, 1e7 },
	{ "bandwidth", "GBPS", "every link's rate each way, Gb/s (default 100; 0: infinite)", 0, 1e6 },
	{ "server-bandwidth", "GBPS", "the server's link, Gb/s (default: --bandwidth)", 0, 1e6 },
	{ "model-bytes", "B", "bytes of the whole model on the wire (default 4 d: the simulated model's); a message of v values costs v B / d", 0, 1e15 },
	{ "step-overhead", "US", "added to every padded compute step, microseconds (default 0): a real host's padding overshoot, for comparing with real runs", 0, 1e7 },
	{ "step-floor", "US", "the least a compute step takes, microseconds (default 0): a real host's gradient compute time, which padding cannot shorten", 0, 1e9 },
	{ "workers", "N", "workers, 1 .. 1048576 (hetsgd-train's --workers, without its bound)", 1, MAX_WORKERS },
};
#define NSIMOPT (sizeof(simopt_table) / sizeof(simopt_table[0]))

/* hetsgd-train's options that have no meaning without a real run. */
static const struct {
	int id;
	const char *name;
} refused[] = {
	{ O_PROVIDER, "provider" }, { O_DEVICE, "device" }, { O_LAUNCH, "launch" }, { O_PIN, "pin" },
	{ O_THREADS, "threads" }, { O_CHECKPOINT_EVERY, "checkpoint-every" }, { O_RESUME, "resume" },
	{ O_MIN_WORKERS, "min-workers" },
};

static void usage(void)
{
	printf("usage: hetsgd-sim [hetsgd-train's options] [network options]\n\n"
	       "Simulates hetsgd-train's job (asgd with every policy, sync, loscar, malenia,\n"
	       "ringleader) on a simulated clock: compute times from the profile (--profile,\n"
	       "--time-unit, --noise), the network below.  Writes hetsgd-train's outputs,\n"
	       "times simulated.\n\n"
	       "Network options:\n");
	for (size_t i = 0; i < NSIMOPT; i++)
		printf("  --%s %s\n      %s\n", simopt_table[i].name, simopt_table[i].arg, simopt_table[i].help);
	printf("\nhetsgd-train's options that a simulation refuses:");
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		printf(" --%s", refused[i].name);
	printf(".\nhetsgd-sim --workers takes up to %d.  hetsgd-train's options follow.\n\n", MAX_WORKERS);
}

/* One network option's value. */
static int simopt_set(struct simopts *so, size_t i, const char *v, char *err, size_t n)
{
	const struct simopt *d = &simopt_table[i];
	char *end;
	double x;

	errno = 0;
	x = strtod(v, &end);
	if (!*v || *end || errno || !isfinite(x) || x < d->lo || x > d->hi) {
		char range[64];

		snprintf(range, sizeof(range), "a number in [%.15g, %.15g]", d->lo, d->hi);
		snprintf(err, n, "--%s '%s': use %s", d->name, v, range);
		return -EINVAL;
	}
	if (!strcmp(d->name, "workers")) {
		if (x != floor(x))
			return train_err(err, n, "--workers '%s': use a whole number", v);
		so->workers = (int)x;
	} else if (!strcmp(d->name, "latency")) {
		so->latency_us = x;
	} else if (!strcmp(d->name, "bandwidth")) {
		so->gbps = x;
	} else if (!strcmp(d->name, "server-bandwidth")) {
		so->server_gbps = x;
	} else if (!strcmp(d->name, "step-overhead")) {
		so->step_overhead_us = x;
	} else if (!strcmp(d->name, "step-floor")) {
		so->step_floor_us = x;
	} else {
		so->model_bytes = x;
	}
	return 0;
}

/*
 * Take the network options out of argv (into rest, NULL-terminated);
 * --help is answered here.  0, 1 (help printed) or -EINVAL.
 */
static int simopts_parse(struct simopts *so, int argc, char **argv, char **rest, int *nrest,
			 char *err, size_t n)
{
	int k = 0;

	rest[k++] = argv[0];
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a], *eq;
		size_t len, i;

		if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
			/* ours, then hetsgd-train's table (which exits 0) */
			char *help[] = { argv[0], (char *)"--help", NULL };
			struct opts o;

			usage();
			opts_default(&o);
			opts_parse_args(&o, 2, help, err, n);
			return 1;
		}
		if (!strcmp(arg, "--version")) {
			printf("hetsgd-sim (hetsgd) %s\n", PACKAGE_VERSION);
			return 1;
		}
		if (strncmp(arg, "--", 2)) {
			rest[k++] = argv[a];
			continue;
		}
		eq = strchr(arg, '=');
		len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		/* before hetsgd-train's table acts on them (--resume reads a file) */
		for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
			if (strlen(refused[i].name) == len && !strncmp(arg + 2, refused[i].name, len))
				return train_err(err, n, "--%s has no meaning in a simulation (no transport, threads, checkpoints or lost workers): drop it",
						 refused[i].name);
		for (i = 0; i < NSIMOPT; i++)
			if (strlen(simopt_table[i].name) == len && !strncmp(arg + 2, simopt_table[i].name, len))
				break;
		if (i == NSIMOPT) {
			rest[k++] = argv[a];
			continue;
		}
		if (!eq && a + 1 >= argc)
			return train_err(err, n, "--%s needs a value (%s)", simopt_table[i].name, simopt_table[i].arg);
		if (simopt_set(so, i, eq ? eq + 1 : argv[++a], err, n))
			return -EINVAL;
	}
	rest[k] = NULL;
	*nrest = k;
	return 0;
}

/* summary.txt's arguments: hetsgd-train's, and the network. */
struct sum_args {
	const struct job *j;
	const struct hetsgd_engine_result *res;
	const float *x;
	const struct simopts *so;
	const struct hetsgd_sim_net *net;
};

/* summary.txt: hetsgd-train's, then what was simulated and how. */
static void sum_fn(FILE *f, const void *a, const void *b, const void *c)
{
	const struct sum_args *s = a;
	double d = (double)s->j->d;
	char val[256];

	(void)b;
	(void)c;
	summary_fn(f, s->j, s->res, s->x);
	fprintf(f, "simulated = yes\nsim-latency-us = %g\nsim-bandwidth-gbps = %g\nsim-server-bandwidth-gbps = %g\n",
		s->so->latency_us, s->so->gbps, s->so->server_gbps > 0 ? s->so->server_gbps : s->so->gbps);
	opts_kv(f, "sim-averaging", hetsgd_sim_averaging_name(s->net->averaging));
	fprintf(f, "sim-bytes-per-value = %g\nsim-model-bytes = %.0f\nsim-step-overhead-us = %g\nsim-step-floor-us = %g\n",
		s->net->value_bytes, s->net->value_bytes * d, s->so->step_overhead_us, s->so->step_floor_us);
	if (s->so->model_bytes > 0) {
		snprintf(val, sizeof(val),
			 "traffic costed for a model of %.0f bytes; the loss curve is the simulated d = %zu model's, a proxy",
			 s->so->model_bytes, s->j->d);
		opts_kv(f, "sim-proxy", val);
	}
}

/* The objectives: per worker for quadratics, one shared otherwise (the
 * simulation is one thread; they differ only by their data). */
static int make_objectives(struct job *j, struct hetsgd_objective ***objs, struct hetsgd_objective **eval,
			   char *err, size_t n)
{
	int W = j->nworkers, quad = j->o->objective == HETSGD_OBJ_QUAD;

	*objs = calloc((size_t)W, sizeof(**objs));
	if (!*objs)
		return train_err(err, n, "out of memory for %d objectives", W);
	if (job_objective(j, -1, eval))
		return train_algo_err(err, n, "the server's objective");
	for (int i = 0; i < W; i++) {
		if (!quad && i > 0) {
			(*objs)[i] = (*objs)[0];
			continue;
		}
		if (job_objective(j, i, &(*objs)[i]))
			return train_algo_err(err, n, "a worker's objective");
	}
	return 0;
}

static void free_objectives(const struct job *j, struct hetsgd_objective **objs)
{
	int quad = j->o->objective == HETSGD_OBJ_QUAD;

	for (int i = 0; objs && i < j->nworkers; i++)
		if (quad || i == 0)
			hetsgd_objective_destroy(objs[i]);
	free(objs);
}

static int check_refused(const struct opts *o, char *err, size_t n)
{
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (GIVEN(o, refused[i].id))
			return train_err(err, n, "--%s has no meaning in a simulation (no transport, threads, checkpoints or lost workers): drop it",
				       refused[i].name);
	return 0;
}

/* The network model from the options: bytes per second, the engine's
 * 64-byte header, bytes per value from --model-bytes. */
static void sim_net(const struct simopts *so, size_t d, struct hetsgd_sim_net *net)
{
	memset(net, 0, sizeof(*net));
	net->latency_s = so->latency_us * 1e-6;
	net->link_Bps = so->gbps * 1e9 / 8;
	net->server_Bps = (so->server_gbps > 0 ? so->server_gbps : so->gbps) * 1e9 / 8;
	net->averaging = so->averaging;
	net->header_bytes = 64;
	net->value_bytes = so->model_bytes > 0 ? so->model_bytes / (double)d : 4.0;
	net->step_extra_s = so->step_overhead_us * 1e-6;
	net->step_floor_s = so->step_floor_us * 1e-6;
}

/* Simulate, then the outputs as hetsgd-train writes them. */
static int simulate(struct job *j, const struct simopts *so, char *err, size_t n)
{
	const struct opts *o = j->o;
	struct hetsgd_engine_cfg cfg;
	struct hetsgd_sim_net net;
	struct hetsgd_sim_io io = { .x0 = j->x0, .d = j->d };
	struct hetsgd_objective **objs = NULL, *eval = NULL;
	const struct hetsgd_dataset **data = NULL;
	struct hetsgd_engine_result res;
	struct sum_args sa;
	const struct hetsgd_eval_point *last;
	float *x = malloc(j->d * sizeof(float));
	char pngs[64] = "";
	int ret = -1, ran = 0;

	sim_net(so, j->d, &net);
	job_engine_cfg(j, &cfg);
	cfg.on_eval = on_eval;
	cfg.on_eval_arg = j;
	if (!x || make_objectives(j, &objs, &eval, err, n))
		goto out;
	if (o->objective != HETSGD_OBJ_QUAD) {
		data = calloc((size_t)j->nworkers, sizeof(*data));
		if (!data) {
			train_err(err, n, "out of memory");
			goto out;
		}
		for (int i = 0; i < j->nworkers; i++)
			data[i] = &j->shard[i];
	}
	io.obj = objs;
	io.data = data;
	io.eval_obj = eval;
	io.eval = j->eval.n ? &j->eval : j->test.n ? &j->test : NULL;
	io.worker_eval = j->weval_ptr;
	io.test = j->test.n ? &j->test : NULL;
	io.x_out = x;
	if (begin_out(j, err, n))
		goto out;
	j->tty = o->progress == PROG_BAR || (o->progress == PROG_AUTO && isatty(1));
	if (hetsgd_sim_run(&cfg, &net, (uint32_t)j->nworkers, &io, NULL, NULL, &res)) {
		train_algo_err(err, n, "simulation");
		goto out;
	}
	ran = 1;
	if (j->line_open)
		printf("\n");
	if (j->out_err[0]) {
		snprintf(err, n, "%s", j->out_err);
		goto out;
	}
	if (write_outputs(j, &res, x, err, n))
		goto out;
	last = res.npoints ? &res.points[res.npoints - 1] : NULL;
	printf("hetsgd-sim: %s stopped by %s after %.3f simulated s: %llu %s, %llu gradients", o->name,
	       res.stop_reason, res.elapsed_s, (unsigned long long)res.updates,
	       o->method == HETSGD_METHOD_LOSCAR ? "rounds" : "updates", (unsigned long long)res.grads);
	if (last)
		printf(", loss %.4g", last->loss);
	if (last && !isnan(last->acc))
		printf(", test accuracy %.4f", last->acc);
	if (o->objective == HETSGD_OBJ_QUAD)
		printf(", |x - x*| %.4g", dist_opt(j, x));
	printf("\n");
	if (so->model_bytes > 0)
		printf("hetsgd-sim: traffic costed for a model of %.0f bytes; the loss curve is the simulated d = %zu model's (a proxy)\n",
		       so->model_bytes, j->d);
	if (!o->no_plots) {
		const char *runs[1] = { o->out }, *labels[1] = { o->name };
		int npng = 0;

		/* a failed gnuplot leaves no PNG, and none is claimed */
		if (plot_runs(o->out, "", runs, labels, 1, &npng, err, n))
			printf("hetsgd-sim: plots: %s\n", err);
		for (int i = 0; i < npng; i++)
			snprintf(pngs + strlen(pngs), sizeof(pngs) - strlen(pngs), " %s", plot_pngs[i]);
		if (npng)
			snprintf(pngs + strlen(pngs), sizeof(pngs) - strlen(pngs), " plot.gp");
	}
	sa = (struct sum_args){ .j = j, .res = &res, .x = x, .so = so, .net = &net };
	if (write_text_file(o, "summary.txt", err, n, sum_fn, &sa, NULL, NULL))
		goto out;
	printf("hetsgd-sim: outputs in %s: metrics.csv workers.csv model.bin summary.txt%s\n", o->out, pngs);
	ret = 0;
out:
	if (j->metrics.f)
		fclose(j->metrics.f);
	j->metrics.f = NULL;
	if (ret && j->out_begun)
		write_failure(j, err);
	if (ran)
		hetsgd_engine_result_free(&res);
	free_objectives(j, objs);
	hetsgd_objective_destroy(eval);
	free(data);
	free(x);
	return ret;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct job j = { .o = &o, .rows_mu = PTHREAD_MUTEX_INITIALIZER };
	struct simopts so = { .latency_us = 2, .gbps = 100, .averaging = HETSGD_SIM_AVG_SERVER };
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net;
	char err[1024] = "", **rest;
	int nrest = 0, ret, rc = 2;

	setvbuf(stdout, NULL, _IOLBF, 0);
	rest = calloc((size_t)argc + 1, sizeof(*rest));
	if (!rest) {
		fprintf(stderr, "hetsgd-sim: out of memory\n");
		return 1;
	}
	opts_default(&o);
	ret = simopts_parse(&so, argc, argv, rest, &nrest, err, sizeof(err));
	if (ret == 1) {
		free(rest);
		return 0;
	}
	if (ret || opts_parse_args(&o, nrest, rest, err, sizeof(err)) || check_refused(&o, err, sizeof(err))) {
		fprintf(stderr, "hetsgd-sim: %s\n", err);
		free(rest);
		return 2;
	}
	free(rest);
	if (so.workers) {
		o.workers = so.workers;
		o.given[O_WORKERS] = 1;
	}
	if (!o.workers)
		o.workers = 4;
	if (opts_check(&o, err, sizeof(err))) {
		fprintf(stderr, "hetsgd-sim: %s\n", err);
		return 2;
	}
	/* hetsgd-train's --averaging, resolved as a real run resolves it */
	so.averaging = hetsgd_averaging_resolve((enum hetsgd_averaging)o.averaging, (enum hetsgd_method)o.method,
						(uint32_t)o.workers) == HETSGD_AVERAGING_SHARDED ?
		       HETSGD_SIM_AVG_SHARDED : HETSGD_SIM_AVG_SERVER;
	j.nworkers = o.workers;
	snprintf(j.provider, sizeof(j.provider), "sim");
	if (!o.check_only && prepare_out(&o, err, sizeof(err))) {
		fprintf(stderr, "hetsgd-sim: %s\n", err);
		return 2;
	}
	j.out_ready = 1;
	if (job_load(&j, -1, 1, err, sizeof(err))) {
		fprintf(stderr, "hetsgd-sim: %s\n", err);
		goto done;
	}
	job_engine_cfg(&j, &c);
	sim_net(&so, j.d, &net);
	if (hetsgd_sim_cfg_check(&c, &net, (uint32_t)o.workers, j.d)) {
		fprintf(stderr, "hetsgd-sim: %s\n", hetsgd_algo_errmsg());
		goto done;
	}
	j.hash = opts_hash(&o, j.provider);
	if (o.check_only) {
		printf("hetsgd-sim: configuration ok (hash %016llx):\n", (unsigned long long)j.hash);
		opts_dump(&o, j.provider, stdout);
		rc = 0;
		goto done;
	}
	printf("hetsgd-sim: %s, %d simulated workers, d = %zu, %s averaging, links %g Gb/s, latency %g us\n",
	       hetsgd_method_name(o.method), o.workers, j.d, hetsgd_sim_averaging_name(so.averaging), so.gbps,
	       so.latency_us);
	rc = simulate(&j, &so, err, sizeof(err)) ? 1 : 0;
	if (rc)
		fprintf(stderr, "hetsgd-sim: %s\n", err);
done:
	job_free(&j);
	return rc;
}
