/*
 * hetsgd-model: look into a saved model and hand it to other tools.
 *
 *   hetsgd-model info MODEL
 *   hetsgd-model export MODEL --format npy|txt [--out FILE]
 *
 * npy: NumPy's format 1.0, little-endian float32, shape (d,), readable by
 * numpy.load; txt: one value per line, %.9g (exact for float32).  The
 * values keep the layout of their objective (hetsgd_objective.h): e.g.
 * softmax is W (classes x p, row-major) then the biases.  The output is
 * written to FILE.tmp and renamed, so it is never half written.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hetsgd_algo.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: hetsgd-model info MODEL\n"
		"       hetsgd-model export MODEL --format npy|txt [--out FILE]\n"
		"Show a model saved by hetsgd-train, or write its values for other tools:\n"
		"npy (numpy.load, float32, shape (d,)) or txt (one value per line).\n"
		"--out defaults to MODEL with .npy or .txt in place of its extension.\n"
		"  -h, --help, --version\n");
}

static int write_npy(FILE *f, const float *x, uint64_t d)
{
	char dict[128];
	int len = snprintf(dict, sizeof(dict), "{'descr': '<f4', 'fortran_order': False, 'shape': (%llu,), }",
			   (unsigned long long)d);
	/* magic (6) + version (2) + header length (2) + dict + spaces + '\n' = a multiple of 64 */
	int total = (10 + len + 1 + 63) / 64 * 64, pad = total - 10 - len - 1;
	unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0 };

	pre[8] = (unsigned char)((total - 10) & 0xff);
	pre[9] = (unsigned char)((total - 10) >> 8);
	if (fwrite(pre, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)len, f) != (size_t)len)
		return -EIO;
	while (pad-- > 0)
		fputc(' ', f);
	fputc('\n', f);
	/* float32 little-endian: the model file's own order on every host we build for */
	return fwrite(x, sizeof(float), d, f) == d ? 0 : -EIO;
}

static int write_txt(FILE *f, const float *x, uint64_t d)
{
	for (uint64_t i = 0; i < d; i++)
		if (fprintf(f, "%.9g\n", (double)x[i]) < 0)
			return -EIO;
	return 0;
}

static int export(const char *model, const char *format, const char *out)
{
	struct hetsgd_model_info mi;
	char path[4096], tmp[4200];
	float *x = NULL;
	FILE *f;
	int ret;

	if (strcmp(format, "npy") && strcmp(format, "txt")) {
		fprintf(stderr, "hetsgd-model: --format %s: use npy or txt\n", format);
		return 2;
	}
	if (hetsgd_model_load(model, &mi, &x)) {
		fprintf(stderr, "hetsgd-model: %s\n", hetsgd_errmsg());
		return 1;
	}
	if (out) {
		snprintf(path, sizeof(path), "%s", out);
	} else {
		const char *dot = strrchr(model, '.'), *slash = strrchr(model, '/');
		int stem = dot && (!slash || dot > slash) ? (int)(dot - model) : (int)strlen(model);

		snprintf(path, sizeof(path), "%.*s.%s", stem, model, format);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "wb");
	if (!f) {
		fprintf(stderr, "hetsgd-model: cannot write %s: %s\n", tmp, strerror(errno));
		free(x);
		return 1;
	}
	ret = !strcmp(format, "npy") ? write_npy(f, x, mi.d) : write_txt(f, x, mi.d);
	if (fclose(f) || ret || rename(tmp, path)) {
		fprintf(stderr, "hetsgd-model: writing %s failed: %s (is the disk full?)\n", path, strerror(errno));
		remove(tmp);
		free(x);
		return 1;
	}
	printf("hetsgd-model: wrote %llu values to %s\n", (unsigned long long)mi.d, path);
	free(x);
	return 0;
}

static int info(const char *model)
{
	struct hetsgd_model_info mi;
	float *x = NULL;

	if (hetsgd_model_load(model, &mi, &x)) {
		fprintf(stderr, "hetsgd-model: %s\n", hetsgd_errmsg());
		return 1;
	}
	printf("file = %s\nobjective = %s\nd = %llu\nfeatures = %u\nclasses = %u\nhidden = %u\nbias = %s\nconfig-hash = %016llx\n",
	       model, hetsgd_obj_kind_name(mi.kind), (unsigned long long)mi.d, mi.p, mi.classes, mi.hidden,
	       mi.flags & 1 ? "yes" : "no", (unsigned long long)mi.config_hash);
	free(x);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' }, { "out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
	};
	const char *format = NULL, *out = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'f': format = optarg; break;
		case 'o': out = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("hetsgd-model (hetsgd) %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind == 2 && !strcmp(argv[optind], "info") && !format && !out)
		return info(argv[optind + 1]);
	if (argc - optind == 2 && !strcmp(argv[optind], "export")) {
		if (!format) {
			fprintf(stderr, "hetsgd-model: export needs --format npy or --format txt\n");
			return 2;
		}
		return export(argv[optind + 1], format, out);
	}
	fprintf(stderr, "hetsgd-model: give 'info MODEL' or 'export MODEL --format npy|txt' (hetsgd-model --help)\n");
	return 2;
}
