/*
 * Private to apps/: what hetsgd-train lends its tests.  The fuzz harness
 * of the config-file parser (tests/fuzz/fuzz_config.c) links train.c
 * built with -DHETSGD_TRAIN_NO_MAIN and calls this.
 */
#ifndef HETSGD_TRAIN_PRIV_H
#define HETSGD_TRAIN_PRIV_H

#include <stddef.h>

/*
 * Read the config file at path over the defaults and check the result
 * for contradictions, as `hetsgd-train --config path` does before it
 * looks at any data: 0, or -EINVAL with the reason in err (n bytes).
 * Opens nothing but path, prints nothing, never exits.
 */
int train_config_check(const char *path, char *err, size_t n);

#endif
