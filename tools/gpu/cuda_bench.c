/*
 * cuda_bench.c - times the CUDA backend at the paper's Figure-4 shape.
 *
 * B = 2, H = 48 value heads, G = 1 q/k head, K = 128, V = 64, chunk 64, weak Mamba-2,
 * bf16 q/k/v/lambda, fp32 g.  Forward at T = 2K, 8K, 16K, 32K (and 128K once, to show it
 * runs), the generic (CUDA-core) path for reference at 2K and 8K, the fp32 forward (generic
 * path), and decode steps at position 2^17 for B*H = 96 heads.
 * Timing: CUDA events on the legacy default stream around `inner` back-to-back calls, the
 * median over `reps` such groups, after warm-up.  Inputs are random (never zeros).
 * Output: a table on stdout and CSV lines prefixed "csv,".
 *
 * Usage: cuda_bench [--quick] [--decode-only] [--T n (one forward length, no decode)]
 *                   [--fwdbwd (only forward+backward, both backward routes)]
 */
#define _POSIX_C_SOURCE 200112L
/* cuda_runtime.h has anonymous unions, which -Wpedantic rejects in C99 */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#endif
#include <cuda_runtime.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lla.h"

static lla_backend *be;

#define CHECK(call)                                                                     \
    do {                                                                                \
        lla_status st_ = (call);                                                        \
        if (st_ != LLA_OK) {                                                            \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,         \
                    lla_status_str(st_), lla_last_error());                             \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)
#define CU(call)                                                                        \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,               \
                    cudaGetErrorString(e_));                                            \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static uint64_t rng = 0x1234567887654321ull;
static double uniform(double lo, double hi) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Device buffer of n random values in [lo, hi) as bf16 or f32; generated on the host in
 * pieces of at most 8M values (later pieces reuse the first one's values shifted by an
 * offset, so large buffers are cheap to fill and never constant). */
