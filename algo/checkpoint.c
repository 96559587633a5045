/*
 * Checkpoint files (hetsgd_model.h): a 128-byte header, the model, a
 * record per worker and two texts, one CRC-32 over all of it.  Written
 * to PATH.tmp, fsynced, renamed over PATH, and the folder fsynced: a
 * reader (or a machine that crashed) finds the previous checkpoint or
 * the new one, whole.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "algo_priv.h"

#define CK_HDR 128u
#define CK_WREC 80u
#define CK_MAX_N 65536u			/* workers: more than any launcher forks */
#define CK_MAX_D ((uint64_t)1 << 36)	/* values: 256 GiB of model */
#define CK_MAX_TEXT ((uint64_t)1 << 30)

/* Header offsets. */
enum {
	H_MAGIC = 0, H_VERSION = 8, H_HDR = 12, H_TOTAL = 16, H_CRC = 24, H_METHOD = 28,
	H_N = 32, H_D = 40, H_HASH = 48, H_T = 56, H_UPDATES = 64, H_ROUND = 72,
	H_GRADS = 80, H_DROPPED = 88, H_CONFIG = 96, H_EXTRA = 104,
};

static uint64_t dbl_bits(double v)
{
	uint64_t u;

	memcpy(&u, &v, 8);
	return u;
}

static double bits_dbl(uint64_t u)
{
	double v;

	memcpy(&v, &u, 8);
	return v;
}

static void put_worker(unsigned char *p, const struct hetsgd_ckpt_worker *w)
{
	const uint64_t u[6] = { w->steps, w->rounds, w->overlap_steps, w->dropped, w->overruns, w->sent };
	const double v[4] = { w->compute_s, w->idle_s, w->elapsed_s, w->tau_est };

	for (int i = 0; i < 6; i++)
		le_put64(p + 8 * i, u[i]);
	for (int i = 0; i < 4; i++)
		le_put64(p + 48 + 8 * i, dbl_bits(v[i]));
}

static void get_worker(const unsigned char *p, struct hetsgd_ckpt_worker *w)
{
	w->steps = le_get64(p);
	w->rounds = le_get64(p + 8);
	w->overlap_steps = le_get64(p + 16);
	w->dropped = le_get64(p + 24);
	w->overruns = le_get64(p + 32);
	w->sent = le_get64(p + 40);
	w->compute_s = bits_dbl(le_get64(p + 48));
	w->idle_s = bits_dbl(le_get64(p + 56));
	w->elapsed_s = bits_dbl(le_get64(p + 64));
	w->tau_est = bits_dbl(le_get64(p + 72));
}

/* The whole file in memory: header, model, records, texts. */
static int ck_encode(const struct hetsgd_ckpt *ck, unsigned char **out, size_t *len)
{
	uint64_t total = CK_HDR + 4 * ck->d + (uint64_t)CK_WREC * ck->n + ck->config_len + ck->extra_len;
	unsigned char *b, *p;

	if (!ck->n || ck->n > CK_MAX_N || !ck->d || ck->d > CK_MAX_D || !ck->x || !ck->workers ||
	    ck->config_len > CK_MAX_TEXT || ck->extra_len > CK_MAX_TEXT ||
	    (ck->config_len && !ck->config) || (ck->extra_len && !ck->extra))
		return algo_err(-EINVAL, "checkpoint: need 1 .. %u workers, 1 .. 2^36 values, the model, the workers and texts under 1 GiB",
				CK_MAX_N);
	if (total > SIZE_MAX || !(b = calloc(1, (size_t)total)))
		return algo_err(-ENOMEM, "checkpoint: out of memory for %llu bytes", (unsigned long long)total);
	memcpy(b, HETSGD_CKPT_MAGIC, 8);
	le_put32(b + H_VERSION, HETSGD_CKPT_VERSION);
	le_put32(b + H_HDR, CK_HDR);
	le_put64(b + H_TOTAL, total);
	le_put32(b + H_METHOD, ck->method);
	le_put32(b + H_N, ck->n);
	le_put64(b + H_D, ck->d);
	le_put64(b + H_HASH, ck->config_hash);
	le_put64(b + H_T, dbl_bits(ck->t));
	le_put64(b + H_UPDATES, ck->updates);
	le_put64(b + H_ROUND, ck->round);
	le_put64(b + H_GRADS, ck->grads);
	le_put64(b + H_DROPPED, ck->dropped);
	le_put64(b + H_CONFIG, ck->config_len);
	le_put64(b + H_EXTRA, ck->extra_len);
	p = b + CK_HDR;
	memcpy(p, ck->x, (size_t)ck->d * 4);
	p += ck->d * 4;
	for (uint32_t i = 0; i < ck->n; i++, p += CK_WREC)
		put_worker(p, &ck->workers[i]);
	if (ck->config_len)
		memcpy(p, ck->config, ck->config_len);
	p += ck->config_len;
	if (ck->extra_len)
		memcpy(p, ck->extra, ck->extra_len);
	le_put32(b + H_CRC, algo_crc32(0, b, total));
	*out = b;
	*len = (size_t)total;
	return 0;
}

