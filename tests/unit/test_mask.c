/*
 * Shared random mask: the draw is part of the wire protocol (a MASKED
 * block carries no indices), so these tests pin it bit for bit, then
 * check the properties LOSCAR-SGD relies on: k distinct sorted
 * coordinates, uniform, different every round, O(k) memory.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hetsgd_transport.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
/* From <sanitizer/allocator_interface.h>, which gcc does not always ship. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- fixed vectors ------------------------------------------------------ */

/*
 * Computed once with hetsgd_mask_draw, then cross-checked against an
 * independent implementation of the same steps (splitmix64 seeded with
 * mix(mix(seed ^ 0x6a09e667f3bcc909) ^ round), Lemire's rejection on the
 * high 32 bits, Floyd's algorithm, sorted) written in Python with big
 * integers masked to 64 bits and a Python set: identical output for these
 * cases and for 400 more random (k, d, seed, round).  If one of these
 * changes, the wire protocol changed: bump HETSGD_BLOCK_VERSION.
 */
struct vec {
	uint32_t k, d;
	uint64_t seed, round;
	uint32_t idx[16];
};

static const struct vec vectors[] = {
	{ 1, 10, 0x1, 0, { 6 } },
	{ 1, 10, 0x1, 1, { 7 } },
	{ 0, 5, 0x2a, 7, { 0 } },
	{ 7, 7, 0x2a, 7, { 0, 1, 2, 3, 4, 5, 6 } },
	{ 1, 1, 0, 0, { 0 } },
	{ 0, 1, 0, 0, { 0 } },
	{ 10, 100, 0x5eed, 3, { 27, 32, 36, 46, 62, 64, 72, 76, 92, 93 } },
	{ 16, 20, 0xdeadbeefcafebabeull, UINT64_MAX,
	  { 0, 1, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19 } },
	{ 5, 4294967295u, 0x2a, 7,
	  { 914002550u, 929391478u, 1050495877u, 2782191926u, 2818247506u } },
	{ 5, 4294967295u, 0, 0,
	  { 261742898u, 1189386837u, 1331430282u, 1705936902u, 2674990939u } },
	{ 3, 4, 0x123456789ull, 42, { 0, 2, 3 } },
};

/* Large masks: the first and last 8 coordinates and FNV-1a over all of
 * them (each index as 4 little-endian bytes), cross-checked the same way. */
struct big_vec {
	uint32_t k, d;
	uint64_t seed, round;
	uint32_t head[8], tail[8];
	uint64_t fnv;
};

static const struct big_vec big_vectors[] = {
	{ 1000, 1000000, 0x10c5ca, 0,
	  { 600, 1747, 2049, 3896, 5341, 5934, 6879, 7244 },
	  { 996948, 998268, 998297, 998384, 998849, 999178, 999503, 999886 },
	  0x9f5b15e572c77ae5ull },
	{ 1000, 1000000, 0x10c5ca, 1,
	  { 623, 1307, 1768, 3100, 3508, 4353, 4536, 5307 },
	  { 990628, 992047, 992135, 992406, 993553, 996819, 998450, 999722 },
	  0x11d845cac775f118ull },
	{ 1000, 2147483648u, 0x10c5ca, 5,
	  { 37320, 2548480, 6453094, 8087872, 9195460, 9206387, 10259997, 10310219 },
	  { 2123908499u, 2126023150u, 2126530755u, 2136130138u,
	    2138676056u, 2142831762u, 2146761919u, 2146944357u },
	  0xdd64542718c32c3full },
};

static uint64_t fnv1a_le32(const uint32_t *v, uint32_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint32_t i;
	int b;

	for (i = 0; i < n; i++)
		for (b = 0; b < 4; b++) {
			h ^= (v[i] >> (8 * b)) & 0xff;
			h *= 0x100000001b3ull;
		}
	return h;
}

