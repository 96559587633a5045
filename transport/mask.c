/*
 * Shared random mask: k distinct coordinates of [0, d) drawn from
 * (seed, round), identical on every rank, compiler and machine.
 *
 * Every rank draws the mask itself instead of receiving indices, so the
 * draw is part of the wire protocol: changing any constant or step below
 * changes which coordinates a MASKED block's values belong to, and ranks
 * built from different versions would silently average the wrong
 * coordinates.  tests/unit/test_mask.c pins the output with vectors that
 * were cross-checked against an independent implementation; if they
 * change, bump HETSGD_BLOCK_VERSION.
 *
 * The draw, exactly:
 *   state  = mix(mix(seed ^ 0x6a09e667f3bcc909) ^ round)
 *   next() = mix(state += 0x9e3779b97f4a7c15)           (splitmix64)
 *   r32()  = next() >> 32
 *   below(n), n >= 1: Lemire's multiply-shift with rejection on r32()
 *   Floyd:  for j = d-k .. d-1: t = below(j+1); add t, or j if t is taken
 *   output the set sorted ascending
 * where mix() is splitmix64's finaliser.  Only unsigned fixed-width
 * integer arithmetic is used: no floating point, no libm, no
 * implementation-defined behaviour.
 *
 * Cost: Floyd makes exactly k insertions into a hash set sized to the
 * next power of two >= 2k (load <= 1/2, so O(1) expected per probe); the
 * sort is an LSD radix sort whose digit width follows k, so it is O(k)
 * in time and scratch, never O(d).
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport_priv.h"

/* Coordinates are < d <= UINT32_MAX, so UINT32_MAX is never a member. */
#define SET_EMPTY UINT32_MAX

#define SEED_SALT 0x6a09e667f3bcc909ull	/* frac(sqrt(2)): keeps seed 0 off 0 */
#define GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

struct mask_scratch {
	uint32_t *set;		/* 1 << set_bits slots, open addressing */
	uint32_t *tmp;		/* k: the radix sort's other buffer */
	uint32_t *cnt;		/* 1 << digit_bits counters */
	unsigned int set_bits;
	unsigned int digit_bits;
	unsigned int passes;
};

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t rng_next32(uint64_t *state)
{
	*state += GOLDEN_GAMMA;
	/* The high half: splitmix64's strongest bits. */
	return (uint32_t)(mix64(*state) >> 32);
}

/*
 * Uniform in [0, n), n >= 1 (Lemire 2019, "Fast random integer generation
 * in an interval").  The rejection makes it exact, not merely close.
 */
static uint32_t rng_below(uint64_t *state, uint32_t n)
{
	uint64_t m = (uint64_t)rng_next32(state) * n;
	uint32_t low = (uint32_t)m;

	if (low < n) {
		/* 2^32 mod n: the values that would make the result biased. */
		uint32_t reject = (uint32_t)(0u - n) % n;

		while (low < reject) {
			m = (uint64_t)rng_next32(state) * n;
			low = (uint32_t)m;
		}
	}
	return (uint32_t)(m >> 32);
}

static unsigned int bit_length(uint64_t v)
{
	unsigned int n = 0;

	while (v) {
		n++;
		v >>= 1;
	}
	return n;
}

/* Fibonacci hashing: the top bits of the product are well mixed. */
static size_t set_slot(uint32_t v, unsigned int bits)
{
	return (size_t)(((uint64_t)v * GOLDEN_GAMMA) >> (64 - bits));
}

/* Insert v; returns 0 if it was already present. */
static int set_insert(uint32_t *set, unsigned int bits, uint32_t v)
{
	size_t mask = ((size_t)1 << bits) - 1;
	size_t i = set_slot(v, bits);

	while (set[i] != SET_EMPTY) {
		if (set[i] == v)
			return 0;
		i = (i + 1) & mask;
	}
	set[i] = v;
	return 1;
}

static void radix_sort(uint32_t *a, uint32_t k, struct mask_scratch *s)
{
	size_t nbuckets = (size_t)1 << s->digit_bits;
	uint32_t digit_mask = (uint32_t)(nbuckets - 1);
	uint32_t *src = a, *dst = s->tmp, *t;
	unsigned int pass, shift;
	uint32_t i, sum, c;
	size_t b;

	for (pass = 0; pass < s->passes; pass++) {
		shift = pass * s->digit_bits;
		memset(s->cnt, 0, nbuckets * sizeof(*s->cnt));
		for (i = 0; i < k; i++)
			s->cnt[(src[i] >> shift) & digit_mask]++;
		for (b = 0, sum = 0; b < nbuckets; b++) {
			c = s->cnt[b];
			s->cnt[b] = sum;
			sum += c;
		}
		for (i = 0; i < k; i++)
			dst[s->cnt[(src[i] >> shift) & digit_mask]++] = src[i];
		t = src;
		src = dst;
		dst = t;
	}
	if (src != a)
		memcpy(a, src, (size_t)k * sizeof(*a));
}

