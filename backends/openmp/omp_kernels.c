/*
 * omp_kernels.c - vectorizable micro-kernels of the openmp backend.
 *
 * Compiled several times (backends/openmp/meson.build) with
 *     LLA_OMP_ISA   table suffix: generic, avx2, avx512
 *     LLA_OMP_MR    register tile rows
 *     LLA_OMP_NR    register tile columns (one or two vector registers per row)
 * and the matching -m flags.  The code is plain C99: constant-shape accumulator arrays the
 * compiler keeps in vector registers, `omp simd` on the column loops.  No intrinsics, so
 * the same source serves x86-64, aarch64 (NEON) and anything else gcc/clang vectorize.
 * Built with -fno-trapping-math so comparisons inside simd loops can be if-converted.
 */
#include "omp_kernels.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef LLA_OMP_ISA
#define LLA_OMP_ISA generic
#endif
#ifndef LLA_OMP_MR
#define LLA_OMP_MR 4
#endif
#ifndef LLA_OMP_NR
#define LLA_OMP_NR 8
#endif

#define MR LLA_OMP_MR
#define NR LLA_OMP_NR
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define STR2(x) #x
#define STR(x) STR2(x)

#if MR < 1 || MR > 8 || NR > LLA_OMP_PAD || (LLA_OMP_PAD % NR) != 0
#error "register tile out of range"
#endif

/* One ROWS x NR tile of C from kd steps of A (ROWS rows; element (i, p) at
 * a[i*AIS + p*APS]: AIS = lda, APS = 1 normally, the other way round for a transposed A)
 * and B (NR columns).  The accumulator starts at zero; the store scales each row by rs[i]
 * and adds or writes.  Two instances per row count, with the strides as constants. */
#define DEFINE_TILE(NAME, ROWS, AIS, APS)                                                   \
    static void NAME##ROWS(int64_t kd, const float *restrict a, int64_t lda,               \
                           const float *restrict b, int64_t ldb, float *restrict c,          \
                           int64_t ldc, const float *restrict rs, float beta) {              \
        float acc[ROWS][NR];                                                                \
        int64_t p;                                                                          \
        int i, j;                                                                           \
        (void)lda;                                                                          \
        for (i = 0; i < ROWS; ++i)                                                          \
            for (j = 0; j < NR; ++j) acc[i][j] = 0.0f;                                      \
        for (p = 0; p < kd; ++p) {                                                          \
            const float *restrict bp = b + p * ldb;                                         \
            for (i = 0; i < ROWS; ++i) {                                                    \
                const float ai = a[i * (AIS) + p * (APS)];                                  \
                _Pragma("omp simd") for (j = 0; j < NR; ++j) acc[i][j] += ai * bp[j];      \
            }                                                                               \
        }                                                                                   \
        for (i = 0; i < ROWS; ++i) {                                                        \
            const float s = rs ? rs[i] : 1.0f;                                              \
            float *restrict ci = c + i * ldc;                                               \
            if (beta == 0.0f) { /* C may hold anything: never read it */                    \
                _Pragma("omp simd") for (j = 0; j < NR; ++j) ci[j] = s * acc[i][j];        \
            } else if (beta == 1.0f) {                                                      \
                _Pragma("omp simd") for (j = 0; j < NR; ++j) ci[j] += s * acc[i][j];       \
            } else {                                                                        \
                _Pragma("omp simd") for (j = 0; j < NR; ++j) ci[j] = beta * ci[j] + s * acc[i][j]; \
            }                                                                               \
        }                                                                                   \
    }
#define DEFINE_TILES(ROWS)                                                                  \
    DEFINE_TILE(tile_nn_, ROWS, lda, 1)                                                     \
    DEFINE_TILE(tile_tn_, ROWS, 1, lda)

