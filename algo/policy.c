/*
 * The small pieces of math the engine's methods are made of: time
 * profiles, the online tau estimate, step-size policies, the LOSCAR merge,
 * the gradient table of Malenia and Ringleader, and the sequential SGD
 * reference.  Each is a pure function of its inputs
 * so that it can be tested on hand-made numbers.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algo_priv.h"

/* ---- names ---- */

struct name_map {
	const char *name;
	int value;
};

static int parse_name(const struct name_map *m, const char *name, int *out,
		      const char *what, const char *choices)
{
	for (; m->name; m++)
		if (name && !strcmp(name, m->name)) {
			*out = m->value;
			return 0;
		}
	return algo_err(-EINVAL, "unknown %s '%s': use one of %s", what,
			name ? name : "(null)", choices);
}

static const char *name_of(const struct name_map *m, int value)
{
	for (; m->name; m++)
		if (m->value == value)
			return m->name;
	return "invalid";
}

static const struct name_map profiles[] = {
	{ "const", HETSGD_PROFILE_CONST }, { "linear", HETSGD_PROFILE_LINEAR },
	{ "sqrt", HETSGD_PROFILE_SQRT }, { "squared", HETSGD_PROFILE_SQUARED },
	{ "random", HETSGD_PROFILE_RANDOM }, { NULL, 0 },
};

static const struct name_map merges[] = {
	{ "delay-corrected", HETSGD_MERGE_DELAY_CORRECTED },
	{ "overwrite", HETSGD_MERGE_OVERWRITE }, { NULL, 0 },
};


int hetsgd_profile_parse(const char *name, enum hetsgd_profile_kind *kind)
{
	int v, ret = parse_name(profiles, name, &v, "time profile",
				"const, linear, sqrt, squared, random");

	if (!ret)
		*kind = (enum hetsgd_profile_kind)v;
	return ret;
}

const char *hetsgd_profile_name(enum hetsgd_profile_kind kind)
{
	return name_of(profiles, kind);
}

int hetsgd_merge_parse(const char *name, enum hetsgd_merge *merge)
{
	int v, ret = parse_name(merges, name, &v, "merge rule",
				"delay-corrected, overwrite");

	if (!ret)
		*merge = (enum hetsgd_merge)v;
	return ret;
}

const char *hetsgd_merge_name(enum hetsgd_merge merge)
{
	return name_of(merges, merge);
}

/* ---- time profiles ---- */

