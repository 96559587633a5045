/* Private to transport/: nothing outside this folder includes it. */
#ifndef HETSGD_TRANSPORT_PRIV_H
#define HETSGD_TRANSPORT_PRIV_H

#include <stdint.h>

#include "hetsgd_transport.h"

#define HETSGD_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Record the message for hetsgd_errmsg() and return err (negative errno). */
int hetsgd_err(int err, const char *fmt, ...) HETSGD_PRINTF(2, 3);

struct hetsgd_boot_ops {
	int (*allgather)(struct hetsgd_boot *boot, const void *mine, void *all,
			 size_t len);
	int (*barrier)(struct hetsgd_boot *boot);
	void (*close)(struct hetsgd_boot *boot);
};

struct hetsgd_boot {
	const struct hetsgd_boot_ops *ops;
	enum hetsgd_boot_kind kind;
	int rank;
	int size;
	uint32_t seq;		/* collectives so far: makes KVS keys unique */
	int fd;			/* local launcher: socket to the parent */
	char jobid[256];	/* PMI2 KVS name */
	void *priv;		/* backend state */
};

/* Backends fill *boot; each returns 0 or a negative errno. */
int hetsgd_boot_pmix_open(struct hetsgd_boot *boot);
int hetsgd_boot_pmi2_open(struct hetsgd_boot *boot);

/* Largest contribution a rank may make to one allgather. */
#define HETSGD_BOOT_MAX_LEN (64u << 20)

#endif
