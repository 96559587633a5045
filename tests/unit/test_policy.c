/*
 * The engine's small pieces of math, on hand-computed numbers: time
 * profiles, the online tau estimate, step-size policies, the LOSCAR merge,
 * Malenia's and Ringleader's gradient table, the configuration check and
 * the sequential SGD reference.
 *
 * Every expected value here comes from the formulas in hetsgd_algo.h, not
 * from running the code.  Exact comparisons are used where the formula is
 * evaluated the same way in one rounding (c * integer, a median that picks
 * a stored value, an SGD step on small integers); tolerances elsewhere say
 * where they come from.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "hetsgd_algo.h"

#define C_UNIT 0.002	/* the profiles' c */
#define NW 4		/* workers in the profile tests */

static struct hetsgd_profile prof_of(enum hetsgd_profile_kind kind)
{
	return (struct hetsgd_profile){ .kind = kind, .unit_s = C_UNIT, .seed = 11 };
}

/* the n means of a profile; the test fails on the first error */
static void means(const struct hetsgd_profile *p, uint32_t n, double *tau)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		cr_assert_eq(hetsgd_profile_mean(p, i, n, &tau[i]), 0,
			     "worker %u: %s", i, hetsgd_algo_errmsg());
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* ---- time profiles ---- */

Test(profile, fixed_kinds)
{
	/* c (i + 1), c (1 + sqrt(i)), c (1 + i^2) for i = 0 .. 3, c = 2 ms */
	static const double lin[NW] = { 0.002, 0.004, 0.006, 0.008 };
	static const double sq[NW] = { 0.002, 0.004, 0.0048284271247461901,
				       0.0054641016151377546 };
	static const double sqr[NW] = { 0.002, 0.004, 0.010, 0.020 };
	struct hetsgd_profile p;
	double t[NW];
	uint32_t i;

	p = prof_of(HETSGD_PROFILE_CONST);
	means(&p, NW, t);
	for (i = 0; i < NW; i++)
		cr_expect_float_eq(t[i], 0.002, 1e-15, "const[%u] = %.17g", i, t[i]);
	p = prof_of(HETSGD_PROFILE_LINEAR);
	means(&p, NW, t);
	for (i = 0; i < NW; i++)
		cr_expect_float_eq(t[i], lin[i], 1e-15, "linear[%u] = %.17g", i, t[i]);
	p = prof_of(HETSGD_PROFILE_SQRT);
	means(&p, NW, t);
	for (i = 0; i < NW; i++)
		cr_expect_float_eq(t[i], sq[i], 1e-15, "sqrt[%u] = %.17g", i, t[i]);
	p = prof_of(HETSGD_PROFILE_SQUARED);
	means(&p, NW, t);
	for (i = 0; i < NW; i++)
		cr_expect_float_eq(t[i], sqr[i], 1e-15, "squared[%u] = %.17g", i, t[i]);

	/* unit 0 is "no padding": every mean is 0, for every kind */
	p = prof_of(HETSGD_PROFILE_SQUARED);
	p.unit_s = 0.0;
	means(&p, NW, t);
	for (i = 0; i < NW; i++)
		cr_expect_eq(t[i], 0.0);
	/* noise changes the steps, not the means */
	p = prof_of(HETSGD_PROFILE_LINEAR);
	p.noise = 0.5;
	means(&p, NW, t);
	for (i = 0; i < NW; i++)
		cr_expect_float_eq(t[i], lin[i], 1e-15);
}

Test(profile, random)
{
	struct hetsgd_profile p = prof_of(HETSGD_PROFILE_RANDOM);
	double a[NW], b[NW], o[NW], one;
	int differ = 0, spread = 0;
	uint32_t i;

	means(&p, NW, a);
	means(&p, NW, b);
	for (i = 0; i < NW; i++) {
		/* c (1 + (n - 1) u), u in [0, 1): [c, c n) */
		cr_expect_geq(a[i], C_UNIT, "random[%u] = %.17g below c", i, a[i]);
		cr_expect_lt(a[i], C_UNIT * NW, "random[%u] = %.17g not below c n", i, a[i]);
		cr_expect_eq(a[i], b[i], "same seed, different mean for worker %u", i);
		spread |= a[i] != a[0];
	}
	/* four draws of u that all coincide would mean u is not drawn per worker */
	cr_expect(spread, "every worker got the same random mean %.17g", a[0]);
	p.seed = 12;
	means(&p, NW, o);
	for (i = 0; i < NW; i++)
		differ |= o[i] != a[i];
	cr_expect(differ, "seeds 11 and 12 give the same random profile");
	/* one worker: (n - 1) u = 0, the mean is c whatever u is */
	cr_assert_eq(hetsgd_profile_mean(&p, 0, 1, &one), 0);
	cr_expect_eq(one, C_UNIT);
}

Test(profile, shuffle_is_a_permutation)
{
	enum { N8 = 8 };
	struct hetsgd_profile p = prof_of(HETSGD_PROFILE_LINEAR);
	double plain[N8], sh[N8], again[N8], sorted[N8];
	int moved = 0;
	uint32_t i, j;
	uint64_t seed;

	means(&p, N8, plain);
	p.shuffle = 1;
	for (seed = 1; seed <= 4; seed++) {
		p.seed = seed;
		means(&p, N8, sh);
		means(&p, N8, again);
		cr_expect_eq(memcmp(sh, again, sizeof(sh)), 0,
			     "seed %llu: shuffle is not deterministic", (unsigned long long)seed);
		/* the same multiset: sorted, the linear means c, 2c, .., 8c */
		memcpy(sorted, sh, sizeof(sh));
		qsort(sorted, N8, sizeof(double), cmp_double);
		for (i = 0; i < N8; i++)
			cr_expect_eq(sorted[i], plain[i],
				     "seed %llu: sorted shuffled mean %u is %.17g, not %.17g",
				     (unsigned long long)seed, i, sorted[i], plain[i]);
		for (i = 0; i < N8; i++)
			for (j = i + 1; j < N8; j++)
				cr_expect_neq(sh[i], sh[j], "workers %u and %u share a mean", i, j);
		moved |= memcmp(sh, plain, sizeof(sh)) != 0;
	}
	/* the identity has probability 1/8! per seed: four of them mean no shuffle */
	cr_expect(moved, "shuffle never moved a worker in four seeds");
}

Test(profile, bad_profiles)
{
	struct hetsgd_profile p = prof_of(HETSGD_PROFILE_LINEAR);
	double t = -1.0;

	cr_expect_eq(hetsgd_profile_mean(&p, NW, NW, &t), -EINVAL);
	cr_expect_eq(hetsgd_profile_mean(&p, NW + 3, NW, &t), -EINVAL);
	cr_expect_eq(hetsgd_profile_mean(&p, 0, 0, &t), -EINVAL);
	p.unit_s = -0.001;
	cr_expect_eq(hetsgd_profile_mean(&p, 0, NW, &t), -EINVAL);
	p.unit_s = NAN;
	cr_expect_eq(hetsgd_profile_mean(&p, 0, NW, &t), -EINVAL);
	p.unit_s = INFINITY;
	cr_expect_eq(hetsgd_profile_mean(&p, 0, NW, &t), -EINVAL);
	p.unit_s = C_UNIT;
	p.noise = -0.1;
	cr_expect_eq(hetsgd_profile_mean(&p, 0, NW, &t), -EINVAL);
	p.noise = 2.01;
	cr_expect_eq(hetsgd_profile_mean(&p, 0, NW, &t), -EINVAL);
	p.noise = NAN;
	cr_expect_eq(hetsgd_profile_mean(&p, 0, NW, &t), -EINVAL);
	cr_expect(strstr(hetsgd_algo_errmsg(), "noise"), "%s", hetsgd_algo_errmsg());
	p.noise = 0.0;
	p.kind = (enum hetsgd_profile_kind)0;
	cr_expect_eq(hetsgd_profile_mean(&p, 0, NW, &t), -EINVAL);
	p.kind = (enum hetsgd_profile_kind)99;
	cr_expect_eq(hetsgd_profile_mean(&p, 0, NW, &t), -EINVAL);
	cr_expect_neq(hetsgd_algo_errmsg()[0], '\0');
	/* outputs are written only on success */
	cr_expect_eq(t, -1.0, "a failed call wrote %.17g", t);
	/* the limits themselves are fine: noise 0 and 2 */
	p.kind = HETSGD_PROFILE_LINEAR;
	p.noise = 2.0;
	cr_expect_eq(hetsgd_profile_mean(&p, NW - 1, NW, &t), 0);
}

