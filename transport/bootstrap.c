/*
 * Bootstrap front end and the local launcher backend.
 *
 * The local launcher is the smallest thing that behaves like srun: the
 * caller forks the ranks and serves their collectives over one socketpair
 * per rank.  Ranks send {op, len} then len bytes; the server answers an
 * allgather only when every rank has asked for the same thing, so a rank
 * that dies or disagrees fails the others instead of hanging them.
 *
 * A rank killed by a signal is lost, not a disagreement: barriers that
 * follow are served over the ranks left, and ranks that then hang up
 * together end the job normally (the transport's close is its own
 * farewell among the live ranks and needs no collective here).  An
 * allgather still needs every rank.
 *
 * Signals: while the ranks run, SIGTERM, SIGINT and SIGHUP to the
 * launcher are forwarded to every rank (hetsgd_boot_local_signal() tells
 * which came), and every rank gets SIGTERM when the launcher dies
 * (PR_SET_PDEATHSIG), so that no rank outlives it.
 */
#include <config.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport_priv.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

static const char *const kind_names[] = {
	[HETSGD_BOOT_AUTO] = "auto",
	[HETSGD_BOOT_PMIX] = "pmix",
	[HETSGD_BOOT_PMI2] = "pmi2",
	[HETSGD_BOOT_LOCAL] = "local",
	[HETSGD_BOOT_TCP] = "tcp",
};

int hetsgd_boot_kind_parse(const char *name, enum hetsgd_boot_kind *kind)
{
	size_t i;

	for (i = 0; name && i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
		if (!strcmp(name, kind_names[i])) {
			*kind = (enum hetsgd_boot_kind)i;
			return 0;
		}
	}
	return hetsgd_err(-EINVAL,
			  "unknown bootstrap '%s': use auto, pmix, pmi2, tcp or local",
			  name ? name : "(null)");
}

