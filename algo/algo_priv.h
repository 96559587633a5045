/* Private to algo/: nothing outside this folder includes it. */
#ifndef HETSGD_ALGO_PRIV_H
#define HETSGD_ALGO_PRIV_H

#include <stdint.h>

#include "hetsgd_algo.h"
#include "hetsgd_topology.h"

/* Record the message for hetsgd_errmsg() and return err (negative errno). */
#define algo_err hetsgd_error

/*
 * splitmix64: the room's one seeded generator (data generators, splits,
 * model initialisation).  Integer-only, so a seed gives the same stream
 * on every compiler and machine.
 */
static inline uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform integer in [0, n), n >= 1 (Lemire's multiply-shift, with the
 * rejection step so that it is exactly uniform). */
static inline uint64_t uniform_below(uint64_t *s, uint64_t n)
{
	unsigned __int128 m = (unsigned __int128)splitmix64(s) * n;
	uint64_t lo = (uint64_t)m;

	if (lo < n) {
		uint64_t t = -n % n;

		while (lo < t) {
			m = (unsigned __int128)splitmix64(s) * n;
			lo = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

/*
 * The stream of worker `worker` for a job seed: the engine's worker and
 * hetsgd_sgd_reference() draw their batches from it, so they agree step
 * for step.
 */
static inline uint64_t worker_stream(uint64_t seed, uint32_t worker)
{
	uint64_t s = seed ^ (0x5851f42d4c957f2dull * ((uint64_t)worker + 1));

	return splitmix64(&s);
}

/* Little-endian fields of the files the room writes (model, checkpoint). */
static inline void le_put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void le_put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t le_get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le_get64(const unsigned char *p)
{
	return (uint64_t)le_get32(p) | (uint64_t)le_get32(p + 4) << 32;
}

/* zlib's CRC-32 continued over len bytes (zlib takes uInt lengths). */
uint32_t algo_crc32(uint32_t crc, const void *p, uint64_t len);

/* Skip `steps` batches of m from a worker's stream, as that many calls of
 * worker_grad draw them: a resumed worker's sampler goes on where it was. */
static inline void skip_batches(uint64_t *s, uint64_t n, uint32_t *idx, uint32_t m,
				uint64_t steps);

/* The SGD step; one definition so that the engine and the reference agree
 * to the bit. */
static inline void sgd_step(float *x, const float *g, float gamma, size_t d)
{
	for (size_t j = 0; j < d; j++)
		x[j] -= gamma * g[j];
}

/* One batch of m indices below n, drawn with replacement. */
static inline void draw_batch(uint64_t *s, uint64_t n, uint32_t *idx, uint32_t m)
{
	for (uint32_t j = 0; j < m; j++)
		idx[j] = (uint32_t)uniform_below(s, n);
}

static inline void skip_batches(uint64_t *s, uint64_t n, uint32_t *idx, uint32_t m,
				uint64_t steps)
{
	for (uint64_t i = 0; m && i < steps; i++)
		draw_batch(s, n, idx, m);
}

#endif
