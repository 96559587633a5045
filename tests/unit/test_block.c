/*
 * Sparse blocks: round trips, the exact wire bytes, and a decoder that
 * must reject every malformed block a peer could write into a slot
 * without ever reading outside it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hetsgd_transport.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define HDR 40u

/* ---- helpers -------------------------------------------------------------- */

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Finite, with a sign, a fraction and exponents over a wide range. */
static float rnd_float(uint64_t *s)
{
	uint64_t r = rng(s);
	uint32_t bits = (uint32_t)(r & 0x807fffffu) | (uint32_t)((r >> 32) % 254 + 1) << 23;
	float f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

static uint32_t fbits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float bits_f(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static void put32(void *buf, size_t off, uint32_t v)
{
	unsigned char *p = (unsigned char *)buf + off;

	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static int host_le(void)
{
	const uint16_t one = 1;
	unsigned char c;

	memcpy(&c, &one, 1);
	return c == 1;
}

/* The decoder is for little-endian hosts; on others it says -ENOTSUP. */
static void need_le(void)
{
	if (!host_le())
		cr_skip_test("big-endian host: hetsgd_block_decode returns -ENOTSUP");
}

static struct hetsgd_block_hdr mkhdr(uint32_t dim)
{
	struct hetsgd_block_hdr h;

	memset(&h, 0, sizeof(h));
	h.kind = 7;
	h.sender = 3;
	h.dim = dim;
	h.round = 0x0123456789abcdefull;
	return h;
}

/* Where decode copies an indexed block's indices (dim entries at most). */
static uint32_t idx_copy[1u << 22];

static struct hetsgd_block_limits mklim(uint32_t dim)
{
	struct hetsgd_block_limits l = { .dim = dim, .nranks = 4, .max_bytes = (size_t)1 << 24,
					 .idx_copy = idx_copy };

	cr_assert_leq(dim, sizeof(idx_copy) / sizeof(idx_copy[0]));
	return l;
}

/* 8-byte aligned storage for blocks built in place. */
static uint64_t store[(1u << 16) / 8];

#define ERR_HAS(s) cr_assert(strstr(hetsgd_errmsg(), (s)), "message lacks \"%s\": %s", (s), hetsgd_errmsg())

/*
 * Decode a copy of exactly len bytes in a fresh malloc'd buffer, so that
 * ASan catches any read past the end; expect rc and, on failure, that
 * *out is untouched and the message contains want.
 */
static int decode_copy(const void *blk, size_t len, const struct hetsgd_block_limits *lim,
		       struct hetsgd_block *out)
{
	void *p = malloc(len ? len : 1);
	int rc;

	cr_assert_not_null(p);
	memcpy(p, blk, len);
	rc = hetsgd_block_decode(p, len, lim, out);
	free(p);
	return rc;
}

static void expect_reject(const void *blk, size_t len, const struct hetsgd_block_limits *lim,
			  int want_rc, const char *want_msg)
{
	struct hetsgd_block out, before;
	int rc;

	memset(&out, 0xa5, sizeof(out));
	before = out;
	rc = decode_copy(blk, len, lim, &out);
	cr_assert_eq(rc, want_rc, "rc %d, expected %d (%s)", rc, want_rc, hetsgd_errmsg());
	cr_assert_arr_eq(&out, &before, sizeof(out), "out written on failure");
	ERR_HAS(want_msg);
}

/* ---- sizes ---------------------------------------------------------------- */

Test(block_bytes, sizes)
{
	cr_assert_eq(hetsgd_block_bytes(HETSGD_ENC_DENSE, 0), 40);
	cr_assert_eq(hetsgd_block_bytes(HETSGD_ENC_DENSE, 10), 80);
	cr_assert_eq(hetsgd_block_bytes(HETSGD_ENC_MASKED, 10), 80);
	cr_assert_eq(hetsgd_block_bytes(HETSGD_ENC_INDEXED, 10), 120);
	cr_assert_eq(hetsgd_block_bytes((enum hetsgd_enc)0, 10), 0);
	cr_assert_eq(hetsgd_block_bytes((enum hetsgd_enc)4, 10), 0);
	if (sizeof(size_t) == 8)
		cr_assert_eq(hetsgd_block_bytes(HETSGD_ENC_INDEXED, UINT32_MAX),
			     40 + 8 * (size_t)UINT32_MAX);
}

/* ---- golden wire bytes ---------------------------------------------------- */

/*
 * Hand-written from the format in hetsgd_transport.h, not produced by the
 * encoder: any change of layout, byte order or float encoding fails here.
 */
Test(block_golden, dense)
{
	static const unsigned char want[] = {
		0x53, 0x48, 0x01, 0x01,	/* magic "SH", version 1, dense */
		0x02, 0x01, 0x00, 0x00,	/* kind 0x0102, reserved */
		0x03, 0x00, 0x00, 0x00,	/* sender 3 */
		0x02, 0x00, 0x00, 0x00,	/* count 2 */
		0x08, 0x00, 0x00, 0x00,	/* dim 8 */
		0x02, 0x00, 0x00, 0x00,	/* first 2 */
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,	/* round */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* seed: 0 unless masked */
		0x00, 0x00, 0x80, 0x3f,	/* 1.0f */
		0x00, 0x00, 0x00, 0xc0,	/* -2.0f */
	};
	const float val[] = { 1.0f, -2.0f };
	struct hetsgd_block_hdr h = mkhdr(8);
	size_t len = 0;

	h.kind = 0x0102;
	h.round = 0x1122334455667788ull;
	h.seed = 0x99;		/* ignored for dense */
	h.first = 5;		/* the encoder's argument wins */
	h.reserved = 0xffff;	/* always written as 0 */
	memset(store, 0xee, 256);
	cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), &h, val, 2, 2, &len), 0,
		     "%s", hetsgd_errmsg());
	cr_assert_eq(len, sizeof(want));
	cr_assert_arr_eq(store, want, sizeof(want));
}

