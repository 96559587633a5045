/*
 * Sparse block encoding and validation.
 *
 * A block arrives by RDMA write from a peer that may be buggy, stale or
 * running another version, so the decoder trusts nothing: every header
 * field is checked before any length derived from it is used, and the
 * payload is read only after its exact length is known to lie inside the
 * buffer.
 *
 * Header fields go through explicit little-endian byte helpers, never a
 * cast of the buffer to struct hetsgd_block_hdr, so the wire format does
 * not depend on the host's byte order, padding or alignment.  Layout:
 *
 *   0 magic u16   2 version u8   3 encoding u8   4 kind u16   6 reserved u16
 *   8 sender u32  12 count u32   16 dim u32      20 first u32
 *   24 round u64  32 seed u64    40 payload
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "transport_priv.h"

#define HDR_BYTES 40u

enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 2,
	OFF_ENCODING = 3,
	OFF_KIND = 4,
	OFF_RESERVED = 6,
	OFF_SENDER = 8,
	OFF_COUNT = 12,
	OFF_DIM = 16,
	OFF_FIRST = 20,
	OFF_ROUND = 24,
	OFF_SEED = 32,
};

static void put_le16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void put_le64(unsigned char *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (unsigned int)p[1] << 8);
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const unsigned char *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static uint32_t float_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* Decided on the bit pattern, so -ffast-math cannot fold it away. */
static const char *nonfinite(uint32_t bits)
{
	if ((bits & 0x7f800000u) != 0x7f800000u)
		return NULL;
	return bits & 0x007fffffu ? "NaN" : "infinite";
}

static int host_is_little_endian(void)
{
	const uint32_t one = 1;
	unsigned char first;

	memcpy(&first, &one, 1);
	return first == 1;
}

static const char *enc_name(unsigned int enc)
{
	switch (enc) {
	case HETSGD_ENC_DENSE:
		return "dense";
	case HETSGD_ENC_INDEXED:
		return "indexed";
	case HETSGD_ENC_MASKED:
		return "masked";
	}
	return "unknown";
}

/* 64-bit so that a 32-bit host sees an oversized block instead of a wrap. */
static uint64_t block_bytes64(unsigned int enc, uint32_t count)
{
	switch (enc) {
	case HETSGD_ENC_DENSE:
	case HETSGD_ENC_MASKED:
		return HDR_BYTES + 4ull * count;
	case HETSGD_ENC_INDEXED:
		return HDR_BYTES + 8ull * count;
	}
	return 0;
}

size_t hetsgd_block_bytes(enum hetsgd_enc enc, uint32_t count)
{
	uint64_t n = block_bytes64((unsigned int)enc, count);

	/* Not representable: 0, like a bad encoding, so callers' checks fail. */
	return n > SIZE_MAX ? 0 : (size_t)n;
}

static int check_out_args(const char *fn, const void *buf,
			  const struct hetsgd_block_hdr *hdr, const size_t *len)
{
	if (!buf || !hdr || !len)
		return hetsgd_err(-EINVAL, "%s: buf, hdr and len must not be NULL", fn);
	return 0;
}

static int check_space(const char *fn, size_t cap, uint64_t need)
{
	if (need > cap)
		return hetsgd_err(-ENOSPC,
				  "%s: the block needs %llu bytes but the buffer holds %zu: size it with hetsgd_block_bytes()",
				  fn, (unsigned long long)need, cap);
	return 0;
}

/*
 * A NaN or Inf would be rejected by every receiver; failing here names
 * the sender and the coordinate, which is where the divergence is.
 */
static int check_finite(const char *fn, float v, uint32_t pos, uint32_t coord)
{
	const char *what = nonfinite(float_bits(v));

	if (what)
		return hetsgd_err(-EINVAL,
				  "%s: value %u (coordinate %u) is %s: the model or gradient diverged; lower the step size",
				  fn, pos, coord, what);
	return 0;
}

static void write_hdr(unsigned char *p, const struct hetsgd_block_hdr *hdr,
		      enum hetsgd_enc enc, uint32_t count, uint32_t first,
		      uint64_t seed)
{
	put_le16(p + OFF_MAGIC, HETSGD_BLOCK_MAGIC);
	p[OFF_VERSION] = HETSGD_BLOCK_VERSION;
	p[OFF_ENCODING] = (unsigned char)enc;
	put_le16(p + OFF_KIND, hdr->kind);
	put_le16(p + OFF_RESERVED, 0);
	put_le32(p + OFF_SENDER, hdr->sender);
	put_le32(p + OFF_COUNT, count);
	put_le32(p + OFF_DIM, hdr->dim);
	put_le32(p + OFF_FIRST, first);
	put_le64(p + OFF_ROUND, hdr->round);
	put_le64(p + OFF_SEED, seed);
}