Test(mask_vectors, small)
{
	size_t t;
	uint32_t i;

	for (t = 0; t < ARRAY_LEN(vectors); t++) {
		const struct vec *v = &vectors[t];
		struct hetsgd_mask m;

		memset(&m, 0, sizeof(m));
		cr_assert_eq(hetsgd_mask_init(&m, v->k, v->d), 0, "vector %zu: %s", t, hetsgd_errmsg());
		cr_assert_eq(hetsgd_mask_draw(&m, v->seed, v->round), 0, "vector %zu: %s", t, hetsgd_errmsg());
		cr_assert_eq(m.k, v->k);
		cr_assert_eq(m.d, v->d);
		for (i = 0; i < v->k; i++)
			cr_assert_eq(m.idx[i], v->idx[i],
				     "vector %zu (k %u d %u seed 0x%llx round %llu): idx[%u] = %u, expected %u",
				     t, v->k, v->d, (unsigned long long)v->seed,
				     (unsigned long long)v->round, i, m.idx[i], v->idx[i]);
		hetsgd_mask_fini(&m);
	}
}

Test(mask_vectors, large)
{
	size_t t;
	uint32_t i;

	for (t = 0; t < ARRAY_LEN(big_vectors); t++) {
		const struct big_vec *v = &big_vectors[t];
		struct hetsgd_mask m;

		memset(&m, 0, sizeof(m));
		cr_assert_eq(hetsgd_mask_init(&m, v->k, v->d), 0, "%s", hetsgd_errmsg());
		cr_assert_eq(hetsgd_mask_draw(&m, v->seed, v->round), 0, "%s", hetsgd_errmsg());
		for (i = 0; i < 8; i++) {
			cr_assert_eq(m.idx[i], v->head[i], "vector %zu head %u", t, i);
			cr_assert_eq(m.idx[v->k - 8 + i], v->tail[i], "vector %zu tail %u", t, i);
		}
		cr_assert_eq(fnv1a_le32(m.idx, m.k), v->fnv, "vector %zu: fnv 0x%016llx", t,
			     (unsigned long long)fnv1a_le32(m.idx, m.k));
		hetsgd_mask_fini(&m);
	}
}

/* ---- a second, deliberately naive implementation of the same spec ------- */

/*
 * Bitmap (or linear scan) membership and qsort instead of the library's
 * hash set and radix sort: exercises those on many shapes, including
 * radix passes with 16-bit digits (k > 2^15).
 */