Test(block_golden, indexed)
{
	static const unsigned char want[] = {
		0x53, 0x48, 0x01, 0x02,	/* indexed */
		0x07, 0x00, 0x00, 0x00,
		0x03, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00,	/* count 2 */
		0x64, 0x00, 0x00, 0x00,	/* dim 100 */
		0x00, 0x00, 0x00, 0x00,	/* first 0 */
		0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x05, 0x00, 0x00, 0x00,	/* idx 5 */
		0x46, 0x00, 0x00, 0x00,	/* idx 70 */
		0x00, 0x00, 0x00, 0x3f,	/* 0.5f */
		0x00, 0x00, 0x40, 0x40,	/* 3.0f */
	};
	const uint32_t idx[] = { 5, 70 };
	const float val[] = { 0.5f, 3.0f };
	struct hetsgd_block_hdr h = mkhdr(100);
	size_t len = 0;

	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx, val, 2, &len), 0,
		     "%s", hetsgd_errmsg());
	cr_assert_eq(len, sizeof(want));
	cr_assert_arr_eq(store, want, sizeof(want));
}

Test(block_golden, masked)
{
	static const unsigned char want[] = {
		0x53, 0x48, 0x01, 0x03,	/* masked */
		0x07, 0x00, 0x00, 0x00,
		0x03, 0x00, 0x00, 0x00,
		0x03, 0x00, 0x00, 0x00,	/* count 3 */
		0x04, 0x00, 0x00, 0x00,	/* dim 4 */
		0x00, 0x00, 0x00, 0x00,
		0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,	/* round 42 */
		0x89, 0x67, 0x45, 0x23, 0x01, 0x00, 0x00, 0x00,	/* seed */
		0x00, 0x00, 0x80, 0x3f,	/* x[0] = 1.0f */
		0x00, 0x00, 0x80, 0x40,	/* x[2] = 4.0f */
		0x00, 0x00, 0x00, 0x80,	/* x[3] = -0.0f: the sign survives */
	};
	uint32_t midx[] = { 0, 2, 3 };
	const float x[] = { 1.0f, 2.0f, 4.0f, -0.0f };
	struct hetsgd_mask m = { .k = 3, .d = 4, .idx = midx };
	struct hetsgd_block_hdr h = mkhdr(4);
	size_t len = 0;

	h.round = 42;
	h.seed = 0x123456789ull;
	m.seed = h.seed;	/* as hetsgd_mask_draw would record */
	m.round = h.round;
	m.drawn = 1;
	cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, &m, x, &len), 0,
		     "%s", hetsgd_errmsg());
	cr_assert_eq(len, sizeof(want));
	cr_assert_arr_eq(store, want, sizeof(want));
}

/* ---- round trips ---------------------------------------------------------- */

static void check_common(const struct hetsgd_block *b, const struct hetsgd_block_hdr *h,
			 enum hetsgd_enc enc, uint32_t count)
{
	cr_assert_eq(b->encoding, enc);
	cr_assert_eq(b->kind, h->kind);
	cr_assert_eq(b->sender, h->sender);
	cr_assert_eq(b->dim, h->dim);
	cr_assert_eq(b->round, h->round);
	cr_assert_eq(b->count, count);
}