const char *hetsgd_boot_kind_name(enum hetsgd_boot_kind kind)
{
	if ((unsigned)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
		return "invalid";
	return kind_names[kind];
}

int hetsgd_boot_rank(const struct hetsgd_boot *boot)
{
	return boot->rank;
}

int hetsgd_boot_size(const struct hetsgd_boot *boot)
{
	return boot->size;
}

enum hetsgd_boot_kind hetsgd_boot_get_kind(const struct hetsgd_boot *boot)
{
	return boot->kind;
}

static enum hetsgd_boot_kind detect_kind(void)
{
	/* Slurm's pmix plugin exports PMIX_RANK; its pmi2 plugin, PMI_FD. */
	if (getenv("PMIX_RANK") || getenv("PMIX_NAMESPACE"))
		return HETSGD_BOOT_PMIX;
	if (getenv("PMI_FD"))
		return HETSGD_BOOT_PMI2;
	/* srun --mpi=none, or a user-made launch: rank and size only. */
	if (getenv("HETSGD_RANK") || getenv("SLURM_PROCID"))
		return HETSGD_BOOT_TCP;
	return HETSGD_BOOT_AUTO;
}

int hetsgd_boot_open(enum hetsgd_boot_kind kind, struct hetsgd_boot **out)
{
	struct hetsgd_boot *boot;
	int ret;

	if (kind == HETSGD_BOOT_AUTO) {
		kind = detect_kind();
		if (kind == HETSGD_BOOT_AUTO)
			return hetsgd_err(-ENOENT,
					  "no launcher found in the environment (none of PMIX_RANK, PMI_FD, SLURM_PROCID, HETSGD_RANK is set): "
					  "start the ranks with srun (--mpi=pmix, --mpi=pmi2 or plain), or use the local launcher");
	}
	if (kind == HETSGD_BOOT_LOCAL)
		return hetsgd_err(-EINVAL,
				  "the local bootstrap cannot be opened: its ranks get their handle from hetsgd_boot_local_run()");
	if (kind != HETSGD_BOOT_PMIX && kind != HETSGD_BOOT_PMI2 && kind != HETSGD_BOOT_TCP)
		return hetsgd_err(-EINVAL, "invalid bootstrap kind %d", (int)kind);

	boot = calloc(1, sizeof(*boot));
	if (!boot)
		return hetsgd_err(-ENOMEM, "out of memory allocating the bootstrap handle");
	boot->kind = kind;
	boot->fd = -1;
	ret = kind == HETSGD_BOOT_PMIX ? hetsgd_boot_pmix_open(boot)
	    : kind == HETSGD_BOOT_PMI2 ? hetsgd_boot_pmi2_open(boot)
				       : hetsgd_boot_tcp_open(boot);
	if (ret) {
		free(boot);
		return ret;
	}
	hetsgd_log_set_rank(boot->rank);
	hetsgd_log(HETSGD_LOG_INFO, "boot", "%s bootstrap: rank %d of %d",
		   kind == HETSGD_BOOT_PMIX ? "PMIx" : kind == HETSGD_BOOT_PMI2 ? "PMI2" : "tcp", boot->rank,
		   boot->size);
	*out = boot;
	return 0;
}

static int left_err(const struct hetsgd_boot *boot)
{
	return hetsgd_err(-ENOTCONN,
			  "rank %d has left the %s bootstrap (hetsgd_boot_leave): no collective can follow; "
			  "leave only once the transport is open",
			  boot->rank, hetsgd_boot_kind_name(boot->kind));
}

int hetsgd_boot_allgather(struct hetsgd_boot *boot, const void *mine,
			  void *all, size_t len)
{
	if (boot->left && boot->ops->leave)
		return left_err(boot);
	if (len > HETSGD_BOOT_MAX_LEN)
		return hetsgd_err(-EMSGSIZE,
				  "allgather of %zu bytes per rank exceeds the bootstrap limit of %u bytes: "
				  "exchange connection data through the bootstrap and bulk data through the transport",
				  len, HETSGD_BOOT_MAX_LEN);
	if (len && (!mine || !all))
		return hetsgd_err(-EINVAL, "allgather called with a NULL buffer");
	boot->seq++;
	return boot->ops->allgather(boot, mine, all, len);
}

int hetsgd_boot_barrier(struct hetsgd_boot *boot)
{
	if (boot->left && boot->ops->leave)
		return left_err(boot);
	boot->seq++;
	return boot->ops->barrier(boot);
}

void hetsgd_boot_leave(struct hetsgd_boot *boot)
{
	if (!boot || boot->left)
		return;
	boot->left = 1;
	if (boot->ops && boot->ops->leave) {
		boot->ops->leave(boot);
		hetsgd_log(HETSGD_LOG_DEBUG, "boot", "left the %s bootstrap", hetsgd_boot_kind_name(boot->kind));
	}
}

void hetsgd_boot_close(struct hetsgd_boot *boot)
{
	if (!boot)
		return;
	if (boot->ops && boot->ops->close)
		boot->ops->close(boot);
	free(boot);
}

/* ---- local launcher ---------------------------------------------------- */

enum { LOCAL_OP_ALLGATHER = 1, LOCAL_OP_BARRIER = 2, LOCAL_OP_ERROR = 3 };

struct local_msg {
	uint32_t op;
	uint32_t pad;
	uint64_t len;
};

/* 0, or -errno; -EPIPE on a clean end of stream. */
static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int local_collective(struct hetsgd_boot *boot, uint32_t op,
			    const void *mine, void *all, size_t len)
{
	struct local_msg msg = { .op = op, .len = len };
	int ret;

	ret = write_full(boot->fd, &msg, sizeof(msg));
	if (!ret && len)
		ret = write_full(boot->fd, mine, len);
	if (!ret)
		ret = read_full(boot->fd, &msg, sizeof(msg));
	if (ret)
		return hetsgd_err(-ECONNRESET,
				  "rank %d lost the local launcher during collective %u (%s): "
				  "another rank exited early or the launcher died",
				  boot->rank, boot->seq, strerror(-ret));
	if (msg.op == LOCAL_OP_ERROR)
		return hetsgd_err(-EPROTO,
				  "rank %d: the ranks called different collectives at step %u "
				  "(operation or length differ): every rank must make the same calls in the same order",
				  boot->rank, boot->seq);
	if (msg.op != op || msg.len != (uint64_t)len * (uint64_t)boot->size)
		return hetsgd_err(-EPROTO, "rank %d: malformed reply from the local launcher", boot->rank);
	if (len) {
		ret = read_full(boot->fd, all, len * (size_t)boot->size);
		if (ret)
			return hetsgd_err(-ECONNRESET, "rank %d: local launcher closed mid-reply", boot->rank);
	}
	return 0;
}

static int local_allgather(struct hetsgd_boot *boot, const void *mine,
			   void *all, size_t len)
{
	return local_collective(boot, LOCAL_OP_ALLGATHER, mine, all, len);
}

static int local_barrier(struct hetsgd_boot *boot)
{
	return local_collective(boot, LOCAL_OP_BARRIER, NULL, NULL, 0);
}

static void local_close(struct hetsgd_boot *boot)
{
	if (boot->fd >= 0)
		close(boot->fd);
	boot->fd = -1;
}

static const struct hetsgd_boot_ops local_ops = {
	.allgather = local_allgather,
	.barrier = local_barrier,
	.close = local_close,
};

/*
 * Rank r hung up (its socket reached end of file): it is leaving.  Reap it
 * now; 1 when a signal killed it (lost: the others may go on without it),
 * 0 when it exited.
 */
static int hung_up_lost(pid_t pid, int *status)
{
	int st = 0;

	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return 0;
	}
	*status = st;
	return WIFSIGNALED(st);
}

