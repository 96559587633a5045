/*
 * hetsgd algorithms: objectives, data, and the engine that runs
 * LOSCAR-SGD, Rescaled ASGD and their baselines over the transport.
 * An umbrella: each subject has its header (below), and this one
 * includes them all.
 *
 * Conventions, as in the rest of hetsgd: a call returns 0 or a negative
 * errno value; a failed call leaves a sentence naming the cause and the
 * fix in hetsgd_errmsg(); outputs are written only on success.
 * Numbers are float (the transport's wire format is binary32).
 */
#ifndef HETSGD_ALGO_H
#define HETSGD_ALGO_H

#include <stddef.h>
#include <stdint.h>

#include "hetsgd_topology.h"
#include "hetsgd_transport.h"
#include "hetsgd_data.h"		/* data sets and splits */
#include "hetsgd_objective.h"		/* objectives */
#include "hetsgd_engine.h"		/* profiles, tau, policies, merge, the engine */
#include "hetsgd_sim.h"		/* the simulator */
#include "hetsgd_model.h"		/* model files and checkpoints */

#ifdef __cplusplus
extern "C" {
#endif

/* The same as hetsgd_errmsg() (hetsgd_topology.h), kept for programs
 * written against 0.1. */
const char *hetsgd_algo_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif /* HETSGD_ALGO_H */
