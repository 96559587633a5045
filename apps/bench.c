#define _GNU_SOURCE 1 /* sched_setaffinity, CPU_SET */
/*
 * hetsgd-bench: put bandwidth and latency of the block transport against
 * block size, for each provider, perftest-style.
 *
 * Two ranks share one endpoint: forked on this host by the local launcher
 * (the default), or on two hosts, perftest style (`hetsgd-bench --server`
 * on one, `hetsgd-bench HOST` on the other, joined by the TCP rendezvous),
 * or started by a launcher (`srun -N 2 -n 2 hetsgd-bench --boot pmix`).
 *  - bandwidth: rank 0 streams puts of one size to rank 1, which releases
 *    each block as soon as it sees it; timed at rank 0 from the first put
 *    to the last local completion (as ib_write_bw times its sender).
 *    MB = 2^20 bytes, as in perftest.
 *    The same run gives the message rate (blocks per second, printed in
 *    Mpps = 10^6 blocks/s as ib_write_bw's MsgRate), the number that
 *    matters for small blocks.
 *  - latency: ping-pong of one block each way; one-way latency = RTT/2,
 *    reported as the median ("typical", as ib_write_lat) and the mean.
 * For shm the anchor is memcpy of the same sizes into the same number of
 * rotating slots, measured in the same run in rounds that alternate with
 * ours; medians and their ratio are printed.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hetsgd_topology.h"
#include "hetsgd_transport.h"
#include "quote.h"

#define MAX_SIZES 32
#define MAX_ROUNDS 15
#define MB (1024.0 * 1024.0)

struct opts {
	enum hetsgd_provider prov;
	const char *device;
	size_t sizes[MAX_SIZES];
	int nsizes;
	int csv;
	uint32_t slots;
	double bw_bytes;	/* bytes streamed per size */
	int lat_iters;
	long max_iters;
	long iters;		/* -n: exchanges per size for both (0: from bytes) */
	int do_bw, do_lat;
	int rounds;
	int gid_index;
	int gbits;		/* --report_gbits */
	int pin_index;		/* -1: this rank's number (both ranks on this host) */
	int chain;		/* bandwidth sender: hetsgd_tp_put_more() (-l 16, the default) or put (-l 1) */
};

struct result {
	double bw_MBps;
	double msg_Mpps;	/* blocks per second / 10^6, as ib_write_bw's MsgRate */
	double lat_us;		/* median one-way */
	double lat_avg_us;
	double memcpy_MBps;
	/*
	 * Bandwidth runs, summed over rounds, counted after the first
	 * quarter of each run's puts (until the receiver is back from the
	 * barrier and polling, any ring fills): puts refused for want of a
	 * credit (a free slot at the receiver) or of a send-queue entry, and
	 * for the send window, the bound a stream is meant to meet.
	 */
	uint64_t credit_waits, window_waits;
	uint64_t puts, doorbells;	/* bandwidth sender, all rounds: puts per doorbell */
};

#define now_s hetsgd_clock_s

/*
 * Per-round-trip stamps, as perftest takes them: the cycle counter where
 * there is one, scaled by the clock over the whole run.  In a guest
 * without a stable TSC clock_gettime reads an emulated timer (under TCG,
 * tens of microseconds), which would be timed into every round trip.
 */
static inline uint64_t ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_ia32_rdtsc();
#else
	return (uint64_t)(now_s() * 1e9);
#endif
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * Progress until an event of type `type` arrives (RECVs are released or
 * returned).  It spins, and after SPIN_BEFORE_YIELD empty polls yields
 * each time: a rank pinned to a CPU must not starve what else has to run
 * there (on soft-RoCE, the kernel's side of the transfer, moved to
 * ksoftirqd when the host is busy), or one round trip takes a time slice.
 */
#define SPIN_BEFORE_YIELD 256
static int wait_event(struct hetsgd_tp *tp, enum hetsgd_ev_type type, struct hetsgd_ev *out)
{
	struct hetsgd_ev ev[16];
	int n, i, found = 0, idle = 0;

	while (!found) {
		n = hetsgd_tp_progress(tp, ev, 16);
		if (n < 0)
			return n;
		if (n == 0 && ++idle > SPIN_BEFORE_YIELD)
			sched_yield();
		for (i = 0; i < n; i++) {
			if (ev[i].type == type && !found) {
				*out = ev[i];
				found = 1;
			} else if (ev[i].type == HETSGD_EV_RECV) {
				int r = hetsgd_tp_release(tp, ev[i].peer, ev[i].slot);

				if (r)
					return r;
			}
		}
	}
	return 0;
}

