/*
 * The CBLAS the build chose (configure --with-blas), and one call that
 * keeps it to one thread.  Private to algo/.
 */
#ifndef HETSGD_BLAS_PRIV_H
#define HETSGD_BLAS_PRIV_H

#include <config.h>

#ifdef HAVE_CBLAS_H
#include <cblas.h>
#else
#include <mkl_cblas.h>		/* MKL's name for it */
#endif

/*
 * One BLAS thread per compute thread: a BLAS's own thread pool would
 * fight our pinned threads for the same cores.  Each BLAS has its own
 * call; configure found the first of these that links.  Declared here
 * because their headers are not the CBLAS header (BLIS's takes a dim_t,
 * a 64-bit integer on every 64-bit build).  With none (another CBLAS),
 * the environment must say it: OPENBLAS_NUM_THREADS=1, BLIS_NUM_THREADS=1,
 * MKL_NUM_THREADS=1, FLEXIBLAS_NUM_THREADS=1 or OMP_NUM_THREADS=1.
 */
#if defined(HAVE_OPENBLAS_SET_NUM_THREADS)
#define blas_one_thread() openblas_set_num_threads(1)
#elif defined(HAVE_BLI_THREAD_SET_NUM_THREADS)
#include <stdint.h>
void bli_thread_set_num_threads(int64_t n);
#define blas_one_thread() bli_thread_set_num_threads(1)
#elif defined(HAVE_MKL_SET_NUM_THREADS)
void mkl_set_num_threads(int n);
#define blas_one_thread() mkl_set_num_threads(1)
#elif defined(HAVE_FLEXIBLAS_SET_NUM_THREADS)
void flexiblas_set_num_threads(int n);
#define blas_one_thread() flexiblas_set_num_threads(1)
#else
#define blas_one_thread() ((void)0)
#endif

#endif
