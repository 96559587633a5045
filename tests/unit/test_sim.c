/*
 * The simulator's event loop (algo/sim.c) on cases computed by hand:
 * ASGD's order of updates and their delays, LOSCAR's round timing with a
 * held average, overlap or not, rounds of round_steps steps, the server's incast, sharded averaging's
 * two phases, and the shared math (one worker reproduces the sequential
 * SGD reference bit for bit).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "hetsgd_algo.h"

#define MAXTR 4096
#define EPS 1e-12

static struct hetsgd_sim_trace trs[MAXTR];
static size_t ntr;

static void rec(void *arg, const struct hetsgd_sim_trace *t)
{
	(void)arg;
	if (ntr < MAXTR)
		trs[ntr++] = *t;
}

/* The i-th (from 0) trace of a kind (and worker, unless any), or NULL. */
static const struct hetsgd_sim_trace *nth(enum hetsgd_sim_trace_kind kind, uint32_t wk, int any, size_t i)
{
	size_t want = i;

	for (size_t k = 0; k < ntr; k++)
		if (trs[k].kind == kind && (any || trs[k].worker == wk) && i-- == 0)
			return &trs[k];
	cr_assert_fail("no trace %zu of kind %d (worker %u) among %zu", want, (int)kind, wk, ntr);
	return NULL;
}

static size_t count(enum hetsgd_sim_trace_kind kind)
{
	size_t c = 0;

	for (size_t k = 0; k < ntr; k++)
		c += trs[k].kind == kind;
	return c;
}

/* n quadratic workers of d dimensions, their start at 0. */
struct quads {
	uint32_t n;
	size_t d;
	float **a, **b, *x0;
	struct hetsgd_objective **obj;
	struct hetsgd_sim_io io;
};

static void quads_make(struct quads *q, uint32_t n, size_t d)
{
	q->n = n;
	q->d = d;
	q->a = calloc(n, sizeof(float *));
	q->b = calloc(n, sizeof(float *));
	q->obj = calloc(n, sizeof(*q->obj));
	q->x0 = calloc(d, sizeof(float));
	for (uint32_t i = 0; i < n; i++) {
		q->a[i] = malloc(d * sizeof(float));
		q->b[i] = malloc(d * sizeof(float));
	}
	cr_assert_eq(hetsgd_quad_generate(d, n, 7, q->a, q->b, NULL, NULL), 0);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(hetsgd_objective_quad_create(d, q->a[i], q->b[i], &q->obj[i]), 0);
	memset(&q->io, 0, sizeof(q->io));
	q->io.obj = q->obj;
	q->io.x0 = q->x0;
	q->io.d = d;
}

static void quads_free(struct quads *q)
{
	for (uint32_t i = 0; i < q->n; i++) {
		hetsgd_objective_destroy(q->obj[i]);
		free(q->a[i]);
		free(q->b[i]);
	}
	free(q->a);
	free(q->b);
	free(q->obj);
	free(q->x0);
}

/* No noise, no evaluation, a time budget of budget seconds. */
static void cfg_plain(struct hetsgd_engine_cfg *c, enum hetsgd_method m, enum hetsgd_profile_kind kind,
		      double unit, double budget)
{
	hetsgd_engine_cfg_init(c);
	c->method = m;
	c->profile.kind = kind;
	c->profile.unit_s = unit;
	c->profile.noise = 0;
	c->budget_s = budget;
	c->eval_interval_s = 0;
	c->gamma = 0.01f;
}

static void run(const struct hetsgd_engine_cfg *c, const struct hetsgd_sim_net *net, struct quads *q,
		struct hetsgd_engine_result *res)
{
	ntr = 0;
	cr_assert_eq(hetsgd_sim_run(c, net, q->n, &q->io, rec, NULL, res), 0, "%s", hetsgd_errmsg());
}

/*
 * Two ASGD workers, tau = 1 and 2 ms, 0.1 ms latency each way, an
 * infinitely fast link.  Worker 0 sends at 1.0, 2.2, 3.4, 4.6 ms (a cycle
 * of 1.2 ms), worker 1 at 2.0, 4.2 ms.  Updates land 0.1 ms later:
 *   1.1 w0 delay 0 | 2.1 w1 delay 1 | 2.3 w0 delay 1 | 3.5 w0 delay 0 |
 *   4.3 w1 delay 2 | 4.7 w0 delay 1
 */