/*
 * Serve rounds of collectives until every rank has hung up.  Returns 0 when
 * all ranks hung up together between collectives (or were lost to a
 * signal), -EPROTO otherwise (the survivors are cut off so that they fail
 * instead of waiting forever).  Ranks reaped here have pids[r] = 0 and
 * their wait status in status[r].
 */
/* Long: one round's read, check, reply and the lost-rank rules in one loop, so that the order they run in is plain. */
static int local_serve(int nranks, int *fds, pid_t *pids, int *status)
{
	struct local_msg *req = calloc((size_t)nranks, sizeof(*req));
	uint8_t *gone = calloc((size_t)nranks, 1);
	char *gathered = NULL;
	int ret = 0, r;

	if (!req || !gone) {
		free(req);
		free(gone);
		return -ENOMEM;
	}
	for (;;) {
		int exited = 0, agree = 1, first = -1;
		size_t len;

		for (r = 0; r < nranks; r++) {
			if (gone[r]) {
				req[r].op = 0;
				continue;
			}
			if (read_full(fds[r], &req[r], sizeof(req[r]))) {
				req[r].op = 0;
				gone[r] = 1;
				if (!pids[r] || !hung_up_lost(pids[r], &status[r]))
					exited++;
				pids[r] = 0;
				continue;
			}
			if (first < 0)
				first = r;
			if (req[r].op != LOCAL_OP_ALLGATHER && req[r].op != LOCAL_OP_BARRIER)
				req[r].op = 0, agree = 0;
		}
		if (first < 0)
			break;		/* every rank has hung up */
		if (exited) {	/* it returned before the others */
			ret = -EPROTO;
			break;
		}
		for (r = first + 1; r < nranks; r++)
			if (!gone[r] && (req[r].op != req[first].op || req[r].len != req[first].len))
				agree = 0;
		/* a rank lost to a signal is left out of barriers, not allgathers */
		for (r = 0; r < nranks; r++)
			if (gone[r] && req[first].op != LOCAL_OP_BARRIER) {
				ret = -EPROTO;
				break;
			}
		if (ret)
			break;
		if (!agree || req[first].len > HETSGD_BOOT_MAX_LEN) {
			/* Drain what was sent so the replies are not misread. */
			struct local_msg err = { .op = LOCAL_OP_ERROR };
			char sink[4096];

			for (r = 0; r < nranks; r++) {
				uint64_t left = req[r].op ? req[r].len : 0;

				if (gone[r])
					continue;
				while (left && left <= HETSGD_BOOT_MAX_LEN) {
					size_t n = left < sizeof(sink) ? left : sizeof(sink);

					if (read_full(fds[r], sink, n))
						break;
					left -= n;
				}
				write_full(fds[r], &err, sizeof(err));
			}
			continue;
		}
		len = req[first].len;
		free(gathered);
		gathered = len ? malloc(len * (size_t)nranks) : NULL;
		if (len && !gathered) {
			ret = -ENOMEM;
			break;
		}
		for (r = 0; r < nranks && len; r++)
			if (read_full(fds[r], gathered + (size_t)r * len, len))
				break;
		if (r < nranks && len) {
			ret = -EPROTO;
			break;
		}
		for (r = 0; r < nranks; r++) {
			struct local_msg rep = { .op = req[first].op,
						 .len = (uint64_t)len * (uint64_t)nranks };

			if (gone[r])
				continue;
			if (write_full(fds[r], &rep, sizeof(rep)) ||
			    (len && write_full(fds[r], gathered, len * (size_t)nranks)))
				ret = -EPROTO;
		}
		if (ret)
			break;
	}
	free(gathered);
	free(gone);
	free(req);
	/* Cut off every survivor: a blocked rank then fails instead of hanging. */
	for (r = 0; r < nranks; r++)
		shutdown(fds[r], SHUT_RDWR);
	return ret;
}