Test(profile, step_noise)
{
	struct hetsgd_profile p = prof_of(HETSGD_PROFILE_LINEAR);
	const double mean = 0.004;
	double s, sum = 0, lsum = 0, lsq = 0, lo = INFINITY, hi = 0, lm, lsd;
	uint64_t t;
	enum { STEPS = 20000 };

	/* no noise: the target is the mean, exactly, at every step */
	for (t = 0; t < 100; t++)
		cr_expect_eq(hetsgd_profile_step(&p, mean, 2, t), mean);
	/*
	 * sigma 0.3: factor exp(0.3 z - 0.045), mean 1, sd sqrt(e^0.09 - 1) =
	 * 0.307; the sample mean of 20000 has sd 0.0022, so 3% is over 13 sd.
	 * log factor ~ N(-0.045, 0.3^2): its sample mean has sd 0.0021 and its
	 * sample sd is within 0.3 +- 0.0015 (1 sd); 0.01 and 0.03 leave room.
	 */
	p.noise = 0.3;
	for (t = 0; t < STEPS; t++) {
		s = hetsgd_profile_step(&p, mean, 2, t) / mean;
		cr_assert(s > 0 && isfinite(s), "step %llu: factor %g",
			  (unsigned long long)t, s);
		sum += s;
		lsum += log(s);
		lsq += log(s) * log(s);
		lo = fmin(lo, s);
		hi = fmax(hi, s);
	}
	cr_expect(fabs(sum / STEPS - 1.0) < 0.03, "mean factor %g", sum / STEPS);
	lm = lsum / STEPS;
	lsd = sqrt(lsq / STEPS - lm * lm);
	cr_expect(fabs(lm + 0.045) < 0.01, "mean log factor %g, not -0.045", lm);
	cr_expect(fabs(lsd - 0.3) < 0.03, "sd of the log factor %g, not 0.3", lsd);
	/* exp(0.3 z) over 20000 normals: |z| reaches ~3.5, so well beyond 0.8 .. 1.2 */
	cr_expect(lo < 0.8 && hi > 1.2, "factors only in %g .. %g", lo, hi);
	/* a function of (seed, i, step) */
	cr_expect_eq(hetsgd_profile_step(&p, mean, 2, 77), hetsgd_profile_step(&p, mean, 2, 77));
	cr_expect_neq(hetsgd_profile_step(&p, mean, 2, 77), hetsgd_profile_step(&p, mean, 3, 77));
	cr_expect_neq(hetsgd_profile_step(&p, mean, 2, 77), hetsgd_profile_step(&p, mean, 2, 78));
	s = hetsgd_profile_step(&p, mean, 2, 77);
	p.seed = 12;
	cr_expect_neq(hetsgd_profile_step(&p, mean, 2, 77), s);
	/* no padding stays no padding */
	cr_expect_eq(hetsgd_profile_step(&p, 0.0, 2, 77), 0.0);
}

Test(profile, names)
{
	static const char *const names[] = { "const", "linear", "sqrt", "squared", "random" };
	static const enum hetsgd_profile_kind kinds[] = {
		HETSGD_PROFILE_CONST, HETSGD_PROFILE_LINEAR, HETSGD_PROFILE_SQRT,
		HETSGD_PROFILE_SQUARED, HETSGD_PROFILE_RANDOM,
	};
	enum hetsgd_profile_kind k;
	size_t i;

	for (i = 0; i < 5; i++) {
		k = (enum hetsgd_profile_kind)0;
		cr_expect_eq(hetsgd_profile_parse(names[i], &k), 0, "%s", names[i]);
		cr_expect_eq(k, kinds[i], "%s parsed as %d", names[i], (int)k);
		cr_expect_str_eq(hetsgd_profile_name(kinds[i]), names[i]);
	}
	k = HETSGD_PROFILE_SQRT;
	cr_expect_eq(hetsgd_profile_parse("fast", &k), -EINVAL);
	cr_expect(strstr(hetsgd_algo_errmsg(), "fast"), "%s", hetsgd_algo_errmsg());
	cr_expect_eq(hetsgd_profile_parse("Linear", &k), -EINVAL);
	cr_expect_eq(hetsgd_profile_parse("", &k), -EINVAL);
	cr_expect_eq(hetsgd_profile_parse(NULL, &k), -EINVAL);
	cr_expect_eq(k, HETSGD_PROFILE_SQRT, "a failed parse wrote its output");
}

/* ---- tau estimation ---- */

Test(tau, median_of_the_window)
{
	static const double rep[] = { 1, 2, 100, 3, 4 };
	/* medians after 1 .. 5 reports: {1}, {1,2}, {1,2,100}, {1,2,3,100}, {1,2,3,4,100} */
	static const double med[] = { 1, 1.5, 2, 2.5, 3 };
	struct hetsgd_tau_est *e;
	size_t i;

	cr_assert_eq(hetsgd_tau_create(2, 5, 1.0, &e), 0, "%s", hetsgd_algo_errmsg());
	cr_expect_eq(hetsgd_tau_get(e, 0), 0.0);
	for (i = 0; i < 5; i++) {
		cr_assert_eq(hetsgd_tau_report(e, 0, rep[i], 0.1 * (double)i), 0);
		cr_expect_eq(hetsgd_tau_get(e, 0), med[i], "after %zu reports: %g, not %g",
			     i + 1, hetsgd_tau_get(e, 0), med[i]);
	}
	/* the sixth report pushes out the first: {2, 100, 3, 4, 5} -> 4 */
	cr_assert_eq(hetsgd_tau_report(e, 0, 5, 1.0), 0);
	cr_expect_eq(hetsgd_tau_get(e, 0), 4.0);
	/* the other worker is untouched */
	cr_expect_eq(hetsgd_tau_get(e, 1), 0.0);
	hetsgd_tau_destroy(e);
}

/* fill worker 0's window with `from`, then report `to` until the estimate is `to` */
static void follow(uint32_t window, double from, double to, const double *expect)
{
	struct hetsgd_tau_est *e;
	double now = 0;
	uint32_t k;

	cr_assert_eq(hetsgd_tau_create(1, window, 10.0, &e), 0);
	for (k = 0; k < window; k++, now += from)
		cr_assert_eq(hetsgd_tau_report(e, 0, from, now), 0);
	cr_expect_eq(hetsgd_tau_get(e, 0), from);
	for (k = 1; k <= window / 2 + 1; k++, now += to) {
		cr_assert_eq(hetsgd_tau_report(e, 0, to, now), 0);
		cr_expect_eq(hetsgd_tau_get(e, 0), expect[k - 1],
			     "window %u, %u reports of %g after %g: estimate %g, not %g",
			     window, k, to, from, hetsgd_tau_get(e, 0), expect[k - 1]);
	}
	hetsgd_tau_destroy(e);
}