Test(sim, asgd_order_and_delays)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { .latency_s = 1e-4 };
	struct hetsgd_engine_result res;
	const double t[] = { 1.1e-3, 2.1e-3, 2.3e-3, 3.5e-3, 4.3e-3, 4.7e-3 };
	const uint32_t wk[] = { 0, 1, 0, 0, 1, 0 };
	const uint64_t delay[] = { 0, 1, 1, 0, 2, 1 };

	quads_make(&q, 2, 4);
	cfg_plain(&c, HETSGD_METHOD_ASGD, HETSGD_PROFILE_LINEAR, 1e-3, 5e-3);
	c.policy = HETSGD_POLICY_VANILLA;
	run(&c, &net, &q, &res);
	cr_assert_eq(count(HETSGD_SIM_TR_UPDATE), 6);
	for (size_t i = 0; i < 6; i++) {
		const struct hetsgd_sim_trace *u = nth(HETSGD_SIM_TR_UPDATE, 0, 1, i);

		cr_assert(fabs(u->t - t[i]) < EPS, "update %zu at %.9f, expected %.9f", i, u->t, t[i]);
		cr_assert_eq(u->worker, wk[i], "update %zu by worker %u", i, u->worker);
		cr_assert_eq(u->delay, delay[i], "update %zu delay %llu", i, (unsigned long long)u->delay);
		cr_assert_eq(u->round, i + 1);
		cr_assert_float_eq(u->gamma, 0.01, 1e-9);
	}
	cr_assert_eq(res.updates, 6);
	cr_assert_eq(res.grads, 6);
	cr_assert_float_eq(res.elapsed_s, 5e-3, EPS);
	cr_assert_str_eq(res.stop_reason, "time budget");
	/* worker 1 waited 0.2 ms per gradient, twice */
	cr_assert(fabs(res.workers[1].idle_s - 0.4e-3) < EPS, "idle %.9f", res.workers[1].idle_s);
	hetsgd_engine_result_free(&res);
	quads_free(&q);
}

/* Ringmaster with R = 2 drops worker 1's gradient of delay 2 (4.3 ms),
 * and Rescaled steps worker 1 (tau 2.2 ms) with the full gamma and worker
 * 0 (tau 1.2 ms) with gamma 1.2 / 2.2 once both have reported. */
Test(sim, asgd_policies_through_the_shared_table)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { .latency_s = 1e-4 };
	struct hetsgd_engine_result res;
	const struct hetsgd_sim_trace *u;

	quads_make(&q, 2, 4);
	cfg_plain(&c, HETSGD_METHOD_ASGD, HETSGD_PROFILE_LINEAR, 1e-3, 5e-3);
	c.policy = HETSGD_POLICY_RINGMASTER;
	c.ringmaster_r = 2;
	run(&c, &net, &q, &res);
	cr_assert_eq(count(HETSGD_SIM_TR_DROP), 1);
	u = nth(HETSGD_SIM_TR_DROP, 0, 1, 0);
	cr_assert(fabs(u->t - 4.3e-3) < EPS && u->worker == 1 && u->delay == 2);
	cr_assert_eq(res.dropped, 1);
	cr_assert_eq(res.workers[1].dropped, 1);
	hetsgd_engine_result_free(&res);

	c.policy = HETSGD_POLICY_RESCALED;
	run(&c, &net, &q, &res);
	/* 3.5 ms: worker 0's third gradient; tau_0 = median(1.0, 1.2, 1.2) */
	u = nth(HETSGD_SIM_TR_UPDATE, 0, 0, 2);
	cr_assert(fabs(u->t - 3.5e-3) < EPS);
	cr_assert_float_eq(u->gamma, 0.01 * 1.2 / 2.0, 1e-9, "gamma %.9g", u->gamma);
	u = nth(HETSGD_SIM_TR_UPDATE, 1, 0, 1);	/* 4.3 ms: tau_1 = median(2.0, 2.2) */
	cr_assert_float_eq(u->gamma, 0.01, 1e-9, "gamma %.9g", u->gamma);
	hetsgd_engine_result_free(&res);
	quads_free(&q);
}

/*
 * LOSCAR, two workers of 1 ms per step, rounds of 2.5 ms, the average held
 * 9.5 ms, an instant network.  The round ends at the first step end past
 * 2.5 ms: both send at 3 ms, the average lands at 12.5 ms.  With overlap
 * each merges at its next step end (13 ms) after 10 overlap steps, and
 * sends round 1 at 16 ms; without, each waits 9.5 ms, merges at 12.5 ms
 * and sends round 1 at 15.5 ms.
 */
