/*
 * lla-time - times lla_forward or lla_backward on one backend (host or device memory
 * alike): random inputs in backend memory (lla_malloc + lla_upload), a warm-up call (for
 * OpenCL it also pays the kernel compilation), then --reps timed calls, each followed by
 * lla_synchronize.  Prints the backend, the 1-minute load average (Linux) and the min /
 * median milliseconds, wall and process CPU time.  A stand-in until lla-bench exists;
 * numbers are benchmarks, never test assertions.
 *
 * usage: lla-time [--op forward|backward] [--backend SPEC] [--variant mamba2|gdn]
 *                 [--hierarchy weak|strong] [--B n] [--T n] [--H n] [--G n] [--K n] [--V n]
 *                 [--chunk n] [--reps n] [--threads n]
 * defaults: forward, the backend from LLA_BACKEND, mamba2 weak, B=1 T=16384 H=8 G=1 K=128
 * V=64, chunk 0 (backend default), 5 reps.
 */
#define _POSIX_C_SOURCE 199309L

#include <math.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/resource.h>
#define HAVE_RUSAGE 1
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lla.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* splitmix64 */
static float uniform(unsigned long long *s, float lo, float hi) {
    unsigned long long z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((double)(z >> 11) * (1.0 / 9007199254740992.0));
}

/* A contiguous float32 [B, T, heads, dim] tensor in backend memory, uniform in [lo, hi]. */
static int make_tensor(lla_backend *be, int64_t B, int64_t T, int64_t heads, int64_t dim,
                       float lo, float hi, unsigned long long *seed, lla_tensor *out) {
    size_t n = (size_t)(B * T * heads * dim), i;
    float *host = (float *)malloc(n * sizeof *host);
    void *mem = NULL;
    if (!host) return 0;
    for (i = 0; i < n; ++i) host[i] = uniform(seed, lo, hi);
    if (lla_malloc(be, n * sizeof *host, &mem) != LLA_OK ||
        lla_upload(be, mem, host, n * sizeof *host) != LLA_OK) {
        free(host);
        return 0;
    }
    free(host);
    *out = lla_tensor_contiguous(mem, LLA_DTYPE_F32, T, heads, dim);
    return 1;
}

/* CPU seconds of the whole process (all threads, including a runtime's workers): less
 * sensitive than wall time to other jobs on a shared machine; -1 where unknown. */
