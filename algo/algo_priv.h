/* Private to algo/: nothing outside this folder includes it. */
#ifndef HETSGD_ALGO_PRIV_H
#define HETSGD_ALGO_PRIV_H

#include "hetsgd_algo.h"

/* Record the message for hetsgd_algo_errmsg() and return err (negative errno). */
int algo_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
