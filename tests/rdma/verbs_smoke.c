/*
 * Verbs smoke test: two processes, rdma_cm connection, RDMA_WRITE_WITH_IMM.
 *
 * The receiver registers a buffer, advertises {addr, rkey, len} in the
 * connection's private data and pre-posts receives for the immediates.
 * The sender writes patterned blocks of several sizes at odd offsets.
 * For every block the receiver checks the completion (opcode, immediate,
 * byte_len), every byte written, and that no byte outside the block
 * changed; then it restores the buffer and acknowledges with a SEND, so
 * that the next block lands on a known background.
 *
 * Exit 0 when every block verifies, 1 on any failure, 77 (skip) when no
 * RDMA device or no address to test on is available.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define EXIT_SKIP 77
#define BACKGROUND 0xEE
#define MAX_BLOCK (1u << 20)
#define SLACK 8192u
#define BUF_LEN (MAX_BLOCK + SLACK)
#define CQ_TIMEOUT_MS 20000

static const size_t sizes[] = { 1, 7, 64, 1000, 1024, 1025, 4096, 65536, 65537, 262144, MAX_BLOCK };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

struct remote_buf {
	uint64_t addr;
	uint32_t rkey;
	uint32_t len;
};

static const char *who = "verbs-smoke";
static int iterations = 3 * (int)NSIZES;

/* The receiver's pid for the sender's child: a failing receiver takes it along. */
static pid_t child_pid;

static void stop_child(void)
{
	if (child_pid > 0)
		kill(child_pid, SIGKILL);
}

#define fail(...) do { fprintf(stderr, "%s: FAIL: ", who); fprintf(stderr, __VA_ARGS__); \
		       fputc('\n', stderr); stop_child(); exit(1); } while (0)

static size_t block_size(int i) { return sizes[i % NSIZES]; }
static size_t block_off(int i) { return ((size_t)i * 4099u) % SLACK; }
static uint32_t block_imm(int i) { return 0x5a000000u ^ ((uint32_t)i * 2654435761u); }

static uint8_t pattern(int i, size_t j)
{
	uint64_t x = ((uint64_t)i << 40) ^ (j * 0x9E3779B97F4A7C15ull);

	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	/* Never the background value, so a missing byte cannot pass. */
	return (uint8_t)(x % 255u) == BACKGROUND ? 0x11 : (uint8_t)(x % 255u);
}

static struct rdma_cm_event *expect_event(struct rdma_event_channel *ec,
					  enum rdma_cm_event_type want)
{
	struct rdma_cm_event *ev;

	if (rdma_get_cm_event(ec, &ev))
		fail("rdma_get_cm_event: %s", strerror(errno));
	if (ev->event != want)
		fail("expected CM event %s, got %s (status %d)%s", rdma_event_str(want),
		     rdma_event_str(ev->event), ev->status,
		     ev->event == RDMA_CM_EVENT_ADDR_ERROR || ev->event == RDMA_CM_EVENT_ROUTE_ERROR
			     ? ": is the address on an RDMA-capable netdev (rdma link show)?" : "");
	return ev;
}

static void poll_one(struct ibv_cq *cq, struct ibv_wc *wc, const char *what)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int n = ibv_poll_cq(cq, 1, wc);

		if (n < 0)
			fail("ibv_poll_cq failed while waiting for %s", what);
		if (n == 1)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > CQ_TIMEOUT_MS)
			fail("no completion for %s after %d ms", what, CQ_TIMEOUT_MS);
	}
	if (wc->status != IBV_WC_SUCCESS)
		fail("%s completed with %s (vendor error 0x%x)", what,
		     ibv_wc_status_str(wc->status), wc->vendor_err);
}

struct conn {
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_mr *mr;
	uint8_t *buf;
};