/* [0, 1) with 53 random bits */
static double unit_double(uint64_t *s)
{
	return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

/* Position of worker i in the seeded permutation of 0 .. n-1 (O(n)). */
static uint32_t shuffled_position(uint64_t seed, uint32_t i, uint32_t n)
{
	uint32_t *perm = malloc((size_t)n * sizeof(*perm)), pos = i;
	uint64_t s = seed ^ 0x243f6a8885a308d3ull;

	if (!perm)
		return i;	/* an unshuffled profile beats a failed run */
	for (uint32_t j = 0; j < n; j++)
		perm[j] = j;
	for (uint32_t j = n; j > 1; j--) {
		uint32_t r = (uint32_t)uniform_below(&s, j), t = perm[j - 1];

		perm[j - 1] = perm[r];
		perm[r] = t;
	}
	pos = perm[i];
	free(perm);
	return pos;
}

int hetsgd_profile_mean(const struct hetsgd_profile *prof, uint32_t i,
			uint32_t n, double *tau)
{
	double c = prof->unit_s, f;
	uint32_t k;

	if (n == 0 || i >= n)
		return algo_err(-EINVAL, "profile: worker %u of %u does not exist", i, n);
	if (!(c >= 0.0) || !isfinite(c))
		return algo_err(-EINVAL, "profile: time unit %g s must be finite and >= 0", c);
	if (!(prof->noise >= 0.0) || prof->noise > 2.0)
		return algo_err(-EINVAL, "profile: noise %g must be in 0 .. 2 (a lognormal sigma)",
				prof->noise);
	k = prof->shuffle ? shuffled_position(prof->seed, i, n) : i;
	switch (prof->kind) {
	case HETSGD_PROFILE_CONST:
		f = 1.0;
		break;
	case HETSGD_PROFILE_LINEAR:
		f = (double)k + 1.0;
		break;
	case HETSGD_PROFILE_SQRT:
		f = 1.0 + sqrt((double)k);
		break;
	case HETSGD_PROFILE_SQUARED:
		f = 1.0 + (double)k * (double)k;
		break;
	case HETSGD_PROFILE_RANDOM: {
		uint64_t s = prof->seed ^ (0x9e3779b97f4a7c15ull * ((uint64_t)k + 1));

		f = 1.0 + (double)(n - 1) * unit_double(&s);
		break;
	}
	default:
		return algo_err(-EINVAL, "profile: unknown kind %d", (int)prof->kind);
	}
	*tau = c * f;
	return 0;
}

double hetsgd_profile_step(const struct hetsgd_profile *prof, double mean,
			   uint32_t i, uint64_t step)
{
	uint64_t s;
	double u1, u2, z, sg = prof->noise;

	if (sg <= 0.0 || mean <= 0.0)
		return mean;
	s = prof->seed ^ (0xd1b54a32d192ed03ull * ((uint64_t)i + 1)) ^
	    (0xa0761d6478bd642full * (step + 1));
	u1 = 1.0 - unit_double(&s);	/* (0, 1] */
	u2 = unit_double(&s);
	z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
	return mean * exp(sg * z - 0.5 * sg * sg);
}

/* ---- tau estimation ---- */

/* The estimator's state: private, so that its layout may change. */
struct hetsgd_tau_est {
	uint32_t n;
	uint32_t window;
	double stale_s;
	double *hist;		/* n * window reports, ring per worker */
	uint32_t *count;	/* reports in the ring (<= window) */
	uint32_t *pos;		/* next ring position */
	double *last;		/* time of the last report */
	double *est;		/* current median; 0 before the first report */
	uint8_t *left;
};

void hetsgd_tau_destroy(struct hetsgd_tau_est *e)
{
	if (!e)
		return;
	free(e->hist);
	free(e->count);
	free(e->pos);
	free(e->last);
	free(e->est);
	free(e->left);
	free(e);
}

int hetsgd_tau_create(uint32_t n, uint32_t window, double stale_s, struct hetsgd_tau_est **out)
{
	struct hetsgd_tau_est *e;

	if (n == 0 || window == 0 || window > 1024)
		return algo_err(-EINVAL, "tau estimate: need n >= 1 and window 1 .. 1024 (got %u, %u)",
				n, window);
	if (!(stale_s > 0.0) || !isfinite(stale_s))
		return algo_err(-EINVAL, "tau estimate: stale time %g s must be positive", stale_s);
	e = calloc(1, sizeof(*e));
	if (!e)
		return algo_err(-ENOMEM, "tau estimate: out of memory");
	e->n = n;
	e->window = window;
	e->stale_s = stale_s;
	e->hist = calloc((size_t)n * window, sizeof(*e->hist));
	e->count = calloc(n, sizeof(*e->count));
	e->pos = calloc(n, sizeof(*e->pos));
	e->last = calloc(n, sizeof(*e->last));
	e->est = calloc(n, sizeof(*e->est));
	e->left = calloc(n, sizeof(*e->left));
	if (!e->hist || !e->count || !e->pos || !e->last || !e->est || !e->left) {
		hetsgd_tau_destroy(e);
		return algo_err(-ENOMEM, "tau estimate: out of memory for %u workers", n);
	}
	*out = e;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int hetsgd_tau_report(struct hetsgd_tau_est *e, uint32_t worker, double tau,
		      double now)
{
	double sorted[1024], *h;
	uint32_t c;

	if (worker >= e->n)
		return algo_err(-EINVAL, "tau estimate: worker %u of %u", worker, e->n);
	if (!(tau >= 0.0) || !isfinite(tau))
		return algo_err(-EINVAL, "tau estimate: worker %u reported %g s per gradient",
				worker, tau);
	if (!isfinite(now))
		return algo_err(-EINVAL, "tau estimate: report time %g is not a time", now);
	h = e->hist + (size_t)worker * e->window;
	h[e->pos[worker]] = tau;
	e->pos[worker] = (e->pos[worker] + 1) % e->window;
	if (e->count[worker] < e->window)
		e->count[worker]++;
	c = e->count[worker];
	memcpy(sorted, h, c * sizeof(double));
	qsort(sorted, c, sizeof(double), cmp_double);
	e->est[worker] = c % 2 ? sorted[c / 2] : 0.5 * (sorted[c / 2 - 1] + sorted[c / 2]);
	e->last[worker] = now;
	e->left[worker] = 0;
	return 0;
}

void hetsgd_tau_leave(struct hetsgd_tau_est *e, uint32_t worker)
{
	if (worker < e->n)
		e->left[worker] = 1;
}

double hetsgd_tau_get(const struct hetsgd_tau_est *e, uint32_t worker)
{
	return worker < e->n ? e->est[worker] : 0.0;
}

int hetsgd_tau_active(const struct hetsgd_tau_est *e, uint32_t worker,
		      double now)
{
	if (worker >= e->n || e->left[worker] || e->count[worker] == 0)
		return 0;
	return now - e->last[worker] <= e->stale_s + 4.0 * e->est[worker];
}

double hetsgd_tau_max(const struct hetsgd_tau_est *e, double now)
{
	double m = 0.0;

	for (uint32_t i = 0; i < e->n; i++)
		if (hetsgd_tau_active(e, i, now) && e->est[i] > m)
			m = e->est[i];
	return m;
}

/* ---- step-size policies: one table ---- */

static double gamma_vanilla(const struct hetsgd_policy_in *in)
{
	return in->gamma;
}

static double gamma_delay_adaptive(const struct hetsgd_policy_in *in)
{
	return in->delay > in->n ? in->gamma * (double)in->n / (double)in->delay : in->gamma;
}

static double gamma_ringmaster(const struct hetsgd_policy_in *in)
{
	return in->delay >= (in->R ? in->R : in->n) ? 0.0 : in->gamma;
}

static double gamma_rescaled(const struct hetsgd_policy_in *in)
{
	if (in->tau_i > 0.0 && in->tau_max > 0.0)
		/* a worker estimated above a stale tau_max is the slowest */
		return in->tau_i >= in->tau_max ? in->gamma : in->gamma * in->tau_i / in->tau_max;
	return in->gamma;
}

/*
 * Every policy, in the order --help lists them.  Parsing, names, the
 * engine's range check and the help text all walk this table: a new
 * policy is one enum value, one function and one line here.
 */
static const struct hetsgd_policy_desc policy_table[] = {
	{ HETSGD_POLICY_VANILLA, "vanilla", "gamma", gamma_vanilla },
	{ HETSGD_POLICY_DELAY_ADAPTIVE, "delay-adaptive", "gamma n / max(n, delay)",
	  gamma_delay_adaptive },
	{ HETSGD_POLICY_RINGMASTER, "ringmaster", "gamma; drop the gradient when delay >= R",
	  gamma_ringmaster },
	{ HETSGD_POLICY_RESCALED, "rescaled", "gamma tau_i / tau_max", gamma_rescaled },
};

#define NPOLICIES (sizeof(policy_table) / sizeof(policy_table[0]))

const struct hetsgd_policy_desc *hetsgd_policy_at(size_t i)
{
	return i < NPOLICIES ? &policy_table[i] : NULL;
}

const struct hetsgd_policy_desc *hetsgd_policy_get(enum hetsgd_policy policy)
{
	for (size_t i = 0; i < NPOLICIES; i++)
		if (policy_table[i].policy == policy)
			return &policy_table[i];
	return NULL;
}

size_t hetsgd_policy_list(char *buf, size_t len, const char *sep)
{
	size_t off = 0;

	if (len)
		buf[0] = 0;
	for (size_t i = 0; i < NPOLICIES; i++) {
		int w = snprintf(buf + (off < len ? off : len), off < len ? len - off : 0, "%s%s",
				 i ? sep : "", policy_table[i].name);

		off += w > 0 ? (size_t)w : 0;
	}
	return off;
}

int hetsgd_policy_parse(const char *name, enum hetsgd_policy *policy)
{
	char choices[256];

	for (size_t i = 0; i < NPOLICIES; i++)
		if (name && !strcmp(name, policy_table[i].name)) {
			*policy = policy_table[i].policy;
			return 0;
		}
	hetsgd_policy_list(choices, sizeof(choices), ", ");
	return algo_err(-EINVAL, "unknown policy '%s': use one of %s", name ? name : "(null)",
			choices);
}

const char *hetsgd_policy_name(enum hetsgd_policy policy)
{
	const struct hetsgd_policy_desc *p = hetsgd_policy_get(policy);

	return p ? p->name : "invalid";
}

double hetsgd_policy_gamma(enum hetsgd_policy policy, const struct hetsgd_policy_in *in)
{
	const struct hetsgd_policy_desc *p = hetsgd_policy_get(policy);

	return p ? p->gamma(in) : in->gamma;
}

/* ---- LOSCAR merge ---- */

void hetsgd_loscar_merge(enum hetsgd_merge merge, float *x,
			 const uint32_t *idx, uint32_t k, const float *y,
			 const float *mbar)
{
	if (merge == HETSGD_MERGE_OVERWRITE) {
		for (uint32_t j = 0; j < k; j++)
			x[idx[j]] = mbar[j];
		return;
	}
	/* keep the progress z - y made while the average was in flight */
	for (uint32_t j = 0; j < k; j++)
		x[idx[j]] += mbar[j] - y[j];
}

/* ---- Malenia and Ringleader: the gradient table ---- */

int hetsgd_grad_table_init(struct hetsgd_grad_table *t, uint32_t n, size_t d)
{
	memset(t, 0, sizeof(*t));
	if (n == 0 || d == 0)
		return algo_err(-EINVAL, "a gradient table needs n >= 1 workers and d >= 1, not n = %u, d = %zu",
				n, d);
	t->sum = calloc((size_t)n * d, sizeof(float));
	t->count = calloc(n, sizeof(uint32_t));
	t->lost = calloc(n, 1);
	if (!t->sum || !t->count || !t->lost) {
		hetsgd_grad_table_fini(t);
		return algo_err(-ENOMEM, "out of memory for a gradient table of %u x %zu floats", n, d);
	}
	t->n = n;
	t->d = d;
	return 0;
}

void hetsgd_grad_table_fini(struct hetsgd_grad_table *t)
{
	free(t->sum);
	free(t->count);
	free(t->lost);
	memset(t, 0, sizeof(*t));
}

void hetsgd_grad_table_clear(struct hetsgd_grad_table *t)
{
	memset(t->sum, 0, (size_t)t->n * t->d * sizeof(float));
	memset(t->count, 0, t->n * sizeof(uint32_t));
	t->filled = 0;
}

float *hetsgd_grad_table_row(struct hetsgd_grad_table *t, uint32_t i)
{
	return t->sum + (size_t)i * t->d;
}

void hetsgd_grad_table_counted(struct hetsgd_grad_table *t, uint32_t i)
{
	if (t->count[i]++ == 0)
		t->filled++;
}

void hetsgd_grad_table_add(struct hetsgd_grad_table *t, uint32_t i, const float *g)
{
	float *row = hetsgd_grad_table_row(t, i);

	for (size_t j = 0; j < t->d; j++)
		row[j] += g[j];
	hetsgd_grad_table_counted(t, i);
}

void hetsgd_grad_table_lose(struct hetsgd_grad_table *t, uint32_t i)
{
	if (i < t->n && !t->lost[i]) {
		t->lost[i] = 1;
		t->nlost++;
	}
}

/* Whether every live worker has a gradient in the table (and one lives). */
static int live_filled(const struct hetsgd_grad_table *t)
{
	uint32_t live = 0;

	for (uint32_t i = 0; i < t->n; i++) {
		if (t->lost[i])
			continue;
		if (!t->count[i])
			return 0;
		live++;
	}
	return live > 0;
}

void hetsgd_grad_table_step(const struct hetsgd_grad_table *t, float *x, float gamma)
{
	uint32_t m = t->filled;

	for (uint32_t i = 0; i < t->n && m; i++) {
		const float *row = t->sum + (size_t)i * t->d;
		float c;

		if (!t->count[i])
			continue;
		/* gamma (1/m) (1/b_i) in one factor per worker */
		c = gamma / ((float)m * (float)t->count[i]);
		for (size_t j = 0; j < t->d; j++)
			x[j] -= c * row[j];
	}
}

int hetsgd_malenia_ready(const struct hetsgd_grad_table *t, double S)
{
	double inv = 0.0, n = (double)t->n, m = (double)(t->n - t->nlost);

	if (!live_filled(t))
		return 0;
	if (!(S > 0.0))
		S = n;
	for (uint32_t i = 0; i < t->n; i++)
		if (!t->lost[i])
			inv += 1.0 / (double)t->count[i];
	/* (1/m sum_live 1/b_i)^-1 >= S / n  <=>  m n >= S sum_live 1/b_i */
	return m * n >= S * inv * (1.0 - 1e-12);
}

int hetsgd_malenia_admit(uint64_t v, uint64_t k)
{
	if (v > k)
		return algo_err(-EPROTO, "a gradient at model version %llu; the server is at %llu",
				(unsigned long long)v, (unsigned long long)k);
	return v == k;
}

int hetsgd_ringleader_ready(const struct hetsgd_grad_table *t)
{
	return live_filled(t);
}

int hetsgd_ringleader_admit(uint64_t v, uint64_t k)
{
	if (v > k || k - v > 1)
		return algo_err(-EPROTO, "a gradient at model version %llu; the server is at %llu, and Ringleader's protocol keeps every delay <= 1",
				(unsigned long long)v, (unsigned long long)k);
	return 1;
}

/* ---- sequential reference ---- */

int hetsgd_sgd_reference(struct hetsgd_objective *obj,
			 const struct hetsgd_dataset *data, float *x,
			 float gamma, uint32_t batch, uint64_t steps,
			 uint64_t seed, uint32_t worker)
{
	uint64_t s = worker_stream(seed, worker);
	int quad = obj->kind == HETSGD_OBJ_QUAD;
	uint32_t m = quad ? 0 : batch;
	uint32_t *idx = NULL;
	float *g = malloc(obj->d * sizeof(float));
	int ret = 0;

	if (!quad && (!data || data->n == 0 || batch == 0)) {
		free(g);
		return algo_err(-EINVAL, "sgd reference: need data and a batch >= 1");
	}
	if (m)
		idx = malloc((size_t)m * sizeof(*idx));
	if (!g || (m && !idx)) {
		free(g);
		free(idx);
		return algo_err(-ENOMEM, "sgd reference: out of memory for d = %zu", obj->d);
	}
	for (uint64_t t = 0; t < steps && !ret; t++) {
		if (m)
			draw_batch(&s, data->n, idx, m);
		ret = hetsgd_objective_loss_grad(obj, x, quad ? NULL : data, idx, m, NULL, g);
		if (!ret)
			sgd_step(x, g, gamma, obj->d);
	}
	free(g);
	free(idx);
	return ret;
}
