/*
 * TCP rendezvous bootstrap: real forked ranks on loopback, real sockets,
 * and clients that misbehave on purpose (wrong secret, garbage, silence,
 * a fake rank 0, wrong size, duplicate rank, ranks that die).
 *
 * Each rank is a child process with HETSGD_RANK/SIZE/RENDEZVOUS/SECRET in
 * its environment; its stderr goes to TAG.stderr and, when it fails, the
 * error number and hetsgd_errmsg() to TAG.err, in a folder per test.
 */
#define _GNU_SOURCE		/* memmem */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hetsgd_transport.h"

/* Internal to the library (transport/boot_tcp.c), exported for tests. */
#include "transport_priv.h"

#define GOOD_SECRET "0123456789abcdef0123456789abcdef"
#define OTHER_SECRET "fedcba9876543210fedcba9876543210"
#define OPEN_FAILED 90
#define OPEN_SLOW 91

/* ---- helpers ----------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void clean_env(void)
{
	static const char *const vars[] = {
		"HETSGD_RANK", "HETSGD_SIZE", "HETSGD_RENDEZVOUS", "HETSGD_SECRET", "HETSGD_BOOT_TIMEOUT",
		"HETSGD_BOOT_HANDSHAKE_MS", "HETSGD_BOOT_PER_SOURCE", "HETSGD_BOOT_MAX_PENDING",
		"SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST",
		"SLURM_NODELIST", "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_ID", "SLURM_STEPID",
		"SLURMD_NODENAME", "PMIX_RANK", "PMIX_NAMESPACE", "PMI_FD", "HETSGD_LOG", "HETSGD_LOG_SUBSYS",
	};
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

/* A port nobody listens on right now: bind port 0 and read it back. */
static int free_port(int family)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int fd = socket(family, SOCK_STREAM, 0), port;

	cr_assert_geq(fd, 0);
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (void *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (void *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*s4);
	}
	cr_assert_eq(bind(fd, (struct sockaddr *)&ss, sl), 0, "bind: %s", strerror(errno));
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
	port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					: ((struct sockaddr_in *)&ss)->sin_port);
	close(fd);
	return port;
}

struct job {
	char dir[64];
	int port;
	char rendezvous[64];
};

static void job_init(struct job *j)
{
	snprintf(j->dir, sizeof(j->dir), "/tmp/hetsgd-tcp-XXXXXX");
	cr_assert_not_null(mkdtemp(j->dir));
	j->port = free_port(AF_INET);
	snprintf(j->rendezvous, sizeof(j->rendezvous), "127.0.0.1:%d", j->port);
}

static void job_fini(struct job *j)
{
	DIR *d = opendir(j->dir);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", j->dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(j->dir);
}

static const char *slurp(const struct job *j, const char *tag, const char *ext)
{
	static char bufs[4][16384];
	static int which;
	char *buf = bufs[which++ & 3], path[512];
	ssize_t n = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s.%s", j->dir, tag, ext);
	buf[0] = '\0';
	fd = open(path, O_RDONLY);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(bufs[0]) - 1);
		close(fd);
	}
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int file_exists(const struct job *j, const char *tag, const char *ext)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.%s", j->dir, tag, ext);
	return access(path, F_OK) == 0;
}

static void write_file(const struct job *j, const char *tag, const char *ext, const char *text)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s.%s", j->dir, tag, ext);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return;
	if (write(fd, text, strlen(text)) < 0)
		_exit(99);
	close(fd);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (; (hay = strstr(hay, needle)); hay++)
		n++;
	return n;
}

typedef int (*rank_fn)(struct hetsgd_boot *b, void *arg);

struct rank_spec {
	const char *tag;
	int rank, size;
	const char *secret;		/* NULL: GOOD_SECRET */
	const char *rendezvous;		/* NULL: the job's 127.0.0.1:port */
	const char *timeout_s;		/* HETSGD_BOOT_TIMEOUT; NULL: 20 */
	int delay_ms;
	int open_limit_ms;		/* exit OPEN_SLOW if open took longer */
	rank_fn fn;
	void *arg;
};

static const struct job *child_job;
static const char *child_tag;

/* In a rank: keep the error for the test to read. */
static void note_error(int rc)
{
	char text[700];

	snprintf(text, sizeof(text), "%d %s", rc, hetsgd_errmsg());
	write_file(child_job, child_tag, "err", text);
}

static pid_t spawn(const struct job *j, const struct rank_spec *s)
{
	char path[512], num[16];
	struct hetsgd_boot *b;
	int64_t t0;
	pid_t pid;
	int fd, rc;

	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid)
		return pid;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	child_job = j;
	child_tag = s->tag;
	snprintf(path, sizeof(path), "%s/%s.stderr", j->dir, s->tag);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
		_exit(98);
	close(fd);
	snprintf(num, sizeof(num), "%d", s->rank);
	setenv("HETSGD_RANK", num, 1);
	snprintf(num, sizeof(num), "%d", s->size);
	setenv("HETSGD_SIZE", num, 1);
	setenv("HETSGD_RENDEZVOUS", s->rendezvous ? s->rendezvous : j->rendezvous, 1);
	setenv("HETSGD_SECRET", s->secret ? s->secret : GOOD_SECRET, 1);
	setenv("HETSGD_BOOT_TIMEOUT", s->timeout_s ? s->timeout_s : "20", 1);
	if (s->delay_ms)
		sleep_ms(s->delay_ms);
	t0 = now_ms();
	rc = hetsgd_boot_open(HETSGD_BOOT_TCP, &b);
	if (rc) {
		note_error(rc);
		_exit(OPEN_FAILED);
	}
	write_file(j, s->tag, "opened", "");
	if (s->open_limit_ms && now_ms() - t0 > s->open_limit_ms) {
		char text[64];

		snprintf(text, sizeof(text), "open took %lld ms", (long long)(now_ms() - t0));
		write_file(j, s->tag, "err", text);
		_exit(OPEN_SLOW);
	}
	rc = s->fn ? s->fn(b, s->arg) : 0;
	if (rc)
		note_error(-rc);
	hetsgd_boot_close(b);
	_exit(rc);
}

/* Exit code (or 128 + signal); kills the child if it outlives timeout_ms. */
static int reap(pid_t pid, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	int st = 0;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -2;
		}
		sleep_ms(10);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -3;
}

static void expect_exit(const struct job *j, pid_t pid, const char *tag, int want, int timeout_ms)
{
	int got = reap(pid, timeout_ms);

	cr_assert_eq(got, want, "%s exited %d (-2: hung, killed), expected %d; error: %s; stderr: %s",
		     tag, got, want, slurp(j, tag, "err"), slurp(j, tag, "stderr"));
}

static void wait_file(const struct job *j, const char *tag, const char *ext, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;

	while (!file_exists(j, tag, ext)) {
		cr_assert_lt(now_ms(), end, "%s.%s did not appear; error: %s", tag, ext, slurp(j, tag, "err"));
		sleep_ms(10);
	}
}

/* TAG.EXT once it holds text, or as it is after timeout_ms. */
static const char *wait_text(const struct job *j, const char *tag, const char *ext, const char *text, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	const char *got;

	while (!strstr(got = slurp(j, tag, ext), text) && now_ms() < end)
		sleep_ms(10);
	return got;
}

/*
 * The set-up most tests share: ranks first..first+n-1 of a job of size,
 * each from tmpl with its own rank and the tag "rN".
 */
struct ranks {
	pid_t pid[8];
	char tag[8][8];
};

static void start_ranks(const struct job *j, struct ranks *rk, int first, int n, int size,
			const struct rank_spec *tmpl)
{
	int r;

	cr_assert_leq(first + n, 8);
	for (r = first; r < first + n; r++) {
		struct rank_spec s = *tmpl;

		snprintf(rk->tag[r], sizeof(rk->tag[r]), "r%d", r);
		s.tag = rk->tag[r];
		s.rank = r;
		s.size = size;
		rk->pid[r] = spawn(j, &s);
	}
}

/* Ranks first..first+n-1 exit with want within timeout_ms each. */
static void expect_ranks(const struct job *j, const struct ranks *rk, int first, int n, int want, int timeout_ms)
{
	int r;

	for (r = first; r < first + n; r++)
		expect_exit(j, rk->pid[r], rk->tag[r], want, timeout_ms);
}

/* ---- rank bodies ------------------------------------------------------- */

static uint8_t pattern(int rank, int round, size_t j)
{
	return (uint8_t)(rank * 37 + round * 11 + j * 7 + (j >> 9));
}

/* Allgathers of several lengths (0 and > 64 KiB included), then barriers. */
static int rank_exchange(struct hetsgd_boot *b, void *arg)
{
	static const size_t lens[] = { 0, 1, 8, 1000, 65536 + 100, 300000 };
	int size = hetsgd_boot_size(b), me = hetsgd_boot_rank(b), r;
	size_t k, j;

	(void)arg;
	if (hetsgd_boot_get_kind(b) != HETSGD_BOOT_TCP)
		return 9;
	for (k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		size_t len = lens[k];
		uint8_t *mine = malloc(len + 1), *all = malloc(len * (size_t)size + 1);

		for (j = 0; j < len; j++)
			mine[j] = pattern(me, (int)k, j);
		if (hetsgd_boot_allgather(b, mine, all, len))
			return 10;
		for (r = 0; r < size; r++)
			for (j = 0; j < len; j++)
				if (all[(size_t)r * len + j] != pattern(r, (int)k, j))
					return 11;
		free(mine);
		free(all);
		if (hetsgd_boot_barrier(b))
			return 12;
	}
	return 0;
}

