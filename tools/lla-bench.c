/*
 * lla-bench - times lla's forward, forward+backward and decode step on one backend, with
 * the baselines its ratios need measured in the same run:
 *   - the scalar backend on the same problem (speed-up);
 *   - the same problem with lambda == 1 as plain gated linear attention (the openmp
 *     backend's forward with one level for all earlier sources: same kernels, threads
 *     and schedule; cost of the hierarchy);
 *   - the machine's float32 matrix-multiply rate (OpenBLAS sgemm when lla-bench was built
 *     with it, else a blocked GEMM of our own; the output says which).
 * Several repetitions after warm-up, the series of one T timed in turns (rep by rep) so a
 * busy machine weighs on all alike; the table shows the median and the min..max spread,
 * tokens/s and effective GFLOP/s by the FLOP model of docs/benchmarks.md.  --csv / --json
 * write every row; --sweep runs T = 1K..64K and --svg plots time per token.
 * Backends with device memory (opencl, cuda) get device copies of every tensor, state and
 * workspace (lla_malloc + lla_upload, outside the timed region), and every timed call ends
 * with lla_synchronize.  16-bit dtypes (bf16, f16) store q, k, v, lambda, beta and o in
 * that type and the log gates g in float32 (the shape the GPU paths are built for).
 *
 *   lla-bench [--backend openmp] [--variant mamba2|gdn] [--hierarchy weak|strong]
 *             [--B 1] [--T 16K[,64K..]] [--H 8] [--G 1] [--K 128] [--V 64] [--chunk 64]
 *             [--dtype f32|f64|bf16|f16] [--threads N] [--reps 5] [--warmup 1]
 *             [--mode forward|fwdbwd|decode[,..]] [--pos 1K,1M] [--steps 1024]
 *             [--gates -1e-3:-1e-5]
 *             [--no-scalar] [--scalar-max-T 16K] [--no-linear] [--no-gemm]
 *             [--sweep] [--csv FILE] [--json FILE] [--svg FILE]
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lla.h"
#include "lla_bench_version.h"
#ifdef LLA_HAVE_OPENMP
#include "omp_bench.h"
#endif
#ifdef LLA_BENCH_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ options */

#define MAX_LIST 16
#define MAX_ROWS 256

typedef struct opts {
    const char *backend;
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t B, H, G, K, V, chunk;
    int64_t T[MAX_LIST];
    int nT;
    int64_t pos[MAX_LIST];
    int npos;
    int64_t steps;
    double g_lo, g_hi; /* log gates drawn uniformly from [g_lo, g_hi] */
    lla_dtype dtype;
    int threads, reps, warmup;
    int mode_fwd, mode_fwdbwd, mode_decode;
    int scalar, linear, gemm;
    int64_t scalar_max_T;
    const char *csv, *json, *svg;
} opts;

typedef struct row {
    char series[24]; /* "openmp", "scalar", "linear (lambda=1)", "sgemm" */
    char mode[12];   /* forward, fwdbwd, decode, gemm */
    int64_t T;       /* tokens per sequence; decode: position */
    int64_t levels;
    double med_ms, min_ms, max_ms;
    double tokens; /* tokens per call (decode: per step) */
    double flops;  /* model FLOPs per call */
    size_t state_bytes;
} row;

static row g_rows[MAX_ROWS];
static int g_nrows;

static void usage(void) {
    fprintf(
        stderr,
        "usage: lla-bench [--backend NAME] [--variant mamba2|gdn] [--hierarchy weak|strong]\n"
        "                 [--B n] [--T n[,n..]] [--H n] [--G n] [--K n] [--V n] [--chunk n]\n"
        "                 [--dtype f32|f64|bf16|f16] [--threads n] [--reps n] [--warmup n]\n"
        "                 [--mode forward|fwdbwd|decode[,..]] [--pos n[,n..]] [--steps n]\n"
        "                 [--gates LO:HI]  (log gates uniform in [LO, HI], default -1e-3:-1e-5)\n"
        "                 [--no-scalar] [--scalar-max-T n] [--no-linear] [--no-gemm]\n"
        "                 [--sweep] [--csv FILE] [--json FILE] [--svg FILE]\n"
        "sizes take K/M suffixes (16K = 16384, 1M = 1048576)\n");
}

static int64_t parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s) return -1;
    if (*end == 'k' || *end == 'K')
        v *= 1024.0, ++end;
    else if (*end == 'm' || *end == 'M')
        v *= 1048576.0, ++end;
    if (*end) return -1;
    return (int64_t)v;
}