static uint64_t ref_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t ref_below(uint64_t *s, uint32_t n)
{
	for (;;) {
		uint64_t m;

		*s += 0x9e3779b97f4a7c15ull;
		m = (ref_mix(*s) >> 32) * n;
		/* accept iff m mod 2^32 >= 2^32 mod n */
		if ((m & 0xffffffffu) >= ((1ull << 32) % n))
			return (uint32_t)(m >> 32);
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static void ref_draw(uint32_t k, uint32_t d, uint64_t seed, uint64_t round, uint32_t *out)
{
	uint64_t s = ref_mix(ref_mix(seed ^ 0x6a09e667f3bcc909ull) ^ round);
	uint8_t *bits = NULL;
	uint32_t n = 0, j, t, i;
	int taken;

	if (k == d) {
		for (i = 0; i < d; i++)
			out[i] = i;
		return;
	}
	if (d <= (1u << 27))
		bits = calloc(d / 8 + 1, 1);
	for (j = d - k; j < d; j++) {
		t = ref_below(&s, j + 1);
		if (bits) {
			taken = bits[t / 8] >> (t % 8) & 1;
		} else {
			for (taken = 0, i = 0; i < n && !taken; i++)
				taken = out[i] == t;
		}
		if (taken)
			t = j;
		if (bits)
			bits[t / 8] |= (uint8_t)(1u << (t % 8));
		out[n++] = t;
	}
	free(bits);
	qsort(out, n, sizeof(*out), cmp_u32);
}

static uint64_t test_rng(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return ref_mix(*s);
}

static void check_matches_reference(uint32_t k, uint32_t d, uint64_t seed, uint64_t round)
{
	struct hetsgd_mask m;
	uint32_t *want = malloc(((size_t)k + 1) * sizeof(*want));
	uint32_t i;

	cr_assert_not_null(want);
	memset(&m, 0, sizeof(m));
	cr_assert_eq(hetsgd_mask_init(&m, k, d), 0, "%s", hetsgd_errmsg());
	cr_assert_eq(hetsgd_mask_draw(&m, seed, round), 0, "%s", hetsgd_errmsg());
	ref_draw(k, d, seed, round, want);
	for (i = 0; i < k; i++) {
		cr_assert_eq(m.idx[i], want[i],
			     "k %u d %u seed 0x%llx round %llu: idx[%u] = %u, reference %u",
			     k, d, (unsigned long long)seed, (unsigned long long)round,
			     i, m.idx[i], want[i]);
		/* sorted, distinct, in range: the contract itself */
		cr_assert_lt(m.idx[i], d);
		if (i)
			cr_assert_gt(m.idx[i], m.idx[i - 1]);
	}
	hetsgd_mask_fini(&m);
	free(want);
}

Test(mask_props, sorted_distinct_in_range_and_match_reference)
{
	static const uint32_t dims[] = { 1, 2, 3, 255, 256, 257, 65535, 65536, 65537,
					 1000000, 1u << 27, 2147483648u, 4294967295u };
	uint64_t s = 0x7e57ab1e;
	size_t t;
	int it;

	for (t = 0; t < ARRAY_LEN(dims); t++) {
		uint32_t d = dims[t];
		uint32_t ks[] = { 0, 1, 2, d < 3 ? d : 3, d, d / 2, d - (d > 0),
				  d < 300 ? d : 300, d < 1000 ? d : 1000 };
		size_t u;

		for (u = 0; u < ARRAY_LEN(ks); u++) {
			uint32_t k = ks[u];

			if (k > d || (k > 3000 && k != d && d > (1u << 27)))
				continue;	/* the reference's linear scan is O(k^2) */
			if (k > 300000)
				continue;	/* big k is covered below */
			check_matches_reference(k, d, test_rng(&s), test_rng(&s));
		}
	}
	for (it = 0; it < 300; it++) {
		uint32_t d = (uint32_t)(test_rng(&s) % 5000) + 1;
		uint32_t k = (uint32_t)(test_rng(&s) % (d + 1));

		check_matches_reference(k, d, test_rng(&s), test_rng(&s));
	}
	/* 16-bit radix digits and 2 passes over 23 key bits; nearly dense. */
	check_matches_reference(100000, 5000000, 1, 2);
	check_matches_reference(70000, 70001, 3, 4);
}

Test(mask_props, rounds_and_seeds_differ)
{
	enum { R = 64, K = 1000 };
	struct hetsgd_mask m;
	uint32_t *all = malloc((size_t)R * K * sizeof(*all));
	uint32_t other[K];
	int a, b;

	cr_assert_not_null(all);
	memset(&m, 0, sizeof(m));
	cr_assert_eq(hetsgd_mask_init(&m, K, 1000000), 0);
	for (a = 0; a < R; a++) {
		cr_assert_eq(hetsgd_mask_draw(&m, 0x10c5ca, (uint64_t)a), 0);
		memcpy(all + (size_t)a * K, m.idx, sizeof(other));
	}
	for (a = 0; a < R; a++)
		for (b = a + 1; b < R; b++)
			cr_assert(memcmp(all + (size_t)a * K, all + (size_t)b * K, sizeof(other)),
				  "rounds %d and %d drew the same mask", a, b);

	/* Rounds differing only in the top bit, seeds differing in one bit,
	 * and swapped (seed, round) must not collide either. */
	cr_assert_eq(hetsgd_mask_draw(&m, 0x10c5ca, 1ull << 63), 0);
	cr_assert(memcmp(m.idx, all, sizeof(other)));
	cr_assert_eq(hetsgd_mask_draw(&m, 0x10c5ca ^ 1, 0), 0);
	cr_assert(memcmp(m.idx, all, sizeof(other)));
	cr_assert_eq(hetsgd_mask_draw(&m, 1, 0x10c5ca), 0);
	memcpy(other, m.idx, sizeof(other));
	cr_assert_eq(hetsgd_mask_draw(&m, 0x10c5ca, 1), 0);
	cr_assert(memcmp(m.idx, other, sizeof(other)));
	hetsgd_mask_fini(&m);
	free(all);
}

Test(mask_props, same_seed_and_round_same_mask)
{
	enum { K = 1000 };
	struct hetsgd_mask m;
	uint32_t first[K];

	memset(&m, 0, sizeof(m));
	cr_assert_eq(hetsgd_mask_init(&m, K, 1000000), 0);
	cr_assert_eq(hetsgd_mask_draw(&m, 42, 7), 0);
	memcpy(first, m.idx, sizeof(first));
	/* another round in between: no state may carry over */
	cr_assert_eq(hetsgd_mask_draw(&m, 42, 8), 0);
	cr_assert_eq(hetsgd_mask_draw(&m, 42, 7), 0);
	cr_assert_arr_eq(m.idx, first, sizeof(first));
	hetsgd_mask_fini(&m);
	hetsgd_mask_fini(&m);	/* idempotent */

	cr_assert_eq(hetsgd_mask_init(&m, K, 1000000), 0);
	cr_assert_eq(hetsgd_mask_draw(&m, 42, 7), 0);
	cr_assert_arr_eq(m.idx, first, sizeof(first));
	hetsgd_mask_fini(&m);
}

/* ---- uniformity ----------------------------------------------------------- */

/*
 * Each test draws R masks with a fixed seed and rounds 0..R-1, so it is
 * deterministic: it gives the same statistic on every run and machine and
 * cannot flake; a change to the sampler either keeps passing or fails
 * every time.  The bounds are the chi-square quantiles at 1e-6 and
 * 1 - 1e-6 (computed by numerical integration of the chi-square CDF and
 * checked against tabulated values), i.e. a correct sampler with an
 * arbitrarily chosen seed lands outside them with probability 2e-6.  The
 * lower bound matters too: a sampler that cycles through the coordinates
 * would be "too uniform".
 *
 * Counting coordinates in B equal bins: one mask's bin counts are
 * multivariate hypergeometric, whose covariance is (d-k)/(d-1) times the
 * multinomial one, so Pearson's statistic times (d-1)/(d-k) is
 * chi-square with B-1 degrees of freedom.
 */
struct chi2_bound {
	unsigned int df;
	double lo, hi;
};

static const struct chi2_bound chi2_bounds[] = {
	{ 9, 0.228, 44.811 },
	{ 63, 23.161, 131.370 },
	{ 99, 45.834, 180.792 },
};

static void check_chi2(double x, unsigned int df, const char *what)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(chi2_bounds); i++) {
		if (chi2_bounds[i].df != df)
			continue;
		cr_assert(x > chi2_bounds[i].lo && x < chi2_bounds[i].hi,
			  "%s: chi-square %.3f with %u degrees of freedom is outside (%.3f, %.3f)",
			  what, x, df, chi2_bounds[i].lo, chi2_bounds[i].hi);
		cr_log_info("%s: chi-square %.3f, df %u, bounds (%.3f, %.3f)", what, x, df,
			    chi2_bounds[i].lo, chi2_bounds[i].hi);
		return;
	}
	cr_assert_fail("no bound for %u degrees of freedom", df);
}

