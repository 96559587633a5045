/*
 * Data loaders, generators and splits.  Files are written to a mkdtemp()
 * folder that each test's fini removes.
 */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <zlib.h>

#include "hetsgd_algo.h"

static char tmpdir[256];

static void mk_tmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/hetsgd-data-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	cr_assert(mkdtemp(tmpdir), "mkdtemp: %s", strerror(errno));
}

static void rm_tmp(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char path[512];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(tmpdir);
}

TestSuite(data, .init = mk_tmp, .fini = rm_tmp, .timeout = 60);

static char *tpath(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static const char *write_bytes(const char *name, const void *buf, size_t len,
			       int gz)
{
	const char *path = tpath(name);

	if (gz) {
		gzFile f = gzopen(path, "wb");

		cr_assert(f);
		if (len)
			cr_assert_eq(gzwrite(f, buf, (unsigned)len), (int)len);
		cr_assert_eq(gzclose(f), Z_OK);
	} else {
		FILE *f = fopen(path, "wb");

		cr_assert(f);
		cr_assert_eq(fwrite(buf, 1, len, f), len);
		cr_assert_eq(fclose(f), 0);
	}
	return path;
}

static const char *write_text(const char *name, const char *text)
{
	return write_bytes(name, text, strlen(text), 0);
}

/* ------------------------------------------------------------ LIBSVM */

static const char small_svm[] =
	"# a comment line\n"
	"+1 1:0.5 3:-2 10:1e3\n"
	"-1 2:4   # trailing comment\n"
	"\n"
	"   \t\n"
	"1.0 5:0.25\r\n"
	"-1";

static void check_small(const struct hetsgd_dataset *ds, uint32_t p)
{
	static const uint64_t rp[] = { 0, 3, 4, 5, 5 };
	static const uint32_t col[] = { 0, 2, 9, 1, 4 };
	static const float val[] = { 0.5f, -2.0f, 1000.0f, 4.0f, 0.25f };
	static const int32_t lab[] = { 1, 0, 1, 0 };
	int i;

	cr_assert_eq(ds->n, 4);
	cr_assert_eq(ds->p, p);
	cr_assert_eq(ds->classes, 2);
	cr_assert_null(ds->dense);
	cr_assert_null(ds->targets);
	cr_assert_eq(ds->label_values[0], -1.0);
	cr_assert_eq(ds->label_values[1], 1.0);
	cr_assert_eq(hetsgd_dataset_nnz(ds), 5);
	for (i = 0; i < 5; i++) {
		cr_assert_eq(ds->row_ptr[i], rp[i]);
		cr_assert_eq(ds->col[i], col[i]);
		cr_assert_eq(ds->val[i], val[i]);
	}
	for (i = 0; i < 4; i++)
		cr_assert_eq(ds->labels[i], lab[i]);
}

Test(data, libsvm_roundtrip)
{
	struct hetsgd_dataset ds = { 0 };
	const char *path = write_text("small.svm", small_svm);

	cr_assert_eq(hetsgd_libsvm_load(path, 0, &ds), 0, "%s", hetsgd_algo_errmsg());
	check_small(&ds, 10);
	hetsgd_dataset_free(&ds);
	cr_assert_null(ds.row_ptr);

	cr_assert_eq(hetsgd_libsvm_load(path, 20, &ds), 0, "%s", hetsgd_algo_errmsg());
	check_small(&ds, 20);
	hetsgd_dataset_free(&ds);

	ds.n = 777;
	cr_assert_eq(hetsgd_libsvm_load(path, 5, &ds), -EBADMSG);
	cr_assert(strstr(hetsgd_algo_errmsg(), "small.svm:2:"), "%s", hetsgd_algo_errmsg());
	cr_assert(strstr(hetsgd_algo_errmsg(), "exceeds"), "%s", hetsgd_algo_errmsg());
	cr_assert_eq(ds.n, 777, "output written on failure");
}

Test(data, libsvm_label_maps)
{
	struct hetsgd_dataset ds = { 0 };

	cr_assert_eq(hetsgd_libsvm_load(write_text("a.svm", "0 1:1\n1 1:2\n1\n"), 0, &ds), 0);
	cr_assert_eq(ds.classes, 2);
	cr_assert_eq(ds.labels[0], 0);
	cr_assert_eq(ds.labels[1], 1);
	cr_assert_eq(ds.labels[2], 1);
	cr_assert_eq(ds.label_values[0], 0.0);
	hetsgd_dataset_free(&ds);

	/* only +1 present: still a binary problem */
	cr_assert_eq(hetsgd_libsvm_load(write_text("b.svm", "+1 2:1\n"), 0, &ds), 0);
	cr_assert_eq(ds.classes, 2);
	cr_assert_eq(ds.labels[0], 1);
	cr_assert_eq(ds.p, 2);
	hetsgd_dataset_free(&ds);

	/* LIBSVM multi-class, 1-based */
	cr_assert_eq(hetsgd_libsvm_load(write_text("c.svm", "3 1:1\n1 1:1\n2 1:1\n3 2:1\n7 1:1\n"), 0, &ds), 0);
	cr_assert_eq(ds.classes, 4);
	cr_assert_eq(ds.labels[0], 2);
	cr_assert_eq(ds.labels[1], 0);
	cr_assert_eq(ds.labels[2], 1);
	cr_assert_eq(ds.labels[3], 2);
	cr_assert_eq(ds.labels[4], 3);
	cr_assert_eq(ds.label_values[3], 7.0);
	hetsgd_dataset_free(&ds);
}

struct bad_case {
	const char *line;
	const char *what;
	int err;
};

static const struct bad_case bad_cases[] = {
	{ "1 1:abc", "non-numeric value", -EBADMSG },
	{ "1 1:2x", "non-numeric value", -EBADMSG },
	{ "1 1:", "value missing", -EBADMSG },
	{ "1 0:1", "index 0", -EBADMSG },
	{ "1 3:1 2:1", "decreasing index", -EBADMSG },
	{ "1 3:1 3:1", "decreasing index", -EBADMSG },
	{ "1 31", "missing colon", -EBADMSG },
	{ "1 2:1 5", "missing colon", -EBADMSG },
	{ "abc 1:1", "label 'abc' is not a number", -EBADMSG },
	{ "1:1 2:1", "label missing", -EBADMSG },
	{ "1.5 1:1", "is not an integer", -EBADMSG },
	{ "1e300 1:1", "out of range", -EOVERFLOW },
	{ "1 1:1e999", "value overflow", -EOVERFLOW },
	{ "1 1:1e39", "value overflow", -EOVERFLOW },
	{ "1 99999999999:1", "index overflow", -EOVERFLOW },
	{ "1 999999999999999999999999:1", "index overflow", -EOVERFLOW },
	{ "1 1:nan", "NaN/inf", -EBADMSG },
	{ "1 1:-inf", "NaN/inf", -EBADMSG },
	{ "1 x:1", "index in 'x:1' is not a number", -EBADMSG },
	{ "1 -2:1", "is not a number", -EBADMSG },
	{ "1 2a:1", "is not a number", -EBADMSG },
	{ "1 :1", "is not a number", -EBADMSG },
	{ "nan 1:1", "out of range", -EOVERFLOW },
};

Test(data, libsvm_bad_lines)
{
	size_t i;

	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct hetsgd_dataset ds = { .n = 12345 };
		char text[256];
		const char *path;
		int ret;

		snprintf(text, sizeof(text), "+1 1:1 2:2\n%s\n-1 1:1\n", bad_cases[i].line);
		path = write_text("bad.svm", text);
		ret = hetsgd_libsvm_load(path, 0, &ds);
		cr_assert_eq(ret, bad_cases[i].err, "'%s': got %d (%s)", bad_cases[i].line,
			     ret, hetsgd_algo_errmsg());
		cr_assert(strstr(hetsgd_algo_errmsg(), "bad.svm:2: "),
			  "'%s': %s", bad_cases[i].line, hetsgd_algo_errmsg());
		cr_assert(strstr(hetsgd_algo_errmsg(), bad_cases[i].what),
			  "'%s': want '%s' in: %s", bad_cases[i].line,
			  bad_cases[i].what, hetsgd_algo_errmsg());
		cr_assert_eq(ds.n, 12345);
	}
}

