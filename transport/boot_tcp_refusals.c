/*
 * TCP rendezvous bootstrap: rank 0 counts the connections it refuses
 * instead of logging them one by one (the first at once, then a summary
 * at most every LOG_EVERY_MS), and, when it gives up, says from what it
 * saw why the ranks did not come.
 */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "boot_tcp_priv.h"

static const struct {
	const char *label;
	int unauth;
} refusal_info[RF_COUNT] = {
	[RF_SILENT] = { "sent nothing before the handshake deadline", 1 },
	[RF_STALLED] = { "did not finish the handshake before the deadline", 1 },
	[RF_EVICT_SOURCE] = { "closed unauthenticated: too many at once from one address", 1 },
	[RF_EVICT_FULL] = { "closed unauthenticated: too many at once in all", 1 },
	[RF_GARBAGE] = { "not a hetsgd bootstrap client", 1 },
	[RF_HUNGUP] = { "hung up before authenticating", 1 },
	[RF_LATE] = { "still authenticating when rank 0 closed the bootstrap", 1 },
	[RF_VERSION] = { "another bootstrap protocol version", 0 },
	[RF_BAD_MAC] = { "wrong secret", 0 },
	[RF_BAD_SIZE] = { "wrong job size", 0 },
	[RF_BAD_RANK] = { "rank out of range", 0 },
	[RF_STOPPED] = { "arrived after rank 0 stopped the job", 0 },
};

void btcp_emit_line(const char *line)
{
	/* refusals and their summaries: visible at the default level */
	hetsgd_log(HETSGD_LOG_WARN, "boot", "%s", line);
}

/* "N reason (e.g. ADDR: detail), ...; from IP xN, ..." into buf. */
void btcp_refusals_format(const struct refusals *rf, int window, char *buf, size_t len)
{
	const unsigned *cnt = window ? rf->win : rf->total;
	size_t n = 0;
	int i, shown = 0;

#define ADD(...) do { if (n < len) n += (size_t)snprintf(buf + n, len - n, __VA_ARGS__); } while (0)
	buf[0] = '\0';
	for (i = 0; i < RF_COUNT; i++) {
		const char *ex = window ? rf->example[i] : rf->first[i];

		if (!cnt[i])
			continue;
		ADD("%s%u %s", shown++ ? ", " : "", cnt[i], refusal_info[i].label);
		if (ex[0])
			ADD(" (%s%s)", cnt[i] > 1 ? "first: " : "", ex);
	}
	ADD("; from");
	for (i = 0, shown = 0; i < rf->nsrc; i++) {
		unsigned k = window ? rf->src[i].win : rf->src[i].total;

		if (k && shown < 8)
			ADD("%s %s x%u", shown++ ? "," : "", rf->src[i].ip, k);
	}
	if (window ? rf->other_win : rf->other_total)
		ADD(" and %u from other addresses", window ? rf->other_win : rf->other_total);
#undef ADD
	if (n >= len && len > 4)
		memcpy(buf + len - 4, "...", 4);
}

/* One summary line for the window, then a new window. */
void btcp_refusals_flush(struct refusals *rf, int64_t now)
{
	char line[1536], body[1400];

	if (!rf->win_sum)
		return;
	btcp_refusals_format(rf, 1, body, sizeof(body));
	snprintf(line, sizeof(line), "tcp bootstrap: refused %u connection%s in %.1f s: %s",
		 rf->win_sum, rf->win_sum == 1 ? "" : "s", (double)(now - rf->win_start) / 1000.0, body);
	btcp_emit_line(line);
	btcp_refusals_window(rf, now);
}

void btcp_refusals_window(struct refusals *rf, int64_t now)
{
	int i;

	memset(rf->win, 0, sizeof(rf->win));
	for (i = 0; i < RF_COUNT; i++)
		rf->example[i][0] = '\0';
	for (i = 0; i < rf->nsrc; i++)
		rf->src[i].win = 0;
	rf->other_win = 0;
	rf->win_sum = 0;
	rf->win_start = now;
	rf->log_next = now + LOG_EVERY_MS;
}

void btcp_refusals_count(struct refusals *rf, enum refusal why, const char *ip, const char *example)
{
	int64_t now = now_ms();
	int i;

	if (!rf->win_sum)
		rf->win_start = now;
	rf->win[why]++;
	rf->total[why]++;
	rf->win_sum++;
	if (!rf->example[why][0])
		snprintf(rf->example[why], EXAMPLE_LEN, "%s", example);
	if (!rf->first[why][0])
		snprintf(rf->first[why], EXAMPLE_LEN, "%s", example);
	for (i = 0; i < rf->nsrc && strcmp(rf->src[i].ip, ip); i++)
		;
	if (i == rf->nsrc && rf->nsrc < MAX_SOURCES)
		snprintf(rf->src[rf->nsrc++].ip, sizeof(rf->src[0].ip), "%s", ip);
	if (i < rf->nsrc) {
		rf->src[i].win++;
		rf->src[i].total++;
		rf->src[i].unauth += (unsigned)refusal_info[why].unauth;
	} else {
		rf->other_win++;
		rf->other_total++;
		rf->other_unauth += (unsigned)refusal_info[why].unauth;
	}
	/* The first refusal shows at once; later ones wait for the summary. */
	if (now >= rf->log_next)
		btcp_refusals_flush(rf, now);
}
static void missing_ranks(const struct tcp_state *st, int size, char *buf, size_t len)
{
	size_t n = 0;
	int r, shown = 0;

	buf[0] = '\0';
	for (r = 1; r < size && n + 16 < len; r++) {
		if (st->pfd_fd[r] >= 0)
			continue;
		if (shown == 16) {
			snprintf(buf + n, len - n, ", ...");
			break;
		}
		n += (size_t)snprintf(buf + n, len - n, "%s%d", shown ? ", " : "", r);
		shown++;
	}
}

