/*
 * mcu_decode.c - the MCU decode test and demo.
 *
 * Decodes every reference case of decode_ref.h token by token through the public API,
 * with the decoder state in a static buffer (no heap), and compares
 *   - every output with the float64 oracle's, and
 *   - the final state (values and positions) with the float64 definition,
 * by relative norm error ||x - ref|| / ||ref|| <= 1e-5 (float32).  It also checks the
 * fixed memory budget: a state sized for N levels refuses the token that needs N + 1.
 * Prints a summary (over semihosting on bare metal); the exit status is the verdict.
 * Plain C and stdio only, so the same file runs on hosts, under qemu-user and on MCUs.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lla.h"
#include "decode_ref.h"

#define TOLERANCE 1e-5
#define MAX_OUT (64 * 64) /* batch * heads * dv of one step */

/* The whole decoder state lives here: sized at build time, 8-byte aligned. */
static uint64_t state_memory[(DECODE_STATE_BYTES_MAX + 7u) / 8u];
static float step_out[MAX_OUT];

static int failures;
static void check(int ok, const char *what, const char *name);

#ifdef LLA_MEASURE_STACK
/* Bare metal only (set by meson for freestanding builds): before a decode call, paint
 * the free stack below the caller with a pattern; afterwards the lowest overwritten word
 * marks the deepest stack use.  This touches memory no C object owns, which is normal
 * on a bare-metal board and meaningless on a hosted OS, hence the guard. */
#define STACK_PAINT_BYTES 8192u
#define STACK_PATTERN 0xa5c3e1f7u
static uintptr_t paint_low, paint_high;
static size_t stack_max;

static __attribute__((noinline)) void stack_paint(void) {
    volatile uint32_t marker = 0;
    uintptr_t high = ((uintptr_t)&marker - 64u) & ~(uintptr_t)3u, w;
    paint_low = high - STACK_PAINT_BYTES;
    paint_high = high;
    for (w = paint_low; w < high; w += 4) *(volatile uint32_t *)w = STACK_PATTERN;
}

/* caller_frame: the address of a local of the function that calls lla_decode_step, so
 * the figure is an upper bound on the stack below that caller. */
static void stack_scan(const void *caller_frame) {
    uintptr_t w = paint_low;
    size_t used;
    while (w < paint_high && *(volatile uint32_t *)w == STACK_PATTERN) w += 4;
    if (w == paint_low) {
        check(0, "stack measurement: paint region overrun", "stack");
        return;
    }
    used = (size_t)((uintptr_t)caller_frame - w);
    if (used > stack_max) stack_max = used;
}
#define STACK_PAINT() stack_paint()
#define STACK_SCAN(frame) stack_scan(frame)
#else
#define STACK_PAINT() ((void)0)
#define STACK_SCAN(frame) ((void)(frame))
#endif

static void check(int ok, const char *what, const char *name) {
    if (!ok) {
        const char *detail = lla_last_error();
        ++failures;
        printf("FAIL %s: %s%s%s%s\n", name, what, detail[0] ? " (" : "", detail,
               detail[0] ? ")" : "");
    }
}

/* Inputs of token t of every sequence: [B, 1, heads, dim] views into [B, T, heads, dim]. */
static lla_tensor token_view(const float *base, const decode_case *c, int64_t t, int64_t heads,
                             int64_t dim) {
    lla_tensor x = lla_tensor_contiguous((void *)(uintptr_t)(base + t * heads * dim),
                                         LLA_DTYPE_F32, c->seqlen, heads, dim);
    return x;
}

static void token_inputs(const decode_case *c, int64_t t, lla_inputs *x) {
    x->q = token_view(c->q, c, t, c->qk_heads, c->dk);
    x->k = token_view(c->k, c, t, c->qk_heads, c->dk);
    x->v = token_view(c->v, c, t, c->heads, c->dv);
    x->g = token_view(c->g, c, t, c->heads, 1);
    x->lambda = token_view(c->lambda, c, t, c->heads, c->levels);
    x->beta = c->beta ? token_view(c->beta, c, t, c->heads, 1) : x->g; /* unused by Mamba-2 */
}

static double rel(double err2, double ref2) {
    if (err2 != err2) return INFINITY; /* NaN fails */
    if (ref2 == 0.0) return err2 == 0.0 ? 0.0 : INFINITY;
    return sqrt(err2 / ref2);
}