static int parse_list(const char *s, int64_t *out, int max) {
    char buf[256], *tok, *save = NULL;
    int n = 0;
    snprintf(buf, sizeof buf, "%s", s);
    for (tok = strtok_r(buf, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
        int64_t v = parse_size(tok);
        if (v <= 0) return -1;
        out[n++] = v;
    }
    return n;
}

static int default_threads(void) {
    const char *e = getenv("OMP_NUM_THREADS");
    long n;
    if (e && atoi(e) > 0) return atoi(e);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int parse_args(int argc, char **argv, opts *o) {
    int i;
    memset(o, 0, sizeof *o);
    o->backend = "openmp";
    o->B = 1, o->H = 8, o->G = 1, o->K = 128, o->V = 64, o->chunk = 64;
    o->T[0] = 16384, o->nT = 1;
    o->pos[0] = 1024, o->pos[1] = 1048576, o->npos = 2;
    o->steps = 1024;
    /* weak decay: over 64K tokens the oldest sets still weigh > 1e-15, so no read is skipped
     * as negligible (stronger gates let the backends drop far sets: less work) */
    o->g_lo = -1e-3, o->g_hi = -1e-5;
    o->dtype = LLA_DTYPE_F32;
    o->threads = default_threads();
    o->reps = 5, o->warmup = 1;
    o->mode_fwd = 1;
    o->scalar = o->linear = o->gemm = 1;
    o->scalar_max_T = 16384;
    for (i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                                 \
    if (!v) {                                                                                      \
        fprintf(stderr, "lla-bench: %s needs a value\n", a);                                       \
        return 0;                                                                                  \
    }                                                                                              \
    ++i
        if (!strcmp(a, "--backend")) {
            NEED_VALUE;
            o->backend = v;
        } else if (!strcmp(a, "--variant")) {
            NEED_VALUE;
            if (!strcmp(v, "mamba2"))
                o->variant = LLA_VARIANT_MAMBA2;
            else if (!strcmp(v, "gdn"))
                o->variant = LLA_VARIANT_GDN;
            else
                return 0;
        } else if (!strcmp(a, "--hierarchy")) {
            NEED_VALUE;
            if (!strcmp(v, "weak"))
                o->hierarchy = LLA_HIERARCHY_WEAK;
            else if (!strcmp(v, "strong"))
                o->hierarchy = LLA_HIERARCHY_STRONG;
            else
                return 0;
        } else if (!strcmp(a, "--B")) {
            NEED_VALUE;
            o->B = parse_size(v);
        } else if (!strcmp(a, "--T")) {
            NEED_VALUE;
            o->nT = parse_list(v, o->T, MAX_LIST);
        } else if (!strcmp(a, "--H")) {
            NEED_VALUE;
            o->H = parse_size(v);
        } else if (!strcmp(a, "--G")) {
            NEED_VALUE;
            o->G = parse_size(v);
        } else if (!strcmp(a, "--K")) {
            NEED_VALUE;
            o->K = parse_size(v);
        } else if (!strcmp(a, "--V")) {
            NEED_VALUE;
            o->V = parse_size(v);
        } else if (!strcmp(a, "--chunk")) {
            NEED_VALUE;
            o->chunk = parse_size(v);
        } else if (!strcmp(a, "--dtype")) {
            NEED_VALUE;
            if (!strcmp(v, "f32"))
                o->dtype = LLA_DTYPE_F32;
            else if (!strcmp(v, "f64"))
                o->dtype = LLA_DTYPE_F64;
            else if (!strcmp(v, "bf16"))
                o->dtype = LLA_DTYPE_BF16;
            else if (!strcmp(v, "f16"))
                o->dtype = LLA_DTYPE_F16;
            else
                return 0;
        } else if (!strcmp(a, "--threads")) {
            NEED_VALUE;
            o->threads = atoi(v);
        } else if (!strcmp(a, "--reps")) {
            NEED_VALUE;
            o->reps = atoi(v);
        } else if (!strcmp(a, "--warmup")) {
            NEED_VALUE;
            o->warmup = atoi(v);
        } else if (!strcmp(a, "--mode")) {
            NEED_VALUE;
            o->mode_fwd = strstr(v, "forward") != NULL;
            o->mode_fwdbwd = strstr(v, "fwdbwd") != NULL || strstr(v, "forward+backward") != NULL;
            o->mode_decode = strstr(v, "decode") != NULL;
            if (!o->mode_fwd && !o->mode_fwdbwd && !o->mode_decode) return 0;
        } else if (!strcmp(a, "--pos")) {
            NEED_VALUE;
            o->npos = parse_list(v, o->pos, MAX_LIST);
        } else if (!strcmp(a, "--steps")) {
            NEED_VALUE;
            o->steps = parse_size(v);
        } else if (!strcmp(a, "--gates")) {
            NEED_VALUE;
            if (sscanf(v, "%lf:%lf", &o->g_lo, &o->g_hi) != 2 || o->g_lo > o->g_hi || o->g_hi > 0)
                return 0;
        } else if (!strcmp(a, "--no-scalar"))
            o->scalar = 0;
        else if (!strcmp(a, "--scalar-max-T")) {
            NEED_VALUE;
            o->scalar_max_T = parse_size(v);
        } else if (!strcmp(a, "--no-linear"))
            o->linear = 0;
        else if (!strcmp(a, "--no-gemm"))
            o->gemm = 0;
        else if (!strcmp(a, "--sweep")) {
            int k;
            o->nT = 7;
            for (k = 0; k < 7; ++k) o->T[k] = (int64_t)1024 << k;
            o->scalar_max_T = 4096;
        } else if (!strcmp(a, "--csv")) {
            NEED_VALUE;
            o->csv = v;
        } else if (!strcmp(a, "--json")) {
            NEED_VALUE;
            o->json = v;
        } else if (!strcmp(a, "--svg")) {
            NEED_VALUE;
            o->svg = v;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            exit(0);
        } else {
            fprintf(stderr, "lla-bench: unknown option %s\n", a);
            return 0;
        }
#undef NEED_VALUE
    }
    if (o->nT <= 0 || o->npos <= 0 || o->B <= 0 || o->H <= 0 || o->G <= 0 || o->K <= 0 ||
        o->V <= 0 || o->chunk <= 0 || o->threads <= 0 || o->reps <= 0 || o->warmup < 0 ||
        o->steps <= 0 || o->H % o->G != 0)
        return 0;
    return 1;
}

/* ------------------------------------------------------------------ timing */

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats {
    double med, min, max;
} stats;

static stats summarize(double *t, int n) {
    stats s;
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    s.min = t[0];
    s.max = t[n - 1];
    s.med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    return s;
}

static row *add_row(const char *series, const char *mode, int64_t T, int64_t levels, stats s,
                    double tokens, double flops) {
    row *r;
    if (g_nrows >= MAX_ROWS) return NULL;
    r = &g_rows[g_nrows++];
    memset(r, 0, sizeof *r);
    snprintf(r->series, sizeof r->series, "%s", series);
    snprintf(r->mode, sizeof r->mode, "%s", mode);
    r->T = T;
    r->levels = levels;
    r->med_ms = s.med;
    r->min_ms = s.min;
    r->max_ms = s.max;
    r->tokens = tokens;
    r->flops = flops;
    return r;
}

static void print_row(const row *r) {
    const double tps = r->tokens / (r->med_ms * 1e-3);
    const double gf = r->flops > 0 ? r->flops / (r->med_ms * 1e-3) * 1e-9 : 0.0;
    printf("%-20s %-8s %9lld %11.3f  %9.3f..%-9.3f %12.4g %9.2f\n", r->series, r->mode,
           (long long)r->T, r->med_ms, r->min_ms, r->max_ms, tps, gf);
    fflush(stdout);
}

/* ------------------------------------------------------------------ FLOP model */

static int64_t popcount64(uint64_t x) {
    int64_t n = 0;
    while (x) {
        x &= x - 1;
        ++n;
    }
    return n;
}

/* Non-empty chunk-level sets at level >= first for target chunk c (levels as in SPEC 1.2,
 * applied to chunk indices). */
static int64_t chunk_sets(lla_hierarchy h, int64_t c, int first) {
    int64_t n = 0;
    int l;
    for (l = first; l < 62; ++l) {
        int64_t lo = lla_level_start(h, l, c), hi = lla_level_start(h, l - 1, c);
        if (lo < hi) ++n;
        if (lo == 0) break;
    }
    return n;
}

/* docs/benchmarks.md "FLOP model": the chunkwise forward of one (sequence, head). */
static double model_forward(const opts *o, int64_t T, int flat) {
    const double C = (double)o->chunk, K = (double)o->K, V = (double)o->V;
    const int64_t NT = (T + o->chunk - 1) / o->chunk;
    double f = 0.0;
    int64_t c;
    for (c = 0; c < NT; ++c) {
        const double r = (double)((c + 1) * o->chunk <= T ? o->chunk : T - c * o->chunk);
        double sets;
        f += 2.0 * r * r * (K + V);           /* intra block, dense           */
        if (c + 1 < NT) f += 2.0 * r * K * V; /* chunk summary                */
        if (flat)
            sets = c > 0 ? 1.0 : 0.0;
        else if (o->hierarchy == LLA_HIERARCHY_WEAK)
            sets = (double)popcount64((uint64_t)c);
        else {
            sets = c > 0 ? (double)chunk_sets(LLA_HIERARCHY_STRONG, c, 2) : 0.0;
            if (c > 0) f += 2.0 * r * C * (K + V); /* strong sub-diagonal block    */
        }
        f += sets * 2.0 * r * K * V; /* reads of the inter-chunk sets */
        if (o->variant == LLA_VARIANT_GDN) {
            /* K K^T, W = Aw (beta K), q-hat, D^T, tril(QK^T) Aw; per set S -= K^T (W S) */
            f += 4.0 * r * r * K + 2.0 * r * r * K + 2.0 * K * r * r + 2.0 * r * r * r;
            f += sets * 4.0 * r * K * V;
        }
    }
    return f * (double)(o->B * o->H);
}

/* Decode step at position pos: live levels read and decayed, plus the new token. */
static double model_decode(const opts *o, int64_t pos) {
    double live = 1.0 + (double)chunk_sets(o->hierarchy, pos, 1);
    double per = 3.0 * (double)(o->K * o->V) * live;
    if (o->variant == LLA_VARIANT_GDN) per += 4.0 * (double)(o->K * o->V) * live;
    return per * (double)(o->B * o->H);
}

/* ------------------------------------------------------------------ problems */

/* Host tensors (x, o: what the scalar baseline reads) and the timed backend's view of the
 * same data (bx, bo: the host tensors themselves, or device copies). */
typedef struct bench_data {
    lla_problem p;
    lla_inputs x, bx;
    lla_tensor o, bo;
    void *mem[8];
    size_t bytes[8];
    int nmem;
    void *dmem[8]; /* device copies, lla_free'd by bench_free */
    int ndmem;
} bench_data;

/* The backend being timed and whether its tensors must be device memory. */
static lla_backend *g_be;
static int g_device;
static int g_failures; /* series that could not be measured: the exit status says so */

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static double urand(double lo, double hi) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return lo + (hi - lo) * (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

/* float -> bfloat16 / IEEE half, round to nearest even (finite inputs of modest range). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static uint16_t to_f16(float f) {
    uint32_t u, sign, mant;
    int32_t e;
    memcpy(&u, &f, 4);
    sign = (u >> 16) & 0x8000u;
    e = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    mant = u & 0x7fffffu;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* overflow: infinity */
    if (e <= 0) {                                    /* subnormal or zero */
        uint32_t m, shift, r;
        if (e < -10) return (uint16_t)sign;
        m = mant | 0x800000u;
        shift = (uint32_t)(14 - e);
        r = m >> shift;
        if ((m >> (shift - 1)) & 1u && ((m & ((1u << (shift - 1)) - 1u)) || (r & 1u))) ++r;
        return (uint16_t)(sign | r);
    }
    {
        uint32_t h = sign | ((uint32_t)e << 10) | (mant >> 13);
        if ((mant & 0x1000u) && ((mant & 0x2fffu) || (h & 1u))) ++h; /* carries into e */
        return (uint16_t)h;
    }
}

static void store_elem(void *m, lla_dtype dt, size_t i, double x) {
    switch (dt) {
    case LLA_DTYPE_F64: ((double *)m)[i] = x; break;
    case LLA_DTYPE_BF16: ((uint16_t *)m)[i] = to_bf16((float)x); break;
    case LLA_DTYPE_F16: ((uint16_t *)m)[i] = to_f16((float)x); break;
    default: ((float *)m)[i] = (float)x; break;
    }
}

/* The backend's view of a host tensor: itself, or a device copy (not timed). */
static lla_tensor on_backend(bench_data *d, lla_tensor host) {
    int i;
    void *dev = NULL;
    if (!g_device) return host;
    for (i = 0; i < d->nmem && d->mem[i] != host.data; ++i) continue;
    if (i == d->nmem || d->ndmem == 8 || lla_malloc(g_be, d->bytes[i], &dev) != LLA_OK ||
        lla_upload(g_be, dev, host.data, d->bytes[i]) != LLA_OK) {
        fprintf(stderr, "lla-bench: device copy of %zu bytes: %s\n", i < d->nmem ? d->bytes[i] : 0,
                lla_last_error());
        exit(1);
    }
    d->dmem[d->ndmem++] = dev;
    host.data = dev;
    return host;
}

/* Workspaces in the timed backend's memory (zeroed). */
static void *backend_alloc(size_t bytes) {
    void *p = NULL;
    if (!g_device) {
        if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) p = NULL;
        if (p) memset(p, 0, bytes);
    } else if (lla_malloc(g_be, bytes ? bytes : 64, &p) != LLA_OK ||
               lla_memset_zero(g_be, p, bytes ? bytes : 64) != LLA_OK) {
        p = NULL;
    }
    if (!p) {
        fprintf(stderr, "lla-bench: cannot allocate %zu bytes: %s\n", bytes,
                g_device ? lla_last_error() : "out of memory");
        exit(1);
    }
    return p;
}

static void backend_release(void *p) {
    if (!p) return;
    if (g_device)
        lla_free(g_be, p);
    else
        free(p);
}

static lla_tensor bench_tensor(bench_data *d, lla_dtype dt, int64_t T, int64_t heads, int64_t dim,
                               double lo, double hi, int unit_rows) {
    const size_t n = (size_t)(d->p.batch * T * heads * dim), esz = lla_dtype_size(dt);
    void *m = malloc(n * esz);
    size_t i, j;
    if (!m) {
        fprintf(stderr, "lla-bench: out of memory\n");
        exit(1);
    }
    d->bytes[d->nmem] = n * esz;
    d->mem[d->nmem++] = m;
    for (i = 0; i < n; i += (size_t)dim) {
        double norm = 0.0, v[4096];
        for (j = 0; j < (size_t)dim; ++j) {
            double x = urand(lo, hi);
            if (j < 4096) v[j] = x;
            norm += x * x;
            if (!unit_rows || j >= 4096) store_elem(m, dt, i + j, x);
        }
        if (unit_rows)
            for (j = 0; j < (size_t)dim && j < 4096; ++j) store_elem(m, dt, i + j, v[j] / sqrt(norm));
    }
    return lla_tensor_contiguous(m, dt, T, heads, dim);
}

static void bench_setup(bench_data *d, const opts *o, int64_t T, int64_t levels) {
    const int gdn = o->variant == LLA_VARIANT_GDN;
    const lla_dtype dt = o->dtype, gdt = lla_dtype_size(dt) == 2 ? LLA_DTYPE_F32 : dt;
    memset(d, 0, sizeof *d);
    lla_problem_init(&d->p, o->variant, o->hierarchy, o->B, T, o->H, o->G, o->K, o->V);
    d->p.chunk = o->chunk;
    d->p.levels = levels > 0 ? levels : lla_num_levels(T);
    d->o.dtype = dt;
    d->x.q = bench_tensor(d, dt, T, o->G, o->K, -1.0, 1.0, gdn);
    d->x.k = bench_tensor(d, dt, T, o->G, o->K, -1.0, 1.0, gdn);
    d->x.v = bench_tensor(d, dt, T, o->H, o->V, -1.0, 1.0, 0);
    d->x.g = bench_tensor(d, gdt, T, o->H, 1, o->g_lo, o->g_hi, 0);
    d->x.lambda = bench_tensor(d, dt, T, o->H, d->p.levels, 0.5, 1.5, 0);
    d->x.beta = bench_tensor(d, dt, T, o->H, 1, 0.1, 0.9, 0);
    d->o = bench_tensor(d, dt, T, o->H, o->V, 0.0, 0.0, 0);
    if (!gdn) d->p.scale = 1.0 / sqrt((double)o->K);
    d->bx.q = on_backend(d, d->x.q);
    d->bx.k = on_backend(d, d->x.k);
    d->bx.v = on_backend(d, d->x.v);
    d->bx.g = on_backend(d, d->x.g);
    d->bx.lambda = on_backend(d, d->x.lambda);
    d->bx.beta = on_backend(d, d->x.beta);
    d->bo = on_backend(d, d->o);
}

static void bench_free(bench_data *d) {
    int i;
    for (i = 0; i < d->nmem; ++i) free(d->mem[i]);
    for (i = 0; i < d->ndmem; ++i) lla_free(g_be, d->dmem[i]);
    d->nmem = d->ndmem = 0;
}

static void *aligned_or_die(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        fprintf(stderr, "lla-bench: cannot allocate %zu bytes\n", bytes);
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

static lla_backend *open_backend(const char *name, int threads) {
    lla_backend *b = NULL;
    if (lla_backend_open(name, &b) != LLA_OK) {
        fprintf(stderr, "lla-bench: %s\n", lla_last_error());
        return NULL;
    }
    lla_backend_set_threads(b, threads);
    return b;
}

/* ------------------------------------------------------------------ runs */

/* The scalar baseline (a few reps, not interleaved: it is 20-40x slower). */
static int time_forward(lla_backend *be, bench_data *d, int reps, stats *out) {
    size_t ws = 0;
    void *w;
    double t[256];
    int r;
    if (reps > 256) reps = 256;
    if (lla_forward_workspace(be, &d->p, d->o.dtype, &ws) != LLA_OK) {
        fprintf(stderr, "lla-bench: workspace: %s\n", lla_last_error());
        return 0;
    }
    w = aligned_or_die(ws);
    for (r = 0; r < reps; ++r) {
        double t0 = now_ms();
        if (lla_forward(be, &d->p, &d->x, d->o, NULL, NULL, w, ws) != LLA_OK) {
            fprintf(stderr, "lla-bench: forward on %s: %s\n", lla_backend_name(be),
                    lla_last_error());
            free(w);
            return 0;
        }
        t[r] = now_ms() - t0;
    }
    free(w);
    *out = summarize(t, reps);
    return 1;
}

/* A state at position pos: every set the position implies holds small random values
 * (content does not change the cost), the empty levels are zero. */
static void fill_state(const opts *o, const lla_state *s, int64_t pos) {
    int64_t *positions = (int64_t *)s->memory;
    float *vals = (float *)((char *)s->memory + lla_state_values_offset(s->batch));
    const int64_t KV = s->dk * s->dv;
    int64_t b, h, l, i;
    for (b = 0; b < s->batch; ++b) {
        positions[b] = pos;
        for (h = 0; h < s->heads; ++h)
            for (l = 0; l < s->levels; ++l) {
                int64_t lo = lla_level_start(o->hierarchy, l, pos - 1);
                int64_t hi = l == 0 ? pos : lla_level_start(o->hierarchy, l - 1, pos - 1);
                float *S = vals + ((b * s->heads + h) * s->levels + l) * KV;
                for (i = 0; i < KV; ++i) S[i] = lo < hi ? (float)urand(-0.01, 0.01) : 0.0f;
            }
    }
}

static int time_decode(lla_backend *be, const opts *o, int64_t pos, stats *out, int64_t *levels,
                       size_t *state_bytes) {
    bench_data d;
    lla_state s, hs;
    size_t bytes = 0;
    void *mem, *bmem; /* the state block on the host (filled there) and the backend's */
    double t[256];
    int r, reps = o->reps > 256 ? 256 : o->reps;
    int64_t k, warm = o->steps / 8 + 1;
    *levels = lla_num_levels(pos + warm + o->steps);
    bench_setup(&d, o, 1, *levels);
    if (lla_state_bytes(&d.p, LLA_DTYPE_F32, &bytes) != LLA_OK) return 0;
    mem = aligned_or_die(bytes);
    bmem = g_device ? backend_alloc(bytes) : mem;
    *state_bytes = bytes;
    if (lla_state_init(be, &d.p, LLA_DTYPE_F32, bmem, bytes, &s) != LLA_OK) {
        fprintf(stderr, "lla-bench: state: %s\n", lla_last_error());
        return 0;
    }
    hs = s;
    hs.memory = mem;
    for (r = 0; r < reps; ++r) {
        double t0;
        lla_status st = LLA_OK;
        fill_state(o, &hs, pos);
        if (g_device) st = lla_upload(be, bmem, mem, bytes);
        for (k = 0; k < warm && st == LLA_OK; ++k) st = lla_decode_step(be, &d.p, &s, &d.bx, d.bo);
        if (st == LLA_OK && g_device) st = lla_synchronize(be);
        if (st != LLA_OK) {
            fprintf(stderr, "lla-bench: decode: %s\n", lla_last_error());
            if (g_device) backend_release(bmem);
            free(mem);
            bench_free(&d);
            return 0;
        }
        t0 = now_ms();
        for (k = 0; k < o->steps; ++k) lla_decode_step(be, &d.p, &s, &d.bx, d.bo);
        if (g_device) lla_synchronize(be);
        t[r] = (now_ms() - t0) / (double)o->steps;
    }
    if (g_device) backend_release(bmem);
    free(mem);
    bench_free(&d);
    *out = summarize(t, reps);
    return 1;
}

/* ------------------------------------------------------------------ GEMM rate */

#ifndef LLA_BENCH_OPENBLAS
/* Own blocked GEMM (fallback when OpenBLAS is absent): C += A B, n x n row-major. */
static void own_gemm(int n, const float *a, const float *b, float *c) {
    int i0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (i0 = 0; i0 < n; i0 += 4) {
        int j0, p;
        for (j0 = 0; j0 < n; j0 += 16) {
            float acc[4][16];
            int i, j;
            for (i = 0; i < 4; ++i)
                for (j = 0; j < 16; ++j) acc[i][j] = 0.0f;
            for (p = 0; p < n; ++p)
                for (i = 0; i < 4; ++i) {
                    const float ai = a[(i0 + i) * n + p];
                    for (j = 0; j < 16; ++j) acc[i][j] += ai * b[p * n + j0 + j];
                }
            for (i = 0; i < 4; ++i)
                for (j = 0; j < 16; ++j) c[(i0 + i) * n + j0 + j] += acc[i][j];
        }
    }
}
#endif

static const char *gemm_name(void) {
#ifdef LLA_BENCH_OPENBLAS
    return "OpenBLAS cblas_sgemm";
#else
    return "own blocked GEMM (OpenBLAS not found at build time)";
#endif
}

/* ------------------------------------------------------------------ machine */

static void machine(char *cpu, size_t len) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    snprintf(cpu, len, "unknown CPU");
    if (!f) return;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c += 2;
                c[strcspn(c, "\n")] = 0;
                snprintf(cpu, len, "%s", c);
            }
            break;
        }
    fclose(f);
}

