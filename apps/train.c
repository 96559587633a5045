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
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hetsgd_algo.h"
#include "hetsgd_topology.h"
#include "hetsgd_transport.h"
#include "outfile.h"
#include "plot.h"
#include "quote.h"
#include "train_data.h"
#include "train_opts.h"
#include "train_out.h"

/* ---- the ranks ---- */


/* The server's objective (for evaluation), or worker rank-1's and one
 * more instance per extra compute thread. */
static int make_rank_objectives(const struct job *j, int rank, struct hetsgd_objective **obj,
				struct hetsgd_objective ***more, char *err, size_t n)
{
	int threads = rank > 0 ? j->o->threads : 1;

	if (rank > j->o->workers)
		return 0;	/* a shard server (--servers) computes nothing */
	if (job_objective(j, rank - 1, obj))
		return train_algo_err(err, n, rank ? "the worker's objective" : "the server's objective");
	if (threads > 1) {
		*more = calloc((size_t)threads, sizeof(**more));
		if (!*more)
			return train_err(err, n, "out of memory");
		for (int t = 0; t < threads - 1; t++)
			if (job_objective(j, rank - 1, &(*more)[t]))
				return train_algo_err(err, n, "an objective for an extra compute thread");
	}
	return 0;
}

/* The engine's configuration: the training's (job_engine_cfg, which
 * hetsgd-sim shares) and a real run's. */
static void engine_cfg(const struct opts *o, const struct job *j, struct hetsgd_engine_cfg *c)
{
	job_engine_cfg(j, c);
	c->compute_threads = o->threads;
	c->pin = o->pin;
	c->min_workers = o->min_workers;
	c->checkpoint_every_s = o->checkpoint_every;
	c->resume = j->resumed ? &j->ck : NULL;
}


struct agree {
	uint64_t hash;
	int32_t ok;		/* rank 0: the output folder is ready */
	int32_t pad;
	char host[64];		/* shm needs every rank on one host */
};

/*
 * Everything of this rank that can fail, before the agreement, so that no
 * rank is left waiting for one that gave up: 0 or -1 with err set (or
 * empty when a rank function already said why).
 */
static int rank_prepare(struct job *j, int rank, struct hetsgd_engine_cfg *cfg,
			struct hetsgd_engine_io *io, struct hetsgd_objective **obj,
			struct hetsgd_objective ***more, float **x, char *err, size_t n)
{
	const struct opts *o = j->o;

	if (j->load_failed)
		return -1;
	if (rank == 0 && !j->out_ready && prepare_out(o, err, n))
		return -1;
	if (rank == 0 && begin_out(j, err, n))
		return -1;
	if (make_rank_objectives(j, rank, obj, more, err, n))
		return -1;
	if (rank == 0) {
		j->tty = o->progress == PROG_BAR || (o->progress == PROG_AUTO && isatty(1));
		cfg->on_eval = on_eval;
		cfg->on_eval_arg = j;
		cfg->on_lost = on_lost;
		cfg->on_lost_arg = j;
		if (o->checkpoint_every > 0) {
			cfg->on_checkpoint = on_checkpoint;
			cfg->on_checkpoint_arg = j;
		}
		*x = malloc(j->d * sizeof(float));
		io->x_out = *x;
		io->eval = j->eval.n ? &j->eval : j->test.n ? &j->test : NULL;
		io->worker_eval = j->weval_ptr;
		io->test = j->test.n ? &j->test : NULL;
		if (!*x) {
			snprintf(err, n, "out of memory for a model of %zu values", j->d);
			return -1;
		}
	} else if (rank <= o->workers) {
		io->data = o->objective == HETSGD_OBJ_QUAD ? NULL : &j->shard[rank - 1];
		io->thread_obj = *more;
	}
	return 0;
}

/*
 * One agreement before any training: same configuration everywhere, every
 * rank ready.  0, 1 (the exchange failed) or 2 (a rank may not train).
 */