Test(tau, follows_a_real_change)
{
	/*
	 * window 8: k new values among 8 sorted, the median averages ranks 4
	 * and 5: k <= 3 both old, k = 4 one of each, k = 5 = 8/2 + 1 both new.
	 * window 5: the median is rank 3: old for k <= 2, new from k = 3.
	 */
	static const double fast8[] = { 0.010, 0.010, 0.010, 0.006, 0.002 };
	static const double slow8[] = { 0.002, 0.002, 0.002, 0.006, 0.010 };
	static const double fast5[] = { 0.010, 0.010, 0.002 };

	follow(8, 0.010, 0.002, fast8);
	follow(8, 0.002, 0.010, slow8);
	follow(5, 0.010, 0.002, fast5);
}

Test(tau, one_outlier_does_not_move_a_full_window)
{
	struct hetsgd_tau_est *e;
	uint32_t k;

	cr_assert_eq(hetsgd_tau_create(1, 5, 10.0, &e), 0);
	for (k = 0; k < 5; k++)
		cr_assert_eq(hetsgd_tau_report(e, 0, 0.010, 0.01 * k), 0);
	cr_assert_eq(hetsgd_tau_report(e, 0, 1.0, 0.06), 0);	/* a 100x page fault */
	cr_expect_eq(hetsgd_tau_get(e, 0), 0.010);
	cr_assert_eq(hetsgd_tau_report(e, 0, 0.0001, 0.07), 0);	/* and a 100x fast one */
	cr_expect_eq(hetsgd_tau_get(e, 0), 0.010);
	hetsgd_tau_destroy(e);
}

Test(tau, max_join_leave_never)
{
	struct hetsgd_tau_est *e;

	cr_assert_eq(hetsgd_tau_create(4, 4, 1.0, &e), 0);
	/* nobody has reported: no estimate, nobody counts */
	cr_expect_eq(hetsgd_tau_max(e, 0.0), 0.0);
	cr_assert_eq(hetsgd_tau_report(e, 0, 0.01, 0.0), 0);
	cr_assert_eq(hetsgd_tau_report(e, 1, 0.02, 0.0), 0);
	cr_assert_eq(hetsgd_tau_report(e, 2, 0.04, 0.0), 0);
	/* worker 3 never reported */
	cr_expect_eq(hetsgd_tau_get(e, 3), 0.0);
	cr_expect_not(hetsgd_tau_active(e, 3, 0.1));
	cr_expect(hetsgd_tau_active(e, 2, 0.1));
	cr_expect_eq(hetsgd_tau_max(e, 0.1), 0.04);
	/* the slowest leaves: the next slowest sets tau_max */
	hetsgd_tau_leave(e, 2);
	cr_expect_not(hetsgd_tau_active(e, 2, 0.1));
	cr_expect_eq(hetsgd_tau_max(e, 0.1), 0.02);
	/* a bad worker number is ignored, not written past the arrays */
	hetsgd_tau_leave(e, 4);
	hetsgd_tau_leave(e, UINT32_MAX);
	cr_expect_eq(hetsgd_tau_max(e, 0.1), 0.02);
	cr_expect_eq(hetsgd_tau_get(e, 4), 0.0);
	cr_expect_not(hetsgd_tau_active(e, 4, 0.1));
	/* it rejoins with its next report, with its window intact: {0.04, 0.05} */
	cr_assert_eq(hetsgd_tau_report(e, 2, 0.05, 0.2), 0);
	cr_expect(hetsgd_tau_active(e, 2, 0.2));
	cr_expect_float_eq(hetsgd_tau_max(e, 0.2), 0.045, 1e-15);
	/* everyone leaves: nobody counts */
	hetsgd_tau_leave(e, 0);
	hetsgd_tau_leave(e, 1);
	hetsgd_tau_leave(e, 2);
	cr_expect_eq(hetsgd_tau_max(e, 0.2), 0.0);
	hetsgd_tau_destroy(e);
}

Test(tau, stale_worker)
{
	struct hetsgd_tau_est *e;
	double t;

	/* stale after 1 s + 4 tau: 3 s for worker 0 (tau 0.5), 1.4 s for worker 1 */
	cr_assert_eq(hetsgd_tau_create(2, 4, 1.0, &e), 0);
	cr_assert_eq(hetsgd_tau_report(e, 0, 0.5, 0.0), 0);
	for (t = 0.0; t < 3.25; t += 0.125)	/* worker 1 keeps reporting */
		cr_assert_eq(hetsgd_tau_report(e, 1, 0.1, t), 0);
	cr_expect(hetsgd_tau_active(e, 0, 2.9));
	cr_expect_eq(hetsgd_tau_max(e, 2.9), 0.5);
	cr_expect_not(hetsgd_tau_active(e, 0, 3.1));
	cr_expect_eq(hetsgd_tau_max(e, 3.1), 0.1);
	/* the estimate is kept, the worker just does not count */
	cr_expect_eq(hetsgd_tau_get(e, 0), 0.5);
	cr_assert_eq(hetsgd_tau_report(e, 0, 0.5, 3.2), 0);
	cr_expect(hetsgd_tau_active(e, 0, 3.2));
	cr_expect_eq(hetsgd_tau_max(e, 3.2), 0.5);
	/* worker 1 stopped at t = 3.125: stale after 4.525 */
	cr_expect(hetsgd_tau_active(e, 1, 4.5));
	cr_expect_not(hetsgd_tau_active(e, 1, 4.6));
	hetsgd_tau_destroy(e);
}

Test(tau, bad_inputs)
{
	struct hetsgd_tau_est *e = NULL;

	cr_expect_eq(hetsgd_tau_create(0, 4, 1.0, &e), -EINVAL);
	cr_expect_eq(hetsgd_tau_create(2, 0, 1.0, &e), -EINVAL);
	cr_expect_eq(hetsgd_tau_create(2, 1025, 1.0, &e), -EINVAL);
	cr_expect_eq(hetsgd_tau_create(2, 4, 0.0, &e), -EINVAL);
	cr_expect_eq(hetsgd_tau_create(2, 4, -1.0, &e), -EINVAL);
	cr_expect_eq(hetsgd_tau_create(2, 4, NAN, &e), -EINVAL);
	cr_expect_neq(hetsgd_algo_errmsg()[0], '\0');
	cr_expect_null(e, "a failed create leaves its output alone");
	hetsgd_tau_destroy(NULL);
	cr_assert_eq(hetsgd_tau_create(2, 1024, 1.0, &e), 0);
	hetsgd_tau_destroy(e);
	cr_assert_eq(hetsgd_tau_create(2, 1, 1.0, &e), 0);
	cr_assert_eq(hetsgd_tau_report(e, 0, 0.25, 0.0), 0);
	cr_expect_eq(hetsgd_tau_report(e, 2, 0.1, 0.0), -EINVAL);
	cr_expect_eq(hetsgd_tau_report(e, UINT32_MAX, 0.1, 0.0), -EINVAL);
	cr_expect_eq(hetsgd_tau_report(e, 0, -0.1, 0.0), -EINVAL);
	cr_expect_eq(hetsgd_tau_report(e, 0, NAN, 0.0), -EINVAL);
	cr_expect_eq(hetsgd_tau_report(e, 0, INFINITY, 0.0), -EINVAL);
	cr_expect_eq(hetsgd_tau_report(e, 0, -INFINITY, 0.0), -EINVAL);
	cr_expect_neq(hetsgd_algo_errmsg()[0], '\0');
	/* window 1: a bad report would have replaced the estimate */
	cr_expect_eq(hetsgd_tau_get(e, 0), 0.25);
	cr_expect_eq(hetsgd_tau_get(e, 1), 0.0);
	cr_expect_eq(hetsgd_tau_get(e, 2), 0.0);
	hetsgd_tau_destroy(e);
}

