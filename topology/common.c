/*
 * What every room of the library shares: one error channel, one clock and
 * one reader of integer settings.  They live in the topology room because
 * it is the one every other room may depend on (apps -> algo ->
 * transport -> topology).
 */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hetsgd_topology.h"

#define ERRMSG_MAX 1024		/* room for a rendezvous diagnosis */

/* Per thread, so that concurrent ranks' threads do not garble each other. */
static _Thread_local char errbuf[ERRMSG_MAX];

const char *hetsgd_errmsg(void)
{
	return errbuf;
}

int hetsgd_error(int err, const char *fmt, ...)
{
	char msg[ERRMSG_MAX];
	va_list ap;

	/* Through a copy: a message often quotes the one it replaces. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(errbuf, msg, sizeof(errbuf));
	return err;
}

double hetsgd_clock_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int hetsgd_env_long(const char *name, long lo, long hi, long *out)
{
	const char *v = getenv(name);
	char *end;
	long x;

	if (!v || !*v)
		return 0;
	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		return hetsgd_error(-EINVAL, "%s=\"%s\": expected an integer from %ld to %ld: fix or unset it",
				    name, v, lo, hi);
	*out = x;
	return 1;
}