static void loadavg(char *buf, size_t len) {
    FILE *f = fopen("/proc/loadavg", "r");
    snprintf(buf, len, "n/a");
    if (!f) return;
    if (fgets(buf, (int)len, f)) buf[strcspn(buf, "\n")] = 0;
    fclose(f);
}

/* ------------------------------------------------------------------ outputs */

static const row *find(const char *series, const char *mode, int64_t T) {
    int i;
    for (i = 0; i < g_nrows; ++i)
        if (!strcmp(g_rows[i].series, series) && !strcmp(g_rows[i].mode, mode) && g_rows[i].T == T)
            return &g_rows[i];
    return NULL;
}

static void write_csv(const char *path, const opts *o) {
    FILE *f = fopen(path, "w");
    int i;
    if (!f) {
        perror(path);
        return;
    }
    fprintf(f, "series,mode,variant,hierarchy,B,T_or_pos,H,G,K,V,chunk,levels,dtype,threads,reps,"
               "median_ms,min_ms,max_ms,tokens_per_s,model_gflop,gflop_per_s,state_bytes\n");
    for (i = 0; i < g_nrows; ++i) {
        const row *r = &g_rows[i];
        fprintf(f,
                "%s,%s,%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%s,%d,%d,%.6f,%.6f,%.6f,%.6g,%"
                ".6g,%.6g,%zu\n",
                r->series, r->mode, o->variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
                o->hierarchy == LLA_HIERARCHY_STRONG ? "strong" : "weak", (long long)o->B,
                (long long)r->T, (long long)o->H, (long long)o->G, (long long)o->K, (long long)o->V,
                (long long)o->chunk, (long long)r->levels, lla_dtype_name(o->dtype), o->threads,
                o->reps, r->med_ms, r->min_ms, r->max_ms, r->tokens / (r->med_ms * 1e-3),
                r->flops * 1e-9, r->flops > 0 ? r->flops / (r->med_ms * 1e-3) * 1e-9 : 0.0,
                r->state_bytes);
    }
    fclose(f);
}