/* Write all of buf to fd; 0 or -errno. */
static int write_all(int fd, const unsigned char *buf, size_t len)
{
	while (len) {
		ssize_t w = write(fd, buf, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* fsync the folder that holds path, so that the rename is durable. */
static int sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, ret = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd))
		ret = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
}

static int save_err(const char *path, int e)
{
	return algo_err(e, "cannot write the checkpoint %s: %s%s", path, strerror(-e),
			e == -ENOSPC || e == -EDQUOT || e == -EIO || e == -EFBIG ?
			": is the disk full? (the previous checkpoint is intact)" : "");
}

int hetsgd_ckpt_save(const char *path, const struct hetsgd_ckpt *ck)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	char *tmp;
	int fd, ret;

	if (!path || !ck)
		return algo_err(-EINVAL, "checkpoint: need a path and a state");
	if (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
		return algo_err(-ENOTSUP, "checkpoint: the format is little-endian; this host is not");
	ret = ck_encode(ck, &buf, &len);
	if (ret)
		return ret;
	tmp = malloc(strlen(path) + 5);
	if (!tmp) {
		free(buf);
		return algo_err(-ENOMEM, "checkpoint: out of memory");
	}
	sprintf(tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = save_err(path, -errno);
		goto out;
	}
	ret = write_all(fd, buf, len);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		ret = save_err(path, ret);
		goto out;
	}
	ret = sync_dir(path);
	if (ret)
		ret = save_err(path, ret);
out:
	free(tmp);
	free(buf);
	return ret;
}

static int ck_bad(const char *name, const char *what)
{
	return algo_err(-EBADMSG, "%s is not a usable checkpoint: %s", name, what);
}

/* The header's sizes against the file's; the CRC over all of it. */
static int check_frame(const unsigned char *b, size_t len, const char *name)
{
	uint64_t n, d, cl, el, need;
	unsigned char copy[CK_HDR];
	uint32_t crc;

	if (len < CK_HDR || memcmp(b, HETSGD_CKPT_MAGIC, 8))
		return ck_bad(name, "no \"" HETSGD_CKPT_MAGIC "\" header");
	if (le_get32(b + H_VERSION) != HETSGD_CKPT_VERSION || le_get32(b + H_HDR) != CK_HDR)
		return algo_err(-EPROTO, "%s is checkpoint format %u with a %u-byte header; this build reads format %u: resume with the hetsgd that made it",
				name, le_get32(b + H_VERSION), le_get32(b + H_HDR), HETSGD_CKPT_VERSION);
	n = le_get32(b + H_N);
	d = le_get64(b + H_D);
	cl = le_get64(b + H_CONFIG);
	el = le_get64(b + H_EXTRA);
	if (!n || n > CK_MAX_N || !d || d > CK_MAX_D || cl > CK_MAX_TEXT || el > CK_MAX_TEXT)
		return ck_bad(name, "its header's sizes are out of range (corrupt)");
	need = CK_HDR + 4 * d + CK_WREC * n + cl + el;
	if (len != need || le_get64(b + H_TOTAL) != need) {
		char what[160];

		if (len != need)
			snprintf(what, sizeof(what), "it holds %zu bytes where its header promises %llu (truncated or corrupt)",
				 len, (unsigned long long)need);
		else
			snprintf(what, sizeof(what), "its header's total of %llu bytes disagrees with its sizes (%llu): corrupt",
				 (unsigned long long)le_get64(b + H_TOTAL), (unsigned long long)need);
		return ck_bad(name, what);
	}
	memcpy(copy, b, CK_HDR);
	le_put32(copy + H_CRC, 0);
	crc = algo_crc32(algo_crc32(0, copy, CK_HDR), b + CK_HDR, len - CK_HDR);
	if (crc != le_get32(b + H_CRC))
		return ck_bad(name, "checksum mismatch (the file is corrupt)");
	return 0;
}

