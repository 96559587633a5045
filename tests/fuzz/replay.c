/*
 * Replay a fuzz corpus without libFuzzer: linked with one harness
 * (tests/fuzz/fuzz_NAME.c) by any compiler, it runs LLVMFuzzerTestOneInput
 * on every file of the corpus, so `make check` turns the corpora into
 * regression tests, and check-sanitizers into ASan + UBSan ones.
 *
 *   fuzz_NAME [--tap=-] [-jN] [FILE-OR-DIR...]
 *
 * Without FILE-OR-DIR it replays $HETSGD_FUZZ_CORPUS/NAME, NAME taken from
 * the program's own name.  Prints TAP (automake's tap-driver, like the
 * Criterion tests): a plan, then "ok" per input once the harness has
 * returned.  An input that crashes kills the program before its "ok",
 * which the driver reports as an error; under ASan that includes every
 * memory error and leak.
 */
#include "fuzz.h"	/* first: it sets _GNU_SOURCE (asprintf) */

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct list {
	char **path;
	size_t n, cap;
};

static void add(struct list *l, const char *path)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->path = realloc(l->path, l->cap * sizeof(*l->path));
		FUZZ_ASSERT(l->path);
	}
	l->path[l->n] = strdup(path);
	FUZZ_ASSERT(l->path[l->n]);
	l->n++;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A file, or every regular file of a folder (not recursive, sorted). */
static int collect(struct list *l, const char *path)
{
	struct stat st;
	struct dirent *e;
	size_t first = l->n;
	DIR *d;

	if (stat(path, &st)) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		add(l, path);
		return 0;
	}
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		char *p;

		if (e->d_name[0] == '.')
			continue;
		if (asprintf(&p, "%s/%s", path, e->d_name) < 0)
			abort();
		if (!stat(p, &st) && S_ISREG(st.st_mode))
			add(l, p);
		free(p);
	}
	closedir(d);
	qsort(l->path + first, l->n - first, sizeof(*l->path), by_name);
	return 0;
}

/* corpus/NAME/FILE -> NAME/FILE, for short TAP lines */
static const char *short_name(const char *path)
{
	const char *p = path + strlen(path);
	int slashes = 0;

	while (p > path && !(p[-1] == '/' && ++slashes == 2))
		p--;
	return p;
}

static int run_one(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long size;

	if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		goto fail;
	/* exactly size bytes, so ASan sees a read past the input */
	buf = malloc(size ? (size_t)size : 1);
	if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size)
		goto fail;
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)size);
	free(buf);
	return 0;
fail:
	fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
	free(buf);
	if (f)
		fclose(f);
	return -1;
}

/* fuzz_NAME, .libs/lt-fuzz_NAME (libtool) -> NAME */
static const char *target_name(const char *argv0)
{
	const char *b = strrchr(argv0, '/');

	b = b ? b + 1 : argv0;
	if (!strncmp(b, "lt-", 3))
		b += 3;
	if (!strncmp(b, "fuzz_", 5))
		b += 5;
	return b;
}

int main(int argc, char **argv)
{
	struct list l = { 0 };
	int given = 0, bad = 0;
	size_t i;

	for (int a = 1; a < argc; a++) {
		if (argv[a][0] == '-')
			continue;	/* --tap=-, -j1: TAP is all we speak */
		given = 1;
		if (collect(&l, argv[a]))
			bad = 1;
	}
	if (!given) {
		const char *dir = getenv("HETSGD_FUZZ_CORPUS");
		char *p;

		if (!dir || !*dir) {
			fprintf(stderr, "replay: give corpus files or folders, or set HETSGD_FUZZ_CORPUS (make check does)\n");
			return 2;
		}
		if (asprintf(&p, "%s/%s", dir, target_name(argv[0])) < 0)
			abort();
		if (collect(&l, p))
			bad = 1;
		free(p);
	}
	if (bad || l.n == 0) {
		printf("Bail out! no corpus to replay\n");
		return 1;
	}
	printf("1..%zu\n", l.n);
	fflush(stdout);
	for (i = 0; i < l.n; i++) {
		if (run_one(l.path[i])) {
			printf("not ok %zu - %s: unreadable\n", i + 1, short_name(l.path[i]));
			bad = 1;
		} else {
			printf("ok %zu - %s\n", i + 1, short_name(l.path[i]));
		}
		fflush(stdout);
		free(l.path[i]);
	}
	free(l.path);
	return bad;
}