/*
 * yield: a bandwidth run, where a blocked sender gives its CPU to whatever
 * else runs there (on soft-RoCE: the kernel's side of the transfer)
 * rather than spin; perftest's waiting server sleeps the whole run.
 */
static int put_retry(struct hetsgd_tp *tp, int peer, struct hetsgd_tx *tx, size_t len,
		     long *sent_events, int yield, int more)
{
	struct hetsgd_ev ev[32];
	int ret, n, i;

	while ((ret = (more ? hetsgd_tp_put_more : hetsgd_tp_put)(tp, peer, tx, len, 1)) == -EAGAIN) {
		n = hetsgd_tp_progress(tp, ev, 32);
		if (n < 0)
			return n;
		if (n == 0 && yield)
			sched_yield();
		for (i = 0; i < n; i++) {
			if (ev[i].type == HETSGD_EV_SENT)
				(*sent_events)++;
			else if ((ret = hetsgd_tp_release(tp, ev[i].peer, ev[i].slot)))
				return ret;
		}
	}
	return ret;
}

/*
 * The bandwidth receiver of blocks of RX_SLEEP_MIN or more, idle, sleeps
 * (smaller blocks yield: a sleeping receiver would cut their message
 * rate, and their sender waits on credits instead).  On soft-RoCE the
 * receive side of every write is kernel work on the same CPUs, and every
 * wake-up of the receiver is host time taken from it (under TCG a timer
 * that fires and a virtual CPU that runs); perftest's bandwidth server
 * sleeps the whole run.  It sleeps as long as it takes about an eighth of
 * the ring to land, paced by what each sleep let land: a sleep after
 * which fewer than that had come doubles the next one, one after which
 * more than twice that had come halves it, between RX_IDLE_US and
 * RX_IDLE_MAX_US.  An eighth keeps the receiver's lag far inside the half
 * ring the transport leaves for it (tp_verbs.c, verbs_pipeline), so the
 * sender never waits for a credit (bench-vs-perftest.sh asserts it).
 * Measured in the bed at 64 KiB (8 alternating rounds, one boot, medians,
 * against ib_write_bw): sleeping 20 us at a time after 256 yields (what
 * this replaced: a wake-up and up to 256 yields per block) 0.99x, 5 ms
 * 1.02x, 100 ms 0.86x with credit waits; earlier, yielding only, 0.62x.
 * Over shm, where a stream of 64 KiB blocks runs at memory speed and
 * nothing else needs the CPU, it yields SPIN_BEFORE_YIELD times first,
 * as before: a receiver that slept at once cut shm's 64 KiB bandwidth
 * twentyfold.
 */
#define RX_IDLE_US 20
#define RX_IDLE_MAX_US 5000
#define RX_SLEEP_MIN 65536
struct rx_pace {
	long sleep_us;		/* the next sleep */
	long found;		/* blocks since the last sleep */
	long target;		/* an eighth of the ring, at least 1 */
	long idle;		/* empty polls in a row */
	int yield_first;	/* shm: SPIN_BEFORE_YIELD yields before sleeping */
};

static void rx_idle(struct rx_pace *p, size_t size)
{
	struct timespec ts;

	if (size < RX_SLEEP_MIN || (p->yield_first && ++p->idle <= SPIN_BEFORE_YIELD)) {
		sched_yield();
		return;
	}
	if (p->found < p->target)
		p->sleep_us = p->sleep_us * 2 > RX_IDLE_MAX_US ? RX_IDLE_MAX_US : p->sleep_us * 2;
	else if (p->found > 2 * p->target)
		p->sleep_us = p->sleep_us / 2 < RX_IDLE_US ? RX_IDLE_US : p->sleep_us / 2;
	p->found = 0;
	ts.tv_sec = p->sleep_us / 1000000;
	ts.tv_nsec = (p->sleep_us % 1000000) * 1000;
	nanosleep(&ts, NULL);
}

static int bench_bw(struct hetsgd_tp *tp, int me, size_t size, long iters, int chain,
		    enum hetsgd_provider prov, double *mbps, struct result *r)
{
	uint32_t slots = hetsgd_tp_slots(tp);
	struct rx_pace pace = { .sleep_us = RX_IDLE_US, .target = slots >= 16 ? (long)slots / 8 : 1,
				.yield_first = prov == HETSGD_PROV_SHM };
	struct hetsgd_tp_stats s0 = { 0 }, s1;
	struct hetsgd_tx *tx;
	struct hetsgd_ev ev[32];
	long sent_events = 0, got = 0, i;
	double t0, t1;
	int ret, n, k;

