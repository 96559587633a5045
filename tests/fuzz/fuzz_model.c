/*
 * Fuzz hetsgd_model_load(): the input is the model file.  A model that
 * loads must be exactly the file's values, all of them.
 */
#include "fuzz.h"

#include <string.h>

#include "hetsgd_algo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hetsgd_model_info info;
	float *x = NULL;
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof(path));

	if (hetsgd_model_load(path, &info, &x) == 0) {
		FUZZ_ASSERT(x && info.d > 0 && size == 64 + 4 * info.d);
		FUZZ_ASSERT(!memcmp(x, data + 64, 4 * info.d));
		free(x);
	} else {
		FUZZ_ASSERT(!x);
	}
	close(fd);
	return 0;
}
