/*
 * TCP rendezvous bootstrap: who is who, from the environment (rank, size,
 * secret, rendezvous address, the Slurm host list), and rank 0's listening
 * socket.  The variables are described in boot_tcp.c.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boot_tcp_priv.h"

/* ---- Slurm host list --------------------------------------------------- */

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
	       c == '-' || c == '.' || c == '_';
}

/*
 * First host of a Slurm host list: "node[003-010,12],gpu1" -> "node003",
 * "rack[2-3]-n[07,09]" -> "rack2-n07".  Brackets hold comma-separated
 * numbers or ranges; the first number is kept as written, with its zeros.
 */
int hetsgd_boot_tcp_first_host(const char *nodelist, char *out, size_t outlen)
{
	const char *p = nodelist;
	size_t n = 0;

#define HL_BAD(why)                                                                    \
	hetsgd_err(-EINVAL, "cannot read the first host of the Slurm node list '%.200s': %s; " \
		   "set HETSGD_RENDEZVOUS=host:port to rank 0's host instead", nodelist, why)

	if (!nodelist || !*nodelist)
		return hetsgd_err(-EINVAL, "the Slurm node list is empty: set HETSGD_RENDEZVOUS=host:port to rank 0's host");
	if (!out || !outlen)
		return hetsgd_err(-EINVAL, "no room for the host name");
	while (*p && *p != ',') {
		if (*p == '[') {
			size_t digits = 0;

			for (p++; is_digit(*p); p++, digits++) {
				if (n + 1 >= outlen)
					return hetsgd_err(-ENAMETOOLONG, "the first host of '%.200s' is longer than %zu characters",
							  nodelist, outlen - 1);
				out[n++] = *p;
			}
			if (!digits)
				return HL_BAD("a bracket does not start with a number");
			for (; *p && *p != ']'; p++)
				if (!is_digit(*p) && *p != ',' && *p != '-')
					return HL_BAD("a bracket holds something other than numbers, ',' and '-'");
			if (*p != ']')
				return HL_BAD("a '[' is not closed");
			if (p[-1] == ',' || p[-1] == '-')
				return HL_BAD("a bracket ends with ',' or '-'");
			p++;
			continue;
		}
		if (!is_host_char(*p))
			return HL_BAD(*p == ']' ? "a ']' has no '['" : "it holds a character not allowed in a host name");
		if (n + 1 >= outlen)
			return hetsgd_err(-ENAMETOOLONG, "the first host of '%.200s' is longer than %zu characters",
					  nodelist, outlen - 1);
		out[n++] = *p++;
	}
	if (!n)
		return HL_BAD("it starts with ','");
	out[n] = '\0';
	return 0;
#undef HL_BAD
}

/* ---- configuration from the environment -------------------------------- */

int btcp_parse_int(const char *var, const char *val, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(val, &end, 10);
	if (!*val || *end || errno || !(is_digit(*val) || *val == '-'))
		return hetsgd_err(-EINVAL, "%s='%.64s' is not a whole number", var, val);
	if (v < lo || v > hi)
		return hetsgd_err(-EINVAL, "%s=%ld is out of range: use %ld to %ld", var, v, lo, hi);
	*out = (int)v;
	return 0;
}

int btcp_get_rank_size(int *rank, int *size)
{
	const char *rv = getenv("HETSGD_RANK"), *sv = getenv("HETSGD_SIZE");
	const char *rn = "HETSGD_RANK", *sn = "HETSGD_SIZE";
	int ret;

	if (rv || sv) {
		if (!rv || !sv)
			return hetsgd_err(-EINVAL, "%s is set but %s is not: set both (or neither, under srun)",
					  rv ? rn : sn, rv ? sn : rn);
	} else {
		rv = getenv("SLURM_PROCID");
		sv = getenv("SLURM_NTASKS");
		rn = "SLURM_PROCID";
		sn = "SLURM_NTASKS";
		if (!rv || !sv)
			return hetsgd_err(-ENOENT,
					  "tcp bootstrap: no rank and size in the environment: set HETSGD_RANK and HETSGD_SIZE, "
					  "or start the ranks with srun, which sets SLURM_PROCID and SLURM_NTASKS");
	}
	ret = btcp_parse_int(sn, sv, 1, MAX_SIZE, size);
	if (!ret)
		ret = btcp_parse_int(rn, rv, 0, INT_MAX, rank);
	if (ret)
		return ret;
	if (*rank >= *size)
		return hetsgd_err(-EINVAL, "%s=%d is not below %s=%d: ranks are numbered 0 to size-1",
				  rn, *rank, sn, *size);
	return 0;
}

int btcp_get_secret(uint8_t key[16])
{
	const char *s = getenv("HETSGD_SECRET");
	size_t n = s ? strlen(s) : 0;

	if (!s)
		return hetsgd_err(-EACCES, "HETSGD_SECRET is not set: the TCP bootstrap admits only ranks that know the job's secret; "
				  ERR_SECRET_HOWTO);
	if (n < MIN_SECRET)
		return hetsgd_err(-EINVAL, "HETSGD_SECRET is %zu characters, too short to protect the rendezvous: use at least %d; "
				  ERR_SECRET_HOWTO, n, MIN_SECRET);
	btcp_derive_key(s, key);
	return 0;
}

static uint32_t fnv1a32(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}