/*
 * About 24 bytes per coordinate of k (idx, a hash set of 2k..4k slots and
 * the sort's second buffer) plus at most 256 KiB of digit counters; none
 * when k == d.  Initialising a mask that is already initialised leaks it:
 * call hetsgd_mask_fini first.
 */
int hetsgd_mask_init(struct hetsgd_mask *mask, uint32_t k, uint32_t d)
{
	struct mask_scratch *s = NULL;
	uint32_t *idx = NULL;
	unsigned int set_bits, digit_bits, key_bits;
	uint64_t words;

	if (!mask)
		return hetsgd_err(-EINVAL, "hetsgd_mask_init: mask is NULL");
	if (d == 0)
		return hetsgd_err(-EINVAL,
				  "hetsgd_mask_init: dimension d is 0: a mask selects coordinates of a model with d >= 1");
	if (k > d)
		return hetsgd_err(-EINVAL,
				  "hetsgd_mask_init: k = %u exceeds d = %u: a mask holds at most d distinct coordinates (use k = d for dense)",
				  k, d);

	if (k == 0)
		goto done;
	if ((uint64_t)k * sizeof(*idx) > SIZE_MAX)
		goto nomem;
	idx = calloc(k, sizeof(*idx));
	if (!idx)
		goto nomem;
	/* k == d needs no drawing, hence no scratch; k == 1 needs no sort. */
	if (k == d)
		goto done;

	set_bits = bit_length((uint64_t)2 * k - 1);	/* 2^bits >= 2k */
	key_bits = bit_length(d - 1);
	/* 2^digit_bits ~ k: each pass then costs O(k), and 8 <= bits
	 * bounds the passes to 4 over a 32-bit key. */
	digit_bits = bit_length(k - 1);
	if (digit_bits < 8)
		digit_bits = 8;
	if (digit_bits > 16)
		digit_bits = 16;
	words = ((uint64_t)1 << set_bits) + k + ((uint64_t)1 << digit_bits);
	if (words > (SIZE_MAX - sizeof(*s)) / sizeof(uint32_t))
		goto nomem;
	s = malloc(sizeof(*s) + (size_t)words * sizeof(uint32_t));
	if (!s)
		goto nomem;
	s->set = (uint32_t *)(s + 1);
	s->tmp = s->set + ((size_t)1 << set_bits);
	s->cnt = s->tmp + k;
	s->set_bits = set_bits;
	s->digit_bits = digit_bits;
	s->passes = (key_bits + digit_bits - 1) / digit_bits;

done:
	memset(mask, 0, sizeof(*mask));
	mask->k = k;
	mask->d = d;
	mask->idx = idx;
	mask->scratch = s;
	return 0;

nomem:
	free(idx);
	return hetsgd_err(-ENOMEM,
			  "hetsgd_mask_init: out of memory for a mask of k = %u (about %llu bytes): lower k",
			  k, (unsigned long long)k * 24u);
}

static int mask_draw(struct hetsgd_mask *mask, uint64_t seed, uint64_t round)
{
	struct mask_scratch *s;
	uint64_t state;
	uint32_t i, j, t, k, d;

	if (!mask || mask->d == 0 || mask->k > mask->d || (mask->k && !mask->idx))
		return hetsgd_err(-EINVAL,
				  "hetsgd_mask_draw: the mask is not initialised: call hetsgd_mask_init first");
	k = mask->k;
	d = mask->d;
	if (k == d) {
		/* Every coordinate: no randomness, and O(k) since k == d. */
		for (i = 0; i < k; i++)
			mask->idx[i] = i;
		return 0;
	}
	if (k == 0)
		return 0;
	s = mask->scratch;
	if (!s)
		return hetsgd_err(-EINVAL,
				  "hetsgd_mask_draw: the mask has no scratch space: was it initialised with hetsgd_mask_init?");

	memset(s->set, 0xff, ((size_t)1 << s->set_bits) * sizeof(*s->set));
	state = mix64(mix64(seed ^ SEED_SALT) ^ round);
	/*
	 * Floyd: after the step for j, the set is a uniform (j'+1)-subset of
	 * [0, j] where j' counts the steps so far; each step costs one draw.
	 */
	for (i = 0, j = d - k; i < k; i++, j++) {
		t = rng_below(&state, j + 1);
		if (!set_insert(s->set, s->set_bits, t)) {
			t = j;	/* j is new: every earlier candidate was < j */
			set_insert(s->set, s->set_bits, t);
		}
		mask->idx[i] = t;
	}
	if (k > 1)
		radix_sort(mask->idx, k, s);
	return 0;
}

void hetsgd_mask_fini(struct hetsgd_mask *mask)
{
	if (!mask)
		return;
	free(mask->idx);
	free(mask->scratch);
	memset(mask, 0, sizeof(*mask));
}

int hetsgd_mask_draw(struct hetsgd_mask *mask, uint64_t seed, uint64_t round)
{
	int ret = mask_draw(mask, seed, round);

	/* Remembered so that an encoder can refuse a header for another draw. */
	if (!ret) {
		mask->seed = seed;
		mask->round = round;
		mask->drawn = 1;
	}
	return ret;
}