static void write_json(const char *path, const opts *o, const char *cpu, const char *desc,
                       const char *load0, const char *load1) {
    FILE *f = fopen(path, "w");
    int i;
    if (!f) {
        perror(path);
        return;
    }
    fprintf(f,
            "{\n  \"commit\": \"%s\",\n  \"cpu\": \"%s\",\n  \"backend\": \"%s\",\n"
            "  \"backend_description\": \"%s\",\n  \"gemm\": \"%s\",\n"
            "  \"loadavg_before\": \"%s\",\n  \"loadavg_after\": \"%s\",\n"
            "  \"variant\": \"%s\", \"hierarchy\": \"%s\", \"B\": %lld, \"H\": %lld, \"G\": %lld,"
            " \"K\": %lld, \"V\": %lld, \"chunk\": %lld, \"dtype\": \"%s\", \"threads\": %d,"
            " \"reps\": %d, \"warmup\": %d,\n  \"rows\": [\n",
            LLA_BENCH_COMMIT, cpu, o->backend, desc, gemm_name(), load0, load1,
            o->variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
            o->hierarchy == LLA_HIERARCHY_STRONG ? "strong" : "weak", (long long)o->B,
            (long long)o->H, (long long)o->G, (long long)o->K, (long long)o->V, (long long)o->chunk,
            lla_dtype_name(o->dtype), o->threads, o->reps, o->warmup);
    for (i = 0; i < g_nrows; ++i) {
        const row *r = &g_rows[i];
        fprintf(f,
                "    {\"series\": \"%s\", \"mode\": \"%s\", \"T\": %lld, \"levels\": %lld, "
                "\"median_ms\": %.6f, \"min_ms\": %.6f, \"max_ms\": %.6f, \"tokens_per_s\": %.6g, "
                "\"model_gflop\": %.6g, \"gflop_per_s\": %.6g, \"state_bytes\": %zu}%s\n",
                r->series, r->mode, (long long)r->T, (long long)r->levels, r->med_ms, r->min_ms,
                r->max_ms, r->tokens / (r->med_ms * 1e-3), r->flops * 1e-9,
                r->flops > 0 ? r->flops / (r->med_ms * 1e-3) * 1e-9 : 0.0, r->state_bytes,
                i + 1 < g_nrows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
}

/* Time per token (microseconds) against T, log2 x axis, one polyline per series. */
static void write_svg(const char *path, const opts *o, const char *title) {
    static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"};
    const char *series[5];
    int ns = 0, i, k;
    double xmin = 1e300, xmax = -1e300, ymax = 0.0;
    const double W = 720, H = 440, L = 70, R = 180, Tm = 40, Bm = 50;
    FILE *f;
    for (i = 0; i < g_nrows; ++i) {
        const row *r = &g_rows[i];
        double x, y;
        if (strcmp(r->mode, "forward") != 0) continue;
        x = log2((double)r->T);
        y = r->med_ms * 1e3 / (double)r->tokens;
        if (x < xmin) xmin = x;
        if (x > xmax) xmax = x;
        if (y > ymax) ymax = y;
        for (k = 0; k < ns; ++k)
            if (!strcmp(series[k], r->series)) break;
        if (k == ns && ns < 5) series[ns++] = r->series;
    }
    if (ns == 0) return;
    if (xmax <= xmin) xmax = xmin + 1;
    f = fopen(path, "w");
    if (!f) {
        perror(path);
        return;
    }
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%g\" y=\"22\" font-size=\"14\">%s</text>\n", L, title);
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, H - Bm,
            W - R, H - Bm);
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, Tm, L,
            H - Bm);
    for (i = (int)xmin; i <= (int)xmax; ++i) {
        double x = L + (i - xmin) / (xmax - xmin) * (W - L - R);
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">%dK</text>\n", x, H - Bm + 18,
                (1 << i) / 1024);
    }
    for (i = 0; i <= 4; ++i) {
        double y = H - Bm - i / 4.0 * (H - Tm - Bm);
        fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.3g</text>\n", L - 6, y + 4,
                ymax * 1.1 * i / 4.0);
        fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#ddd\"/>\n", L, y, W - R,
                y);
    }
    fprintf(f,
            "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">T (tokens per sequence, %s, "
            "B=%lld H=%lld K=%lld V=%lld)</text>\n",
            (L + W - R) / 2, H - 12, o->hierarchy == LLA_HIERARCHY_STRONG ? "strong" : "weak",
            (long long)o->B, (long long)o->H, (long long)o->K, (long long)o->V);
    fprintf(f,
            "<text transform=\"rotate(-90)\" x=\"%g\" y=\"16\" text-anchor=\"middle\">"
            "microseconds per token (median)</text>\n",
            -(Tm + H - Bm) / 2);
    for (k = 0; k < ns; ++k) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[k]);
        for (i = 0; i < g_nrows; ++i) {
            const row *r = &g_rows[i];
            if (strcmp(r->mode, "forward") || strcmp(r->series, series[k])) continue;
            fprintf(f, "%.1f,%.1f ", L + (log2((double)r->T) - xmin) / (xmax - xmin) * (W - L - R),
                    H - Bm - (r->med_ms * 1e3 / r->tokens) / (ymax * 1.1) * (H - Tm - Bm));
        }
        fprintf(f, "\"/>\n<text x=\"%g\" y=\"%g\" fill=\"%s\">%s</text>\n", W - R + 10,
                Tm + 20 + 18 * k, colors[k], series[k]);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
}