/* One small allgather with verified contents and a barrier. */
static int rank_once(struct hetsgd_boot *b, void *arg)
{
	uint64_t mine = 1000 + (uint64_t)hetsgd_boot_rank(b), all[64];
	int r;

	(void)arg;
	if (hetsgd_boot_allgather(b, &mine, all, sizeof(mine)))
		return 20;
	for (r = 0; r < hetsgd_boot_size(b); r++)
		if (all[r] != 1000 + (uint64_t)r)
			return 21;
	return hetsgd_boot_barrier(b) ? 22 : 0;
}

/* A collective that must fail (someone died): 0 when it does, with a message. */
static int rank_expect_reset(struct hetsgd_boot *b, void *arg)
{
	const char *must = arg;
	int rc = hetsgd_boot_barrier(b);

	if (rc != -ECONNRESET)
		return 30;
	if (must && !strstr(hetsgd_errmsg(), must))
		return 31;
	/* The handle stays failed, quickly. */
	if (hetsgd_boot_barrier(b) != -ECONNRESET || !strstr(hetsgd_errmsg(), "failed earlier"))
		return 32;
	return 0;
}

/* ---- wire helpers for hand-made clients and a fake rank 0 -------------- */

static void put32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* The key derivation and MACs documented in boot_tcp.c. */
static void kdf(const char *secret, uint8_t key[16])
{
	static const uint8_t k0[16] = "hetsgd-tcp-kdf-0", k1[16] = "hetsgd-tcp-kdf-1";

	put64(key, hetsgd_boot_tcp_siphash(k0, secret, strlen(secret)));
	put64(key + 8, hetsgd_boot_tcp_siphash(k1, secret, strlen(secret)));
}

static void mac(const uint8_t key[16], const char *label, const uint8_t hello[32],
		const uint8_t chal[32], const uint8_t *extra, size_t elen, uint8_t out[8])
{
	uint8_t buf[80];

	memcpy(buf, label, 8);
	memcpy(buf + 8, hello, 32);
	memcpy(buf + 40, chal, 32);
	if (elen)
		memcpy(buf + 72, extra, elen);
	put64(out, hetsgd_boot_tcp_siphash(key, buf, 72 + elen));
}

static int full_io(int fd, void *buf, size_t len, int sending)
{
	uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = { .fd = fd, .events = sending ? POLLOUT : POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 10000) != 1)
			return -ETIMEDOUT;
		n = sending ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		if (n == 0)
			return -EPIPE;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Connect to 127.0.0.1:port, retrying while rank 0 is not listening yet. */
static int raw_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int64_t end = now_ms() + 10000;

	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		cr_assert_geq(fd, 0);
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			return fd;
		close(fd);
		cr_assert_lt(now_ms(), end, "could not connect to 127.0.0.1:%d: %s", port, strerror(errno));
		sleep_ms(20);
	}
}

/* True when the peer closed the connection within timeout_ms. */
static int closed_by_peer(int fd, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	uint8_t sink[256];

	while (now_ms() < end) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 100) != 1)
			continue;
		n = recv(fd, sink, sizeof(sink), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 1;
	}
	return 0;
}

/* The local port of a connected socket. */
static int local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	return ntohs(sa.sin_port);
}

/*
 * Authenticate by hand as (rank, size) with the given secret.  Returns the
 * welcome status (after checking rank 0's proof), or -1 when rank 0 closed
 * the connection instead.  When admitted and keep is not NULL, the
 * connection stays open in *keep (an impostor holding a rank's place).
 */
/* A hand-made client, one step at a time. */
struct raw {
	int fd;
	uint8_t key[16], hello[32], chal[32];
};

/* Connect, send a HELLO claiming (rank, size), read the challenge. */
static void raw_hello(struct raw *c, int port, const char *secret, uint32_t rank, uint32_t size)
{
	memset(c->hello, 0, sizeof(c->hello));
	memcpy(c->hello, "HGTB\x01", 5);
	put32(c->hello + 8, rank);
	put32(c->hello + 12, size);
	memset(c->hello + 16, 0xa5, 16);
	kdf(secret, c->key);
	c->fd = raw_connect(port);
	cr_assert_eq(full_io(c->fd, c->hello, sizeof(c->hello), 1), 0);
	cr_assert_eq(full_io(c->fd, c->chal, sizeof(c->chal), 0), 0, "no challenge from rank 0");
	cr_assert_eq(memcmp(c->chal, "HGTB\x01\x00", 6), 0, "challenge header");
}

static void raw_proof(struct raw *c)
{
	uint8_t proof[8];

	mac(c->key, "HGTBpeer", c->hello, c->chal, NULL, 0, proof);
	cr_assert_eq(full_io(c->fd, proof, sizeof(proof), 1), 0);
}

/*
 * Read the welcome: its status (after checking rank 0's proof), or -1 when
 * rank 0 closed the connection instead.  When admitted and keep is not
 * NULL, the connection stays open in *keep (an impostor holding a rank's
 * place); otherwise it is closed.
 */
static int raw_welcome(struct raw *c, int *keep)
{
	uint8_t welcome[16], want[8];

	if (full_io(c->fd, welcome, sizeof(welcome), 0)) {
		close(c->fd);
		return -1;
	}
	mac(c->key, "HGTBrnk0", c->hello, c->chal, welcome, 8, want);
	/* A wrong proof is answered without one: rank 0 cannot make it for our key. */
	cr_assert(get32(welcome) == 4 || !memcmp(want, welcome + 8, 8), "rank 0's proof does not verify");
	if (get32(welcome) == 0) {
		if (keep)
			*keep = c->fd;
		else
			close(c->fd);	/* admitted, but this is not a real rank: leave at once */
		return 0;
	}
	cr_assert(closed_by_peer(c->fd, 5000), "rank 0 keeps a refused connection open");
	close(c->fd);
	return (int)get32(welcome);
}

static int raw_claim(int port, const char *secret, uint32_t rank, uint32_t size, int *keep)
{
	struct raw c;

	raw_hello(&c, port, secret, rank, size);
	raw_proof(&c);
	return raw_welcome(&c, keep);
}

static int raw_join(int port, const char *secret, uint32_t rank, uint32_t size)
{
	return raw_claim(port, secret, rank, size, NULL);
}

static volatile sig_atomic_t flood_stopping;

static void flood_on_term(int sig)
{
	(void)sig;
	flood_stopping = 1;
}

/*
 * A flood, in a child process bounded in time and count: nconn
 * connections to 127.0.0.1:port, silent or (hello) sending a well-formed
 * HELLO and then nothing, each reopened as soon as it is dropped, for
 * run_ms or until max_connects connections were made.  Writes the number
 * it made to flood.count.
 */
static pid_t flood_start(const struct job *j, int port, int nconn, int run_ms, int max_connects, int hello)
{
	static const uint8_t hello_msg[32] = "HGTB\x01\x00\x00\x00\x01\x00\x00\x00\x04";
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct pollfd pfd[256];
	int64_t end;
	int made = 0, i;
	char text[32];
	pid_t pid;

	cr_assert_leq(nconn, 256);
	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGTERM, flood_on_term);
	end = now_ms() + run_ms;
	for (i = 0; i < nconn; i++)
		pfd[i] = (struct pollfd){ .fd = -1 };
	while (now_ms() < end && !flood_stopping) {
		int refused = 0;

		for (i = 0; i < nconn && made < max_connects; i++) {
			int fd;

			if (pfd[i].fd >= 0)
				continue;
			fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (fd < 0)
				_exit(97);
			made++;
			if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS) {
				close(fd);
				refused = 1;	/* not listening (yet, or any more) */
				continue;
			}
			pfd[i] = (struct pollfd){ .fd = fd, .events = POLLIN | (hello ? POLLOUT : 0) };
		}
		if (refused)
			sleep_ms(5);
		if (poll(pfd, (nfds_t)nconn, 50) <= 0)
			continue;
		for (i = 0; i < nconn; i++) {
			uint8_t sink[64];
			ssize_t n;

			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			if (pfd[i].revents == POLLOUT) {	/* connected: say hello once */
				if (send(pfd[i].fd, hello_msg, sizeof(hello_msg), MSG_NOSIGNAL) < 0)
					pfd[i].revents = POLLERR;
				pfd[i].events = POLLIN;
				if (pfd[i].revents == POLLOUT)
					continue;
			}
			n = recv(pfd[i].fd, sink, sizeof(sink), MSG_DONTWAIT);
			if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
				continue;
			close(pfd[i].fd);	/* dropped: reopen at once */
			pfd[i].fd = -1;
		}
	}
	snprintf(text, sizeof(text), "%d", made);
	write_file(j, "flood", "count", text);
	_exit(0);
}

/* Stop a flood (if it still runs) and return how many connections it made. */
static int flood_stop(const struct job *j, pid_t pid)
{
	kill(pid, SIGTERM);
	reap(pid, 5000);
	return atoi(slurp(j, "flood", "count"));
}

/* ---- unit pieces ------------------------------------------------------- */

Test(boot_tcp_unit, siphash_reference_vectors)
{
	uint8_t key[16], msg[16];
	int i;

	for (i = 0; i < 16; i++)
		key[i] = msg[i] = (uint8_t)i;
	cr_assert_eq(hetsgd_boot_tcp_siphash(key, msg, 0), 0x726fdb47dd0e0e31ull);
	cr_assert_eq(hetsgd_boot_tcp_siphash(key, msg, 1), 0x74f839c593dc67fdull);
	cr_assert_eq(hetsgd_boot_tcp_siphash(key, msg, 2), 0x0d6c8009d9a94f5aull);
	cr_assert_eq(hetsgd_boot_tcp_siphash(key, msg, 3), 0x85676696d7fb7e2dull);
	cr_assert_eq(hetsgd_boot_tcp_siphash(key, msg, 4), 0xcf2794e0277187b7ull);
	cr_assert_eq(hetsgd_boot_tcp_siphash(key, msg, 8), 0x93f5f5799a932462ull);
	cr_assert_eq(hetsgd_boot_tcp_siphash(key, msg, 15), 0xa129ca6149be45e5ull);
}

