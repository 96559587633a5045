/*
 * Fuzz the verbs connection proof (transport/conn_auth.c): the private
 * data of an rdma_cm request or answer, which anyone on the fabric can
 * send to a listening rank.
 *
 * Input: one control byte (bit 0: parse as an answer, else a request;
 * bit 1: fuzz the data as given, else re-MAC it with the job key so the
 * fuzzer reaches the fields past the proof), then the private data.  The
 * parser must stay inside the buffer, return one of its documented codes,
 * accept only data proven with the key, and give back what was packed.
 */
#include "fuzz.h"

#include <errno.h>
#include <string.h>

#include "transport_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t key[16], nonce0[16] = "fuzz-connect-key";
	struct tp_conn in, out;
	uint8_t *buf, packed[TP_CONN_LEN];
	size_t len;
	int type, ret;

	if (size < 1)
		return 0;
	FUZZ_ASSERT(tp_job_key(NULL, nonce0, key) == 0);
	type = data[0] & 1 ? TP_CONN_REP : TP_CONN_REQ;
	len = size - 1;
	buf = malloc(len ? len : 1);
	FUZZ_ASSERT(buf);
	memcpy(buf, data + 1, len);
	if ((data[0] & 2) && len >= TP_CONN_LEN && buf[3] >= TP_CONN_REQ && buf[3] <= TP_CONN_ABORT) {
		/* Re-prove the fields with the key, as a rank of the job would. */
		memset(&in, 0, sizeof(in));
		in.type = buf[3];
		memcpy(&in.rank, buf + 4, 4);
		memcpy(&in.target, buf + 8, 4);
		memcpy(&in.rkey, buf + 12, 4);
		memcpy(&in.ring, buf + 16, 8);
		memcpy(&in.nonce, buf + 24, 8);
		tp_conn_pack(key, &in, 77, 5, packed);
		memcpy(buf, packed, TP_CONN_LEN);
	}
	ret = tp_conn_parse(key, buf, len, type, 77, 5, &out);
	FUZZ_ASSERT(ret == 0 || ret == -EBADMSG || ret == -EPROTO || ret == -EACCES);
	if (ret == 0) {
		FUZZ_ASSERT(len >= TP_CONN_LEN);
		FUZZ_ASSERT(out.type == type || (type == TP_CONN_REQ && out.type == TP_CONN_ABORT));
		/* What parses packs back to the same bytes. */
		tp_conn_pack(key, &out, 77, 5, packed);
		FUZZ_ASSERT(!memcmp(packed, buf, TP_CONN_LEN));
	}
	free(buf);
	return 0;
}