	if (hetsgd_tp_tx_get(tp, &tx))
		return -EIO;
	memset(tx->data, 0x5a, size);
	if (me == 0) {
		struct hetsgd_tp_stats a;

		hetsgd_tp_get_stats(tp, &a);
		t0 = now_s();
		for (i = 0; i < iters; i++) {
			if (i == iters / 4)
				hetsgd_tp_get_stats(tp, &s0);
			/* the last put is not held: nothing after it would carry it */
			ret = put_retry(tp, 1, tx, size, &sent_events, 1, chain && i + 1 < iters);
			if (ret)
				return ret;
		}
		hetsgd_tp_get_stats(tp, &s1);
		r->credit_waits += (s1.credit_waits - s0.credit_waits) + (s1.queue_waits - s0.queue_waits);
		r->window_waits += s1.window_waits - s0.window_waits;
		r->puts += s1.puts - a.puts;
		r->doorbells += s1.doorbells - a.doorbells;
		while (sent_events < iters) {
			n = hetsgd_tp_progress(tp, ev, 32);
			if (n < 0)
				return n;
			if (n == 0)
				sched_yield();
			for (k = 0; k < n; k++)
				if (ev[k].type == HETSGD_EV_SENT)
					sent_events++;
		}
		t1 = now_s();
		*mbps = (double)size * (double)iters / (t1 - t0) / MB;
	} else {
		while (got < iters) {
			n = hetsgd_tp_progress(tp, ev, 32);
			if (n < 0)
				return n;
			if (n == 0)
				rx_idle(&pace, size);	/* the CPU to the kernel's side of the transfer */
			else
				pace.idle = 0;

			for (k = 0; k < n; k++) {
				if (ev[k].type != HETSGD_EV_RECV)
					continue;
				if (ev[k].len != size)
					return -EBADMSG;
				got++;
				pace.found++;
				ret = hetsgd_tp_release(tp, ev[k].peer, ev[k].slot);
				if (ret)
					return ret;
			}
		}
	}
	hetsgd_tp_tx_put(tp, tx);
	return 0;
}

static int bench_lat(struct hetsgd_tp *tp, int me, size_t size, int iters, double *med, double *avg)
{
	double *rtt = calloc((size_t)iters, sizeof(double)), sum = 0, s0, per_tick;
	uint64_t t_prev, k0;
	struct hetsgd_tx *tx;
	struct hetsgd_ev ev;
	long dummy = 0;
	int i, ret = 0, warm = iters / 10 + 1;

	if (!rtt || hetsgd_tp_tx_get(tp, &tx)) {
		free(rtt);
		return -ENOMEM;
	}
	memset(tx->data, 0x3c, size);
	/* One cycle count per round trip, as perftest. */
	s0 = now_s();
	t_prev = k0 = ticks();
	for (i = -warm; i < iters && !ret; i++) {
		uint64_t t;

		if (me == 0) {
			ret = put_retry(tp, 1, tx, size, &dummy, 0, 0);
			if (!ret)
				ret = wait_event(tp, HETSGD_EV_RECV, &ev);
		} else {
			ret = wait_event(tp, HETSGD_EV_RECV, &ev);
			if (!ret)
				ret = put_retry(tp, 0, tx, size, &dummy, 0, 0);
		}
		if (!ret)
			ret = hetsgd_tp_release(tp, ev.peer, ev.slot);
		t = ticks();
		if (i >= 0)
			rtt[i] = (double)(t - t_prev);
		t_prev = t;
	}
	/* seconds per tick, over the whole run */
	per_tick = t_prev > k0 ? (now_s() - s0) / (double)(t_prev - k0) : 0;
	for (i = 0; i < iters; i++)
		rtt[i] *= per_tick;
	if (!ret && me == 0) {
		for (i = 0; i < iters; i++)
			sum += rtt[i];
		qsort(rtt, (size_t)iters, sizeof(double), cmp_double);
		*med = rtt[iters / 2] / 2 * 1e6;
		*avg = sum / iters / 2 * 1e6;
	}
	/* Drain the SENT events of the ping-pong so the next size starts clean. */
	hetsgd_tp_tx_put(tp, tx);
	free(rtt);
	return ret;
}

static double bench_memcpy(size_t size, uint32_t slots, double bytes)
{
	char *src = malloc(size), *dst = malloc(size * slots);
	long iters = (long)(bytes / (double)size), i;
	double t0, t1;

	if (!src || !dst) {
		free(src);
		free(dst);
		return 0;
	}
	memset(src, 1, size);
	memset(dst, 2, size * slots);
	t0 = now_s();
	for (i = 0; i < iters; i++) {
		memcpy(dst + (size_t)(i % slots) * size, src, size);
		__asm__ __volatile__("" : : "r"(dst) : "memory");
	}
	t1 = now_s();
	free(src);
	free(dst);
	return (double)size * (double)iters / (t1 - t0) / MB;
}

