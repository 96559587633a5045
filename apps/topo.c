/*
 * hetsgd-topo: this machine (or a described one) and where each rank of
 * a node would put its threads and memory, for a person or, with --json,
 * for a program.
 *
 * Every plan is computed before anything is printed, so a planning error
 * never leaves half a report (or half a JSON document) on stdout.
 */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hetsgd_topology.h"

#define MAX_RANKS 4096

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hetsgd-topo [--ranks N] [--threads T] [--device NAME] [--topology SOURCE]\n"
		"                   [--cpuset LIST] [--oversubscribe] [--json]\n"
		"  --ranks N        ranks on this node (default: the local size from Slurm,\n"
		"                   mpirun or HETSGD_LOCAL_SIZE, else 1)\n"
		"  --threads T      compute threads per rank (default 1); each rank also\n"
		"                   gets one core for its progress step\n"
		"  --device NAME    every rank uses this RDMA device (default: ranks are dealt\n"
		"                   round-robin over the devices with an active port)\n"
		"  --topology SRC   an hwloc XML file (lstopo --of xml) or synthetic:DESC, e.g.\n"
		"                   synthetic:\"pack:2 numa:1 core:8 pu:2\" (default: this machine,\n"
		"                   or $HETSGD_TOPOLOGY)\n"
		"  --cpuset LIST    plan inside these CPUs (Linux list, e.g. 0-3,8), as if a\n"
		"                   launcher had bound the ranks there (default: this process's\n"
		"                   binding; the whole machine for --topology)\n"
		"  --oversubscribe  allow more threads than cores (also HETSGD_OVERSUBSCRIBE=1)\n"
		"  --json           one JSON object: machine, request and plan\n"
		"  -h, --help       this text;  --version  the version\n"
		"CPU and NUMA node numbers are OS indices, as taskset and numactl use.\n"
		"Exit status: 0 ok, 1 the machine cannot be read or the plan is impossible,\n"
		"2 bad usage.\n");
}

static int parse_int(const char *opt, const char *s, int min, int max, int *v)
{
	char *end;
	long l;

	errno = 0;
	l = strtol(s, &end, 10);
	if (errno || end == s || *end || l < min || l > max) {
		fprintf(stderr, "hetsgd-topo: %s %s: give a whole number from %d to %d\n", opt, s, min, max);
		return -1;
	}
	*v = (int)l;
	return 0;
}

static void print_text(const struct hetsgd_topo *topo, const struct hetsgd_topo_req *req,
		       const struct hetsgd_topo_plan *plans, const char *ranks_from)
{
	int r;

	hetsgd_topo_describe(topo, stdout);
	printf("\nPlan: %d rank%s on this node%s, %d compute thread%s + 1 progress step each",
	       req->local_size, req->local_size == 1 ? "" : "s", ranks_from,
	       req->compute_threads, req->compute_threads == 1 ? "" : "s");
	if (req->device)
		printf(", device %s", req->device);
	if (req->cpuset)
		printf(", inside CPUs %s", req->cpuset);
	printf("\n");
	for (r = 0; r < req->local_size; r++)
		hetsgd_topo_plan_print(&plans[r], stdout);
}

static void print_json(const struct hetsgd_topo *topo, const struct hetsgd_topo_req *req,
		       const struct hetsgd_topo_plan *plans)
{
	int r;

	fputs("{\"machine\": ", stdout);
	hetsgd_topo_describe_json(topo, stdout);
	printf(",\n \"request\": {\"ranks\": %d, \"compute_threads\": %d, \"device\": ",
	       req->local_size, req->compute_threads);
	hetsgd_topo_print_json_string(stdout, req->device);
	fputs(", \"cpuset\": ", stdout);
	hetsgd_topo_print_json_string(stdout, req->cpuset);
	printf(", \"oversubscribe\": %s},\n \"plan\": [", req->oversubscribe ? "true" : "false");
	for (r = 0; r < req->local_size; r++) {
		fputs(r ? ",\n  " : "\n  ", stdout);
		hetsgd_topo_plan_print_json(&plans[r], stdout);
	}
	fputs("]}\n", stdout);
}