DEFINE_TILES(1)
DEFINE_TILES(2)
DEFINE_TILES(3)
DEFINE_TILES(4)
#if MR >= 5
DEFINE_TILES(5)
#endif
#if MR >= 6
DEFINE_TILES(6)
#endif
#if MR >= 7
DEFINE_TILES(7)
#endif
#if MR >= 8
DEFINE_TILES(8)
#endif

#define TILE_CASE(N)                                                                        \
    case N:                                                                                 \
        if (trans)                                                                          \
            tile_tn_##N(kd, a, lda, b, ldb, c, ldc, rs, beta);                              \
        else                                                                                \
            tile_nn_##N(kd, a, lda, b, ldb, c, ldc, rs, beta);                              \
        break;

static void tile(int rows, int trans, int64_t kd, const float *a, int64_t lda, const float *b,
                 int64_t ldb, float *c, int64_t ldc, const float *rs, float beta) {
    switch (rows) {
        TILE_CASE(1)
        TILE_CASE(2)
        TILE_CASE(3)
        TILE_CASE(4)
#if MR >= 5
        TILE_CASE(5)
#endif
#if MR >= 6
        TILE_CASE(6)
#endif
#if MR >= 7
        TILE_CASE(7)
#endif
#if MR >= 8
        TILE_CASE(8)
#endif
    default: break;
    }
}

static void gemm(int64_t m, int64_t n, int64_t kd, const float *a, int64_t lda, const float *b,
                 int64_t ldb, float *c, int64_t ldc, const float *rs, float beta, int shape) {
    int64_t i, j;
    for (i = 0; i < m; i += MR) {
        const int rows = m - i < MR ? (int)(m - i) : MR;
        const int64_t last = i + rows - 1;
        int64_t lo_i = 0, hi_i = kd;
        if ((shape & LLA_OMP_LOWER_A) && hi_i > last + 1) hi_i = last + 1;
        if ((shape & LLA_OMP_UPPER_A) && lo_i < i) lo_i = i;
        for (j = 0; j < n; j += NR) {
            int64_t lo = lo_i, hi = hi_i;
            if ((shape & LLA_OMP_LOWER_C) && j > last) break;
            if ((shape & LLA_OMP_LOWER_B) && lo < j) lo = j;
            if ((shape & LLA_OMP_UPPER_B) && hi > j + NR) hi = j + NR;
            if (lo > hi) lo = hi; /* an empty product: the tile stores zeros (or adds none) */
            if (shape & LLA_OMP_TRANS_A) /* A stored kd x m: element (i, p) at a[p*lda + i] */
                tile(rows, 1, hi - lo, a + lo * lda + i, lda, b + lo * ldb + j, ldb,
                     c + i * ldc + j, ldc, rs ? rs + i : (const float *)0, beta);
            else
                tile(rows, 0, hi - lo, a + i * lda + lo, lda, b + lo * ldb + j, ldb,
                     c + i * ldc + j, ldc, rs ? rs + i : (const float *)0, beta);
        }
    }
}

/* exp on [-69, 87] by range reduction to r in [-ln2/2, ln2/2] and a degree-6 polynomial
 * (relative error < 1e-7); decays below exp(-69) = 1e-30 are flushed to 0 (no subnormal
 * floats downstream). */
static void mul_exp(int64_t n, float *restrict x, float f, double g0, const double *restrict gs) {
    int64_t i;
#pragma omp simd
    for (i = 0; i < n; ++i) {
        const float d = (float)(g0 - gs[i]);
        float v = d < -69.0f ? -69.0f : d;
        float fn, r, p;
        union { uint32_t u; float f; } two_n;
        v = v > 87.0f ? 87.0f : v;
        fn = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(v / ln 2) */
        r = v - fn * 0.693359375f;
        r = r + fn * 2.12194440e-4f;
        p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        two_n.u = (uint32_t)((int32_t)fn + 127) << 23;
        x[i] *= d < -69.0f ? 0.0f : f * (p * two_n.f);
    }
}