Test(sim, loscar_round_timing)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { 0 };
	struct hetsgd_engine_result res;

	quads_make(&q, 2, 8);
	cfg_plain(&c, HETSGD_METHOD_LOSCAR, HETSGD_PROFILE_CONST, 1e-3, 17.5e-3);
	c.round_s = 2.5e-3;
	c.comm_delay_s = 9.5e-3;
	c.k = 4;
	run(&c, &net, &q, &res);
	for (uint32_t w = 0; w < 2; w++) {
		cr_assert(fabs(nth(HETSGD_SIM_TR_SEND, w, 0, 0)->t - 3e-3) < EPS);
		cr_assert(fabs(nth(HETSGD_SIM_TR_REPLY, w, 0, 0)->t - 12.5e-3) < EPS);
		cr_assert(fabs(nth(HETSGD_SIM_TR_MERGE, w, 0, 0)->t - 13e-3) < EPS);
		cr_assert(fabs(nth(HETSGD_SIM_TR_SEND, w, 0, 1)->t - 16e-3) < EPS);
		/* 4 .. 13 ms in round 0, and 17 ms after round 1 went out */
		cr_assert_eq(res.workers[w].overlap_steps, 11);
		cr_assert_eq(res.workers[w].steps, 17);
		cr_assert_float_eq(res.workers[w].idle_s, 0, EPS);
		cr_assert_eq(res.workers[w].rounds, 1);
	}
	cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 0)->t - 3e-3) < EPS);
	cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 1)->t - 16e-3) < EPS);
	hetsgd_engine_result_free(&res);

	c.overlap = 0;
	run(&c, &net, &q, &res);
	for (uint32_t w = 0; w < 2; w++) {
		cr_assert(fabs(nth(HETSGD_SIM_TR_MERGE, w, 0, 0)->t - 12.5e-3) < EPS);
		cr_assert(fabs(nth(HETSGD_SIM_TR_SEND, w, 0, 1)->t - 15.5e-3) < EPS);
		cr_assert_eq(res.workers[w].overlap_steps, 0);
		/* 9.5 ms for round 0, and round 1's wait from 15.5 ms to the budget */
		cr_assert(fabs(res.workers[w].idle_s - 11.5e-3) < EPS, "idle %.9f", res.workers[w].idle_s);
	}
	hetsgd_engine_result_free(&res);
	quads_free(&q);
}

/*
 * LOSCAR rounds of round_steps = 3 local steps (method_loscar.c's
 * `local`: steps taken while no block is in flight), tau_i = 1 and 2 ms,
 * the average held 0.5 ms, an infinitely fast network, round_s = 1 s
 * (ignored: the steps decide).  Worker 0 sends round 0 at 3 ms, worker 1
 * at 6 ms; the average reaches both at 6.5 ms.  With overlap, worker 0
 * keeps stepping (4, 5, 6, 7 ms: 4 overlap steps) and merges at 7 ms,
 * worker 1 (8 ms: 1 overlap step) at 8 ms; round 1 goes out after 3 new
 * local steps: 10 ms and 14 ms (worker 0 then overlaps 4 more steps to
 * the 14.8 ms budget).  Without overlap, both merge at 6.5 ms (worker 0
 * waited 3.5 ms, worker 1 0.5 ms), round 1 goes out at 9.5 and 12.5 ms
 * and merges at 13 ms, after the same waits.
 */
