/*
 * hetsgd-plot: compare hetsgd-train runs in PNG plots.
 *
 *   hetsgd-plot [--out DIR] [--prefix P] RUN[=LABEL] ...
 *
 * Each RUN is an output folder of hetsgd-train; LABEL names it in the key
 * (default: the folder's name).  Writes DIR/Ploss.png (loss against time),
 * DIR/Ploss-work.png (loss against gradients computed) and
 * DIR/Paccuracy.png (test accuracy against time), and DIR/Pplot.gp, the
 * gnuplot script that made them.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plot.h"
#include "quote.h"

/*
 * Refused here, before the --out folder is made, rather than by plot_runs:
 * a bad argument is exit 2 and the message names the argument.  A newline
 * in a folder or a label would otherwise end a gnuplot string and run the
 * rest of the line as commands.
 */
static int check_arg(const char *what, const char *s)
{
	const char *c = quote_find_ctl(s);

	if (!c)
		return 0;
	fprintf(stderr, "hetsgd-plot: %s holds a control character (byte 0x%02x at offset %td), which a gnuplot script cannot hold: use one without newlines, tabs or other control characters\n",
		what, (unsigned char)*c, c - s);
	return -EINVAL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: hetsgd-plot [--out DIR] [--prefix P] RUN[=LABEL] ...\n"
		"  RUN      an output folder of hetsgd-train (holds metrics.csv)\n"
		"  LABEL    its name in the plots' key (default: the folder's name)\n"
		"  --out    where the PNGs go (default: the current folder)\n"
		"  --prefix file name prefix, e.g. asgd- (default: none)\n"
		"  -h, --help  this text;  --version  the version\n"
		"Writes Ploss.png, Ploss-work.png, Paccuracy.png and Pplot.gp.\n");
}

/* Every text argument before anything is made: 0, or -1 after the message. */
static int check_args(const char *out, const char *prefix, int n, char **args)
{
	if (check_arg("--out", out) || check_arg("--prefix", prefix))
		return -1;
	for (int i = 0; i < n; i++) {
		char what[64];

		snprintf(what, sizeof(what), "argument %d (RUN[=LABEL])", i + 1);
		if (check_arg(what, args[i]))
			return -1;
	}
	if (strchr(prefix, '/')) {
		fprintf(stderr, "hetsgd-plot: --prefix %s: a prefix is part of a file name; put folders in --out\n", prefix);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = ".", *prefix = "";
	char err[1024];
	char **runs, **labels;
	int c, n, ret, npng = 0;

	while ((c = getopt_long(argc, argv, "o:p:h", lo, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'p': prefix = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("hetsgd-plot (hetsgd) %s\n", PACKAGE_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	n = argc - optind;
	if (n < 1) {
		usage(stderr);
		return 2;
	}
	if (check_args(out, prefix, argc - optind, argv + optind))
		return 2;
	if (mkdir(out, 0777) && errno != EEXIST) {
		fprintf(stderr, "hetsgd-plot: --out %s: %s\n", out, strerror(errno));
		return 1;
	}
	runs = calloc((size_t)n, sizeof(*runs));
	labels = calloc((size_t)n, sizeof(*labels));
	if (!runs || !labels) {
		fprintf(stderr, "hetsgd-plot: out of memory\n");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char *eq;

		runs[i] = strdup(argv[optind + i]);
		if (!runs[i]) {
			fprintf(stderr, "hetsgd-plot: out of memory\n");
			return 1;
		}
		eq = strchr(runs[i], '=');
		if (eq) {
			*eq = 0;
			labels[i] = eq + 1;
		}
	}
	ret = plot_runs(out, prefix, (const char *const *)runs, (const char *const *)labels, n,
			&npng, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "hetsgd-plot: %s\n", err);
		return 1;
	}
	/* only the PNGs written: accuracy.png when some run has accuracies */
	printf("hetsgd-plot: %s/%s%s", out, prefix, plot_pngs[0]);
	for (int i = 1; i < npng; i++)
		printf(", %s%s", prefix, plot_pngs[i]);
	printf("\n");
	for (int i = 0; i < n; i++)
		free(runs[i]);
	free(runs);
	free(labels);
	return 0;
}