Test(block_roundtrip, dense)
{
	static const uint32_t dims[] = { 1, 7, 1000 };
	static float val[1000];
	uint64_t s = 1;
	size_t t;

	need_le();
	for (t = 0; t < ARRAY_LEN(dims); t++) {
		uint32_t dim = dims[t];
		uint32_t shapes[][2] = { { 0, 0 }, { 0, dim }, { dim, 0 }, { 0, 1 },
					 { dim - 1, 1 }, { dim / 3, dim / 2 } };
		size_t u;

		for (u = 0; u < ARRAY_LEN(shapes); u++) {
			uint32_t first = shapes[u][0], count = shapes[u][1], i;
			struct hetsgd_block_hdr h = mkhdr(dim);
			struct hetsgd_block_limits lim = mklim(dim);
			struct hetsgd_block b;
			size_t len = 0;

			if ((uint64_t)first + count > dim)
				continue;
			for (i = 0; i < count; i++)
				val[i] = rnd_float(&s);
			cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), &h, val, first,
							       count, &len), 0, "%s", hetsgd_errmsg());
			cr_assert_eq(len, hetsgd_block_bytes(HETSGD_ENC_DENSE, count));
			cr_assert_eq(hetsgd_block_decode(store, len, &lim, &b), 0, "%s", hetsgd_errmsg());
			check_common(&b, &h, HETSGD_ENC_DENSE, count);
			cr_assert_eq(b.first, first);
			cr_assert_eq(b.seed, 0);
			cr_assert_null(b.idx);
			cr_assert_eq((const void *)b.val, (const void *)((char *)store + HDR));
			for (i = 0; i < count; i++)
				cr_assert_eq(fbits(b.val[i]), fbits(val[i]), "dim %u value %u", dim, i);
		}
	}
}

Test(block_roundtrip, indexed_and_dense_choice)
{
	static uint32_t idx[1000];
	static float val[1000];
	static const uint32_t dims[] = { 1, 2, 9, 1000 };
	uint64_t s = 2;
	size_t t;

	need_le();
	for (t = 0; t < ARRAY_LEN(dims); t++) {
		uint32_t dim = dims[t];
		uint32_t counts[] = { 0, 1, dim / 4, dim / 2 - (dim > 1), dim / 2, dim / 2 + 1, dim };
		size_t u;

		for (u = 0; u < ARRAY_LEN(counts); u++) {
			uint32_t count = counts[u], i, j, n;
			struct hetsgd_block_hdr h = mkhdr(dim);
			struct hetsgd_block_limits lim = mklim(dim);
			struct hetsgd_block b;
			int indexed = 8ull * count + 40 < 4ull * dim + 40;
			size_t len = 0;

			if (count > dim)
				continue;
			/* count distinct sorted indices: selection sampling */
			for (i = 0, n = 0; i < dim && n < count; i++)
				if (rng(&s) % (dim - i) < count - n)
					idx[n++] = i;
			cr_assert_eq(n, count);
			for (i = 0; i < count; i++)
				val[i] = rnd_float(&s);
			cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx, val,
								count, &len), 0, "%s", hetsgd_errmsg());
			cr_assert_eq(hetsgd_block_decode(store, len, &lim, &b), 0, "%s", hetsgd_errmsg());
			cr_assert_eq(b.first, 0);
			cr_assert_eq(b.seed, 0);
			if (indexed) {
				cr_assert_eq(len, 40 + 8 * (size_t)count, "dim %u count %u", dim, count);
				check_common(&b, &h, HETSGD_ENC_INDEXED, count);
				for (i = 0; i < count; i++) {
					cr_assert_eq(b.idx[i], idx[i]);
					cr_assert_eq(fbits(b.val[i]), fbits(val[i]));
				}
			} else {
				/* ties (8k == 4d) go to DENSE */
				cr_assert_eq(len, 40 + 4 * (size_t)dim, "dim %u count %u", dim, count);
				check_common(&b, &h, HETSGD_ENC_DENSE, dim);
				cr_assert_null(b.idx);
				for (i = 0, j = 0; i < dim; i++) {
					if (j < count && idx[j] == i)
						cr_assert_eq(fbits(b.val[i]), fbits(val[j++]));
					else
						cr_assert_eq(fbits(b.val[i]), 0, "zero expected at %u", i);
				}
			}
		}
	}
}

Test(block_roundtrip, sparse_boundary)
{
	/* dim 1000: 499 values = 4032 bytes indexed < 4040 dense; 500 ties. */
	static uint32_t idx[501];
	static float val[501];
	struct hetsgd_block_hdr h = mkhdr(1000);
	size_t len = 0;
	uint32_t i;

	for (i = 0; i < 501; i++) {
		idx[i] = i;
		val[i] = (float)i + 0.5f;
	}
	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx, val, 499, &len), 0);
	cr_assert_eq(len, 40 + 8 * 499);
	cr_assert_eq(((unsigned char *)store)[3], HETSGD_ENC_INDEXED);
	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx, val, 500, &len), 0);
	cr_assert_eq(len, 40 + 4 * 1000);
	cr_assert_eq(((unsigned char *)store)[3], HETSGD_ENC_DENSE);
	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx, val, 501, &len), 0);
	cr_assert_eq(len, 40 + 4 * 1000);
	cr_assert_eq(((unsigned char *)store)[3], HETSGD_ENC_DENSE);
}

