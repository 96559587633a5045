/*
 * The methods, each one file ending in one const struct hetsgd_method_ops
 * (engine_core.h).  engine.c lists them in its table; nothing else names
 * them.
 */
#ifndef HETSGD_METHODS_H
#define HETSGD_METHODS_H

#include "engine_core.h"

extern const struct hetsgd_method_ops method_asgd;	/* method_asgd.c */
extern const struct hetsgd_method_ops method_sync;	/* method_sync.c */
extern const struct hetsgd_method_ops method_loscar;	/* method_loscar.c */
extern const struct hetsgd_method_ops method_malenia;	/* method_malenia.c */
extern const struct hetsgd_method_ops method_ringleader;	/* method_ringleader.c */
/* their sharded averaging (--averaging sharded; shard.h) */
extern const struct hetsgd_method_ops method_loscar_sharded;	/* method_loscar.c */
extern const struct hetsgd_method_ops method_sync_sharded;	/* method_sync.c */

/* The worker of the methods that send gradients and wait for the model
 * (ASGD, SYNC and RINGLEADER share it): method_asgd.c. */
int gradient_worker_loop(struct worker *w);

#endif
