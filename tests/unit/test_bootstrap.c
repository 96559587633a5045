/*
 * Bootstrap front end and local launcher: real forked ranks, real
 * collectives, including ranks that misbehave.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hetsgd_transport.h"

Test(boot_kind, parse_and_name)
{
	enum hetsgd_boot_kind k = HETSGD_BOOT_AUTO;

	cr_assert_eq(hetsgd_boot_kind_parse("pmix", &k), 0);
	cr_assert_eq(k, HETSGD_BOOT_PMIX);
	cr_assert_eq(hetsgd_boot_kind_parse("pmi2", &k), 0);
	cr_assert_eq(k, HETSGD_BOOT_PMI2);
	cr_assert_eq(hetsgd_boot_kind_parse("local", &k), 0);
	cr_assert_eq(k, HETSGD_BOOT_LOCAL);
	cr_assert_str_eq(hetsgd_boot_kind_name(HETSGD_BOOT_PMI2), "pmi2");
	cr_assert_str_eq(hetsgd_boot_kind_name((enum hetsgd_boot_kind)42), "invalid");

	k = HETSGD_BOOT_PMIX;
	cr_assert_eq(hetsgd_boot_kind_parse("mpi", &k), -EINVAL);
	cr_assert_eq(k, HETSGD_BOOT_PMIX, "output must be untouched on failure");
	cr_assert(strstr(hetsgd_errmsg(), "'mpi'") && strstr(hetsgd_errmsg(), "pmix"),
		  "message names the bad value and the choices: %s", hetsgd_errmsg());
	cr_assert_eq(hetsgd_boot_kind_parse(NULL, &k), -EINVAL);
}

Test(boot_open, auto_without_launcher_fails_clearly)
{
	struct hetsgd_boot *b = (void *)0x1;

	unsetenv("PMIX_RANK");
	unsetenv("PMIX_NAMESPACE");
	unsetenv("PMI_FD");
	unsetenv("SLURM_PROCID");
	unsetenv("HETSGD_RANK");
	cr_assert_eq(hetsgd_boot_open(HETSGD_BOOT_AUTO, &b), -ENOENT);
	cr_assert_eq(b, (void *)0x1);
	cr_assert(strstr(hetsgd_errmsg(), "--mpi=pmix"), "%s", hetsgd_errmsg());
	cr_assert_eq(hetsgd_boot_open(HETSGD_BOOT_LOCAL, &b), -EINVAL);
}

Test(boot_open, pmi2_without_pmi_fd_fails_clearly)
{
	struct hetsgd_boot *b = NULL;
	int rc;

	unsetenv("PMI_FD");
	rc = hetsgd_boot_open(HETSGD_BOOT_PMI2, &b);
	cr_assert(rc == -ENOTCONN || rc == -ENOTSUP, "rc %d", rc);
	cr_assert_null(b);
	cr_assert(strstr(hetsgd_errmsg(), "pmi2"), "%s", hetsgd_errmsg());
}

/* Each rank contributes a value derived from its rank; all check all. */
static int rank_allgather(struct hetsgd_boot *b, void *arg)
{
	int rounds = *(int *)arg, size = hetsgd_boot_size(b), me = hetsgd_boot_rank(b);
	int round, r;

	for (round = 0; round < rounds; round++) {
		/* Vary the length so every round moves a different amount. */
		size_t len = 8 + (size_t)round * 1000;
		uint8_t *mine = malloc(len), *all = malloc(len * (size_t)size);
		size_t j;

		for (j = 0; j < len; j++)
			mine[j] = (uint8_t)(me * 31 + round * 7 + j);
		if (hetsgd_boot_allgather(b, mine, all, len))
			return 10;
		for (r = 0; r < size; r++)
			for (j = 0; j < len; j++)
				if (all[(size_t)r * len + j] != (uint8_t)(r * 31 + round * 7 + j))
					return 11;
		free(mine);
		free(all);
		if (hetsgd_boot_barrier(b))
			return 12;
	}
	return 0;
}

Test(boot_local, allgather_and_barrier_across_ranks)
{
	int rounds = 5, st[6], r;

	cr_assert_eq(hetsgd_boot_local_run(6, rank_allgather, &rounds, st), 0, "%s",
		     hetsgd_errmsg());
	for (r = 0; r < 6; r++)
		cr_assert(WIFEXITED(st[r]) && WEXITSTATUS(st[r]) == 0, "rank %d status 0x%x", r, st[r]);
}