static int agree_all(struct hetsgd_boot *boot, const struct job *j, struct agree *me, const char *err)
{
	int rank = hetsgd_boot_rank(boot), size = hetsgd_boot_size(boot), ret = 0;
	int shm = !strcmp(j->provider, "shm");
	struct agree *all;

	gethostname(me->host, sizeof(me->host) - 1);
	all = calloc((size_t)size, sizeof(*all));
	if (!all || hetsgd_boot_allgather(boot, me, all, sizeof(*me))) {
		fprintf(stderr, "hetsgd-train: rank %d: bootstrap exchange failed: %s\n", rank,
			hetsgd_errmsg());
		free(all);
		return 1;
	}
	for (int r = 1; r < size && !ret; r++)
		if (all[r].ok && all[0].ok && all[r].hash != all[0].hash) {
			if (rank == 0 || rank == r)
				fprintf(stderr, "hetsgd-train: rank %d runs a different configuration than rank 0 (hash %016llx, rank 0 %016llx): launch every rank with the same options, data and hetsgd build; refusing to train\n",
					r, (unsigned long long)all[r].hash,
					(unsigned long long)all[0].hash);
			ret = 2;
		}
	for (int r = 1; r < size && shm && !ret; r++)
		if (strncmp(all[r].host, all[0].host, sizeof(all[r].host))) {
			if (rank == 0)
				fprintf(stderr, "hetsgd-train: --provider shm%s needs every rank on one host; rank %d runs on %s, rank 0 on %s: use nodes with RDMA devices and --provider verbs, or one node\n",
					strcmp(j->o->provider, "auto") ? "" : " (auto found no RDMA device)",
					r, all[r].host, all[0].host);
			ret = 2;
		}
	for (int r = 0; r < size && !ret; r++)
		if (!all[r].ok) {
			/* rank r said why; the others say who stopped them */
			if (r == 0 && rank == 0 && err[0])
				fprintf(stderr, "hetsgd-train: %s\n", err);
			else if (rank == 0 && r != 0)
				fprintf(stderr, "hetsgd-train: rank %d could not start (its message is above); no rank trains\n", r);
			ret = 2;
		}
	free(all);
	return ret;
}

/* Rank 0 after a run: the outputs, the closing line and the plots. */
static int rank0_finish(struct job *j, const struct hetsgd_engine_result *res, const float *x,
			char *err, size_t n)
{
	const struct opts *o = j->o;
	const struct hetsgd_eval_point *last = res->npoints ? &res->points[res->npoints - 1] : NULL;
	char pngs[64] = "";
	int npng = 0;

	/* metrics.csv.part could not be written: the run stopped for it */
	if (j->out_err[0] || write_outputs(j, res, x, err, n)) {
		if (j->out_err[0])
			snprintf(err, n, "%s", j->out_err);
		fprintf(stderr, "hetsgd-train: %s\n", err);
		return 1;
	}
	printf("hetsgd-train: %s %s%s after %.1f s: %llu %s, %llu gradients",
	       o->name, strncmp(res->stop_reason, "stopped by ", 11) ? "stopped by " : "", res->stop_reason,
	       res->elapsed_s, (unsigned long long)res->updates,
	       o->method == HETSGD_METHOD_LOSCAR ? "rounds" : "updates",
	       (unsigned long long)res->grads);
	if (last)
		printf(", loss %.4g", last->loss);
	if (last && !isnan(last->acc))
		printf(", test accuracy %.4f", last->acc);
	if (o->objective == HETSGD_OBJ_QUAD)
		printf(", |x - x*| %.4g", dist_opt(j, x));
	if (res->nlost)
		printf(", %u of %u workers lost", res->nlost, res->nworkers);
	printf("\n");
	if (!o->no_plots) {
		const char *runs[1] = { o->out }, *labels[1] = { o->name };

		/* a failed gnuplot leaves no PNG, and none is claimed */
		if (plot_runs(o->out, "", runs, labels, 1, &npng, err, n))
			printf("hetsgd-train: plots: %s\n", err);
		for (int i = 0; i < npng; i++)
			snprintf(pngs + strlen(pngs), sizeof(pngs) - strlen(pngs), " %s", plot_pngs[i]);
	}
	/* summary.txt last: the mark of a complete run (see out_holds_run) */
	if (write_text_file(o, "summary.txt", err, n, summary_fn, j, res, x)) {
		fprintf(stderr, "hetsgd-train: %s\n", err);
		return 1;
	}
	printf("hetsgd-train: outputs in %s: metrics.csv workers.csv model.bin summary.txt%s%s\n",
	       o->out, npng ? " plot.gp" : "", pngs);
	return 0;
}