int hetsgd_block_encode_dense(void *buf, size_t cap,
			      const struct hetsgd_block_hdr *hdr,
			      const float *val, uint32_t first, uint32_t count,
			      size_t *len)
{
	static const char fn[] = "hetsgd_block_encode_dense";
	uint64_t need = block_bytes64(HETSGD_ENC_DENSE, count);
	unsigned char *p = buf;
	uint32_t i;
	int ret;

	ret = check_out_args(fn, buf, hdr, len);
	if (ret)
		return ret;
	if (count && !val)
		return hetsgd_err(-EINVAL, "%s: val is NULL with count %u", fn, count);
	if ((uint64_t)first + count > hdr->dim)
		return hetsgd_err(-EINVAL,
				  "%s: values [%u, %llu) do not fit the dimension %u: check first and count",
				  fn, first, (unsigned long long)first + count, hdr->dim);
	ret = check_space(fn, cap, need);
	if (ret)
		return ret;
	for (i = 0; i < count; i++) {
		ret = check_finite(fn, val[i], i, first + i);
		if (ret)
			return ret;
	}

	write_hdr(p, hdr, HETSGD_ENC_DENSE, count, first, 0);
	for (i = 0; i < count; i++)
		put_le32(p + HDR_BYTES + 4 * (size_t)i, float_bits(val[i]));
	*len = (size_t)need;
	return 0;
}

int hetsgd_block_encode_sparse(void *buf, size_t cap,
			       const struct hetsgd_block_hdr *hdr,
			       const uint32_t *idx, const float *val,
			       uint32_t count, size_t *len)
{
	static const char fn[] = "hetsgd_block_encode_sparse";
	unsigned char *p = buf, *vp;
	uint64_t indexed, dense, need;
	enum hetsgd_enc enc;
	uint32_t i;
	int ret;

	ret = check_out_args(fn, buf, hdr, len);
	if (ret)
		return ret;
	if (count && (!idx || !val))
		return hetsgd_err(-EINVAL, "%s: idx or val is NULL with count %u", fn, count);
	for (i = 0; i < count; i++) {
		if (idx[i] >= hdr->dim)
			return hetsgd_err(-EINVAL,
					  "%s: index %u at position %u is out of range for dimension %u",
					  fn, idx[i], i, hdr->dim);
		if (i && idx[i] <= idx[i - 1])
			return hetsgd_err(-EINVAL,
					  "%s: indices must be strictly increasing: %u at position %u follows %u (%s)",
					  fn, idx[i], i, idx[i - 1],
					  idx[i] == idx[i - 1] ? "duplicate" : "unsorted");
		ret = check_finite(fn, val[i], i, idx[i]);
		if (ret)
			return ret;
	}

	indexed = block_bytes64(HETSGD_ENC_INDEXED, count);
	dense = block_bytes64(HETSGD_ENC_DENSE, hdr->dim);
	/* Ties go to DENSE: same size, and the receiver skips the scatter. */
	enc = indexed < dense ? HETSGD_ENC_INDEXED : HETSGD_ENC_DENSE;
	need = enc == HETSGD_ENC_INDEXED ? indexed : dense;
	ret = check_space(fn, cap, need);
	if (ret)
		return ret;

	if (enc == HETSGD_ENC_INDEXED) {
		write_hdr(p, hdr, enc, count, 0, 0);
		vp = p + HDR_BYTES + 4 * (size_t)count;
		for (i = 0; i < count; i++) {
			put_le32(p + HDR_BYTES + 4 * (size_t)i, idx[i]);
			put_le32(vp + 4 * (size_t)i, float_bits(val[i]));
		}
	} else {
		write_hdr(p, hdr, enc, hdr->dim, 0, 0);
		/* +0.0f is all-zero bytes in either byte order. */
		memset(p + HDR_BYTES, 0, 4 * (size_t)hdr->dim);
		for (i = 0; i < count; i++)
			put_le32(p + HDR_BYTES + 4 * (size_t)idx[i], float_bits(val[i]));
	}
	*len = (size_t)need;
	return 0;
}