static void check_marginals(uint32_t k, uint32_t d, unsigned int bins, unsigned int rounds,
			    uint64_t seed, const char *what)
{
	struct hetsgd_mask m;
	uint64_t *count = calloc(bins, sizeof(*count));
	uint32_t width = d / bins, i;
	unsigned int r, b;
	double e, x = 0;

	cr_assert_not_null(count);
	cr_assert_eq((uint64_t)width * bins, d, "bins must split d evenly");
	memset(&m, 0, sizeof(m));
	cr_assert_eq(hetsgd_mask_init(&m, k, d), 0);
	for (r = 0; r < rounds; r++) {
		cr_assert_eq(hetsgd_mask_draw(&m, seed, r), 0);
		for (i = 0; i < k; i++)
			count[m.idx[i] / width]++;
	}
	e = (double)rounds * k / bins;
	for (b = 0; b < bins; b++)
		x += ((double)count[b] - e) * ((double)count[b] - e) / e;
	x *= (double)(d - 1) / (double)(d - k);
	check_chi2(x, bins - 1, what);
	hetsgd_mask_fini(&m);
	free(count);
}

Test(mask_uniform, coordinates_sparse)
{
	check_marginals(8, 64, 64, 20000, 0xc0ffee, "k=8 d=64 per coordinate");
}