/* Each parser on a heap copy of exactly len bytes: ASan sees any read past it. */
#define PARSE_EXACT(call, msg, n, ...)                                   \
	({                                                               \
		uint8_t *b_ = malloc((n) ? (n) : 1);                     \
		int rc_;                                                 \
		memcpy(b_, (msg), (n));                                  \
		rc_ = call(b_, (n), __VA_ARGS__);                        \
		free(b_);                                                \
		rc_;                                                     \
	})

Test(boot_tcp_unit, handshake_parsers_stay_inside_the_buffer)
{
	uint8_t hello[32] = "HGTB\x01\x00\x00\x00", chal[32] = "HGTB\x01\x00\x00\x00", key[16], proof[8];
	uint8_t welcome[16], req[16], rep[40] = { 0 }, bad[64];
	struct hetsgd_boot_tcp_hello h;
	struct hetsgd_boot_tcp_chal c;
	struct hetsgd_boot_tcp_welcome w;
	struct hetsgd_boot_tcp_req q;
	struct hetsgd_boot_tcp_rep r;
	size_t len, k;
	unsigned seed = 12345;
	int i;

	put32(hello + 8, 3);
	put32(hello + 12, 4);
	memset(hello + 16, 0xa5, 16);
	put32(chal + 8, 4);
	put32(chal + 12, 0);
	memset(chal + 16, 0x5a, 16);
	for (len = 0; len < 32; len++) {
		cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_hello, hello, len, &h), -EAGAIN, "hello prefix %zu", len);
		cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_chal, chal, len, &c), -EAGAIN, "chal prefix %zu", len);
	}
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_hello, hello, 32, &h), 0);
	cr_assert(h.rank == 3 && h.size == 4 && h.nonce[0] == 0xa5 && h.nonce[15] == 0xa5);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_chal, chal, 32, &c), 0);
	cr_assert(c.size == 4 && c.nonce[15] == 0x5a);
	/* Garbage is seen at its first wrong byte, another version at byte 6. */
	for (k = 0; k < 4; k++) {
		memcpy(bad, hello, 32);
		bad[k] ^= 0x20;
		cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_hello, bad, k + 1, &h), -EPROTO, "magic byte %zu", k);
		cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_chal, bad, 32, &c), -EPROTO);
	}
	memcpy(bad, hello, 32);
	bad[4] = 2;
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_hello, bad, 6, &h), -EPROTONOSUPPORT);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_chal, bad, 32, &c), -EPROTONOSUPPORT);
	memcpy(bad, hello, 32);
	bad[7] = 1;
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_hello, bad, 8, &h), -EPROTO, "reserved field");
	memcpy(bad, chal, 32);
	bad[12] = 1;
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_chal, bad, 16, &c), -EPROTO, "reserved field");
	cr_assert_eq(hetsgd_boot_tcp_parse_hello(NULL, 3, &h), -EINVAL);
	cr_assert_eq(hetsgd_boot_tcp_parse_hello(hello, 32, NULL), -EINVAL);
	cr_assert_eq(hetsgd_boot_tcp_parse_hello(NULL, 0, &h), -EAGAIN);

	/* The proof: the MAC documented in boot_tcp.c. */
	kdf(GOOD_SECRET, key);
	mac(key, "HGTBpeer", hello, chal, NULL, 0, proof);
	for (len = 0; len < 8; len++)
		cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_proof, proof, len, key, hello, chal), -EAGAIN);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_proof, proof, 8, key, hello, chal), 0);
	proof[3] ^= 1;
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_proof, proof, 8, key, hello, chal), -EACCES);

	put32(welcome, 3);
	put32(welcome + 4, 9);
	memset(welcome + 8, 0x77, 8);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_welcome, welcome, 15, &w), -EAGAIN);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_welcome, welcome, 16, &w), 0);
	cr_assert(w.status == 3 && w.size == 9 && w.mac[7] == 0x77);

	put32(req, 1);
	put32(req + 4, 5);
	put64(req + 8, 64u << 20);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_req, req, 15, &q), -EAGAIN);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_req, req, 16, &q), 0);
	cr_assert(q.op == 1 && q.seq == 5 && q.len == 64u << 20);
	put64(req + 8, (64u << 20) + 1);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_req, req, 16, &q), -EPROTO, "over the limit");
	put32(req, 2);
	put64(req + 8, 1);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_req, req, 16, &q), -EPROTO, "a barrier carries nothing");
	put32(req, 3);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_req, req, 4, &q), -EPROTO, "unknown operation");

	put32(rep + 8, 2);
	put32(rep + 12, 6);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_rep, rep, 39, &r), -EAGAIN);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_rep, rep, 40, &r), 0);
	cr_assert(r.status == 2 && r.bad_rank == 6);
	put32(rep + 8, 3);
	cr_assert_eq(PARSE_EXACT(hetsgd_boot_tcp_parse_rep, rep, 40, &r), -EPROTO);

	/* Random bytes of random lengths: only the documented answers. */
	for (i = 0; i < 5000; i++) {
		int rc[6];

		len = (size_t)(rand_r(&seed) % 48);
		for (k = 0; k < len; k++)
			bad[k] = (uint8_t)rand_r(&seed);
		if (i & 1)
			memcpy(bad, "HGTB\x01\x00\x00\x00", len < 8 ? len : 8);
		rc[0] = PARSE_EXACT(hetsgd_boot_tcp_parse_hello, bad, len, &h);
		rc[1] = PARSE_EXACT(hetsgd_boot_tcp_parse_chal, bad, len, &c);
		rc[2] = PARSE_EXACT(hetsgd_boot_tcp_parse_proof, bad, len, key, hello, chal);
		rc[3] = PARSE_EXACT(hetsgd_boot_tcp_parse_welcome, bad, len, &w);
		rc[4] = PARSE_EXACT(hetsgd_boot_tcp_parse_req, bad, len, &q);
		rc[5] = PARSE_EXACT(hetsgd_boot_tcp_parse_rep, bad, len, &r);
		for (k = 0; k < 6; k++)
			cr_assert(rc[k] == 0 || rc[k] == -EAGAIN || rc[k] == -EPROTO || rc[k] == -EPROTONOSUPPORT ||
				  rc[k] == -EACCES, "parser %zu gave %d", k, rc[k]);
	}
}

static void first_host_is(const char *list, const char *want)
{
	char out[64];
	int rc = hetsgd_boot_tcp_first_host(list, out, sizeof(out));

	cr_assert_eq(rc, 0, "'%s': %d %s", list, rc, hetsgd_errmsg());
	cr_assert_str_eq(out, want, "'%s' gave '%s'", list, out);
}

static void first_host_fails(const char *list, int err)
{
	char out[64] = "untouched";
	int rc = hetsgd_boot_tcp_first_host(list, out, sizeof(out));

	cr_assert_eq(rc, err, "'%s' gave %d (%s), expected %d", list, rc, out, err);
	cr_assert(strstr(hetsgd_errmsg(), "HETSGD_RENDEZVOUS") || err == -ENAMETOOLONG,
		  "'%s': message should say what to do: %s", list, hetsgd_errmsg());
}

Test(boot_tcp_unit, slurm_hostlist_first_host)
{
	char small[6];

	first_host_is("node001", "node001");
	first_host_is("vm", "vm");
	first_host_is("node[003-010,12],gpu1", "node003");
	first_host_is("node[12,3-10]", "node12");
	first_host_is("gpu1,node[003-010]", "gpu1");
	first_host_is("n[7]", "n7");
	first_host_is("n[0001-0100]", "n0001");
	first_host_is("rack[2-3]-n[07,09]", "rack2-n07");
	first_host_is("c1.cluster.example,c2", "c1.cluster.example");
	first_host_is("a_b-c[9-10]x", "a_b-c9x");
	first_host_fails("", -EINVAL);
	first_host_fails(",node1", -EINVAL);
	first_host_fails("node[1-3", -EINVAL);
	first_host_fails("node[]", -EINVAL);
	first_host_fails("node[a-b]", -EINVAL);
	first_host_fails("node[1-]", -EINVAL);
	first_host_fails("node]1", -EINVAL);
	first_host_fails("node 1", -EINVAL);
	first_host_fails("node[1[2]]", -EINVAL);
	first_host_fails("averyveryverylonghostnamethatexceedsthebufferforsureyesitdoes0123456789", -ENAMETOOLONG);
	cr_assert_eq(hetsgd_boot_tcp_first_host("node[003-010]", small, sizeof(small)), -ENAMETOOLONG);
	cr_assert_eq(hetsgd_boot_tcp_first_host("nd[03]", small, sizeof(small)), 0);
	cr_assert_str_eq(small, "nd03");
}

/* ---- configuration errors (no network) --------------------------------- */

static int open_fails(int want, const char *must1, const char *must2)
{
	struct hetsgd_boot *b = (void *)0x1;
	int rc = hetsgd_boot_open(HETSGD_BOOT_TCP, &b);

	cr_assert_eq(rc, want, "rc %d, expected %d: %s", rc, want, hetsgd_errmsg());
	cr_assert_eq(b, (void *)0x1, "output must be untouched on failure");
	cr_assert(strstr(hetsgd_errmsg(), must1), "message lacks '%s': %s", must1, hetsgd_errmsg());
	cr_assert(!must2 || strstr(hetsgd_errmsg(), must2), "message lacks '%s': %s", must2, hetsgd_errmsg());
	return rc;
}