Test(data, libsvm_too_many_classes)
{
	uint32_t k, lines = HETSGD_MAX_CLASSES + 1;
	size_t cap = (size_t)lines * 16, len = 0;
	char *text = malloc(cap);
	struct hetsgd_dataset ds = { 0 };
	char want[64];

	cr_assert(text);
	for (k = 0; k < lines; k++)
		len += (size_t)snprintf(text + len, cap - len, "%u 1:1\n", k);
	cr_assert_eq(hetsgd_libsvm_load(write_bytes("many.svm", text, len, 1), 0, &ds), -EOVERFLOW);
	snprintf(want, sizeof(want), "many.svm:%u: too many classes", lines);
	cr_assert(strstr(hetsgd_algo_errmsg(), want), "%s", hetsgd_algo_errmsg());
	/* one fewer class loads */
	len = 0;
	for (k = 0; k < lines - 1; k++)
		len += (size_t)snprintf(text + len, cap - len, "%u 1:1\n", k);
	cr_assert_eq(hetsgd_libsvm_load(write_bytes("many.svm", text, len, 1), 0, &ds), 0,
		     "%s", hetsgd_algo_errmsg());
	cr_assert_eq(ds.classes, HETSGD_MAX_CLASSES);
	cr_assert_eq(ds.labels[lines - 2], (int32_t)lines - 2);
	hetsgd_dataset_free(&ds);
	free(text);
}

Test(data, libsvm_odd_files)
{
	struct hetsgd_dataset ds = { 0 };
	static const char nul[] = "1 1:1\n1 1:1\0 2:3\n";
	int ret;

	cr_assert_eq(hetsgd_libsvm_load(write_text("empty.svm", "# nothing\n\n"), 0, &ds), -EBADMSG);
	cr_assert(strstr(hetsgd_algo_errmsg(), "no samples"), "%s", hetsgd_algo_errmsg());
	cr_assert_eq(hetsgd_libsvm_load(write_text("empty2.svm", ""), 0, &ds), -EBADMSG);

	cr_assert_eq(hetsgd_libsvm_load(write_bytes("nul.svm", nul, sizeof(nul) - 1, 0), 0, &ds), -EBADMSG);
	cr_assert(strstr(hetsgd_algo_errmsg(), "nul.svm:2: NUL byte"), "%s", hetsgd_algo_errmsg());

	ret = hetsgd_libsvm_load(tpath("missing.svm"), 0, &ds);
	cr_assert_eq(ret, -ENOENT);
	cr_assert(strstr(hetsgd_algo_errmsg(), "missing.svm"), "%s", hetsgd_algo_errmsg());

	/* a line with only a label is a sample with no features */
	cr_assert_eq(hetsgd_libsvm_load(write_text("nofeat.svm", "1\n-1\n"), 0, &ds), 0);
	cr_assert_eq(ds.n, 2);
	cr_assert_eq(ds.p, 0);
	cr_assert_eq(hetsgd_dataset_nnz(&ds), 0);
	hetsgd_dataset_free(&ds);
}

Test(data, libsvm_gzip)
{
	struct hetsgd_dataset ds = { 0 };
	const char *path = write_bytes("small.svm.gz", small_svm, strlen(small_svm), 1);

	cr_assert_eq(hetsgd_libsvm_load(path, 0, &ds), 0, "%s", hetsgd_algo_errmsg());
	check_small(&ds, 10);
	hetsgd_dataset_free(&ds);
}

Test(data, libsvm_truncated_gzip)
{
	struct hetsgd_dataset ds = { 0 };
	char *text = malloc(1 << 20), *gz;
	size_t len = 0;
	FILE *f;
	long sz;
	int k;

	cr_assert(text);
	for (k = 0; len < 900000; k++)
		len += (size_t)sprintf(text + len, "%d 1:%d.25 7:%d\n", k % 2 ? 1 : -1, k, k);
	write_bytes("t.svm.gz", text, len, 1);
	f = fopen(tpath("t.svm.gz"), "rb");
	cr_assert(f);
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	rewind(f);
	gz = malloc((size_t)sz);
	cr_assert_eq(fread(gz, 1, (size_t)sz, f), (size_t)sz);
	fclose(f);
	write_bytes("cut.svm.gz", gz, (size_t)sz / 2, 0);
	cr_assert_eq(hetsgd_libsvm_load(tpath("cut.svm.gz"), 0, &ds), -EIO);
	cr_assert(strstr(hetsgd_algo_errmsg(), "cut.svm.gz"), "%s", hetsgd_algo_errmsg());
	free(gz);
	free(text);
}