/* k close to d: most of Floyd's steps take the "j" branch. */
Test(mask_uniform, coordinates_nearly_dense)
{
	check_marginals(56, 64, 64, 5000, 0xc0ffee, "k=56 d=64 per coordinate");
}

/* Lemire's rejection at n near 2^32: 64 bins of 67108863 coordinates. */
Test(mask_uniform, huge_dimension)
{
	check_marginals(16, 4294967232u, 64, 20000, 0xbadc0de, "k=16 d=2^32-64 in 64 bins");
}

/* The paper's sparsest setting, p = k/d = 0.001. */
Test(mask_uniform, sparsity_0_001)
{
	check_marginals(1000, 1000000, 100, 200, 0x5eed, "k=1000 d=10^6 in 100 bins");
}

/* Whole subsets, not just marginals: all C(5,2) = 10 must be equally
 * likely (multinomial, so plain Pearson with 9 degrees of freedom). */
Test(mask_uniform, subsets)
{
	enum { ROUNDS = 50000 };
	struct hetsgd_mask m;
	unsigned int count[5][5] = { { 0 } };
	unsigned int r, a, b;
	double e = ROUNDS / 10.0, x = 0;

	memset(&m, 0, sizeof(m));
	cr_assert_eq(hetsgd_mask_init(&m, 2, 5), 0);
	for (r = 0; r < ROUNDS; r++) {
		cr_assert_eq(hetsgd_mask_draw(&m, 0xab, r), 0);
		cr_assert_lt(m.idx[0], m.idx[1]);
		count[m.idx[0]][m.idx[1]]++;
	}
	for (a = 0; a < 5; a++)
		for (b = a + 1; b < 5; b++)
			x += (count[a][b] - e) * (count[a][b] - e) / e;
	check_chi2(x, 9, "k=2 d=5 subsets");
	hetsgd_mask_fini(&m);
}

/* ---- O(k), never O(d) ----------------------------------------------------- */