struct shared {
	struct opts *o;
	struct result *res;	/* MAP_SHARED: rank 0 writes, the launcher reads */
};

/*
 * Both ranks spin: on a small machine the scheduler sometimes stacks
 * them on one CPU and a run is worth nothing.  Pin rank r to the r-th
 * allowed CPU, as one pins perftest with taskset.
 */
static void pin_self(int pin)
{
	cpu_set_t allowed, one;
	int cpu, seen = 0;

	if (getenv("HETSGD_BENCH_NOPIN") || sched_getaffinity(0, sizeof(allowed), &allowed) ||
	    CPU_COUNT(&allowed) < 2 || CPU_COUNT(&allowed) <= pin)
		return;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed) || seen++ != pin)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		sched_setaffinity(0, sizeof(one), &one);
		break;
	}
}

/* Bandwidth (medians of alternating rounds) and latency of one size into r. */
static int measure_size(struct hetsgd_boot *boot, struct hetsgd_tp *tp, const struct opts *o, int me,
			size_t size, struct result *r)
{
	double bw[MAX_ROUNDS] = { 0 }, mc[MAX_ROUNDS] = { 0 };
	long iters = (long)(o->bw_bytes / (double)size);
	int ret = 0, round;

	/* Small blocks measure message rate, not bandwidth: bound the time. */
	if (iters < 200)
		iters = 200;
	if (iters > o->max_iters)
		iters = o->max_iters;
	if (o->iters)
		iters = o->iters;
	/*
	 * Bandwidth in alternating rounds with its anchor (memcpy of the
	 * same size, by rank 0 while rank 1 sleeps in the barrier), so
	 * that a noisy machine slows both alike; medians are reported.
	 */
	for (round = 0; round < o->rounds && o->do_bw && !ret; round++) {
		if (hetsgd_boot_barrier(boot))
			return -EIO;
		ret = bench_bw(tp, me, size, iters, o->chain, o->prov, &bw[round], r);
		if (!ret && hetsgd_boot_barrier(boot))
			ret = -EIO;
		if (!ret && me == 0 && o->prov == HETSGD_PROV_SHM)
			mc[round] = bench_memcpy(size, hetsgd_tp_slots(tp), (double)iters * (double)size);
	}
	if (!ret && o->do_bw && me == 0) {
		qsort(bw, (size_t)o->rounds, sizeof(double), cmp_double);
		qsort(mc, (size_t)o->rounds, sizeof(double), cmp_double);
		r->bw_MBps = bw[o->rounds / 2];
		r->msg_Mpps = r->bw_MBps * MB / (double)size / 1e6;
		r->memcpy_MBps = mc[o->rounds / 2];
	}
	if (!ret && hetsgd_boot_barrier(boot))
		ret = -EIO;
	if (!ret && o->do_lat) {
		/* Large blocks: latency is bandwidth-bound, a few round trips tell it. */
		long lat_iters = (long)(o->bw_bytes / (double)size / 8);

		if (lat_iters > o->lat_iters)
			lat_iters = o->lat_iters;
		if (lat_iters < 20)
			lat_iters = 20;
		if (o->iters)
			lat_iters = o->iters;
		ret = bench_lat(tp, me, size, (int)lat_iters, &r->lat_us, &r->lat_avg_us);
	}
	return ret;
}

