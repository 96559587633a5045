/*
 * Sharded averaging, the workers' side (shard.h): the tables a shard's
 * owner keeps, the parts and results on the wire, the inbox assembled
 * from the shards' results, and what a worker's death changes.
 */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shard.h"
#include "worker.h"

#define NONE UINT64_MAX

/* A message waiting to go, in order per destination rank. */
struct item {
	int peer;		/* rank; this rank's own: a local delivery */
	uint16_t type;		/* PART, SHARD, NOTICE, TICK */
	uint32_t shard;
	uint64_t round;		/* PART, SHARD: the round of the parts;
				 * NOTICE: the first round sent */
	double due;
	struct eng_hdr h;	/* TICK: the posted header */
	float *copy;		/* SHARD: its values, once its table slot was
				 * reused before it went out (else NULL) */
};

/* One round of one shard at its owner. */
struct tab {
	uint64_t round;		/* NONE: free */
	uint8_t *got;		/* per worker: its part is in its row */
	float *rows;		/* n x len: worker i's part in row i */
	uint64_t res_round;	/* the round of the result in res; NONE */
	float *res;		/* len: the result being written */
};

/* A shard this worker owns, or holds parts or notices of. */
struct own {
	int on;
	struct tab tab[SHARD_ROUNDS];
	uint64_t *cut;		/* per worker: its first round sent here; NONE:
				 * no notice yet */
	uint64_t last_done;	/* the last round completed; NONE: none */
	float *base;		/* SYNC: this shard of the model */
};

struct shard {
	uint32_t n, me;		/* workers; this worker */
	uint64_t L;		/* values per round: K or d */
	int sync;		/* SYNC: results are the model, version r + 1 */
	uint32_t need;		/* non-empty shards */
	uint8_t *alive;		/* per worker, as the transport says */
	uint32_t *before;	/* scratch: owners before a death */
	struct own *own;	/* per shard */
	/* the inbox being assembled */
	uint64_t await;		/* the result round awaited; NONE */
	uint64_t next_post;	/* the round this worker posts next */
	const float *src;	/* its values of the posted round (y or g) */
	uint8_t *have;		/* per shard: its result is in the inbox */
	uint32_t nhave;
	uint64_t snap_round;	/* SNAPREQ: snapshot after this round */
	int snap_pending;
	/* messages waiting to go */
	struct item *q;
	size_t nq, capq;
	uint8_t *blocked;	/* per rank, during one flush */
};

int shard_find(uint64_t L, uint32_t n, uint32_t first, uint32_t count)
{
	uint32_t lo, hi;

	for (uint32_t s = 0; s < n; s++) {
		shard_bounds(L, n, s, &lo, &hi);
		if (lo == first && hi - lo == count && count)
			return (int)s;
		if (lo > first)
			break;
	}
	return -1;
}

/* The owner of shard s: the first live worker from s on, wrapping. */
static uint32_t owner_of(const struct shard *sh, uint32_t s)
{
	for (uint32_t i = 0; i < sh->n; i++) {
		uint32_t o = (s + i) % sh->n;

		if (sh->alive[o])
			return o;
	}
	return sh->me;	/* never: this worker is alive */
}

static uint32_t shard_len(const struct shard *sh, uint32_t s)
{
	uint32_t lo, hi;

	shard_bounds(sh->L, sh->n, s, &lo, &hi);
	return hi - lo;
}

