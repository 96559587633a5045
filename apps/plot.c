/*
 * Plots: a gnuplot script written next to the PNGs (so a person can tweak
 * and rerun it) and gnuplot run on it.  The script and the PNGs are
 * renamed into place only when complete: the script through outfile.h,
 * the PNGs because our run of gnuplot writes them as NAME.png.tmp (the
 * script's out_suffix, empty when a person reruns it) and they are
 * renamed only when gnuplot exited 0; otherwise they are removed and no
 * PNG is claimed.  metrics.csv leaves a value empty
 * when it does not exist (no test set, not a classifier), which gnuplot
 * reads as missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "outfile.h"
#include "plot.h"
#include "quote.h"

/* Does column col (1-based) of this CSV hold any value below the header? */
static int has_column(const char *csv, int col)
{
	FILE *f = fopen(csv, "r");
	char line[1024];
	int found = 0, first = 1;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		char *p = line;

		if (first) {
			first = 0;
			continue;
		}
		for (int c = 1; c < col && p; c++) {
			p = strchr(p, ',');
			if (p)
				p++;
		}
		found = p && *p && *p != ',' && *p != '\n';
	}
	fclose(f);
	return found;
}

static const char *base_name(const char *path)
{
	const char *s = path + strlen(path);

	while (s > path && s[-1] == '/')
		s--;
	while (s > path && s[-1] != '/')
		s--;
	return s;
}

static const char *label_of(const char *const *runs, const char *const *labels, int i)
{
	return labels && labels[i] ? labels[i] : base_name(runs[i]);
}

/* Every string here passed check_text, so quote_gnuplot refuses none. */
static void one_plot(FILE *g, const char *outdir, const char *prefix, const char *png,
		     const char *xlabel, const char *ylabel, int xcol, int ycol, int logy,
		     const char *const *runs, const char *const *labels, int n)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s%s", outdir, prefix, png);
	fprintf(g, "set output ");
	quote_gnuplot(g, path, sizeof(path));
	fprintf(g, " . out_suffix\nset xlabel ");
	quote_gnuplot(g, xlabel, strlen(xlabel));
	fprintf(g, "\nset ylabel ");
	quote_gnuplot(g, ylabel, strlen(ylabel));
	fprintf(g, "\n%s\nplot ", logy ? "set logscale y" : "unset logscale y");
	for (int i = 0; i < n; i++) {
		const char *label = label_of(runs, labels, i);
		size_t len = strlen(label);

		snprintf(path, sizeof(path), "%s/metrics.csv", runs[i]);
		if (len && label[len - 1] == '/')
			len--;
		quote_gnuplot(g, path, sizeof(path));
		fprintf(g, " using %d:%d every ::1 with linespoints pt 7 ps 0.4 title ", xcol, ycol);
		quote_gnuplot(g, label, len);
		fprintf(g, "%s", i + 1 < n ? ", \\\n     " : "\n");
	}
}

/*
 * A gnuplot string cannot hold a newline, and one in a path or a label
 * would end the string and make the rest of the line a command (a
 * "system(...)" in a run label or an --out folder ran it).  So every text
 * that reaches the script is checked before a byte of it is written;
 * what names it goes into the message.
 */
static int check_text(const char *name, const char *s, size_t max, char *err, size_t errlen)
{
	const char *c = quote_find_ctl(s);

	if (c) {
		snprintf(err, errlen, "%s holds a control character (byte 0x%02x at offset %td), which a gnuplot script cannot hold: use a name without newlines, tabs or other control characters",
			 name, (unsigned char)*c, c - s);
		return -EINVAL;
	}
	if (strlen(s) > max) {
		snprintf(err, errlen, "%s is longer than %zu bytes: use a shorter one", name, max);
		return -ENAMETOOLONG;
	}
	return 0;
}

const char *const plot_pngs[3] = { "loss.png", "loss-work.png", "accuracy.png" };

/* Every text that reaches the script, checked; and every run has metrics.csv.
 * *acc: some run has an accuracy column. */
static int check_runs(const char *outdir, const char *prefix, const char *const *runs,
		      const char *const *labels, int n, int *acc, char *err, size_t errlen)
{
	char csv[4096];
	int ret;

	/* the limits leave room in path[] for the file names put after them */
	if ((ret = check_text("the output folder", outdir, 3000, err, errlen)) ||
	    (ret = check_text("the file name prefix", prefix, 200, err, errlen)))
		return ret;
	for (int i = 0; i < n; i++) {
		char run[32], label[48];

		snprintf(run, sizeof(run), "run folder %d", i + 1);
		snprintf(label, sizeof(label), "the label of run %d", i + 1);
		if ((ret = check_text(run, runs[i], 3000, err, errlen)) ||
		    (ret = check_text(label, label_of(runs, labels, i), 1000, err, errlen)))
			return ret;
	}
	*acc = 0;
	for (int i = 0; i < n; i++) {
		snprintf(csv, sizeof(csv), "%s/metrics.csv", runs[i]);
		if (access(csv, R_OK)) {
			snprintf(err, errlen, "%s: %s: give the output folders of hetsgd-train runs",
				 csv, strerror(errno));
			return -EINVAL;
		}
		*acc |= has_column(csv, 6);
	}
	return 0;
}