static int rank_main(struct hetsgd_boot *boot, void *arg)
{
	struct shared *sh = arg;
	struct opts *o = sh->o;
	struct hetsgd_tp_attr attr;
	struct hetsgd_tp *tp;
	size_t maxsz = 0;
	int me = hetsgd_boot_rank(boot), s, ret;
	int pin = o->pin_index >= 0 ? o->pin_index : me;

	for (s = 0; s < o->nsizes; s++)
		if (o->sizes[s] > maxsz)
			maxsz = o->sizes[s];
	pin_self(pin);
	hetsgd_tp_attr_init(&attr);
	attr.provider = o->prov;
	attr.verbs.device = o->device;
	attr.verbs.gid_index = o->gid_index;
	attr.slots = o->slots;
	attr.slot_bytes = (maxsz + 63) / 64 * 64;
	attr.tx_bufs = 4;
	ret = hetsgd_tp_open(boot, &attr, &tp);
	if (ret) {
		fprintf(stderr, "hetsgd-bench: rank %d: %s\n", me, hetsgd_errmsg());
		return 1;
	}
	if (me == 0 && !o->csv)
		printf("# %s\n", hetsgd_tp_describe(tp));
	for (s = 0; s < o->nsizes; s++) {
		if (measure_size(boot, tp, o, me, o->sizes[s], &sh->res[s])) {
			fprintf(stderr, "hetsgd-bench: rank %d, %zu bytes: %s\n", me, o->sizes[s], hetsgd_errmsg());
			return 1;
		}
	}
	ret = hetsgd_tp_close(tp);
	if (ret) {
		fprintf(stderr, "hetsgd-bench: rank %d: close: %s\n", me, hetsgd_errmsg());
		return 1;
	}
	return 0;
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s)
		return -1;
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	if (*end || v < 1 || v > (1ull << 30))
		return -1;
	*out = (size_t)v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hetsgd-bench [OPTIONS]              two ranks on this host\n"
		"       hetsgd-bench [OPTIONS] --server     perftest style: the server (rank 0, the\n"
		"       hetsgd-bench [OPTIONS] HOST         sender) here, the client on another host\n"
		"       srun -N 2 -n 2 hetsgd-bench --boot pmix|pmi2|tcp|auto [OPTIONS]\n"
		"  --provider  transport provider (default shm; verbs when two hosts)\n"
		"  -d, --ib-dev, --device  verbs: RDMA device (default $HETSGD_IB_DEV or the first active port)\n"
		"  -x, --gid-index  verbs: GID index (default $HETSGD_GID_INDEX or the RoCE v2 IPv4 GID)\n"
		"  -s, --size, --sizes  block sizes, comma-separated, K/M suffixes\n"
		"              (default 8,64,512,4K,64K,256K,1M)\n"
		"  -a, --all   every size from 2 bytes to 8 MiB, as perftest -a\n"
		"  -n, --iters exchanges per size, for bandwidth and latency alike (default: from\n"
		"              --bytes and --lat-iters)\n"
		"  --report_gbits  bandwidth in Gb/s (10^9 bits), as perftest; MB/s otherwise\n"
		"  -p, --port  the TCP rendezvous port of --server / HOST (default 18515)\n"
		"  -F          accepted for perftest's command lines; does nothing\n"
		"  -l, --post_list  bandwidth sender: 16 (default) puts by hetsgd_tp_put_more, up\n"
		"              to 16 per doorbell; 1: each by hetsgd_tp_put, one doorbell each\n"
		"  --csv       machine-readable rows: provider,size_bytes,bw_MBps (bw_Gbps with\n"
		"              --report_gbits),lat_us,msg_Mpps (blocks/s / 10^6),credit_waits,\n"
		"              window_waits,puts_per_doorbell (verbs; 0 on shm); with shm, a row\n"
		"              per size with provider memcpy (its anchor) and no latency\n"
		"  --slots     staging slots per peer (default: the transport's; verbs sizes the\n"
		"              ring from the device's bandwidth-delay product)\n"
		"  --bytes     MB streamed per size for bandwidth (default 64; 200 to 20000 puts)\n"
		"  --rounds    bandwidth rounds per size, alternating with the memcpy anchor;\n"
		"              the median is reported (default 3)\n"
		"  --only      measure only bandwidth or only latency (the other column is 0)\n"
		"  --lat-iters ping-pongs per size for latency (default 1000; fewer for large\n"
		"              blocks, at least 20)\n"
		"  --boot      join the job of a launcher (srun) instead of forking two ranks\n"
		"  -h, --help  this text;  --version  the version\n"
		"MB = 2^20 bytes, as in perftest.  Rank 0 sends (bandwidth is timed there);\n"
		"both ranks print the results.  --server and HOST need the same\n"
		"HETSGD_SECRET (16 or more characters) on both hosts: the rendezvous admits\n"
		"only peers that know it.\n");
}

/* perftest -a: 2 bytes to 8 MiB */
static void all_sizes(struct opts *o)
{
	o->nsizes = 0;
	for (size_t sz = 2; sz <= (8u << 20); sz *= 2)
		o->sizes[o->nsizes++] = sz;
}

/*
 * The perftest-style pair as a two-rank TCP rendezvous job: the server is
 * rank 0 and listens on every address, the client is rank 1 and connects.
 */
static int two_host_env(const char *host, int port, int rank)
{
	char rv[300], portstr[16];
	int v6 = strchr(host, ':') != NULL && host[0] != '[';

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (snprintf(rv, sizeof(rv), "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", portstr) >=
	    (int)sizeof(rv)) {
		fprintf(stderr, "hetsgd-bench: host name '%s' is too long\n", host);
		return -1;
	}
	if (setenv("HETSGD_RANK", rank ? "1" : "0", 1) ||
	    setenv("HETSGD_SIZE", "2", 1) || setenv("HETSGD_RENDEZVOUS", rv, 1)) {
		perror("hetsgd-bench: setenv");
		return -1;
	}
	return 0;
}

