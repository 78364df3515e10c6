/*
 * lla-demo - a small end-to-end run on the default backend (LLA_BACKEND, else the best
 * usable one): for a few variants and dtypes it builds a random problem, runs
 *   1. lla_forward over the whole sequence, and
 *   2. lla_forward over a prefix with a final state, then lla_decode_step token by token,
 * and checks both against the dense float64 oracle (lla_oracle_forward) on the whole
 * sequence.  Prints a table of relative errors and timings.  Exit status 1 if any case
 * fails: an error above tolerance, or a call that returns an error status (such as
 * LLA_ERR_UNSUPPORTED from a backend without forward or decode for weak Mamba-2 f32,
 * which every backend must run); other cases a backend declares unsupported through
 * lla_backend_supports are listed as skipped.  Exit status 2 on bad usage.
 *
 * usage: lla-demo [--backend SPEC] [--prefill T1] [--decode T2]
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lla.h"

enum { B = 2, H = 4, G = 2, K = 16, V = 8 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64 */
static double uniform(unsigned long long *s, double lo, double hi) {
    unsigned long long z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * ((double)(z >> 11) * (1.0 / 9007199254740992.0));
}

/* One [B, T, heads, dim] tensor: float64 values on the host, the same values in the
 * case's dtype in backend memory (device memory for GPU backends). */
typedef struct buffer {
    double *values;   /* host, float64 */
    void *host;       /* host, in dtype */
    void *mem;        /* backend memory, in dtype */
    size_t bytes;
    int64_t heads, dim;
} buffer;

typedef struct demo_case {
    const char *name;
    lla_variant variant;
    lla_hierarchy hierarchy;
    lla_dtype dtype;
    int required; /* every backend must run it; others are skipped where unsupported */
} demo_case;

static int alloc_buffer(lla_backend *be, buffer *x, int64_t T, int64_t heads, int64_t dim,
                        lla_dtype dtype) {
    size_t n = (size_t)(B * T * heads * dim);
    x->heads = heads;
    x->dim = dim;
    x->bytes = n * lla_dtype_size(dtype);
    x->values = (double *)calloc(n, sizeof(double));
    x->host = calloc(n, lla_dtype_size(dtype));
    if (!x->values || !x->host) return 0;
    return lla_malloc(be, x->bytes, &x->mem) == LLA_OK;
}

static void free_buffer(lla_backend *be, buffer *x) {
    free(x->values);
    free(x->host);
    if (x->mem) lla_free(be, x->mem);
    memset(x, 0, sizeof *x);
}

/* values -> host copy in dtype -> backend memory */
static int upload(lla_backend *be, buffer *x, lla_dtype dtype) {
    size_t i, n = x->bytes / lla_dtype_size(dtype);
    for (i = 0; i < n; ++i) {
        if (dtype == LLA_DTYPE_F32) ((float *)x->host)[i] = (float)x->values[i];
        else ((double *)x->host)[i] = x->values[i];
    }
    return lla_upload(be, x->mem, x->host, x->bytes) == LLA_OK;
}

/* backend memory -> host copy -> values */
static int download(lla_backend *be, buffer *x, lla_dtype dtype) {
    size_t i, n = x->bytes / lla_dtype_size(dtype);
    if (lla_download(be, x->host, x->mem, x->bytes) != LLA_OK) return 0;
    for (i = 0; i < n; ++i)
        x->values[i] = dtype == LLA_DTYPE_F32 ? (double)((float *)x->host)[i] : ((double *)x->host)[i];
    return 1;
}

/* View of tokens [t0, t0 + len) of a [B, T, heads, dim] buffer: same strides, offset data. */
static lla_tensor view(const buffer *x, int64_t T, int64_t t0, lla_dtype dtype, int host) {
    lla_tensor t = lla_tensor_contiguous(host ? x->host : x->mem, dtype, T, x->heads, x->dim);
    t.data = (char *)t.data + (size_t)(t0 * t.strides[1]) * lla_dtype_size(dtype);
    return t;
}

static double rel_err(const double *a, const double *ref, size_t n) {
    double num = 0.0, den = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        if (a[i] != a[i]) return INFINITY;
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : (num > 0.0 ? INFINITY : 0.0);
}