int hetsgd_block_encode_masked(void *buf, size_t cap,
			       const struct hetsgd_block_hdr *hdr,
			       const struct hetsgd_mask *mask, const float *x,
			       size_t *len)
{
	static const char fn[] = "hetsgd_block_encode_masked";
	unsigned char *p = buf;
	uint64_t need;
	uint32_t j, k;
	int ret;

	ret = check_out_args(fn, buf, hdr, len);
	if (ret)
		return ret;
	if (!mask)
		return hetsgd_err(-EINVAL, "%s: mask is NULL", fn);
	k = mask->k;
	if (hdr->dim != mask->d)
		return hetsgd_err(-EINVAL,
				  "%s: header dimension %u differs from the mask's d = %u: draw the mask for this model",
				  fn, hdr->dim, mask->d);
	if (k > mask->d || (k && (!mask->idx || !x)))
		return hetsgd_err(-EINVAL,
				  "%s: the mask is not initialised or x is NULL", fn);
	if (k && !mask->drawn)
		return hetsgd_err(-EINVAL, "%s: the mask was never drawn: call hetsgd_mask_draw first", fn);
	if (mask->drawn && (hdr->seed != mask->seed || hdr->round != mask->round))
		return hetsgd_err(-EINVAL,
				  "%s: the header says seed %llu round %llu but the mask was drawn for seed %llu round %llu: "
				  "the receiver would regenerate other coordinates",
				  fn, (unsigned long long)hdr->seed, (unsigned long long)hdr->round,
				  (unsigned long long)mask->seed, (unsigned long long)mask->round);
	/*
	 * The mask is ours, not a peer's, but a mask that was never drawn
	 * (all zeros after init) or was overwritten would read x out of
	 * bounds or send values for the wrong coordinates: O(k) to rule out.
	 */
	for (j = 0; j < k; j++) {
		if (mask->idx[j] >= mask->d || (j && mask->idx[j] <= mask->idx[j - 1]))
			return hetsgd_err(-EINVAL,
					  "%s: mask entry %u (%u) is out of range or out of order: draw the mask with hetsgd_mask_draw before encoding",
					  fn, j, mask->idx[j]);
		ret = check_finite(fn, x[mask->idx[j]], j, mask->idx[j]);
		if (ret)
			return ret;
	}
	need = block_bytes64(HETSGD_ENC_MASKED, k);
	ret = check_space(fn, cap, need);
	if (ret)
		return ret;

	write_hdr(p, hdr, HETSGD_ENC_MASKED, k, 0, hdr->seed);
	for (j = 0; j < k; j++)
		put_le32(p + HDR_BYTES + 4 * (size_t)j, float_bits(x[mask->idx[j]]));
	*len = (size_t)need;
	return 0;
}

/*
 * Requirements the public header does not spell out: buf must be 4-byte
 * aligned (-EINVAL otherwise) and the host little-endian (x86_64,
 * aarch64, ppc64le; -ENOTSUP otherwise), because the returned idx and val
 * point into buf: the payload is used in place rather than copied out of
 * a slot that may be large.  The encoders work on any host.
 */
/* Long: a decoder for hostile input, one check and one message per header field and per value, in wire order. */
int hetsgd_block_decode(const void *buf, size_t len,
			const struct hetsgd_block_limits *lim,
			struct hetsgd_block *out)
{
	const unsigned char *p = buf;
	const unsigned char *ip = NULL, *vp;
	unsigned int version, enc;
	uint32_t sender, count, dim, first, i, prev = 0, coord;
	uint16_t magic, reserved;
	uint64_t need, seed;
	const char *what;

	if (!buf || !lim || !out)
		return hetsgd_err(-EINVAL, "hetsgd_block_decode: buf, lim and out must not be NULL");
	if (!host_is_little_endian())
		return hetsgd_err(-ENOTSUP,
				  "hetsgd_block_decode: this host is big-endian; decoded values are used in place in the little-endian wire buffer, "
				  "so decoding needs a little-endian host (x86_64, aarch64, ppc64le)");
	if ((uintptr_t)buf & 3u)
		return hetsgd_err(-EINVAL,
				  "hetsgd_block_decode: buffer %p is not 4-byte aligned: receive blocks into 4-byte aligned memory "
				  "(malloc and the staging slots are)", buf);
	if (len < HDR_BYTES)
		return hetsgd_err(-EBADMSG,
				  "block truncated: %zu bytes is shorter than the %u-byte header",
				  len, HDR_BYTES);

	magic = get_le16(p + OFF_MAGIC);
	version = p[OFF_VERSION];
	enc = p[OFF_ENCODING];
	reserved = get_le16(p + OFF_RESERVED);
	sender = get_le32(p + OFF_SENDER);
	count = get_le32(p + OFF_COUNT);
	dim = get_le32(p + OFF_DIM);
	first = get_le32(p + OFF_FIRST);
	seed = get_le64(p + OFF_SEED);

