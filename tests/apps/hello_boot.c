/* The README's example: four ranks on this host, one allgather. */
#include <stdio.h>
#include <hetsgd_topology.h>	/* hetsgd_errmsg */
#include <hetsgd_transport.h>

static int rank_main(struct hetsgd_boot *boot, void *arg)
{
	int me = hetsgd_boot_rank(boot), all[4];

	(void)arg;
	if (hetsgd_boot_allgather(boot, &me, all, sizeof(me)))
		return fprintf(stderr, "rank %d: %s\n", me, hetsgd_errmsg()), 1;
	printf("rank %d of %d: last rank is %d\n", me, hetsgd_boot_size(boot), all[3]);
	return 0;
}

int main(void)
{
	if (hetsgd_boot_local_run(4, rank_main, NULL, NULL))
		return fprintf(stderr, "hello: %s\n", hetsgd_errmsg()), 1;
	return 0;
}