/* SIGTERM, SIGINT, SIGHUP: stop the run as at its budget, outputs written. */
static void on_signal(int sig)
{
	hetsgd_engine_request_stop(sig);
}

static void catch_stop_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static int rank_main(struct hetsgd_boot *boot, void *arg)
{
	struct job *j = arg;
	struct opts *o = j->o;
	int rank = hetsgd_boot_rank(boot), ret, sig = 0;
	struct agree me = { .hash = j->hash, .ok = 1 };
	struct hetsgd_engine_cfg cfg;
	struct hetsgd_engine_io io = { .x0 = j->x0, .d = j->d };
	struct hetsgd_engine_result res;
	struct hetsgd_tp_attr ta;
	struct hetsgd_objective *obj = NULL, **more = NULL;
	float *x = NULL;
	char err[1024] = "";
	const char *why = NULL;	/* rank 0: why the run failed, for summary.txt */
	int ran = 1;		/* res holds a result to free */

	catch_stop_signals();
	engine_cfg(o, j, &cfg);
	hetsgd_tp_attr_init(&ta);
	hetsgd_provider_parse(j->provider, &ta.provider);
	if (o->device[0])
		ta.verbs.device = o->device;
	if (rank_prepare(j, rank, &cfg, &io, &obj, &more, &x, err, sizeof(err)))
		me.ok = 0;
	if (!me.ok && err[0] && rank != 0)
		fprintf(stderr, "hetsgd-train: rank %d: %s\n", rank, err);
	ret = agree_all(boot, j, &me, err);
	if (ret) {
		why = !me.ok && err[0] ? err : "a rank could not start, or runs another configuration (the messages are on stderr)";
		goto out;
	}

	io.obj = obj;
	ret = hetsgd_engine_run(boot, &ta, &cfg, &io, &res);
	if (j->line_open)
		printf("\n");
	if (ret) {
		fprintf(stderr, "hetsgd-train: rank %d: %s\n", rank, hetsgd_algo_errmsg());
		snprintf(err, sizeof(err), "%s", hetsgd_algo_errmsg());
		why = err;
		ran = 0;
	} else if (rank == 0) {
		ret = rank0_finish(j, &res, x, err, sizeof(err));
		if (ret)
			why = err;
	}
	/* a run a signal stopped, outputs written: 128 + the signal, as if
	 * it had killed us (the server's run may have been stopped by a
	 * worker's signal) */
	if (ret == 0 && rank == 0 && res.stop_signal)
		sig = res.stop_signal;
	if (ran)
		hetsgd_engine_result_free(&res);
	/* a write that failed stopped the run through the engine's stop,
	 * which a signal also uses: a failure, not a signal's stop */
	if (j->out_err[0])
		goto out;
	if (!sig)
		sig = hetsgd_engine_stop_signal();
	if (sig && ret != 2) {
		ret = 128 + sig;
		goto out;
	}
out:
	/* a failed run keeps its rows so far in metrics.csv.part */
	if (j->metrics.f)
		fclose(j->metrics.f);
	j->metrics.f = NULL;
	if (rank == 0 && why && j->out_begun)
		write_failure(j, why);
	hetsgd_objective_destroy(obj);
	for (int t = 0; more && t < o->threads - 1; t++)
		hetsgd_objective_destroy(more[t]);
	free(more);
	free(x);
	return ret > 128 ? ret : ret == 2 ? 2 : ret ? 1 : 0;
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

/* Under srun: join the job, whose tasks fix the worker count.  0, or the
 * exit status. */
static int join_job(struct opts *o, struct hetsgd_boot **boot, int *rank)
{
	int size;

	if (hetsgd_boot_open(HETSGD_BOOT_AUTO, boot)) {
		fprintf(stderr, "hetsgd-train: cannot join the job: %s\n", hetsgd_errmsg());
		return 1;
	}
	*rank = hetsgd_boot_rank(*boot);
	size = hetsgd_boot_size(*boot);
	if (size < 2) {
		fprintf(stderr, "hetsgd-train: the job has 1 task; it needs a server and at least one worker: srun -n 2 or more (or run without srun for a local run)\n");
		return 2;
	}
	if (size <= (int)o->servers) {
		if (*rank == 0)
			fprintf(stderr, "hetsgd-train: --servers %u needs more than %u tasks (the servers and at least one worker); the job has %d: raise -n or lower --servers\n",
				o->servers, o->servers, size);
		return 2;
	}
	if (o->workers && o->workers != size - (int)o->servers) {
		if (*rank == 0)
			fprintf(stderr, "hetsgd-train: --workers %d contradicts the job's %d tasks (%u server%s + %d workers): drop --workers or change -n\n",
				o->workers, size, o->servers, o->servers == 1 ? "" : "s",
				size - (int)o->servers);
		return 2;
	}
	o->workers = size - (int)o->servers;
	return 0;
}

/* The configuration hash, and what the data (and --init's model) came
 * out as: the same options can read different files on different nodes. */
static uint64_t data_hash(const struct job *j)
{
	return (j->ntrain * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)j->d << 20) ^ ((uint64_t)j->classes << 50);
}