Test(boot_local, single_rank)
{
	int rounds = 2;

	cr_assert_eq(hetsgd_boot_local_run(1, rank_allgather, &rounds, NULL), 0, "%s",
		     hetsgd_errmsg());
}

static int rank_fails(struct hetsgd_boot *b, void *arg)
{
	(void)arg;
	return hetsgd_boot_rank(b) == 2 ? 3 : 0;
}

Test(boot_local, failing_rank_is_named)
{
	int st[4];

	cr_assert_eq(hetsgd_boot_local_run(4, rank_fails, NULL, st), -ECHILD);
	cr_assert(strstr(hetsgd_errmsg(), "rank 2 exited with status 3"), "%s", hetsgd_errmsg());
	cr_assert_eq(WEXITSTATUS(st[2]), 3);
	cr_assert_eq(WEXITSTATUS(st[0]), 0);
}

/* Rank 1 leaves early: the others must fail promptly, not hang. */
static int rank_leaves_early(struct hetsgd_boot *b, void *arg)
{
	uint64_t v = (uint64_t)hetsgd_boot_rank(b), all[3];

	(void)arg;
	if (hetsgd_boot_rank(b) == 1)
		return 0;
	return hetsgd_boot_allgather(b, &v, all, sizeof(v)) == -ECONNRESET ? 5 : 6;
}

Test(boot_local, early_exit_fails_the_others, .timeout = 20)
{
	int st[3];

	cr_assert_eq(hetsgd_boot_local_run(3, rank_leaves_early, NULL, st), -ECHILD);
	cr_assert_eq(WEXITSTATUS(st[0]), 5, "rank 0 should see ECONNRESET, status 0x%x", st[0]);
	cr_assert_eq(WEXITSTATUS(st[2]), 5, "rank 2 should see ECONNRESET, status 0x%x", st[2]);
}

/* Ranks disagree on the length: every rank gets -EPROTO, then carries on. */
static int rank_mismatch(struct hetsgd_boot *b, void *arg)
{
	uint8_t mine[16] = { 0 }, all[64];
	size_t len = hetsgd_boot_rank(b) == 0 ? 8 : 16;
	uint32_t v = 7, vall[4];

	(void)arg;
	if (hetsgd_boot_allgather(b, mine, all, len) != -EPROTO)
		return 7;
	if (!strstr(hetsgd_errmsg(), "same calls"))
		return 8;
	/* The launcher stays usable after reporting the mismatch. */
	if (hetsgd_boot_allgather(b, &v, vall, sizeof(v)) || vall[3] != 7)
		return 9;
	return 0;
}

Test(boot_local, length_mismatch_is_reported_to_all)
{
	cr_assert_eq(hetsgd_boot_local_run(4, rank_mismatch, NULL, NULL), 0, "%s", hetsgd_errmsg());
}

static int rank_crashes(struct hetsgd_boot *b, void *arg)
{
	(void)arg;
	if (hetsgd_boot_rank(b) == 0)
		abort();
	return hetsgd_boot_barrier(b) ? 4 : 0;
}

Test(boot_local, killed_rank_is_reported, .timeout = 20)
{
	cr_assert_eq(hetsgd_boot_local_run(2, rank_crashes, NULL, NULL), -ECHILD);
	cr_assert(strstr(hetsgd_errmsg(), "rank 0 was killed by signal"), "%s", hetsgd_errmsg());
}

Test(boot_local, bad_arguments)
{
	cr_assert_eq(hetsgd_boot_local_run(0, rank_fails, NULL, NULL), -EINVAL);
	cr_assert_eq(hetsgd_boot_local_run(2, NULL, NULL, NULL), -EINVAL);
}

static int rank_too_big(struct hetsgd_boot *b, void *arg)
{
	/* volatile: the compiler must not see that the buffer is too small. */
	volatile size_t huge = (size_t)1 << 40;
	uint8_t one[8] = { 0 };

	(void)arg;
	return hetsgd_boot_allgather(b, one, one, huge) == -EMSGSIZE ? 0 : 1;
}

Test(boot_local, oversized_allgather_is_refused)
{
	cr_assert_eq(hetsgd_boot_local_run(2, rank_too_big, NULL, NULL), 0, "%s", hetsgd_errmsg());
}
