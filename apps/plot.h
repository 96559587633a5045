/* PNG plots of hetsgd-train runs through gnuplot (shared by hetsgd-train
 * and hetsgd-plot; private to apps/). */
#ifndef HETSGD_APPS_PLOT_H
#define HETSGD_APPS_PLOT_H

#include <stddef.h>

/*
 * Plot the metrics.csv of each run folder into outdir:
 *   PREFIXloss.png       loss against wall time
 *   PREFIXloss-work.png  loss against gradients computed
 *   PREFIXaccuracy.png   test accuracy against wall time (when any run has it)
 * labels[i] names run i in the key (NULL: the folder's last component).
 * The script (PREFIXplot.gp) and each PNG appear under their names only
 * when complete; when gnuplot fails no PNG is left.  *written (when not
 * NULL) is the number of PNGs written: the first *written of plot_pngs.
 * Returns 0; -ENOENT when gnuplot is not installed (err says which package
 * to install); -EINVAL, before anything is written, when a folder, the
 * prefix or a label holds a control character (a gnuplot string cannot
 * hold a newline); another negative errno with err filled otherwise.
 */
int plot_runs(const char *outdir, const char *prefix, const char *const *runs,
	      const char *const *labels, int n, int *written, char *err, size_t errlen);

/* The PNGs' names after PREFIX, in order: loss, loss-work, accuracy. */
extern const char *const plot_pngs[3];

#endif