/* ---- step-size policies ---- */

static double gamma_of(enum hetsgd_policy p, double gamma, uint32_t n, uint64_t delay,
		       uint64_t R, double tau_i, double tau_max)
{
	struct hetsgd_policy_in in = { .gamma = gamma, .n = n, .delay = delay, .R = R,
				       .tau_i = tau_i, .tau_max = tau_max };

	return hetsgd_policy_gamma(p, &in);
}

Test(policy, vanilla_and_delay_adaptive)
{
	const double g = 0.1;
	uint64_t d;

	for (d = 0; d < 50; d += 7)
		cr_expect_eq(gamma_of(HETSGD_POLICY_VANILLA, g, 4, d, 0, 0.001, 0.01), g);
	/* gamma n / max(n, delay), n = 4 */
	for (d = 0; d <= 4; d++)
		cr_expect_eq(gamma_of(HETSGD_POLICY_DELAY_ADAPTIVE, g, 4, d, 0, 0, 0), g,
			     "delay %llu <= n", (unsigned long long)d);
	cr_expect_float_eq(gamma_of(HETSGD_POLICY_DELAY_ADAPTIVE, g, 4, 5, 0, 0, 0),
			   0.08, 1e-15);
	cr_expect_float_eq(gamma_of(HETSGD_POLICY_DELAY_ADAPTIVE, g, 4, 8, 0, 0, 0),
			   0.05, 1e-15);
	cr_expect_float_eq(gamma_of(HETSGD_POLICY_DELAY_ADAPTIVE, g, 4, 400, 0, 0, 0),
			   0.001, 1e-15);
}

Test(policy, ringmaster)
{
	const double g = 0.1;

	/* R = 3: delays 0 .. 2 step, 3 and beyond are dropped */
	cr_expect_eq(gamma_of(HETSGD_POLICY_RINGMASTER, g, 8, 0, 3, 0, 0), g);
	cr_expect_eq(gamma_of(HETSGD_POLICY_RINGMASTER, g, 8, 2, 3, 0, 0), g);
	cr_expect_eq(gamma_of(HETSGD_POLICY_RINGMASTER, g, 8, 3, 3, 0, 0), 0.0);
	cr_expect_eq(gamma_of(HETSGD_POLICY_RINGMASTER, g, 8, 1000, 3, 0, 0), 0.0);
	/* R = 0 means R = n = 4 */
	cr_expect_eq(gamma_of(HETSGD_POLICY_RINGMASTER, g, 4, 3, 0, 0, 0), g);
	cr_expect_eq(gamma_of(HETSGD_POLICY_RINGMASTER, g, 4, 4, 0, 0, 0), 0.0);
	cr_expect_eq(gamma_of(HETSGD_POLICY_RINGMASTER, g, 4, 5, 0, 0, 0), 0.0);
}

Test(policy, rescaled)
{
	const double g = 0.1;

	/* gamma tau_i / tau_max */
	cr_expect_float_eq(gamma_of(HETSGD_POLICY_RESCALED, g, 4, 0, 0, 0.002, 0.008),
			   0.025, 1e-15);
	cr_expect_float_eq(gamma_of(HETSGD_POLICY_RESCALED, g, 4, 9, 0, 0.006, 0.008),
			   0.075, 1e-15);
	/* the slowest worker steps with gamma; the delay plays no part */
	cr_expect_eq(gamma_of(HETSGD_POLICY_RESCALED, g, 4, 100, 0, 0.008, 0.008), g);
	/* estimated above a stale tau_max: the slowest */
	cr_expect_eq(gamma_of(HETSGD_POLICY_RESCALED, g, 4, 0, 0, 0.010, 0.008), g);
	/* unknown tau: gamma */
	cr_expect_eq(gamma_of(HETSGD_POLICY_RESCALED, g, 4, 0, 0, 0.0, 0.008), g);
	cr_expect_eq(gamma_of(HETSGD_POLICY_RESCALED, g, 4, 0, 0, 0.002, 0.0), g);
	cr_expect_eq(gamma_of(HETSGD_POLICY_RESCALED, g, 4, 0, 0, 0.0, 0.0), g);
}

Test(policy, names)
{
	static const char *const names[] = { "vanilla", "delay-adaptive", "ringmaster", "rescaled" };
	static const enum hetsgd_policy pols[] = {
		HETSGD_POLICY_VANILLA, HETSGD_POLICY_DELAY_ADAPTIVE,
		HETSGD_POLICY_RINGMASTER, HETSGD_POLICY_RESCALED,
	};
	static const char *const mnames[] = { "asgd", "sync", "loscar", "malenia", "ringleader" };
	static const enum hetsgd_method meths[] = {
		HETSGD_METHOD_ASGD, HETSGD_METHOD_SYNC, HETSGD_METHOD_LOSCAR,
		HETSGD_METHOD_MALENIA, HETSGD_METHOD_RINGLEADER,
	};
	enum hetsgd_policy p;
	enum hetsgd_method m;
	size_t i;

	for (i = 0; i < 4; i++) {
		p = (enum hetsgd_policy)0;
		cr_expect_eq(hetsgd_policy_parse(names[i], &p), 0, "%s", names[i]);
		cr_expect_eq(p, pols[i], "%s parsed as %d", names[i], (int)p);
		cr_expect_str_eq(hetsgd_policy_name(pols[i]), names[i]);
	}
	/* the table: every row parses to itself, the list joins the names */
	for (i = 0; hetsgd_policy_at(i); i++) {
		const struct hetsgd_policy_desc *d = hetsgd_policy_at(i);

		cr_expect_eq(hetsgd_policy_get(d->policy), d, "%s", d->name);
		cr_expect_eq(hetsgd_policy_parse(d->name, &p), 0, "%s", d->name);
		cr_expect_eq(p, d->policy);
		cr_expect(d->help && d->gamma, "%s", d->name);
	}
	cr_expect_eq(i, 4);
	cr_expect_null(hetsgd_policy_get((enum hetsgd_policy)0));
	cr_expect_null(hetsgd_policy_get((enum hetsgd_policy)(HETSGD_POLICY_RESCALED + 1)));
	{
		char buf[128], small[8];

		cr_expect_eq(hetsgd_policy_list(buf, sizeof(buf), ", "),
			     strlen("vanilla, delay-adaptive, ringmaster, rescaled"));
		cr_expect_str_eq(buf, "vanilla, delay-adaptive, ringmaster, rescaled");
		hetsgd_policy_list(small, sizeof(small), ", ");
		cr_expect_str_eq(small, "vanilla");
	}
	p = HETSGD_POLICY_VANILLA;
	cr_expect_eq(hetsgd_policy_parse("adaptive", &p), -EINVAL);
	cr_expect_eq(hetsgd_policy_parse(NULL, &p), -EINVAL);
	cr_expect_eq(p, HETSGD_POLICY_VANILLA);
	for (i = 0; i < 5; i++) {
		m = (enum hetsgd_method)0;
		cr_expect_eq(hetsgd_method_parse(mnames[i], &m), 0, "%s", mnames[i]);
		cr_expect_eq(m, meths[i]);
		cr_expect_str_eq(hetsgd_method_name(meths[i]), mnames[i]);
	}
	cr_expect_eq(hetsgd_method_parse("sgd", &m), -EINVAL);
}