static uint64_t job_hash(const struct job *j)
{
	return opts_hash(j->o, j->provider) ^ data_hash(j) ^ j->init_hash;
}

/*
 * --resume: the checkpoint must come from this training configuration
 * (only how long and where the run goes may change); the options that
 * differ are named.  0, or 2 with the message printed.
 */
static int check_resume(struct job *j)
{
	char diff[1024];

	if (!j->resumed || j->ck.config_hash == j->train_hash)
		return 0;
	if (!opts_train_diff(j->o, j->ck.config, diff, sizeof(diff)))
		snprintf(diff, sizeof(diff), "the options are the same, so the data differ (samples, features or classes)");
	fprintf(stderr, "hetsgd-train: --resume %s: the checkpoint was made by another training configuration (hash %016llx; this run's is %016llx): %s; resume with the checkpoint's options (only --time, --epochs, targets, --provider, --device, --pin, --min-workers, --eval-interval and --checkpoint-every may change)\n",
		j->o->resume_dir, (unsigned long long)j->ck.config_hash, (unsigned long long)j->train_hash, diff);
	return 2;
}

static void print_job(const struct job *j, int srun)
{
	const struct opts *o = j->o;
	char samples[64] = "";

	if (j->ntrain)
		snprintf(samples, sizeof(samples), "%llu training samples, ",
			 (unsigned long long)j->ntrain);
	printf("hetsgd-train: %s: %s on %s (%sd = %zu), %d workers (%s profile, unit %.3g s), %s, %s launch; output %s\n",
	       o->name, hetsgd_obj_kind_name(o->objective), j->data_label, samples, j->d, o->workers,
	       hetsgd_profile_name(o->profile), o->time_unit, j->provider, srun ? "srun" : "local",
	       o->out);
}

/*
 * Every rank forked here; the exit status.  The server's status decides:
 * 0 when it finished (workers killed on the way were dropped and are
 * named), 128 + a signal when a signal stopped the run (to the launcher,
 * forwarded to every rank, or to one rank), else 1 with the launcher's
 * word on who failed first (a rank killed by a signal before those that
 * failed after it).
 */