/* ------------------------------------------------------------------ interleaved runs */

/* The series of one T are timed in turns, rep by rep (forward, linear, fwd+bwd, GEMM, then
 * again), so that whatever else the machine does at the moment weighs on all of them alike:
 * their ratios are what the targets ask for. */
enum { RUN_FORWARD, RUN_LINEAR, RUN_FWDBWD, RUN_GEMM };

typedef struct timed {
    int kind;
    lla_backend *be;
    bench_data *d;
    void *ws;
    size_t wf, wb;
    lla_grads g;
    bench_data gd;
    float *ga, *gb, *gc; /* GEMM operands */
    int gn;
    double t[256];
    int ok;
} timed;

static int timed_prepare(timed *tm, const opts *o, int kind, lla_backend *be, bench_data *d) {
    lla_status st = LLA_OK;
    memset(tm, 0, sizeof *tm);
    tm->kind = kind;
    tm->be = be;
    tm->d = d;
    if (kind == RUN_GEMM) {
        int i, n = tm->gn = 2048;
        tm->ga = (float *)aligned_or_die((size_t)n * (size_t)n * 4);
        tm->gb = (float *)aligned_or_die((size_t)n * (size_t)n * 4);
        tm->gc = (float *)aligned_or_die((size_t)n * (size_t)n * 4);
        for (i = 0; i < n * n; ++i)
            tm->ga[i] = (float)urand(-1, 1), tm->gb[i] = (float)urand(-1, 1);
#ifdef LLA_BENCH_OPENBLAS
        openblas_set_num_threads(o->threads);
#elif defined(_OPENMP)
        omp_set_num_threads(o->threads);
#endif
        return tm->ok = 1;
    }
    if (kind == RUN_LINEAR) {
#ifdef LLA_HAVE_OPENMP
        st = lla__openmp_linear_workspace(be, &d->p, &tm->wf);
#else
        return 0;
#endif
    } else {
        st = lla_forward_workspace(be, &d->p, d->o.dtype, &tm->wf);
    }
    if (st == LLA_OK && kind == RUN_FWDBWD) {
        if (lla_backend_supports(be, &d->p, d->o.dtype, LLA_OP_BACKWARD) != LLA_OK) {
            fprintf(stderr, "lla-bench: %s cannot run the backward here: %s\n",
                    lla_backend_name(be), lla_last_error());
            return 0;
        }
        st = lla_backward_workspace(be, &d->p, d->o.dtype, &tm->wb);
        tm->gd.p = d->p;
        tm->gd.o.dtype = d->o.dtype;
        {
            const lla_dtype dt = d->o.dtype, gdt = d->x.g.dtype;
            bench_data *gd = &tm->gd;
            const int64_t T = d->p.seqlen;
            tm->g.dq = on_backend(gd, bench_tensor(gd, dt, T, d->p.qk_heads, d->p.dk, 0, 0, 0));
            tm->g.dk = on_backend(gd, bench_tensor(gd, dt, T, d->p.qk_heads, d->p.dk, 0, 0, 0));
            tm->g.dv = on_backend(gd, bench_tensor(gd, dt, T, d->p.heads, d->p.dv, 0, 0, 0));
            tm->g.dg = on_backend(gd, bench_tensor(gd, gdt, T, d->p.heads, 1, 0, 0, 0));
            tm->g.dlambda =
                on_backend(gd, bench_tensor(gd, dt, T, d->p.heads, d->p.levels, 0, 0, 0));
            tm->g.dbeta = on_backend(gd, bench_tensor(gd, dt, T, d->p.heads, 1, 0, 0, 0));
        }
    }
    if (st != LLA_OK) {
        fprintf(stderr, "lla-bench: workspace: %s\n", lla_last_error());
        return 0;
    }
    tm->ws = backend_alloc(tm->wf > tm->wb ? tm->wf : tm->wb);
    return tm->ok = 1;
}

