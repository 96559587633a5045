/*
 * hetsgd-eval: the loss and accuracy of a saved model on a data set.
 *
 *   hetsgd-eval MODEL [--data fashion-mnist|fashion-mnist-train|FILE.svm]
 *               [--lambda L] [--csv]
 *
 * The objective comes from the model file's header (kind, features,
 * classes, hidden units); the data must have the model's features.
 * Exit status: 0 evaluated, 1 failed, 2 bad usage.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hetsgd_algo.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: hetsgd-eval MODEL [--data fashion-mnist|fashion-mnist-train|FILE.svm] [--lambda L] [--csv]\n"
		"Loss and accuracy of a model saved by hetsgd-train (model.bin) on a data set.\n"
		"  --data    fashion-mnist: its 10000 test images (default); fashion-mnist-train:\n"
		"            its 60000 training images; or a LIBSVM file with the model's features\n"
		"  --lambda  L2 term to include in the loss (default 0: the data loss alone)\n"
		"  --csv     one line: model,data,samples,loss,accuracy\n"
		"  -h, --help, --version\n");
}

static int load(const char *data, uint32_t p, struct hetsgd_dataset *ds)
{
	if (!strcmp(data, "fashion-mnist"))
		return hetsgd_fashion_mnist_load(1, ds);
	if (!strcmp(data, "fashion-mnist-train"))
		return hetsgd_fashion_mnist_load(0, ds);
	return hetsgd_libsvm_load(data, p, ds);
}

/* Loss over every sample, in batches (the objectives take index lists). */
static int full_loss(struct hetsgd_objective *obj, const float *x, const struct hetsgd_dataset *ds,
		     double *out)
{
	enum { B = 4096 };
	uint32_t *idx = malloc(B * sizeof(uint32_t));
	double sum = 0;
	int ret = 0;

	if (!idx)
		return -ENOMEM;
	for (uint64_t i = 0; i < ds->n && !ret; i += B) {
		size_t m = ds->n - i < B ? (size_t)(ds->n - i) : B;
		float l;

		for (size_t k = 0; k < m; k++)
			idx[k] = (uint32_t)(i + k);
		ret = hetsgd_objective_loss(obj, x, ds, idx, m, &l);
		sum += (double)l * (double)m;
	}
	free(idx);
	*out = sum / (double)ds->n;
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "data", required_argument, NULL, 'd' }, { "lambda", required_argument, NULL, 'l' },
		{ "csv", no_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
	};
	const char *data = "fashion-mnist";
	struct hetsgd_model_info mi;
	struct hetsgd_dataset ds = { 0 };
	struct hetsgd_objective *obj = NULL;
	float *x = NULL;
	double lambda = 0, loss, acc = NAN;
	int c, csv = 0, rc = 1;
	char *end;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'd': data = optarg; break;
		case 'l':
			lambda = strtod(optarg, &end);
			if (*end || end == optarg || !(lambda >= 0) || !isfinite(lambda)) {
				fprintf(stderr, "hetsgd-eval: --lambda %s: give a number >= 0\n", optarg);
				return 2;
			}
			break;
		case 'c': csv = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("hetsgd-eval (hetsgd) %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "hetsgd-eval: give exactly one MODEL file (hetsgd-eval --help)\n");
		return 2;
	}
	if (hetsgd_model_load(argv[optind], &mi, &x) || hetsgd_model_objective(&mi, (float)lambda, &obj)) {
		fprintf(stderr, "hetsgd-eval: %s\n", hetsgd_errmsg());
		goto out;
	}
	if (load(data, mi.p, &ds)) {
		fprintf(stderr, "hetsgd-eval: %s\n", hetsgd_errmsg());
		goto out;
	}
	if (ds.p != mi.p || (mi.classes && ds.classes > mi.classes)) {
		fprintf(stderr, "hetsgd-eval: %s has %u features and %u classes; the model was trained on %u features and %u classes: evaluate it on data of the same kind\n",
			data, ds.p, ds.classes, mi.p, mi.classes);
		goto out;
	}
	if (full_loss(obj, x, &ds, &loss)) {
		fprintf(stderr, "hetsgd-eval: %s\n", hetsgd_errmsg());
		goto out;
	}
	if (mi.classes && hetsgd_objective_accuracy(obj, x, &ds, &acc)) {
		fprintf(stderr, "hetsgd-eval: %s\n", hetsgd_errmsg());
		goto out;
	}
	if (csv)
		printf("%s,%s,%llu,%.6g,%.6g\n", argv[optind], data, (unsigned long long)ds.n, loss, acc);
	else
		printf("model %s: %s, d = %llu; data %s: %llu samples\nloss = %.6g\naccuracy = %.6g\n",
		       argv[optind], hetsgd_obj_kind_name(mi.kind), (unsigned long long)mi.d, data,
		       (unsigned long long)ds.n, loss, acc);
	rc = 0;
out:
	hetsgd_objective_destroy(obj);
	hetsgd_dataset_free(&ds);
	free(x);
	return rc;
}