static int parse_rendezvous(const char *val, struct rendezvous *rv)
{
	const char *colon, *h = val;
	size_t hlen;
	int port;

	if (*val == '[') {
		const char *close = strchr(val, ']');

		if (!close || close[1] != ':')
			return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s' is not [ipv6-address]:port", val);
		h = val + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(val, ':');
		if (!colon)
			return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s' has no port: use host:port, e.g. node001:29500", val);
		hlen = (size_t)(colon - val);
		if (memchr(val, ':', hlen))
			return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s': put an IPv6 address in brackets, e.g. [fe80::1]:29500", val);
	}
	if (!hlen || hlen >= sizeof(rv->host))
		return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s' has an empty or overlong host: use host:port", val);
	if (btcp_parse_int("HETSGD_RENDEZVOUS port", colon + 1, 1, 65535, &port))
		return hetsgd_err(-EINVAL, "HETSGD_RENDEZVOUS='%.200s' has a bad port: use host:port with a port from 1 to 65535",
				  val);
	memcpy(rv->host, h, hlen);
	rv->host[hlen] = '\0';
	snprintf(rv->port, sizeof(rv->port), "%d", port);
	return 0;
}

int btcp_get_rendezvous(struct rendezvous *rv)
{
	const char *val = getenv("HETSGD_RENDEZVOUS"), *nodes, *job, *step;
	struct in6_addr a6;
	struct in_addr a4;
	int ret;

	memset(rv, 0, sizeof(*rv));
	if (val) {
		ret = parse_rendezvous(val, rv);
		if (ret)
			return ret;
	} else {
		nodes = getenv("SLURM_STEP_NODELIST");
		if (!nodes)
			nodes = getenv("SLURM_JOB_NODELIST");
		if (!nodes)
			nodes = getenv("SLURM_NODELIST");
		job = getenv("SLURM_JOB_ID");
		if (!job)
			job = getenv("SLURM_JOBID");
		step = getenv("SLURM_STEP_ID");
		if (!step)
			step = getenv("SLURM_STEPID");
		if (!nodes || !job)
			return hetsgd_err(-ENOENT,
					  "tcp bootstrap: no rendezvous address: set HETSGD_RENDEZVOUS=host:port to rank 0's host and a free port "
					  "on every rank (e.g. HETSGD_RENDEZVOUS=node001:29500), or start the ranks with srun, "
					  "which sets SLURM_STEP_NODELIST and SLURM_JOB_ID");
		ret = hetsgd_boot_tcp_first_host(nodes, rv->host, sizeof(rv->host));
		if (ret)
			return ret;
		{
			char ids[160];

			snprintf(ids, sizeof(ids), "%.70s.%.70s", job, step ? step : "");
			snprintf(rv->port, sizeof(rv->port), "%u",
				 (unsigned)(PORT_BASE + fnv1a32(ids) % PORT_SPAN));
		}
		rv->from_slurm = 1;
	}
	rv->numeric = inet_pton(AF_INET, rv->host, &a4) == 1 || inet_pton(AF_INET6, rv->host, &a6) == 1;
	snprintf(rv->where, sizeof(rv->where), strchr(rv->host, ':') ? "[%s]:%s" : "%s:%s", rv->host, rv->port);
	return 0;
}

/* ---- rank 0: listening ----------------------------------------------- */

/* A listening socket on sa, or -errno. */
static int listen_on(const struct sockaddr *sa, socklen_t sl, int backlog)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, zero = 0, err;

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr))
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, sa, sl) || listen(fd, backlog)) {
		err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

int btcp_root_listen(const struct rendezvous *rv, int backlog, int *out)
{
	int fd;

	if (rv->numeric) {
		/* An address: listen there only. */
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
		struct addrinfo *res = NULL;
		int gai = getaddrinfo(rv->host, rv->port, &hints, &res);

		if (gai)
			return hetsgd_err(-EINVAL, "rank 0 cannot listen on %s: %s", rv->where, gai_strerror(gai));
		fd = listen_on(res->ai_addr, res->ai_addrlen, backlog);
		freeaddrinfo(res);
	} else {
		/*
		 * A name: listen on every address, IPv6 and IPv4 on one socket
		 * where the host has IPv6, IPv4 alone where it has not.
		 */
		uint16_t port = (uint16_t)atoi(rv->port);
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT,
					   .sin6_port = htons(port) };
		struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY),
					  .sin_port = htons(port) };

		fd = listen_on((struct sockaddr *)&s6, sizeof(s6), backlog);
		if (fd < 0 && fd != -EADDRINUSE)
			fd = listen_on((struct sockaddr *)&s4, sizeof(s4), backlog);
	}
	if (fd == -EADDRINUSE)
		return hetsgd_err(-EADDRINUSE,
				  "rank 0 cannot listen on port %s (rendezvous %s): another process uses it "
				  "(see ss -ltnp 'sport = :%s'): set HETSGD_RENDEZVOUS=host:port with a free port on every rank",
				  rv->port, rv->where, rv->port);
	if (fd == -EADDRNOTAVAIL)
		return hetsgd_err(-EADDRNOTAVAIL,
				  "rank 0 cannot listen on %s: %s is not an address of this host; HETSGD_RENDEZVOUS must name "
				  "the host where rank 0 runs", rv->where, rv->host);
	if (fd < 0)
		return hetsgd_err(fd, "rank 0 cannot listen on %s: %s", rv->where, strerror(-fd));
	*out = fd;
	return 0;
}