/* ---- Malenia and Ringleader: the gradient table ---- */

/*
 * The table of these tests, n = 3 workers, d = 2:
 *   worker 0: (1, 2) + (3, 4) = (4, 6), b = 2, mean (2, 3)
 *   worker 1: (6, 0),                   b = 1, mean (6, 0)
 *   worker 2: 3 x (0, 3)     = (0, 9),  b = 3, mean (0, 3)
 * sum 1/b_i = 1/2 + 1 + 1/3 = 11/6: harmonic mean (11/18)^-1 = 18/11, so
 * Malenia steps for S / 3 <= 18/11, S <= 54/11 = 4.909...
 * The step with x = (1, 1), gamma = 0.6: the mean of the means is
 * (8/3, 2), x = (1 - 1.6, 1 - 1.2) = (-0.6, -0.2).
 */
static void table_of_three(struct hetsgd_grad_table *t, int with_worker2)
{
	static const float g0a[2] = { 1, 2 }, g0b[2] = { 3, 4 }, g1[2] = { 6, 0 },
			   g2[2] = { 0, 3 };

	cr_assert_eq(hetsgd_grad_table_init(t, 3, 2), 0, "%s", hetsgd_algo_errmsg());
	hetsgd_grad_table_add(t, 0, g0a);
	hetsgd_grad_table_add(t, 1, g1);
	hetsgd_grad_table_add(t, 0, g0b);
	for (int r = 0; with_worker2 && r < 3; r++)
		hetsgd_grad_table_add(t, 2, g2);
}

Test(table, sums_counts_and_clear)
{
	struct hetsgd_grad_table t;

	table_of_three(&t, 1);
	cr_expect_eq(t.filled, 3);
	cr_expect_eq(t.count[0], 2);
	cr_expect_eq(t.count[1], 1);
	cr_expect_eq(t.count[2], 3);
	cr_expect_eq(t.sum[0], 4.0f);
	cr_expect_eq(t.sum[1], 6.0f);
	cr_expect_eq(t.sum[2], 6.0f);
	cr_expect_eq(t.sum[5], 9.0f);
	cr_expect_eq(hetsgd_grad_table_row(&t, 2), t.sum + 4);
	hetsgd_grad_table_clear(&t);
	cr_expect_eq(t.filled, 0);
	for (int j = 0; j < 6; j++)
		cr_expect_eq(t.sum[j], 0.0f);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(t.count[i], 0);
	cr_expect_eq(hetsgd_ringleader_ready(&t), 0);
	hetsgd_grad_table_fini(&t);
	cr_expect_eq(hetsgd_grad_table_init(&t, 0, 2), -EINVAL);
	cr_expect_eq(hetsgd_grad_table_init(&t, 3, 0), -EINVAL);
}

Test(table, step_is_the_mean_of_the_means)
{
	struct hetsgd_grad_table t;
	float x[2] = { 1, 1 };

	table_of_three(&t, 1);
	hetsgd_grad_table_step(&t, x, 0.6f);
	/* three roundings per coordinate, each within 2^-24 of values <= 1.6 */
	cr_expect_float_eq(x[0], -0.6f, 1e-6, "x[0] = %.9g", (double)x[0]);
	cr_expect_float_eq(x[1], -0.2f, 1e-6, "x[1] = %.9g", (double)x[1]);
	hetsgd_grad_table_fini(&t);
}

Test(malenia, step_condition)
{
	struct hetsgd_grad_table t;

	/* worker 2 has nothing yet: no S makes it step */
	table_of_three(&t, 0);
	cr_expect_eq(hetsgd_malenia_ready(&t, 0.001), 0);
	cr_expect_eq(hetsgd_malenia_ready(&t, 0), 0);
	hetsgd_grad_table_fini(&t);
	/* harmonic mean 18/11: S = 3 (and S = 0, meaning n = 3), 4.9 step; 4.91, 5 do not */
	table_of_three(&t, 1);
	cr_expect_eq(hetsgd_malenia_ready(&t, 0), 1);
	cr_expect_eq(hetsgd_malenia_ready(&t, 3), 1);
	cr_expect_eq(hetsgd_malenia_ready(&t, 4.9), 1);
	cr_expect_eq(hetsgd_malenia_ready(&t, 4.91), 0);
	cr_expect_eq(hetsgd_malenia_ready(&t, 5), 0);
	hetsgd_grad_table_fini(&t);
}

Test(malenia, equal_batches_reach_s_exactly)
{
	/* b = (3, 3, 3): harmonic mean 3 = S / n for S = 9, whatever 1/3 rounds to */
	struct hetsgd_grad_table t;
	static const float g[2] = { 1, 1 };

	cr_assert_eq(hetsgd_grad_table_init(&t, 3, 2), 0);
	for (uint32_t i = 0; i < 3; i++)
		for (int r = 0; r < 3; r++)
			hetsgd_grad_table_add(&t, i, g);
	cr_expect_eq(hetsgd_malenia_ready(&t, 9), 1);
	cr_expect_eq(hetsgd_malenia_ready(&t, 9.001), 0);
	hetsgd_grad_table_fini(&t);
}

Test(malenia, admit_only_the_current_model)
{
	cr_expect_eq(hetsgd_malenia_admit(5, 5), 1);
	cr_expect_eq(hetsgd_malenia_admit(4, 5), 0);	/* older: dropped */
	cr_expect_eq(hetsgd_malenia_admit(0, 5), 0);
	cr_expect_eq(hetsgd_malenia_admit(6, 5), -EPROTO);	/* never sent */
}

Test(ringleader, admit_keeps_the_in_flight_gradient)
{
	cr_expect_eq(hetsgd_ringleader_admit(0, 0), 1);
	cr_expect_eq(hetsgd_ringleader_admit(5, 5), 1);
	cr_expect_eq(hetsgd_ringleader_admit(4, 5), 1);	/* in flight at the step: kept */
	cr_expect_eq(hetsgd_ringleader_admit(3, 5), -EPROTO);	/* delay 2: the protocol forbids it */
	cr_expect_eq(hetsgd_ringleader_admit(6, 5), -EPROTO);
}

Test(ringleader, a_round_of_three)
{
	/*
	 * Round k = 1.  Worker 0's first gradient was in flight at the step to
	 * version 1 (computed at version 0): it is admitted and counts here
	 * with its second, at version 1.  Worker 1 contributes; the round is
	 * not over until worker 2 has, and then steps as the table above.
	 */
	struct hetsgd_grad_table t;
	static const float g0a[2] = { 1, 2 }, g0b[2] = { 3, 4 }, g1[2] = { 6, 0 },
			   g2[2] = { 0, 3 };
	float x[2] = { 1, 1 };

	cr_assert_eq(hetsgd_grad_table_init(&t, 3, 2), 0);
	cr_expect_eq(hetsgd_ringleader_admit(0, 1), 1);
	hetsgd_grad_table_add(&t, 0, g0a);
	cr_expect_eq(hetsgd_ringleader_admit(1, 1), 1);
	hetsgd_grad_table_add(&t, 0, g0b);
	hetsgd_grad_table_add(&t, 1, g1);
	cr_expect_eq(hetsgd_ringleader_ready(&t), 0);
	for (int r = 0; r < 2; r++) {
		hetsgd_grad_table_add(&t, 2, g2);
		cr_expect_eq(hetsgd_ringleader_ready(&t), 1);
	}
	hetsgd_grad_table_add(&t, 2, g2);
	hetsgd_grad_table_step(&t, x, 0.6f);
	cr_expect_float_eq(x[0], -0.6f, 1e-6, "x[0] = %.9g", (double)x[0]);
	cr_expect_float_eq(x[1], -0.2f, 1e-6, "x[1] = %.9g", (double)x[1]);
	hetsgd_grad_table_clear(&t);
	cr_expect_eq(hetsgd_ringleader_ready(&t), 0);
	hetsgd_grad_table_fini(&t);
}

