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
	FILE *m = j->metrics.f;
	char line[256];

	/* metrics.csv.part gets a row per point, flushed: meanwhile a reader
	 * sees the whole rows so far there, and no metrics.csv, which
	 * appears (renamed) only when the run has ended and its model and
	 * workers.csv are written */
	if (m) {
		fprintf(m, "%.3f,%llu,%llu,", pt->t, (unsigned long long)pt->grads,
			(unsigned long long)pt->updates);
		csv_num(m, epochs, 0);
		csv_num(m, pt->loss, 0);
		csv_num(m, pt->acc, 0);
		csv_num(m, pt->gnorm, 0);
		csv_num(m, pt->idle_share, 0);
		csv_num(m, dist, 0);
		csv_num(m, pt->pooled_loss, 0);
		for (int i = 0; i < j->nworkers; i++)
			csv_num(m, pt->worker_loss ? pt->worker_loss[i] : NAN, 0);
		fprintf(m, "%d\n", pt->final);
		if (outfile_flush(&j->metrics, j->out_err, sizeof(j->out_err))) {
			/* a full disk: no more rows; the run stops through the
			 * engine's one stop (as a signal would) and then fails
			 * with this message; the rows so far stay in .part */
			fclose(m);
			j->metrics.f = NULL;
			hetsgd_engine_request_stop(SIGTERM);
		}
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

/* The server drops a worker whose process ended: say so as it happens. */
static void on_lost(void *arg, const struct hetsgd_worker_stats *w)
{
	struct job *j = arg;

	if (j->line_open)
		printf("\n");
	j->line_open = 0;
	fflush(stdout);
	fprintf(stderr, "hetsgd-train: worker %u (rank %u) lost at %.1f s after %llu steps: %s; training goes on without it\n",
		w->worker, w->worker + 1, w->lost_at_s, (unsigned long long)w->steps, w->lost_why);
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

/*
 * The files of a run's folder: the only names --force (or a reused
 * folder) removes, with their temporary names (NAME.tmp, metrics.csv.part).
 */
static const char *const out_names[] = { "metrics.csv", "workers.csv", "summary.txt", "model.bin",
					 "plot.gp", "loss.png", "loss-work.png", "accuracy.png" };

/*
 * What marks a previous complete run: its summary.txt, written last, with
 * a stop reason that is neither "failed: ..." (a run that failed says why
 * there, and its folder may be reused) nor "unfinished: ..." (written when
 * a run starts: it is still running, or its server was killed).  A folder
 * with no summary.txt holds no run, whatever else is in it.
 * *reason gets the stop reason ("" when there is none).
 */
static int out_holds_run(const struct opts *o, char *reason, size_t n)
{
	char path[PATH_MAX_LEN + 32], line[1024];
	FILE *f;
	int found = 0;

	reason[0] = 0;
	snprintf(path, sizeof(path), "%s/summary.txt", o->out);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		if (!strncmp(line, "stop-reason = ", 14)) {
			line[strcspn(line, "\n")] = 0;
			snprintf(reason, n, "%s", line + 14);
			found = 1;
		}
	fclose(f);
	if (!found)
		snprintf(reason, n, "(none: summary.txt has no stop-reason line)");
	return strncmp(reason, "failed: ", 8) != 0;
}

/* The folder must be ours to write and must not hold a run we would
 * overwrite without being told to.  Nothing is removed here. */
static int prepare_out(const struct opts *o, char *err, size_t n)
{
	char path[PATH_MAX_LEN + 32], reason[1024];
	int r = mkdir_p(o->out);

	if (r)
		return train_err(err, n, "--out %s: cannot create it: %s", o->out, strerror(-r));
	if (!o->force && out_holds_run(o, reason, sizeof(reason))) {
		if (!strncmp(reason, "unfinished: ", 12))
			return train_err(err, n, "--out %s holds a run that has not finished (its summary.txt says unfinished): it is still running, or its server was killed; choose another folder or pass --force",
					 o->out);
		return train_err(err, n, "--out %s holds a previous run (its summary.txt says it ended: %s): choose another folder or pass --force",
				 o->out, reason);
	}
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

/* Remove the previous run's files (out_names, nothing else) so that no
 * old file is mixed with the new run's. */
static int clear_out(const struct opts *o, char *err, size_t n)
{
	char path[PATH_MAX_LEN + 64];

	for (size_t i = 0; i < sizeof(out_names) / sizeof(out_names[0]); i++)
		for (int t = 0; t < 3; t++) {
			if (t == 2 && strcmp(out_names[i], "metrics.csv"))
				continue;
			snprintf(path, sizeof(path), "%s/%s%s", o->out, out_names[i],
				 t == 0 ? "" : t == 1 ? ".tmp" : ".part");
			if (unlink(path) && errno != ENOENT)
				return train_err(err, n, "cannot remove the previous run's %s: %s", path,
						 strerror(errno));
		}
	return 0;
}

/* workers.csv: a line per worker; state done, or lost (its process ended;
 * its figures are the last the server heard, lost_at_s when it was dropped). */
static void write_workers(FILE *f, const struct hetsgd_engine_result *res)
{
	fprintf(f, "worker,tau_target_s,tau_est_s,steps,rounds,overlap_steps,dropped,overruns,compute_s,idle_s,elapsed_s,idle_share,bytes_sent,bytes_recv,state,lost_at_s\n");
	for (uint32_t i = 0; i < res->nworkers; i++) {
		const struct hetsgd_worker_stats *w = &res->workers[i];

		fprintf(f, "%u,%.6g,%.6g,%llu,%llu,%llu,%llu,%llu,%.3f,%.3f,%.3f,%.4f,%llu,%llu,%s,",
			w->worker, w->tau_target, w->tau_est, (unsigned long long)w->steps,
			(unsigned long long)w->rounds, (unsigned long long)w->overlap_steps,
			(unsigned long long)w->dropped, (unsigned long long)w->overruns, w->compute_s,
			w->idle_s, w->elapsed_s, w->elapsed_s > 0 ? w->idle_s / w->elapsed_s : 0.0,
			(unsigned long long)w->bytes_sent, (unsigned long long)w->bytes_recv,
			w->lost ? "lost" : "done");
		if (w->lost)
			fprintf(f, "%.3f", w->lost_at_s);
		fputc('\n', f);
	}
}

/* summary.txt's first lines: the run and its configuration. */
static void summary_config(FILE *f, const struct job *j)
{
	const struct opts *o = j->o;

	fputs("# hetsgd-train run ", f);
	quote_kv(f, o->name);
	fputc('\n', f);
	opts_kv(f, "name", o->name);
	fprintf(f, "config-hash = %016llx\n", (unsigned long long)j->hash);
	opts_dump(o, j->provider, f);
}

static void summary_data(FILE *f, const struct job *j)
{
	opts_kv(f, "data-label", j->data_label);
	fprintf(f, "d = %zu\ntraining-samples = %llu\n", j->d, (unsigned long long)j->ntrain);
}

/* summary.txt: the configuration, where it ran, how it ended, the final numbers. */
static void write_summary(FILE *f, const struct job *j, const struct hetsgd_engine_result *res, const float *x)
{
	const struct opts *o = j->o;
	const struct hetsgd_eval_point *last = res->npoints ? &res->points[res->npoints - 1] : NULL;

	summary_config(f, j);
	/* placement can quote the system's own text (device names, errors) */
	opts_kv(f, "transport", res->provider);
	opts_kv(f, "placement", res->placement);
	/* every rank's, by host: a line per rank says where it really ran */
	for (uint32_t r = 0; r < res->nplacements; r++) {
		char key[32];

		snprintf(key, sizeof(key), "placement-rank-%u", r);
		opts_kv(f, key, res->placements[r]);
	}
	summary_data(f, j);
	opts_kv(f, "stop-reason", res->stop_reason);
	fprintf(f, "lost-workers = %u\n", res->nlost);
	for (uint32_t i = 0; i < res->nworkers; i++) {
		const struct hetsgd_worker_stats *w = &res->workers[i];
		char key[32], val[320];

		if (!w->lost)
			continue;
		snprintf(key, sizeof(key), "lost-worker-%u", w->worker);
		snprintf(val, sizeof(val), "rank %u at %.3f s, last step %llu: %s", w->worker + 1,
			 w->lost_at_s, (unsigned long long)w->steps, w->lost_why);
		opts_kv(f, key, val);
	}
	fprintf(f, "elapsed-s = %.3f\nupdates = %llu\ngradients = %llu\ndropped = %llu\n",
		res->elapsed_s, (unsigned long long)res->updates,
		(unsigned long long)res->grads, (unsigned long long)res->dropped);
	if (last) {
		fprintf(f, "final-loss = %.6g\nfinal-accuracy = %.6g\nfinal-grad-norm = %.6g\nwaiting-share = %.4f\n",
			last->loss, last->acc, last->gnorm, last->idle_share);
		if (o->objective == HETSGD_OBJ_QUAD)
			fprintf(f, "final-distance-to-optimum = %.6g\n", dist_opt(j, x));
	}
}

/* Write a text file of the run's folder through fn, under NAME.tmp
 * renamed into place when complete; every failure named. */
static int write_text_file(const struct opts *o, const char *name, char *err, size_t n,
			   void (*fn)(FILE *f, const void *a, const void *b, const void *c),
			   const void *a, const void *b, const void *c)
{
	char path[PATH_MAX_LEN + 32];
	struct outfile of;

	snprintf(path, sizeof(path), "%s/%s", o->out, name);
	if (outfile_open(&of, path, ".tmp", err, n))
		return -EIO;
	fn(of.f, a, b, c);
	return outfile_commit(&of, err, n) ? -EIO : 0;
}

/*
 * summary.txt while the run goes: stop reason "unfinished", which
 * prepare_out refuses without --force, and room (a comment line of
 * spaces) that write_failure() can overwrite in place with the reason
 * when the disk is too full for a new file.
 */
#define FAIL_ROOM 700

static void unfinished_fn(FILE *f, const void *a, const void *b, const void *c)
{
	(void)b;
	(void)c;
	summary_config(f, a);
	summary_data(f, a);
	opts_kv(f, "stop-reason", "unfinished: the run is still going, or its server was killed before it could write its outputs");
	fprintf(f, "# room for the reason, should the run fail: %*s\n", FAIL_ROOM, "");
}

/*
 * A run that failed after it began its outputs: summary.txt says
 * "stop-reason = failed: WHY" (a folder whose run failed may be reused
 * without --force).  Through NAME.tmp when the disk allows, else over the
 * unfinished summary in place, into the room it kept.
 */
static void write_failure(const struct job *j, const char *why)
{
	char path[PATH_MAX_LEN + 32], reason[FAIL_ROOM], err[1200];
	char *buf = NULL;
	size_t len = 0;
	struct outfile of;
	FILE *m = open_memstream(&buf, &len);
	int fd, ok = 0;

	if (!m)
		return;
	/* no control character (quote_kv would make it 4 bytes) */
	snprintf(reason, sizeof(reason), "failed: %s", why);
	for (char *p = reason; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	summary_config(m, j);
	summary_data(m, j);
	opts_kv(m, "stop-reason", reason);
	if (fclose(m)) {
		free(buf);
		return;
	}
	snprintf(path, sizeof(path), "%s/summary.txt", j->o->out);
	if (outfile_open(&of, path, ".tmp", err, sizeof(err)) == 0) {
		fwrite(buf, 1, len, of.f);
		ok = outfile_commit(&of, err, sizeof(err)) == 0;
	}
	if (!ok) {
		fd = open(path, O_WRONLY);
		ok = fd >= 0 && pwrite(fd, buf, len, 0) == (ssize_t)len && ftruncate(fd, (off_t)len) == 0 &&
		     fsync(fd) == 0;
		if (fd >= 0 && close(fd))
			ok = 0;
	}
	if (!ok)
		fprintf(stderr, "hetsgd-train: and the failure could not be recorded in %s: %s\n", path, err);
	free(buf);
}

static void workers_fn(FILE *f, const void *a, const void *b, const void *c)
{
	(void)b;
	(void)c;
	write_workers(f, a);
}

static void summary_fn(FILE *f, const void *a, const void *b, const void *c)
{
	write_summary(f, a, b, c);
}

static int write_outputs(struct job *j, const struct hetsgd_engine_result *res, const float *x,
			 char *err, size_t n)
{
	const struct opts *o = j->o;
	char path[PATH_MAX_LEN + 32];
	struct hetsgd_model_info mi = { .d = j->d, .kind = o->objective, .p = j->p,
					.classes = j->classes, .config_hash = j->hash };

	if (o->objective == HETSGD_OBJ_MLP)
		mi.hidden = o->hidden;
	if (o->objective == HETSGD_OBJ_SOFTMAX && o->bias)
		mi.flags = 1;
	/* model.bin through model.bin.tmp (hetsgd_model_save) */
	snprintf(path, sizeof(path), "%s/model.bin", o->out);
	if (hetsgd_model_save(path, &mi, x)) {
		snprintf(err, n, "%s", hetsgd_algo_errmsg());
		return -EIO;
	}
	if (write_text_file(o, "workers.csv", err, n, workers_fn, res, NULL, NULL))
		return -EIO;
	/* metrics.csv last of the data: its rows end with the final point */
	return outfile_commit(&j->metrics, err, n) ? -EIO : 0;
}

/* ---- the ranks ---- */

/*
 * Rank 0, just before the agreement: the previous run's files removed
 * (prepare_out allowed it: --force, a failed run, or none), summary.txt
 * saying "unfinished", metrics.csv.part begun.  From here on a failure
 * is recorded in summary.txt.
 */
static int begin_out(struct job *j, char *err, size_t n)
{
	const struct opts *o = j->o;
	char path[PATH_MAX_LEN + 32];
	FILE *f;

	if (clear_out(o, err, n))
		return -1;
	if (write_text_file(o, "summary.txt", err, n, unfinished_fn, j, NULL, NULL))
		return -1;
	j->out_begun = 1;
	snprintf(path, sizeof(path), "%s/metrics.csv", o->out);
	if (outfile_open(&j->metrics, path, ".part", err, n))
		return -1;
	f = j->metrics.f;
	fprintf(f, "time_s,grads,updates,epochs,loss,accuracy,grad_norm,wait_share,dist_opt,pooled_loss");
	for (int i = 0; i < j->nworkers; i++)
		fprintf(f, ",loss_w%d", i);
	fprintf(f, ",final\n");
	return outfile_flush(&j->metrics, err, n) ? -1 : 0;
}

/* The server's objective (for evaluation), or worker rank-1's and one
 * more instance per extra compute thread. */
static int make_rank_objectives(const struct job *j, int rank, struct hetsgd_objective **obj,
				struct hetsgd_objective ***more, char *err, size_t n)
{
	int threads = rank > 0 ? j->o->threads : 1;

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

/* The engine's configuration from the options (and the data's size). */
static void engine_cfg(const struct opts *o, const struct job *j, struct hetsgd_engine_cfg *c)
{
	hetsgd_engine_cfg_init(c);
	c->method = o->method;
	c->policy = o->policy;
	c->ringmaster_r = o->ringmaster_r;
	c->malenia_s = o->malenia_s;
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
	c->min_workers = o->min_workers;
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
		*x = malloc(j->d * sizeof(float));
		io->x_out = *x;
		io->eval = j->eval.n ? &j->eval : j->test.n ? &j->test : NULL;
		io->worker_eval = j->weval_ptr;
		io->test = j->test.n ? &j->test : NULL;
		if (!*x) {
			snprintf(err, n, "out of memory for a model of %zu values", j->d);
			return -1;
		}
	} else {
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
	if (o->workers && o->workers != size - 1) {
		if (*rank == 0)
			fprintf(stderr, "hetsgd-train: --workers %d contradicts the job's %d tasks (one server + %d workers): drop --workers or change -n\n",
				o->workers, size, size - 1);
		return 2;
	}
	o->workers = size - 1;
	return 0;
}

/* The configuration hash, and what the data (and --init's model) came
 * out as: the same options can read different files on different nodes. */
static uint64_t job_hash(const struct job *j)
{
	return opts_hash(j->o, j->provider) ^ (j->ntrain * 0x9e3779b97f4a7c15ull) ^
	       ((uint64_t)j->d << 20) ^ ((uint64_t)j->classes << 50) ^ j->init_hash;
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
	int n = j->o->workers + 1, *st = calloc((size_t)n, sizeof(int)), ret, r0, rc, sig;

	if (!st) {
		fprintf(stderr, "hetsgd-train: out of memory\n");
		return 1;
	}
	ret = hetsgd_boot_local_run(n, rank_main, j, st);
	sig = hetsgd_boot_local_signal();
	r0 = WIFEXITED(st[0]) ? WEXITSTATUS(st[0]) : -1;
	if (ret && r0 == 0) {
		for (int r = 1; r < n; r++)
			if (WIFSIGNALED(st[r]))
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
	struct job j = { .o = &o };
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
	ret = job_load(&j, srun ? (rank > 0 ? rank - 1 : -2) : -1, !srun || rank == 0, err,
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
	if (rank <= 0)
		print_job(&j, srun);
	rc = run(&j, boot, srun, rank);
done:
	hetsgd_boot_close(boot);
	job_free(&j);
	return rc;
}
