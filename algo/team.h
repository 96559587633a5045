/*
 * A worker's compute team: thread 0 (the worker's compute thread) leads,
 * threads 1 .. nthr-1 help with slices of each batch, fork-join on two
 * barriers per step.  With one thread there is no team: team_grad is
 * not called and nothing starts.
 */
#ifndef HETSGD_TEAM_H
#define HETSGD_TEAM_H

#include <pthread.h>

#include "engine_core.h"

struct team_arg;

struct team {
	struct eng *e;
	uint32_t worker;	/* for messages */
	int nthr;
	const uint32_t *bidx;	/* the batch's sample indices (the worker's) */
	float *g;		/* the leader's gradient: the batch's result */
	pthread_t *helper;
	struct team_arg *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* helpers wait here until the team forms */
	pthread_barrier_t bar_go, bar_done;
	int ready, quit;	/* under mu: the team formed / ends */
	const float *x;		/* the step's model */
	uint32_t m;		/* the step's batch */
	float **tg;		/* per helper: its slice's gradient */
	int *err;
	char (*msg)[512];	/* per thread: helpers may fail together */
};

/* Allocate a team of nthr threads (the buffers only; nothing starts). */
int team_init(struct team *t, struct eng *e, uint32_t worker, int nthr,
	      const uint32_t *bidx, float *g);
void team_fini(struct team *t);

/* On the compute thread: start the helpers; 0 or a negative errno. */
int team_start(struct team *t);
/* Release the helpers, however the method ended. */
void team_stop(struct team *t);

/*
 * The batch's gradient at x into t->g with the whole team: each thread
 * takes a slice, the leader weighs the slices' means by their sizes.
 * Deterministic for a given number of threads (the sum is taken in
 * thread order).
 */
int team_grad(struct team *t, const float *x, uint32_t m);

#endif