Test(block_roundtrip, masked)
{
	static const uint32_t shapes[][2] = { { 0, 10 }, { 1, 1 }, { 1, 10 }, { 10, 100 },
					      { 100, 100 }, { 1000, 1000000 } };
	static float x[1000000];
	uint64_t s = 3;
	size_t t;
	uint32_t i;

	need_le();
	for (i = 0; i < ARRAY_LEN(x); i++)
		x[i] = rnd_float(&s);
	for (t = 0; t < ARRAY_LEN(shapes); t++) {
		uint32_t k = shapes[t][0], d = shapes[t][1];
		struct hetsgd_block_hdr h = mkhdr(d);
		struct hetsgd_block_limits lim = mklim(d);
		struct hetsgd_mask m;
		struct hetsgd_block b;
		size_t len = 0;

		memset(&m, 0, sizeof(m));
		cr_assert_eq(hetsgd_mask_init(&m, k, d), 0, "%s", hetsgd_errmsg());
		h.seed = 0xfeedfacecafebeefull;
		cr_assert_eq(hetsgd_mask_draw(&m, h.seed, h.round), 0);
		cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, &m, x, &len), 0,
			     "%s", hetsgd_errmsg());
		cr_assert_eq(len, 40 + 4 * (size_t)k);
		cr_assert_eq(hetsgd_block_decode(store, len, &lim, &b), 0, "%s", hetsgd_errmsg());
		check_common(&b, &h, HETSGD_ENC_MASKED, k);
		cr_assert_eq(b.seed, h.seed);
		cr_assert_eq(b.first, 0);
		cr_assert_null(b.idx);
		for (i = 0; i < k; i++)
			cr_assert_eq(fbits(b.val[i]), fbits(x[m.idx[i]]), "k %u d %u value %u", k, d, i);
		hetsgd_mask_fini(&m);
	}
}

/* ---- encoder errors ------------------------------------------------------- */

Test(block_encode, errors)
{
	const uint32_t idx_ok[] = { 1, 4 }, idx_big[] = { 1, 10 }, idx_dup[] = { 4, 4 },
		       idx_down[] = { 5, 4 };
	const float val[] = { 1.0f, 2.0f }, val_nan[] = { 1.0f, bits_f(0x7fc00000u) };
	struct hetsgd_block_hdr h = mkhdr(10);
	uint32_t midx[] = { 3, 1 };
	struct hetsgd_mask m = { .k = 2, .d = 10, .idx = midx };
	float x[10] = { 0 };
	size_t len = 12345;

	m.seed = h.seed;
	m.round = h.round;
	m.drawn = 1;
	/* -ENOSPC says how much is needed; one byte less fails, exact fits */
	cr_assert_eq(hetsgd_block_encode_dense(store, 47, &h, val, 0, 2, &len), -ENOSPC);
	ERR_HAS("needs 48 bytes");
	cr_assert_eq(hetsgd_block_encode_sparse(store, 55, &h, idx_ok, val, 2, &len), -ENOSPC);
	ERR_HAS("needs 56 bytes");
	cr_assert_eq(len, 12345, "*len written on failure");
	cr_assert_eq(hetsgd_block_encode_dense(store, 48, &h, val, 0, 2, &len), 0);
	cr_assert_eq(len, 48);
	len = 12345;

	cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), &h, val, 9, 2, &len), -EINVAL);
	ERR_HAS("[9, 11)");
	cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), &h, val, UINT32_MAX, 2, &len),
		     -EINVAL);
	cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), &h, NULL, 0, 2, &len), -EINVAL);
	ERR_HAS("NULL");
	cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), &h, NULL, 0, 0, &len), 0);
	cr_assert_eq(len, 40);
	len = 12345;
	cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), &h, val_nan, 3, 2, &len), -EINVAL);
	ERR_HAS("coordinate 4) is NaN");
	cr_assert_eq(hetsgd_block_encode_dense(NULL, sizeof(store), &h, val, 0, 2, &len), -EINVAL);
	cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), NULL, val, 0, 2, &len), -EINVAL);
	cr_assert_eq(hetsgd_block_encode_dense(store, sizeof(store), &h, val, 0, 2, NULL), -EINVAL);

	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx_big, val, 2, &len), -EINVAL);
	ERR_HAS("index 10 at position 1 is out of range");
	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx_dup, val, 2, &len), -EINVAL);
	ERR_HAS("duplicate");
	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx_down, val, 2, &len), -EINVAL);
	ERR_HAS("unsorted");
	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, NULL, val, 2, &len), -EINVAL);
	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx_ok, NULL, 2, &len), -EINVAL);
	cr_assert_eq(hetsgd_block_encode_sparse(store, sizeof(store), &h, idx_ok, val_nan, 2, &len), -EINVAL);
	ERR_HAS("coordinate 4) is NaN");

	h.dim = 11;
	cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, &m, x, &len), -EINVAL);
	ERR_HAS("header dimension 11 differs from the mask's d = 10");
	h.dim = 10;
	cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, &m, x, &len), -EINVAL);
	ERR_HAS("hetsgd_mask_draw");
	midx[0] = 0;
	cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, &m, NULL, &len), -EINVAL);
	cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, NULL, x, &len), -EINVAL);
	cr_assert_eq(hetsgd_block_encode_masked(store, 47, &h, &m, x, &len), -ENOSPC);
	ERR_HAS("needs 48 bytes");
	/* A header for another draw would make the receiver regenerate other coordinates. */
	h.round++;
	cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, &m, x, &len), -EINVAL);
	ERR_HAS("the mask was drawn for seed");
	h.round--;
	m.drawn = 0;
	cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, &m, x, &len), -EINVAL);
	ERR_HAS("never drawn");
	m.drawn = 1;
	x[1] = bits_f(0xff800000u);
	cr_assert_eq(hetsgd_block_encode_masked(store, sizeof(store), &h, &m, x, &len), -EINVAL);
	ERR_HAS("coordinate 1) is infinite");
	cr_assert_eq(len, 12345, "*len written on failure");
}

