/*
 * hetsgd-train's outputs (train_out.h): what rank 0 writes into the
 * output folder, and how a folder holding a previous run is told apart.
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

/* ---- progress and outputs (rank 0) ---- */

double dist_opt(const struct job *j, const float *x)
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

/* Append a row to the ones a checkpoint keeps: 0 or -ENOMEM. */
static int keep_row(struct job *j, const char *row, size_t len)
{
	int ret = 0;

	pthread_mutex_lock(&j->rows_mu);
	if (j->rows_len + len + 1 > j->rows_cap) {
		size_t cap = (j->rows_len + len + 1) * 2;
		char *p = realloc(j->rows, cap);

		if (p) {
			j->rows = p;
			j->rows_cap = cap;
		} else {
			ret = -ENOMEM;
		}
	}
	if (!ret) {
		memcpy(j->rows + j->rows_len, row, len);
		j->rows_len += len;
		j->rows[j->rows_len] = 0;
	}
	pthread_mutex_unlock(&j->rows_mu);
	return ret;
}

/*
 * The engine's checkpoint (its server thread): the training hash, the
 * whole configuration (what --resume reads back) and the rows of
 * metrics.csv so far, saved as OUT/checkpoint.hck.
 */
int on_checkpoint(void *arg, struct hetsgd_ckpt *ck)
{
	struct job *j = arg;
	char path[PATH_MAX_LEN + 32];
	char *cfg = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&cfg, &len);
	int ret;

	if (!f)
		return hetsgd_error(-ENOMEM, "out of memory for the checkpoint's configuration");
	opts_dump(j->o, j->provider, f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/%s", j->o->out, CHECKPOINT_NAME);
	ck->config_hash = j->train_hash;
	ck->config = cfg;
	ck->config_len = len;
	pthread_mutex_lock(&j->rows_mu);
	ck->extra = j->rows;
	ck->extra_len = j->rows_len;
	ret = hetsgd_ckpt_save(path, ck);
	pthread_mutex_unlock(&j->rows_mu);
	ck->extra = NULL;
	free(cfg);
	return ret;
}

void on_eval(void *arg, const struct hetsgd_eval_point *pt)
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
		char *row = NULL;
		size_t len = 0;
		FILE *r = open_memstream(&row, &len);

		if (!r) {
			snprintf(j->out_err, sizeof(j->out_err), "out of memory for a row of metrics.csv");
			hetsgd_engine_request_stop(SIGTERM);
			return;
		}
		fprintf(r, "%.3f,%llu,%llu,", pt->t, (unsigned long long)pt->grads,
			(unsigned long long)pt->updates);
		csv_num(r, epochs, 0);
		csv_num(r, pt->loss, 0);
		csv_num(r, pt->acc, 0);
		csv_num(r, pt->gnorm, 0);
		csv_num(r, pt->idle_share, 0);
		csv_num(r, dist, 0);
		csv_num(r, pt->pooled_loss, 0);
		for (int i = 0; i < j->nworkers; i++)
			csv_num(r, pt->worker_loss ? pt->worker_loss[i] : NAN, 0);
		fprintf(r, "%d\n", pt->final);
		fclose(r);
		fwrite(row, 1, len, m);
		/* a checkpoint keeps the rows so far (not the final one: a
		 * resumed run goes on past it) */
		if (o->checkpoint_every > 0 && !pt->final && keep_row(j, row, len)) {
			free(row);
			snprintf(j->out_err, sizeof(j->out_err), "out of memory for the rows a checkpoint keeps");
			hetsgd_engine_request_stop(SIGTERM);
			return;
		}
		free(row);
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
void on_lost(void *arg, const struct hetsgd_worker_stats *w)
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
					 "plot.gp", "loss.png", "loss-work.png", "accuracy.png", CHECKPOINT_NAME };

/* --resume into the folder it resumes from: the run there is the one
 * that goes on, and its checkpoint stays until the next one replaces it. */