static int own_get(struct worker *w, uint32_t s, struct own **out)
{
	struct shard *sh = w->sh;
	struct own *o = &sh->own[s];
	size_t len = shard_len(sh, s);

	if (!o->on) {
		o->cut = malloc(sh->n * sizeof(*o->cut));
		o->base = sh->sync ? calloc(len + 1, sizeof(float)) : NULL;
		if (!o->cut || (sh->sync && !o->base))
			return algo_err(-ENOMEM, "worker %u: out of memory for shard %u", sh->me, s);
		for (uint32_t i = 0; i < SHARD_ROUNDS; i++) {
			struct tab *t = &o->tab[i];

			t->round = t->res_round = NONE;
			t->got = calloc(sh->n, 1);
			t->rows = malloc((sh->n * len + 1) * sizeof(float));
			t->res = malloc((len + 1) * sizeof(float));
			if (!t->got || !t->rows || !t->res)
				return algo_err(-ENOMEM, "worker %u: out of memory for shard %u", sh->me, s);
		}
		/* its first owner hears from every worker from round 0 on */
		for (uint32_t i = 0; i < sh->n; i++)
			o->cut[i] = s == sh->me ? 0 : NONE;
		o->last_done = NONE;
		o->on = 1;
	}
	*out = o;
	return 0;
}

static int queue(struct shard *sh, int peer, uint16_t type, uint32_t s, uint64_t round,
		 double due, const struct eng_hdr *h)
{
	struct item *it;

	if (sh->nq == sh->capq) {
		size_t cap = sh->capq ? 2 * sh->capq : 64;
		struct item *q = realloc(sh->q, cap * sizeof(*q));

		if (!q)
			return algo_err(-ENOMEM, "worker %u: out of memory for its send queue", sh->me);
		sh->q = q;
		sh->capq = cap;
	}
	it = &sh->q[sh->nq++];
	it->peer = peer;
	it->type = type;
	it->shard = s;
	it->round = round;
	it->due = due;
	it->copy = NULL;
	if (h)
		it->h = *h;
	return 0;
}

/* The inbox is complete: the compute thread may merge. */
static void inbox_check(struct worker *w)
{
	struct shard *sh = w->sh;
	uint16_t fl = 0;

	if (sh->await == NONE || sh->nhave < sh->need)
		return;
	if (sh->snap_pending && sh->await >= sh->snap_round) {
		fl = FLAG_SNAP;
		sh->snap_pending = 0;
	}
	worker_reply_in(w, sh->await, fl);
	sh->await = NONE;
}

/* Queued sends of slot t's result get their own copy of it: 0 or -ENOMEM. */
static int detach_pending(struct shard *sh, uint32_t s, const struct tab *t, size_t len)
{
	if (t->res_round == NONE)
		return 0;
	for (size_t i = 0; i < sh->nq; i++) {
		struct item *it = &sh->q[i];

		if (it->type != MSG_SHARD || it->shard != s || it->round != t->res_round || it->copy)
			continue;
		it->copy = malloc((len + 1) * sizeof(float));
		if (!it->copy)
			return algo_err(-ENOMEM, "worker %u: out of memory for a result of shard %u waiting to go",
					sh->me, s);
		memcpy(it->copy, t->res, len * sizeof(float));
	}
	return 0;
}

/*
 * Round t->round of shard s is complete when this worker owns s and every
 * live worker either sent its part or sends s only from a later round
 * (its notice); then the result goes to the workers that sent (and, SYNC,
 * the server).
 */