#define STR_(x) #x
#define STR(x) STR_(x)

enum { O_PROVIDER = 256, O_CSV, O_SLOTS, O_BYTES, O_LAT_ITERS, O_ONLY, O_ROUNDS, O_GBITS, O_SERVER, O_BOOT };

/* What the command line asks beyond struct opts. */
struct cli {
	const char *sizes, *host;
	int all, server, prov_given, port;
	enum hetsgd_boot_kind kind;
};

/* A number of lo .. hi for option name, or a message and -1. */
static int cli_long(const char *name, const char *v, long lo, long hi, const char *what, long *out)
{
	char *end;
	long x = strtol(v, &end, 10);

	if (*end || end == v || x < lo || x > hi) {
		fprintf(stderr, "hetsgd-bench: %s %s: %s\n", name, v, what);
		return -1;
	}
	*out = x;
	return 0;
}

/* One option into o or c: 0, or the exit status (help: 0 after printing, errors: 2). */
static int cli_option(int opt, const char *arg, struct opts *o, struct cli *c)
{
	long v;
	char *end;

	switch (opt) {
	case O_PROVIDER:
		if (hetsgd_provider_parse(arg, &o->prov)) {
			fprintf(stderr, "hetsgd-bench: %s\n", hetsgd_errmsg());
			return 2;
		}
		c->prov_given = 1;
		return -1;
	case 'd': o->device = arg; return -1;
	case 'x':
		if (cli_long("-x", arg, 0, 255, "a GID index of 0 to 255", &v))
			return 2;
		o->gid_index = (int)v;
		return -1;
	case 's': c->sizes = arg; return -1;
	case 'a': c->all = 1; return -1;
	case 'n':
		if (cli_long("-n", arg, 1, 100000000, "use 1 to 100000000 iterations", &v))
			return 2;
		o->iters = v;
		return -1;
	case 'p':
		if (cli_long("-p", arg, 1, 65535, "a TCP port of 1 to 65535", &v))
			return 2;
		c->port = (int)v;
		return -1;
	case 'F': return -1;
	case 'l':
		/* the transport chains up to HETSGD_TP_CHAIN_MAX: 1 or that */
		if (strcmp(arg, "1") && strcmp(arg, STR(HETSGD_TP_CHAIN_MAX))) {
			fprintf(stderr, "hetsgd-bench: -l %s: use 1 (each put posted alone) or %d (puts chained by "
				"hetsgd_tp_put_more, up to %d per doorbell; the default)\n", arg, HETSGD_TP_CHAIN_MAX,
				HETSGD_TP_CHAIN_MAX);
			return 2;
		}
		o->chain = strcmp(arg, "1") != 0;
		return -1;
	case O_GBITS: o->gbits = 1; return -1;
	case O_CSV: o->csv = 1; return -1;
	case O_SLOTS:
		if (cli_long("--slots", arg, 1, 4096, "use 1 to 4096", &v))
			return 2;
		o->slots = (uint32_t)v;
		return -1;
	case O_BYTES:
		o->bw_bytes = strtod(arg, &end) * MB;
		if (*end || o->bw_bytes < 1) {
			fprintf(stderr, "hetsgd-bench: --bytes %s: a positive number of MB\n", arg);
			return 2;
		}
		return -1;
	case O_LAT_ITERS:
		if (cli_long("--lat-iters", arg, 1, 10000000, "use 1 to 10000000", &v))
			return 2;
		o->lat_iters = (int)v;
		return -1;
	case O_ONLY:
		if (strcmp(arg, "bw") && strcmp(arg, "lat")) {
			fprintf(stderr, "hetsgd-bench: --only %s: use bw or lat\n", arg);
			return 2;
		}
		if (!strcmp(arg, "bw"))
			o->do_lat = 0;
		else
			o->do_bw = 0;
		return -1;
	case O_ROUNDS:
		if (cli_long("--rounds", arg, 1, MAX_ROUNDS, "use 1 to " STR(MAX_ROUNDS), &v))
			return 2;
		o->rounds = (int)v;
		return -1;
	case O_SERVER: c->server = 1; return -1;
	case O_BOOT:
		if (hetsgd_boot_kind_parse(arg, &c->kind) || c->kind == HETSGD_BOOT_LOCAL) {
			fprintf(stderr, "hetsgd-bench: --boot %s: use auto, pmix, pmi2 or tcp (without --boot, two ranks are forked here)\n",
				arg);
			return 2;
		}
		return -1;
	case 'h': usage(stdout); return 0;
	case 'V': printf("hetsgd-bench (hetsgd) %s\n", PACKAGE_VERSION); return 0;
	default: usage(stderr); return 2;
	}
}

