/*
 * The server's evaluation (server.h): loss, gradient norm and accuracy of
 * copies of the model, on a thread of its own so that evaluation never
 * holds up an update; the final point on the caller's thread.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pserver.h"
#include "server.h"

static double server_idle_share(const struct server *s)
{
	double idle = 0, wall = 0;

	for (uint32_t i = 0; i < s->e->n; i++) {
		idle += s->idle[i];
		wall += s->wall[i];
	}
	return wall > 0 ? idle / wall : 0.0;
}

/* Loss and full gradient of x on all of ds (grad may be NULL). */
static int loss_on(struct server *s, const float *x, const struct hetsgd_dataset *ds, float *loss, float *grad)
{
	struct hetsgd_objective *obj = s->e->io->obj;
	size_t m = ds ? (size_t)ds->n : 0;

	for (size_t i = 0; ds && i < m; i++)
		s->eidx[i] = (uint32_t)i;
	return grad ? hetsgd_objective_loss_grad(obj, x, ds, ds ? s->eidx : NULL, m, loss, grad)
		    : hetsgd_objective_loss(obj, x, ds, ds ? s->eidx : NULL, m, loss);
}

/*
 * f = (1/n) sum_i f_i at x, each f_i on worker i's evaluation sample, and
 * the norm of its gradient: the objective both methods minimise, whatever
 * the shards' sizes.
 */
static int worker_losses(struct server *s, const float *x, struct hetsgd_eval_point *pt)
{
	const struct hetsgd_engine_io *io = s->e->io;
	size_t d = s->e->d;
	double sum = 0, nrm = 0;
	uint32_t n = s->e->n;

	memset(s->eg, 0, d * sizeof(float));
	for (uint32_t i = 0; i < n; i++) {
		float l;
		int ret = loss_on(s, x, io->worker_eval[i], &l, s->wg);

		if (ret)
			return ret;
		s->wloss[i] = l;
		sum += l;
		for (size_t j = 0; j < d; j++)
			s->eg[j] += s->wg[j] / (float)n;
	}
	for (size_t j = 0; j < d; j++)
		nrm += (double)s->eg[j] * s->eg[j];
	pt->loss = sum / n;
	pt->gnorm = sqrt(nrm);
	pt->worker_loss = s->wloss;
	return 0;
}

/* Evaluate x: the loss and its gradient's norm, and accuracy on the test set. */
static int evaluate(struct server *s, const float *x, struct hetsgd_eval_point *pt)
{
	const struct hetsgd_engine_io *io = s->e->io;
	struct hetsgd_objective *obj = io->obj;
	float loss;
	int ret;

	pt->loss = pt->gnorm = pt->acc = pt->pooled_loss = NAN;
	pt->worker_loss = NULL;
	if (!obj)
		return 0;
	if (io->worker_eval && obj->kind != HETSGD_OBJ_QUAD) {
		ret = worker_losses(s, x, pt);
		if (!ret && io->eval)
			ret = loss_on(s, x, io->eval, &loss, NULL);
		if (ret)
			return ret;
		if (io->eval)
			pt->pooled_loss = loss;
	} else if (io->eval || obj->kind == HETSGD_OBJ_QUAD) {
		const struct hetsgd_dataset *ev = obj->kind == HETSGD_OBJ_QUAD ? NULL : io->eval;
		double nrm = 0;

		ret = loss_on(s, x, ev, &loss, s->eg);
		if (ret)
			return ret;
		for (size_t j = 0; j < s->e->d; j++)
			nrm += (double)s->eg[j] * s->eg[j];
		pt->loss = loss;
		pt->gnorm = sqrt(nrm);
	}
	if (io->test && obj->nclass) {
		ret = hetsgd_objective_accuracy(obj, x, io->test, &pt->acc);
		if (ret)
			return ret;
	}
	return 0;
}

static int record_point(struct server *s, const struct hetsgd_eval_point *pt)
{
	const struct hetsgd_engine_cfg *c = s->e->cfg;

	if (s->npts == s->cappts) {
		size_t cap = s->cappts ? 2 * s->cappts : 64;
		struct hetsgd_eval_point *p = realloc(s->pts, cap * sizeof(*p));

		if (!p)
			return algo_err(-ENOMEM, "out of memory for evaluation points");
		s->pts = p;
		s->cappts = cap;
	}
	s->pts[s->npts] = *pt;
	s->pts[s->npts].worker_loss = NULL;
	s->pts[s->npts++].x = NULL;
	if (c->on_eval)
		c->on_eval(c->on_eval_arg, pt);
	if (!pt->final && !atomic_load(&s->target_hit)) {
		if (c->target_loss > 0 && pt->loss <= c->target_loss) {
			snprintf(s->target_why, sizeof(s->target_why), "target loss");
			atomic_store(&s->target_hit, 1);
		} else if (c->target_acc > 0 && pt->acc >= c->target_acc) {
			snprintf(s->target_why, sizeof(s->target_why), "target accuracy");
			atomic_store(&s->target_hit, 1);
		}
	}
	return 0;
}

