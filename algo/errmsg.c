/* The algorithm room's old name for the one error channel. */
#include <config.h>

#include "algo_priv.h"

const char *hetsgd_algo_errmsg(void)
{
	return hetsgd_errmsg();
}