#ifndef TEST_ASAN
static size_t vm_bytes(void)
{
	unsigned long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%lu", &pages), 1);
	fclose(f);
	return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

/*
 * Without ASan, cap the address space at what the process uses plus
 * 64 MiB: an O(d) structure for d = 2^32-1 (even a 512 MiB bitmap) cannot
 * be allocated then, which the test proves before relying on it.  ASan
 * reserves terabytes of shadow address space, so under ASan the heap is
 * measured with its allocator's counter instead.  Criterion runs each test
 * in its own process, so the limit does not outlive the test (it is also
 * restored).
 */
Test(mask_cost, k_1000_of_d_near_2_32_is_o_k)
{
	const uint32_t d = 4294967295u, k = 1000;
	struct hetsgd_mask m;
	uint64_t r;
#ifdef TEST_ASAN
	size_t before = __sanitizer_get_current_allocated_bytes();

	memset(&m, 0, sizeof(m));
	cr_assert_eq(hetsgd_mask_init(&m, k, d), 0, "%s", hetsgd_errmsg());
	cr_assert_lt(__sanitizer_get_current_allocated_bytes() - before, (size_t)1 << 20,
		     "a mask of k = 1000 holds more than 1 MiB");
#else
	struct rlimit old, cap;
	void *big;

	cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
	cap = old;
	cap.rlim_cur = vm_bytes() + ((rlim_t)64 << 20);
	if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < cap.rlim_cur)
		cap.rlim_cur = old.rlim_cur;
	cr_assert_eq(setrlimit(RLIMIT_AS, &cap), 0);
	big = malloc(d / 8);
	cr_assert_null(big, "the address-space cap does not bite: the test would prove nothing");

	memset(&m, 0, sizeof(m));
	cr_assert_eq(hetsgd_mask_init(&m, k, d), 0, "%s", hetsgd_errmsg());
#endif
	/* And drawing allocates nothing: many rounds under the same cap. */
	for (r = 0; r < 1000; r++)
		cr_assert_eq(hetsgd_mask_draw(&m, 0xfeed, r), 0, "%s", hetsgd_errmsg());
	cr_assert_eq(m.k, k);
	cr_assert_lt(m.idx[k - 1], d);
	hetsgd_mask_fini(&m);

	/* Same for d = 2^31, the brief's case. */
	cr_assert_eq(hetsgd_mask_init(&m, k, 2147483648u), 0, "%s", hetsgd_errmsg());
	cr_assert_eq(hetsgd_mask_draw(&m, 1, 2), 0);
	hetsgd_mask_fini(&m);
#ifndef TEST_ASAN
	cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
#endif
}

/* ---- arguments and life cycle -------------------------------------------- */

Test(mask_args, bad_arguments)
{
	struct hetsgd_mask m, before;

	memset(&m, 0x5a, sizeof(m));
	before = m;
	cr_assert_eq(hetsgd_mask_init(&m, 6, 5), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "k = 6 exceeds d = 5"), "%s", hetsgd_errmsg());
	cr_assert_arr_eq(&m, &before, sizeof(m), "mask written on failure");
	cr_assert_eq(hetsgd_mask_init(&m, 0, 0), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "d is 0"), "%s", hetsgd_errmsg());
	cr_assert_arr_eq(&m, &before, sizeof(m));
	cr_assert_eq(hetsgd_mask_init(NULL, 1, 5), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "NULL"), "%s", hetsgd_errmsg());

	/* draw before init: a zeroed struct is rejected, not dereferenced */
	memset(&m, 0, sizeof(m));
	cr_assert_eq(hetsgd_mask_draw(&m, 1, 1), -EINVAL);
	cr_assert(strstr(hetsgd_errmsg(), "hetsgd_mask_init"), "%s", hetsgd_errmsg());
	cr_assert_eq(hetsgd_mask_draw(NULL, 1, 1), -EINVAL);
}

Test(mask_args, edge_sizes_and_fini)
{
	struct hetsgd_mask m;
	uint32_t i;

	memset(&m, 0, sizeof(m));
	hetsgd_mask_fini(&m);	/* zeroed struct */
	hetsgd_mask_fini(NULL);

	cr_assert_eq(hetsgd_mask_init(&m, 0, 4294967295u), 0);
	cr_assert_eq(hetsgd_mask_draw(&m, 1, 1), 0);
	cr_assert_eq(m.k, 0);
	hetsgd_mask_fini(&m);
	hetsgd_mask_fini(&m);
	cr_assert_null(m.idx);
	cr_assert_null(m.scratch);

	cr_assert_eq(hetsgd_mask_init(&m, 1000, 1000), 0);
	cr_assert_eq(hetsgd_mask_draw(&m, 1, 1), 0);
	for (i = 0; i < 1000; i++)
		cr_assert_eq(m.idx[i], i);
	hetsgd_mask_fini(&m);

	cr_assert_eq(hetsgd_mask_init(&m, 1, 4294967295u), 0);
	cr_assert_eq(hetsgd_mask_draw(&m, 0, 0), 0);
	cr_assert_lt(m.idx[0], 4294967295u);
	hetsgd_mask_fini(&m);
}