static void *eval_thread(void *arg)
{
	struct server *s = arg;
	struct hetsgd_eval_point pt;
	int ret;

	bind_self(s->e, s->e->plan.compute_pus[0]);
	pthread_mutex_lock(&s->emu);
	for (;;) {
		while (!s->ebusy && !s->equit)
			pthread_cond_wait(&s->ecv, &s->emu);
		if (!s->ebusy)
			break;
		pt = s->job.pt;
		pt.x = s->job.x;
		pthread_mutex_unlock(&s->emu);
		ret = evaluate(s, s->job.x, &pt);
		if (!ret)
			ret = record_point(s, &pt);
		pthread_mutex_lock(&s->emu);
		if (ret && !s->eval_err) {
			s->eval_err = ret;
			snprintf(s->eval_msg, sizeof(s->eval_msg), "evaluation: %s", hetsgd_algo_errmsg());
		}
		s->ebusy = 0;
		pthread_cond_broadcast(&s->ecv);
	}
	pthread_mutex_unlock(&s->emu);
	return NULL;
}

int eval_start(struct server *s)
{
	int ret = pthread_create(&s->ethr, NULL, eval_thread, s);

	if (ret)
		return algo_err(-ret, "server: cannot start the evaluation thread: %s", strerror(ret));
	s->ethr_started = 1;
	return 0;
}

void eval_stop(struct server *s)
{
	if (!s->ethr_started)
		return;
	s->ethr_started = 0;
	pthread_mutex_lock(&s->emu);
	s->equit = 1;
	pthread_cond_broadcast(&s->ecv);
	pthread_mutex_unlock(&s->emu);
	pthread_join(s->ethr, NULL);
}

void eval_submit(struct server *s, const float *x, double scale)
{
	int busy;

	pthread_mutex_lock(&s->emu);
	busy = s->ebusy;
	if (!busy) {
		for (size_t j = 0; j < s->e->d; j++)
			s->job.x[j] = (float)(x[j] * scale);
		s->job.pt.t = train_time(s->e, now_s());
		s->job.pt.grads = server_grads(s);
		s->job.pt.updates = s->updates;
		s->job.pt.idle_share = server_idle_share(s);
		s->job.pt.final = 0;
		s->ebusy = 1;
		pthread_cond_broadcast(&s->ecv);
	}
	pthread_mutex_unlock(&s->emu);
}

int eval_error(struct server *s)
{
	int ret;

	pthread_mutex_lock(&s->emu);
	ret = s->eval_err;
	if (ret)
		algo_err(ret, "%s", s->eval_msg);
	pthread_mutex_unlock(&s->emu);
	return ret;
}

void eval_model_tick(struct server *s, double t)
{
	const struct hetsgd_engine_cfg *c = s->e->cfg;

	if (c->eval_interval_s > 0 && t >= s->next_eval) {
		/* a sharded parameter server gathers the model first (pserver.h) */
		if (s->ps) {
			int ret = ps0_pull(s, PULL_EVAL);

			pthread_mutex_lock(&s->emu);
			if (ret && !s->eval_err) {
				s->eval_err = ret;
				snprintf(s->eval_msg, sizeof(s->eval_msg), "%s", hetsgd_algo_errmsg());
			}
			pthread_mutex_unlock(&s->emu);
		} else {
			eval_submit(s, s->x, 1.0);
		}
		s->next_eval = t + c->eval_interval_s;
	}
}

int eval_final(struct server *s, struct hetsgd_engine_result *res)
{
	struct hetsgd_eval_point pt = { .t = res->elapsed_s, .updates = s->updates, .final = 1 };
	double idle = 0, wall = 0;
	int ret;

	/* the workers' own final counts, from their statistics */
	for (uint32_t i = 0; i < s->e->n; i++) {
		pt.grads += s->ws[i].steps;
		idle += s->ws[i].idle_s;
		wall += s->ws[i].elapsed_s;
	}
	pt.idle_share = wall > 0 ? idle / wall : 0;
	pt.x = s->x;
	ret = evaluate(s, s->x, &pt);
	if (!ret)
		ret = record_point(s, &pt);
	if (!ret)
		res->grads = pt.grads;
	return ret;
}
