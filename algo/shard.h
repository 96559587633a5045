/*
 * Sharded averaging, the workers' side (LOSCAR and SYNC with
 * --averaging sharded; algo/README.md says why and what is decided).
 *
 * A round's L values (LOSCAR: the K masked values, in mask order; SYNC:
 * the d coordinates of the gradient) are cut into n contiguous shards,
 * shard s = [s L / n, (s + 1) L / n), one per worker; worker s owns shard
 * s.  Rank 0 owns none: it evaluates and reports, as on the server path.
 *
 *   post     a worker writes shard s of its values (PART) straight into
 *            the staging slot of shard s's owner, its own shard into its
 *            own table, and a header-only TICK to the server;
 *   average  the owner keeps each sender's part in a row of its own and,
 *            once every live worker's part is in, sums the rows in worker
 *            order (the order in which the server path sums its blocks:
 *            the averages are bitwise equal), divides by their number
 *            (SYNC: steps its shard of the model with it) and writes the
 *            result (SHARD) straight into every worker's slot (SYNC: and
 *            the server's);
 *   merge    a worker's inbox is complete when every non-empty shard's
 *            result is in: the compute thread merges as on the server path.
 *
 * A worker that dies (the transport's PEER_DOWN) as an owner: each live
 * worker, when it learns of it, keeps its own values for that owner's
 * shard in the round it awaits (LOSCAR: mbar = y there; SYNC: its model
 * stays), and sends the shard of later rounds to the next live worker
 * after the dead one (wrapping), with a NOTICE that names the first such
 * round.  The successor completes a round of the shard over the workers
 * whose notice says they send it (a round-r part comes from a worker
 * whose first round is <= r) and writes the result to those workers
 * only.  No round waits for a dead rank; no average is computed from
 * partial knowledge of who sends.  As a sender: owners stop waiting for
 * its parts (a part that landed before it died counts, as on the server
 * path).
 *
 * Everything here runs on the worker's progress thread, under w->mu.
 */
#ifndef HETSGD_SHARD_H
#define HETSGD_SHARD_H

#include <stdint.h>

struct worker;
struct eng_hdr;
struct hetsgd_block;
struct hetsgd_ev;

#define SHARD_ROUNDS 4u		/* rounds of one shard an owner holds at once */

/* Shard s of L values over n: [lo, hi). */
static inline void shard_bounds(uint64_t L, uint32_t n, uint32_t s, uint32_t *lo, uint32_t *hi)
{
	*lo = (uint32_t)((uint64_t)s * L / n);
	*hi = (uint32_t)((uint64_t)(s + 1) * L / n);
}

/* The shard whose bounds are exactly [first, first + count), or -1. */
int shard_find(uint64_t L, uint32_t n, uint32_t first, uint32_t count);

/* Set up w->sh for e->ops (LOSCAR: L = K, SYNC: L = d); fini undoes it. */
int shard_init(struct worker *w);
void shard_fini(struct worker *w);

/* The compute thread posted ROUND or GRAD (w->out_hdr): queue its parts,
 * its own part to its own table, and the TICK.  Called where the server
 * path writes the message; the worker is AWAITING after it. */
int shard_post(struct worker *w);

/* A landed PART, SHARD or NOTICE from worker rank ev->peer, or SNAPREQ
 * from the server, legal in the worker's state. */
int shard_recv(struct worker *w, const struct hetsgd_ev *ev, const struct eng_hdr *h,
	       const struct hetsgd_block *b);

/* Write what is due; *did is set when something went. */
int shard_flush(struct worker *w, int *did);

/* Worker rank `peer` is gone (PEER_DOWN). */
int shard_peer_down(struct worker *w, int peer);

#endif
