/*
 * Fuzz the TCP rendezvous' message parsers (transport/boot_tcp_wire.c):
 * what rank 0 reads from any stranger who connects (HELLO, PROOF, a
 * collective's REQ) and what a rank reads back from whoever answers at
 * rank 0's address (CHAL, WELCOME, REP).
 *
 * Input: one selector byte (which parser), then the message.  Each parser
 * must stay inside the buffer (the message is a heap copy of exactly its
 * length), return one of its documented codes, and, on success, keep
 * its promises: a HELLO or CHAL is 32 bytes, a proof verifies only for the
 * key that made it.
 */
#include "fuzz.h"

#include <errno.h>
#include <string.h>

#include "transport_priv.h"

static int known(int ret)
{
	return ret == 0 || ret == -EAGAIN || ret == -EPROTO || ret == -EPROTONOSUPPORT || ret == -EACCES;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t key[16] = "fuzz-rendezvous!";
	uint8_t hello[32] = { 'H', 'G', 'T', 'B', 1 }, chal[32] = { 'H', 'G', 'T', 'B', 1 };
	struct hetsgd_boot_tcp_hello h;
	struct hetsgd_boot_tcp_chal c;
	struct hetsgd_boot_tcp_welcome w;
	struct hetsgd_boot_tcp_req q;
	struct hetsgd_boot_tcp_rep r;
	uint8_t *buf;
	size_t len;
	int ret = 0;

	if (size < 1)
		return 0;
	len = size - 1;
	buf = malloc(len ? len : 1);
	FUZZ_ASSERT(buf);
	memcpy(buf, data + 1, len);
	switch (data[0] % 6) {
	case 0:
		ret = hetsgd_boot_tcp_parse_hello(buf, len, &h);
		break;
	case 1:
		ret = hetsgd_boot_tcp_parse_chal(buf, len, &c);
		break;
	case 2:
		ret = hetsgd_boot_tcp_parse_proof(buf, len, key, hello, chal);
		/* 8 random bytes must not pass as the MAC of this exchange */
		FUZZ_ASSERT(ret != 0 || len >= 8);
		break;
	case 3:
		ret = hetsgd_boot_tcp_parse_welcome(buf, len, &w);
		break;
	case 4:
		ret = hetsgd_boot_tcp_parse_req(buf, len, &q);
		break;
	default:
		ret = hetsgd_boot_tcp_parse_rep(buf, len, &r);
		break;
	}
	FUZZ_ASSERT(known(ret));
	/* A whole message never needs more bytes than it was given. */
	FUZZ_ASSERT(ret != 0 || len > 0);
	free(buf);
	return 0;
}
