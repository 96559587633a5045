/*
 * Fuzz hetsgd_ckpt_parse(): the input is the checkpoint file.  A
 * checkpoint that parses must account for every byte of the input, and
 * its model must be exactly the file's values.
 */
#include "fuzz.h"

#include <string.h>

#include "hetsgd_algo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hetsgd_ckpt ck;

	if (hetsgd_ckpt_parse(data, size, "fuzz", &ck) == 0) {
		FUZZ_ASSERT(ck.x && ck.workers && ck.n > 0 && ck.d > 0);
		FUZZ_ASSERT(size == 128 + 4 * ck.d + 80 * (uint64_t)ck.n + ck.config_len + ck.extra_len);
		FUZZ_ASSERT(!memcmp(ck.x, data + 128, 4 * ck.d));
		FUZZ_ASSERT(ck.config[ck.config_len] == 0 && ck.extra[ck.extra_len] == 0);
		FUZZ_ASSERT(strlen(ck.config) == ck.config_len);
		hetsgd_ckpt_free(&ck);
	} else {
		FUZZ_ASSERT(!ck.x && !ck.workers && !ck.config && !ck.extra);
	}
	return 0;
}