static void setup_qp(struct rdma_cm_id *id, struct conn *c, int access)
{
	struct ibv_qp_init_attr attr = { 0 };

	c->pd = ibv_alloc_pd(id->verbs);
	if (!c->pd)
		fail("ibv_alloc_pd: %s", strerror(errno));
	c->cq = ibv_create_cq(id->verbs, 64, NULL, NULL, 0);
	if (!c->cq)
		fail("ibv_create_cq: %s", strerror(errno));
	attr.send_cq = c->cq;
	attr.recv_cq = c->cq;
	attr.qp_type = IBV_QPT_RC;
	attr.cap.max_send_wr = 16;
	attr.cap.max_recv_wr = 16;
	attr.cap.max_send_sge = 1;
	attr.cap.max_recv_sge = 1;
	if (rdma_create_qp(id, c->pd, &attr))
		fail("rdma_create_qp: %s", strerror(errno));
	if (posix_memalign((void **)&c->buf, 4096, BUF_LEN))
		fail("out of memory");
	memset(c->buf, BACKGROUND, BUF_LEN);
	c->mr = ibv_reg_mr(c->pd, c->buf, BUF_LEN, access);
	if (!c->mr)
		fail("ibv_reg_mr of %u bytes: %s%s", BUF_LEN, strerror(errno),
		     errno == ENOMEM ? ": RLIMIT_MEMLOCK too low? raise it with ulimit -l" : "");
}

static void post_recv(struct rdma_cm_id *id, struct conn *c, uint64_t wr_id, int with_buf)
{
	struct ibv_sge sge = { .addr = (uintptr_t)c->buf, .length = 64, .lkey = c->mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = wr_id }, *bad;

	/* A write-with-immediate consumes a receive but needs no buffer. */
	if (with_buf) {
		wr.sg_list = &sge;
		wr.num_sge = 1;
	}
	if (ibv_post_recv(id->qp, &wr, &bad))
		fail("ibv_post_recv: %s", strerror(errno));
}

static void teardown(struct rdma_cm_id *id, struct conn *c)
{
	rdma_destroy_qp(id);
	ibv_dereg_mr(c->mr);
	ibv_destroy_cq(c->cq);
	ibv_dealloc_pd(c->pd);
	free(c->buf);
}

static void query_mtu(struct rdma_cm_id *id, const char *role)
{
	struct ibv_qp_attr attr;
	struct ibv_qp_init_attr init;
	struct ibv_port_attr port;

	if (ibv_query_qp(id->qp, &attr, IBV_QP_PATH_MTU, &init) ||
	    ibv_query_port(id->verbs, id->port_num, &port))
		fail("ibv_query_qp/port: %s", strerror(errno));
	printf("%s: %s device %s port %u, active MTU %d, path MTU %d\n", who, role,
	       ibv_get_device_name(id->verbs->device), id->port_num,
	       128 << port.active_mtu, 128 << attr.path_mtu);
}