/* The busiest unauthenticated sources, "a (n), b (m)", most first. */
static void flood_sources(const struct refusals *rf, char *buf, size_t len)
{
	int used[MAX_SOURCES] = { 0 }, k, i;
	size_t n = 0;

	buf[0] = '\0';
	for (k = 0; k < 4; k++) {
		int best = -1;

		for (i = 0; i < rf->nsrc; i++)
			if (!used[i] && rf->src[i].unauth && (best < 0 || rf->src[i].unauth > rf->src[best].unauth))
				best = i;
		if (best < 0)
			break;
		used[best] = 1;
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s (%u)", k ? ", " : "", rf->src[best].ip,
					      rf->src[best].unauth);
	}
	if (rf->other_unauth && n < len)
		snprintf(buf + n, len - n, "%sothers (%u)", n ? ", " : "", rf->other_unauth);
}

/*
 * Why the ranks did not all come, from what rank 0 saw: a wrong secret
 * (someone completed the handshake with a bad MAC), a flood (many
 * connections that never authenticated), other mismatches, or nothing
 * at all (the ranks never reached this port).
 */
int btcp_timeout_err(const struct refusals *rf, const struct tcp_state *st, int size,
		     const struct rendezvous *rv, unsigned accepted, int timeout_s)
{
	unsigned unauth = 0, cfg = rf->total[RF_VERSION] + rf->total[RF_BAD_SIZE] + rf->total[RF_BAD_RANK];
	char miss[160], why[800], srcs[200];
	size_t n = 0;
	int i;

	for (i = 0; i < RF_COUNT; i++)
		if (refusal_info[i].unauth)
			unauth += rf->total[i];
	missing_ranks(st, size, miss, sizeof(miss));
	flood_sources(rf, srcs, sizeof(srcs));
	why[0] = '\0';
#define ADD(...) do { if (n < sizeof(why)) n += (size_t)snprintf(why + n, sizeof(why) - n, __VA_ARGS__); } while (0)
	if (!accepted) {
		ADD("no connection reached rank 0 at all: check that the other ranks were started with "
		    "HETSGD_RENDEZVOUS=%s, and that no firewall blocks port %s", rv->where, rv->port);
	} else {
		if (rf->total[RF_BAD_MAC])
			ADD("WRONG SECRET: %u connection%s completed the handshake with a wrong proof (%s): they were "
			    "started with another HETSGD_SECRET; export the same value for every rank. ",
			    rf->total[RF_BAD_MAC], rf->total[RF_BAD_MAC] == 1 ? "" : "s", rf->first[RF_BAD_MAC]);
		if (cfg)
			ADD("MISMATCH: %u authenticated connection%s had another job size, rank range or protocol "
			    "version (first: %s). ", cfg, cfg == 1 ? "" : "s",
			    rf->first[RF_BAD_SIZE][0] ? rf->first[RF_BAD_SIZE]
			    : rf->first[RF_BAD_RANK][0] ? rf->first[RF_BAD_RANK] : rf->first[RF_VERSION]);
		if (unauth >= FLOOD_MIN)
			ADD("FLOOD: %u connections never authenticated (silent, garbage or cut off), from %s: "
			    "something other than this job is connecting to port %s; stop it, or keep it off the port "
			    "with a firewall (HETSGD_BOOT_PER_SOURCE and HETSGD_BOOT_HANDSHAKE_MS bound what one address "
			    "can hold). ", unauth, srcs, rv->port);
		else if (unauth)
			ADD("%u connection%s never authenticated (from %s; port scanners or other programs). ",
			    unauth, unauth == 1 ? "" : "s", srcs);
		if (!rf->total[RF_BAD_MAC] && !cfg)
			ADD("No missing rank presented itself: check that they were started, with HETSGD_RENDEZVOUS=%s, "
			    "and that no firewall blocks port %s from their hosts", rv->where, rv->port);
	}
#undef ADD
	for (n = strlen(why); n && why[n - 1] == ' '; n--)
		why[n - 1] = '\0';
	return hetsgd_err(-ETIMEDOUT, "rank 0 (rendezvous %s) waited %d s for ranks %s: %s (HETSGD_BOOT_TIMEOUT sets the wait)",
			  rv->where, timeout_s, miss, why);
}