/* One socket pair per rank: fds[r] is the server's end, peer_fds[r] rank r's. */
static int make_pairs(int nranks, int *fds, int *peer_fds)
{
	int r;

	for (r = 0; r < nranks; r++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			int ret = hetsgd_err(-errno, "local launcher: socketpair: %s (raise ulimit -n?)",
					     strerror(errno));

			while (r--)
				close(fds[r]), close(peer_fds[r]);
			return ret;
		}
		fds[r] = sv[0];
		peer_fds[r] = sv[1];
	}
	return 0;
}

/* The launcher's ranks, for its signal handler; 0 when none run. */
static pid_t *volatile fwd_pids;
static volatile int fwd_n;
static volatile sig_atomic_t fwd_sig;
static const int fwd_signals[] = { SIGTERM, SIGINT, SIGHUP };
#define NFWD (int)(sizeof(fwd_signals) / sizeof(fwd_signals[0]))

/* Pass the signal on to every rank: each stops its run and writes what
 * it has.  Async-signal-safe: kill() only. */
static void fwd_handler(int sig)
{
	pid_t *p = fwd_pids;

	fwd_sig = sig;
	for (int r = 0; p && r < fwd_n; r++)
		if (p[r] > 0)
			kill(p[r], sig);
}

int hetsgd_boot_local_signal(void)
{
	return fwd_sig;
}

/*
 * In the child of rank r: run it and exit with its status.  The launcher's
 * arrays are the parent's copies: freed here, or LeakSanitizer's check
 * below would count them once the caller's frame no longer holds them.
 */
static _Noreturn void run_rank(int r, int nranks, int *fds, int *peer_fds, pid_t *pids,
			       hetsgd_rank_fn fn, void *arg, pid_t launcher)
{
	struct hetsgd_boot boot = {
		.ops = &local_ops, .kind = HETSGD_BOOT_LOCAL,
		.rank = r, .size = nranks, .fd = peer_fds[r],
	};
	int i, rc;

	/* the launcher's forwarding is not the rank's: default until fn
	 * says otherwise; the launcher's death is a SIGTERM here, and a
	 * launcher that died before that was set is checked right after */
	for (i = 0; i < NFWD; i++)
		signal(fwd_signals[i], SIG_DFL);
	fwd_pids = NULL;
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) || getppid() != launcher)
		_exit(1);
	for (i = 0; i < nranks; i++) {
		close(fds[i]);
		if (i != r)
			close(peer_fds[i]);
	}
	free(fds);
	free(peer_fds);
	free(pids);
	hetsgd_log_set_rank(r);
	hetsgd_log(HETSGD_LOG_DEBUG, "boot", "local bootstrap: rank %d of %d, pid %ld", r, nranks, (long)getpid());
	rc = fn(&boot, arg);
	local_close(&boot);
	fflush(NULL);
#if defined(__SANITIZE_ADDRESS__)
	/* _exit skips LeakSanitizer's exit hook: check the rank here,
	 * or a sanitizer build never sees what a rank leaked */
	__lsan_do_leak_check();
#endif
	_exit(rc < 0 ? 1 : rc > 255 ? 255 : rc);
}