static void *random_device(size_t n, lla_dtype dt, double lo, double hi) {
    const size_t piece = (size_t)1 << 23;
    size_t es = lla_dtype_size(dt), done = 0, i, m = n < piece ? n : piece;
    void *dev = NULL, *host = malloc(m * es);
    if (!host) exit(1);
    for (i = 0; i < m; ++i) {
        float f = (float)uniform(lo, hi);
        if (dt == LLA_DTYPE_BF16)
            ((uint16_t *)host)[i] = to_bf16(f);
        else
            ((float *)host)[i] = f;
    }
    CHECK(lla_malloc(be, n * es, &dev));
    while (done < n) {
        size_t k = n - done < m ? n - done : m, shift = (done / m * 977) % m;
        size_t first = m - shift < k ? m - shift : k;
        CHECK(lla_upload(be, (char *)dev + done * es, (char *)host + shift * es, first * es));
        if (k > first) CHECK(lla_upload(be, (char *)dev + (done + first) * es, host, (k - first) * es));
        done += k;
    }
    free(host);
    return dev;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct fwd_case {
    lla_problem p;
    lla_inputs x;
    lla_tensor o;
    void *ws;
    size_t ws_bytes;
} fwd_case;

static void run_forward(fwd_case *c) {
    CHECK(lla_forward(be, &c->p, &c->x, c->o, NULL, NULL, c->ws, c->ws_bytes));
}

/* median ms per call over reps groups of inner calls */
static double time_forward(fwd_case *c, int reps, int inner) {
    cudaEvent_t a, b;
    double ms[64];
    int r, i;
    CU(cudaEventCreate(&a));
    CU(cudaEventCreate(&b));
    for (i = 0; i < 3; ++i) run_forward(c);
    CHECK(lla_synchronize(be));
    for (r = 0; r < reps && r < 64; ++r) {
        float t;
        CU(cudaEventRecord(a, 0));
        for (i = 0; i < inner; ++i) run_forward(c);
        CU(cudaEventRecord(b, 0));
        CU(cudaEventSynchronize(b));
        CU(cudaEventElapsedTime(&t, a, b));
        ms[r] = t / inner;
    }
    CHECK(lla_synchronize(be));
    qsort(ms, (size_t)r, sizeof ms[0], cmp_double);
    CU(cudaEventDestroy(a));
    CU(cudaEventDestroy(b));
    return ms[r / 2];
}

static fwd_case make_case(int64_t T, lla_dtype dt) {
    fwd_case c;
    const int64_t B = 2, H = 48, G = 1, K = 128, V = 64;
    lla_dtype gdt = LLA_DTYPE_F32;
    memset(&c, 0, sizeof c);
    lla_problem_init(&c.p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, B, T, H, G, K, V);
    c.p.chunk = 64;
    c.p.scale = 0.08838834764831845; /* 1/sqrt(128) */
    c.x.q.data = random_device((size_t)(B * T * G * K), dt, -1, 1);
    c.x.q = lla_tensor_contiguous(c.x.q.data, dt, T, G, K);
    c.x.k.data = random_device((size_t)(B * T * G * K), dt, -1, 1);
    c.x.k = lla_tensor_contiguous(c.x.k.data, dt, T, G, K);
    c.x.v.data = random_device((size_t)(B * T * H * V), dt, -1, 1);
    c.x.v = lla_tensor_contiguous(c.x.v.data, dt, T, H, V);
    c.x.g.data = random_device((size_t)(B * T * H), gdt, -0.1, -0.001);
    c.x.g = lla_tensor_contiguous(c.x.g.data, gdt, T, H, 1);
    c.x.lambda.data = random_device((size_t)(B * T * H * c.p.levels), dt, 0.5, 1.5);
    c.x.lambda = lla_tensor_contiguous(c.x.lambda.data, dt, T, H, c.p.levels);
    c.x.beta = c.x.g;
    CHECK(lla_malloc(be, (size_t)(B * T * H * V) * lla_dtype_size(dt), &c.o.data));
    c.o = lla_tensor_contiguous(c.o.data, dt, T, H, V);
    CHECK(lla_forward_workspace(be, &c.p, dt, &c.ws_bytes));
    CHECK(lla_malloc(be, c.ws_bytes, &c.ws));
    return c;
}

static void free_case(fwd_case *c) {
    lla_free(be, c->x.q.data);
    lla_free(be, c->x.k.data);
    lla_free(be, c->x.v.data);
    lla_free(be, c->x.g.data);
    lla_free(be, c->x.lambda.data);
    lla_free(be, c->o.data);
    lla_free(be, c->ws);
}

/* max |o| over a sample of the output (NaN shows up as nan) */
static double sample_max(const fwd_case *c, lla_dtype dt) {
    size_t n = (size_t)(c->p.batch * c->p.seqlen * c->p.heads * c->p.dv), m = n < 4096 ? n : 4096;
    size_t i, es = lla_dtype_size(dt);
    unsigned char *h = malloc(m * es);
    double mx = 0;
    /* the last rows: they went through the most Fenwick nodes */
    CHECK(lla_download(be, h, (char *)c->o.data + (n - m) * es, m * es));
    for (i = 0; i < m; ++i) {
        double x;
        if (dt == LLA_DTYPE_BF16) {
            uint32_t u = (uint32_t)((uint16_t *)h)[i] << 16;
            float f;
            memcpy(&f, &u, 4);
            x = f;
        } else {
            x = ((float *)h)[i];
        }
        if (x != x) { mx = x; break; }
        if (x < 0) x = -x;
        if (x > mx) mx = x;
    }
    free(h);
    return mx;
}

static void bench_forward(int quick, int64_t only_T) {
    static const int64_t all_T[] = {2048, 8192, 16384, 32768, 131072};
    const int64_t *Ts = only_T ? &only_T : all_T;
    int i, n = only_T ? 1 : quick ? 2 : 5;
    printf("\n== forward, Mamba-2 weak, B=2 H=48 G=1 K=128 V=64 (median ms per call)\n");
    for (i = 0; i < n; ++i) {
        fwd_case c = make_case(Ts[i], LLA_DTYPE_BF16);
        int reps = Ts[i] >= 131072 ? 3 : 15, inner = Ts[i] >= 131072 ? 1 : 5;
        double ms = time_forward(&c, reps, inner), mx = sample_max(&c, LLA_DTYPE_BF16);
        printf("T=%6lld bf16 tensor-core path: %9.4f ms  (max|o| sample %.3g, workspace %zu MiB)\n",
               (long long)Ts[i], ms, mx, c.ws_bytes >> 20);
        printf("csv,forward,bf16,mma,%lld,%.5f\n", (long long)Ts[i], ms);
        fflush(stdout);
        if (Ts[i] <= 8192 && !only_T) {
            setenv("LLA_CUDA_PATH", "generic", 1);
            ms = time_forward(&c, 5, 1);
            unsetenv("LLA_CUDA_PATH");
            printf("T=%6lld bf16 generic path:     %9.4f ms\n", (long long)Ts[i], ms);
            printf("csv,forward,bf16,generic,%lld,%.5f\n", (long long)Ts[i], ms);
            fflush(stdout);
        }
        free_case(&c);
        if (Ts[i] <= 8192 && !only_T) {
            c = make_case(Ts[i], LLA_DTYPE_F32);
            ms = time_forward(&c, 5, 1);
            printf("T=%6lld f32  generic path:     %9.4f ms\n", (long long)Ts[i], ms);
            printf("csv,forward,f32,generic,%lld,%.5f\n", (long long)Ts[i], ms);
            fflush(stdout);
            free_case(&c);
        }
    }
}

/* forward + backward; route "pairs" (the quadratic Mamba-2 kernel set) or "sweep" (the
 * checkpointed O(T log T) backward), forced through LLA_CUDA_BACKWARD.  The sweep is timed
 * on one call after one untimed call (it is slow), the pairs as the median of 3. */
static void bench_fwd_bwd(const char *route) {
    static const int64_t Ts[] = {2048, 8192};
    const int reps = strcmp(route, "sweep") == 0 ? 1 : 3;
    int i;
    setenv("LLA_CUDA_BACKWARD", route, 1);
    printf("\n== forward + backward (%s), same shape, bf16 (median ms per call)\n", route);
    for (i = 0; i < 2; ++i) {
        fwd_case c = make_case(Ts[i], LLA_DTYPE_BF16);
        lla_grads gr;
        lla_tensor d_o;
        size_t bws;
        void *bw;
        cudaEvent_t a, b;
        double ms[5];
        int r;
        const int64_t B = c.p.batch, T = Ts[i], H = c.p.heads, K = c.p.dk, V = c.p.dv;
        d_o = lla_tensor_contiguous(random_device((size_t)(B * T * H * V), LLA_DTYPE_BF16, -1, 1),
                                    LLA_DTYPE_BF16, T, H, V);
        CHECK(lla_malloc(be, (size_t)(B * T * K) * 2, &gr.dq.data));
        gr.dq = lla_tensor_contiguous(gr.dq.data, LLA_DTYPE_BF16, T, 1, K);
        CHECK(lla_malloc(be, (size_t)(B * T * K) * 2, &gr.dk.data));
        gr.dk = lla_tensor_contiguous(gr.dk.data, LLA_DTYPE_BF16, T, 1, K);
        CHECK(lla_malloc(be, (size_t)(B * T * H * V) * 2, &gr.dv.data));
        gr.dv = lla_tensor_contiguous(gr.dv.data, LLA_DTYPE_BF16, T, H, V);
        CHECK(lla_malloc(be, (size_t)(B * T * H) * 4, &gr.dg.data));
        gr.dg = lla_tensor_contiguous(gr.dg.data, LLA_DTYPE_F32, T, H, 1);
        CHECK(lla_malloc(be, (size_t)(B * T * H * c.p.levels) * 2, &gr.dlambda.data));
        gr.dlambda = lla_tensor_contiguous(gr.dlambda.data, LLA_DTYPE_BF16, T, H, c.p.levels);
        gr.dbeta = gr.dg;
        CHECK(lla_backward_workspace(be, &c.p, LLA_DTYPE_BF16, &bws));
        CHECK(lla_malloc(be, bws, &bw));
        CU(cudaEventCreate(&a));
        CU(cudaEventCreate(&b));
        run_forward(&c);
        CHECK(lla_backward(be, &c.p, &c.x, d_o, NULL, NULL, &gr, NULL, bw, bws));
        CHECK(lla_synchronize(be));
        for (r = 0; r < reps; ++r) {
            float t;
            CU(cudaEventRecord(a, 0));
            run_forward(&c);
            CHECK(lla_backward(be, &c.p, &c.x, d_o, NULL, NULL, &gr, NULL, bw, bws));
            CU(cudaEventRecord(b, 0));
            CU(cudaEventSynchronize(b));
            CU(cudaEventElapsedTime(&t, a, b));
            ms[r] = t;
        }
        qsort(ms, (size_t)reps, sizeof ms[0], cmp_double);
        printf("T=%6lld bf16 forward (tensor cores) + backward (%s): %9.3f ms\n", (long long)T,
               route, ms[reps / 2]);
        printf("csv,fwdbwd,bf16,mma+%s,%lld,%.5f\n", route, (long long)T, ms[reps / 2]);
        fflush(stdout);
        lla_free(be, d_o.data);
        lla_free(be, gr.dq.data);
        lla_free(be, gr.dk.data);
        lla_free(be, gr.dv.data);
        lla_free(be, gr.dg.data);
        lla_free(be, gr.dlambda.data);
        lla_free(be, bw);
        free_case(&c);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench_decode(int steps) {
    const int64_t B = 2, H = 48, G = 1, K = 128, V = 64, P0 = (int64_t)1 << 17;
    lla_problem p;
    lla_inputs x;
    lla_tensor o;
    lla_state st;
    size_t sbytes;
    void *mem;
    int64_t pos[2] = {P0, P0};
    double t0, t1;
    int i;
    cudaEvent_t a, b;
    float ms;
    lla_problem_init(&p, LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, B, 1, H, G, K, V);
    p.levels = lla_num_levels(P0 + steps + 200);
    p.scale = 0.08838834764831845;
    CHECK(lla_state_bytes(&p, LLA_DTYPE_F32, &sbytes));
    CHECK(lla_malloc(be, sbytes, &mem));
    CHECK(lla_state_init(be, &p, LLA_DTYPE_F32, mem, sbytes, &st));
    { /* random level values, positions 2^17 */
        void *vals = random_device((sbytes - lla_state_values_offset(B)) / 4, LLA_DTYPE_F32, -1, 1);
        CU(cudaMemcpy((char *)mem + lla_state_values_offset(B), vals,
                      sbytes - lla_state_values_offset(B), cudaMemcpyDeviceToDevice));
        lla_free(be, vals);
        CHECK(lla_upload(be, mem, pos, sizeof pos));
    }
    x.q = lla_tensor_contiguous(random_device((size_t)(B * G * K), LLA_DTYPE_BF16, -1, 1),
                                LLA_DTYPE_BF16, 1, G, K);
    x.k = lla_tensor_contiguous(random_device((size_t)(B * G * K), LLA_DTYPE_BF16, -1, 1),
                                LLA_DTYPE_BF16, 1, G, K);
    x.v = lla_tensor_contiguous(random_device((size_t)(B * H * V), LLA_DTYPE_BF16, -1, 1),
                                LLA_DTYPE_BF16, 1, H, V);
    x.g = lla_tensor_contiguous(random_device((size_t)(B * H), LLA_DTYPE_F32, -0.1, -0.001),
                                LLA_DTYPE_F32, 1, H, 1);
    x.lambda = lla_tensor_contiguous(random_device((size_t)(B * H * p.levels), LLA_DTYPE_BF16, 0.5, 1.5),
                                     LLA_DTYPE_BF16, 1, H, p.levels);
    x.beta = x.g;
    CHECK(lla_malloc(be, (size_t)(B * H * V) * 2, &o.data));
    o = lla_tensor_contiguous(o.data, LLA_DTYPE_BF16, 1, H, V);
    for (i = 0; i < 20; ++i) CHECK(lla_decode_step(be, &p, &st, &x, o));
    CHECK(lla_synchronize(be));
    CU(cudaEventCreate(&a));
    CU(cudaEventCreate(&b));
    CU(cudaEventRecord(a, 0));
    t0 = now_s();
    for (i = 0; i < steps; ++i) CHECK(lla_decode_step(be, &p, &st, &x, o));
    CU(cudaEventRecord(b, 0));
    CU(cudaEventSynchronize(b));
    t1 = now_s();
    CU(cudaEventElapsedTime(&ms, a, b));
    printf("\n== decode, Mamba-2 weak, B*H = 96, K=128 V=64, levels %lld, positions from 2^17+20\n",
           (long long)p.levels);
    printf("decode step (bf16 in/out, f32 state), end to end incl. the positions check: "
           "%.2f us per token (events), %.2f us (host clock)\n",
           1000.0 * ms / steps, 1e6 * (t1 - t0) / steps);
    printf("csv,decode,bf16,e2e,%d,%.3f\n", steps, 1000.0 * ms / steps);
    CHECK(lla_download(be, pos, mem, sizeof pos));
    printf("positions after: %lld %lld (expected %lld)\n", (long long)pos[0], (long long)pos[1],
           (long long)(P0 + 20 + steps));
    lla_free(be, mem);
}

int main(int argc, char **argv) {
    int quick = 0, decode_only = 0, no_decode = 0, fwdbwd_only = 0, i, drv = 0, rt = 0;
    int64_t only_T = 0;
    for (i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        if (!strcmp(argv[i], "--decode-only")) decode_only = 1;
        if (!strcmp(argv[i], "--fwdbwd")) fwdbwd_only = 1;
        if (!strcmp(argv[i], "--T") && i + 1 < argc) {
            only_T = atoll(argv[++i]);
            no_decode = 1;
        }
    }
    if (lla_backend_open("cuda", &be) != LLA_OK) {
        printf("SKIP: %s\n", lla_last_error());
        return 77;
    }
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    printf("device: %s\ndriver API %d, runtime %d, lla %s\n", lla_backend_description(be), drv, rt,
           lla_version_string());
    if (!decode_only) bench_forward(quick, only_T);
    if (fwdbwd_only) {
        bench_fwd_bwd("pairs");
        bench_fwd_bwd("sweep");
        lla_backend_close(be);
        return 0;
    }
    if (!decode_only && !only_T && !quick) bench_fwd_bwd("pairs");
    if (!no_decode) bench_decode(decode_only ? 60 : 500);
    lla_backend_close(be);
    return 0;
}
