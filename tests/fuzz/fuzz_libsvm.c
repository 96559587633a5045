/*
 * Fuzz hetsgd_libsvm_load() and hetsgd_libsvm_load_many(): the input is
 * the file, plain or gzip (zlib detects which from the content, as it
 * does for users' files).  A file that loads must give a consistent CSR
 * data set.  Then the same text cut in two at a line break and loaded as
 * two workers' files must give the same rows, classes and p as the whole:
 * that is what load_many promises ("as one file would with itself").
 */
#include "fuzz.h"

#include <string.h>

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

/* Row r of part equals row base + r of whole, label value included. */
static void check_part(const struct hetsgd_dataset *whole, uint64_t base,
		       const struct hetsgd_dataset *part)
{
	uint64_t r, n;

	check_dataset(part);
	FUZZ_ASSERT(part->p == whole->p && part->classes == whole->classes);
	FUZZ_ASSERT(!memcmp(part->label_values, whole->label_values,
			    whole->classes * sizeof(double)));
	FUZZ_ASSERT(base + part->n <= whole->n);
	for (r = 0; r < part->n; r++) {
		const uint64_t *wr = whole->row_ptr + base + r, *pr = part->row_ptr + r;

		FUZZ_ASSERT(part->labels[r] == whole->labels[base + r]);
		n = pr[1] - pr[0];
		FUZZ_ASSERT(n == wr[1] - wr[0]);
		FUZZ_ASSERT(!memcmp(part->col + pr[0], whole->col + wr[0], n * sizeof(uint32_t)));
		FUZZ_ASSERT(!memcmp(part->val + pr[0], whole->val + wr[0], n * sizeof(float)));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hetsgd_dataset ds = { 0 }, two[2];
	char path[2][64];
	const char *paths[2] = { path[0], path[1] };
	const uint8_t *nl;
	size_t cut;
	int fd, fd2[2], ok, ok2;

	fd = fuzz_file(data, size, path[0], sizeof(path[0]));
	ok = hetsgd_libsvm_load(path[0], 0, &ds) == 0;
	close(fd);
	if (ok)
		check_dataset(&ds);

	/*
	 * Cut after the last line break of the first half.  Not when the
	 * second half starts like gzip: zlib would inflate it and ignore
	 * whatever follows the gzip stream, which the whole file, read as
	 * text, never does.
	 */
	nl = size > 1 ? memrchr(data, '\n', size / 2) : NULL;
	cut = nl ? (size_t)(nl - data) + 1 : 0;
	if (nl && !(size - cut >= 2 && data[cut] == 0x1f && data[cut + 1] == 0x8b)) {
		fd2[0] = fuzz_file(data, cut, path[0], sizeof(path[0]));
		fd2[1] = fuzz_file(data + cut, size - cut, path[1], sizeof(path[1]));
		ok2 = hetsgd_libsvm_load_many(paths, 2, 0, two) == 0;
		close(fd2[0]);
		close(fd2[1]);
		if (ok2) {
			/* both halves parse, so the whole does */
			FUZZ_ASSERT(ok);
			check_part(&ds, 0, &two[0]);
			check_part(&ds, two[0].n, &two[1]);
			FUZZ_ASSERT(two[0].n + two[1].n == ds.n);
			hetsgd_dataset_free(&two[0]);
			hetsgd_dataset_free(&two[1]);
		}
	}
	if (ok)
		hetsgd_dataset_free(&ds);
	return 0;
}