Test(boot_tcp_config, rank_and_size_are_validated, .init = clean_env)
{
	setenv("HETSGD_SECRET", GOOD_SECRET, 1);
	setenv("HETSGD_RENDEZVOUS", "127.0.0.1:1", 1);

	open_fails(-ENOENT, "HETSGD_RANK", "srun");
	setenv("HETSGD_RANK", "1", 1);
	open_fails(-EINVAL, "HETSGD_SIZE is not", NULL);
	setenv("HETSGD_SIZE", "4x", 1);
	open_fails(-EINVAL, "HETSGD_SIZE='4x'", NULL);
	setenv("HETSGD_SIZE", "0", 1);
	open_fails(-EINVAL, "HETSGD_SIZE=0", NULL);
	setenv("HETSGD_SIZE", "4", 1);
	setenv("HETSGD_RANK", "abc", 1);
	open_fails(-EINVAL, "HETSGD_RANK='abc'", NULL);
	setenv("HETSGD_RANK", "-1", 1);
	open_fails(-EINVAL, "HETSGD_RANK=-1", NULL);
	setenv("HETSGD_RANK", "4", 1);
	open_fails(-EINVAL, "HETSGD_RANK=4 is not below HETSGD_SIZE=4", NULL);
	setenv("HETSGD_RANK", "99999999999999999999", 1);
	open_fails(-EINVAL, "HETSGD_RANK=", NULL);

	unsetenv("HETSGD_RANK");
	unsetenv("HETSGD_SIZE");
	setenv("SLURM_PROCID", "x", 1);
	setenv("SLURM_NTASKS", "2", 1);
	open_fails(-EINVAL, "SLURM_PROCID='x'", NULL);
	setenv("SLURM_PROCID", "2", 1);
	open_fails(-EINVAL, "SLURM_PROCID=2 is not below SLURM_NTASKS=2", NULL);

	setenv("SLURM_PROCID", "1", 1);
	setenv("HETSGD_BOOT_TIMEOUT", "0", 1);
	open_fails(-EINVAL, "HETSGD_BOOT_TIMEOUT=0", NULL);
	setenv("HETSGD_BOOT_TIMEOUT", "soon", 1);
	open_fails(-EINVAL, "HETSGD_BOOT_TIMEOUT='soon'", NULL);
}

Test(boot_tcp_config, secret_is_required_and_long_enough, .init = clean_env)
{
	setenv("HETSGD_RANK", "1", 1);
	setenv("HETSGD_SIZE", "2", 1);
	setenv("HETSGD_RENDEZVOUS", "127.0.0.1:1", 1);

	open_fails(-EACCES, "HETSGD_SECRET is not set", "head -c 16 /dev/urandom");
	setenv("HETSGD_SECRET", "tooshort", 1);
	open_fails(-EINVAL, "at least 16", "export HETSGD_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n')");
	cr_assert_null(strstr(hetsgd_errmsg(), "tooshort"), "the secret must never be printed: %s", hetsgd_errmsg());
	setenv("HETSGD_SECRET", "0123456789abcde", 1);	/* 15 */
	open_fails(-EINVAL, "15 characters", NULL);
}

Test(boot_tcp_config, missing_or_bad_rendezvous, .init = clean_env)
{
	setenv("HETSGD_RANK", "1", 1);
	setenv("HETSGD_SIZE", "2", 1);
	setenv("HETSGD_SECRET", GOOD_SECRET, 1);

	open_fails(-ENOENT, "set HETSGD_RENDEZVOUS=host:port", "srun");
	setenv("SLURM_STEP_NODELIST", "node[1-2]", 1);	/* no job id: no port */
	open_fails(-ENOENT, "HETSGD_RENDEZVOUS", NULL);
	setenv("SLURM_JOB_ID", "77", 1);
	setenv("SLURM_STEP_NODELIST", "node[1-", 1);
	open_fails(-EINVAL, "node[1-", "HETSGD_RENDEZVOUS");
	unsetenv("SLURM_STEP_NODELIST");
	unsetenv("SLURM_JOB_ID");

	setenv("HETSGD_RENDEZVOUS", "127.0.0.1", 1);
	open_fails(-EINVAL, "no port", NULL);
	setenv("HETSGD_RENDEZVOUS", "127.0.0.1:0", 1);
	open_fails(-EINVAL, "bad port", NULL);
	setenv("HETSGD_RENDEZVOUS", "127.0.0.1:65536", 1);
	open_fails(-EINVAL, "bad port", NULL);
	setenv("HETSGD_RENDEZVOUS", "host:http", 1);
	open_fails(-EINVAL, "bad port", NULL);
	setenv("HETSGD_RENDEZVOUS", "::1:80", 1);
	open_fails(-EINVAL, "brackets", NULL);
	setenv("HETSGD_RENDEZVOUS", "[::1]80", 1);
	open_fails(-EINVAL, "[ipv6-address]:port", NULL);
	setenv("HETSGD_RENDEZVOUS", ":80", 1);
	open_fails(-EINVAL, "empty", NULL);
	/* Unresolvable: at once, or after the timeout where DNS says "try again". */
	setenv("HETSGD_RENDEZVOUS", "no-such-host.invalid:80", 1);
	setenv("HETSGD_BOOT_TIMEOUT", "2", 1);
	{
		struct hetsgd_boot *b;
		int rc = hetsgd_boot_open(HETSGD_BOOT_TCP, &b);

		cr_assert(rc == -EHOSTUNREACH || rc == -ETIMEDOUT, "rc %d: %s", rc, hetsgd_errmsg());
		cr_assert(strstr(hetsgd_errmsg(), "no-such-host.invalid"), "%s", hetsgd_errmsg());
	}
}

Test(boot_tcp_config, single_rank_needs_no_network, .init = clean_env)
{
	struct hetsgd_boot *b = NULL;
	uint32_t v = 42, all = 0;

	setenv("HETSGD_RANK", "0", 1);
	setenv("HETSGD_SIZE", "1", 1);
	cr_assert_eq(hetsgd_boot_open(HETSGD_BOOT_AUTO, &b), 0, "%s", hetsgd_errmsg());
	cr_assert_eq(hetsgd_boot_get_kind(b), HETSGD_BOOT_TCP, "auto picks tcp from HETSGD_RANK");
	cr_assert_eq(hetsgd_boot_rank(b), 0);
	cr_assert_eq(hetsgd_boot_size(b), 1);
	cr_assert_eq(hetsgd_boot_allgather(b, &v, &all, sizeof(v)), 0);
	cr_assert_eq(all, 42);
	cr_assert_eq(hetsgd_boot_barrier(b), 0);
	hetsgd_boot_close(b);
}

/* Rank 0's defences against strangers are tunable, and checked. */
Test(boot_tcp_config, rendezvous_limits_are_validated, .init = clean_env)
{
	char rv[64];

	setenv("HETSGD_RANK", "0", 1);
	setenv("HETSGD_SIZE", "2", 1);
	setenv("HETSGD_SECRET", GOOD_SECRET, 1);
	snprintf(rv, sizeof(rv), "127.0.0.1:%d", free_port(AF_INET));
	setenv("HETSGD_RENDEZVOUS", rv, 1);
	setenv("HETSGD_BOOT_HANDSHAKE_MS", "5", 1);
	open_fails(-EINVAL, "HETSGD_BOOT_HANDSHAKE_MS=5 is out of range", NULL);
	setenv("HETSGD_BOOT_HANDSHAKE_MS", "500", 1);
	setenv("HETSGD_BOOT_PER_SOURCE", "0", 1);
	open_fails(-EINVAL, "HETSGD_BOOT_PER_SOURCE=0", NULL);
	setenv("HETSGD_BOOT_PER_SOURCE", "8", 1);
	setenv("HETSGD_BOOT_MAX_PENDING", "lots", 1);
	open_fails(-EINVAL, "HETSGD_BOOT_MAX_PENDING='lots'", NULL);
}

/* Rank 0 cannot listen: the port is taken, or the address is not its own. */
Test(boot_tcp_config, rank0_cannot_listen, .init = clean_env)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int port = free_port(AF_INET), fd = socket(AF_INET, SOCK_STREAM, 0);
	char rv[64];

	sa.sin_port = htons((uint16_t)port);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	setenv("HETSGD_RANK", "0", 1);
	setenv("HETSGD_SIZE", "2", 1);
	setenv("HETSGD_SECRET", GOOD_SECRET, 1);
	snprintf(rv, sizeof(rv), "127.0.0.1:%d", port);
	setenv("HETSGD_RENDEZVOUS", rv, 1);
	open_fails(-EADDRINUSE, "another process uses it", rv);
	close(fd);
	/* 192.0.2.1 is TEST-NET-1: never an address of this host. */
	setenv("HETSGD_RENDEZVOUS", "192.0.2.1:29500", 1);
	open_fails(-EADDRNOTAVAIL, "192.0.2.1 is not an address of this host", NULL);
}

/* ---- real jobs on loopback --------------------------------------------- */

Test(boot_tcp_job, four_ranks_allgather_and_barrier, .init = clean_env, .timeout = 60)
{
	struct job j;
	struct ranks rk;

	job_init(&j);
	/* Peers first: they must wait and retry until rank 0 listens. */
	start_ranks(&j, &rk, 1, 3, 4, &(struct rank_spec){ .fn = rank_exchange });
	start_ranks(&j, &rk, 0, 1, 4, &(struct rank_spec){ .delay_ms = 300, .fn = rank_exchange });
	expect_ranks(&j, &rk, 0, 4, 0, 40000);
	cr_assert_eq(slurp(&j, "r0", "stderr")[0], '\0', "rank 0 refused something: %s", slurp(&j, "r0", "stderr"));
	job_fini(&j);
}

