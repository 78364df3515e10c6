/*
 * omp_kernels.h - the openmp backend's vectorized micro-kernels (private).
 *
 * omp_kernels.c is portable C written for the auto-vectorizer (`omp simd`, restrict,
 * register tiles of constant shape).  Meson compiles it once per instruction set (baseline,
 * AVX2+FMA, AVX-512 on x86-64), each copy exporting its own table; openmp.c picks the best
 * table the CPU supports at run time (never -march=native).
 *
 * Tiles are row-major float arrays whose leading dimensions are multiples of
 * LLA_OMP_PAD floats (64-byte aligned rows), so a kernel may compute whole register
 * tiles past the logical column count: those padding columns are scratch.
 */
#ifndef LLA_OMP_KERNELS_H
#define LLA_OMP_KERNELS_H

#include <stdint.h>

/* Leading dimensions of every tile are multiples of this (>= the widest kernel nr). */
#define LLA_OMP_PAD 32

/* Shape of a product, for the triangular chunk blocks (flags, may be combined). */
enum lla_omp_shape {
    LLA_OMP_FULL = 0,    /* every tile                                                   */
    LLA_OMP_LOWER_C = 1, /* only tiles of C that touch its lower triangle (col <= row)   */
    LLA_OMP_LOWER_A = 2, /* A lower triangular: row block i reads A columns <= its end    */
    LLA_OMP_UPPER_A = 4, /* A upper triangular: row block i reads A columns >= its start  */
    LLA_OMP_LOWER_B = 8, /* B lower triangular: column tile j reads B rows >= its start   */
    LLA_OMP_UPPER_B = 16, /* B upper triangular: column tile j reads B rows <= its end    */
    LLA_OMP_TRANS_A = 32  /* A is given transposed: stored kd x m, lda its row stride      */
};

typedef struct lla_omp_kernels {
    const char *isa; /* "generic", "avx2", "avx512" */
    int mr, nr;      /* register tile rows x columns */
    /* C[m x n] = beta C + diag(rs) * (A[m x kd] B[kd x n]); rs may be NULL (all ones);
     * with beta 0, C is only written (it may hold anything before).  A, B, C row-major with leading dimensions lda, ldb, ldc.  Columns are
     * computed in whole tiles of nr: B and C must have round_up(n, nr) columns (padding).
     * With LLA_OMP_LOWER_C, tiles wholly above the diagonal are not written. */
    void (*gemm)(int64_t m, int64_t n, int64_t kd, const float *a, int64_t lda, const float *b,
                 int64_t ldb, float *c, int64_t ldc, const float *rs, float beta, int shape);
    /* x[i] *= f * exp(g0 - gs[i]) for i < n; every g0 - gs[i] must be <= ~0 (decays). */
    void (*mul_exp)(int64_t n, float *x, float f, double g0, const double *gs);
    /* y[i] = a * y[i] + b * x[i] */
    void (*axpby)(int64_t n, float a, float *y, float b, const float *x);
    /* decode rows: row *= a, then y += w row */
    void (*decay_acc)(int64_t n, float *row, float a, float w, float *y);
    /* columns of K x n tiles (backward reads): for every k and i < n,
     * dot[i] += q[k][i] r[k][i] and y[k][i] += w[i] r[k][i] */
    void (*coldot_axpy)(int64_t K, int64_t n, const float *q, int64_t ldq, const float *r,
                        int64_t ldr, const float *w, float *dot, float *y, int64_t ldy);
    /* rows: y[i][j] = w[i] x[i][j] for i < m, j < n */
    void (*scale_rows)(int64_t m, int64_t n, const float *w, const float *x, int64_t ldx,
                       float *y, int64_t ldy);
    /* decode rows (GDN): row = a (row - ck r), then y += w row */
    void (*delta_acc)(int64_t n, float *row, float a, float ck, const float *r, float w,
                      float *y);
    /* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols */
    void (*transpose)(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst,
                      int64_t ldd);
} lla_omp_kernels;

extern const lla_omp_kernels lla__omp_kernels_generic;
#ifdef LLA_OMP_HAVE_AVX2
extern const lla_omp_kernels lla__omp_kernels_avx2;
#endif
#ifdef LLA_OMP_HAVE_AVX512
extern const lla_omp_kernels lla__omp_kernels_avx512;
#endif

#endif /* LLA_OMP_KERNELS_H */
