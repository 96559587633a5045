/*
 * Fuzz hetsgd_idx_load(), the Fashion-MNIST reader: two files, images
 * (magic 0x803) and labels (0x801), each plain or gzip.
 *
 * Input: a 2-byte little-endian length L, then L bytes of the images file
 * (fewer if the input ends first), then the labels file.  gzip seeds in
 * the corpus keep the inflate path under test; a data set that loads must
 * hold n x p pixels in [0, 1] and labels below 10.
 */
#include "fuzz.h"

#include "hetsgd_algo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hetsgd_dataset ds = { 0 };
	char ipath[64], lpath[64];
	size_t il;
	int fi, fl;
	uint64_t i;

	if (size < 2)
		return 0;
	il = (size_t)(data[0] | data[1] << 8);
	data += 2;
	size -= 2;
	if (il > size)
		il = size;
	fi = fuzz_file(data, il, ipath, sizeof(ipath));
	fl = fuzz_file(data + il, size - il, lpath, sizeof(lpath));
	if (hetsgd_idx_load(ipath, lpath, &ds) == 0) {
		FUZZ_ASSERT(ds.n > 0 && ds.p > 0 && ds.classes == 10);
		FUZZ_ASSERT(ds.dense && ds.labels && !ds.row_ptr);
		FUZZ_ASSERT(hetsgd_dataset_nnz(&ds) == ds.n * ds.p);
		for (i = 0; i < ds.n * ds.p; i++)
			FUZZ_ASSERT(ds.dense[i] >= 0.0f && ds.dense[i] <= 1.0f);
		for (i = 0; i < ds.n; i++)
			FUZZ_ASSERT(ds.labels[i] >= 0 && ds.labels[i] < 10);
		hetsgd_dataset_free(&ds);
	}
	close(fl);
	close(fi);
	return 0;
}