Test(boot_tcp_job, ipv6_literal_rendezvous, .init = clean_env, .timeout = 30)
{
	struct job j;
	char rv[64];
	pid_t p0, p1;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	if (fd < 0 || bind(fd, (struct sockaddr *)&s6, sizeof(s6))) {
		if (fd >= 0)
			close(fd);
		cr_skip_test("no IPv6 loopback here");
	}
	close(fd);
	job_init(&j);
	snprintf(rv, sizeof(rv), "[::1]:%d", free_port(AF_INET6));
	p0 = spawn(&j, &(struct rank_spec){ .tag = "r0", .rank = 0, .size = 2, .rendezvous = rv, .fn = rank_once });
	p1 = spawn(&j, &(struct rank_spec){ .tag = "r1", .rank = 1, .size = 2, .rendezvous = rv, .fn = rank_once });
	expect_exit(&j, p0, "r0", 0, 20000);
	expect_exit(&j, p1, "r1", 0, 20000);
	job_fini(&j);
}

static uint32_t fnv1a32(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* The documented port formula: 20000 + fnv1a32("job.step") % 20000. */
static int slurm_port(const char *job, const char *step)
{
	char ids[64];

	snprintf(ids, sizeof(ids), "%s.%s", job, step);
	return 20000 + (int)(fnv1a32(ids) % 20000);
}

static int port_is_free(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Rank 0's host and port from the Slurm environment, as srun --mpi=none sets it. */
Test(boot_tcp_job, rendezvous_from_slurm_environment, .init = clean_env, .timeout = 40)
{
	struct job j;
	char jobid[32], want[64];
	pid_t p[2];
	int r, port = 0, tries;

	job_init(&j);
	for (tries = 0; tries < 100; tries++) {
		snprintf(jobid, sizeof(jobid), "%d", 100000 + (int)(now_ms() % 800000) + tries);
		port = slurm_port(jobid, "0");
		if (port_is_free(port))
			break;
	}
	setenv("SLURM_JOB_ID", jobid, 1);
	setenv("SLURM_STEP_ID", "0", 1);
	setenv("SLURM_STEP_NODELIST", "localhost,node[2-9]", 1);
	setenv("SLURM_NTASKS", "2", 1);
	setenv("HETSGD_SECRET", GOOD_SECRET, 1);
	setenv("HETSGD_BOOT_TIMEOUT", "1", 1);

	/* Alone, rank 1 fails after the timeout and names the derived address. */
	setenv("SLURM_PROCID", "1", 1);
	{
		struct hetsgd_boot *b;
		int64_t t0 = now_ms();

		cr_assert_eq(hetsgd_boot_open(HETSGD_BOOT_AUTO, &b), -ETIMEDOUT, "%s", hetsgd_errmsg());
		cr_assert_lt(now_ms() - t0, 5000);
		snprintf(want, sizeof(want), "localhost:%d", port);
		cr_assert(strstr(hetsgd_errmsg(), want), "expected %s in: %s", want, hetsgd_errmsg());
		cr_assert(strstr(hetsgd_errmsg(), "first node of the Slurm node list"), "%s", hetsgd_errmsg());
	}

	/* Rank 0 on another node than the first one is caught. */
	setenv("SLURM_PROCID", "0", 1);
	setenv("SLURMD_NODENAME", "node5", 1);
	open_fails(-EADDRNOTAVAIL, "rank 0 runs on node node5", "HETSGD_RENDEZVOUS");
	setenv("SLURMD_NODENAME", "localhost", 1);

	/* And the real thing: both ranks from SLURM_PROCID/SLURM_NTASKS alone. */
	setenv("HETSGD_BOOT_TIMEOUT", "20", 1);
	for (r = 0; r < 2; r++) {
		char num[4];

		snprintf(num, sizeof(num), "%d", r);
		setenv("SLURM_PROCID", num, 1);
		fflush(NULL);
		p[r] = fork();
		cr_assert_geq(p[r], 0);
		if (!p[r]) {
			struct hetsgd_boot *b;

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (hetsgd_boot_open(HETSGD_BOOT_AUTO, &b)) {
				fprintf(stderr, "slurm rank %d: %s\n", r, hetsgd_errmsg());
				_exit(OPEN_FAILED);
			}
			_exit(hetsgd_boot_get_kind(b) != HETSGD_BOOT_TCP ? 9 : rank_once(b, NULL));
		}
	}
	for (r = 0; r < 2; r++)
		cr_assert_eq(reap(p[r], 30000), 0, "slurm rank %d failed (port %d)", r, port);
	job_fini(&j);
}

/* A rogue with the wrong secret gets in first: refused, logged, job goes on. */
Test(boot_tcp_admission, wrong_secret_is_refused_and_logged, .init = clean_env, .timeout = 60)
{
	struct job j;
	struct ranks rk;
	pid_t rogue;
	const char *log, *err;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 4, &(struct rank_spec){ .fn = rank_exchange });
	rogue = spawn(&j, &(struct rank_spec){ .tag = "rogue", .rank = 1, .size = 4, .secret = OTHER_SECRET });
	expect_exit(&j, rogue, "rogue", OPEN_FAILED, 20000);
	err = slurp(&j, "rogue", "err");
	cr_assert(strstr(err, "-13 ") == err, "rogue should get -EACCES: %s", err);
	cr_assert(strstr(err, j.rendezvous) && strstr(err, "HETSGD_SECRET"), "%s", err);

	/*
	 * The first refusal is reported at once, with its address and why
	 * (rank 0 writes it just after its answer reaches the rogue: wait).
	 */
	log = wait_text(&j, "r0", "stderr", "tcp bootstrap: refused 1 connection in ", 3000);
	cr_assert(strstr(log, "tcp bootstrap: refused 1 connection in "), "no refusal line: '%s'", log);
	cr_assert(strstr(log, "1 wrong secret (127.0.0.1:") && strstr(log, "claims rank 1"),
		  "refusal does not say why: '%s'", log);
	cr_assert_null(strstr(log, GOOD_SECRET), "secret in the log");

	start_ranks(&j, &rk, 1, 3, 4, &(struct rank_spec){ .fn = rank_exchange });
	expect_ranks(&j, &rk, 1, 3, 0, 40000);
	expect_ranks(&j, &rk, 0, 1, 0, 40000);
	/* And once more at the end, in the totals. */
	log = slurp(&j, "r0", "stderr");
	cr_assert_eq(count(log, "\n"), 2, "%s", log);
	cr_assert(strstr(log, "rendezvous complete after") && strstr(log, "refused 1 connection in all: 1 wrong secret"),
		  "%s", log);
	job_fini(&j);
}

/* Garbage (an HTTP probe) is refused at once; the job is not disturbed. */
Test(boot_tcp_admission, garbage_is_refused, .init = clean_env, .timeout = 40)
{
	static const char probe[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct job j;
	struct ranks rk;
	int fd;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 3, &(struct rank_spec){ .fn = rank_once });
	fd = raw_connect(j.port);
	cr_assert_eq(full_io(fd, (void *)probe, sizeof(probe) - 1, 1), 0);
	cr_assert(closed_by_peer(fd, 3000), "rank 0 did not close a garbage connection at once");
	close(fd);
	start_ranks(&j, &rk, 1, 2, 3, &(struct rank_spec){ .fn = rank_once });
	expect_ranks(&j, &rk, 0, 3, 0, 20000);
	cr_assert(strstr(slurp(&j, "r0", "stderr"), "not a hetsgd bootstrap client"), "%s",
		  slurp(&j, "r0", "stderr"));
	job_fini(&j);
}

/*
 * Several connections that say nothing (or half a hello) sit at rank 0:
 * ranks 1 and 2 still get in at once, the silent ones are cut after the
 * 2 s handshake deadline, and rank 3, arriving later, completes the job.
 */
Test(boot_tcp_admission, silent_clients_time_out_without_blocking, .init = clean_env, .timeout = 60)
{
	struct job j;
	struct ranks rk;
	int silent[6], i;
	const char *log;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 4, &(struct rank_spec){ .fn = rank_exchange });
	for (i = 0; i < 6; i++) {
		silent[i] = raw_connect(j.port);
		if (i >= 4)	/* the magic and a bit more, then nothing */
			cr_assert_eq(full_io(silent[i], "HGTB\x01\x00\x00\x00", 8, 1), 0);
	}
	start_ranks(&j, &rk, 1, 2, 4, &(struct rank_spec){ .open_limit_ms = 3000, .fn = rank_exchange });
	start_ranks(&j, &rk, 3, 1, 4, &(struct rank_spec){ .delay_ms = 2500, .fn = rank_exchange });
	expect_ranks(&j, &rk, 1, 3, 0, 40000);
	expect_ranks(&j, &rk, 0, 1, 0, 40000);
	for (i = 0; i < 6; i++) {
		cr_assert(closed_by_peer(silent[i], 1000), "silent client %d still connected", i);
		close(silent[i]);
	}
	log = slurp(&j, "r0", "stderr");
	cr_assert(strstr(log, "refused 6 connections in all: 4 sent nothing before the handshake deadline (first: 127.0.0.1:"),
		  "%s", log);
	cr_assert(strstr(log, "sent nothing within 2000 ms"), "%s", log);
	cr_assert(strstr(log, "2 did not finish the handshake before the deadline"), "%s", log);
	cr_assert(strstr(log, "from 127.0.0.1 x6"), "%s", log);
	cr_assert_leq(count(log, "\n"), 3, "one line at once, one summary, one total at most: %s", log);
	job_fini(&j);
}

