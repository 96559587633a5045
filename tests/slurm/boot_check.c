/*
 * Run under srun: each rank learns its rank and size from the bootstrap,
 * exchanges a value with every other rank (allgather) and checks them all,
 * then a payload large enough to need several PMI2 keys, then a barrier.
 *
 *   hetsgd-boot-check KIND EXPECTED_SIZE      KIND = pmix | pmi2 | tcp | auto
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hetsgd_transport.h"

static uint64_t value_of(int rank, int size)
{
	return 0x9E3779B97F4A7C15ull * (uint64_t)(rank + 1) + (uint64_t)size;
}

int main(int argc, char **argv)
{
	enum hetsgd_boot_kind kind;
	struct hetsgd_boot *b;
	int rank, size, expect, r, rc;
	uint64_t mine, *all;
	size_t big = 3000, j;
	uint8_t *bmine, *ball;
	char host[64] = "?";

	if (argc != 3 || hetsgd_boot_kind_parse(argv[1], &kind) || (expect = atoi(argv[2])) < 1) {
		fprintf(stderr, "usage: hetsgd-boot-check pmix|pmi2|tcp|auto EXPECTED_SIZE\n");
		return 2;
	}
	rc = hetsgd_boot_open(kind, &b);
	if (rc) {
		fprintf(stderr, "boot-check: %s\n", hetsgd_errmsg());
		return 1;
	}
	rank = hetsgd_boot_rank(b);
	size = hetsgd_boot_size(b);
	gethostname(host, sizeof(host) - 1);
	if (size != expect) {
		fprintf(stderr, "boot-check: rank %d: size %d, expected %d\n", rank, size, expect);
		return 1;
	}

	mine = value_of(rank, size);
	all = calloc((size_t)size, sizeof(*all));
	if (hetsgd_boot_allgather(b, &mine, all, sizeof(mine))) {
		fprintf(stderr, "boot-check: rank %d: %s\n", rank, hetsgd_errmsg());
		return 1;
	}
	for (r = 0; r < size; r++) {
		if (all[r] != value_of(r, size)) {
			fprintf(stderr, "boot-check: rank %d: value from rank %d is %016llx, expected %016llx\n",
				rank, r, (unsigned long long)all[r], (unsigned long long)value_of(r, size));
			return 1;
		}
	}

	bmine = malloc(big);
	ball = malloc(big * (size_t)size);
	for (j = 0; j < big; j++)
		bmine[j] = (uint8_t)(rank * 131 + j * 7);
	if (hetsgd_boot_allgather(b, bmine, ball, big)) {
		fprintf(stderr, "boot-check: rank %d: %s\n", rank, hetsgd_errmsg());
		return 1;
	}
	for (r = 0; r < size; r++)
		for (j = 0; j < big; j++)
			if (ball[(size_t)r * big + j] != (uint8_t)(r * 131 + j * 7)) {
				fprintf(stderr, "boot-check: rank %d: byte %zu from rank %d wrong\n", rank, j, r);
				return 1;
			}
	if (hetsgd_boot_barrier(b)) {
		fprintf(stderr, "boot-check: rank %d: %s\n", rank, hetsgd_errmsg());
		return 1;
	}
	/* once left, PMIx and PMI2 refuse collectives by name; the TCP
	 * rendezvous keeps serving them (its leave is nothing) */
	hetsgd_boot_leave(b);
	{
		enum hetsgd_boot_kind k = hetsgd_boot_get_kind(b);
		int lr = hetsgd_boot_barrier(b);

		if ((k == HETSGD_BOOT_PMIX || k == HETSGD_BOOT_PMI2) &&
		    (lr != -ENOTCONN || !strstr(hetsgd_errmsg(), "has left"))) {
			fprintf(stderr, "boot-check: rank %d: a barrier after hetsgd_boot_leave returned %d (%s), expected -ENOTCONN\n",
				rank, lr, hetsgd_errmsg());
			return 1;
		}
		if (k == HETSGD_BOOT_TCP && lr) {
			fprintf(stderr, "boot-check: rank %d: tcp barrier after leave: %s\n", rank, hetsgd_errmsg());
			return 1;
		}
	}
	printf("boot-check: %s rank %d of %d on %s: exchanged with all %d ranks, "
	       "%zu + %zu bytes each, all verified\n",
	       hetsgd_boot_kind_name(hetsgd_boot_get_kind(b)), rank, size, host, size,
	       sizeof(mine), big);
	hetsgd_boot_close(b);
	free(all);
	free(bmine);
	free(ball);
	return 0;
}