static void axpby(int64_t n, float a, float *restrict y, float b, const float *restrict x) {
    int64_t i;
#pragma omp simd
    for (i = 0; i < n; ++i) y[i] = a * y[i] + b * x[i];
}

static void decay_acc(int64_t n, float *restrict row, float a, float w, float *restrict y) {
    int64_t i;
#pragma omp simd
    for (i = 0; i < n; ++i) {
        const float r = a * row[i];
        row[i] = r;
        y[i] += w * r;
    }
}

static void delta_acc(int64_t n, float *restrict row, float a, float ck, const float *restrict r,
                      float w, float *restrict y) {
    int64_t i;
#pragma omp simd
    for (i = 0; i < n; ++i) {
        const float s = a * (row[i] - ck * r[i]);
        row[i] = s;
        y[i] += w * s;
    }
}

static void coldot_axpy(int64_t K, int64_t n, const float *restrict q, int64_t ldq,
                        const float *restrict r, int64_t ldr, const float *restrict w,
                        float *restrict dot, float *restrict y, int64_t ldy) {
    int64_t k, i;
    for (k = 0; k < K; ++k) {
        const float *restrict qk = q + k * ldq, *restrict rk = r + k * ldr;
        float *restrict yk = y + k * ldy;
#pragma omp simd
        for (i = 0; i < n; ++i) {
            dot[i] += qk[i] * rk[i];
            yk[i] += w[i] * rk[i];
        }
    }
}

static void scale_rows(int64_t m, int64_t n, const float *restrict w, const float *restrict x,
                       int64_t ldx, float *restrict y, int64_t ldy) {
    int64_t i, j;
    for (i = 0; i < m; ++i) {
        const float wi = w[i];
        const float *restrict xi = x + i * ldx;
        float *restrict yi = y + i * ldy;
#pragma omp simd
        for (j = 0; j < n; ++j) yi[j] = wi * xi[j];
    }
}

#if defined(__AVX2__)
/* 8 x 8 block transpose in registers (the AVX2 build; the loop below elsewhere). */
static void transpose8x8(const float *src, int64_t lds, float *dst, int64_t ldd) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds);
    __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
    __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    r0 = _mm256_shuffle_ps(t0, t2, 0x44);
    r1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    r2 = _mm256_shuffle_ps(t1, t3, 0x44);
    r3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    r4 = _mm256_shuffle_ps(t4, t6, 0x44);
    r5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    r6 = _mm256_shuffle_ps(t5, t7, 0x44);
    r7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(r0, r4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(r1, r5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(r2, r6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(r3, r7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(r0, r4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(r1, r5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(r2, r6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(r3, r7, 0x31));
}
#endif

/* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols. */
static void transpose(int64_t rows, int64_t cols, const float *restrict src, int64_t lds,
                      float *restrict dst, int64_t ldd) {
    int64_t r0, c0, r, c;
    for (r0 = 0; r0 < rows; r0 += 8)
        for (c0 = 0; c0 < cols; c0 += 8) {
            const int64_t r1 = r0 + 8 < rows ? r0 + 8 : rows, c1 = c0 + 8 < cols ? c0 + 8 : cols;
#if defined(__AVX2__)
            if (r1 - r0 == 8 && c1 - c0 == 8) {
                transpose8x8(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
                continue;
            }
#endif
            for (r = r0; r < r1; ++r)
                for (c = c0; c < c1; ++c) dst[c * ldd + r] = src[r * lds + c];
        }
}

const lla_omp_kernels CAT(lla__omp_kernels_, LLA_OMP_ISA) = {
    .isa = STR(LLA_OMP_ISA),
    .mr = MR,
    .nr = NR,
    .gemm = gemm,
    .mul_exp = mul_exp,
    .axpby = axpby,
    .coldot_axpy = coldot_axpy,
    .scale_rows = scale_rows,
    .decay_acc = decay_acc,
    .delta_acc = delta_acc,
    .transpose = transpose,
};