/* Authenticated, but wrong size or out-of-range rank: refused, the job goes on. */
Test(boot_tcp_admission, wrong_size_and_rank_are_refused, .init = clean_env, .timeout = 60)
{
	struct job j;
	struct ranks rk;
	pid_t bad;
	const char *log, *err;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 3, &(struct rank_spec){ .fn = rank_once });
	cr_assert_eq(raw_join(j.port, GOOD_SECRET, 7, 3), 2, "rank 7 of 3 must be out of range");
	cr_assert_eq(raw_join(j.port, GOOD_SECRET, 0, 3), 2, "a second rank 0 must be refused");
	cr_assert_eq(raw_join(j.port, GOOD_SECRET, 1, 5), 1, "size 5 must be refused");
	cr_assert_eq(raw_join(j.port, OTHER_SECRET, 1, 3), 4, "a wrong secret must be refused");

	/* The library's own view of a size mismatch. */
	bad = spawn(&j, &(struct rank_spec){ .tag = "badsize", .rank = 2, .size = 4 });
	expect_exit(&j, bad, "badsize", OPEN_FAILED, 20000);
	err = slurp(&j, "badsize", "err");
	cr_assert(strstr(err, "runs a job of 3 ranks, this rank was told 4"), "%s", err);

	start_ranks(&j, &rk, 1, 2, 3, &(struct rank_spec){ .fn = rank_once });
	expect_ranks(&j, &rk, 0, 3, 0, 20000);
	/* Counted per reason, with the first of each as the example. */
	log = strstr(slurp(&j, "r0", "stderr"), "refused 5 connections in all: ");
	cr_assert_not_null(log, "%s", slurp(&j, "r0", "stderr"));
	cr_assert(strstr(log, "1 wrong secret (127.0.0.1:"), "%s", log);
	cr_assert(strstr(log, "2 wrong job size (first: 127.0.0.1:") &&
		  strstr(log, "rank 1 says the job has 5 ranks, rank 0 has 3"), "%s", log);
	cr_assert(strstr(log, "2 rank out of range (first: 127.0.0.1:") &&
		  strstr(log, "rank 7 is out of range for a job of 3 ranks"), "%s", log);
	cr_assert(strstr(log, "from 127.0.0.1 x5"), "%s", log);
	job_fini(&j);
}

/*
 * Something listens on the rendezvous port and speaks the protocol but
 * does not know the secret: the connecting rank must say so, not join.
 */
enum fake_kind { FAKE_BAD_PROOF, FAKE_GARBAGE, FAKE_SILENT };

static void fake_rank0(enum fake_kind kind, const char *must)
{
	struct job j;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	uint8_t hello[32], chal[32] = "HGTB\x01", proof[8], welcome[16];
	int lfd, fd, one = 1;
	const char *err;
	pid_t p1;

	job_init(&j);
	sa.sin_port = htons((uint16_t)j.port);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	p1 = spawn(&j, &(struct rank_spec){ .tag = "r1", .rank = 1, .size = 2, .timeout_s = "2", .fn = rank_once });
	fd = accept(lfd, NULL, NULL);
	cr_assert_geq(fd, 0);
	cr_assert_eq(full_io(fd, hello, sizeof(hello), 0), 0, "no hello");
	cr_assert_eq(memcmp(hello, "HGTB", 4), 0);
	cr_assert_eq(get32(hello + 8), 1);
	cr_assert_eq(get32(hello + 12), 2);
	if (kind == FAKE_GARBAGE) {
		cr_assert_eq(full_io(fd, "HTTP/1.1 400 Bad Request\r\n\r\n....", 32, 1), 0);
	} else if (kind == FAKE_BAD_PROOF) {
		put32(chal + 8, 2);
		memset(chal + 16, 0x5a, 16);
		cr_assert_eq(full_io(fd, chal, sizeof(chal), 1), 0);
		cr_assert_eq(full_io(fd, proof, sizeof(proof), 0), 0, "no proof");
		cr_assert_null(memmem(hello, sizeof(hello), GOOD_SECRET, 8));
		cr_assert_null(memmem(proof, sizeof(proof), GOOD_SECRET, 8));
		memset(welcome, 0, sizeof(welcome));	/* "admitted", with a made-up proof */
		put32(welcome + 4, 2);
		memset(welcome + 8, 0x33, 8);
		cr_assert_eq(full_io(fd, welcome, sizeof(welcome), 1), 0);
	}
	expect_exit(&j, p1, "r1", OPEN_FAILED, 20000);
	err = slurp(&j, "r1", "err");
	cr_assert(strstr(err, j.rendezvous), "the error must name the address: %s", err);
	cr_assert(strstr(err, must), "expected '%s' in: %s", must, err);
	close(fd);
	close(lfd);
	job_fini(&j);
}

Test(boot_tcp_admission, fake_rank0_without_secret_is_detected, .init = clean_env, .timeout = 30)
{
	fake_rank0(FAKE_BAD_PROOF, "is not this job's rank 0");
}

Test(boot_tcp_admission, foreign_server_on_the_port_is_detected, .init = clean_env, .timeout = 30)
{
	fake_rank0(FAKE_GARBAGE, "is not a hetsgd rank 0");
}

Test(boot_tcp_admission, silent_server_on_the_port_times_out, .init = clean_env, .timeout = 30)
{
	fake_rank0(FAKE_SILENT, "sent no challenge within 2 s");
}

/* Nobody listens: a rank gives up after HETSGD_BOOT_TIMEOUT, and says where it looked. */
Test(boot_tcp_admission, no_rank0_times_out, .init = clean_env, .timeout = 30)
{
	struct job j;
	int64_t t0 = now_ms();
	const char *err;
	pid_t p1;

	job_init(&j);
	p1 = spawn(&j, &(struct rank_spec){ .tag = "r1", .rank = 1, .size = 2, .timeout_s = "1" });
	expect_exit(&j, p1, "r1", OPEN_FAILED, 10000);
	cr_assert_lt(now_ms() - t0, 5000);
	err = slurp(&j, "r1", "err");
	cr_assert(strstr(err, j.rendezvous) && strstr(err, "Connection refused") &&
		  strstr(err, "HETSGD_BOOT_TIMEOUT"), "%s", err);
	job_fini(&j);
}

/* Rank 0 gives up on a rank that never comes, and names it. */
static int rank_after_root_gave_up(struct hetsgd_boot *b, void *arg)
{
	(void)arg;
	return rank_expect_reset(b, "rank 0");
}

Test(boot_tcp_admission, missing_rank_times_out_at_rank0, .init = clean_env, .timeout = 30)
{
	struct job j;
	const char *err;
	pid_t p0, p1;

	job_init(&j);
	p0 = spawn(&j, &(struct rank_spec){ .tag = "r0", .rank = 0, .size = 3, .timeout_s = "2" });
	p1 = spawn(&j, &(struct rank_spec){ .tag = "r1", .rank = 1, .size = 3, .timeout_s = "2",
					    .fn = rank_after_root_gave_up });
	expect_exit(&j, p0, "r0", OPEN_FAILED, 10000);
	err = slurp(&j, "r0", "err");
	cr_assert(strstr(err, "-110 ") == err && strstr(err, "waited 2 s for ranks 2:"), "%s", err);
	expect_exit(&j, p1, "r1", 0, 10000);
	job_fini(&j);
}

/* ---- strangers and impostors (issue #10, item 3) ------------------------ */

/*
 * 200 silent connections, each reopened as soon as rank 0 drops it, for
 * the whole bootstrap: the real ranks still get in within seconds, and
 * rank 0 writes a few summary lines, not one per connection.
 */
Test(boot_tcp_flood, silent_flood_does_not_keep_ranks_out, .init = clean_env, .timeout = 30)
{
	struct job j;
	struct ranks rk;
	const char *log;
	int64_t t0;
	pid_t flood;
	int made;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 4, &(struct rank_spec){ .fn = rank_once });
	t0 = now_ms();
	flood = flood_start(&j, j.port, 200, 10000, 400000, 0);
	/*
	 * Let the flood take hold before the ranks come: where the listen
	 * backlog is short, part of it lands only with the SYN retries, 1 s on.
	 */
	sleep_ms(1500);
	/* Each rank must be in within 2 s of its start (OPEN_SLOW otherwise). */
	start_ranks(&j, &rk, 1, 3, 4, &(struct rank_spec){ .open_limit_ms = 2000, .fn = rank_once });
	expect_ranks(&j, &rk, 1, 3, 0, 9000);
	expect_ranks(&j, &rk, 0, 1, 0, 9000);
	cr_assert_lt(now_ms() - t0, 6000, "the bootstrap took %lld ms under the flood",
		     (long long)(now_ms() - t0));
	made = flood_stop(&j, flood);
	cr_assert_gt(made, 200, "the flood never reopened a connection (%d made)", made);
	log = slurp(&j, "r0", "stderr");
	cr_assert_lt(count(log, "\n"), 20, "rank 0 wrote %d lines: %.2000s", count(log, "\n"), log);
	cr_assert(strstr(log, "rendezvous complete after"), "%s", log);
	cr_assert(strstr(log, "too many at once from one address") && strstr(log, "from 127.0.0.1 x"), "%s", log);
	cr_log_info("flood: %d connections; rank 0 said:\n%s", made, log);
	job_fini(&j);
}

/*
 * Strangers that send a well-formed hello and then wait (they cannot make
 * a proof): with room for only 64 handshakes, the oldest of them give way
 * and the ranks, which answer their challenge at once, get in.
 */
Test(boot_tcp_flood, hello_flood_does_not_keep_ranks_out, .init = clean_env, .timeout = 30)
{
	struct job j;
	struct ranks rk;
	const char *log;
	int64_t t0;
	pid_t flood;

	setenv("HETSGD_BOOT_MAX_PENDING", "64", 1);	/* rank 0 inherits it */
	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 4, &(struct rank_spec){ .fn = rank_once });
	t0 = now_ms();
	flood = flood_start(&j, j.port, 200, 10000, 400000, 1);
	sleep_ms(1000);
	start_ranks(&j, &rk, 1, 3, 4, &(struct rank_spec){ .open_limit_ms = 2000, .fn = rank_once });
	expect_ranks(&j, &rk, 1, 3, 0, 9000);
	expect_ranks(&j, &rk, 0, 1, 0, 9000);
	cr_assert_lt(now_ms() - t0, 6000);
	flood_stop(&j, flood);
	log = slurp(&j, "r0", "stderr");
	cr_assert_lt(count(log, "\n"), 20, "%s", log);
	cr_assert(strstr(log, "too many at once in all"), "%s", log);
	job_fini(&j);
}

