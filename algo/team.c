/*
 * The compute team (team.h).  Helpers wait for `ready` before touching
 * the barriers, which are sized once every helper runs; the leader always
 * releases them, however its method ends.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "team.h"

struct team_arg {
	struct team *t;
	int i;
};

int team_init(struct team *t, struct eng *e, uint32_t worker, int nthr,
	      const uint32_t *bidx, float *g)
{
	memset(t, 0, sizeof(*t));
	t->e = e;
	t->worker = worker;
	t->nthr = nthr;
	t->bidx = bidx;
	t->g = g;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	if (nthr <= 1)
		return 0;
	t->helper = calloc((size_t)nthr, sizeof(*t->helper));
	t->arg = calloc((size_t)nthr, sizeof(*t->arg));
	t->tg = calloc((size_t)nthr, sizeof(*t->tg));
	t->err = calloc((size_t)nthr, sizeof(*t->err));
	t->msg = calloc((size_t)nthr, sizeof(*t->msg));
	if (!t->helper || !t->arg || !t->tg || !t->err || !t->msg)
		goto nomem;
	for (int i = 1; i < nthr; i++) {
		t->tg[i] = hetsgd_topo_alloc(e->plan.numa_node, e->d * sizeof(float));
		if (!t->tg[i])
			goto nomem;
	}
	return 0;
nomem:
	return algo_err(-ENOMEM, "worker %u: out of memory for %d compute threads", worker, nthr);
}

void team_fini(struct team *t)
{
	for (int i = 1; t->tg && i < t->nthr; i++)
		if (t->tg[i])
			hetsgd_topo_free(t->tg[i], t->e->d * sizeof(float));
	free(t->tg);
	free(t->err);
	free(t->msg);
	free(t->arg);
	free(t->helper);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
}

/* Slice i of the current batch (of nthr slices): [lo, hi). */
static void team_slice(const struct team *t, int i, uint32_t *lo, uint32_t *hi)
{
	*lo = (uint32_t)((uint64_t)t->m * (uint64_t)i / (uint64_t)t->nthr);
	*hi = (uint32_t)((uint64_t)t->m * (uint64_t)(i + 1) / (uint64_t)t->nthr);
}

static void *team_helper(void *arg)
{
	struct team_arg *ta = arg;
	struct team *t = ta->t;
	int i = ta->i;
	struct hetsgd_objective *obj = t->e->io->thread_obj[i - 1];

	bind_self(t->e, t->e->plan.compute_pus[i]);
	pthread_mutex_lock(&t->mu);
	while (!t->ready && !t->quit)
		pthread_cond_wait(&t->cv, &t->mu);
	pthread_mutex_unlock(&t->mu);
	if (!t->ready)
		return NULL;	/* the team never formed: no barrier to meet */
	for (;;) {
		uint32_t lo, hi;

		pthread_barrier_wait(&t->bar_go);
		if (t->quit)
			break;
		team_slice(t, i, &lo, &hi);
		t->err[i] = hi > lo ?
			hetsgd_objective_loss_grad(obj, t->x, t->e->io->data, t->bidx + lo,
						   hi - lo, NULL, t->tg[i]) : 0;
		if (t->err[i])
			snprintf(t->msg[i], sizeof(t->msg[i]), "compute thread %d: %s", i,
				 hetsgd_algo_errmsg());
		pthread_barrier_wait(&t->bar_done);
	}
	return NULL;
}

/* Both barriers, or neither; 0 or a positive errno. */
static int team_barriers(struct team *t)
{
	int ret = pthread_barrier_init(&t->bar_go, NULL, (unsigned)t->nthr);

	if (ret)
		return ret;
	ret = pthread_barrier_init(&t->bar_done, NULL, (unsigned)t->nthr);
	if (ret)
		pthread_barrier_destroy(&t->bar_go);
	return ret;
}

int team_start(struct team *t)
{
	int started = 1, ret = 0;

	if (t->nthr <= 1)
		return 0;
	for (int i = 1; i < t->nthr && !ret; i++) {
		t->arg[i].t = t;
		t->arg[i].i = i;
		ret = pthread_create(&t->helper[i], NULL, team_helper, &t->arg[i]);
		if (!ret)
			started++;
	}
	if (!ret)
		ret = team_barriers(t);
	pthread_mutex_lock(&t->mu);
	if (ret)
		t->quit = 1;
	else
		t->ready = 1;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	if (!ret)
		return 0;
	for (int i = 1; i < started; i++)
		pthread_join(t->helper[i], NULL);
	return algo_err(-ret, "worker %u: cannot start compute thread %d of %d: %s",
			t->worker, started, t->nthr, strerror(ret));
}

void team_stop(struct team *t)
{
	if (t->nthr <= 1)
		return;
	/* a helper may not have left its `ready` wait yet */
	pthread_mutex_lock(&t->mu);
	t->quit = 1;
	pthread_mutex_unlock(&t->mu);
	pthread_barrier_wait(&t->bar_go);
	for (int i = 1; i < t->nthr; i++)
		pthread_join(t->helper[i], NULL);
	pthread_barrier_destroy(&t->bar_go);
	pthread_barrier_destroy(&t->bar_done);
}

int team_grad(struct team *t, const float *x, uint32_t m)
{
	struct eng *e = t->e;
	uint32_t lo, hi;
	float s0;
	int ret = 0;

	t->x = x;
	t->m = m;
	pthread_barrier_wait(&t->bar_go);
	team_slice(t, 0, &lo, &hi);
	if (hi > lo)
		ret = hetsgd_objective_loss_grad(e->io->obj, x, e->io->data, t->bidx + lo,
						 hi - lo, NULL, t->g);
	else
		memset(t->g, 0, e->d * sizeof(float));
	pthread_barrier_wait(&t->bar_done);
	if (ret)
		return ret;
	s0 = (float)(hi - lo) / (float)m;
	for (size_t j = 0; j < e->d; j++)
		t->g[j] *= s0;
	for (int i = 1; i < t->nthr; i++) {
		float st;

		if (t->err[i])
			return algo_err(t->err[i], "%s", t->msg[i]);
		team_slice(t, i, &lo, &hi);
		st = (float)(hi - lo) / (float)m;
		for (size_t j = 0; hi > lo && j < e->d; j++)
			t->g[j] += st * t->tg[i][j];
	}
	return 0;
}
