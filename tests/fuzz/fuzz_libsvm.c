/*
 * Fuzz hetsgd_libsvm_load(): the input is the file, plain or gzip (zlib
 * detects which from the content, as it does for users' files).  A file
 * that loads must give a consistent CSR data set.
 */
#include "fuzz.h"

#include "hetsgd_algo.h"

static void check_dataset(const struct hetsgd_dataset *ds)
{
	uint64_t i, k;

	FUZZ_ASSERT(ds->n > 0 && ds->classes >= 1 && ds->classes <= HETSGD_MAX_CLASSES);
	FUZZ_ASSERT(!ds->dense && ds->row_ptr && ds->col && ds->val && ds->labels && ds->label_values);
	FUZZ_ASSERT(ds->row_ptr[0] == 0);
	for (i = 0; i < ds->n; i++) {
		FUZZ_ASSERT(ds->row_ptr[i] <= ds->row_ptr[i + 1]);
		for (k = ds->row_ptr[i]; k < ds->row_ptr[i + 1]; k++) {
			FUZZ_ASSERT(ds->col[k] < ds->p);
			FUZZ_ASSERT(k == ds->row_ptr[i] || ds->col[k] > ds->col[k - 1]);
		}
		FUZZ_ASSERT(ds->labels[i] >= 0 && (uint32_t)ds->labels[i] < ds->classes);
	}
	FUZZ_ASSERT(hetsgd_dataset_nnz(ds) == ds->row_ptr[ds->n]);
	for (k = 1; k < ds->classes; k++)
		FUZZ_ASSERT(ds->label_values[k - 1] < ds->label_values[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hetsgd_dataset ds = { 0 };
	char path[64];
	int fd = fuzz_file(data, size, path, sizeof(path));

	if (hetsgd_libsvm_load(path, 0, &ds) == 0) {
		check_dataset(&ds);
		hetsgd_dataset_free(&ds);
	}
	close(fd);
	return 0;
}
