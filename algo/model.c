/* The model file: a 64-byte header, then the values, with a CRC-32. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "algo_priv.h"

#define HDR 64u

/* CRC-32 of the values as little-endian bytes. */
static uint32_t values_crc(const float *x, uint64_t d)
{
	return algo_crc32(0, x, d * 4);
}

uint32_t algo_crc32(uint32_t crc0, const void *p, uint64_t len)
{
	uLong crc = crc0;	/* zlib's initial value is 0 */
	const unsigned char *b = p;

	while (len) {
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;

		crc = crc32(crc, b, n);
		b += n;
		len -= n;
	}
	return (uint32_t)crc;
}

int hetsgd_model_save(const char *path, const struct hetsgd_model_info *info,
		      const float *x)
{
	unsigned char h[HDR] = { 0 };
	char *tmp;
	FILE *f;
	int ok;

	if (!path || !info || !x || info->d == 0)
		return algo_err(-EINVAL, "model_save: need a path, the model and d >= 1");
	if (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
		return algo_err(-ENOTSUP, "model_save: the format is little-endian; this host is not");
	memcpy(h, HETSGD_MODEL_MAGIC, 8);
	le_put32(h + 8, HETSGD_MODEL_VERSION);
	le_put32(h + 12, HDR);
	le_put64(h + 16, info->d);
	le_put32(h + 24, (uint32_t)info->kind);
	le_put32(h + 28, info->p);
	le_put32(h + 32, info->classes);
	le_put32(h + 36, info->hidden);
	le_put32(h + 40, info->flags);
	le_put32(h + 44, values_crc(x, info->d));
	le_put64(h + 48, info->config_hash);
	tmp = malloc(strlen(path) + 5);
	if (!tmp)
		return algo_err(-ENOMEM, "model_save: out of memory");
	sprintf(tmp, "%s.tmp", path);
	f = fopen(tmp, "wb");
	if (!f) {
		int e = errno;

		algo_err(-e, "cannot write the model to %s: %s", tmp, strerror(e));
		free(tmp);
		return -e;
	}
	ok = fwrite(h, 1, HDR, f) == HDR && fwrite(x, 4, info->d, f) == info->d;
	ok = (fflush(f) == 0) && ok;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path)) {
		int e = errno ? errno : EIO;

		remove(tmp);
		algo_err(-e, "cannot write the model to %s: %s: is the disk full?", path, strerror(e));
		free(tmp);
		return -e;
	}
	free(tmp);
	return 0;
}

int hetsgd_model_load(const char *path, struct hetsgd_model_info *info,
		      float **xp)
{
	unsigned char h[HDR];
	struct hetsgd_model_info in;
	float *x = NULL;
	FILE *f;
	long size;
	int ret = 0;

	if (!path || !info || !xp)
		return algo_err(-EINVAL, "model_load: need a path and outputs");
	f = fopen(path, "rb");
	if (!f) {
		int e = errno;

		return algo_err(-e, "cannot read the model %s: %s", path, strerror(e));
	}
	if (fread(h, 1, HDR, f) != HDR || memcmp(h, HETSGD_MODEL_MAGIC, 8)) {
		ret = algo_err(-EBADMSG, "%s is not a hetsgd model (no \"" HETSGD_MODEL_MAGIC "\" header)", path);
		goto out;
	}
	if (le_get32(h + 8) != HETSGD_MODEL_VERSION || le_get32(h + 12) != HDR) {
		ret = algo_err(-EPROTO, "%s is model format %u with a %u-byte header; this build reads format %u: use a matching hetsgd",
			       path, le_get32(h + 8), le_get32(h + 12), HETSGD_MODEL_VERSION);
		goto out;
	}
	memset(&in, 0, sizeof(in));
	in.d = le_get64(h + 16);
	in.kind = (enum hetsgd_obj_kind)le_get32(h + 24);
	in.p = le_get32(h + 28);
	in.classes = le_get32(h + 32);
	in.hidden = le_get32(h + 36);
	in.flags = le_get32(h + 40);
	in.config_hash = le_get64(h + 48);
	if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0) {
		ret = algo_err(-EIO, "cannot size %s", path);
		goto out;
	}
	if (in.d == 0 || in.d > ((uint64_t)1 << 40) || (uint64_t)size != HDR + 4 * in.d) {
		ret = algo_err(-EBADMSG, "%s holds %ld bytes; its header promises %llu values (%llu bytes): the file is truncated or corrupt",
			       path, size, (unsigned long long)in.d,
			       (unsigned long long)(HDR + 4 * in.d));
		goto out;
	}
	x = malloc(in.d * 4);
	if (!x) {
		ret = algo_err(-ENOMEM, "out of memory for a model of %llu values",
			       (unsigned long long)in.d);
		goto out;
	}
	if (fseek(f, HDR, SEEK_SET) || fread(x, 4, in.d, f) != in.d) {
		ret = algo_err(-EIO, "cannot read the values of %s", path);
		goto out;
	}
	if (values_crc(x, in.d) != le_get32(h + 44)) {
		ret = algo_err(-EBADMSG, "%s: checksum mismatch (the values are corrupt)", path);
		goto out;
	}
	*info = in;
	*xp = x;
	x = NULL;
out:
	free(x);
	fclose(f);
	return ret;
}

int hetsgd_model_objective(const struct hetsgd_model_info *info, float lambda,
			   struct hetsgd_objective **obj)
{
	struct hetsgd_objective *o = NULL;
	int ret;

	switch (info->kind) {
	case HETSGD_OBJ_SOFTMAX:
		ret = hetsgd_objective_softmax_create(info->p, info->classes, info->flags & 1, lambda, &o);
		break;
	case HETSGD_OBJ_LOGREG:
		ret = hetsgd_objective_logreg_create(info->p, lambda, &o);
		break;
	case HETSGD_OBJ_LSQ:
		ret = hetsgd_objective_lsq_create(info->p, &o);
		break;
	case HETSGD_OBJ_MLP:
		ret = hetsgd_objective_mlp_create(info->p, info->hidden, info->classes, HETSGD_ACT_RELU, &o);
		break;
	case HETSGD_OBJ_QUAD:
		return algo_err(-ENOTSUP, "a quadratic model has no data to be evaluated on: its distance to the optimum is in the run's summary.txt");
	default:
		return algo_err(-EBADMSG, "the model's objective kind %d is not one this build knows", (int)info->kind);
	}
	if (ret)
		return algo_err(ret, "the model's header (%s, p = %u, %u classes, %u hidden) makes no objective: %s",
				hetsgd_obj_kind_name(info->kind), info->p, info->classes, info->hidden, hetsgd_errmsg());
	if (o->d != info->d) {
		ret = algo_err(-EBADMSG, "the model holds %llu values, but a %s of p = %u, %u classes, %u hidden has %zu: the header is corrupt",
			       (unsigned long long)info->d, hetsgd_obj_kind_name(info->kind), info->p, info->classes,
			       info->hidden, o->d);
		hetsgd_objective_destroy(o);
		return ret;
	}
	*obj = o;
	return 0;
}