static double cpu_s(void) {
#ifdef HAVE_RUSAGE
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
               (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
#endif
    return -1.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double load_average(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

int main(int argc, char **argv) {
    const char *spec = NULL;
    int64_t B = 1, T = 16384, H = 8, G = 1, K = 128, V = 64, chunk = 0;
    int reps = 5, threads = 0, backward = 0, i;
    lla_variant variant = LLA_VARIANT_MAMBA2;
    lla_hierarchy hierarchy = LLA_HIERARCHY_WEAK;
    lla_backend *be;
    lla_problem p;
    lla_inputs x;
    lla_tensor o, d_o;
    lla_grads gr;
    size_t ws_bytes = 0;
    void *ws = NULL;
    double *ms, *cpu_ms;
    unsigned long long seed = 12345;
    lla_status st;

    for (i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto usage;
        if (!strcmp(a, "--backend")) spec = v;
        else if (!strcmp(a, "--op") && !strcmp(v, "forward")) backward = 0;
        else if (!strcmp(a, "--op") && !strcmp(v, "backward")) backward = 1;
        else if (!strcmp(a, "--variant") && !strcmp(v, "mamba2")) variant = LLA_VARIANT_MAMBA2;
        else if (!strcmp(a, "--variant") && !strcmp(v, "gdn")) variant = LLA_VARIANT_GDN;
        else if (!strcmp(a, "--hierarchy") && !strcmp(v, "weak")) hierarchy = LLA_HIERARCHY_WEAK;
        else if (!strcmp(a, "--hierarchy") && !strcmp(v, "strong")) hierarchy = LLA_HIERARCHY_STRONG;
        else if (!strcmp(a, "--B")) B = strtol(v, NULL, 10);
        else if (!strcmp(a, "--T")) T = strtol(v, NULL, 10);
        else if (!strcmp(a, "--H")) H = strtol(v, NULL, 10);
        else if (!strcmp(a, "--G")) G = strtol(v, NULL, 10);
        else if (!strcmp(a, "--K")) K = strtol(v, NULL, 10);
        else if (!strcmp(a, "--V")) V = strtol(v, NULL, 10);
        else if (!strcmp(a, "--chunk")) chunk = strtol(v, NULL, 10);
        else if (!strcmp(a, "--reps")) reps = (int)strtol(v, NULL, 10);
        else if (!strcmp(a, "--threads")) threads = (int)strtol(v, NULL, 10);
        else goto usage;
        ++i;
    }
    if (reps < 1 || reps > 1000) goto usage;

    if ((st = lla_backend_open(spec, &be)) != LLA_OK) {
        fprintf(stderr, "lla-time: %s: %s\n", lla_status_str(st), lla_last_error());
        return 1;
    }
    if (threads) lla_backend_set_threads(be, threads);
    lla_problem_init(&p, variant, hierarchy, B, T, H, G, K, V);
    p.chunk = chunk;
    p.scale = 1.0 / sqrt((double)K);
    if ((st = lla_problem_check(&p)) != LLA_OK ||
        (st = lla_backend_supports(be, &p, LLA_DTYPE_F32,
                                   backward ? LLA_OP_BACKWARD : LLA_OP_FORWARD)) != LLA_OK) {
        fprintf(stderr, "lla-time: %s: %s\n", lla_status_str(st), lla_last_error());
        return 1;
    }
    if (!make_tensor(be, B, T, G, K, -0.2f, 0.2f, &seed, &x.q) ||
        !make_tensor(be, B, T, G, K, -0.2f, 0.2f, &seed, &x.k) ||
        !make_tensor(be, B, T, H, V, -1.0f, 1.0f, &seed, &x.v) ||
        !make_tensor(be, B, T, H, 1, -0.1f, -0.001f, &seed, &x.g) ||
        !make_tensor(be, B, T, H, p.levels, 0.5f, 1.0f, &seed, &x.lambda) ||
        !make_tensor(be, B, T, H, 1, 0.1f, 0.9f, &seed, &x.beta) ||
        !make_tensor(be, B, T, H, V, 0.0f, 0.0f, &seed, &o) ||
        (backward && (!make_tensor(be, B, T, H, V, -1.0f, 1.0f, &seed, &d_o) ||
                      !make_tensor(be, B, T, G, K, 0.0f, 0.0f, &seed, &gr.dq) ||
                      !make_tensor(be, B, T, G, K, 0.0f, 0.0f, &seed, &gr.dk) ||
                      !make_tensor(be, B, T, H, V, 0.0f, 0.0f, &seed, &gr.dv) ||
                      !make_tensor(be, B, T, H, 1, 0.0f, 0.0f, &seed, &gr.dg) ||
                      !make_tensor(be, B, T, H, p.levels, 0.0f, 0.0f, &seed, &gr.dlambda) ||
                      !make_tensor(be, B, T, H, 1, 0.0f, 0.0f, &seed, &gr.dbeta)))) {
        fprintf(stderr, "lla-time: allocating the tensors: %s\n", lla_last_error());
        return 1;
    }
    if ((st = backward ? lla_backward_workspace(be, &p, LLA_DTYPE_F32, &ws_bytes)
                       : lla_forward_workspace(be, &p, LLA_DTYPE_F32, &ws_bytes)) != LLA_OK ||
        (ws_bytes && (st = lla_malloc(be, ws_bytes, &ws)) != LLA_OK)) {
        fprintf(stderr, "lla-time: workspace: %s\n", lla_last_error());
        return 1;
    }
    ms = (double *)malloc((size_t)reps * sizeof *ms);
    cpu_ms = (double *)malloc((size_t)reps * sizeof *cpu_ms);
    if (!ms || !cpu_ms) return 1;
    for (i = -1; i < reps; ++i) { /* i = -1: warm-up */
        double t0 = now_s(), c0 = cpu_s();
        if ((st = backward ? lla_backward(be, &p, &x, d_o, NULL, NULL, &gr, NULL, ws, ws_bytes)
                           : lla_forward(be, &p, &x, o, NULL, NULL, ws, ws_bytes)) != LLA_OK ||
            (st = lla_synchronize(be)) != LLA_OK) {
            fprintf(stderr, "lla-time: %s: %s: %s\n", backward ? "backward" : "forward",
                    lla_status_str(st), lla_last_error());
            return 1;
        }
        if (i >= 0) {
            ms[i] = 1e3 * (now_s() - t0);
            cpu_ms[i] = 1e3 * (cpu_s() - c0);
        }
        else printf("warm-up (includes one-time setup such as kernel compilation): %.1f ms\n",
                    1e3 * (now_s() - t0));
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
    qsort(cpu_ms, (size_t)reps, sizeof *cpu_ms, cmp_double);
    printf("backend   %s (%s)\n", lla_backend_name(be), lla_backend_description(be));
    printf("problem   %s %s B=%lld T=%lld H=%lld G=%lld K=%lld V=%lld levels=%lld chunk=%lld f32\n",
           variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
           hierarchy == LLA_HIERARCHY_WEAK ? "weak" : "strong", (long long)B, (long long)T,
           (long long)H, (long long)G, (long long)K, (long long)V, (long long)p.levels,
           (long long)chunk);
    printf("load      %.2f (1-minute load average before the last run)\n", load_average());
    printf("%-9s min %.2f ms, median %.2f ms over %d runs (wall)\n",
           backward ? "backward" : "forward", ms[0], ms[reps / 2], reps);
    printf("cpu       min %.2f ms, median %.2f ms (process CPU time, all threads)\n", cpu_ms[0],
           cpu_ms[reps / 2]);
    free(ms);
    free(cpu_ms);
    lla_free(be, ws);
    lla_free(be, x.q.data);
    lla_free(be, x.k.data);
    lla_free(be, x.v.data);
    lla_free(be, x.g.data);
    lla_free(be, x.lambda.data);
    lla_free(be, x.beta.data);
    lla_free(be, o.data);
    if (backward) {
        lla_free(be, d_o.data);
        lla_free(be, gr.dq.data);
        lla_free(be, gr.dk.data);
        lla_free(be, gr.dv.data);
        lla_free(be, gr.dg.data);
        lla_free(be, gr.dlambda.data);
        lla_free(be, gr.dbeta.data);
    }
    lla_backend_close(be);
    return 0;
usage:
    fprintf(stderr, "usage: lla-time [--op forward|backward] [--backend SPEC] "
                    "[--variant mamba2|gdn] [--hierarchy weak|strong] [--B n] [--T n] [--H n] [--G n] [--K n] [--V n] "
                    "[--chunk n] [--reps n] [--threads n]\n");
    return 2;
}
