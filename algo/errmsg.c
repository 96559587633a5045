/* The algorithm room's error messages: one per thread, as in transport. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>

#include "algo_priv.h"

static _Thread_local char errbuf[1024];

const char *hetsgd_algo_errmsg(void)
{
	return errbuf;
}

int algo_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return err;
}