Test(data, libsvm_long_line)
{
	struct hetsgd_dataset ds = { 0 };
	size_t cap = 2 << 20, len = 0;
	char *text = malloc(cap);
	uint32_t k, nf = 0;

	cr_assert(text);
	len += (size_t)sprintf(text, "-1 1:1\n+1");
	for (k = 1; len < (1u << 20) + 100; k += 2, nf++)
		len += (size_t)sprintf(text + len, " %u:%u", k, k % 1000);
	len += (size_t)sprintf(text + len, "\n-1 3:3\n");
	cr_assert_eq(hetsgd_libsvm_load(write_bytes("long.svm", text, len, 0), 0, &ds), 0,
		     "%s", hetsgd_algo_errmsg());
	cr_assert_eq(ds.n, 3);
	cr_assert_eq(ds.row_ptr[2] - ds.row_ptr[1], nf);
	cr_assert_eq(ds.p, 2 * nf - 1);
	cr_assert_eq(ds.col[ds.row_ptr[2] - 1], 2 * nf - 2);
	cr_assert_eq(ds.val[ds.row_ptr[2] - 1], (float)((2 * nf - 1) % 1000));
	cr_assert_eq(ds.col[ds.row_ptr[2]], 2);
	hetsgd_dataset_free(&ds);
	free(text);
}

/* Random bytes and mutated files: any result but a crash or a leak. */
Test(data, libsvm_garbage)
{
	uint64_t s = 42;
	unsigned char buf[4096];
	int round, i, ok = 0;

	for (round = 0; round < 200; round++) {
		struct hetsgd_dataset ds = { 0 };
		size_t len = (size_t)(round * 37 % 4000) + 1;

		if (round % 2) {
			for (i = 0; i < (int)len; i++) {
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				buf[i] = (unsigned char)(s >> 56);
			}
		} else {
			static const char alpha[] = "0123456789:.+-e \n#\tabn";

			for (i = 0; i < (int)len; i++) {
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				buf[i] = (unsigned char)alpha[(s >> 40) % (sizeof(alpha) - 1)];
			}
		}
		if (hetsgd_libsvm_load(write_bytes("g.svm", buf, len, round % 3 == 0), 0, &ds) == 0) {
			ok++;
			cr_assert_eq(ds.row_ptr[ds.n], hetsgd_dataset_nnz(&ds));
			hetsgd_dataset_free(&ds);
		} else {
			cr_assert(strlen(hetsgd_algo_errmsg()) > 0);
		}
	}
	(void)ok;
}

Test(data, subset)
{
	struct hetsgd_dataset ds = { 0 }, sub = { 0 };
	uint64_t idx[] = { 2, 0, 2 };

	cr_assert_eq(hetsgd_libsvm_load(write_text("s.svm", small_svm), 0, &ds), 0);
	cr_assert_eq(hetsgd_dataset_subset(&ds, idx, 3, &sub), 0);
	cr_assert_eq(sub.n, 3);
	cr_assert_eq(sub.row_ptr[3], 1 + 3 + 1);
	cr_assert_eq(sub.col[0], 4);
	cr_assert_eq(sub.val[1], 0.5f);
	cr_assert_eq(sub.labels[1], 1);
	cr_assert_eq(sub.label_values[0], -1.0);
	hetsgd_dataset_free(&sub);
	idx[0] = 4;
	cr_assert_eq(hetsgd_dataset_subset(&ds, idx, 3, &sub), -EINVAL);
	hetsgd_dataset_free(&ds);

	cr_assert_eq(hetsgd_synth_classification(10, 3, 2, 1, &ds), 0);
	idx[0] = 9;
	cr_assert_eq(hetsgd_dataset_subset(&ds, idx, 3, &sub), 0);
	cr_assert_eq(memcmp(sub.dense, ds.dense + 27, 3 * sizeof(float)), 0);
	cr_assert_eq(memcmp(sub.dense + 3, ds.dense, 3 * sizeof(float)), 0);
	cr_assert_eq(sub.labels[0], ds.labels[9]);
	hetsgd_dataset_free(&sub);
	hetsgd_dataset_free(&ds);
}

/* ------------------------------------------------------------ IDX */

static size_t idx_images(unsigned char *b, uint32_t magic, uint32_t n,
			 uint32_t rows, uint32_t cols, size_t pixels)
{
	uint32_t h[4] = { magic, n, rows, cols };
	size_t i;
	int k;

	for (k = 0; k < 4; k++) {
		b[4 * k] = (unsigned char)(h[k] >> 24);
		b[4 * k + 1] = (unsigned char)(h[k] >> 16);
		b[4 * k + 2] = (unsigned char)(h[k] >> 8);
		b[4 * k + 3] = (unsigned char)h[k];
	}
	for (i = 0; i < pixels; i++)
		b[16 + i] = (unsigned char)(i * 37 + 3);
	return 16 + pixels;
}

static size_t idx_labels(unsigned char *b, uint32_t magic, uint32_t n,
			 const unsigned char *lab, size_t count)
{
	b[0] = (unsigned char)(magic >> 24);
	b[1] = (unsigned char)(magic >> 16);
	b[2] = (unsigned char)(magic >> 8);
	b[3] = (unsigned char)magic;
	b[4] = (unsigned char)(n >> 24);
	b[5] = (unsigned char)(n >> 16);
	b[6] = (unsigned char)(n >> 8);
	b[7] = (unsigned char)n;
	memcpy(b + 8, lab, count);
	return 8 + count;
}

static const unsigned char lab3[] = { 9, 0, 4 };

Test(data, idx_roundtrip)
{
	unsigned char img[64], lab[16];
	size_t li, ll;
	int gz, i;

	li = idx_images(img, 0x803, 3, 2, 3, 18);
	ll = idx_labels(lab, 0x801, 3, lab3, 3);
	for (gz = 0; gz < 2; gz++) {
		struct hetsgd_dataset ds = { 0 };
		char ip[512];

		snprintf(ip, sizeof(ip), "%s", write_bytes(gz ? "i.gz" : "i", img, li, gz));
		cr_assert_eq(hetsgd_idx_load(ip, write_bytes(gz ? "l.gz" : "l", lab, ll, gz), &ds),
			     0, "%s", hetsgd_algo_errmsg());
		cr_assert_eq(ds.n, 3);
		cr_assert_eq(ds.p, 6);
		cr_assert_eq(ds.classes, 10);
		cr_assert_null(ds.row_ptr);
		cr_assert_null(ds.label_values);
		for (i = 0; i < 18; i++)
			cr_assert_eq(ds.dense[i], (float)img[16 + i] / 255.0f, "pixel %d", i);
		for (i = 0; i < 3; i++)
			cr_assert_eq(ds.labels[i], lab3[i]);
		hetsgd_dataset_free(&ds);
	}
}

static void idx_expect(const unsigned char *img, size_t li, int igz,
		       const unsigned char *lab, size_t ll, int err,
		       const char *what)
{
	struct hetsgd_dataset ds = { .n = 999 };
	char ip[512];

	snprintf(ip, sizeof(ip), "%s", write_bytes("bi", img, li, igz));
	cr_assert_eq(hetsgd_idx_load(ip, write_bytes("bl", lab, ll, 0), &ds), err,
		     "want '%s': %s", what, hetsgd_algo_errmsg());
	cr_assert(strstr(hetsgd_algo_errmsg(), what), "want '%s': %s", what,
		  hetsgd_algo_errmsg());
	cr_assert_eq(ds.n, 999);
}