/* ---- LOSCAR merge ---- */

Test(merge, delay_corrected)
{
	/* values and differences are small dyadic numbers: every sum is exact */
	float x[6] = { 1, 2, 3, 4, 5, 6 };
	const uint32_t idx[3] = { 1, 4, 5 };
	const float y[3] = { 2.5f, 5.0f, 6.0f }, mbar[3] = { 3.0f, 4.0f, 7.5f };
	/* x[1] += 0.5, x[4] -= 1, x[5] += 1.5 */
	const float want[6] = { 1, 2.5f, 3, 4, 4, 7.5f };
	size_t j;

	hetsgd_loscar_merge(HETSGD_MERGE_DELAY_CORRECTED, x, idx, 3, y, mbar);
	for (j = 0; j < 6; j++)
		cr_expect_eq(x[j], want[j], "x[%zu] = %g, not %g", j, (double)x[j], (double)want[j]);
	/* k = 0 touches nothing */
	hetsgd_loscar_merge(HETSGD_MERGE_DELAY_CORRECTED, x, idx, 0, y, mbar);
	cr_expect_eq(memcmp(x, want, sizeof(x)), 0);
}

Test(merge, delay_corrected_keeps_local_progress)
{
	/* the worker moved x[2] from y = 3 to 3.25 while the average 2 was in
	 * flight: the merge lands on the average plus that progress */
	float x[4] = { 0, 0, 3.25f, 0 };
	const uint32_t idx[1] = { 2 };
	const float y[1] = { 3.0f }, mbar[1] = { 2.0f };

	hetsgd_loscar_merge(HETSGD_MERGE_DELAY_CORRECTED, x, idx, 1, y, mbar);
	cr_expect_eq(x[2], 2.25f);
}

Test(merge, overwrite)
{
	float x[6] = { 1, 2, 3, 4, 5, 6 };
	const uint32_t idx[3] = { 5, 0, 3 };
	const float y[3] = { 100, 100, 100 }, mbar[3] = { -1.5f, 0.25f, 9.0f };
	const float want[6] = { 0.25f, 2, 3, 9.0f, 5, -1.5f };
	size_t j;

	/* y plays no part */
	hetsgd_loscar_merge(HETSGD_MERGE_OVERWRITE, x, idx, 3, y, mbar);
	for (j = 0; j < 6; j++)
		cr_expect_eq(x[j], want[j], "x[%zu] = %g, not %g", j, (double)x[j], (double)want[j]);
}

Test(merge, agreeing_average_keeps_x_bitwise)
{
	/* awkward values: mbar - y = 0 exactly, so x + 0 must be x to the bit */
	float x[5] = { 0.1f, -3.3e-7f, 1.0e30f, 7.0f / 3.0f, -2.2f };
	float keep[5];
	const uint32_t idx[4] = { 4, 0, 1, 2 };
	const float y[4] = { 0.3f, 1.0f / 3.0f, -1e-20f, 123.456f };

	memcpy(keep, x, sizeof(x));
	hetsgd_loscar_merge(HETSGD_MERGE_DELAY_CORRECTED, x, idx, 4, y, y);
	cr_expect_eq(memcmp(x, keep, sizeof(x)), 0, "x changed");
}

Test(merge, names)
{
	enum hetsgd_merge m = (enum hetsgd_merge)0;

	cr_expect_eq(hetsgd_merge_parse("delay-corrected", &m), 0);
	cr_expect_eq(m, HETSGD_MERGE_DELAY_CORRECTED);
	cr_expect_eq(hetsgd_merge_parse("overwrite", &m), 0);
	cr_expect_eq(m, HETSGD_MERGE_OVERWRITE);
	cr_expect_str_eq(hetsgd_merge_name(HETSGD_MERGE_DELAY_CORRECTED), "delay-corrected");
	cr_expect_str_eq(hetsgd_merge_name(HETSGD_MERGE_OVERWRITE), "overwrite");
	cr_expect_eq(hetsgd_merge_parse("average", &m), -EINVAL);
	cr_expect_eq(hetsgd_merge_parse(NULL, &m), -EINVAL);
	cr_expect_eq(m, HETSGD_MERGE_OVERWRITE);
}

/* ---- configuration check ---- */

/*
 * cfg must fail with -EINVAL and a message that names `word`.  The message
 * is first set to one that holds none of the words used below, so a
 * message left over from an earlier check cannot pass.
 */
static void expect_bad(const struct hetsgd_engine_cfg *cfg, uint32_t n, size_t d,
		       const char *word, const char *what)
{
	enum hetsgd_method m;
	const char *msg;
	int rc;

	cr_assert_eq(hetsgd_method_parse("", &m), -EINVAL);
	rc = hetsgd_engine_cfg_check(cfg, n, d);
	msg = hetsgd_algo_errmsg();
	cr_expect_eq(rc, -EINVAL, "%s: returned %d", what, rc);
	cr_expect_neq(msg[0], '\0', "%s: no message", what);
	cr_expect(strstr(msg, word), "%s: the message '%s' does not mention '%s'", what, msg, word);
}

Test(cfg, defaults_pass)
{
	struct hetsgd_engine_cfg c;

	hetsgd_engine_cfg_init(&c);
	/* the documented defaults */
	cr_expect_eq(c.method, HETSGD_METHOD_ASGD);
	cr_expect_eq(c.policy, HETSGD_POLICY_RESCALED);
	cr_expect_eq(c.merge, HETSGD_MERGE_DELAY_CORRECTED);
	cr_expect_eq(c.overlap, 1);
	cr_expect_eq(c.round_s, 0.05);
	cr_expect_eq(c.gamma, 0.05f);
	cr_expect_eq(c.batch, 32);
	cr_expect_eq(c.profile.kind, HETSGD_PROFILE_CONST);
	cr_expect_eq(c.profile.unit_s, 0.0);
	cr_expect_eq(c.budget_s, 10.0);
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	/* every method and policy with the defaults, and the edges that are allowed */
	c.method = HETSGD_METHOD_SYNC;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	c.method = HETSGD_METHOD_LOSCAR;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	c.k = 100;		/* K = d: the dense baseline */
	c.comm_delay_s = 0.01;	/* LOSCAR may emulate a slow network */
	c.merge = HETSGD_MERGE_OVERWRITE;
	c.overlap = 0;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	hetsgd_engine_cfg_init(&c);
	c.budget_s = 0.0;
	c.budget_grads = 1000;	/* any one budget or target is enough */
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	c.budget_grads = 0;
	c.target_acc = 1.0;
	c.eval_interval_s = 0.5;	/* a target is checked at evaluations */
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	c.target_acc = 0.0;
	c.target_loss = 0.1;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	hetsgd_engine_cfg_init(&c);
	c.profile.noise = 2.0;
	c.profile.kind = HETSGD_PROFILE_SQUARED;
	c.profile.unit_s = 0.001;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 1, 1), 0, "%s", hetsgd_algo_errmsg());
}

