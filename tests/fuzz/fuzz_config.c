/*
 * Fuzz the config-file parser of hetsgd-train (--config FILE: lines
 * "name = value", # comments), with the checks for contradictions that
 * run before any data is touched.  The input is the file.  Links
 * apps/train_opts.c, the option table and its parser.
 */
#include "fuzz.h"

#include <string.h>

#include "../../apps/train_opts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[1024];
	int fd = fuzz_file(data, size, path, sizeof(path));

	err[0] = 0;
	if (train_config_check(path, err, sizeof(err)))
		FUZZ_ASSERT(err[0] && memchr(err, 0, sizeof(err)));
	close(fd);
	return 0;
}
