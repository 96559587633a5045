/*
 * Malenia SGD (Tyurin and Richtarik, NeurIPS 2023, arXiv 2305.12387): a
 * worker computes gradients at its model and writes them one after
 * another, without waiting for a reply; a model the server broadcasts
 * lands when it lands and the next gradient is computed at it.  The
 * server keeps, per worker, the sum and count b_i of the gradients
 * computed at its current model x_k (hetsgd_grad_table, policy.c); when
 * every b_i >= 1 and (1/n sum 1/b_i)^-1 >= S / n it steps
 *   x_{k+1} = x_k - gamma (1/n) sum_i sum_i / b_i,
 * clears the table and writes x_{k+1} to every worker.  A gradient
 * computed at an older model is dropped (counted in the result's
 * dropped).  The decisions the paper leaves open: algo/README.md.
 */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "methods.h"
#include "server.h"
#include "worker.h"

/*
 * The streaming worker (ops->streams): take a model that landed, compute
 * g at the model held; drop g if a newer model landed meanwhile; wait
 * until the previous GRAD is written (its values are gathered in xs,
 * which the encoder reads), post g.
 */
static int malenia_worker_loop(struct worker *w)
{
	struct eng *e = w->e;
	uint64_t ver = eng_start_version(e);
	int ret;

	while (!atomic_load(&w->stop)) {
		if (worker_has_reply(w)) {
			pthread_mutex_lock(&w->mu);
			memcpy(w->x, w->in_vec, e->d * sizeof(float));
			ver = w->in_round;
			worker_took_reply(w);
			pthread_mutex_unlock(&w->mu);
		}
		ret = worker_grad(w, w->x);
		if (ret)
			return ret;
		if (worker_has_reply(w)) {
			/* a newer model landed while g was computed: the
			 * server would drop g, so it is dropped here */
			w->dropped++;
			continue;
		}
		worker_wait_written(w);
		if (atomic_load(&w->stop))
			break;
		worker_post_gradient(w, ver);
	}
	return 0;
}

static int malenia_check(const struct hetsgd_engine_cfg *c, uint32_t n, size_t d)
{
	(void)n;
	(void)d;
	if (!isfinite(c->malenia_s) || c->malenia_s < 0.0 || c->malenia_s > 1e9)
		return algo_err(-EINVAL, "Malenia's S = %g must be in [0, 1e9] (0: the number of workers)",
				c->malenia_s);
	return 0;
}

static int malenia_server_init(struct server *s)
{
	return hetsgd_grad_table_init(&s->table, s->e->n, s->e->d);
}

static void malenia_server_fini(struct server *s)
{
	hetsgd_grad_table_fini(&s->table);
}

/* Whether a MODEL is queued for worker wk (it goes out as the freshest). */
static int model_queued(const struct server *s, uint32_t wk)
{
	const struct pending *q = s->pend + (size_t)wk * MAX_PENDING;

	for (uint32_t j = 0; j < s->pend_len[wk]; j++)
		if (q[j].type == MSG_MODEL)
			return 1;
	return 0;
}

static int malenia_try_step(struct server *s, double t);

/* A gradient: into the table when it is at x_k, else dropped; step when ready. */
static int malenia_server_msg(struct server *s, uint32_t wk, const struct eng_hdr *h,
			      const struct hetsgd_block *b, const struct hetsgd_ev *ev, double t)
{
	int ret;

	if (b->encoding == HETSGD_ENC_MASKED)
		return algo_err(-EPROTO, "worker %u sent a masked GRAD, which a malenia server does not expect: the ranks run different configurations",
				wk);
	(void)hetsgd_tau_report(s->tau, wk, h->tau, t);	/* for the statistics */
	ret = hetsgd_malenia_admit(h->round, s->version);
	if (ret < 0)
		return algo_err(-EPROTO, "worker %u sent a gradient at model version %llu; the server is at %llu",
				wk, (unsigned long long)h->round, (unsigned long long)s->version);
	if (!ret) {
		s->dropped++;	/* computed at an older model */
		return 0;
	}
	ret = block_axpy(ev->peer, hetsgd_grad_table_row(&s->table, wk), b, -1.0f);	/* += g */
	if (ret)
		return ret;
	hetsgd_grad_table_counted(&s->table, wk);
	return malenia_try_step(s, t);
}

/* A lost worker is waited for no more: its absence may complete the step. */
static int malenia_server_lost(struct server *s, uint32_t wk, double t)
{
	hetsgd_grad_table_lose(&s->table, wk);
	return s->state == S_TRAINING ? malenia_try_step(s, t) : 0;
}

/* Step and write the new model to every live worker, when the table is ready. */
static int malenia_try_step(struct server *s, double t)
{
	struct eng *e = s->e;
	int ret;

	if (!hetsgd_malenia_ready(&s->table, e->cfg->malenia_s))
		return 0;
	hetsgd_grad_table_step(&s->table, s->x, e->cfg->gamma);
	hetsgd_grad_table_clear(&s->table);
	s->version++;
	s->updates++;
	for (uint32_t i = 0; i < e->n; i++)
		if (!server_is_lost(s, i) && !model_queued(s, i) &&
		    (ret = enqueue(s, i, MSG_MODEL, s->version, 0, t)))
			return ret;
	return 0;
}

/* The result's dropped: the server's and those the workers dropped
 * themselves (a newer model landed while they computed). */
static int malenia_server_finish(struct server *s)
{
	for (uint32_t i = 0; i < s->e->n; i++)
		s->dropped += s->ws[i].dropped;
	return 0;
}

const struct hetsgd_method_ops method_malenia = {
	.id = HETSGD_METHOD_MALENIA,
	.name = "malenia",
	.to_server = MSG_BIT(MSG_GRAD),
	.to_worker = MSG_BIT(MSG_MODEL),
	.streams = 1,
	.check = malenia_check,
	.worker_loop = malenia_worker_loop,
	.server_init = malenia_server_init,
	.server_fini = malenia_server_fini,
	.server_msg = malenia_server_msg,
	.server_lost = malenia_server_lost,
	.server_tick = eval_model_tick,
	.server_finish = malenia_server_finish,
};