/* One timed call (ms), or < 0 on failure. */
static double timed_run(timed *tm) {
    bench_data *d = tm->d;
    lla_status st = LLA_OK;
    double t0 = now_ms();
    switch (tm->kind) {
    case RUN_GEMM:
#ifdef LLA_BENCH_OPENBLAS
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tm->gn, tm->gn, tm->gn, 1.0f, tm->ga,
                    tm->gn, tm->gb, tm->gn, 0.0f, tm->gc, tm->gn);
#else
        own_gemm(tm->gn, tm->ga, tm->gb, tm->gc);
#endif
        break;
    case RUN_LINEAR:
#ifdef LLA_HAVE_OPENMP
        st = lla__openmp_linear_forward(tm->be, &d->p, &d->x, d->o, tm->ws, tm->wf);
#endif
        break;
    case RUN_FORWARD:
        st = lla_forward(tm->be, &d->p, &d->bx, d->bo, NULL, NULL, tm->ws, tm->wf);
        break;
    case RUN_FWDBWD: /* d_o: the values, any [B,T,H,V] tensor will do */
        st = lla_forward(tm->be, &d->p, &d->bx, d->bo, NULL, NULL, tm->ws, tm->wf);
        if (st == LLA_OK)
            st = lla_backward(tm->be, &d->p, &d->bx, d->bx.v, NULL, NULL, &tm->g, NULL, tm->ws,
                              tm->wb);
        break;
    }
    if (st == LLA_OK && g_device) st = lla_synchronize(tm->be);
    if (st != LLA_OK) {
        fprintf(stderr, "lla-bench: %s: %s\n", lla_backend_name(tm->be), lla_last_error());
        return -1.0;
    }
    return now_ms() - t0;
}