#define CHECK(call)                                                                        \
    do {                                                                                    \
        lla_status st_ = (call);                                                            \
        if (st_ != LLA_OK) {                                                                \
            snprintf(note, sizeof note, "%s: %s", lla_status_str(st_), lla_last_error());    \
            status = st_;                                                                   \
            goto done;                                                                      \
        }                                                                                   \
    } while (0)

/* A table cell: "-" for a value that was not measured. */
static const char *cell(double value, const char *fmt, double unit) {
    static char cells[4][32];
    static int next;
    char *out = cells[next++ & 3];
    if (value != value) return "-";
    snprintf(out, sizeof cells[0], fmt, value * unit);
    return out;
}

/* Runs one case: the status of the first failing call (LLA_OK if none), and *mismatch
 * set when a result is off the oracle by more than the tolerance. */
static lla_status run_case(lla_backend *be, const demo_case *c, int64_t T1, int64_t T2,
                           unsigned long long seed, int *mismatch) {
    const int64_t T = T1 + T2;
    const double tol = c->dtype == LLA_DTYPE_F64 ? 1e-10 : 1e-5;
    buffer q = {0}, k = {0}, v = {0}, g = {0}, lam = {0}, beta = {0}, o = {0};
    lla_problem p;
    lla_inputs x, xh;
    lla_state state;
    void *state_mem = NULL, *ws = NULL, *oracle_ws = NULL;
    double *ref = NULL, err_fwd = NAN, err_dec = NAN, t_fwd = NAN, t_dec = NAN, t0;
    size_t state_bytes = 0, ws_bytes = 0, fwd_ws = 0, oracle_bytes = 0, n, i;
    lla_status status = LLA_OK;
    char note[512] = "";
    int64_t t, d;

    lla_problem_init(&p, c->variant, c->hierarchy, B, T, H, G, K, V);
    p.scale = 1.0 / sqrt((double)K);
    if (!alloc_buffer(be, &q, T, G, K, c->dtype) || !alloc_buffer(be, &k, T, G, K, c->dtype) ||
        !alloc_buffer(be, &v, T, H, V, c->dtype) || !alloc_buffer(be, &g, T, H, 1, c->dtype) ||
        !alloc_buffer(be, &lam, T, H, p.levels, c->dtype) ||
        !alloc_buffer(be, &beta, T, H, 1, c->dtype) || !alloc_buffer(be, &o, T, H, V, c->dtype)) {
        snprintf(note, sizeof note, "out of memory: %s", lla_last_error());
        status = LLA_ERR_NOMEM;
        goto done;
    }
    /* Inputs as the models feed them: GDN keys and queries are unit vectors. */
    for (i = 0; i < (size_t)(B * T * G); ++i) {
        double nq = 0.0, nk = 0.0;
        for (d = 0; d < K; ++d) {
            q.values[i * K + (size_t)d] = uniform(&seed, -1, 1);
            k.values[i * K + (size_t)d] = uniform(&seed, -1, 1);
            nq += q.values[i * K + (size_t)d] * q.values[i * K + (size_t)d];
            nk += k.values[i * K + (size_t)d] * k.values[i * K + (size_t)d];
        }
        for (d = 0; c->variant == LLA_VARIANT_GDN && d < K; ++d) {
            q.values[i * K + (size_t)d] /= sqrt(nq);
            k.values[i * K + (size_t)d] /= sqrt(nk);
        }
    }
    for (i = 0; i < (size_t)(B * T * H * V); ++i) v.values[i] = uniform(&seed, -1, 1);
    for (i = 0; i < (size_t)(B * T * H); ++i) {
        g.values[i] = uniform(&seed, -0.3, -0.01);
        beta.values[i] = uniform(&seed, 0.1, 0.9);
    }
    for (i = 0; i < (size_t)(B * T * H * p.levels); ++i) lam.values[i] = uniform(&seed, 0.5, 1.5);
    if (!upload(be, &q, c->dtype) || !upload(be, &k, c->dtype) || !upload(be, &v, c->dtype) ||
        !upload(be, &g, c->dtype) || !upload(be, &lam, c->dtype) || !upload(be, &beta, c->dtype)) {
        snprintf(note, sizeof note, "upload failed: %s", lla_last_error());
        status = LLA_ERR_DEVICE;
        goto done;
    }

    /* The float64 oracle on the whole sequence, from the same (rounded) host inputs. */
    xh.q = view(&q, T, 0, c->dtype, 1);
    xh.k = view(&k, T, 0, c->dtype, 1);
    xh.v = view(&v, T, 0, c->dtype, 1);
    xh.g = view(&g, T, 0, c->dtype, 1);
    xh.lambda = view(&lam, T, 0, c->dtype, 1);
    xh.beta = view(&beta, T, 0, c->dtype, 1);
    n = (size_t)(B * T * H * V);
    ref = (double *)malloc(n * sizeof *ref);
    CHECK(lla_oracle_workspace(&p, &oracle_bytes));
    oracle_ws = malloc(oracle_bytes);
    if (!ref || !oracle_ws) { status = LLA_ERR_NOMEM; snprintf(note, sizeof note, "out of memory"); goto done; }
    CHECK(lla_oracle_forward(&p, &xh, lla_tensor_contiguous(ref, LLA_DTYPE_F64, T, H, V), oracle_ws,
                             oracle_bytes));

    x.q = view(&q, T, 0, c->dtype, 0);
    x.k = view(&k, T, 0, c->dtype, 0);
    x.v = view(&v, T, 0, c->dtype, 0);
    x.g = view(&g, T, 0, c->dtype, 0);
    x.lambda = view(&lam, T, 0, c->dtype, 0);
    x.beta = view(&beta, T, 0, c->dtype, 0);

    /* 1. forward over all T tokens */
    CHECK(lla_forward_workspace(be, &p, c->dtype, &fwd_ws));
    {
        lla_problem prefix = p;
        size_t prefix_ws = 0;
        prefix.seqlen = T1;
        CHECK(lla_forward_workspace(be, &prefix, c->dtype, &prefix_ws));
        ws_bytes = fwd_ws > prefix_ws ? fwd_ws : prefix_ws;
    }
    if (ws_bytes) CHECK(lla_malloc(be, ws_bytes, &ws));
    CHECK(lla_memset_zero(be, o.mem, o.bytes));
    t0 = now_s();
    CHECK(lla_forward(be, &p, &x, view(&o, T, 0, c->dtype, 0), NULL, NULL, ws, ws_bytes));
    CHECK(lla_synchronize(be));
    t_fwd = now_s() - t0;
    if (!download(be, &o, c->dtype)) { status = LLA_ERR_DEVICE; goto done; }
    err_fwd = rel_err(o.values, ref, n);

    /* 2. forward over T1 tokens into a decoder state, then T2 single-token steps */
    {
        lla_problem prefix = p, step = p;
        lla_inputs xs;
        lla_dtype state_dtype = c->dtype == LLA_DTYPE_F64 ? LLA_DTYPE_F64 : LLA_DTYPE_F32;
        prefix.seqlen = T1;
        step.seqlen = 1;
        CHECK(lla_state_bytes(&p, state_dtype, &state_bytes));
        CHECK(lla_malloc(be, state_bytes, &state_mem));
        CHECK(lla_state_init(be, &p, state_dtype, state_mem, state_bytes, &state));
        CHECK(lla_memset_zero(be, o.mem, o.bytes));
        CHECK(lla_forward(be, &prefix, &x, view(&o, T, 0, c->dtype, 0), NULL, &state, ws, ws_bytes));
        t0 = now_s();
        for (t = T1; t < T; ++t) {
            xs.q = view(&q, T, t, c->dtype, 0);
            xs.k = view(&k, T, t, c->dtype, 0);
            xs.v = view(&v, T, t, c->dtype, 0);
            xs.g = view(&g, T, t, c->dtype, 0);
            xs.lambda = view(&lam, T, t, c->dtype, 0);
            xs.beta = view(&beta, T, t, c->dtype, 0);
            CHECK(lla_decode_step(be, &step, &state, &xs, view(&o, T, t, c->dtype, 0)));
        }
        CHECK(lla_synchronize(be));
        t_dec = T2 > 0 ? (now_s() - t0) / (double)T2 : 0.0;
        if (!download(be, &o, c->dtype)) { status = LLA_ERR_DEVICE; goto done; }
        err_dec = rel_err(o.values, ref, n);
    }
    if (!(err_fwd <= tol) || !(err_dec <= tol)) {
        *mismatch = 1;
        snprintf(note, sizeof note, "MISMATCH (tolerance %g)", tol);
    }
done:
    printf("%-14s %-4s %11s %14s %11s %14s  %s\n", c->name, lla_dtype_name(c->dtype),
           cell(err_fwd, "%.3g", 1.0), cell(err_dec, "%.3g", 1.0), cell(t_fwd, "%.3f", 1e3),
           cell(t_dec, "%.2f", 1e6), status == LLA_OK && !*mismatch ? "ok" : note);
    if (state_mem) lla_free(be, state_mem);
    if (ws) lla_free(be, ws);
    free(ref);
    free(oracle_ws);
    free_buffer(be, &q); free_buffer(be, &k); free_buffer(be, &v); free_buffer(be, &g);
    free_buffer(be, &lam); free_buffer(be, &beta); free_buffer(be, &o);
    return status;
}