Test(sim, loscar_round_steps)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { 0 };
	struct hetsgd_engine_result res;
	const double send1[2][2] = { { 10e-3, 14e-3 }, { 9.5e-3, 12.5e-3 } };
	const double merge0[2][2] = { { 7e-3, 8e-3 }, { 6.5e-3, 6.5e-3 } };

	quads_make(&q, 2, 8);
	cfg_plain(&c, HETSGD_METHOD_LOSCAR, HETSGD_PROFILE_LINEAR, 1e-3, 14.8e-3);
	c.round_s = 1.0;
	c.round_steps = 3;
	c.comm_delay_s = 0.5e-3;
	c.k = 4;
	for (int ov = 0; ov < 2; ov++) {
		c.overlap = !ov;
		run(&c, &net, &q, &res);
		for (uint32_t w = 0; w < 2; w++) {
			double s0 = 3e-3 * (w + 1);

			cr_assert(fabs(nth(HETSGD_SIM_TR_SEND, w, 0, 0)->t - s0) < EPS, "overlap %d worker %u sent round 0 at %.9f",
				  !ov, w, nth(HETSGD_SIM_TR_SEND, w, 0, 0)->t);
			cr_assert(fabs(nth(HETSGD_SIM_TR_REPLY, w, 0, 0)->t - 6.5e-3) < EPS);
			cr_assert(fabs(nth(HETSGD_SIM_TR_MERGE, w, 0, 0)->t - merge0[ov][w]) < EPS,
				  "overlap %d worker %u merged at %.9f", !ov, w, nth(HETSGD_SIM_TR_MERGE, w, 0, 0)->t);
			cr_assert(fabs(nth(HETSGD_SIM_TR_SEND, w, 0, 1)->t - send1[ov][w]) < EPS,
				  "overlap %d worker %u sent round 1 at %.9f", !ov, w, nth(HETSGD_SIM_TR_SEND, w, 0, 1)->t);
		}
		cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 0)->t - 6e-3) < EPS);
		cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 1)->t - send1[ov][1]) < EPS);
		if (!ov) {
			cr_assert_eq(res.workers[0].overlap_steps, 4 + 4);	/* 11 .. 14 ms in round 1 */
			cr_assert_eq(res.workers[1].overlap_steps, 1);
		} else {
			cr_assert_eq(res.workers[0].overlap_steps, 0);
			/* round 1's average reaches both at 13 ms */
			cr_assert(fabs(nth(HETSGD_SIM_TR_MERGE, 0, 0, 1)->t - 13e-3) < EPS);
			cr_assert(fabs(res.workers[0].idle_s - 2 * 3.5e-3) < EPS, "idle %.9f", res.workers[0].idle_s);
			cr_assert(fabs(res.workers[1].idle_s - 2 * 0.5e-3) < EPS, "idle %.9f", res.workers[1].idle_s);
		}
		hetsgd_engine_result_free(&res);
	}
	quads_free(&q);
}

/*
 * With round_steps and no overlap a run is the same step for step
 * whatever the timing (hetsgd_engine.h): a gradient budget of 4 rounds of
 * 2 x 3 steps ends with the same model bit for bit under tau_i = 1, 2 ms
 * and tau_i = 1, 1 ms.  Rounds by time (round_s = 2.5 ms) do not: there
 * the slow worker takes fewer steps per round, and the models differ.
 */
Test(sim, loscar_round_steps_independent_of_timing)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { .latency_s = 1e-5 };
	struct hetsgd_engine_result res;
	float xa[8], xb[8];

	quads_make(&q, 2, 8);
	for (int by_time = 0; by_time < 2; by_time++) {
		for (int p = 0; p < 2; p++) {
			cfg_plain(&c, HETSGD_METHOD_LOSCAR, p ? HETSGD_PROFILE_CONST : HETSGD_PROFILE_LINEAR, 1e-3, 1.0);
			c.overlap = 0;
			c.round_s = 2.5e-3;
			c.round_steps = by_time ? 0 : 3;
			c.budget_grads = 24;
			c.k = 4;
			c.gamma = 0.1f;
			q.io.x_out = p ? xb : xa;
			run(&c, &net, &q, &res);
			cr_assert_str_eq(res.stop_reason, "gradient budget");
			cr_assert_eq(res.grads, 24);
			if (!by_time)
				for (uint32_t w = 0; w < 2; w++)
					cr_assert_eq(res.workers[w].rounds, 3, "worker %u merged %u rounds", w,
						     (unsigned)res.workers[w].rounds);
			hetsgd_engine_result_free(&res);
		}
		if (by_time)
			cr_assert(memcmp(xa, xb, sizeof(xa)), "rounds by time gave the same model under both timings");
		else
			cr_assert(!memcmp(xa, xb, sizeof(xa)), "rounds of 3 steps gave different models under two timings");
	}
	q.io.x_out = NULL;
	quads_free(&q);
}

/*
 * The host's step overhead: one ASGD worker, tau = 1 ms, 0.25 ms added to
 * every step, 0.1 ms latency each way: it sends at 1.25, 2.7, 4.15 ms
 * (a cycle of 1.25 + 0.2 ms), the server updates 0.1 ms later.  A step
 * floor above the profile replaces it, without the overhead.
 */
