/*
 * Output files that are never half-written: each is written under a
 * temporary name in its own folder (PATH.tmp, or PATH.part for a file
 * written as a run goes) and renamed over PATH only when every write, the
 * flush, the fsync and the close succeeded.  A reader sees the previous
 * complete PATH, or none, until the rename; a failure removes the
 * temporary file and leaves PATH as it was.  Shared by hetsgd-train and
 * hetsgd-plot; private to apps/.
 */
#ifndef HETSGD_APPS_OUTFILE_H
#define HETSGD_APPS_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

struct outfile {
	FILE *f;		/* write here */
	char path[4096];	/* the final name */
	char tmp[4096];		/* the name while it is written */
};

/* Open PATH + suffix (".tmp" or ".part") for writing: 0, or a negative
 * errno with "cannot write PATH: ..." in err. */
int outfile_open(struct outfile *of, const char *path, const char *suffix, char *err, size_t n);
/* Check, flush, fsync, close and rename into place: 0, or a negative
 * errno with the file named in err (and "is the disk full?" when it may
 * be); the temporary file is then removed.  of->f is closed either way. */
int outfile_commit(struct outfile *of, char *err, size_t n);
/* Close and remove the temporary file (nothing renamed); NULL-safe. */
void outfile_abandon(struct outfile *of);
/* Flush: 0, or a negative errno with the message in err (the file stays open). */
int outfile_flush(struct outfile *of, char *err, size_t n);
/* "cannot write PATH: <errno text>", plus ": is the disk full?" when it
 * may be; returns -e. */
int outfile_err(char *err, size_t n, const char *path, int e);

#endif