/* The command line into req, source and json: -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, struct hetsgd_topo_req *req, const char **source, int *json)
{
	static const struct option lopts[] = {
		{ "ranks", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "device", required_argument, NULL, 'd' },
		{ "topology", required_argument, NULL, 'T' },
		{ "cpuset", required_argument, NULL, 'c' },
		{ "oversubscribe", no_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	int opt;

	/* Our own messages: getopt's would name libtool's wrapper path. */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":n:t:d:T:c:ojh", lopts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (parse_int("--ranks", optarg, 1, MAX_RANKS, &req->local_size))
				return 2;
			break;
		case 't':
			if (parse_int("--threads", optarg, 1, HETSGD_TOPO_MAX_THREADS - 1, &req->compute_threads))
				return 2;
			break;
		case 'd':
			if (!*optarg) {
				fprintf(stderr, "hetsgd-topo: --device needs a device name, e.g. mlx5_0\n");
				return 2;
			}
			req->device = optarg;
			break;
		case 'T':
			if (!*optarg) {
				fprintf(stderr, "hetsgd-topo: --topology needs an XML path or synthetic:DESC\n");
				return 2;
			}
			*source = optarg;
			break;
		case 'c': req->cpuset = optarg; break;
		case 'o': req->oversubscribe = 1; break;
		case 'j': *json = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("hetsgd-topo (hetsgd) %s\n", PACKAGE_VERSION); return 0;
		case ':':
			fprintf(stderr, "hetsgd-topo: %s needs a value\nTry 'hetsgd-topo --help'.\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "hetsgd-topo: unknown option '%s'\nTry 'hetsgd-topo --help'.\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hetsgd-topo: unexpected argument '%s'\nTry 'hetsgd-topo --help'.\n", argv[optind]);
		return 2;
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct hetsgd_topo_req req = { .local_size = 0, .compute_threads = 1 };
	struct hetsgd_topo_plan *plans = NULL;
	struct hetsgd_topo *topo = NULL;
	const char *source = NULL, *ranks_from = "";
	int json = 0, r, ret, status = 1;

	ret = parse_args(argc, argv, &req, &source, &json);
	if (ret >= 0)
		return ret;
	if (!req.local_size) {
		int lr, ls;

		ret = hetsgd_topo_local_rank(&lr, &ls);
		if (ret == -ENOENT) {
			req.local_size = 1;
		} else if (ret) {
			fprintf(stderr, "hetsgd-topo: %s\n", hetsgd_topo_errmsg());
			return 1;
		} else {
			req.local_size = ls > MAX_RANKS ? MAX_RANKS : ls;
			ranks_from = " (from the launcher's environment)";
		}
	}

	ret = hetsgd_topo_open(source, &topo);
	if (ret) {
		fprintf(stderr, "hetsgd-topo: %s\n", hetsgd_topo_errmsg());
		return 1;
	}
	plans = calloc((size_t)req.local_size, sizeof(*plans));
	if (!plans) {
		fprintf(stderr, "hetsgd-topo: out of memory for %d plans\n", req.local_size);
		goto out;
	}
	for (r = 0; r < req.local_size; r++) {
		req.local_rank = r;
		ret = hetsgd_topo_plan(topo, &req, &plans[r]);
		if (ret) {
			fprintf(stderr, "hetsgd-topo: %s\n", hetsgd_topo_errmsg());
			goto out;
		}
	}
	if (json)
		print_json(topo, &req, plans);
	else
		print_text(topo, &req, plans, ranks_from);
	if (fflush(stdout) || ferror(stdout)) {
		perror("hetsgd-topo: writing the report");
		goto out;
	}
	status = 0;
out:
	free(plans);
	hetsgd_topo_close(topo);
	return status;
}