static void timed_free(timed *tm) {
    backend_release(tm->ws);
    free(tm->ga);
    free(tm->gb);
    free(tm->gc);
    bench_free(&tm->gd);
}

/* Runs every prepared series in turns; failed series are dropped. */
static void run_interleaved(timed *tms, int n, int reps, int warmup) {
    int r, k;
    for (r = -warmup; r < reps; ++r)
        for (k = 0; k < n; ++k) {
            double t;
            if (!tms[k].ok) continue;
            t = timed_run(&tms[k]);
            if (t < 0) {
                tms[k].ok = 0;
                ++g_failures;
            }
            else if (r >= 0)
                tms[k].t[r] = t;
        }
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    opts o;
    lla_backend *be, *sc = NULL;
    char cpu[256], load0[128], load1[128], desc[256];
    double gemm_rate = 0.0;
    int i, k;
    if (!parse_args(argc, argv, &o)) {
        usage();
        return 2;
    }
    machine(cpu, sizeof cpu);
    loadavg(load0, sizeof load0);
    be = open_backend(o.backend, o.threads);
    /* test harnesses: 77 (meson's "skipped") when the backend has no usable device here */
    if (!be) return getenv("LLA_BENCH_SKIP_UNUSABLE") ? 77 : 1;
    g_be = be;
    g_device = lla_backend_memory_kind(be) == LLA_MEMORY_DEVICE;
    snprintf(desc, sizeof desc, "%s", lla_backend_description(be));
    printf("lla-bench  lla %s  commit %s\n", lla_version_string(), LLA_BENCH_COMMIT);
    printf("machine    %s, %ld online CPUs, load average %s\n", cpu, sysconf(_SC_NPROCESSORS_ONLN),
           load0);
    printf("backend    %s: %s\n", o.backend, desc);
    printf(
        "problem    %s %s, B=%lld H=%lld G=%lld K=%lld V=%lld chunk=%lld, %s, gates in [%g, %g], "
        "%d threads, %d reps after %d warm-up\n",
        o.variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
        o.hierarchy == LLA_HIERARCHY_STRONG ? "strong" : "weak", (long long)o.B, (long long)o.H,
        (long long)o.G, (long long)o.K, (long long)o.V, (long long)o.chunk, lla_dtype_name(o.dtype),
        o.g_lo, o.g_hi, o.threads, o.reps, o.warmup);
    printf("\n%-20s %-8s %9s %11s  %-19s %12s %9s\n", "series", "mode", "T/pos", "median ms",
           "min..max ms", "tokens/s", "GFLOP/s");

    if ((o.mode_fwd || o.mode_fwdbwd) && o.scalar && strcmp(o.backend, "scalar") != 0)
        sc = open_backend("scalar", 1);
    if (o.reps > 256) o.reps = 256;

    for (i = 0; i < o.nT && (o.mode_fwd || o.mode_fwdbwd); ++i) {
        const int64_t T = o.T[i];
        const double fl = model_forward(&o, T, 0);
        bench_data d;
        timed tms[4];
        int n = 0;
        stats s;
        bench_setup(&d, &o, T, 0);
        if (i == 0 && o.gemm) g_failures += !timed_prepare(&tms[n++], &o, RUN_GEMM, be, &d);
        if (o.mode_fwd) g_failures += !timed_prepare(&tms[n++], &o, RUN_FORWARD, be, &d);
#ifdef LLA_HAVE_OPENMP
        if (o.mode_fwd && o.linear && !strcmp(lla_backend_name(be), "openmp") &&
            o.variant == LLA_VARIANT_MAMBA2 && o.dtype == LLA_DTYPE_F32)
            g_failures += !timed_prepare(&tms[n++], &o, RUN_LINEAR, be, &d);
#endif
        if (o.mode_fwdbwd) g_failures += !timed_prepare(&tms[n++], &o, RUN_FWDBWD, be, &d);
        run_interleaved(tms, n, o.reps, o.warmup);
        for (k = 0; k < n; ++k) {
            row *r = NULL;
            if (!tms[k].ok) {
                timed_free(&tms[k]);
                continue;
            }
            s = summarize(tms[k].t, o.reps);
            switch (tms[k].kind) {
            case RUN_GEMM:
                r = add_row("sgemm 2048^3", "gemm", 2048, 0, s, 0.0,
                            2.0 * 2048.0 * 2048.0 * 2048.0);
                gemm_rate = 2.0 * 2048.0 * 2048.0 * 2048.0 / (s.med * 1e-3) * 1e-9;
                break;
            case RUN_FORWARD:
                r = add_row(o.backend, "forward", T, d.p.levels, s, (double)(o.B * T), fl);
                break;
            case RUN_LINEAR:
                r = add_row("linear (lambda=1)", "forward", T, d.p.levels, s, (double)(o.B * T),
                            model_forward(&o, T, 1));
                break;
            case RUN_FWDBWD:
                r = add_row(o.backend, "fwdbwd", T, d.p.levels, s, (double)(o.B * T), 3.0 * fl);
                break;
            }
            if (r) print_row(r);
            timed_free(&tms[k]);
        }
        if (o.mode_fwd && sc && T <= o.scalar_max_T) {
            int reps = o.reps > 3 ? 3 : o.reps;
            if (time_forward(sc, &d, reps, &s)) {
                row *r = add_row("scalar", "forward", T, d.p.levels, s, (double)(o.B * T), fl);
                if (r) print_row(r);
            }
        }
        bench_free(&d);
    }
    for (i = 0; i < o.npos && o.mode_decode; ++i) {
        stats s;
        int64_t levels = 0;
        size_t bytes = 0;
        if (!time_decode(be, &o, o.pos[i], &s, &levels, &bytes)) {
            ++g_failures;
        } else {
            row *r = add_row(o.backend, "decode", o.pos[i], levels, s, (double)o.B,
                             model_decode(&o, o.pos[i]));
            if (r) {
                r->state_bytes = bytes;
                print_row(r);
                printf("%-20s state: %zu bytes = %lld levels x %lld x %lld floats x %lld heads x "
                       "%lld sequences + %zu (positions, padding)\n",
                       "", bytes, (long long)levels, (long long)o.K, (long long)o.V, (long long)o.H,
                       (long long)o.B, lla_state_values_offset(o.B));
            }
        }
    }
    loadavg(load1, sizeof load1);

    /* ratios the targets ask for, from this run */
    printf("\nratios (this run; load average before %s, after %s)\n", load0, load1);
    if (gemm_rate > 0)
        printf("  GEMM rate: %.1f GFLOP/s (%s, %d threads)\n", gemm_rate, gemm_name(), o.threads);
    for (i = 0; i < o.nT; ++i) {
        const int64_t T = o.T[i];
        const row *m = find(o.backend, "forward", T), *s = find("scalar", "forward", T);
        const row *l = find("linear (lambda=1)", "forward", T), *fb = find(o.backend, "fwdbwd", T);
        if (!m) continue;
        printf("  T=%-7lld", (long long)T);
        if (s) printf("  speed-up vs scalar %.1fx", s->med_ms / m->med_ms);
        if (gemm_rate > 0 && m->flops > 0)
            printf("  effective %.1f GFLOP/s = %.0f%% of GEMM",
                   m->flops / (m->med_ms * 1e-3) * 1e-9,
                   100.0 * m->flops / (m->med_ms * 1e-3) * 1e-9 / gemm_rate);
        if (l) printf("  log-linear / linear %.2fx", m->med_ms / l->med_ms);
        if (fb) printf("  fwd+bwd / fwd %.2fx", fb->med_ms / m->med_ms);
        printf("\n");
    }
    if (o.nT > 1) {
        const row *a = find(o.backend, "forward", o.T[0]), *b = NULL;
        for (k = o.nT - 1; k > 0 && !b; --k) b = find(o.backend, "forward", o.T[k]);
        if (a && b)
            printf("  time per token at T=%lld / at T=%lld: %.2fx\n", (long long)b->T,
                   (long long)a->T, (b->med_ms / b->tokens) / (a->med_ms / a->tokens));
    }
    if (o.mode_decode && o.npos > 1) {
        const row *a = find(o.backend, "decode", o.pos[0]),
                  *b = find(o.backend, "decode", o.pos[o.npos - 1]);
        if (a && b)
            printf("  decode time per token at position %lld / at %lld: %.2fx\n", (long long)b->T,
                   (long long)a->T, b->med_ms / a->med_ms);
    }
    if (o.csv) write_csv(o.csv, &o);
    if (o.json) write_json(o.json, &o, cpu, desc, load0, load1);
    if (o.svg) {
        char title[400];
        snprintf(title, sizeof title, "lla-bench forward, %s, %d threads, %s", o.backend, o.threads,
                 cpu);
        write_svg(o.svg, &o, title);
    }
    lla_backend_close(be);
    if (sc) lla_backend_close(sc);
    if (g_failures) fprintf(stderr, "lla-bench: %d series failed (see above)\n", g_failures);
    return g_failures ? 3 : 0;
}
