/* Private to algo/: nothing outside this folder includes it. */
#ifndef HETSGD_ALGO_PRIV_H
#define HETSGD_ALGO_PRIV_H

#include <stdint.h>

#include "hetsgd_algo.h"

/* Record the message for hetsgd_algo_errmsg() and return err (negative errno). */
int algo_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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

#endif