/* How a rank ended, for the launcher's message. */
static void describe(int r, int st, char *out, size_t len)
{
	if (WIFSIGNALED(st))
		snprintf(out, len, "rank %d was killed by signal %d (%s)", r, WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(out, len, "rank %d exited with status %d", r, WEXITSTATUS(st));
}

/*
 * Wait for every forked rank (those local_serve reaped have pids[r] = 0
 * and their status already).  first[] says how the first one failed: a
 * rank killed by a signal before any that exited with an error, since the
 * others mostly fail because of it.
 */
static void reap(int nranks, const pid_t *pids, int *status, char *first, size_t len)
{
	int r, pass;

	for (r = 0; r < nranks; r++) {
		if (!pids[r])
			continue;
		while (waitpid(pids[r], &status[r], 0) < 0 && errno == EINTR)
			;
	}
	for (pass = 0; pass < 2 && !first[0]; pass++)
		for (r = 0; r < nranks && !first[0]; r++) {
			int st = status[r];

			if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
				continue;
			if (pass == 0 ? WIFSIGNALED(st) : 1)
				describe(r, st, first, len);
		}
}

/* Long: signal forwarding set up, the forks and their unwinding are one sequence whose order matters. */
int hetsgd_boot_local_run(int nranks, hetsgd_rank_fn fn, void *arg,
			  int *statuses)
{
	int *fds, *peer_fds, *status, r, ret = 0, served;
	pid_t *pids, self = getpid();
	struct sigaction sa, old[NFWD];
	char first[256] = "";

	if (nranks < 1 || nranks > 4096)
		return hetsgd_err(-EINVAL, "local launcher: %d ranks requested; use 1 to 4096", nranks);
	if (!fn)
		return hetsgd_err(-EINVAL, "local launcher: no rank function given");

	fds = malloc(sizeof(int) * (size_t)nranks);
	peer_fds = malloc(sizeof(int) * (size_t)nranks);
	pids = calloc((size_t)nranks, sizeof(pid_t));
	status = calloc((size_t)nranks, sizeof(int));
	if (!fds || !peer_fds || !pids || !status) {
		ret = hetsgd_err(-ENOMEM, "local launcher: out of memory");
		goto free_arrays;
	}
	ret = make_pairs(nranks, fds, peer_fds);
	if (ret)
		goto free_arrays;

	/* Forward the signals that stop a job from before the first fork:
	 * a rank never misses one that came to the launcher. */
	fwd_sig = 0;
	fwd_n = nranks;
	fwd_pids = pids;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fwd_handler;
	sigemptyset(&sa.sa_mask);
	for (r = 0; r < NFWD; r++)
		sigaction(fwd_signals[r], &sa, &old[r]);
	/* Buffered output would otherwise be printed once per child as well;
	 * and the log's settings are read once, here, so that a bad
	 * HETSGD_LOG is reported once rather than by every child. */
	fflush(NULL);
	hetsgd_log_enabled(HETSGD_LOG_DEBUG, "boot");
	for (r = 0; r < nranks; r++) {
		pid_t pid = fork();

		if (pid < 0) {
			ret = hetsgd_err(-errno, "local launcher: fork of rank %d: %s", r, strerror(errno));
			break;
		}
		if (pid == 0)
			run_rank(r, nranks, fds, peer_fds, pids, fn, arg, self);
		pids[r] = pid;
		if (fwd_sig)	/* it came while this rank was being made */
			kill(pid, fwd_sig);
	}
	for (r = 0; r < nranks; r++)
		close(peer_fds[r]);
	if (ret) {
		/* Children already forked see their peers' sockets close and fail. */
		for (r = 0; r < nranks; r++)
			shutdown(fds[r], SHUT_RDWR);
		served = 0;
	} else {
		served = local_serve(nranks, fds, pids, status);
	}
	for (r = 0; r < nranks; r++)
		close(fds[r]);

	reap(nranks, pids, status, first, sizeof(first));
	fwd_pids = NULL;
	for (r = 0; r < NFWD; r++)
		sigaction(fwd_signals[r], &old[r], NULL);
	if (statuses)
		memcpy(statuses, status, sizeof(int) * (size_t)nranks);
	if (!ret && first[0])
		ret = hetsgd_err(-ECHILD, "local launcher: %s; see its output above", first);
	else if (!ret && served)
		ret = hetsgd_err(-ECHILD,
				 "local launcher: the ranks did not finish the same collectives (one returned before the others)");
free_arrays:
	free(status);
	free(pids);
	free(peer_fds);
	free(fds);
	return ret;
}