/* Does the backend declare both operations of the case supported? */
static int backend_runs(lla_backend *be, const demo_case *c, int64_t T1, int64_t T2) {
    lla_problem p;
    lla_problem_init(&p, c->variant, c->hierarchy, B, T1 + T2, H, G, K, V);
    return lla_backend_supports(be, &p, c->dtype, LLA_OP_FORWARD) == LLA_OK &&
           lla_backend_supports(be, &p, c->dtype, LLA_OP_DECODE) == LLA_OK;
}

int main(int argc, char **argv) {
    static const demo_case cases[] = {
        {"mamba2 weak", LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, LLA_DTYPE_F32, 1},
        {"mamba2 weak", LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, LLA_DTYPE_F64, 0},
        {"mamba2 strong", LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, LLA_DTYPE_F32, 0},
        {"mamba2 strong", LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, LLA_DTYPE_F64, 0},
        {"gdn weak", LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, LLA_DTYPE_F32, 0},
        {"gdn weak", LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, LLA_DTYPE_F64, 0},
        {"gdn strong", LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, LLA_DTYPE_F32, 0},
        {"gdn strong", LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, LLA_DTYPE_F64, 0},
    };
    const char *spec = NULL;
    long T1 = 200, T2 = 23;
    int i, failures = 0, skipped = 0, ncases = (int)(sizeof cases / sizeof cases[0]);
    lla_backend *be;
    lla_status st;
    for (i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) spec = argv[++i];
        else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) T1 = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) T2 = strtol(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: lla-demo [--backend SPEC] [--prefill T1 >= 1] [--decode T2 >= 0]\n");
            return 2;
        }
    }
    if (T1 < 1 || T2 < 0 || T1 > 1000000 || T2 > 100000) {
        fprintf(stderr, "lla-demo: need 1 <= T1 <= 1e6 and 0 <= T2 <= 1e5\n");
        return 2;
    }
    st = lla_backend_open(spec, &be);
    if (st != LLA_OK) {
        fprintf(stderr, "lla-demo: cannot open backend: %s: %s\n", lla_status_str(st), lla_last_error());
        return 1;
    }
    printf("lla %s, backend %s: %s\n", lla_version_string(), lla_backend_name(be),
           lla_backend_description(be));
    printf("B=%d H=%d qk_heads=%d K=%d V=%d, prefill T1=%ld then %ld decode steps "
           "(T=%ld), errors relative to the float64 oracle\n\n",
           B, H, G, K, V, T1, T2, T1 + T2);
    printf("%-14s %-4s %11s %14s %11s %14s  %s\n", "case", "type", "forward err", "prefill+decode",
           "forward ms", "decode us/tok", "result");
    for (i = 0; i < ncases; ++i) {
        int mismatch = 0;
        if (!cases[i].required && !backend_runs(be, &cases[i], T1, T2)) {
            printf("%-14s %-4s %11s %14s %11s %14s  skipped: %s\n", cases[i].name,
                   lla_dtype_name(cases[i].dtype), "-", "-", "-", "-", lla_last_error());
            ++skipped;
            continue;
        }
        st = run_case(be, &cases[i], T1, T2, 1000u + (unsigned)i, &mismatch);
        if (st != LLA_OK || mismatch) ++failures;
    }
    printf("\n%d passed, %d failed, %d skipped%s%s%s\n", ncases - failures - skipped, failures,
           skipped, skipped ? " (not supported by " : "", skipped ? lla_backend_name(be) : "",
           skipped ? ")" : "");
    lla_backend_close(be);
    return failures ? 1 : 0;
}