/* The ranks already admitted learn that the bootstrap is off, at once. */
static int rank_expect_abort(struct hetsgd_boot *b, void *arg)
{
	const char *must = arg ? arg : "rank 1 was claimed by two processes";
	int rc = hetsgd_boot_barrier(b);

	if (rc != -ECONNABORTED)
		return 60;
	return strstr(hetsgd_errmsg(), must) ? 0 : 61;
}

/*
 * A process that knows the secret takes rank 1's place before the real
 * rank 1 comes (rank 3 is not there yet): rank 0 stops the job at once,
 * naming both addresses, and everyone else fails fast instead of waiting
 * for the impostor.
 */
Test(boot_tcp_admission, duplicate_rank_claim_stops_the_job, .init = clean_env, .timeout = 30)
{
	struct job j;
	struct ranks rk;
	char imp_addr[32];
	uint8_t rep[40];
	const char *err;
	int64_t t0;
	int imp = -1;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 4, &(struct rank_spec){ .fn = rank_once });
	start_ranks(&j, &rk, 2, 1, 4, &(struct rank_spec){ .fn = rank_expect_abort });
	wait_file(&j, "r2", "opened", 10000);
	cr_assert_eq(raw_claim(j.port, GOOD_SECRET, 1, 4, &imp), 0, "the impostor is admitted first");
	snprintf(imp_addr, sizeof(imp_addr), "127.0.0.1:%d", local_port(imp));
	t0 = now_ms();
	start_ranks(&j, &rk, 1, 1, 4, &(struct rank_spec){ .fn = rank_once });
	expect_ranks(&j, &rk, 1, 1, OPEN_FAILED, 5000);
	expect_ranks(&j, &rk, 0, 1, OPEN_FAILED, 5000);
	expect_ranks(&j, &rk, 2, 1, 0, 5000);
	cr_assert_lt(now_ms() - t0, 3000, "took %lld ms; the boot timeout is 20 s", (long long)(now_ms() - t0));
	err = slurp(&j, "r0", "err");
	cr_assert(strstr(err, "-98 ") == err && strstr(err, "rank 1 was claimed twice"), "%s", err);
	cr_assert(strstr(err, imp_addr) && count(err, "127.0.0.1:") >= 2, "both addresses (%s): %s", imp_addr, err);
	cr_assert(strstr(err, "HETSGD_RANK") && strstr(err, "HETSGD_SECRET"), "%s", err);
	err = slurp(&j, "r1", "err");
	cr_assert(strstr(err, "already has a rank 1") && strstr(err, "stops the whole bootstrap"), "%s", err);
	/* The impostor, admitted, is told too: an ABORT answer naming rank 1, then a close. */
	cr_assert_eq(full_io(imp, rep, sizeof(rep), 0), 0, "no abort for the admitted impostor");
	cr_assert(get32(rep + 8) == 2 && get32(rep + 12) == 1, "status %u rank %u", get32(rep + 8), get32(rep + 12));
	cr_assert(closed_by_peer(imp, 3000));
	close(imp);
	job_fini(&j);
}

/*
 * Two claims on rank 1 in flight at once: whichever rank 0 judges second
 * stops the job, even though the first one completed the rendezvous.
 */
Test(boot_tcp_admission, racing_duplicate_claims_stop_the_job, .init = clean_env, .timeout = 30)
{
	struct job j;
	struct ranks rk;
	struct raw a, b;
	char addr_a[32], addr_b[32];
	const char *err;
	int64_t t0;
	int sa, sb;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 3, &(struct rank_spec){ .fn = rank_once });
	start_ranks(&j, &rk, 2, 1, 3, &(struct rank_spec){ .fn = rank_expect_abort });
	wait_file(&j, "r2", "opened", 10000);
	raw_hello(&a, j.port, GOOD_SECRET, 1, 3);
	raw_hello(&b, j.port, GOOD_SECRET, 1, 3);
	snprintf(addr_a, sizeof(addr_a), "127.0.0.1:%d", local_port(a.fd));
	snprintf(addr_b, sizeof(addr_b), "127.0.0.1:%d", local_port(b.fd));
	t0 = now_ms();
	raw_proof(&a);
	raw_proof(&b);
	sa = raw_welcome(&a, NULL);
	sb = raw_welcome(&b, NULL);
	cr_assert((sa == 0 && sb == 3) || (sa == 3 && sb == 0), "welcome statuses %d and %d", sa, sb);
	expect_ranks(&j, &rk, 0, 1, OPEN_FAILED, 5000);
	expect_ranks(&j, &rk, 2, 1, 0, 5000);
	cr_assert_lt(now_ms() - t0, 3000);
	err = slurp(&j, "r0", "err");
	cr_assert(strstr(err, "rank 1 was claimed twice") && strstr(err, addr_a) && strstr(err, addr_b), "%s", err);
	job_fini(&j);
}

/* Rank 0's first collective must fail with -EADDRINUSE: exit 98 and keep the message. */
static int rank0_expect_dup(struct hetsgd_boot *b, void *arg)
{
	uint64_t mine = 1, all[8];
	int rc = hetsgd_boot_allgather(b, &mine, all, sizeof(mine));

	(void)arg;
	return rc == -EADDRINUSE ? EADDRINUSE : rc ? 70 : 71;
}

/*
 * Issue #11, item 8: an impostor with the secret takes the LAST free rank,
 * so the rendezvous completes; the real rank comes afterwards.  Rank 0,
 * waiting in its first collective, still hears it: the job stops within
 * seconds on every rank, rank 0 names both addresses, the real rank is
 * told it is a duplicate (not that a firewall is in the way).
 */
Test(boot_tcp_admission, late_claim_on_the_last_rank_stops_the_job, .init = clean_env, .timeout = 30)
{
	struct job j;
	struct ranks rk;
	char imp_addr[32];
	uint8_t rep[40];
	const char *err;
	int64_t t0;
	int imp = -1;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 3, &(struct rank_spec){ .fn = rank0_expect_dup });
	start_ranks(&j, &rk, 1, 1, 3, &(struct rank_spec){ .fn = rank_expect_abort,
							  .arg = "rank 2 was claimed by two processes" });
	wait_file(&j, "r1", "opened", 10000);
	cr_assert_eq(raw_claim(j.port, GOOD_SECRET, 2, 3, &imp), 0, "the impostor is admitted as the last rank");
	snprintf(imp_addr, sizeof(imp_addr), "127.0.0.1:%d", local_port(imp));
	wait_file(&j, "r0", "opened", 5000);	/* the rendezvous is complete */
	t0 = now_ms();
	start_ranks(&j, &rk, 2, 1, 3, &(struct rank_spec){ .fn = rank_once });
	expect_ranks(&j, &rk, 2, 1, OPEN_FAILED, 5000);
	expect_ranks(&j, &rk, 0, 1, EADDRINUSE, 5000);
	expect_ranks(&j, &rk, 1, 1, 0, 5000);
	cr_assert_lt(now_ms() - t0, 3000, "took %lld ms; the boot timeout is 20 s", (long long)(now_ms() - t0));
	err = slurp(&j, "r0", "err");
	cr_assert(strstr(err, "-98 ") == err && strstr(err, "rank 2 was claimed twice"), "%s", err);
	cr_assert(strstr(err, imp_addr) && count(err, "127.0.0.1:") >= 3, "both addresses (%s): %s", imp_addr, err);
	err = slurp(&j, "r2", "err");
	cr_assert(strstr(err, "-98 ") == err && strstr(err, "duplicate") && strstr(err, "already has a rank 2") &&
		  !strstr(err, "firewall"), "%s", err);
	cr_assert_eq(full_io(imp, rep, sizeof(rep), 0), 0, "no abort for the admitted impostor");
	cr_assert(get32(rep + 8) == 2 && get32(rep + 12) == 2, "status %u rank %u", get32(rep + 8), get32(rep + 12));
	cr_assert(closed_by_peer(imp, 3000));
	close(imp);
	job_fini(&j);
}

/*
 * Rank 0 stops the rendezvous (a duplicate claim) while rank 3 has not
 * joined yet: rank 3, arriving just after, is told that rank 0 stopped the
 * job, at once, instead of meeting a closed port until its timeout.
 */
Test(boot_tcp_admission, rank_arriving_after_the_abort_is_told, .init = clean_env, .timeout = 30)
{
	struct job j;
	struct ranks rk;
	const char *err;
	int64_t t0;
	int imp = -1;

	job_init(&j);
	start_ranks(&j, &rk, 0, 1, 4, &(struct rank_spec){ .fn = rank_once });
	start_ranks(&j, &rk, 2, 1, 4, &(struct rank_spec){ .fn = rank_expect_abort });
	wait_file(&j, "r2", "opened", 10000);
	cr_assert_eq(raw_claim(j.port, GOOD_SECRET, 1, 4, &imp), 0);
	t0 = now_ms();
	start_ranks(&j, &rk, 1, 1, 4, &(struct rank_spec){ .fn = rank_once });
	expect_ranks(&j, &rk, 1, 1, OPEN_FAILED, 5000);
	start_ranks(&j, &rk, 3, 1, 4, &(struct rank_spec){ .fn = rank_once });
	expect_ranks(&j, &rk, 3, 1, OPEN_FAILED, 5000);
	expect_ranks(&j, &rk, 0, 1, OPEN_FAILED, 5000);
	expect_ranks(&j, &rk, 2, 1, 0, 5000);
	cr_assert_lt(now_ms() - t0, 3000, "took %lld ms", (long long)(now_ms() - t0));
	err = slurp(&j, "r3", "err");
	cr_assert(strstr(err, "-103 ") == err && strstr(err, "stopped the job") && !strstr(err, "firewall"), "%s", err);
	close(imp);
	job_fini(&j);
}