/* ---- decoder rejects ------------------------------------------------------ */

/* Valid blocks of each encoding, dim 16, in aligned storage. */
static size_t make_dense(void *buf, uint32_t first, uint32_t count)
{
	float val[16];
	struct hetsgd_block_hdr h = mkhdr(16);
	size_t len = 0;
	uint32_t i;

	for (i = 0; i < 16; i++)
		val[i] = (float)i - 3.25f;
	cr_assert_eq(hetsgd_block_encode_dense(buf, 4096, &h, val, first, count, &len), 0,
		     "%s", hetsgd_errmsg());
	return len;
}

static size_t make_indexed(void *buf)
{
	const uint32_t idx[] = { 1, 5, 9 };
	const float val[] = { 1.5f, -2.5f, 3.5f };
	struct hetsgd_block_hdr h = mkhdr(16);
	size_t len = 0;

	cr_assert_eq(hetsgd_block_encode_sparse(buf, 4096, &h, idx, val, 3, &len), 0);
	cr_assert_eq(((unsigned char *)buf)[3], HETSGD_ENC_INDEXED);
	return len;
}

static size_t make_masked(void *buf)
{
	uint32_t midx[] = { 0, 3, 4, 15 };
	float x[16] = { 0.25f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
	struct hetsgd_mask m = { .k = 4, .d = 16, .idx = midx };
	struct hetsgd_block_hdr h = mkhdr(16);
	size_t len = 0;

	h.seed = 99;
	m.seed = h.seed;
	m.round = h.round;
	m.drawn = 1;
	cr_assert_eq(hetsgd_block_encode_masked(buf, 4096, &h, &m, x, &len), 0);
	return len;
}

Test(block_decode, truncated_every_length_and_over_long)
{
	struct hetsgd_block_limits lim = mklim(16);
	size_t (*makers[3])(void *) = { NULL, make_indexed, make_masked };
	size_t len, n;
	int t;

	need_le();
	for (t = 0; t < 3; t++) {
		len = t ? makers[t](store) : make_dense(store, 2, 5);
		for (n = 0; n < len; n++)
			expect_reject(store, n, &lim, -EBADMSG, "truncated");
		/* the last one names the expected size */
		expect_reject(store, len - 1, &lim, -EBADMSG, "bytes received");
		expect_reject(store, len + 1, &lim, -EBADMSG, "over-long");
		expect_reject(store, len + 4, &lim, -EBADMSG, "over-long");
	}
}

Test(block_decode, header_fields)
{
	struct hetsgd_block_limits lim = mklim(16);
	unsigned char *p = (unsigned char *)store;
	size_t len;

	need_le();
	len = make_dense(store, 0, 4);
	p[0] = 0x54;
	expect_reject(store, len, &lim, -EBADMSG, "magic 0x4854");
	len = make_dense(store, 0, 4);
	p[1] = 0;
	expect_reject(store, len, &lim, -EBADMSG, "magic");

	len = make_dense(store, 0, 4);
	p[2] = 2;
	expect_reject(store, len, &lim, -EPROTO, "version 2");
	ERR_HAS("version 1");
	p[2] = 0;
	expect_reject(store, len, &lim, -EPROTO, "version 0");

	len = make_dense(store, 0, 4);
	p[3] = 4;
	expect_reject(store, len, &lim, -EBADMSG, "encoding 4");
	p[3] = 0;
	expect_reject(store, len, &lim, -EBADMSG, "encoding 0");

	len = make_dense(store, 0, 4);
	p[7] = 1;
	expect_reject(store, len, &lim, -EBADMSG, "reserved");

	len = make_dense(store, 0, 4);
	lim.dim = 17;
	expect_reject(store, len, &lim, -EBADMSG, "dimension 16");
	ERR_HAS("dimension 17");
	lim.dim = 16;

	lim.nranks = 3;		/* sender is 3 */
	expect_reject(store, len, &lim, -EBADMSG, "sender rank 3");
	ERR_HAS("3 ranks");
	lim.nranks = 0;
	expect_reject(store, len, &lim, -EBADMSG, "sender");
	lim.nranks = 4;
	put32(store, 8, UINT32_MAX);
	expect_reject(store, len, &lim, -EBADMSG, "sender rank 4294967295");
}

Test(block_decode, counts_and_slot)
{
	struct hetsgd_block_limits lim = mklim(16);
	size_t len;

	need_le();
	/* count 17 > dim 16, with a length that matches count 17 */
	len = make_dense(store, 0, 16);
	put32(store, 12, 17);
	expect_reject(store, len + 4, &lim, -EBADMSG, "count 17 exceeds the dimension 16");
	put32(store, 12, UINT32_MAX);
	expect_reject(store, len, &lim, -EBADMSG, "count 4294967295");

	/* a valid block that the receiver's slot cannot hold */
	len = make_dense(store, 0, 16);
	lim.max_bytes = len - 1;
	expect_reject(store, len, &lim, -EBADMSG, "slot");
	lim.max_bytes = len;
	cr_assert_eq(decode_copy(store, len, &lim, &(struct hetsgd_block){ 0 }), 0);
	/* a length beyond the slot for a count that fits it */
	len = make_dense(store, 0, 2);
	lim.max_bytes = len + 2;
	expect_reject(store, len + 4, &lim, -EBADMSG, "slot");
	len = make_indexed(store);
	lim.max_bytes = 40;
	expect_reject(store, len, &lim, -EBADMSG, "slot (max_bytes)");
}

Test(block_decode, dense_range)
{
	static const uint32_t firsts[][2] = {
		{ 13, 4 },			/* 17 > 16 */
		{ 16, 1 },
		{ UINT32_MAX, 2 },		/* wraps to 1 in 32 bits */
		{ UINT32_MAX - 1, 2 },		/* wraps to 0 */
		{ UINT32_MAX - 3, 16 },	/* wraps to 12 */
		{ 0x80000000u, 16 },
	};
	struct hetsgd_block_limits lim = mklim(16);
	struct hetsgd_block b;
	size_t t, len;

	need_le();
	for (t = 0; t < ARRAY_LEN(firsts); t++) {
		len = make_dense(store, 0, firsts[t][1]);
		put32(store, 20, firsts[t][0]);
		expect_reject(store, len, &lim, -EBADMSG, "beyond the dimension 16");
	}
	/* the edges that are fine */
	len = make_dense(store, 12, 4);
	cr_assert_eq(decode_copy(store, len, &lim, &b), 0, "%s", hetsgd_errmsg());
	len = make_dense(store, 16, 0);
	cr_assert_eq(decode_copy(store, len, &lim, &b), 0, "%s", hetsgd_errmsg());
}

Test(block_decode, first_and_seed_only_where_allowed)
{
	struct hetsgd_block_limits lim = mklim(16);
	size_t len;

	need_le();
	len = make_indexed(store);
	put32(store, 20, 1);
	expect_reject(store, len, &lim, -EBADMSG, "indexed block has first = 1");
	len = make_masked(store);
	put32(store, 20, 2);
	expect_reject(store, len, &lim, -EBADMSG, "masked block has first = 2");
	len = make_dense(store, 0, 3);
	put32(store, 36, 1);
	expect_reject(store, len, &lim, -EBADMSG, "seed");
	len = make_indexed(store);
	put32(store, 32, 1);
	expect_reject(store, len, &lim, -EBADMSG, "only masked blocks carry a seed");
}

Test(block_decode, indices)
{
	struct hetsgd_block_limits lim = mklim(16);
	size_t len;

	need_le();
	len = make_indexed(store);	/* idx 1 5 9 at 40, 44, 48 */
	put32(store, 48, 16);
	expect_reject(store, len, &lim, -EBADMSG, "index 16 at position 2 is out of range");
	put32(store, 48, UINT32_MAX);
	expect_reject(store, len, &lim, -EBADMSG, "out of range");
	len = make_indexed(store);
	put32(store, 44, 1);
	expect_reject(store, len, &lim, -EBADMSG, "duplicate");
	len = make_indexed(store);
	put32(store, 44, 12);
	expect_reject(store, len, &lim, -EBADMSG, "unsorted");
	len = make_indexed(store);
	put32(store, 40, 5);
	expect_reject(store, len, &lim, -EBADMSG, "position 1");
}

Test(block_decode, non_finite_values)
{
	static const uint32_t bad[] = { 0x7fc00000u, 0xffc00001u, 0x7f800001u,
					0x7f800000u, 0xff800000u };
	struct hetsgd_block_limits lim = mklim(16);
	struct hetsgd_block b;
	size_t t, len;

	need_le();
	for (t = 0; t < ARRAY_LEN(bad); t++) {
		const char *what = t < 3 ? "NaN" : "infinite";
		char msg[64];

		len = make_dense(store, 2, 5);
		put32(store, 40 + 4 * 3, bad[t]);
		snprintf(msg, sizeof(msg), "value 3 (coordinate 5) is %s", what);
		expect_reject(store, len, &lim, -EBADMSG, msg);

		len = make_indexed(store);	/* values after 3 indices */
		put32(store, 40 + 12 + 4 * 2, bad[t]);
		snprintf(msg, sizeof(msg), "value 2 (coordinate 9) is %s", what);
		expect_reject(store, len, &lim, -EBADMSG, msg);

		len = make_masked(store);
		put32(store, 40 + 4 * 1, bad[t]);
		snprintf(msg, sizeof(msg), "value 1 (in mask order) is %s", what);
		expect_reject(store, len, &lim, -EBADMSG, msg);
	}
	/* largest finite and denormals are fine */
	len = make_dense(store, 0, 3);
	put32(store, 40, 0x7f7fffffu);
	put32(store, 44, 0x00000001u);
	put32(store, 48, 0x80000000u);
	cr_assert_eq(decode_copy(store, len, &lim, &b), 0, "%s", hetsgd_errmsg());
}

Test(block_decode, bad_arguments_and_alignment)
{
	struct hetsgd_block_limits lim = mklim(16);
	struct hetsgd_block b, before;
	unsigned char *p = (unsigned char *)store;
	size_t len, off;

	need_le();
	len = make_dense(store, 0, 4);
	memset(&b, 0xa5, sizeof(b));
	before = b;
	for (off = 1; off < 4; off++) {
		memmove(p + off, p, len);
		cr_assert_eq(hetsgd_block_decode(p + off, len, &lim, &b), -EINVAL);
		ERR_HAS("4-byte aligned");
		cr_assert_arr_eq(&b, &before, sizeof(b));
		memmove(p, p + off, len);
	}
	cr_assert_eq(hetsgd_block_decode(NULL, len, &lim, &b), -EINVAL);
	cr_assert_eq(hetsgd_block_decode(store, len, NULL, &b), -EINVAL);
	cr_assert_eq(hetsgd_block_decode(store, len, &lim, NULL), -EINVAL);
	ERR_HAS("NULL");
	cr_assert_eq(hetsgd_block_decode(store, len, &lim, &b), 0);
}

/* The encoder is endian-correct anywhere; the decoder refuses BE hosts. */
Test(block_decode, big_endian_host_refused)
{
	struct hetsgd_block_limits lim = mklim(16);
	struct hetsgd_block b;
	size_t len = make_dense(store, 0, 4);

	if (host_le())
		cr_skip_test("little-endian host");
	cr_assert_eq(hetsgd_block_decode(store, len, &lim, &b), -ENOTSUP);
	ERR_HAS("big-endian");
}

/* ---- fuzz ----------------------------------------------------------------- */

/*
 * Flip random bytes (mostly in the header, where the lengths come from)
 * and sometimes cut or extend the block; the decoder must either reject
 * with a message or return a block that satisfies every limit.  Fixed
 * seed: reproducible; failures print the seed and the iteration.
 */
static void check_accepted(const struct hetsgd_block *b, const unsigned char *buf, size_t len,
			   const struct hetsgd_block_limits *lim, uint64_t seed, int it)
{
	uint32_t i, count = b->count;
	const float *val_end = b->val + count;

#define FZ(cond) cr_assert((cond), "fuzz seed 0x%llx iteration %d: accepted block breaks %s", \
			   (unsigned long long)seed, it, #cond)
	FZ(b->encoding == HETSGD_ENC_DENSE || b->encoding == HETSGD_ENC_INDEXED ||
	   b->encoding == HETSGD_ENC_MASKED);
	FZ(b->dim == lim->dim);
	FZ(b->sender < lim->nranks);
	FZ(count <= b->dim);
	FZ(len <= lim->max_bytes);
	FZ(len == hetsgd_block_bytes(b->encoding, count));
	FZ((const unsigned char *)b->val >= buf + HDR);
	FZ((const unsigned char *)val_end == buf + len);
	FZ(b->encoding == HETSGD_ENC_MASKED || b->seed == 0);
	if (b->encoding == HETSGD_ENC_DENSE)
		FZ((uint64_t)b->first + count <= b->dim);
	else
		FZ(b->first == 0);
	if (b->encoding == HETSGD_ENC_INDEXED) {
		FZ(b->idx != NULL);
		FZ(b->idx == lim->idx_copy);	/* the receiver's copy, never the slot */
		for (i = 0; i < count; i++) {
			FZ(b->idx[i] == ((const uint32_t *)(const void *)(buf + HDR))[i]);
			FZ(b->idx[i] < b->dim);
			FZ(i == 0 || b->idx[i] > b->idx[i - 1]);
		}
	} else {
		FZ(b->idx == NULL);
	}
	for (i = 0; i < count; i++)
		FZ((fbits(b->val[i]) & 0x7f800000u) != 0x7f800000u);
#undef FZ
}

Test(block_decode, fuzz)
{
	const uint64_t seed = 0xf0220b10c5ull;
	struct hetsgd_block_limits lim = mklim(16);
	static unsigned char base[3][256] __attribute__((aligned(8)));
	size_t base_len[3];
	int it, accepted = 0, rejected = 0;
	uint64_t s = seed;

	need_le();
	lim.max_bytes = 40 + 4 * 16 + 8;
	base_len[0] = make_dense(base[0], 3, 9);
	base_len[1] = make_indexed(base[1]);
	base_len[2] = make_masked(base[2]);
	for (it = 0; it < 100000; it++) {
		int t = (int)(rng(&s) % 3), flips = (int)(rng(&s) % 4) + 1, f, rc;
		size_t len = base_len[t], cut = rng(&s) % 8;
		struct hetsgd_block b;
		unsigned char *p;

		if (cut == 0)
			len = rng(&s) % (len + 9);	/* anywhere from 0 to 8 too long */
		p = malloc(len ? len : 1);
		cr_assert_not_null(p);
		memcpy(p, base[t], len < base_len[t] ? len : base_len[t]);
		if (len > base_len[t])
			memset(p + base_len[t], (int)(rng(&s) & 0xff), len - base_len[t]);
		for (f = 0; f < flips && len; f++) {
			size_t at = rng(&s) % 2 ? rng(&s) % (len < HDR ? len : HDR) : rng(&s) % len;

			p[at] ^= (unsigned char)(rng(&s) % 255 + 1);
		}
		rc = hetsgd_block_decode(p, len, &lim, &b);
		if (rc == 0) {
			check_accepted(&b, p, len, &lim, seed, it);
			accepted++;
		} else {
			cr_assert(rc == -EBADMSG || rc == -EPROTO,
				  "fuzz seed 0x%llx iteration %d: rc %d (%s)",
				  (unsigned long long)seed, it, rc, hetsgd_errmsg());
			cr_assert(hetsgd_errmsg()[0], "fuzz seed 0x%llx iteration %d: empty message",
				  (unsigned long long)seed, it);
			rejected++;
		}
		free(p);
	}
	/* Both outcomes must occur, or the loop tested nothing. */
	cr_assert_gt(accepted, 1000, "accepted %d", accepted);
	cr_assert_gt(rejected, 1000, "rejected %d", rejected);
	cr_log_info("fuzz: %d accepted, %d rejected", accepted, rejected);
}

Test(block, indexed_indices_are_checked_in_the_receivers_copy)
{
	uint32_t idx[3] = { 1, 5, 9 };
	float val[3] = { 1, 2, 3 };
	struct hetsgd_block_hdr h = mkhdr(16);
	struct hetsgd_block_limits lim = mklim(16);
	struct hetsgd_block b;
	uint32_t slot[64];
	size_t len;

	cr_assert_eq(hetsgd_block_encode_sparse(slot, sizeof(slot), &h, idx, val, 3, &len), 0);
	cr_assert_eq(hetsgd_block_decode(slot, len, &lim, &b), 0, "%s", hetsgd_errmsg());
	cr_expect_eq(b.idx, idx_copy, "the indices the caller uses are the receiver's copy");
	/* The sender rewrites its slot after the decode: the copy does not move. */
	slot[10] = 0xffffffffu;
	cr_expect_eq(b.idx[0], 1);
	cr_expect_eq(b.idx[2], 9);
	lim.idx_copy = NULL;
	cr_expect_eq(hetsgd_block_decode(slot, len, &lim, &b), -EINVAL);
	cr_expect(strstr(hetsgd_errmsg(), "idx_copy"), "%s", hetsgd_errmsg());
}
