/* Output files renamed into place only when complete: see outfile.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "outfile.h"

int outfile_err(char *err, size_t n, const char *path, int e)
{
	int full = e == ENOSPC || e == EDQUOT || e == EFBIG || e == EIO;

	snprintf(err, n, "cannot write %s: %s%s", path, strerror(e), full ? ": is the disk full?" : "");
	return -e;
}

int outfile_open(struct outfile *of, const char *path, const char *suffix, char *err, size_t n)
{
	of->f = NULL;
	if (snprintf(of->path, sizeof(of->path), "%s", path) >= (int)sizeof(of->path) ||
	    snprintf(of->tmp, sizeof(of->tmp), "%s%s", path, suffix) >= (int)sizeof(of->tmp))
		return outfile_err(err, n, path, ENAMETOOLONG);
	of->f = fopen(of->tmp, "w");
	if (!of->f)
		return outfile_err(err, n, of->tmp, errno);
	return 0;
}

int outfile_flush(struct outfile *of, char *err, size_t n)
{
	errno = 0;
	if (fflush(of->f) || ferror(of->f))
		return outfile_err(err, n, of->tmp, errno ? errno : EIO);
	return 0;
}

int outfile_commit(struct outfile *of, char *err, size_t n)
{
	int e = 0;

	/* a write that failed earlier (ferror) may have left errno long
	 * ago: what the flush says, else EIO */
	errno = 0;
	if (fflush(of->f) || ferror(of->f) || fsync(fileno(of->f)))
		e = errno ? errno : EIO;
	if (fclose(of->f) && !e)
		e = errno ? errno : EIO;
	of->f = NULL;
	if (!e && rename(of->tmp, of->path))
		e = errno;
	if (e) {
		remove(of->tmp);
		return outfile_err(err, n, e == ENOENT ? of->path : of->tmp, e);
	}
	return 0;
}

void outfile_abandon(struct outfile *of)
{
	if (!of || !of->f)
		return;
	fclose(of->f);
	of->f = NULL;
	remove(of->tmp);
}