	if (magic != HETSGD_BLOCK_MAGIC)
		return hetsgd_err(-EBADMSG,
				  "bad block magic 0x%04x (expected 0x%04x): the slot does not hold a hetsgd block (corrupt or stray write)",
				  magic, HETSGD_BLOCK_MAGIC);
	if (version != HETSGD_BLOCK_VERSION)
		return hetsgd_err(-EPROTO,
				  "block version %u from a peer, but this library speaks version %u: run the same hetsgd on every rank",
				  version, HETSGD_BLOCK_VERSION);
	if (enc != HETSGD_ENC_DENSE && enc != HETSGD_ENC_INDEXED && enc != HETSGD_ENC_MASKED)
		return hetsgd_err(-EBADMSG,
				  "unknown block encoding %u (known: 1 dense, 2 indexed, 3 masked)", enc);
	if (reserved)
		return hetsgd_err(-EBADMSG, "block reserved field is 0x%04x, must be 0", reserved);
	if (dim != lim->dim)
		return hetsgd_err(-EBADMSG,
				  "block dimension %u does not match this receiver's dimension %u: every rank must train the same model",
				  dim, lim->dim);
	if (sender >= lim->nranks)
		return hetsgd_err(-EBADMSG, "block sender rank %u is out of range: the job has %u ranks",
				  sender, lim->nranks);
	if (count > dim)
		return hetsgd_err(-EBADMSG, "block count %u exceeds the dimension %u", count, dim);

	need = block_bytes64(enc, count);
	if (need > lim->max_bytes)
		return hetsgd_err(-EBADMSG,
				  "%s block of %u values needs %llu bytes, more than the %zu-byte slot (max_bytes)",
				  enc_name(enc), count, (unsigned long long)need, lim->max_bytes);
	if (len > lim->max_bytes)
		return hetsgd_err(-EBADMSG, "block of %zu bytes exceeds the %zu-byte slot (max_bytes)",
				  len, lim->max_bytes);
	if (len != need)
		return hetsgd_err(-EBADMSG,
				  "block %s: %zu bytes received, %llu expected for %u %s values",
				  len < need ? "truncated" : "over-long", len,
				  (unsigned long long)need, count, enc_name(enc));

	if (enc == HETSGD_ENC_DENSE) {
		if ((uint64_t)first + count > dim)
			return hetsgd_err(-EBADMSG,
					  "dense block covers [%u, %llu), beyond the dimension %u",
					  first, (unsigned long long)first + count, dim);
	} else if (first) {
		return hetsgd_err(-EBADMSG, "%s block has first = %u, must be 0", enc_name(enc), first);
	}
	if (enc != HETSGD_ENC_MASKED && seed)
		return hetsgd_err(-EBADMSG,
				  "%s block carries seed 0x%llx; only masked blocks carry a seed",
				  enc_name(enc), (unsigned long long)seed);

	vp = p + HDR_BYTES;
	if (enc == HETSGD_ENC_INDEXED) {
		if (!lim->idx_copy)
			return hetsgd_err(-EINVAL, "indexed block: the receiver gave no idx_copy array to check its indices in "
					  "(struct hetsgd_block_limits)");
		ip = vp;
		vp += 4 * (size_t)count;
		/* Read once into the receiver's array, then check the copy. */
		for (i = 0; i < count; i++)
			lim->idx_copy[i] = get_le32(ip + 4 * (size_t)i);
		for (i = 0; i < count; i++) {
			coord = lim->idx_copy[i];
			if (coord >= dim)
				return hetsgd_err(-EBADMSG,
						  "indexed block: index %u at position %u is out of range (dimension %u)",
						  coord, i, dim);
			if (i && coord <= prev)
				return hetsgd_err(-EBADMSG,
						  "indexed block: index %u at position %u follows %u: indices must be strictly increasing (%s)",
						  coord, i, prev, coord == prev ? "duplicate" : "unsorted");
			prev = coord;
		}
	}
	for (i = 0; i < count; i++) {
		what = nonfinite(get_le32(vp + 4 * (size_t)i));
		if (!what)
			continue;
		if (enc == HETSGD_ENC_MASKED)
			return hetsgd_err(-EBADMSG,
					  "masked block from rank %u: value %u (in mask order) is %s",
					  sender, i, what);
		coord = enc == HETSGD_ENC_DENSE ? first + i : lim->idx_copy[i];
		return hetsgd_err(-EBADMSG, "%s block from rank %u: value %u (coordinate %u) is %s",
				  enc_name(enc), sender, i, coord, what);
	}

	out->encoding = (enum hetsgd_enc)enc;
	out->kind = get_le16(p + OFF_KIND);
	out->sender = sender;
	out->count = count;
	out->dim = dim;
	out->first = first;
	out->round = get_le64(p + OFF_ROUND);
	out->seed = seed;
	/* Little-endian host and aligned buffer, checked above. */
	out->idx = ip ? lim->idx_copy : NULL;
	out->val = (const float *)(const void *)vp;
	return 0;
}