Test(sim, step_overhead)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { .latency_s = 1e-4, .step_extra_s = 0.25e-3 };
	struct hetsgd_engine_result res;
	const double t[] = { 1.35e-3, 2.8e-3, 4.25e-3 };

	quads_make(&q, 1, 4);
	cfg_plain(&c, HETSGD_METHOD_ASGD, HETSGD_PROFILE_CONST, 1e-3, 5e-3);
	run(&c, &net, &q, &res);
	cr_assert_eq(count(HETSGD_SIM_TR_UPDATE), 3);
	for (size_t i = 0; i < 3; i++)
		cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, i)->t - t[i]) < EPS, "update %zu at %.9f", i,
			  nth(HETSGD_SIM_TR_UPDATE, 0, 1, i)->t);
	cr_assert(fabs(res.workers[0].compute_s - 3 * 1.25e-3) < EPS, "compute %.9f", res.workers[0].compute_s);
	cr_assert(strstr(res.provider, "step overhead 250 us"), "%s", res.provider);
	hetsgd_engine_result_free(&res);
	/* a floor of 2 ms above the 1 ms profile: steps of 2 ms, not padded,
	 * so no overhead: sends at 2, 4.2 ms, updates 0.1 ms later */
	net.step_floor_s = 2e-3;
	run(&c, &net, &q, &res);
	cr_assert_eq(count(HETSGD_SIM_TR_UPDATE), 2);
	cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 0)->t - 2.1e-3) < EPS);
	cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 1)->t - 4.3e-3) < EPS);
	hetsgd_engine_result_free(&res);
	net.step_floor_s = -1;
	cr_assert_eq(hetsgd_sim_run(&c, &net, 1, &q.io, NULL, NULL, &res), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "step floor"), "%s", hetsgd_errmsg());
	net.step_floor_s = 0;
	net.step_extra_s = -1e-3;
	cr_assert_eq(hetsgd_sim_run(&c, &net, 1, &q.io, NULL, NULL, &res), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "step overhead"), "%s", hetsgd_errmsg());
	quads_free(&q);
}

/*
 * Incast: 8 sync workers send a gradient of B = 64 + 4 d bytes at 1 ms
 * into the server's link of R bytes/s: the k-th lands at 1 ms + k B / R
 * (+ latency), the last after n B / R; the replies leave one after another
 * on the server's outgoing link, the k-th landing k B / R after the step.
 */
Test(sim, incast_n_senders_take_n_b_over_r)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	const double R = 1e6, lat = 5e-6;
	struct hetsgd_sim_net net = { .latency_s = lat, .link_Bps = R, .header_bytes = 64 };
	struct hetsgd_engine_result res;
	const size_t d = 100;
	const double B = 64 + 4.0 * d;
	double t_step;

	quads_make(&q, 8, d);
	cfg_plain(&c, HETSGD_METHOD_SYNC, HETSGD_PROFILE_CONST, 1e-3, 20e-3);
	run(&c, &net, &q, &res);
	for (size_t k = 0; k < 8; k++) {
		const struct hetsgd_sim_trace *a = nth(HETSGD_SIM_TR_ARRIVE, 0, 1, k);

		cr_assert(fabs(a->t - (1e-3 + (k + 1) * B / R + lat)) < EPS, "arrival %zu at %.9f", k, a->t);
		cr_assert_float_eq(a->bytes, B, 1e-9);
	}
	t_step = nth(HETSGD_SIM_TR_UPDATE, 0, 1, 0)->t;
	cr_assert(fabs(t_step - (1e-3 + 8 * B / R + lat)) < EPS);
	for (uint32_t w = 0; w < 8; w++)
		cr_assert(fabs(nth(HETSGD_SIM_TR_REPLY, w, 0, 0)->t - (t_step + (w + 1) * B / R + lat)) < EPS);
	cr_assert_eq(res.workers[3].bytes_sent, (uint64_t)B * res.workers[3].sent);
	hetsgd_engine_result_free(&res);

	/* a server 8 times faster: the incast no longer sets the pace */
	net.server_Bps = 8 * R;
	run(&c, &net, &q, &res);
	cr_assert(fabs(nth(HETSGD_SIM_TR_ARRIVE, 0, 1, 7)->t - (1e-3 + B / R + lat)) < EPS);
	hetsgd_engine_result_free(&res);
	quads_free(&q);
}