static int tab_check(struct worker *w, uint32_t s, struct own *o, struct tab *t)
{
	struct shard *sh = w->sh;
	struct eng *e = w->e;
	size_t len = shard_len(sh, s);
	uint32_t count = 0;
	uint64_t r = t->round;
	double due = now_s() + (sh->sync ? 0.0 : e->cfg->comm_delay_s);
	float *sum = t->res;
	int ret;

	if (r == NONE || owner_of(sh, s) != sh->me)
		return 0;
	for (uint32_t i = 0; i < sh->n; i++) {
		if (t->got[i])
			count++;
		else if (sh->alive[i] && (o->cut[i] == NONE || o->cut[i] <= r))
			return 0;
	}
	/* a slow destination (rank 0 descheduled, out of credits) may still
	 * owe a send of the result this slot held: those sends keep a copy */
	ret = detach_pending(sh, s, t, len);
	if (ret)
		return ret;
	/* summed in worker order, as the server path sums its blocks */
	memset(sum, 0, len * sizeof(float));
	for (uint32_t i = 0; i < sh->n; i++) {
		const float *row = t->rows + (size_t)i * len;

		if (!t->got[i])
			continue;
		for (size_t j = 0; j < len; j++)
			sum[j] += row[j];
	}
	if (sh->sync) {
		sgd_step(o->base, sum, e->cfg->gamma / (float)count, len);
		memcpy(t->res, o->base, len * sizeof(float));
	} else {
		for (size_t j = 0; j < len; j++)
			sum[j] = sum[j] / (float)count;
	}
	t->res_round = r;
	t->round = NONE;
	memset(t->got, 0, sh->n);
	o->last_done = r;
	for (uint32_t i = 0; i < sh->n; i++)
		if (sh->alive[i] && o->cut[i] <= r &&
		    (ret = queue(sh, (int)i + 1, MSG_SHARD, s, r, due, NULL)))
			return ret;
	return sh->sync ? queue(sh, 0, MSG_SHARD, s, r, due, NULL) : 0;
}

/* Every round of every shard this worker owns, after a change of who sends. */
static int check_all(struct worker *w)
{
	struct shard *sh = w->sh;
	int ret;

	for (uint32_t s = 0; s < sh->n; s++) {
		struct own *o = &sh->own[s];

		if (!o->on || owner_of(sh, s) != sh->me)
			continue;
		for (uint32_t i = 0; i < SHARD_ROUNDS; i++)
			if ((ret = tab_check(w, s, o, &o->tab[i])))
				return ret;
	}
	return 0;
}

/* Worker wk's part of round r of shard s (values checked as they are read). */
static int part_in(struct worker *w, uint32_t wk, int peer, uint32_t s, uint64_t r,
		   const float *val)
{
	struct shard *sh = w->sh;
	struct own *o;
	struct tab *t;
	size_t len = shard_len(sh, s);
	int ret = own_get(w, s, &o);

	if (ret)
		return ret;
	if (o->cut[wk] == NONE || r < o->cut[wk])
		return algo_err(-EPROTO, "worker %u sent its part of shard %u of round %llu to worker %u, which it does not send that shard to then: the ranks disagree on who owns it",
				wk, s, (unsigned long long)r, sh->me);
	if (o->last_done != NONE && r <= o->last_done)
		return algo_err(-EPROTO, "worker %u sent its part of shard %u of round %llu after round %llu was complete",
				wk, s, (unsigned long long)r, (unsigned long long)o->last_done);
	t = &o->tab[r % SHARD_ROUNDS];
	if (t->round == NONE) {
		t->round = r;
	} else if (t->round != r) {
		return algo_err(-EPROTO, "worker %u sent shard %u of round %llu while round %llu of it is still open: workers are more than %u rounds apart",
				wk, s, (unsigned long long)r, (unsigned long long)t->round,
				SHARD_ROUNDS - 1);
	}
	if (t->got[wk])
		return algo_err(-EPROTO, "worker %u sent shard %u of round %llu twice", wk, s,
				(unsigned long long)r);
	if (peer >= 0)
		ret = block_take(peer, t->rows + (size_t)wk * len, val, len);
	else
		memcpy(t->rows + (size_t)wk * len, val, len * sizeof(float));
	if (ret)
		return ret;
	t->got[wk] = 1;
	return tab_check(w, s, o, t);
}

/* Shard s's result for the awaited round into the inbox. */
static int result_in(struct worker *w, int peer, uint32_t s, const float *val)
{
	struct shard *sh = w->sh;
	uint32_t lo, hi;
	int ret = 0;

	shard_bounds(sh->L, sh->n, s, &lo, &hi);
	if (peer >= 0)
		ret = block_take(peer, w->in_vec + lo, val, hi - lo);
	else
		memcpy(w->in_vec + lo, val, (hi - lo) * sizeof(float));
	if (ret)
		return ret;
	sh->have[s] = 1;
	sh->nhave++;
	inbox_check(w);
	return 0;
}