static void run_case(lla_backend *be, const decode_case *c) {
    lla_problem p;
    lla_state state;
    lla_status st;
    size_t bytes = 0, n, i;
    int64_t t, b, h, d;
    double out_err2 = 0.0, out_ref2 = 0.0, st_err2 = 0.0, st_ref2 = 0.0, out_rel, st_rel;
    const float *values;
    const int64_t *positions;
    int positions_ok = 1;

    lla_problem_init(&p, c->variant, c->hierarchy, c->batch, c->seqlen, c->heads, c->qk_heads,
                     c->dk, c->dv);
    p.scale = c->scale;
    p.levels = c->levels;
    if (c->batch * c->heads * c->dv > MAX_OUT) {
        check(0, "case too large for the output buffer", c->name);
        return;
    }
    st = lla_state_bytes(&p, LLA_DTYPE_F32, &bytes);
    check(st == LLA_OK && bytes == c->state_bytes, "lla_state_bytes equals the formula", c->name);
    if (st != LLA_OK || bytes > sizeof state_memory) return;
    st = lla_state_init(be, &p, LLA_DTYPE_F32, state_memory, sizeof state_memory, &state);
    check(st == LLA_OK, "lla_state_init", c->name);
    if (st != LLA_OK) return;

    for (t = 0; t < c->seqlen; ++t) {
        lla_inputs x;
        lla_tensor o = lla_tensor_contiguous(step_out, LLA_DTYPE_F32, 1, c->heads, c->dv);
        token_inputs(c, t, &x);
        STACK_PAINT();
        st = lla_decode_step(be, &p, &state, &x, o);
        STACK_SCAN(&x);
        if (st != LLA_OK) {
            check(0, "lla_decode_step", c->name);
            printf("     at token %lld: %s\n", (long long)t, lla_status_str(st));
            return;
        }
        for (b = 0; b < c->batch; ++b)
            for (h = 0; h < c->heads; ++h)
                for (d = 0; d < c->dv; ++d) {
                    double y = step_out[(b * c->heads + h) * c->dv + d];
                    double r = c->o_ref[((b * c->seqlen + t) * c->heads + h) * c->dv + d];
                    out_err2 += (y - r) * (y - r);
                    out_ref2 += r * r;
                }
    }

    positions = (const int64_t *)state.memory;
    for (b = 0; b < c->batch; ++b) positions_ok &= positions[b] == c->seqlen;
    values = (const float *)((const char *)state.memory + lla_state_values_offset(c->batch));
    n = (size_t)(c->batch * c->heads * c->levels * c->dk * c->dv);
    for (i = 0; i < n; ++i) {
        double e = (double)values[i] - (double)c->state_ref[i];
        st_err2 += e * e;
        st_ref2 += (double)c->state_ref[i] * (double)c->state_ref[i];
    }
    out_rel = rel(out_err2, out_ref2);
    st_rel = rel(st_err2, st_ref2);
    check(positions_ok, "final positions equal T", c->name);
    check(out_rel <= TOLERANCE, "outputs within 1e-5 of the float64 oracle", c->name);
    check(st_rel <= TOLERANCE, "final state within 1e-5 of the float64 definition", c->name);
    printf("%-14s B=%lld T=%lld H=%lld G=%lld K=%lld V=%lld NL=%lld state %lu B: "
           "out rel err %.3e, state rel err %.3e  %s\n",
           c->name, (long long)c->batch, (long long)c->seqlen, (long long)c->heads,
           (long long)c->qk_heads, (long long)c->dk, (long long)c->dv, (long long)c->levels,
           (unsigned long)bytes, out_rel, st_rel,
           out_rel <= TOLERANCE && st_rel <= TOLERANCE && positions_ok ? "ok" : "FAILED");
}

/* A state with NL levels holds 2^(NL-1) tokens; the next one must be refused with
 * LLA_ERR_STATE and leave the state byte-for-byte unchanged. */
static void run_capacity(lla_backend *be, const decode_case *c) {
    static uint64_t before[(DECODE_STATE_BYTES_MAX + 7u) / 8u];
    lla_problem p;
    lla_state state;
    lla_status st;
    size_t bytes = 0;
    int64_t t, capacity;
    lla_inputs x;
    lla_tensor o = lla_tensor_contiguous(step_out, LLA_DTYPE_F32, 1, c->heads, c->dv);

    lla_problem_init(&p, c->variant, c->hierarchy, c->batch, c->seqlen, c->heads, c->qk_heads,
                     c->dk, c->dv);
    p.scale = c->scale;
    p.levels = 3; /* lla_num_levels(4) == 3: room for tokens 0..3 */
    capacity = 4;
    st = lla_state_bytes(&p, LLA_DTYPE_F32, &bytes);
    if (st != LLA_OK || bytes > sizeof state_memory) {
        check(0, "capacity: state size", c->name);
        return;
    }
    st = lla_state_init(be, &p, LLA_DTYPE_F32, state_memory, bytes, &state);
    check(st == LLA_OK, "capacity: lla_state_init", c->name);
    for (t = 0; st == LLA_OK && t < capacity; ++t) {
        token_inputs(c, t, &x);
        st = lla_decode_step(be, &p, &state, &x, o);
        check(st == LLA_OK, "capacity: tokens within the budget decode", c->name);
    }
    if (st != LLA_OK) return;
    memcpy(before, state_memory, bytes);
    token_inputs(c, capacity, &x);
    STACK_PAINT(); /* the refusal formats an error message: the deepest path */
    st = lla_decode_step(be, &p, &state, &x, o);
    STACK_SCAN(&x);
    check(st == LLA_ERR_STATE, "capacity: token past the budget gives LLA_ERR_STATE", c->name);
    check(memcmp(before, state_memory, bytes) == 0, "capacity: refused step changes nothing",
          c->name);
    printf("%-14s levels 3: %lld tokens decoded, token %lld refused with %s\n", c->name,
           (long long)capacity, (long long)capacity, lla_status_str(st));
}

int main(void) {
    lla_backend *be = NULL;
    lla_status st;
    int i;

    printf("lla %s MCU decode test: %d cases, tolerance %.0e\n", lla_version_string(),
           DECODE_CASE_COUNT, TOLERANCE);
    /* The backend is chosen by name; an unknown name is an error, never a fallback. */
    st = lla_backend_open("no-such-backend", &be);
    check(st == LLA_ERR_BACKEND && be == NULL, "unknown backend name is refused", "open");
    st = lla_backend_open("scalar", &be);
    check(st == LLA_OK, "open the scalar backend by name", "open");
    if (st != LLA_OK) return 1;

    for (i = 0; i < DECODE_CASE_COUNT; ++i) run_case(be, &decode_cases[i]);
    run_capacity(be, &decode_cases[0]);
    lla_backend_close(be);
#ifdef LLA_MEASURE_STACK
    printf("stack used by lla_decode_step (deepest call, incl. errors): <= %lu bytes\n",
           (unsigned long)stack_max);
#endif

    printf("mcu-decode: %s (%d failure%s)\n", failures ? "FAILED" : "PASSED", failures,
           failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