/*
 * ASGD over 2 shard servers, one worker, d = 1000, 64-byte headers, the
 * servers' links at R = 1 MB/s, the worker's r = 1000 R, no latency.
 * The gradient (step at 1 ms) goes out as 2 parts of 2064 bytes, shard 1
 * first, each on its own server's link: shard 0 starts after shard 1 left
 * the worker's link, and rank 0 has it at 1 ms + 2064 / r + 2064 / R.  It
 * writes an 88-byte STEP to server 1, then shard 0 back (2064 / R);
 * server 1, its part (long in) and STEP in, writes shard 1 (2064 / R) on
 * its own link: the model is back at 1 ms + 2064 / r + (2 * 2064 + 88) / R.
 * One server: 1 ms + 2 * 4064 / R (cut through the worker's link).
 */
Test(sim, servers_split_the_server_links)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	const double R = 1e6;
	struct hetsgd_sim_net net = { .link_Bps = 1000 * R, .server_Bps = R, .header_bytes = 64 };
	struct hetsgd_engine_result res;
	const double tol = 1e-8;

	quads_make(&q, 1, 1000);
	cfg_plain(&c, HETSGD_METHOD_ASGD, HETSGD_PROFILE_CONST, 1e-3, 20e-3);
	c.servers = 2;
	run(&c, &net, &q, &res);
	cr_assert(fabs(nth(HETSGD_SIM_TR_ARRIVE, 0, 0, 0)->t - (1e-3 + 2064 / (1000 * R) + 2064 / R)) < tol,
		  "arrival at %.9f",
		  nth(HETSGD_SIM_TR_ARRIVE, 0, 0, 0)->t);
	cr_assert(fabs(nth(HETSGD_SIM_TR_REPLY, 0, 0, 0)->t - (1e-3 + 2064 / (1000 * R) + (2 * 2064 + 88) / R)) < tol,
		  "reply at %.9f", nth(HETSGD_SIM_TR_REPLY, 0, 0, 0)->t);
	cr_assert_eq(res.nservers, 2);
	cr_assert_eq(res.servers[1].rank, 2);
	cr_assert_eq(res.servers[1].lo, 500);
	cr_assert_eq(res.servers[1].hi, 1000);
	cr_assert_eq(res.servers[1].updates, res.updates);
	/* every gradient's part and STEP, and every reply's shard */
	cr_assert_eq(res.servers[1].bytes_recv, res.grads * (2064 + 88));
	cr_assert_eq(res.servers[1].bytes_sent, res.grads * 2064);
	hetsgd_engine_result_free(&res);

	c.servers = 1;
	run(&c, &net, &q, &res);
	cr_assert(fabs(nth(HETSGD_SIM_TR_REPLY, 0, 0, 0)->t - (1e-3 + 2 * 4064 / R)) < tol, "reply at %.9f",
		  nth(HETSGD_SIM_TR_REPLY, 0, 0, 0)->t);
	cr_assert_eq(res.nservers, 0);
	hetsgd_engine_result_free(&res);
	quads_free(&q);
}

/*
 * Sharded averaging, n = 4, K = 40 of d = 100: each phase writes 3 shards
 * of 64 + 4 * 10 bytes on a worker's own link: the average lands at
 * send + 2 (lat + 3 * 104 / R) + the held delay, whatever n's incast.
 */
Test(sim, sharded_two_phases)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	const double R = 1e6, lat = 5e-6, ph = 3 * (64 + 40.0) / R;
	struct hetsgd_sim_net net = { .latency_s = lat, .link_Bps = R, .header_bytes = 64,
				      .averaging = HETSGD_SIM_AVG_SHARDED };
	struct hetsgd_engine_result res;

	quads_make(&q, 4, 100);
	cfg_plain(&c, HETSGD_METHOD_LOSCAR, HETSGD_PROFILE_CONST, 1e-3, 6e-3);
	c.round_s = 2.5e-3;
	c.k = 40;
	c.comm_delay_s = 1e-4;
	run(&c, &net, &q, &res);
	cr_assert(fabs(nth(HETSGD_SIM_TR_ARRIVE, 0, 1, 0)->t - (3e-3 + ph + lat)) < EPS);
	for (uint32_t w = 0; w < 4; w++)
		cr_assert(fabs(nth(HETSGD_SIM_TR_REPLY, w, 0, 0)->t - (3e-3 + 2 * (ph + lat) + 1e-4)) < EPS,
			  "worker %u got the average at %.9f", w, nth(HETSGD_SIM_TR_REPLY, w, 0, 0)->t);
	cr_assert_eq(res.workers[0].bytes_sent, (uint64_t)(2 * 3 * 104));
	hetsgd_engine_result_free(&res);
	/* sharded ASGD is refused with the reason */
	c.method = HETSGD_METHOD_ASGD;
	c.comm_delay_s = 0;
	cr_assert_eq(hetsgd_sim_run(&c, &net, 4, &q.io, NULL, NULL, &res), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "sharded"), "%s", hetsgd_errmsg());
	quads_free(&q);
}

