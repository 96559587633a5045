/*
 * The library's log (topology/common.c): HETSGD_LOG's levels and
 * subsystem lists, HETSGD_LOG_SUBSYS, the filter, the line format, and
 * the one warning an invalid setting gets.  Lines go to fd 2 in one
 * write, so each test reads fd 2 through a pipe of its own.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hetsgd_topology.h"

/* ---- fd 2 into a buffer ---------------------------------------------------- */

static int saved_fd = -1, pipe_rd = -1;
static char captured[8192];

static void capture_start(void)
{
	int p[2];

	cr_assert_eq(pipe(p), 0);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	saved_fd = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	close(p[1]);
	pipe_rd = p[0];
}

static const char *capture_end(void)
{
	ssize_t n, got = 0;

	dup2(saved_fd, STDERR_FILENO);
	close(saved_fd);
	while ((n = read(pipe_rd, captured + got, sizeof(captured) - 1 - (size_t)got)) > 0)
		got += n;
	close(pipe_rd);
	captured[got] = 0;
	return captured;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* No launcher's rank in the way of the warnings (only rank 0 warns). */
static void clean_env(void)
{
	unsetenv("HETSGD_RANK");
	unsetenv("PMIX_RANK");
	unsetenv("PMI_RANK");
	unsetenv("SLURM_PROCID");
	unsetenv("HETSGD_LOG");
	unsetenv("HETSGD_LOG_SUBSYS");
	hetsgd_log_set_rank(-1);
}

TestSuite(log, .init = clean_env);

/* ---- levels ----------------------------------------------------------------- */

Test(log, default_is_warn_and_quiet)
{
	cr_assert_eq(hetsgd_log_configure("", ""), 0);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_ERROR, "transport"));
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_WARN, "boot"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_INFO, "transport"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_DEBUG, "engine"));
	capture_start();
	hetsgd_log(HETSGD_LOG_INFO, "transport", "not shown");
	hetsgd_log(HETSGD_LOG_WARN, "boot", "shown");
	cr_assert_eq(count_lines(capture_end()), 1, "%s", captured);
}

Test(log, each_level_shows_itself_and_above)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int l = 0; l < 4; l++) {
		cr_assert_eq(hetsgd_log_configure(names[l], NULL), 0, "%s", names[l]);
		for (int m = 0; m < 4; m++)
			cr_assert_eq(hetsgd_log_enabled((enum hetsgd_log_level)m, "topo"), m <= l,
				     "HETSGD_LOG=%s, a line at %s", names[l], names[m]);
	}
	/* case does not matter, as in NCCL_DEBUG=INFO */
	cr_assert_eq(hetsgd_log_configure("DEBUG", NULL), 0);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_DEBUG, "boot"));
}

Test(log, reads_the_environment_when_not_given)
{
	setenv("HETSGD_LOG", "info", 1);
	setenv("HETSGD_LOG_SUBSYS", "boot", 1);
	cr_assert_eq(hetsgd_log_configure(NULL, NULL), 0);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_INFO, "boot"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_INFO, "transport"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_DEBUG, "boot"));
}

/* ---- subsystems -------------------------------------------------------------- */

Test(log, subsystem_list_filters_info_and_debug_only)
{
	cr_assert_eq(hetsgd_log_configure("debug:transport,boot", NULL), 0);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_DEBUG, "transport"));
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_INFO, "boot"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_INFO, "engine"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_DEBUG, "topo"));
	/* a narrowed log never hides a problem */
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_WARN, "engine"));
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_ERROR, "topo"));
}

Test(log, subsys_variable_and_exclusion)
{
	cr_assert_eq(hetsgd_log_configure("info", "^engine"), 0);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_INFO, "transport"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_INFO, "engine"));
	cr_assert_eq(hetsgd_log_configure("info", "all,^boot"), 0);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_INFO, "topo"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_INFO, "boot"));
	/* the list in HETSGD_LOG wins over HETSGD_LOG_SUBSYS */
	cr_assert_eq(hetsgd_log_configure("info:data", "boot"), 0);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_INFO, "data"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_INFO, "boot"));
}

/* ---- invalid settings --------------------------------------------------------- */

Test(log, invalid_level_warns_once_then_default)
{
	const char *out;
	int ret;

	capture_start();
	ret = hetsgd_log_configure("loud", NULL);
	out = capture_end();
	cr_assert_eq(ret, -EINVAL);
	cr_assert_eq(count_lines(out), 1, "%s", out);
	cr_assert(strstr(out, "HETSGD_LOG=\"loud\"") && strstr(out, "error, warn, info or debug"), "%s", out);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_WARN, "boot"));
	cr_assert_not(hetsgd_log_enabled(HETSGD_LOG_INFO, "boot"));
}

Test(log, invalid_subsystem_warns_once_then_all)
{
	const char *out;
	int ret;

	capture_start();
	ret = hetsgd_log_configure("info", "transport,verbz");
	out = capture_end();
	cr_assert_eq(ret, -EINVAL);
	cr_assert_eq(count_lines(out), 1, "%s", out);
	cr_assert(strstr(out, "HETSGD_LOG_SUBSYS=\"transport,verbz\"") && strstr(out, "\"verbz\"") &&
		  strstr(out, "boot, transport, topo, engine, data, app or all"), "%s", out);
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_INFO, "engine"), "the default is every subsystem");
	cr_assert(hetsgd_log_enabled(HETSGD_LOG_INFO, "transport"), "the level stays info");
}

Test(log, only_rank_zero_warns_about_a_setting)
{
	setenv("SLURM_PROCID", "3", 1);
	capture_start();
	cr_assert_eq(hetsgd_log_configure("loud", NULL), -EINVAL);
	cr_assert_str_empty(capture_end());
}

/* ---- the line ---------------------------------------------------------------- */

Test(log, line_has_time_rank_and_subsystem)
{
	regex_t re;
	const char *out;

	cr_assert_eq(hetsgd_log_configure("info", NULL), 0);
	hetsgd_log_set_rank(3);
	capture_start();
	hetsgd_log(HETSGD_LOG_INFO, "transport", "open: %s %d", "mlx5_0", 7);
	hetsgd_log(HETSGD_LOG_WARN, "boot", "with its own newline\n");
	out = capture_end();
	cr_assert_eq(regcomp(&re, "^hetsgd [0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{3} rank 3 transport: open: mlx5_0 7\n"
			     "hetsgd [0-9:.]{12} rank 3 boot: with its own newline\n$", REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, out, 0, NULL, 0), 0, "'%s'", out);
	regfree(&re);
	hetsgd_log_set_rank(-1);
	capture_start();
	hetsgd_log(HETSGD_LOG_WARN, "engine", "before the bootstrap");
	out = capture_end();
	cr_assert(strstr(out, " rank ? engine: before the bootstrap\n"), "'%s'", out);
}

Test(log, a_long_line_is_cut_not_overrun)
{
	static char big[5000];
	const char *out;

	memset(big, 'x', sizeof(big) - 1);
	cr_assert_eq(hetsgd_log_configure("warn", NULL), 0);
	capture_start();
	hetsgd_log(HETSGD_LOG_WARN, "app", "%s", big);
	out = capture_end();
	cr_assert_eq(count_lines(out), 1);
	cr_assert_lt(strlen(out), 2100);
	cr_assert_eq(out[strlen(out) - 1], '\n');
}
