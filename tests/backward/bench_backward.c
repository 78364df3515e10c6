/* bench_backward.c - times the scalar forward and backward on one shape (not a test).
 * usage: bench_backward [mamba2|gdn] [T] [K] [V] [heads] [chunk] [f32|f64] [reps] */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bwutil.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: less sensitive to a busy machine */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    lla_variant variant = argc > 1 && strcmp(argv[1], "gdn") == 0 ? LLA_VARIANT_GDN : LLA_VARIANT_MAMBA2;
    int64_t T = argc > 2 ? atoll(argv[2]) : 2048, K = argc > 3 ? atoll(argv[3]) : 64;
    int64_t V = argc > 4 ? atoll(argv[4]) : 64, H = argc > 5 ? atoll(argv[5]) : 2;
    int64_t C = argc > 6 ? atoll(argv[6]) : 64;
    lla_dtype dt = argc > 7 && strcmp(argv[7], "f64") == 0 ? LLA_DTYPE_F64 : LLA_DTYPE_F32;
    int reps = argc > 8 ? atoi(argv[8]) : 3, r;
    lla_backend *be;
    lla_problem p;
    test_data *td;
    lla_tensor o, d_o;
    lla_grads g;
    size_t fw_bytes, bw_bytes;
    void *fw, *bw;
    double best_f = 1e30, best_b = 1e30;
    if (lla_backend_open("scalar", &be) != LLA_OK) return 1;
    lla_problem_init(&p, variant, LLA_HIERARCHY_WEAK, 1, T, H, 1, K, V);
    p.chunk = C;
    td = td_create(&p, NULL, dt, 0, 1);
    o = td_tensor(td, H, V, dt);
    d_o = bw_random_do(td, dt, 2);
    g = bw_grads(td, dt);
    if (lla_forward_workspace(be, &p, dt, &fw_bytes) || lla_backward_workspace(be, &p, dt, &bw_bytes))
        return 1;
    fw = td_alloc(td, fw_bytes, 0);
    bw = td_alloc(td, bw_bytes, 0);
    for (r = 0; r < reps; ++r) {
        double t0 = now(), t1, t2;
        if (lla_forward(be, &p, &td->x, o, NULL, NULL, fw, fw_bytes) != LLA_OK) return 1;
        t1 = now();
        if (lla_backward(be, &p, &td->x, d_o, NULL, NULL, &g, NULL, bw, bw_bytes) != LLA_OK) return 1;
        t2 = now();
        if (t1 - t0 < best_f) best_f = t1 - t0;
        if (t2 - t1 < best_b) best_b = t2 - t1;
    }
    printf("%s weak %s T %lld H %lld K %lld V %lld NL %lld chunk %lld: forward %.1f ms, backward %.1f "
           "ms, ratio %.2f; workspace forward %zu B, backward %zu B\n",
           variant == LLA_VARIANT_GDN ? "gdn" : "mamba2", lla_dtype_name(dt), (long long)T,
           (long long)H, (long long)K, (long long)V, (long long)p.levels, (long long)C,
           best_f * 1e3, best_b * 1e3, best_b / best_f, fw_bytes, bw_bytes);
    td_free(td);
    lla_backend_close(be);
    return 0;
}