/*
 * The shared math: one worker on synthetic least squares.  ASGD (any
 * policy: with one worker the delay is 0) and LOSCAR with K = d (the
 * delay-corrected merge of one worker's own average changes nothing) end
 * on hetsgd_sgd_reference's model bit for bit, over the same batches.
 */
Test(sim, one_worker_is_the_sgd_reference)
{
	struct hetsgd_dataset ds;
	struct hetsgd_objective *obj;
	const struct hetsgd_dataset *data[1];
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { .latency_s = 1e-5 };
	struct hetsgd_sim_io io = { 0 };
	struct hetsgd_engine_result res;
	float x0[9] = { 0 }, ref[9], out[9];
	/* ASGD on one server and on 3 (--servers: the same steps) */
	enum hetsgd_method m[3] = { HETSGD_METHOD_ASGD, HETSGD_METHOD_LOSCAR, HETSGD_METHOD_ASGD };

	cr_assert_eq(hetsgd_synth_regression(500, 9, 0.1f, 3, &ds, NULL), 0);
	cr_assert_eq(hetsgd_objective_lsq_create(9, &obj), 0);
	data[0] = &ds;
	io.obj = &obj;
	io.data = data;
	io.x0 = x0;
	io.d = 9;
	io.x_out = out;
	for (int k = 0; k < 3; k++) {
		cfg_plain(&c, m[k], HETSGD_PROFILE_CONST, 1e-3, 0);
		c.servers = k == 2 ? 3 : 1;
		c.budget_grads = 57;
		c.seed = 11;
		c.batch = 8;
		c.round_s = 3.5e-3;
		c.policy = HETSGD_POLICY_VANILLA;
		ntr = 0;
		cr_assert_eq(hetsgd_sim_run(&c, &net, 1, &io, rec, NULL, &res), 0, "%s", hetsgd_errmsg());
		cr_assert_eq(res.grads, 57);
		cr_assert_str_eq(res.stop_reason, "gradient budget");
		memcpy(ref, x0, sizeof(ref));
		cr_assert_eq(hetsgd_sgd_reference(obj, &ds, ref, c.gamma, 8, 57, 11, 0), 0);
		cr_assert_eq(memcmp(ref, out, sizeof(ref)), 0, "%s (%u servers) differs from the SGD reference",
			     hetsgd_method_name(m[k]), c.servers);
		cr_assert_eq(res.nservers, k == 2 ? 3u : 0u);
		hetsgd_engine_result_free(&res);
	}
	hetsgd_objective_destroy(obj);
	hetsgd_dataset_free(&ds);
}

/*
 * Ringleader, the two workers of asgd_order_and_delays: worker 0's
 * gradients land at 1.1, 2.3, 3.5, 4.7 ms, worker 1's at 2.1, 4.3 ms.
 * The round needs one of each: it ends at 2.1 ms (version 1) and at
 * 4.3 ms (version 2); worker 0's gradient of 2.3 ms, computed at version
 * 0, enters round 1 (delay 1, kept); nothing is dropped.
 */
Test(sim, ringleader_rounds)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { .latency_s = 1e-4 };
	struct hetsgd_engine_result res;

	quads_make(&q, 2, 4);
	cfg_plain(&c, HETSGD_METHOD_RINGLEADER, HETSGD_PROFILE_LINEAR, 1e-3, 5e-3);
	run(&c, &net, &q, &res);
	cr_assert_eq(count(HETSGD_SIM_TR_UPDATE), 2);
	cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 0)->t - 2.1e-3) < EPS);
	cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 1)->t - 4.3e-3) < EPS);
	cr_assert_eq(res.updates, 2);
	cr_assert_eq(res.grads, 6);
	cr_assert_eq(res.dropped, 0);
	hetsgd_engine_result_free(&res);
	quads_free(&q);
}