int shard_post(struct worker *w)
{
	struct shard *sh = w->sh;
	const struct eng_hdr *h = &w->out_hdr;
	uint64_t r = h->round;
	struct eng_hdr tick = *h;
	int ret;

	sh->src = h->type == MSG_ROUND ? w->y : w->g;
	sh->next_post = r + 1;
	sh->await = r + (uint64_t)sh->sync;
	memset(sh->have, 0, sh->n);
	sh->nhave = 0;
	for (uint32_t s = 0; s < sh->n; s++) {
		uint32_t lo, hi, o;

		shard_bounds(sh->L, sh->n, s, &lo, &hi);
		if (lo == hi)
			continue;
		o = owner_of(sh, s);
		ret = o == sh->me ? part_in(w, sh->me, -1, s, r, sh->src + lo) :
				    queue(sh, (int)o + 1, MSG_PART, s, r, 0.0, NULL);
		if (ret)
			return ret;
	}
	tick.type = MSG_TICK;
	tick.flags = h->type;	/* the server reads a ROUND's or a GRAD's report */
	tick.body = 0;
	return queue(sh, 0, MSG_TICK, 0, r, 0.0, &tick);
}

/* ---- the wire ---- */

struct fill_arg {
	struct shard *sh;
	const struct item *it;
	const float *val;
};

static int fill_values(struct eng *e, void *buf, size_t cap, size_t *len, void *arg)
{
	const struct fill_arg *a = arg;
	uint32_t lo, hi;
	struct hetsgd_block_hdr bh = { .kind = a->it->type, .sender = (uint32_t)e->rank,
				       .dim = (uint32_t)e->d,
				       .round = a->it->round +
						(a->it->type == MSG_SHARD ? (uint64_t)a->sh->sync : 0) };
	int ret;

	shard_bounds(a->sh->L, a->sh->n, a->it->shard, &lo, &hi);
	ret = hetsgd_block_encode_dense(buf, cap, &bh, a->val, lo, hi - lo, len);
	return ret ? algo_err(ret, "encoding shard %u: %s", a->it->shard, hetsgd_errmsg()) : 0;
}

/* Where item it's values are: -EPROTO when a result was overwritten. */
static int item_values(struct shard *sh, const struct item *it, const float **val)
{
	uint32_t lo, hi;

	shard_bounds(sh->L, sh->n, it->shard, &lo, &hi);
	if (it->type == MSG_PART) {
		*val = sh->src + lo;
	} else if (it->copy) {
		*val = it->copy;
	} else {
		const struct tab *t = &sh->own[it->shard].tab[it->round % SHARD_ROUNDS];

		if (t->res_round != it->round)
			return algo_err(-EPROTO, "worker %u: the result of shard %u of round %llu was overwritten before it went out",
					sh->me, it->shard, (unsigned long long)it->round);
		*val = t->res;
	}
	return 0;
}

/* 1 sent (or dropped: its rank is down), 0 not now, or an error. */
static int item_send(struct worker *w, const struct item *it)
{
	struct shard *sh = w->sh;
	struct eng *e = w->e;
	struct fill_arg a = { .sh = sh, .it = it };
	struct eng_hdr h;
	int ret;

	if (it->peer == e->rank) {	/* this worker's own shard: deliver */
		ret = item_values(sh, it, &a.val);
		if (ret)
			return ret;
		if (sh->await == it->round + (uint64_t)sh->sync && !sh->have[it->shard])
			ret = result_in(w, -1, it->shard, a.val);
		return ret ? ret : 1;
	}
	if (!hetsgd_tp_peer_up(e->tp, it->peer))
		return 1;	/* nothing more goes to a dead rank */
	switch (it->type) {
	case MSG_TICK:
		h = it->h;
		ret = eng_send(e, it->peer, &h, NULL, NULL);
		break;
	case MSG_NOTICE:
		fill_hdr(&h, MSG_NOTICE, (uint32_t)e->rank, 0, it->round);
		h.steps = it->shard;
		ret = eng_send(e, it->peer, &h, NULL, NULL);
		break;
	default:
		ret = item_values(sh, it, &a.val);
		if (ret)
			return ret;
		fill_hdr(&h, it->type, (uint32_t)e->rank, 0,
			 it->round + (it->type == MSG_SHARD ? (uint64_t)sh->sync : 0));
		ret = eng_send(e, it->peer, &h, fill_values, &a);
		break;
	}
	if (ret == -EAGAIN)
		return 0;
	if (ret == -EPIPE)
		return 1;	/* it died since: PEER_DOWN comes */
	return ret ? ret : 1;
}