Test(cfg, averaging_names_and_auto)
{
	enum hetsgd_averaging a;

	cr_expect_eq(hetsgd_averaging_parse("sharded", &a), 0);
	cr_expect_eq(a, HETSGD_AVERAGING_SHARDED);
	cr_expect_str_eq(hetsgd_averaging_name(HETSGD_AVERAGING_SERVER), "server");
	cr_expect_lt(hetsgd_averaging_parse("ring", &a), 0);
	cr_expect(strstr(hetsgd_algo_errmsg(), "auto, server or sharded"), "%s", hetsgd_algo_errmsg());
	/* auto: sharded from HETSGD_SHARDED_MIN_WORKERS on, for the methods that average */
	cr_expect_eq(hetsgd_averaging_resolve(HETSGD_AVERAGING_AUTO, HETSGD_METHOD_LOSCAR,
					      HETSGD_SHARDED_MIN_WORKERS - 1), HETSGD_AVERAGING_SERVER);
	cr_expect_eq(hetsgd_averaging_resolve(HETSGD_AVERAGING_AUTO, HETSGD_METHOD_SYNC,
					      HETSGD_SHARDED_MIN_WORKERS), HETSGD_AVERAGING_SHARDED);
	cr_expect_eq(hetsgd_averaging_resolve(HETSGD_AVERAGING_AUTO, HETSGD_METHOD_ASGD, 64),
		     HETSGD_AVERAGING_SERVER);
	cr_expect_eq(hetsgd_averaging_resolve(HETSGD_AVERAGING_SERVER, HETSGD_METHOD_LOSCAR, 64),
		     HETSGD_AVERAGING_SERVER);
}

Test(cfg, contradictions)
{
	struct hetsgd_engine_cfg c;

	hetsgd_engine_cfg_init(&c);
	expect_bad(&c, 0, 100, "worker", "no worker");

	c.method = HETSGD_METHOD_LOSCAR;
	c.k = 101;
	expect_bad(&c, 4, 100, "K", "K > d");
	c.k = 0;
	c.round_s = 0.0;
	expect_bad(&c, 4, 100, "round", "round_s 0");
	c.round_s = -0.05;
	expect_bad(&c, 4, 100, "round", "round_s < 0");
	c.round_s = NAN;
	expect_bad(&c, 4, 100, "round", "round_s NaN");

	/* sharded averaging: LOSCAR and SYNC only; round_steps: LOSCAR only */
	hetsgd_engine_cfg_init(&c);
	c.averaging = HETSGD_AVERAGING_SHARDED;
	expect_bad(&c, 4, 100, "sharded averaging applies to loscar and sync", "sharded asgd");
	c.method = HETSGD_METHOD_MALENIA;
	expect_bad(&c, 4, 100, "sharded averaging applies to loscar and sync", "sharded malenia");
	c.method = HETSGD_METHOD_SYNC;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	c.round_steps = 3;
	expect_bad(&c, 4, 100, "steps per round apply to loscar", "round_steps with sync");
	c.method = HETSGD_METHOD_LOSCAR;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	c.averaging = (enum hetsgd_averaging)7;
	expect_bad(&c, 4, 100, "unknown averaging", "averaging 7");

	hetsgd_engine_cfg_init(&c);
	c.method = HETSGD_METHOD_MALENIA;
	c.malenia_s = -1;
	expect_bad(&c, 4, 100, "Malenia", "S < 0");
	c.malenia_s = INFINITY;
	expect_bad(&c, 4, 100, "Malenia", "S infinite");
	c.malenia_s = 0;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());
	c.method = HETSGD_METHOD_RINGLEADER;
	cr_expect_eq(hetsgd_engine_cfg_check(&c, 4, 100), 0, "%s", hetsgd_algo_errmsg());

	hetsgd_engine_cfg_init(&c);
	c.gamma = 0.0f;
	expect_bad(&c, 4, 100, "gamma", "gamma 0");
	c.gamma = -0.1f;
	expect_bad(&c, 4, 100, "gamma", "gamma < 0");
	c.gamma = NAN;
	expect_bad(&c, 4, 100, "gamma", "gamma NaN");
	c.gamma = INFINITY;
	expect_bad(&c, 4, 100, "gamma", "gamma inf");

	hetsgd_engine_cfg_init(&c);
	c.batch = 0;
	expect_bad(&c, 4, 100, "batch", "batch 0");

	hetsgd_engine_cfg_init(&c);
	c.budget_s = 0.0;
	expect_bad(&c, 4, 100, "budget", "no budget at all");

	hetsgd_engine_cfg_init(&c);
	c.target_acc = 1.5;
	c.eval_interval_s = 0.5;
	expect_bad(&c, 4, 100, "accuracy", "target_acc > 1");

	/* a target nobody evaluates would never stop the run */
	hetsgd_engine_cfg_init(&c);
	c.budget_s = 0.0;
	c.target_loss = 0.1;
	expect_bad(&c, 4, 100, "evaluation interval", "target without evaluations");

	hetsgd_engine_cfg_init(&c);
	c.comm_delay_s = 0.01;
	expect_bad(&c, 4, 100, "delay", "comm delay with ASGD");
	c.method = HETSGD_METHOD_SYNC;
	expect_bad(&c, 4, 100, "delay", "comm delay with SYNC");

	hetsgd_engine_cfg_init(&c);
	c.profile.noise = 3.0;
	expect_bad(&c, 4, 100, "noise", "profile noise 3");
	c.profile.noise = 0.0;
	c.profile.unit_s = -1.0;
	expect_bad(&c, 4, 100, "unit", "profile unit < 0");
}

/* ---- sequential SGD reference ---- */

Test(reference, quadratic_one_step_exact)
{
	const float a[3] = { 1, 2, 4 }, b[3] = { 1, -1, 2 }, gamma = 0.1f;
	/* x1 = 0 - 0.1 a (0 - b) = 0.1 (1, -2, 8): 0.1f times a power of two */
	const float lit[3] = { 0.1f, -0.2f, 0.8f };
	struct hetsgd_objective *obj;
	float x[3] = { 0, 0, 0 };
	size_t j;

	cr_assert_eq(hetsgd_objective_quad_create(3, a, b, &obj), 0);
	cr_assert_eq(hetsgd_sgd_reference(obj, NULL, x, gamma, 1, 1, 5, 0), 0,
		     "%s", hetsgd_algo_errmsg());
	for (j = 0; j < 3; j++) {
		volatile float g = a[j] * (0.0f - b[j]);
		volatile float want = 0.0f - gamma * g;

		cr_expect_eq(x[j], want, "x[%zu] = %.9g, not %.9g", j, (double)x[j], (double)want);
		cr_expect_eq(x[j], lit[j], "x[%zu] = %.9g, not %.9g", j, (double)x[j], (double)lit[j]);
	}
	/* no steps: x is untouched */
	cr_assert_eq(hetsgd_sgd_reference(obj, NULL, x, gamma, 1, 0, 5, 0), 0);
	for (j = 0; j < 3; j++)
		cr_expect_eq(x[j], lit[j]);
	hetsgd_objective_destroy(obj);
}