static int run_server(struct sockaddr *addr, int ready_fd)
{
	struct rdma_event_channel *ec = rdma_create_event_channel();
	struct rdma_conn_param param = { 0 };
	struct rdma_cm_id *listen_id, *id;
	struct rdma_cm_event *ev;
	struct remote_buf rb;
	struct conn c;
	size_t verified = 0;
	struct ibv_wc early;
	int i, have_early = 0;

	who = "verbs-smoke[receiver]";
	if (!ec)
		fail("rdma_create_event_channel: %s (is rdma_ucm loaded? /dev/infiniband/rdma_cm)",
		     strerror(errno));
	if (rdma_create_id(ec, &listen_id, NULL, RDMA_PS_TCP))
		fail("rdma_create_id: %s", strerror(errno));
	if (rdma_bind_addr(listen_id, addr))
		fail("rdma_bind_addr: %s: is the address on an RDMA-capable netdev (rdma link show)?",
		     strerror(errno));
	if (rdma_listen(listen_id, 1))
		fail("rdma_listen: %s", strerror(errno));
	if (write(ready_fd, "r", 1) != 1)
		fail("cannot signal readiness: %s", strerror(errno));
	close(ready_fd);

	ev = expect_event(ec, RDMA_CM_EVENT_CONNECT_REQUEST);
	id = ev->id;
	rdma_ack_cm_event(ev);
	setup_qp(id, &c, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	for (i = 0; i < 8; i++)
		post_recv(id, &c, 1000 + i, 0);

	rb.addr = htobe64((uintptr_t)c.buf);
	rb.rkey = htonl(c.mr->rkey);
	rb.len = htonl(BUF_LEN);
	param.private_data = &rb;
	param.private_data_len = sizeof(rb);
	param.responder_resources = 1;
	param.initiator_depth = 1;
	param.rnr_retry_count = 7;
	if (rdma_accept(id, &param))
		fail("rdma_accept: %s", strerror(errno));
	ev = expect_event(ec, RDMA_CM_EVENT_ESTABLISHED);
	rdma_ack_cm_event(ev);
	query_mtu(id, "receiver");

	for (i = 0; i < iterations; i++) {
		size_t size = block_size(i), off = block_off(i), j;
		struct ibv_send_wr wr = { 0 }, *bad;
		struct ibv_wc wc;
		char what[64];

		snprintf(what, sizeof(what), "block %d (%zu bytes)", i, size);
		if (have_early) {
			wc = early;
			have_early = 0;
		} else {
			poll_one(c.cq, &wc, what);
		}
		if (wc.opcode != IBV_WC_RECV_RDMA_WITH_IMM || !(wc.wc_flags & IBV_WC_WITH_IMM))
			fail("%s: completion opcode %d flags 0x%x, expected RECV_RDMA_WITH_IMM",
			     what, wc.opcode, wc.wc_flags);
		if (ntohl(wc.imm_data) != block_imm(i))
			fail("%s: immediate 0x%08x, expected 0x%08x", what, ntohl(wc.imm_data), block_imm(i));
		if (wc.byte_len != size)
			fail("%s: byte_len %u, expected %zu", what, wc.byte_len, size);
		for (j = 0; j < BUF_LEN; j++) {
			uint8_t want = j >= off && j < off + size ? pattern(i, j - off) : BACKGROUND;

			if (c.buf[j] != want)
				fail("%s: byte %zu is 0x%02x, expected 0x%02x (%s)", what, j, c.buf[j], want,
				     want == BACKGROUND ? "written outside the block" : "inside the block");
		}
		verified += size;
		memset(c.buf + off, BACKGROUND, size);
		post_recv(id, &c, 1000 + i, 0);

		/* Acknowledge: the sender may now write the next block. */
		wr.wr_id = 2000 + i;
		wr.opcode = IBV_WR_SEND;
		wr.send_flags = IBV_SEND_SIGNALED | IBV_SEND_INLINE;
		wr.num_sge = 0;
		if (ibv_post_send(id->qp, &wr, &bad))
			fail("ibv_post_send(ack): %s", strerror(errno));
		/* One CQ: the next block's completion may come before the ack's. */
		for (;;) {
			poll_one(c.cq, &wc, "ack send");
			if (wc.opcode == IBV_WC_SEND)
				break;
			if (have_early)
				fail("two receive completions before the ack's send completion");
			early = wc;
			have_early = 1;
		}
	}

	ev = expect_event(ec, RDMA_CM_EVENT_DISCONNECTED);
	rdma_ack_cm_event(ev);
	teardown(id, &c);
	rdma_destroy_id(id);
	rdma_destroy_id(listen_id);
	rdma_destroy_event_channel(ec);
	printf("%s: PASS: %d blocks, %zu bytes written with RDMA_WRITE_WITH_IMM, "
	       "every byte and every immediate verified\n", who, iterations, verified);
	return 0;
}

static int run_client(struct sockaddr *addr, int ready_fd)
{
	struct rdma_event_channel *ec;
	struct rdma_conn_param param = { 0 };
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;
	struct remote_buf rb;
	struct conn c;
	char byte;
	int i;

	who = "verbs-smoke[sender]";
	if (read(ready_fd, &byte, 1) != 1)
		fail("receiver did not start (see its error above)");
	close(ready_fd);

	ec = rdma_create_event_channel();
	if (!ec)
		fail("rdma_create_event_channel: %s", strerror(errno));
	if (rdma_create_id(ec, &id, NULL, RDMA_PS_TCP))
		fail("rdma_create_id: %s", strerror(errno));
	if (rdma_resolve_addr(id, NULL, addr, 5000))
		fail("rdma_resolve_addr: %s", strerror(errno));
	rdma_ack_cm_event(expect_event(ec, RDMA_CM_EVENT_ADDR_RESOLVED));
	if (rdma_resolve_route(id, 5000))
		fail("rdma_resolve_route: %s", strerror(errno));
	rdma_ack_cm_event(expect_event(ec, RDMA_CM_EVENT_ROUTE_RESOLVED));

	setup_qp(id, &c, IBV_ACCESS_LOCAL_WRITE);
	post_recv(id, &c, 1, 1);
	param.responder_resources = 1;
	param.initiator_depth = 1;
	param.retry_count = 7;
	param.rnr_retry_count = 7;
	if (rdma_connect(id, &param))
		fail("rdma_connect: %s", strerror(errno));
	ev = expect_event(ec, RDMA_CM_EVENT_ESTABLISHED);
	if (ev->param.conn.private_data_len < sizeof(rb))
		fail("receiver sent %u bytes of private data, expected %zu",
		     ev->param.conn.private_data_len, sizeof(rb));
	memcpy(&rb, ev->param.conn.private_data, sizeof(rb));
	rdma_ack_cm_event(ev);
	rb.addr = be64toh(rb.addr);
	rb.rkey = ntohl(rb.rkey);
	rb.len = ntohl(rb.len);
	if (rb.len != BUF_LEN)
		fail("receiver advertised %u bytes, expected %u", rb.len, BUF_LEN);
	query_mtu(id, "sender");

	for (i = 0; i < iterations; i++) {
		size_t size = block_size(i), off = block_off(i), j;
		struct ibv_sge sge = { .addr = (uintptr_t)c.buf, .length = (uint32_t)size,
				       .lkey = c.mr->lkey };
		struct ibv_send_wr wr = { 0 }, *bad;
		struct ibv_wc wc;
		int got_send = 0, got_ack = 0;

		for (j = 0; j < size; j++)
			c.buf[j] = pattern(i, j);
		wr.wr_id = (uint64_t)i;
		wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
		wr.send_flags = IBV_SEND_SIGNALED;
		wr.imm_data = htonl(block_imm(i));
		wr.sg_list = &sge;
		wr.num_sge = 1;
		wr.wr.rdma.remote_addr = rb.addr + off;
		wr.wr.rdma.rkey = rb.rkey;
		if (ibv_post_send(id->qp, &wr, &bad))
			fail("ibv_post_send(write %d): %s", i, strerror(errno));
		/* The write's completion and the ack may arrive in either order. */
		while (!got_send || !got_ack) {
			poll_one(c.cq, &wc, "write completion or ack");
			if (wc.opcode == IBV_WC_RDMA_WRITE)
				got_send = 1;
			else if (wc.opcode == IBV_WC_RECV)
				got_ack = 1, post_recv(id, &c, 1, 1);
			else
				fail("unexpected completion opcode %d", wc.opcode);
		}
	}

	if (rdma_disconnect(id))
		fail("rdma_disconnect: %s", strerror(errno));
	rdma_ack_cm_event(expect_event(ec, RDMA_CM_EVENT_DISCONNECTED));
	teardown(id, &c);
	rdma_destroy_id(id);
	rdma_destroy_event_channel(ec);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: hetsgd-verbs-smoke [--addr IPV4] [--port N] [--iterations N]\n"
		   "  --addr  address of an RDMA-capable netdev (default: $HETSGD_TEST_ADDR)\n"
		   "Exit 0 pass, 1 fail, 77 skip (no device or no address).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *addr_s = getenv("HETSGD_TEST_ADDR"), *port_s = "18517";
	struct ibv_device **devs;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	int ndev, pipefd[2], st, rc, opt;
	pid_t pid;

	while ((opt = getopt_long(argc, argv, "a:p:n:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'a': addr_s = optarg; break;
		case 'p': port_s = optarg; break;
		case 'n':
			iterations = atoi(optarg);
			if (iterations < 1 || iterations > 100000) {
				fprintf(stderr, "--iterations must be 1..100000\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}

	devs = ibv_get_device_list(&ndev);
	if (!devs || ndev == 0) {
		printf("SKIP: no RDMA device on this host (ibv_get_device_list found none); "
		       "run make check-rdma to test on soft-RoCE\n");
		return EXIT_SKIP;
	}
	ibv_free_device_list(devs);
	if (!addr_s || !*addr_s) {
		printf("SKIP: RDMA device present but no address to test on: "
		       "set HETSGD_TEST_ADDR to the IPv4 address of an RDMA netdev\n");
		return EXIT_SKIP;
	}
	rc = getaddrinfo(addr_s, port_s, &hints, &ai);
	if (rc) {
		fprintf(stderr, "verbs-smoke: bad address %s port %s: %s\n", addr_s, port_s, gai_strerror(rc));
		return 2;
	}

	/* A hung peer must fail the test, not the CI job's time limit. */
	alarm(120);
	if (pipe(pipefd))
		fail("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		close(pipefd[1]);
		alarm(120);
		rc = run_client(ai->ai_addr, pipefd[0]);
		fflush(NULL);
		_exit(rc);
	}
	close(pipefd[0]);
	child_pid = pid;
	rc = run_server(ai->ai_addr, pipefd[1]);
	child_pid = 0;
	if (waitpid(pid, &st, 0) < 0)
		fail("waitpid: %s", strerror(errno));
	freeaddrinfo(ai);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail("sender process failed (status 0x%x)", st);
	return rc;
}