/* Options that contradict each other, and the sizes: 0 or the exit status 2. */
static int cli_check(struct opts *o, struct cli *c)
{
	char *list, *tok, *save = NULL;

	if ((c->server || c->host) && c->kind != HETSGD_BOOT_LOCAL) {
		fprintf(stderr, "hetsgd-bench: --boot joins a launcher's job; --server and HOST pair two hosts without one: use one or the other\n");
		return 2;
	}
	if (c->server && c->host) {
		fprintf(stderr, "hetsgd-bench: --server and HOST %s: the server waits for the client, which names the server's host; give one\n",
			c->host);
		return 2;
	}
	/* across hosts, shared memory cannot work: verbs unless told */
	if ((c->server || c->host || c->kind != HETSGD_BOOT_LOCAL) && !c->prov_given)
		o->prov = HETSGD_PROV_VERBS;
	if ((o->device || o->gid_index >= 0) && o->prov != HETSGD_PROV_VERBS) {
		fprintf(stderr, "hetsgd-bench: -d and -x need --provider verbs\n");
		return 2;
	}
	if (c->all) {
		all_sizes(o);
		return 0;
	}
	list = strdup(c->sizes);
	for (tok = list ? strtok_r(list, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->nsizes == MAX_SIZES || parse_size(tok, &o->sizes[o->nsizes])) {
			fprintf(stderr, "hetsgd-bench: --sizes: '%s' is not a size of 1 byte to 1G (at most %d sizes)\n",
				tok, MAX_SIZES);
			free(list);
			return 2;
		}
		o->nsizes++;
	}
	free(list);
	if (!o->nsizes) {
		fprintf(stderr, "hetsgd-bench: --sizes is empty\n");
		return 2;
	}
	return 0;
}

/* Two ranks on two hosts (--server / HOST) or under a launcher (--boot): 0 or the exit status. */
static int run_joined(struct opts *o, struct cli *c, struct shared *sh)
{
	struct hetsgd_boot *boot = NULL;
	enum hetsgd_boot_kind kind = c->kind;
	struct result *r0;
	int me, lr, ls;

	if (c->server || c->host) {
		if (two_host_env(c->server ? "0.0.0.0" : c->host, c->port, !c->server))
			return 1;
		kind = HETSGD_BOOT_TCP;
	}
	if (hetsgd_boot_open(kind, &boot)) {
		fprintf(stderr, "hetsgd-bench: %s\n", hetsgd_errmsg());
		return 1;
	}
	me = hetsgd_boot_rank(boot);
	if (hetsgd_boot_size(boot) != 2) {
		fprintf(stderr, "hetsgd-bench: rank %d: the job has %d ranks; the benchmark needs 2 (srun -n 2)\n",
			me, hetsgd_boot_size(boot));
		hetsgd_boot_close(boot);
		return 2;
	}
	/*
	 * Pin by the rank's place on its host: the launcher's local rank; a
	 * server and client that happen to share a host take different CPUs.
	 */
	o->pin_index = c->server || c->host ? !c->server : 0;
	if (!c->server && !c->host && !hetsgd_topo_local_rank(&lr, &ls) && ls > 1)
		o->pin_index = lr;
	if (rank_main(boot, sh)) {
		hetsgd_boot_close(boot);
		return 1;
	}
	/* rank 0 measured: both print its numbers */
	r0 = calloc(2 * MAX_SIZES, sizeof(*r0));
	if (!r0 || hetsgd_boot_allgather(boot, sh->res, r0, sizeof(struct result) * MAX_SIZES)) {
		fprintf(stderr, "hetsgd-bench: rank %d: gathering the results: %s\n", me,
			r0 ? hetsgd_errmsg() : "out of memory");
		free(r0);
		hetsgd_boot_close(boot);
		return 1;
	}
	memcpy(sh->res, r0, sizeof(struct result) * MAX_SIZES);
	free(r0);
	hetsgd_boot_close(boot);
	return 0;
}