int shard_flush(struct worker *w, int *did)
{
	struct shard *sh = w->sh;
	double t = now_s();
	size_t keep = 0;
	int ret = 0;

	memset(sh->blocked, 0, (size_t)w->e->size);
	for (size_t i = 0; i < sh->nq; i++) {
		struct item it = sh->q[i];
		int sent = 0;

		if (!ret && !sh->blocked[it.peer]) {
			if (it.due > t)
				sh->blocked[it.peer] = 1;
			else if ((sent = item_send(w, &it)) < 0)
				ret = sent;
			else if (!sent)
				sh->blocked[it.peer] = 1;
		}
		if (sent > 0) {
			*did = 1;
			free(it.copy);
		} else {
			sh->q[keep++] = it;
		}
	}
	sh->nq = keep;
	return ret;
}

int shard_recv(struct worker *w, const struct hetsgd_ev *ev, const struct eng_hdr *h,
	       const struct hetsgd_block *b)
{
	struct shard *sh = w->sh;
	uint32_t wk = (uint32_t)ev->peer - 1;
	struct own *o;
	int s, ret;

	switch (h->type) {
	case MSG_SNAPREQ:
		sh->snap_round = h->round;
		sh->snap_pending = 1;
		return 0;
	case MSG_NOTICE:
		if (h->steps >= sh->n)
			return algo_err(-EPROTO, "worker %u sent a notice for shard %llu of %u",
					wk, (unsigned long long)h->steps, sh->n);
		ret = own_get(w, (uint32_t)h->steps, &o);
		if (ret)
			return ret;
		if (o->cut[wk] != NONE)
			return algo_err(-EPROTO, "worker %u sent a second notice for shard %llu",
					wk, (unsigned long long)h->steps);
		o->cut[wk] = h->round;
		return check_all(w);
	default:
		break;
	}
	s = b->encoding == HETSGD_ENC_DENSE ? shard_find(sh->L, sh->n, b->first, b->count) : -1;
	if (s < 0)
		return algo_err(-EPROTO, "worker %u sent a %s of values [%u, %llu), which is no shard of %llu values over %u workers: the ranks run different configurations",
				wk, msg_names[h->type], b->first,
				(unsigned long long)b->first + b->count, (unsigned long long)sh->L,
				sh->n);
	if (h->type == MSG_PART)
		return part_in(w, wk, ev->peer, (uint32_t)s, h->round, b->val);
	/* MSG_SHARD */
	if (sh->await != h->round || sh->have[s] || owner_of(sh, (uint32_t)s) != wk)
		return algo_err(-EPROTO, "worker %u sent the result of shard %d for round %llu; worker %u awaits round %llu from worker %u%s",
				wk, s, (unsigned long long)h->round, sh->me,
				(unsigned long long)(sh->await == NONE ? 0 : sh->await),
				owner_of(sh, (uint32_t)s), sh->have[s] ? ", and has it" : "");
	return result_in(w, ev->peer, (uint32_t)s, b->val);
}

