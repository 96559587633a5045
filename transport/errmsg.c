#include <config.h>

#include <stdarg.h>
#include <stdio.h>

#include "transport_priv.h"

/* Per thread, so that concurrent ranks' threads do not garble each other. */
static _Thread_local char errbuf[1024];	/* room for a rendezvous diagnosis */

const char *hetsgd_errmsg(void)
{
	return errbuf;
}

int hetsgd_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return err;
}