static void print_results(const struct opts *o, const struct result *res)
{
	if (!o->csv) {
		printf("#bytes      BW average[%s]   MsgRate[Mpps]   t_typical[usec]   t_avg[usec]   credit waits   "
		       "window waits   puts/doorbell%s\n", o->gbits ? " Gb/sec" : "MB/sec",
		       o->prov == HETSGD_PROV_SHM ? "   memcpy[MB/sec]   BW/memcpy" : "");
	} else {
		printf("provider,size_bytes,%s,lat_us,msg_Mpps,credit_waits,window_waits,puts_per_doorbell\n",
		       o->gbits ? "bw_Gbps" : "bw_MBps");
	}
	for (int s = 0; s < o->nsizes; s++) {
		const struct result *r = &res[s];
		double bw = o->gbits ? r->bw_MBps * MB * 8 / 1e9 : r->bw_MBps;
		/* shm rings no doorbell: 0 */
		double ppd = r->doorbells ? (double)r->puts / (double)r->doorbells : 0;

		if (o->csv) {
			/* the one text column: quoted, so no provider name can shift the others */
			quote_csv(stdout, hetsgd_provider_name(o->prov));
			printf(",%zu,%.2f,%.3f,%.4f,%llu,%llu,%.2f\n", o->sizes[s], bw, r->lat_us, r->msg_Mpps,
			       (unsigned long long)r->credit_waits, (unsigned long long)r->window_waits, ppd);
			/* The anchor is a row of its own, so every row has the same columns. */
			if (o->prov == HETSGD_PROV_SHM && r->memcpy_MBps > 0)
				printf("memcpy,%zu,%.2f,,,,,\n", o->sizes[s],
				       o->gbits ? r->memcpy_MBps * MB * 8 / 1e9 : r->memcpy_MBps);
		} else {
			printf(" %-10zu %18.2f %15.4f %17.2f %13.2f %14llu %14llu %15.2f", o->sizes[s], bw, r->msg_Mpps,
			       r->lat_us, r->lat_avg_us, (unsigned long long)r->credit_waits,
			       (unsigned long long)r->window_waits, ppd);
			if (o->prov == HETSGD_PROV_SHM && r->memcpy_MBps > 0)
				printf(" %16.2f %11.2f", r->memcpy_MBps, r->bw_MBps / r->memcpy_MBps);
			else if (o->prov == HETSGD_PROV_SHM)
				printf(" %16s %11s", "-", "-");
			printf("\n");
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "provider", required_argument, NULL, O_PROVIDER },
		{ "device", required_argument, NULL, 'd' },
		{ "ib-dev", required_argument, NULL, 'd' },
		{ "gid-index", required_argument, NULL, 'x' },
		{ "sizes", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 's' },
		{ "all", no_argument, NULL, 'a' },
		{ "iters", required_argument, NULL, 'n' },
		{ "port", required_argument, NULL, 'p' },
		{ "post_list", required_argument, NULL, 'l' },
		{ "report_gbits", no_argument, NULL, O_GBITS },
		{ "csv", no_argument, NULL, O_CSV },
		{ "slots", required_argument, NULL, O_SLOTS },
		{ "bytes", required_argument, NULL, O_BYTES },
		{ "lat-iters", required_argument, NULL, O_LAT_ITERS },
		{ "only", required_argument, NULL, O_ONLY },
		{ "rounds", required_argument, NULL, O_ROUNDS },
		{ "server", no_argument, NULL, O_SERVER },
		{ "boot", required_argument, NULL, O_BOOT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	struct opts o = { .prov = HETSGD_PROV_SHM, .slots = 0, .bw_bytes = 64 * MB, .lat_iters = 1000,
			 .max_iters = 20000, .do_bw = 1, .do_lat = 1, .rounds = 3, .gid_index = -1,
			 .pin_index = -1, .chain = 1 };
	struct cli c = { .sizes = "8,64,512,4K,64K,256K,1M", .port = 18515, .kind = HETSGD_BOOT_LOCAL };
	struct shared sh = { .o = &o };
	int opt, ret;

	while ((opt = getopt_long(argc, argv, "d:x:s:an:p:l:Fh", lopts, NULL)) != -1)
		if ((ret = cli_option(opt, optarg, &o, &c)) >= 0)
			return ret;
	if (optind < argc)
		c.host = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "hetsgd-bench: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	ret = cli_check(&o, &c);
	if (ret)
		return ret;
	sh.res = mmap(NULL, sizeof(struct result) * MAX_SIZES, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh.res == MAP_FAILED) {
		perror("hetsgd-bench: mmap");
		return 1;
	}
	if (c.kind == HETSGD_BOOT_LOCAL && !c.server && !c.host) {
		if (hetsgd_boot_local_run(2, rank_main, &sh, NULL)) {
			fprintf(stderr, "hetsgd-bench: %s\n", hetsgd_errmsg());
			return 1;
		}
	} else if ((ret = run_joined(&o, &c, &sh))) {
		return ret;
	}
	print_results(&o, sh.res);
	return 0;
}