/* plot.gp, renamed into place when complete; *npng: the PNGs it makes. */
static int write_script(const char *script, const char *outdir, const char *prefix, const char *const *runs,
			const char *const *labels, int n, int acc, int *npng, char *err, size_t errlen)
{
	struct outfile of;
	FILE *g;
	int ret;

	if ((ret = outfile_open(&of, script, ".tmp", err, errlen)))
		return ret;
	g = of.f;
	fprintf(g, "# written by hetsgd; rerun with: gnuplot %s\n"
		"set terminal pngcairo size 900,560 noenhanced\n"
		"set datafile separator ','\n"
		"set datafile missing ''\n"
		"set grid\nset key outside right top\nset autoscale xfixmax\n"
		"if (!exists(\"out_suffix\")) out_suffix = ''\n", script);
	/* columns of metrics.csv: 1 time_s, 2 grads, 5 loss, 6 accuracy */
	one_plot(g, outdir, prefix, "loss.png", "wall time (s)", "loss", 1, 5, 1, runs, labels, n);
	one_plot(g, outdir, prefix, "loss-work.png", "gradients computed", "loss", 2, 5, 1, runs,
		 labels, n);
	*npng = 2;
	if (acc)
		one_plot(g, outdir, prefix, plot_pngs[(*npng)++], "wall time (s)", "test accuracy", 1, 6,
			 0, runs, labels, n);
	return outfile_commit(&of, err, errlen);
}

/* Run gnuplot on script, writing NAME.png.tmp; 0 only when it exited 0. */
static int run_gnuplot(const char *script, char *err, size_t errlen)
{
	int status;
	pid_t pid, w;

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "cannot start gnuplot: %s", strerror(errno));
		return -EAGAIN;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		if (devnull >= 0)
			dup2(devnull, 1);
		execlp("gnuplot", "gnuplot", "-e", "out_suffix = '.tmp'", script, (char *)NULL);
		_exit(errno == ENOENT ? 127 : 126);
	}
	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (w < 0) {
		snprintf(err, errlen, "gnuplot: %s", strerror(errno));
		return -EIO;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		snprintf(err, errlen, "gnuplot is not installed, so no PNG plots (the script is %s): apt-get install gnuplot-nox",
			 script);
		return -ENOENT;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status)) {
		snprintf(err, errlen, "gnuplot failed on %s with exit status %d (its messages are above), so no PNG plots",
			 script, WEXITSTATUS(status));
		return -EIO;
	}
	if (!WIFEXITED(status)) {
		snprintf(err, errlen, "gnuplot was killed by signal %d on %s, so no PNG plots",
			 WTERMSIG(status), script);
		return -EIO;
	}
	return 0;
}

/*
 * Each PNG gnuplot wrote as NAME.png.tmp: into place when it succeeded
 * (ok), away otherwise; a PNG it did not write is a failure, and then
 * none of them stays.
 */
static int place_pngs(const char *outdir, const char *prefix, int npng, int ok, char *err, size_t errlen)
{
	char png[4200], tmp[4208];

	for (int i = 0; i < npng; i++) {
		snprintf(png, sizeof(png), "%s/%s%s", outdir, prefix, plot_pngs[i]);
		snprintf(tmp, sizeof(tmp), "%s.tmp", png);
		if (!ok) {
			remove(tmp);
			continue;
		}
		if (!rename(tmp, png))
			continue;
		snprintf(err, errlen, "gnuplot exited 0 but %s is missing or cannot be renamed to %s: %s, so no PNG plots",
			 tmp, png, strerror(errno));
		for (int k = 0; k < npng; k++) {
			snprintf(png, sizeof(png), "%s/%s%s", outdir, prefix, plot_pngs[k]);
			snprintf(tmp, sizeof(tmp), "%s.tmp", png);
			remove(tmp);
			if (k < i)
				remove(png);
		}
		return -EIO;
	}
	return 0;
}

int plot_runs(const char *outdir, const char *prefix, const char *const *runs,
	      const char *const *labels, int n, int *written, char *err, size_t errlen)
{
	char script[4096];
	int acc, npng = 0, ret;

	if (written)
		*written = 0;
	ret = check_runs(outdir, prefix, runs, labels, n, &acc, err, errlen);
	if (ret)
		return ret;
	snprintf(script, sizeof(script), "%s/%splot.gp", outdir, prefix);
	ret = write_script(script, outdir, prefix, runs, labels, n, acc, &npng, err, errlen);
	if (ret)
		return ret;
	ret = run_gnuplot(script, err, errlen);
	if (ret) {
		char ignore[8];

		place_pngs(outdir, prefix, npng, 0, ignore, sizeof(ignore));
		return ret;
	}
	ret = place_pngs(outdir, prefix, npng, 1, err, errlen);
	if (!ret && written)
		*written = npng;
	return ret;
}