int shard_peer_down(struct worker *w, int peer)
{
	struct shard *sh = w->sh;
	uint32_t wk = (uint32_t)peer - 1, keep = 0;
	int ret;

	if (peer < 1 || wk >= sh->n || !sh->alive[wk])
		return 0;
	for (uint32_t s = 0; s < sh->n; s++)
		sh->before[s] = owner_of(sh, s);
	sh->alive[wk] = 0;
	for (size_t i = 0; i < sh->nq; i++)
		if (sh->q[i].peer != peer)
			sh->q[keep++] = sh->q[i];
	sh->nq = keep;
	for (uint32_t s = 0; s < sh->n; s++) {
		uint32_t lo, hi, next = owner_of(sh, s);
		struct own *o;

		if (sh->before[s] != wk)
			continue;
		shard_bounds(sh->L, sh->n, s, &lo, &hi);
		if (lo == hi)
			continue;
		/* the round awaited keeps this worker's own values there */
		if (sh->await != NONE && !sh->have[s]) {
			memcpy(w->in_vec + lo, sh->sync ? w->x + lo : sh->src + lo,
			       (hi - lo) * sizeof(float));
			sh->have[s] = 1;
			sh->nhave++;
		}
		if (next != sh->me) {
			ret = queue(sh, (int)next + 1, MSG_NOTICE, s, sh->next_post, 0.0, NULL);
			if (ret)
				return ret;
			continue;
		}
		ret = own_get(w, s, &o);
		if (ret)
			return ret;
		o->cut[sh->me] = sh->next_post;
		if (sh->sync)	/* the model as this worker has it */
			memcpy(o->base, (sh->await != NONE || worker_has_reply(w) ? w->in_vec : w->x) + lo,
			       (hi - lo) * sizeof(float));
	}
	inbox_check(w);
	return check_all(w);
}

/* ---- set-up ---- */

int shard_init(struct worker *w)
{
	struct eng *e = w->e;
	struct shard *sh = calloc(1, sizeof(*sh));
	struct own *o;
	uint32_t lo, hi;
	int ret;

	if (!sh)
		return algo_err(-ENOMEM, "worker %u: out of memory for sharded averaging", w->id);
	w->sh = sh;
	sh->n = e->n;
	sh->me = w->id;
	sh->sync = e->cfg->method == HETSGD_METHOD_SYNC;
	sh->L = sh->sync ? e->d : e->k;
	sh->await = NONE;
	sh->alive = malloc(sh->n);
	sh->before = malloc(sh->n * sizeof(*sh->before));
	sh->own = calloc(sh->n, sizeof(*sh->own));
	sh->have = calloc(sh->n, 1);
	sh->blocked = calloc((size_t)e->size, 1);
	if (!sh->alive || !sh->before || !sh->own || !sh->have || !sh->blocked)
		return algo_err(-ENOMEM, "worker %u: out of memory for sharded averaging", w->id);
	memset(sh->alive, 1, sh->n);
	for (uint32_t s = 0; s < sh->n; s++)
		if (shard_len(sh, s))
			sh->need++;
	shard_bounds(sh->L, sh->n, sh->me, &lo, &hi);
	if (lo == hi)
		return 0;
	ret = own_get(w, sh->me, &o);
	if (!ret && sh->sync)
		memcpy(o->base, e->io->x0 + lo, (hi - lo) * sizeof(float));
	return ret;
}

void shard_fini(struct worker *w)
{
	struct shard *sh = w->sh;

	if (!sh)
		return;
	for (uint32_t s = 0; sh->own && s < sh->n; s++) {
		struct own *o = &sh->own[s];

		for (uint32_t i = 0; i < SHARD_ROUNDS; i++) {
			free(o->tab[i].got);
			free(o->tab[i].rows);
			free(o->tab[i].res);
		}
		free(o->cut);
		free(o->base);
	}
	free(sh->own);
	free(sh->alive);
	free(sh->before);
	free(sh->have);
	free(sh->blocked);
	for (size_t i = 0; i < sh->nq; i++)
		free(sh->q[i].copy);
	free(sh->q);
	free(sh);
	w->sh = NULL;
}
