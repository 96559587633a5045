/*
 * Private to the data files of algo/ (data.c, data_libsvm.c, data_idx.c,
 * data_synth.c, data_split.c): what the loaders and generators share.
 */
#ifndef HETSGD_DATA_PRIV_H
#define HETSGD_DATA_PRIV_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "algo_priv.h"

/* -ENOMEM with "out of memory allocating <what>" as the message. */
int data_oom(const char *what);
/* Grow *p (elements of size sz) to hold at least need; doubles the capacity. */
int data_grow(void **p, uint64_t *cap, uint64_t need, size_t sz);
/* malloc of count elements, NULL on overflow; never malloc(0). */
void *data_alloc_array(uint64_t count, size_t sz);

/*
 * A plain or gzip file for reading (data.c): open, read, close.  A read
 * returns len bytes, fewer only at the end, or a negative errno with a
 * message (damaged or truncated gzip data, bytes after its end).
 */
struct data_gz;
int data_gz_open_read(const char *path, struct data_gz **out);
int64_t data_gz_read_full(struct data_gz *f, const char *path, void *buf, size_t len);
void data_gz_close(struct data_gz *f);	/* NULL accepted */

/* ---- the generators' random numbers (from splitmix64) ---- */

/* Uniform in [0, 1). */
static inline double rng_uniform(uint64_t *s)
{
	return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

/* Uniform in 0 .. bound - 1 (Lemire's multiply, bias below 2^-32 for our bounds). */
static inline uint64_t rng_below(uint64_t *s, uint64_t bound)
{
	return (uint64_t)(((unsigned __int128)splitmix64(s) * bound) >> 64);
}

static inline double rng_normal(uint64_t *s)
{
	double u1 = 1.0 - rng_uniform(s);	/* (0, 1]: log is finite */
	double u2 = rng_uniform(s);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

#endif