static int ok_time(double v)
{
	return isfinite(v) && v >= 0.0;
}

int hetsgd_ckpt_parse(const void *buf, size_t len, const char *name, struct hetsgd_ckpt *ck)
{
	const unsigned char *b = buf, *p;
	struct hetsgd_ckpt c;
	int ret;

	if (!buf || !ck)
		return algo_err(-EINVAL, "checkpoint: need the bytes and a state");
	memset(ck, 0, sizeof(*ck));
	ret = check_frame(b, len, name);
	if (ret)
		return ret;
	memset(&c, 0, sizeof(c));
	c.method = le_get32(b + H_METHOD);
	c.n = le_get32(b + H_N);
	c.d = le_get64(b + H_D);
	c.config_hash = le_get64(b + H_HASH);
	c.t = bits_dbl(le_get64(b + H_T));
	c.updates = le_get64(b + H_UPDATES);
	c.round = le_get64(b + H_ROUND);
	c.grads = le_get64(b + H_GRADS);
	c.dropped = le_get64(b + H_DROPPED);
	c.config_len = le_get64(b + H_CONFIG);
	c.extra_len = le_get64(b + H_EXTRA);
	if (!strcmp(hetsgd_method_name((enum hetsgd_method)c.method), "invalid") || !ok_time(c.t))
		return ck_bad(name, "its method or time is not valid");
	c.x = malloc(c.d * 4);
	c.workers = calloc(c.n, sizeof(*c.workers));
	c.config = malloc(c.config_len + 1);
	c.extra = malloc(c.extra_len + 1);
	if (!c.x || !c.workers || !c.config || !c.extra) {
		hetsgd_ckpt_free(&c);
		return algo_err(-ENOMEM, "out of memory for the checkpoint %s", name);
	}
	p = b + CK_HDR;
	memcpy(c.x, p, c.d * 4);
	p += c.d * 4;
	for (uint32_t i = 0; i < c.n; i++, p += CK_WREC) {
		struct hetsgd_ckpt_worker *w = &c.workers[i];

		get_worker(p, w);
		if (!ok_time(w->compute_s) || !ok_time(w->idle_s) || !ok_time(w->elapsed_s) ||
		    !ok_time(w->tau_est)) {
			hetsgd_ckpt_free(&c);
			return ck_bad(name, "a worker's time is negative or not a number");
		}
	}
	memcpy(c.config, p, c.config_len);
	c.config[c.config_len] = 0;
	p += c.config_len;
	memcpy(c.extra, p, c.extra_len);
	c.extra[c.extra_len] = 0;
	if (memchr(c.config, 0, c.config_len)) {
		hetsgd_ckpt_free(&c);
		return ck_bad(name, "its configuration text holds a NUL byte");
	}
	*ck = c;
	return 0;
}

int hetsgd_ckpt_load(const char *path, struct hetsgd_ckpt *ck)
{
	struct stat st;
	unsigned char *buf;
	size_t got = 0;
	int fd, ret;

	if (!path || !ck)
		return algo_err(-EINVAL, "checkpoint: need a path and a state");
	memset(ck, 0, sizeof(*ck));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		return algo_err(-e, "cannot read the checkpoint %s: %s", path, strerror(e));
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > SIZE_MAX) {
		close(fd);
		return ck_bad(path, "not a regular file");
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return algo_err(-ENOMEM, "out of memory for the checkpoint %s", path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	ret = got == (size_t)st.st_size ? hetsgd_ckpt_parse(buf, got, path, ck) :
					   algo_err(-EIO, "cannot read the checkpoint %s: short read", path);
	free(buf);
	return ret;
}

void hetsgd_ckpt_free(struct hetsgd_ckpt *ck)
{
	if (!ck)
		return;
	free(ck->x);
	free(ck->workers);
	free(ck->config);
	free(ck->extra);
	memset(ck, 0, sizeof(*ck));
}