Test(data, idx_errors)
{
	unsigned char img[64], lab[16], bad[] = { 9, 10, 1 };
	size_t li = idx_images(img, 0x803, 3, 2, 3, 18);
	size_t ll = idx_labels(lab, 0x801, 3, lab3, 3);
	unsigned char tmp[64];
	struct hetsgd_dataset ds = { 0 };

	idx_images(tmp, 0x804, 3, 2, 3, 18);
	idx_expect(tmp, li, 0, lab, ll, -EBADMSG, "bad IDX magic 0x00000804");
	idx_expect(img, li, 0, tmp, ll, -EBADMSG, "bad IDX magic");	/* labels given images */
	idx_expect(img, li - 1, 0, lab, ll, -EBADMSG, "truncated: 17 of 18 pixel bytes");
	idx_expect(img, li - 1, 1, lab, ll, -EBADMSG, "truncated");
	idx_expect(img, 10, 0, lab, ll, -EBADMSG, "truncated IDX header");
	idx_expect(img, li, 0, lab, ll - 1, -EBADMSG, "truncated: 2 of 3 labels");
	idx_expect(img, li, 0, lab, 7, -EBADMSG, "truncated IDX header");
	idx_labels(tmp, 0x801, 4, lab3, 3);
	idx_expect(img, li, 0, tmp, 11, -EBADMSG, "holds 3 images but");
	idx_labels(tmp, 0x801, 3, bad, 3);
	idx_expect(img, li, 0, tmp, 11, -EBADMSG, "label 10 of sample 1 is not below 10");
	idx_images(tmp, 0x803, 3, 2, 3, 18);
	idx_expect(tmp, li + 1, 0, lab, ll, -EBADMSG, "trailing bytes");
	idx_images(tmp, 0x803, 3, 0, 3, 0);
	idx_expect(tmp, 16, 0, lab, ll, -EBADMSG, "bad IDX dimensions");

	/* a damaged header announcing 16 TB gives "truncated", not ENOMEM */
	idx_images(tmp, 0x803, 0xffffffffu, 4000, 1000, 18);
	idx_labels(lab, 0x801, 0xffffffffu, lab3, 3);
	idx_expect(tmp, li, 0, lab, ll, -EBADMSG, "truncated: 18 of 17179869180000000 pixel bytes");

	cr_assert_eq(hetsgd_idx_load(tpath("nope"), tpath("nope2"), &ds), -ENOENT);
	cr_assert(strstr(hetsgd_algo_errmsg(), "nope"));
}

/* Random headers and bodies: any result but a crash or a leak. */
Test(data, idx_garbage)
{
	unsigned char img[300], lab[40];
	uint64_t s = 7;
	int round, i;

	for (round = 0; round < 300; round++) {
		struct hetsgd_dataset ds = { 0 };
		size_t li = (size_t)(round % 290) + 1, ll = (size_t)(round % 37) + 1;
		char ip[512];

		for (i = 0; i < (int)sizeof(img); i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			img[i] = (unsigned char)(s >> 56);
		}
		for (i = 0; i < (int)sizeof(lab); i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			lab[i] = (unsigned char)((s >> 56) % 12);
		}
		/* keep the magic right half the time so the body gets parsed */
		if (round % 2) {
			idx_images(img, 0x803, (uint32_t)(round % 5), (uint32_t)(round % 7),
				   (uint32_t)(round % 3 + 1), 0);
			idx_labels(lab, 0x801, (uint32_t)(round % 5), lab + 8, 0);
		}
		snprintf(ip, sizeof(ip), "%s", write_bytes("gi", img, li, round % 4 == 1));
		if (hetsgd_idx_load(ip, write_bytes("gl", lab, ll, round % 3 == 1), &ds) == 0) {
			cr_assert(ds.n > 0);
			hetsgd_dataset_free(&ds);
		} else {
			cr_assert(strlen(hetsgd_algo_errmsg()) > 0);
		}
	}
}

/* No tmpdir fixture: a skipped test does not run fini. */
TestSuite(fashion, .timeout = 60);

Test(fashion, env_missing)
{
	const char *dir = NULL;
	const char *nowhere = "/nonexistent/hetsgd-fashion";

	setenv(HETSGD_FASHION_MNIST_ENV, nowhere, 1);
	cr_assert_eq(hetsgd_fashion_mnist_dir(&dir), -ENOENT);
	unsetenv(HETSGD_FASHION_MNIST_ENV);
	cr_assert_null(dir);
	cr_assert(strstr(hetsgd_algo_errmsg(), "dataset-fashion-mnist"), "%s", hetsgd_algo_errmsg());
	cr_assert(strstr(hetsgd_algo_errmsg(), nowhere), "%s", hetsgd_algo_errmsg());
}