static int run_local(struct job *j)
{
	int n = j->o->workers + (int)j->o->servers, *st = calloc((size_t)n, sizeof(int)), ret, r0, rc,
	    sig;

	if (!st) {
		fprintf(stderr, "hetsgd-train: out of memory\n");
		return 1;
	}
	ret = hetsgd_boot_local_run(n, rank_main, j, st);
	sig = hetsgd_boot_local_signal();
	r0 = WIFEXITED(st[0]) ? WEXITSTATUS(st[0]) : -1;
	if (ret && r0 == 0) {
		for (int r = 1; r < n; r++)
			if (WIFSIGNALED(st[r]) && r <= j->o->workers)
				fprintf(stderr, "hetsgd-train: rank %d (worker %d) was killed by signal %d (%s); the run finished without it\n",
					r, r - 1, WTERMSIG(st[r]), strsignal(WTERMSIG(st[r])));
	}
	if (r0 == 0)
		rc = 0;
	else if (r0 > 128 && r0 < 128 + 65)
		rc = r0;
	else if (sig)
		rc = 128 + sig;
	else
		rc = 1;
	if (rc == 1 || (rc && r0 != rc))
		/* each rank said what went wrong; the launcher says who */
		fprintf(stderr, "hetsgd-train: %s\n", ret ? hetsgd_errmsg() : "the server failed");
	free(st);
	return rc;
}

/* The checked job: printed (--check), this rank of an srun job, or every
 * rank forked here.  The exit status. */
static int run(struct job *j, struct hetsgd_boot *boot, int srun, int rank)
{
	if (j->o->check_only) {
		if (rank <= 0) {
			printf("hetsgd-train: configuration ok (hash %016llx):\n", (unsigned long long)j->hash);
			opts_dump(j->o, j->provider, stdout);
		}
		return 0;
	}
	if (srun)
		return rank_main(boot, j);
	return run_local(j);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct job j = { .o = &o, .rows_mu = PTHREAD_MUTEX_INITIALIZER };
	char err[1024] = "";
	int srun, ret, rc, rank = -1;
	struct hetsgd_boot *boot = NULL;
	struct hetsgd_engine_cfg c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	opts_default(&o);
	if (opts_parse_args(&o, argc, argv, err, sizeof(err)) || opts_check(&o, err, sizeof(err))) {
		fprintf(stderr, "hetsgd-train: %s\n", err);
		return 2;
	}
	srun = o.launch == LAUNCH_SRUN || (o.launch == LAUNCH_AUTO && under_launcher());
	if (srun) {
		/* this process is the rank: a signal while it loads stops the
		 * run once it starts (a local launcher forwards its own) */
		catch_stop_signals();
		rc = join_job(&o, &boot, &rank);
		if (rc) {
			hetsgd_boot_close(boot);
			return rc;
		}
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
	ret = job_load(&j, srun ? (rank > 0 && rank <= o.workers ? rank - 1 : -2) : -1, !srun || rank == 0, err,
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
	engine_cfg(&o, &j, &c);
	if (hetsgd_engine_cfg_check(&c, (uint32_t)o.workers, j.d)) {
		if (rank <= 0)
			fprintf(stderr, "hetsgd-train: %s\n", hetsgd_algo_errmsg());
		rc = 2;
		goto done;
	}
	j.hash = job_hash(&j);
	j.train_hash = opts_train_hash(&o) ^ data_hash(&j);
	rc = check_resume(&j);
	if (rc) {
		if (srun && !o.check_only) {
			j.load_failed = 1;
			rank_main(boot, &j);
		}
		goto done;
	}
	if (rank <= 0)
		print_job(&j, srun);
	rc = run(&j, boot, srun, rank);
done:
	hetsgd_boot_close(boot);
	job_free(&j);
	return rc;
}