/* One collective, rank 1 away for 2.5 s (the others wait in the second), one more. */
static int rank_pause(struct hetsgd_boot *b, void *arg)
{
	int rc = rank_once(b, NULL);

	(void)arg;
	if (rc)
		return rc;
	if (hetsgd_boot_rank(b) == 1)
		sleep_ms(2500);
	return rank_once(b, NULL);
}

/*
 * Rank 0 keeps listening after the rendezvous: strangers that connect
 * while it waits in a collective meet the handshake deadline, do not
 * disturb the collective, and cost a few summary lines, not one each.
 */
Test(boot_tcp_flood, strangers_during_a_collective_do_not_disturb_it, .init = clean_env, .timeout = 30)
{
	struct job j;
	struct ranks rk;
	const char *log;
	pid_t flood;
	int64_t t0;

	setenv("HETSGD_BOOT_HANDSHAKE_MS", "300", 1);	/* the ranks inherit it */
	job_init(&j);
	start_ranks(&j, &rk, 0, 3, 3, &(struct rank_spec){ .fn = rank_pause });
	wait_file(&j, "r0", "opened", 10000);
	t0 = now_ms();
	flood = flood_start(&j, j.port, 40, 2000, 400000, 0);	/* under HETSGD_BOOT_PER_SOURCE */
	expect_ranks(&j, &rk, 0, 3, 0, 9000);
	cr_assert_lt(now_ms() - t0, 6000, "took %lld ms", (long long)(now_ms() - t0));
	flood_stop(&j, flood);
	log = slurp(&j, "r0", "stderr");
	cr_assert_lt(count(log, "\n"), 10, "rank 0 wrote %d lines: %.2000s", count(log, "\n"), log);
	cr_assert(strstr(log, "sent nothing before the handshake deadline") && strstr(log, "from 127.0.0.1 x"),
		  "rank 0 did not hear the strangers: %s", log);
	cr_log_info("rank 0 said:\n%s", log);
	job_fini(&j);
}

/*
 * Rank 0 gives up; its error tells why: a wrong secret (a handshake done
 * with a bad MAC), a flood (and from where), or nothing at all.
 */
Test(boot_tcp_admission, wrong_secret_flood_and_silence_are_told_apart, .init = clean_env, .timeout = 30)
{
	struct job a, b, c;
	struct ranks ra, rb, rc;
	const char *err;
	pid_t rogue, flood;

	job_init(&a);
	job_init(&b);
	job_init(&c);
	start_ranks(&a, &ra, 0, 1, 2, &(struct rank_spec){ .timeout_s = "2" });
	start_ranks(&b, &rb, 0, 1, 2, &(struct rank_spec){ .timeout_s = "2" });
	start_ranks(&c, &rc, 0, 1, 2, &(struct rank_spec){ .timeout_s = "2" });
	rogue = spawn(&a, &(struct rank_spec){ .tag = "rogue", .rank = 1, .size = 2, .secret = OTHER_SECRET,
					       .timeout_s = "2" });
	flood = flood_start(&b, b.port, 200, 4000, 400000, 0);
	expect_ranks(&a, &ra, 0, 1, OPEN_FAILED, 6000);
	expect_ranks(&b, &rb, 0, 1, OPEN_FAILED, 6000);
	expect_ranks(&c, &rc, 0, 1, OPEN_FAILED, 6000);
	expect_exit(&a, rogue, "rogue", OPEN_FAILED, 6000);
	flood_stop(&b, flood);

	err = slurp(&a, "r0", "err");
	cr_assert(strstr(err, "-110 ") == err && strstr(err, "WRONG SECRET") && strstr(err, "claims rank 1") &&
		  strstr(err, "another HETSGD_SECRET"), "%s", err);
	cr_assert(!strstr(err, "FLOOD") && !strstr(err, "no connection reached"), "%s", err);
	err = slurp(&b, "r0", "err");
	cr_assert(strstr(err, "-110 ") == err && strstr(err, "FLOOD") && strstr(err, "from 127.0.0.1 ("), "%s", err);
	cr_assert(!strstr(err, "WRONG SECRET") && !strstr(err, "no connection reached"), "%s", err);
	cr_assert_lt(count(slurp(&b, "r0", "stderr"), "\n"), 5, "%s", slurp(&b, "r0", "stderr"));
	err = slurp(&c, "r0", "err");
	cr_assert(strstr(err, "-110 ") == err && strstr(err, "no connection reached rank 0 at all") &&
		  strstr(err, "firewall"), "%s", err);
	cr_assert(!strstr(err, "WRONG SECRET") && !strstr(err, "FLOOD"), "%s", err);
	job_fini(&a);
	job_fini(&b);
	job_fini(&c);
}

/* ---- collectives that go wrong ----------------------------------------- */

static int rank_mismatch(struct hetsgd_boot *b, void *arg)
{
	uint8_t mine[16] = { 0 }, all[64];
	size_t len = hetsgd_boot_rank(b) == 2 ? 16 : 8;
	uint32_t v = 7 + (uint32_t)hetsgd_boot_rank(b), vall[4];
	int r;

	(void)arg;
	if (hetsgd_boot_allgather(b, mine, all, len) != -EPROTO)
		return 40;
	if (!strstr(hetsgd_errmsg(), "same calls") || !strstr(hetsgd_errmsg(), "rank 2 allgather of 16 bytes"))
		return 41;
	/* A barrier against an empty allgather is a mismatch too. */
	if ((hetsgd_boot_rank(b) == 3 ? hetsgd_boot_allgather(b, NULL, NULL, 0) : hetsgd_boot_barrier(b)) != -EPROTO)
		return 42;
	/* Still usable afterwards. */
	if (hetsgd_boot_allgather(b, &v, vall, sizeof(v)))
		return 43;
	for (r = 0; r < 4; r++)
		if (vall[r] != 7 + (uint32_t)r)
			return 44;
	return hetsgd_boot_barrier(b) ? 45 : 0;
}

Test(boot_tcp_collective, mismatch_is_reported_to_all, .init = clean_env, .timeout = 40)
{
	struct job j;
	struct ranks rk;

	job_init(&j);
	start_ranks(&j, &rk, 0, 4, 4, &(struct rank_spec){ .fn = rank_mismatch });
	expect_ranks(&j, &rk, 0, 4, 0, 30000);
	job_fini(&j);
}

/*
 * Rank 2 leaves after one collective; the others fail instead of hanging,
 * and promptly: rank 0 cuts the survivors off when it sees the loss, even
 * though it keeps its handle open for a while longer.
 */
static int rank_leaves(struct hetsgd_boot *b, void *arg)
{
	int rc = rank_once(b, NULL), me = hetsgd_boot_rank(b);
	int64_t t0;

	(void)arg;
	if (rc)
		return rc;
	if (me == 2)
		return 0;	/* closes its connection */
	t0 = now_ms();
	rc = rank_expect_reset(b, me == 0 ? "rank 2" : "lost its connection to rank 0");
	if (rc)
		return rc;
	if (me == 0)
		sleep_ms(3000);
	else if (now_ms() - t0 > 2000)
		return 33;
	return 0;
}

Test(boot_tcp_collective, departed_peer_fails_the_others, .init = clean_env, .timeout = 40)
{
	struct job j;
	struct ranks rk;

	job_init(&j);
	start_ranks(&j, &rk, 0, 4, 4, &(struct rank_spec){ .fn = rank_leaves });
	expect_ranks(&j, &rk, 0, 4, 0, 30000);
	job_fini(&j);
}

/* A big allgather; rank 0 enters late so that rank 2 is still sending. */
#define BIG (8u << 20)

static int rank_big(struct hetsgd_boot *b, void *arg)
{
	uint8_t *mine = calloc(1, BIG), *all = malloc((size_t)BIG * 4);
	int me = hetsgd_boot_rank(b), rc;

	(void)arg;
	if (me == 2)
		write_file(child_job, "r2", "sending", "");
	if (me == 0)
		sleep_ms(1500);
	rc = hetsgd_boot_allgather(b, mine, all, BIG);
	free(mine);
	free(all);
	if (me == 2)
		return 50;	/* should have been killed */
	if (rc != -ECONNRESET)
		return 51;
	if (me == 0 && !strstr(hetsgd_errmsg(), "rank 2"))
		return 52;
	return 0;
}

Test(boot_tcp_collective, peer_killed_mid_collective, .init = clean_env, .timeout = 60)
{
	struct job j;
	struct ranks rk;

	job_init(&j);
	start_ranks(&j, &rk, 0, 4, 4, &(struct rank_spec){ .fn = rank_big });
	wait_file(&j, "r2", "sending", 20000);
	sleep_ms(500);
	kill(rk.pid[2], SIGKILL);
	expect_ranks(&j, &rk, 2, 1, 128 + SIGKILL, 10000);
	expect_ranks(&j, &rk, 0, 2, 0, 30000);
	expect_ranks(&j, &rk, 3, 1, 0, 30000);
	job_fini(&j);
}

static int rank0_dies(struct hetsgd_boot *b, void *arg)
{
	(void)arg;
	if (hetsgd_boot_rank(b) == 0)
		raise(SIGKILL);
	return rank_expect_reset(b, "lost its connection to rank 0");
}

Test(boot_tcp_collective, rank0_killed_fails_the_others, .init = clean_env, .timeout = 40)
{
	struct job j;
	struct ranks rk;

	job_init(&j);
	start_ranks(&j, &rk, 0, 3, 3, &(struct rank_spec){ .fn = rank0_dies });
	expect_ranks(&j, &rk, 0, 1, 128 + SIGKILL, 30000);
	expect_ranks(&j, &rk, 1, 2, 0, 30000);
	job_fini(&j);
}