static int resumes_here(const struct opts *o)
{
	struct stat a, b;

	return o->resume[0] && !stat(o->out, &a) && !stat(o->resume_dir, &b) && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/*
 * What marks a previous complete run: its summary.txt, written last, with
 * a stop reason that is neither "failed: ..." (a run that failed says why
 * there, and its folder may be reused) nor "unfinished: ..." (written when
 * a run starts: it is still running, or its server was killed).  A folder
 * with no summary.txt holds no run, whatever else is in it.
 * *reason gets the stop reason ("" when there is none).
 */
int out_holds_run(const struct opts *o, char *reason, size_t n)
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
int prepare_out(const struct opts *o, char *err, size_t n)
{
	char path[PATH_MAX_LEN + 32], reason[1024];
	int r = mkdir_p(o->out);

	if (r)
		return train_err(err, n, "--out %s: cannot create it: %s", o->out, strerror(-r));
	if (o->force && resumes_here(o))
		return train_err(err, n, "--force would clear the run that --resume %s goes on from: drop --force (a resumed run replaces that folder's outputs as it ends)",
				 o->resume_dir);
	if (!o->force && !resumes_here(o) && out_holds_run(o, reason, sizeof(reason))) {
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
int clear_out(const struct opts *o, char *err, size_t n)
{
	char path[PATH_MAX_LEN + 64];

	for (size_t i = 0; i < sizeof(out_names) / sizeof(out_names[0]); i++)
		for (int t = 0; t < 3; t++) {
			if (t == 2 && strcmp(out_names[i], "metrics.csv"))
				continue;
			if (t == 0 && !strcmp(out_names[i], CHECKPOINT_NAME) && resumes_here(o))
				continue;
			snprintf(path, sizeof(path), "%s/%s%s", o->out, out_names[i],
				 t == 0 ? "" : t == 1 ? ".tmp" : ".part");
			if (unlink(path) && errno != ENOENT)
				return train_err(err, n, "cannot remove the previous run's %s: %s", path,
						 strerror(errno));
		}
	return 0;
}

/*
 * Rank 0, just before the agreement: the previous run's files removed
 * (prepare_out allowed it: --force, a failed run, or none), summary.txt
 * saying "unfinished", metrics.csv.part begun.  From here on a failure
 * is recorded in summary.txt.
 */
int begin_out(struct job *j, char *err, size_t n)
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
	/* a resumed run's rows so far, which its checkpoint kept */
	if (j->resumed && j->ck.extra_len) {
		fwrite(j->ck.extra, 1, j->ck.extra_len, f);
		if (o->checkpoint_every > 0) {
			j->rows = malloc(j->ck.extra_len + 1);
			if (!j->rows) {
				train_err(err, n, "out of memory for the checkpoint's rows");
				return -1;
			}
			memcpy(j->rows, j->ck.extra, j->ck.extra_len + 1);
			j->rows_len = j->ck.extra_len;
			j->rows_cap = j->ck.extra_len + 1;
		}
	}
	return outfile_flush(&j->metrics, err, n) ? -1 : 0;
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

/* --objective quad: |x* - x_w|, x_w the minimiser of sum_i w_i f_i with
 * w_i the share of the gradients worker i computed, where vanilla ASGD
 * settles; nothing when a count is missing. */
static void summary_weighted_optimum(FILE *f, const struct job *j, const struct hetsgd_engine_result *res)
{
	size_t k = (size_t)j->nworkers;
	double *w = calloc(k, sizeof(double));
	float *xw = malloc(j->d * sizeof(float));

	if (w && xw) {
		for (uint32_t i = 0; i < res->nworkers; i++)
			if (res->workers[i].worker < k)
				w[res->workers[i].worker] = (double)res->workers[i].steps;
		if (hetsgd_quad_weighted_optimum(j->d, k, (const float *const *)j->qa,
						 (const float *const *)j->qb, w, xw) == 0)
			fprintf(f, "distance-optimum-to-weighted = %.6g\n", dist_opt(j, xw));
	}
	free(w);
	free(xw);
}

/*
 * Who received how much while training (the final models and statistics
 * after STOP left out): the engine's bytes, headers included, of the
 * server and of the busiest live rank, in all and per update (LOSCAR: per
 * round), and how long the server's transport took to connect.  With
 * server averaging the server's grows with the workers; sharded, the
 * busiest rank's stays flat (make bench-scale measures it).
 */
/*
 * The pairs the transport connected and what they hold: the server's, and
 * the fewest and most over the workers.  conns: queue pairs (verbs) or
 * shared-memory segments this rank created (shm).
 */
static void summary_footprint(FILE *f, const struct hetsgd_engine_result *res)
{
	fprintf(f, "connections = %s\n", hetsgd_tp_pattern_name(res->pattern));
	fprintf(f, "tp-peers-server = %u\ntp-conns-server = %u\ntp-registered-bytes-server = %llu\n"
		"tp-connect-s-server = %.4f\n", res->fp.peers, res->fp.conns,
		(unsigned long long)res->fp.registered_bytes, res->fp.connect_s);
	if (!res->fp_workers_ok)
		return;
	fprintf(f, "tp-peers-workers = %u .. %u\ntp-conns-workers = %u .. %u\n"
		"tp-registered-bytes-workers = %llu .. %llu\ntp-connect-s-workers = %.4f .. %.4f\n",
		res->fp_workers_min.peers, res->fp_workers_max.peers, res->fp_workers_min.conns,
		res->fp_workers_max.conns, (unsigned long long)res->fp_workers_min.registered_bytes,
		(unsigned long long)res->fp_workers_max.registered_bytes, res->fp_workers_min.connect_s,
		res->fp_workers_max.connect_s);
}

static void summary_traffic(FILE *f, const struct job *j, const struct hetsgd_engine_result *res)
{
	uint64_t most = res->bytes_recv_training;
	uint32_t busiest = 0;

	for (uint32_t i = 0; i < res->nworkers; i++)
		if (!res->workers[i].lost && res->workers[i].bytes_recv_training > most) {
			most = res->workers[i].bytes_recv_training;
			busiest = i + 1;
		}
	if (j->o->method == HETSGD_METHOD_LOSCAR || j->o->method == HETSGD_METHOD_SYNC)
		fprintf(f, "averaging-used = %s\n", hetsgd_averaging_name(res->averaging));
	fprintf(f, "connect-s = %.4f\n", res->connect_s);
	summary_footprint(f, res);
	fprintf(f, "bytes-received-server = %llu\n", (unsigned long long)res->bytes_recv);
	/* while training: the final models and statistics after STOP left out */
	fprintf(f, "bytes-received-training-server = %llu\n",
		(unsigned long long)res->bytes_recv_training);
	fprintf(f, "bytes-received-training-busiest = %llu\nbusiest-rank = %u\n",
		(unsigned long long)most, busiest);
	fprintf(f, "bytes-received-training-busiest-per-update = %.0f\n",
		res->updates ? (double)most / (double)res->updates : 0.0);
	/* a sharded parameter server: each shard's share (shard 0 is rank 0) */
	fprintf(f, "servers = %u\n", res->nservers ? res->nservers : 1);
	for (uint32_t i = 0; i < res->nservers; i++) {
		const struct hetsgd_server_stats *sv = &res->servers[i];

		fprintf(f, "server-shard-%u = rank %d, coordinates [%u, %u), %llu updates, %llu dropped, %llu bytes received, %llu bytes sent\n",
			sv->shard, sv->rank, sv->lo, sv->hi, (unsigned long long)sv->updates,
			(unsigned long long)sv->dropped, (unsigned long long)sv->bytes_recv,
			(unsigned long long)sv->bytes_sent);
	}
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
	if (j->resumed) {
		char val[PATH_MAX_LEN + 64];

		snprintf(val, sizeof(val), "%s at %.3f s", j->o->resume, j->ck.t);
		opts_kv(f, "resumed-from", val);
	}
	if (res->checkpoints)
		fprintf(f, "checkpoints = %llu\nlast-checkpoint-s = %.3f\n",
			(unsigned long long)res->checkpoints, res->checkpoint_t);
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
	summary_traffic(f, j, res);
	if (last) {
		fprintf(f, "final-loss = %.6g\nfinal-accuracy = %.6g\nfinal-grad-norm = %.6g\nwaiting-share = %.4f\n",
			last->loss, last->acc, last->gnorm, last->idle_share);
		if (o->objective == HETSGD_OBJ_QUAD) {
			fprintf(f, "final-distance-to-optimum = %.6g\n", dist_opt(j, x));
			summary_weighted_optimum(f, j, res);
		}
	}
}

/* Write a text file of the run's folder through fn, under NAME.tmp
 * renamed into place when complete; every failure named. */
int write_text_file(const struct opts *o, const char *name, char *err, size_t n,
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

void unfinished_fn(FILE *f, const void *a, const void *b, const void *c)
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
void write_failure(const struct job *j, const char *why)
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

void summary_fn(FILE *f, const void *a, const void *b, const void *c)
{
	write_summary(f, a, b, c);
}

int write_outputs(struct job *j, const struct hetsgd_engine_result *res, const float *x,
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