/*
 * Malenia, the same two workers, streaming (no wait for replies).  Equal
 * times go in the order the events were scheduled: worker 1's step of
 * 2 ms was scheduled at 0, worker 0's at 1 ms, so worker 1's gradient
 * lands first at 2.1 ms.  1.1 ms: worker 0's at version 0 (b_0 = 1);
 * 2.1 ms: worker 1's (b_1 = 1): S = n is met, step to version 1, the
 * model lands at 2.2 ms; then worker 0's second, computed at version 0:
 * dropped by the server.  Worker 0 finishes the gradient it computes at
 * 3 ms at version 0 while version 1 landed: drops it itself, and so does
 * worker 1 at 4 ms.  Worker 0's next, at version 1, lands at 4.1 ms.
 */
Test(sim, malenia_admission_and_drops)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { .latency_s = 1e-4 };
	struct hetsgd_engine_result res;
	const struct hetsgd_sim_trace *d;

	quads_make(&q, 2, 4);
	cfg_plain(&c, HETSGD_METHOD_MALENIA, HETSGD_PROFILE_LINEAR, 1e-3, 5e-3);
	run(&c, &net, &q, &res);
	cr_assert_eq(count(HETSGD_SIM_TR_UPDATE), 1);
	cr_assert(fabs(nth(HETSGD_SIM_TR_UPDATE, 0, 1, 0)->t - 2.1e-3) < EPS);
	cr_assert_eq(count(HETSGD_SIM_TR_DROP), 1);
	d = nth(HETSGD_SIM_TR_DROP, 0, 1, 0);
	cr_assert(fabs(d->t - 2.1e-3) < EPS && d->worker == 0 && d->delay == 1);
	cr_assert(fabs(nth(HETSGD_SIM_TR_REPLY, 0, 0, 0)->t - 2.2e-3) < EPS);
	cr_assert_eq(res.workers[0].dropped, 1);
	cr_assert_eq(res.workers[1].dropped, 1);
	cr_assert_eq(res.dropped, 3);
	cr_assert(fabs(nth(HETSGD_SIM_TR_ARRIVE, 0, 0, 2)->t - 4.1e-3) < EPS);
	cr_assert_eq(nth(HETSGD_SIM_TR_ARRIVE, 0, 0, 2)->round, 1);
	cr_assert_eq(res.workers[0].steps, 5);
	cr_assert_eq(res.workers[1].steps, 2);
	hetsgd_engine_result_free(&res);
	quads_free(&q);
}

/* Bad configurations get a sentence: no compute time, no budget,
 * sharded averaging for a method with one server, a negative latency. */
Test(sim, refusals)
{
	struct quads q;
	struct hetsgd_engine_cfg c;
	struct hetsgd_sim_net net = { 0 };
	struct hetsgd_engine_result res;

	quads_make(&q, 2, 4);
	cfg_plain(&c, HETSGD_METHOD_ASGD, HETSGD_PROFILE_CONST, 0, 1);
	cr_assert_eq(hetsgd_sim_run(&c, &net, 2, &q.io, NULL, NULL, &res), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "time unit"), "%s", hetsgd_errmsg());
	cfg_plain(&c, HETSGD_METHOD_ASGD, HETSGD_PROFILE_CONST, 1e-3, 0);
	c.target_loss = 1e-3;
	c.eval_interval_s = 1e-3;
	cr_assert_eq(hetsgd_sim_run(&c, &net, 2, &q.io, NULL, NULL, &res), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "budget"), "%s", hetsgd_errmsg());
	cfg_plain(&c, HETSGD_METHOD_MALENIA, HETSGD_PROFILE_CONST, 1e-3, 1);
	net.averaging = HETSGD_SIM_AVG_SHARDED;
	cr_assert_eq(hetsgd_sim_run(&c, &net, 2, &q.io, NULL, NULL, &res), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "malenia has one server"), "%s", hetsgd_errmsg());
	net.averaging = HETSGD_SIM_AVG_SERVER;
	net.latency_s = -1;
	cfg_plain(&c, HETSGD_METHOD_ASGD, HETSGD_PROFILE_CONST, 1e-3, 1);
	cr_assert_eq(hetsgd_sim_run(&c, &net, 2, &q.io, NULL, NULL, &res), -EINVAL);
	quads_free(&q);
}
