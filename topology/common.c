/*
 * What every room of the library shares: one error channel, one log, one
 * clock and one reader of integer settings.  They live in the topology room because
 * it is the one every other room may depend on (apps -> algo ->
 * transport -> topology).
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "hetsgd_topology.h"

#define ERRMSG_MAX 1024		/* room for a rendezvous diagnosis */

/* Per thread, so that concurrent ranks' threads do not garble each other. */
static _Thread_local char errbuf[ERRMSG_MAX];

const char *hetsgd_errmsg(void)
{
	return errbuf;
}

int hetsgd_error(int err, const char *fmt, ...)
{
	char msg[ERRMSG_MAX];
	va_list ap;

	/* Through a copy: a message often quotes the one it replaces. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(errbuf, msg, sizeof(errbuf));
	return err;
}

double hetsgd_clock_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int hetsgd_env_long(const char *name, long lo, long hi, long *out)
{
	const char *v = getenv(name);
	char *end;
	long x;

	if (!v || !*v)
		return 0;
	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		return hetsgd_error(-EINVAL, "%s=\"%s\": expected an integer from %ld to %ld: fix or unset it",
				    name, v, lo, hi);
	*out = x;
	return 1;
}

/* ---- the log ------------------------------------------------------------- */

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const char *const subsys_names[] = { "boot", "transport", "topo", "engine", "data", "app" };
#define NSUBSYS (sizeof(subsys_names) / sizeof(subsys_names[0]))
#define SUBSYS_ALL ((1u << NSUBSYS) - 1)
#define LOG_LINE_MAX 2048

/* Quiet by default: a library that talks only when something is wrong. */
static _Atomic int log_level = HETSGD_LOG_WARN;
static _Atomic unsigned log_subsys = SUBSYS_ALL;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static _Atomic int log_rank = -1;
/* Threads that play ranks of their own (the tests, a caller's threads). */
static _Thread_local int log_thread_rank = -1;

static int subsys_bit(const char *name, size_t len)
{
	for (size_t i = 0; i < NSUBSYS; i++)
		if (strlen(subsys_names[i]) == len && !strncasecmp(subsys_names[i], name, len))
			return (int)i;
	return -1;
}

static void log_emit(enum hetsgd_log_level level, const char *subsys, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	int rank = log_thread_rank >= 0 ? log_thread_rank : atomic_load(&log_rank);
	size_t n;
	int k;

	(void)level;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	if (rank >= 0)
		k = snprintf(line, sizeof(line), "hetsgd %02d:%02d:%02d.%03ld rank %d %s: ", tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, rank, subsys);
	else
		k = snprintf(line, sizeof(line), "hetsgd %02d:%02d:%02d.%03ld rank ? %s: ", tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, subsys);
	n = k < 0 ? 0 : (size_t)k < sizeof(line) ? (size_t)k : sizeof(line) - 1;
	k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n += k < 0 ? 0 : (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
	while (n && line[n - 1] == '\n')
		n--;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write, so that concurrent ranks' lines do not interleave. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

/*
 * Every rank of a job reads the same environment: only rank 0 (or a
 * process that is not a launcher's rank) says that a setting is wrong.
 */
static int launcher_rank_nonzero(void)
{
	static const char *const vars[] = { "HETSGD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID" };

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);

		if (v && *v)
			return strcmp(v, "0") != 0;
	}
	return atomic_load(&log_rank) > 0;
}

static void log_warn_setting(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_warn_setting(const char *fmt, ...)
{
	va_list ap;

	if (launcher_rank_nonzero())
		return;
	va_start(ap, fmt);
	log_emit(HETSGD_LOG_WARN, "log", fmt, ap);
	va_end(ap);
}

/* "boot,transport", "^engine", "all": a mask, or -1 naming no known one. */
static long parse_subsys(const char *list, const char *var)
{
	unsigned mask = list[0] == '^' ? SUBSYS_ALL : 0;
	const char *p = list;

	while (*p) {
		size_t len = strcspn(p, ",");
		int neg = *p == '^', bit;
		const char *name = p + neg;
		size_t nlen = len - (size_t)neg;

		if (nlen == 3 && !strncasecmp(name, "all", 3)) {
			mask = neg ? 0 : SUBSYS_ALL;
		} else if (nlen) {
			bit = subsys_bit(name, nlen);
			if (bit < 0) {
				log_warn_setting("%s=\"%s\": \"%.*s\" is not a subsystem: use a comma-separated list "
						 "of boot, transport, topo, engine, data, app or all (^NAME leaves one out); "
						 "logging every subsystem", var, list, (int)nlen, name);
				return -1;
			}
			if (neg)
				mask &= ~(1u << bit);
			else
				mask |= 1u << bit;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return mask;
}

static int log_configure(const char *log, const char *subsys)
{
	int level = HETSGD_LOG_WARN, ret = 0;
	long mask = SUBSYS_ALL;
	const char *colon = NULL;
	size_t len;

	if (!log)
		log = getenv("HETSGD_LOG");
	if (!subsys)
		subsys = getenv("HETSGD_LOG_SUBSYS");
	if (log && *log) {
		colon = strchr(log, ':');
		len = colon ? (size_t)(colon - log) : strlen(log);
		level = -1;
		for (int i = 0; i < 4; i++)
			if (strlen(level_names[i]) == len && !strncasecmp(level_names[i], log, len))
				level = i;
		if (level < 0) {
			log_warn_setting("HETSGD_LOG=\"%s\" is not a log level: use error, warn, info or debug, "
					 "optionally with :SUBSYS,... (e.g. debug:transport,boot); using warn", log);
			level = HETSGD_LOG_WARN;
			ret = -EINVAL;
		}
	}
	/* a list in HETSGD_LOG wins over HETSGD_LOG_SUBSYS */
	if (colon)
		mask = parse_subsys(colon + 1, "HETSGD_LOG");
	else if (subsys && *subsys)
		mask = parse_subsys(subsys, "HETSGD_LOG_SUBSYS");
	if (mask < 0) {
		mask = SUBSYS_ALL;
		ret = -EINVAL;
	}
	atomic_store(&log_level, level);
	atomic_store(&log_subsys, (unsigned)mask);
	return ret;
}

static void log_from_env(void)
{
	log_configure(NULL, NULL);
}

/* Marks the environment as read: an explicit configuration wins. */
static void log_env_skipped(void)
{
}

int hetsgd_log_configure(const char *log, const char *subsys)
{
	pthread_once(&log_once, log_env_skipped);
	return log_configure(log, subsys);
}

void hetsgd_log_set_rank(int rank)
{
	log_thread_rank = rank;
	atomic_store(&log_rank, rank);
}

int hetsgd_log_enabled(enum hetsgd_log_level level, const char *subsys)
{
	int bit;

	pthread_once(&log_once, log_from_env);
	if ((int)level > atomic_load(&log_level))
		return 0;
	if (level <= HETSGD_LOG_WARN || !subsys)
		return 1;
	bit = subsys_bit(subsys, strlen(subsys));
	/* a name outside the list is the library's own slip: show it */
	return bit < 0 || (atomic_load(&log_subsys) >> bit) & 1;
}

void hetsgd_log(enum hetsgd_log_level level, const char *subsys, const char *fmt, ...)
{
	va_list ap;

	if (!hetsgd_log_enabled(level, subsys))
		return;
	va_start(ap, fmt);
	log_emit(level, subsys ? subsys : "hetsgd", fmt, ap);
	va_end(ap);
}
