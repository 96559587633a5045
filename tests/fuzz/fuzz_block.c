/*
 * Fuzz hetsgd_block_decode(), the first code to touch what a peer wrote
 * into a staging slot.
 *
 * Input: 4 control bytes, then the block.  The control bytes choose the
 * receiver's limits, mostly from the block's own header so that the
 * fuzzer gets past the dimension and rank checks to the payload:
 *   c[0] bit 0: lim.dim = the header's dim, else c[2] | c[3] << 8
 *        bit 1: lim.nranks = header sender + 1, else c[1]
 *        bit 2: lim.max_bytes = the block's length, else (c[0] >> 4) * 16
 *        bit 3: decode from a misaligned address (must be -EINVAL)
 * The block is decoded from a heap copy of exactly its length, so ASan
 * catches any read past it.  A block that decodes must describe itself
 * consistently and re-encode to the same bytes.
 */
#include "fuzz.h"

#include <errno.h>
#include <string.h>

#include "hetsgd_transport.h"

static void check_decoded(const uint8_t *blk, size_t len,
			  const struct hetsgd_block_limits *lim,
			  const struct hetsgd_block *b)
{
	const unsigned char *lo = blk, *hi = blk + len;
	struct hetsgd_block_hdr hdr = { 0 };
	unsigned char *re;
	size_t relen = 0;
	uint32_t i;
	int ret;

	FUZZ_ASSERT(b->dim == lim->dim && b->sender < lim->nranks);
	FUZZ_ASSERT(b->count <= b->dim);
	FUZZ_ASSERT(len == hetsgd_block_bytes(b->encoding, b->count));
	FUZZ_ASSERT(len <= lim->max_bytes);
	FUZZ_ASSERT((const unsigned char *)b->val >= lo &&
		    (const unsigned char *)(b->val + b->count) <= hi);
	if (b->encoding == HETSGD_ENC_INDEXED) {
		/* the indices the receiver uses are its own copy of the slot's */
		FUZZ_ASSERT(b->idx == lim->idx_copy);
		for (i = 0; i < b->count; i++) {
			FUZZ_ASSERT(!memcmp(&b->idx[i], blk + 40 + 4 * (size_t)i, 4));
			FUZZ_ASSERT(b->idx[i] < b->dim && (!i || b->idx[i] > b->idx[i - 1]));
		}
	} else {
		FUZZ_ASSERT(!b->idx);
	}
	if (b->encoding == HETSGD_ENC_DENSE)
		FUZZ_ASSERT((uint64_t)b->first + b->count <= b->dim);

	/* Encode what was decoded: the same bytes must come out (masked
	 * blocks need the mask, which only the receiver can redraw). */
	if (b->encoding == HETSGD_ENC_MASKED)
		return;
	hdr.kind = b->kind;
	hdr.sender = b->sender;
	hdr.dim = b->dim;
	hdr.round = b->round;
	re = malloc(len);
	FUZZ_ASSERT(re);
	if (b->encoding == HETSGD_ENC_DENSE)
		ret = hetsgd_block_encode_dense(re, len, &hdr, b->val, b->first, b->count, &relen);
	else
		ret = hetsgd_block_encode_sparse(re, len, &hdr, b->idx, b->val, b->count, &relen);
	/* encode_sparse may pick DENSE when it is not larger: only then can
	 * the bytes differ, and only then may it need other space. */
	if (b->encoding == HETSGD_ENC_DENSE ||
	    hetsgd_block_bytes(HETSGD_ENC_INDEXED, b->count) < hetsgd_block_bytes(HETSGD_ENC_DENSE, b->dim)) {
		FUZZ_ASSERT(ret == 0 && relen == len);
		FUZZ_ASSERT(!memcmp(re, blk, len));
	}
	free(re);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hetsgd_block_limits lim;
	struct hetsgd_block out;
	const uint8_t *c = data;
	uint8_t *buf;
	size_t len;
	int ret;

	if (size < 4)
		return 0;
	len = size - 4;
	lim.dim = (c[0] & 1) && len >= 20 ? fuzz_le32(data + 4 + 16) : (uint32_t)(c[2] | c[3] << 8);
	if ((c[0] & 2) && len >= 12)
		lim.nranks = fuzz_le32(data + 4 + 8) == UINT32_MAX ? UINT32_MAX : fuzz_le32(data + 4 + 8) + 1;
	else
		lim.nranks = c[1];
	lim.max_bytes = (c[0] & 4) ? len : (size_t)(c[0] >> 4) * 16;

	if (c[0] & 8) {
		/* malloc is at least 8-byte aligned: buf + 1 is not 4-byte aligned */
		buf = malloc(len + 1);
		FUZZ_ASSERT(buf);
		memcpy(buf + 1, data + 4, len);
		ret = hetsgd_block_decode(buf + 1, len, &lim, &out);
		FUZZ_ASSERT(ret == -EINVAL);
		free(buf);
		return 0;
	}
	buf = malloc(len ? len : 1);
	FUZZ_ASSERT(buf && !((uintptr_t)buf & 3));
	memcpy(buf, data + 4, len);
	/*
	 * The index copy as a receiver sizes it is dim entries; a block that
	 * decodes holds at most len / 8 of them, which is all decode may write:
	 * exactly that much memory makes ASan catch a write past it.
	 */
	lim.idx_copy = malloc((len / 8 + 1) * sizeof(uint32_t));
	FUZZ_ASSERT(lim.idx_copy);
	ret = hetsgd_block_decode(buf, len, &lim, &out);
	if (ret == 0)
		check_decoded(buf, len, &lim, &out);
	else
		FUZZ_ASSERT(ret == -EBADMSG || ret == -EPROTO);
	free(lim.idx_copy);
	free(buf);
	return 0;
}