Test(reference, quadratic_converges)
{
	const float a[3] = { 1, 2, 4 }, b[3] = { 1, -1, 2 };
	struct hetsgd_objective *obj;
	float x[3] = { 0, 0, 0 };
	size_t j;

	/* error factor per step 1 - 0.1 a = 0.9, 0.8, 0.6: 0.9^200 = 7e-10 */
	cr_assert_eq(hetsgd_objective_quad_create(3, a, b, &obj), 0);
	cr_assert_eq(hetsgd_sgd_reference(obj, NULL, x, 0.1f, 1, 200, 5, 0), 0);
	for (j = 0; j < 3; j++)
		cr_expect(fabsf(x[j] - b[j]) < 1e-4f, "x[%zu] = %g, b = %g", j,
			  (double)x[j], (double)b[j]);
	hetsgd_objective_destroy(obj);
}

Test(reference, step_rule_on_identical_samples)
{
	/*
	 * Every sample is the same, so with batch 1 every draw gives the same
	 * gradient: the reference must equal a hand loop x -= gamma g with g
	 * from sample 0, to the bit, whatever the sampler draws.
	 */
	enum { NS = 5 };
	float feat[NS * 2], targ[NS], x[2] = { 0, 0 }, y[2] = { 0, 0 }, g[2];
	const uint32_t zero = 0;
	struct hetsgd_dataset ds = { .n = NS, .p = 2, .dense = feat, .targets = targ };
	struct hetsgd_objective *obj;
	size_t i, t;

	for (i = 0; i < NS; i++) {
		feat[2 * i] = 1.0f;
		feat[2 * i + 1] = 2.0f;
		targ[i] = 3.0f;
	}
	cr_assert_eq(hetsgd_objective_lsq_create(2, &obj), 0);
	/* one step from 0: residual -3, gradient -3 (1, 2), x = 0.1 * (3, 6) */
	cr_assert_eq(hetsgd_sgd_reference(obj, &ds, x, 0.1f, 1, 1, 9, 2), 0,
		     "%s", hetsgd_algo_errmsg());
	cr_expect_eq(x[0], 0.1f * 3.0f);
	cr_expect_eq(x[1], 0.1f * 6.0f);
	cr_assert_eq(hetsgd_sgd_reference(obj, &ds, x, 0.1f, 1, 9, 9, 2), 0);
	for (t = 0; t < 10; t++) {
		cr_assert_eq(hetsgd_objective_loss_grad(obj, y, &ds, &zero, 1, NULL, g), 0);
		for (i = 0; i < 2; i++)
			y[i] -= 0.1f * g[i];
	}
	cr_expect_eq(memcmp(x, y, sizeof(x)), 0, "reference (%.9g, %.9g), hand loop (%.9g, %.9g)",
		     (double)x[0], (double)x[1], (double)y[0], (double)y[1]);
	hetsgd_objective_destroy(obj);
}

Test(reference, softmax_seed_and_worker)
{
	enum { D = 5 * 3 + 3 };
	struct hetsgd_dataset ds = { 0 };
	struct hetsgd_objective *obj;
	float x1[D] = { 0 }, x2[D] = { 0 }, x3[D] = { 0 }, x4[D] = { 0 }, x0[D] = { 0 };

	cr_assert_eq(hetsgd_synth_classification(200, 5, 3, 21, &ds), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(hetsgd_objective_softmax_create(5, 3, 1, 0.0f, &obj), 0);
	cr_assert_eq(obj->d, D);
	cr_assert_eq(hetsgd_sgd_reference(obj, &ds, x1, 0.05f, 8, 40, 7, 1), 0,
		     "%s", hetsgd_algo_errmsg());
	cr_assert_eq(hetsgd_sgd_reference(obj, &ds, x2, 0.05f, 8, 40, 7, 1), 0);
	cr_expect_eq(memcmp(x1, x2, sizeof(x1)), 0, "same seed and worker, different models");
	cr_expect_neq(memcmp(x1, x0, sizeof(x1)), 0, "40 steps did not move x");
	/* another worker draws other batches */
	cr_assert_eq(hetsgd_sgd_reference(obj, &ds, x3, 0.05f, 8, 40, 7, 2), 0);
	cr_expect_neq(memcmp(x1, x3, sizeof(x1)), 0, "workers 1 and 2 gave the same model");
	/* and so does another seed */
	cr_assert_eq(hetsgd_sgd_reference(obj, &ds, x4, 0.05f, 8, 40, 8, 1), 0);
	cr_expect_neq(memcmp(x1, x4, sizeof(x1)), 0, "seeds 7 and 8 gave the same model");
	hetsgd_objective_destroy(obj);
	hetsgd_dataset_free(&ds);
}

Test(reference, bad_inputs)
{
	enum { D = 5 * 3 + 3 };
	struct hetsgd_dataset ds = { 0 }, empty = { .n = 0, .p = 5 };
	struct hetsgd_objective *obj;
	float x[D] = { 0 }, x0[D] = { 0 };

	cr_assert_eq(hetsgd_synth_classification(50, 5, 3, 21, &ds), 0);
	cr_assert_eq(hetsgd_objective_softmax_create(5, 3, 1, 0.0f, &obj), 0);
	cr_expect_eq(hetsgd_sgd_reference(obj, NULL, x, 0.05f, 8, 3, 7, 0), -EINVAL);
	cr_expect_neq(hetsgd_algo_errmsg()[0], '\0');
	cr_expect_eq(hetsgd_sgd_reference(obj, &empty, x, 0.05f, 8, 3, 7, 0), -EINVAL);
	cr_expect_eq(hetsgd_sgd_reference(obj, &ds, x, 0.05f, 0, 3, 7, 0), -EINVAL);
	cr_expect_eq(memcmp(x, x0, sizeof(x)), 0, "a failed call moved x");
	hetsgd_objective_destroy(obj);
	hetsgd_dataset_free(&ds);
}

/* A worker that died is waited for no more; what it sent this round counts. */
Test(grad_table, a_lost_worker_leaves_the_round_and_its_sent_gradients_count)
{
	struct hetsgd_grad_table t;
	float g0[2] = { 1, 2 }, g2[2] = { 3, -1 }, x[2] = { 0, 0 };

	cr_assert_eq(hetsgd_grad_table_init(&t, 3, 2), 0);
	hetsgd_grad_table_add(&t, 0, g0);
	hetsgd_grad_table_add(&t, 2, g2);
	cr_expect_not(hetsgd_ringleader_ready(&t), "worker 1 has nothing yet");
	cr_expect_not(hetsgd_malenia_ready(&t, 0));
	hetsgd_grad_table_lose(&t, 1);
	cr_expect(hetsgd_ringleader_ready(&t), "only live workers are waited for");
	cr_expect(hetsgd_malenia_ready(&t, 0), "S = n: one gradient from every live worker");
	/* the mean over the 2 workers that sent: x -= 0.5 (1/2) (g0 + g2) */
	hetsgd_grad_table_step(&t, x, 0.5f);
	cr_expect_float_eq(x[0], -1.0f, 1e-6);
	cr_expect_float_eq(x[1], -0.25f, 1e-6);
	/* worker 0 dies after sending: its gradient still counts this round */
	hetsgd_grad_table_clear(&t);
	hetsgd_grad_table_add(&t, 0, g0);
	hetsgd_grad_table_lose(&t, 0);
	cr_expect_not(hetsgd_ringleader_ready(&t), "worker 2, alive, has not sent");
	hetsgd_grad_table_add(&t, 2, g2);
	cr_expect(hetsgd_ringleader_ready(&t));
	x[0] = x[1] = 0;
	hetsgd_grad_table_step(&t, x, 1.0f);
	cr_expect_float_eq(x[0], -2.0f, 1e-6);
	cr_expect_float_eq(x[1], -0.5f, 1e-6);
	hetsgd_grad_table_fini(&t);
}