Test(fashion, real)
{
	struct hetsgd_dataset tr = { 0 }, te = { 0 };
	const char *dir;
	uint64_t hist[10] = { 0 }, i;
	float mn = 1, mx = 0;

	/* honours HETSGD_FASHION_MNIST_DIR, like the library */
	if (hetsgd_fashion_mnist_dir(&dir))
		cr_skip_test("Fashion-MNIST is not installed (%s): apt-get install dataset-fashion-mnist",
			     hetsgd_algo_errmsg());
	if (!getenv(HETSGD_FASHION_MNIST_ENV))
		cr_assert_str_eq(dir, HETSGD_FASHION_MNIST_DEFAULT_DIR);
	cr_assert_eq(hetsgd_fashion_mnist_load(0, &tr), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(hetsgd_fashion_mnist_load(1, &te), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(tr.n, 60000);
	cr_assert_eq(te.n, 10000);
	cr_assert_eq(tr.p, 784);
	cr_assert_eq(te.p, 784);
	cr_assert_eq(tr.classes, 10);
	for (i = 0; i < tr.n; i++) {
		cr_assert(tr.labels[i] >= 0 && tr.labels[i] < 10);
		hist[tr.labels[i]]++;
	}
	for (i = 0; i < 10; i++)
		cr_assert_eq(hist[i], 6000, "class %llu has %llu", (unsigned long long)i,
			     (unsigned long long)hist[i]);
	for (i = 0; i < te.n * te.p; i++) {
		if (te.dense[i] < mn)
			mn = te.dense[i];
		if (te.dense[i] > mx)
			mx = te.dense[i];
	}
	cr_assert_eq(mn, 0.0f);
	cr_assert_eq(mx, 1.0f);
	hetsgd_dataset_free(&tr);
	hetsgd_dataset_free(&te);
}

/* ------------------------------------------------------------ synth */

Test(data, synth_deterministic)
{
	struct hetsgd_dataset a = { 0 }, b = { 0 }, c = { 0 };
	float w[8];
	uint64_t i;
	uint32_t j;

	cr_assert_eq(hetsgd_synth_classification(500, 8, 4, 7, &a), 0);
	cr_assert_eq(hetsgd_synth_classification(500, 8, 4, 7, &b), 0);
	cr_assert_eq(hetsgd_synth_classification(500, 8, 4, 8, &c), 0);
	cr_assert_eq(memcmp(a.dense, b.dense, 500 * 8 * sizeof(float)), 0);
	cr_assert_eq(memcmp(a.labels, b.labels, 500 * sizeof(int32_t)), 0);
	cr_assert_neq(memcmp(a.dense, c.dense, 500 * 8 * sizeof(float)), 0);
	cr_assert_eq(a.classes, 4);
	for (i = 0; i < 500; i++)
		cr_assert(a.labels[i] >= 0 && a.labels[i] < 4);
	for (i = 0; i < 500 * 8; i++)
		cr_assert(isfinite(a.dense[i]));
	hetsgd_dataset_free(&a);
	hetsgd_dataset_free(&b);
	hetsgd_dataset_free(&c);

	cr_assert_eq(hetsgd_synth_regression(300, 8, 0.0f, 3, &a, w), 0);
	cr_assert_eq(hetsgd_synth_regression(300, 8, 0.0f, 3, &b, NULL), 0);
	cr_assert_eq(hetsgd_synth_regression(300, 8, 0.0f, 4, &c, NULL), 0);
	cr_assert_null(a.labels);
	cr_assert_eq(a.classes, 0);
	cr_assert_eq(memcmp(a.targets, b.targets, 300 * sizeof(float)), 0);
	cr_assert_eq(memcmp(a.dense, b.dense, 300 * 8 * sizeof(float)), 0);
	cr_assert_neq(memcmp(a.targets, c.targets, 300 * sizeof(float)), 0);
	for (i = 0; i < 300; i++) {
		double y = 0;

		for (j = 0; j < 8; j++)
			y += (double)a.dense[i * 8 + j] * w[j];
		cr_assert(fabs(y - a.targets[i]) < 1e-5, "noise-free target %llu", (unsigned long long)i);
	}
	hetsgd_dataset_free(&a);
	hetsgd_dataset_free(&b);
	hetsgd_dataset_free(&c);

	cr_assert_eq(hetsgd_synth_classification(10, 3, 1, 1, &a), -EINVAL);
	cr_assert_eq(hetsgd_synth_regression(10, 3, -1.0f, 1, &a, NULL), -EINVAL);
}

/* ------------------------------------------------------------ splits */

/* Every index exactly once, increasing within a part, no part empty. */
static void check_partition(const struct hetsgd_split *sp, uint64_t n, uint32_t parts,
			    int allow_empty)
{
	char *seen = calloc(n, 1);
	uint64_t i;
	uint32_t k;

	cr_assert(seen);
	cr_assert_eq(sp->parts, parts);
	cr_assert_eq(sp->n, n);
	cr_assert_eq(sp->offset[0], 0);
	cr_assert_eq(sp->offset[parts], n);
	for (k = 0; k < parts; k++) {
		cr_assert(sp->offset[k + 1] >= sp->offset[k]);
		if (!allow_empty)
			cr_assert(sp->offset[k + 1] > sp->offset[k], "part %u empty", k);
		for (i = sp->offset[k]; i < sp->offset[k + 1]; i++) {
			cr_assert(sp->index[i] < n);
			cr_assert_not(seen[sp->index[i]], "index %llu twice",
				      (unsigned long long)sp->index[i]);
			seen[sp->index[i]] = 1;
			if (i > sp->offset[k])
				cr_assert(sp->index[i] > sp->index[i - 1]);
		}
	}
	free(seen);
}

static int same_split(const struct hetsgd_split *a, const struct hetsgd_split *b)
{
	return a->parts == b->parts &&
	       !memcmp(a->offset, b->offset, (a->parts + 1) * sizeof(uint64_t)) &&
	       !memcmp(a->index, b->index, a->n * sizeof(uint64_t));
}

Test(data, split_iid)
{
	struct hetsgd_split a = { 0 }, b = { 0 }, c = { 0 };
	uint32_t k;

	cr_assert_eq(hetsgd_split_iid(1003, 7, 5, &a), 0);
	check_partition(&a, 1003, 7, 0);
	for (k = 0; k < 7; k++) {
		uint64_t sz = a.offset[k + 1] - a.offset[k];

		cr_assert(sz == 143 || sz == 144, "part %u has %llu", k, (unsigned long long)sz);
	}
	cr_assert_eq(hetsgd_split_iid(1003, 7, 5, &b), 0);
	cr_assert_eq(hetsgd_split_iid(1003, 7, 6, &c), 0);
	cr_assert(same_split(&a, &b));
	cr_assert_not(same_split(&a, &c));
	hetsgd_split_free(&a);
	hetsgd_split_free(&b);
	hetsgd_split_free(&c);

	cr_assert_eq(hetsgd_split_iid(5, 5, 1, &a), 0);
	check_partition(&a, 5, 5, 0);
	hetsgd_split_free(&a);
	cr_assert_eq(hetsgd_split_iid(4, 5, 1, &a), -EINVAL);
	cr_assert(strstr(hetsgd_algo_errmsg(), "empty"));
	cr_assert_eq(hetsgd_split_iid(4, 0, 1, &a), -EINVAL);
}

/* Mean over workers of the share of the worker's most frequent class. */
static double skew(const struct hetsgd_split *sp, const int32_t *labels, uint32_t classes)
{
	double total = 0;
	uint64_t cnt[64], i, mx;
	uint32_t k, c;

	for (k = 0; k < sp->parts; k++) {
		memset(cnt, 0, sizeof(cnt));
		for (i = sp->offset[k]; i < sp->offset[k + 1]; i++)
			cnt[labels[sp->index[i]]]++;
		for (mx = 0, c = 0; c < classes; c++)
			if (cnt[c] > mx)
				mx = cnt[c];
		total += (double)mx / (double)(sp->offset[k + 1] - sp->offset[k]);
	}
	return total / sp->parts;
}

Test(data, split_dirichlet)
{
	enum { N = 20000, C = 10, W = 20 };
	int32_t *labels = malloc(N * sizeof(*labels));
	struct hetsgd_split lo = { 0 }, hi = { 0 }, again = { 0 }, other = { 0 };
	double s_lo, s_hi;
	uint64_t i;

	cr_assert(labels);
	for (i = 0; i < N; i++)
		labels[i] = (int32_t)((i * 7) % C);
	cr_assert_eq(hetsgd_split_dirichlet(labels, N, C, W, 0.1, 11, &lo), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(hetsgd_split_dirichlet(labels, N, C, W, 100.0, 11, &hi), 0, "%s", hetsgd_algo_errmsg());
	check_partition(&lo, N, W, 0);
	check_partition(&hi, N, W, 0);
	s_lo = skew(&lo, labels, C);
	s_hi = skew(&hi, labels, C);
	cr_log_info("Dirichlet mean max-class share: alpha 0.1 -> %.3f, alpha 100 -> %.3f", s_lo, s_hi);
	cr_assert(s_lo > 0.5, "alpha 0.1 share %.3f", s_lo);
	cr_assert(s_hi < 0.2, "alpha 100 share %.3f", s_hi);
	cr_assert(s_lo > s_hi + 0.4);

	cr_assert_eq(hetsgd_split_dirichlet(labels, N, C, W, 0.1, 11, &again), 0);
	cr_assert(same_split(&lo, &again));
	cr_assert_eq(hetsgd_split_dirichlet(labels, N, C, W, 0.1, 12, &other), 0);
	cr_assert_not(same_split(&lo, &other));
	hetsgd_split_free(&lo);
	hetsgd_split_free(&hi);
	hetsgd_split_free(&again);
	hetsgd_split_free(&other);

	/* tiny alpha, as many workers as samples: the fix-up fills everyone */
	cr_assert_eq(hetsgd_split_dirichlet(labels, 50, C, 50, 0.001, 3, &lo), 0);
	check_partition(&lo, 50, 50, 0);
	hetsgd_split_free(&lo);
	/* one class only, more workers than classes */
	for (i = 0; i < 100; i++)
		labels[i] = 0;
	cr_assert_eq(hetsgd_split_dirichlet(labels, 100, 1, 9, 0.05, 3, &lo), 0);
	check_partition(&lo, 100, 9, 0);
	hetsgd_split_free(&lo);

	labels[3] = C;
	cr_assert_eq(hetsgd_split_dirichlet(labels, 100, C, 9, 1.0, 3, &lo), -EINVAL);
	cr_assert(strstr(hetsgd_algo_errmsg(), "sample 3"), "%s", hetsgd_algo_errmsg());
	cr_assert_eq(hetsgd_split_dirichlet(labels, 100, C, 9, 0.0, 3, &lo), -EINVAL);
	cr_assert_eq(hetsgd_split_dirichlet(labels, 8, C, 9, 1.0, 3, &lo), -EINVAL);
	free(labels);
}

Test(data, split_holdout)
{
	struct hetsgd_split a = { 0 }, b = { 0 };

	cr_assert_eq(hetsgd_split_holdout(1000, 0.2, 9, &a), 0);
	check_partition(&a, 1000, 2, 0);
	cr_assert_eq(a.offset[2] - a.offset[1], 200);
	cr_assert_eq(hetsgd_split_holdout(1000, 0.2, 9, &b), 0);
	cr_assert(same_split(&a, &b));
	hetsgd_split_free(&a);
	hetsgd_split_free(&b);
	cr_assert_eq(hetsgd_split_holdout(1000, 0.0, 9, &a), 0);
	check_partition(&a, 1000, 2, 1);
	cr_assert_eq(a.offset[1], 1000);
	hetsgd_split_free(&a);
	cr_assert_eq(hetsgd_split_holdout(1000, 1.0, 9, &a), -EINVAL);
	cr_assert_eq(hetsgd_split_holdout(1, 0.9, 9, &a), -EINVAL);
	cr_assert_eq(hetsgd_split_holdout(1000, NAN, 9, &a), -EINVAL);
}

/* One file per worker: p and the classes must agree across the files. */
Test(data, libsvm_load_many)
{
	struct hetsgd_dataset ds[3];
	const char *paths[3];
	char keep[3][512];	/* write_text's path is one static buffer */

	paths[0] = strcpy(keep[0], write_text("w0.svm", "2 1:1\n3 4:1\n"));
	paths[1] = strcpy(keep[1], write_text("w1.svm", "3 2:1\n7 9:1\n3 1:5\n"));
	paths[2] = strcpy(keep[2], write_text("w2.svm", "7 3:1\n"));
	cr_assert_eq(hetsgd_libsvm_load_many(paths, 3, 0, ds), 0, "%s", hetsgd_algo_errmsg());
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(ds[i].p, 9, "file %d: p %u", i, ds[i].p);
		cr_assert_eq(ds[i].classes, 3);
		cr_assert_eq(ds[i].label_values[0], 2.0);
		cr_assert_eq(ds[i].label_values[1], 3.0);
		cr_assert_eq(ds[i].label_values[2], 7.0);
	}
	/* label 3 is class 1 everywhere, 7 is class 2 even in a file without 2 */
	cr_assert_eq(ds[0].labels[0], 0);
	cr_assert_eq(ds[0].labels[1], 1);
	cr_assert_eq(ds[1].labels[0], 1);
	cr_assert_eq(ds[1].labels[1], 2);
	cr_assert_eq(ds[2].labels[0], 2);
	cr_assert_eq(hetsgd_dataset_check(&ds[2]), 0, "%s", hetsgd_algo_errmsg());
	for (int i = 0; i < 3; i++)
		hetsgd_dataset_free(&ds[i]);

	/* binary: a file of only +1 and a file of -1/+1 share {-1, +1} */
	paths[0] = strcpy(keep[0], write_text("b0.svm", "+1 1:1\n"));
	paths[1] = strcpy(keep[1], write_text("b1.svm", "-1 2:1\n+1 1:1\n"));
	cr_assert_eq(hetsgd_libsvm_load_many(paths, 2, 0, ds), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(ds[0].classes, 2);
	cr_assert_eq(ds[0].labels[0], 1);
	cr_assert_eq(ds[1].labels[0], 0);
	cr_assert_eq(ds[1].labels[1], 1);
	hetsgd_dataset_free(&ds[0]);
	hetsgd_dataset_free(&ds[1]);

	/* {0, 1} in one file and only 1 in another stays binary 0/1 */
	paths[0] = strcpy(keep[0], write_text("c0.svm", "0 1:1\n1 1:1\n"));
	paths[1] = strcpy(keep[1], write_text("c1.svm", "1 1:1\n"));
	cr_assert_eq(hetsgd_libsvm_load_many(paths, 2, 0, ds), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(ds[1].classes, 2);
	cr_assert_eq(ds[1].label_values[0], 0.0);
	cr_assert_eq(ds[1].labels[0], 1);
	hetsgd_dataset_free(&ds[0]);
	hetsgd_dataset_free(&ds[1]);

	/* a bad file names itself; nothing is returned */
	paths[0] = strcpy(keep[0], write_text("d0.svm", "1 1:1\n"));
	paths[1] = strcpy(keep[1], write_text("d1.svm", "1 0:1\n"));
	cr_assert_eq(hetsgd_libsvm_load_many(paths, 2, 0, ds), -EBADMSG);
	cr_assert(strstr(hetsgd_algo_errmsg(), "d1.svm:1"), "%s", hetsgd_algo_errmsg());
}

/* ------------------------------------------------------------ model file */

Test(data, model_file)
{
	struct hetsgd_model_info in = { .d = 5, .kind = HETSGD_OBJ_SOFTMAX, .p = 2, .classes = 2,
					.flags = 1, .config_hash = 0x1122334455667788ull };
	struct hetsgd_model_info out;
	float x[5] = { 1.5f, -2.0f, 0.0f, 3.25f, -0.125f }, *y = NULL;
	char path[512], bad[512];
	FILE *f;
	unsigned char b;

	snprintf(path, sizeof(path), "%s", tpath("m.bin"));
	cr_assert_eq(hetsgd_model_save(path, &in, x), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(hetsgd_model_load(path, &out, &y), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(out.d, 5);
	cr_assert_eq(out.kind, HETSGD_OBJ_SOFTMAX);
	cr_assert_eq(out.p, 2);
	cr_assert_eq(out.classes, 2);
	cr_assert_eq(out.flags, 1);
	cr_assert_eq(out.config_hash, 0x1122334455667788ull);
	cr_assert_arr_eq(y, x, sizeof(x));
	free(y);

	/* the documented layout: magic, then d at offset 16, values at 64 */
	f = fopen(path, "rb");
	cr_assert(f);
	{
		unsigned char h[68];

		cr_assert_eq(fread(h, 1, 68, f), 68);
		cr_assert_eq(memcmp(h, "HSGDMDL1", 8), 0);
		cr_assert_eq(h[16], 5);
		cr_assert_eq(memcmp(h + 64, &x[0], 4), 0);
	}
	fclose(f);

	/* one flipped bit in the values: the checksum says so */
	snprintf(bad, sizeof(bad), "%s", path);
	f = fopen(bad, "r+b");
	cr_assert(f);
	fseek(f, 64 + 13, SEEK_SET);
	cr_assert_eq(fread(&b, 1, 1, f), 1);
	b ^= 0x10;
	fseek(f, 64 + 13, SEEK_SET);
	cr_assert_eq(fwrite(&b, 1, 1, f), 1);
	fclose(f);
	y = NULL;
	cr_assert_eq(hetsgd_model_load(bad, &out, &y), -EBADMSG);
	cr_assert(strstr(hetsgd_algo_errmsg(), "checksum"), "%s", hetsgd_algo_errmsg());
	cr_assert_null(y);

	/* truncated */
	cr_assert_eq(truncate(bad, 64 + 8), 0);
	cr_assert_eq(hetsgd_model_load(bad, &out, &y), -EBADMSG);
	cr_assert(strstr(hetsgd_algo_errmsg(), "truncated"), "%s", hetsgd_algo_errmsg());

	/* not a model at all, and no file */
	cr_assert_eq(hetsgd_model_load(write_text("notmodel.bin", "hello, this is not a model file at all, no no no no no no no no no\n"),
				       &out, &y), -EBADMSG);
	cr_assert_eq(hetsgd_model_load(tpath("nothing-here.bin"), &out, &y), -ENOENT);
	/* save refuses d = 0 */
	in.d = 0;
	cr_assert_eq(hetsgd_model_save(path, &in, x), -EINVAL);
}

/* ------------------------------------------------------------ checkpoint file */

Test(data, checkpoint_file)
{
	struct hetsgd_ckpt_worker w[2] = {
		{ .steps = 10, .rounds = 2, .overlap_steps = 3, .dropped = 1, .overruns = 4, .sent = 12,
		  .compute_s = 1.5, .idle_s = 0.25, .elapsed_s = 2.0, .tau_est = 0.004 },
		{ .steps = 7, .compute_s = 1.0, .elapsed_s = 2.0 },
	};
	float x[3] = { 1.5f, -2.0f, 0.125f };
	char cfg[] = "method = asgd\nworkers = 2\n", rows[] = "0.000,0,0\n";
	struct hetsgd_ckpt in = { .method = HETSGD_METHOD_ASGD, .n = 2, .d = 3, .config_hash = 0xabcdefull,
				  .t = 3.25, .updates = 17, .round = 17, .grads = 17, .dropped = 1, .x = x,
				  .workers = w, .config = cfg, .config_len = strlen(cfg), .extra = rows,
				  .extra_len = strlen(rows) };
	struct hetsgd_ckpt out;
	char path[512], tmp[600];
	size_t size = 128 + 3 * 4 + 2 * 80 + strlen(cfg) + strlen(rows);
	struct stat st;
	FILE *f;
	unsigned char b;

	snprintf(path, sizeof(path), "%s", tpath("c.hck"));
	cr_assert_eq(hetsgd_ckpt_save(path, &in), 0, "%s", hetsgd_algo_errmsg());
	/* renamed into place: no temporary file left */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_neq(stat(tmp, &st), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((size_t)st.st_size, size);
	cr_assert_eq(hetsgd_ckpt_load(path, &out), 0, "%s", hetsgd_algo_errmsg());
	cr_assert_eq(out.method, HETSGD_METHOD_ASGD);
	cr_assert_eq(out.n, 2);
	cr_assert_eq(out.d, 3);
	cr_assert_eq(out.config_hash, 0xabcdefull);
	cr_assert_eq(out.t, 3.25);
	cr_assert_eq(out.updates, 17);
	cr_assert_eq(out.dropped, 1);
	cr_assert_arr_eq(out.x, x, sizeof(x));
	cr_assert_eq(out.workers[0].steps, 10);
	cr_assert_eq(out.workers[0].overruns, 4);
	cr_assert_eq(out.workers[0].tau_est, 0.004);
	cr_assert_eq(out.workers[1].steps, 7);
	cr_assert_str_eq(out.config, cfg);
	cr_assert_str_eq(out.extra, rows);
	hetsgd_ckpt_free(&out);
	cr_assert_null(out.x);

	/* one flipped bit anywhere (here in a worker's record): refused */
	f = fopen(path, "r+b");
	cr_assert(f);
	fseek(f, 128 + 12 + 8, SEEK_SET);
	cr_assert_eq(fread(&b, 1, 1, f), 1);
	b ^= 0x01;
	fseek(f, 128 + 12 + 8, SEEK_SET);
	cr_assert_eq(fwrite(&b, 1, 1, f), 1);
	fclose(f);
	cr_assert_eq(hetsgd_ckpt_load(path, &out), -EBADMSG);
	cr_assert(strstr(hetsgd_algo_errmsg(), "checksum"), "%s", hetsgd_algo_errmsg());
	cr_assert_null(out.x);
	/* truncated */
	cr_assert_eq(truncate(path, 200), 0);
	cr_assert_eq(hetsgd_ckpt_load(path, &out), -EBADMSG);
	cr_assert(strstr(hetsgd_algo_errmsg(), "truncated"), "%s", hetsgd_algo_errmsg());
	/* a model file is no checkpoint; no file names the cause */
	cr_assert_eq(hetsgd_ckpt_load(write_text("notckpt.hck", "HSGDMDL1 is a model, not a checkpoint: no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no no\n"), &out), -EBADMSG);
	cr_assert_eq(hetsgd_ckpt_load(tpath("nothing-here.hck"), &out), -ENOENT);
	/* a folder that cannot be written: the message says the previous one is intact */
	in.n = 0;
	cr_assert_eq(hetsgd_ckpt_save(path, &in), -EINVAL);
	in.n = 2;
	cr_assert_neq(hetsgd_ckpt_save("/proc/hetsgd-no/c.hck", &in), 0);
	cr_assert(strstr(hetsgd_algo_errmsg(), "cannot write the checkpoint"), "%s", hetsgd_algo_errmsg());
}

/* ------------------------------------------------------------ gzip members and what follows them */

/* The bytes of a file, malloc()ed, and their count. */
static unsigned char *slurp_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b;
	long sz;

	cr_assert(f, "%s", path);
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	rewind(f);
	b = malloc((size_t)sz + 1);
	cr_assert(b);
	cr_assert_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
	fclose(f);
	*len = (size_t)sz;
	return b;
}

Test(data, gzip_members_all_load_and_nothing_after_them_is_dropped)
{
	static const char first[] = "1 1:0.5\n-1 2:1\n", second[] = "1 3:2\n-1 1:1 3:1\n";
	struct hetsgd_dataset ds = { 0 };
	unsigned char *a, *b, *both;
	size_t la, lb;

	write_bytes("a.svm.gz", first, strlen(first), 1);
	write_bytes("b.svm.gz", second, strlen(second), 1);
	a = slurp_file(tpath("a.svm.gz"), &la);
	b = slurp_file(tpath("b.svm.gz"), &lb);
	both = malloc(la + lb + 32);
	cr_assert(both);
	/* two members, as `cat a.gz b.gz` makes: every row of both */
	memcpy(both, a, la);
	memcpy(both + la, b, lb);
	write_bytes("ab.svm.gz", both, la + lb, 0);
	cr_assert_eq(hetsgd_libsvm_load(tpath("ab.svm.gz"), 0, &ds), 0, "%s", hetsgd_errmsg());
	cr_expect_eq(ds.n, 4, "rows of both members: %llu", (unsigned long long)ds.n);
	hetsgd_dataset_free(&ds);
	/* text appended after the gzip data: an error, not rows silently dropped */
	memcpy(both + la, "1 1:9\n", 6);
	write_bytes("tail.svm.gz", both, la + 6, 0);
	cr_expect_eq(hetsgd_libsvm_load(tpath("tail.svm.gz"), 0, &ds), -EBADMSG);
	cr_expect(strstr(hetsgd_errmsg(), "after the end of the gzip data") &&
		  strstr(hetsgd_errmsg(), "tail.svm.gz"), "%s", hetsgd_errmsg());
	free(a);
	free(b);
	free(both);
}

Test(data, idx_gzip_with_trailing_bytes_is_refused)
{
	unsigned char img[64], lab[16], *gz;
	size_t li, ll, lg;
	struct hetsgd_dataset ds = { 0 };
	char ip[512];

	li = idx_images(img, 0x803, 3, 2, 3, 18);
	ll = idx_labels(lab, 0x801, 3, lab3, 3);
	snprintf(ip, sizeof(ip), "%s", write_bytes("ti.gz", img, li, 1));
	gz = slurp_file(ip, &lg);
	gz = realloc(gz, lg + 3);
	cr_assert(gz);
	memcpy(gz + lg, "\x00\x01\x02", 3);
	write_bytes("ti2.gz", gz, lg + 3, 0);
	snprintf(ip, sizeof(ip), "%s", tpath("ti2.gz"));
	cr_expect_eq(hetsgd_idx_load(ip, write_bytes("tl", lab, ll, 0), &ds), -EBADMSG);
	cr_expect(strstr(hetsgd_errmsg(), "3 bytes at offset"), "%s", hetsgd_errmsg());
	free(gz);
}

/* ------------------------------------------------------------ regression targets */

Test(data, libsvm_targets_are_real_numbers_and_labels_stay_integers)
{
	static const char reg[] = "2.5 1:1\n-0.125 2:1 3:2\n1e3 3:0.5\n";
	struct hetsgd_dataset ds = { 0 };
	const char *path = write_text("reg.svm", reg);

	cr_assert_eq(hetsgd_libsvm_load_as(path, 0, HETSGD_LIBSVM_TARGETS, &ds), 0, "%s", hetsgd_errmsg());
	cr_expect_eq(ds.n, 3);
	cr_expect_eq(ds.p, 3);
	cr_expect_eq(ds.classes, 0);
	cr_expect_null(ds.labels);
	cr_expect_null(ds.label_values);
	cr_assert_not_null(ds.targets);
	cr_expect_eq(ds.targets[0], 2.5f);
	cr_expect_eq(ds.targets[1], -0.125f);
	cr_expect_eq(ds.targets[2], 1000.0f);
	hetsgd_dataset_free(&ds);
	/* the classification loader keeps refusing them, and says what to use */
	cr_expect_eq(hetsgd_libsvm_load(path, 0, &ds), -EBADMSG);
	cr_expect(strstr(hetsgd_errmsg(), "reg.svm:1") && strstr(hetsgd_errmsg(), "--objective lsq"),
		  "%s", hetsgd_errmsg());
	path = write_text("inf.svm", "1 1:1\ninf 1:2\n");
	cr_expect_eq(hetsgd_libsvm_load_as(path, 0, HETSGD_LIBSVM_TARGETS, &ds), -EOVERFLOW);
	cr_expect(strstr(hetsgd_errmsg(), "inf.svm:2"), "%s", hetsgd_errmsg());
}
