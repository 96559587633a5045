/*
 * Shared by the fuzz harnesses (tests/fuzz/fuzz_*.c).  Each harness is one
 * LLVMFuzzerTestOneInput; libFuzzer (make check-fuzz, clang) or replay.c
 * (make check, any compiler) calls it once per input.
 *
 * Rules for a harness: no leak (libFuzzer runs with -detect_leaks=1), no
 * file written anywhere (inputs that a loader wants as a path go through
 * fuzz_file(), an anonymous in-memory file), no output on success, and
 * abort() when the code under test breaks a promise of its header.
 */
#ifndef HETSGD_FUZZ_H
#define HETSGD_FUZZ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* memfd_create */
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Give up loudly: a harness that cannot set up must not pass silently. */
#define FUZZ_ASSERT(cond)						\
	do {								\
		if (!(cond)) {						\
			fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", \
				__FILE__, __LINE__, #cond);		\
			abort();					\
		}							\
	} while (0)

/*
 * The loaders take file names: put data in an anonymous memory file
 * (memfd: nothing on disk, gone at close) and name it /proc/self/fd/N,
 * which opens at offset 0 whatever this descriptor's offset is.  The
 * loaders' own open/read/gzip path is what runs, unchanged.  Returns the
 * descriptor; close it when done.
 */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap)
{
	int fd = memfd_create("hetsgd-fuzz", MFD_CLOEXEC);
	size_t off = 0;

	FUZZ_ASSERT(fd >= 0);
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);

		FUZZ_ASSERT(w > 0);
		off += (size_t)w;
	}
	snprintf(path, cap, "/proc/self/fd/%d", fd);
	return fd;
}

static inline uint32_t fuzz_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

#endif
