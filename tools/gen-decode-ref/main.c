/*
 * gen-decode-ref - writes the C header of reference data for the MCU decode test
 * (tests/embedded).  Runs on the build machine at build time:
 *
 *     gen-decode-ref OUT.h
 *
 * For each case it draws float32 inputs from a fixed-seed splitmix64 stream, then computes
 * in float64 on the host
 *   - the outputs with lla_oracle_forward (the dense O(T^2) definition), and
 *   - the final decoder state with ref_final_state (the state's definition, source by source).
 * Neither shares code with the decoder under test.  References are stored rounded to
 * float32 (relative error <= 2^-24 per element, far below the test's 1e-5 tolerance) so
 * the header fits a microcontroller's flash.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lla.h"
#include "ref_state.h"

typedef struct case_spec {
    const char *name;
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t batch, seqlen, heads, qk_heads, dk, dv;
    double g_lo, g_hi; /* log gates drawn uniformly in [g_lo, g_hi] */
    uint64_t seed;
} case_spec;

/* Small problems that still reach ceil(log2 T) + 1 levels and exercise grouped q/k,
 * K != V, batch > 1 and both hierarchies.  Gates stay close to 0 so far levels matter. */
static const case_spec cases[] = {
    {"mamba2_weak", LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, 1, 300, 2, 1, 16, 16, -0.02, -0.0005,
     0x6c6c61u},
    {"gdn_weak", LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, 1, 200, 2, 2, 16, 16, -0.05, -0.001,
     0x6764u},
    {"mamba2_strong", LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, 2, 133, 2, 2, 16, 8, -0.03, -0.001,
     0x7374u},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static uint64_t rng_state;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uniform(double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng_next() >> 11) * (1.0 / 9007199254740992.0));
}

/* n rows of `width` floats, uniform in [lo, hi]; unit-norm rows if unit (GDN q and k, as
 * the models feed them). */
static void fill(float *x, size_t rows, int64_t width, double lo, double hi, int unit) {
    size_t r;
    int64_t i;
    for (r = 0; r < rows; ++r) {
        double row[64], norm = 0.0;
        for (i = 0; i < width; ++i) {
            row[i] = uniform(lo, hi);
            norm += row[i] * row[i];
        }
        norm = unit && norm > 0 ? sqrt(norm) : 1.0;
        for (i = 0; i < width; ++i) x[r * (size_t)width + (size_t)i] = (float)(row[i] / norm);
    }
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "gen-decode-ref: out of memory\n");
        exit(1);
    }
    return p;
}

static void put_floats(FILE *f, const char *prefix, const char *name, const float *x, size_t n) {
    size_t i;
    fprintf(f, "static const float %s_%s[%zu] = {", prefix, name, n);
    for (i = 0; i < n; ++i) fprintf(f, "%s%.8ef,", i % 5 ? " " : "\n    ", (double)x[i]);
    fprintf(f, "\n};\n");
}

static void put_rounded(FILE *f, const char *prefix, const char *name, const double *x, size_t n) {
    float *r = (float *)xcalloc(n, sizeof *r);
    size_t i;
    for (i = 0; i < n; ++i) r[i] = (float)x[i];
    put_floats(f, prefix, name, r, n);
    free(r);
}

static int fail(const char *what, lla_status st) {
    fprintf(stderr, "gen-decode-ref: %s: %s: %s\n", what, lla_status_str(st), lla_last_error());
    return 1;
}

/* One case: inputs, oracle outputs and reference state written to f. */
static int emit_case(FILE *f, const case_spec *c, size_t *state_bytes) {
    lla_problem p;
    lla_inputs x;
    lla_tensor o;
    lla_status st;
    size_t ws_bytes, qk_n, v_n, gate_n, lam_n, state_n;
    float *q, *k, *v, *g, *lam, *beta;
    double *out, *state, *ws, scratch[64];
    const char *id = c->name;

    lla_problem_init(&p, c->variant, c->hierarchy, c->batch, c->seqlen, c->heads, c->qk_heads,
                     c->dk, c->dv);
    p.scale = 1.0 / sqrt((double)c->dk);
    if (c->dk > 64 || c->dv > 64) return fail("dims over 64", LLA_ERR_SHAPE);
    qk_n = (size_t)(p.batch * p.seqlen * p.qk_heads * p.dk);
    v_n = (size_t)(p.batch * p.seqlen * p.heads * p.dv);
    gate_n = (size_t)(p.batch * p.seqlen * p.heads);
    lam_n = gate_n * (size_t)p.levels;
    state_n = (size_t)(p.batch * p.heads * p.levels * p.dk * p.dv);
    q = (float *)xcalloc(qk_n, sizeof *q);
    k = (float *)xcalloc(qk_n, sizeof *k);
    v = (float *)xcalloc(v_n, sizeof *v);
    g = (float *)xcalloc(gate_n, sizeof *g);
    lam = (float *)xcalloc(lam_n, sizeof *lam);
    beta = (float *)xcalloc(gate_n, sizeof *beta);
    out = (double *)xcalloc(v_n, sizeof *out);
    state = (double *)xcalloc(state_n, sizeof *state);

    rng_state = c->seed;
    fill(q, qk_n / (size_t)p.dk, p.dk, -1.0, 1.0, c->variant == LLA_VARIANT_GDN);
    fill(k, qk_n / (size_t)p.dk, p.dk, -1.0, 1.0, c->variant == LLA_VARIANT_GDN);
    fill(v, v_n / (size_t)p.dv, p.dv, -1.0, 1.0, 0);
    fill(g, gate_n, 1, c->g_lo, c->g_hi, 0);
    fill(lam, gate_n, p.levels, 0.5, 1.5, 0);
    fill(beta, gate_n, 1, 0.1, 0.9, 0);

    x.q = lla_tensor_contiguous(q, LLA_DTYPE_F32, p.seqlen, p.qk_heads, p.dk);
    x.k = lla_tensor_contiguous(k, LLA_DTYPE_F32, p.seqlen, p.qk_heads, p.dk);
    x.v = lla_tensor_contiguous(v, LLA_DTYPE_F32, p.seqlen, p.heads, p.dv);
    x.g = lla_tensor_contiguous(g, LLA_DTYPE_F32, p.seqlen, p.heads, 1);
    x.lambda = lla_tensor_contiguous(lam, LLA_DTYPE_F32, p.seqlen, p.heads, p.levels);
    x.beta = lla_tensor_contiguous(beta, LLA_DTYPE_F32, p.seqlen, p.heads, 1);
    o = lla_tensor_contiguous(out, LLA_DTYPE_F64, p.seqlen, p.heads, p.dv);

    if ((st = lla_oracle_workspace(&p, &ws_bytes)) != LLA_OK) return fail(id, st);
    ws = (double *)xcalloc(ws_bytes, 1);
    if ((st = lla_oracle_forward(&p, &x, o, ws, ws_bytes)) != LLA_OK) return fail(id, st);
    if (ref_final_state(&p, &x, state, scratch) != 0) return fail(id, LLA_ERR_UNSUPPORTED);

    /* The state formula of docs/embedded.md, written out rather than asked of the library
     * (the MCU test checks lla_state_bytes against it). */
    *state_bytes = ((size_t)p.batch * 8u + 63u) / 64u * 64u + state_n * 4u;

    fprintf(f, "\n/* ---- %s: %s %s, B=%lld T=%lld H=%lld G=%lld K=%lld V=%lld NL=%lld */\n", id,
            c->variant == LLA_VARIANT_GDN ? "gdn" : "mamba2",
            c->hierarchy == LLA_HIERARCHY_WEAK ? "weak" : "strong", (long long)p.batch,
            (long long)p.seqlen, (long long)p.heads, (long long)p.qk_heads, (long long)p.dk,
            (long long)p.dv, (long long)p.levels);
    put_floats(f, id, "q", q, qk_n);
    put_floats(f, id, "k", k, qk_n);
    put_floats(f, id, "v", v, v_n);
    put_floats(f, id, "g", g, gate_n);
    put_floats(f, id, "lambda", lam, lam_n);
    if (c->variant == LLA_VARIANT_GDN) put_floats(f, id, "beta", beta, gate_n);
    put_rounded(f, id, "o_ref", out, v_n);
    put_rounded(f, id, "state_ref", state, state_n);

    free(q); free(k); free(v); free(g); free(lam); free(beta);
    free(out); free(state); free(ws);
    return 0;
}

int main(int argc, char **argv) {
    FILE *f;
    int i;
    size_t bytes[NCASES], max_bytes = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: gen-decode-ref OUT.h\n");
        return 2;
    }
    f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fprintf(f, "/* Generated at build time by tools/gen-decode-ref; do not edit.\n"
               " * Inputs: float32 from a fixed seed.  o_ref: lla_oracle_forward (float64) and\n"
               " * state_ref: ref_final_state (float64 definition), both rounded to float32. */\n"
               "#ifndef LLA_DECODE_REF_H\n#define LLA_DECODE_REF_H\n\n"
               "#include \"decode_case.h\"\n");
    for (i = 0; i < NCASES; ++i)
        if (emit_case(f, &cases[i], &bytes[i]) != 0) {
            fclose(f);
            remove(argv[1]);
            return 1;
        }
    fprintf(f, "\nstatic const decode_case decode_cases[%d] = {\n", NCASES);
    for (i = 0; i < NCASES; ++i) {
        const case_spec *c = &cases[i];
        const char *id = c->name;
        if (bytes[i] > max_bytes) max_bytes = bytes[i];
        fprintf(f,
                "    {\"%s\", %s, %s, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %.17g, %zuu,\n"
                "     %s_q, %s_k, %s_v, %s_g, %s_lambda, %s%s, %s_o_ref, %s_state_ref},\n",
                id, c->variant == LLA_VARIANT_GDN ? "LLA_VARIANT_GDN" : "LLA_VARIANT_MAMBA2",
                c->hierarchy == LLA_HIERARCHY_WEAK ? "LLA_HIERARCHY_WEAK" : "LLA_HIERARCHY_STRONG",
                (long long)c->batch, (long long)c->seqlen, (long long)c->heads,
                (long long)c->qk_heads, (long long)c->dk, (long long)c->dv,
                (long long)lla_num_levels(c->seqlen), 1.0 / sqrt((double)c->dk), bytes[i], id, id,
                id, id, id, c->variant == LLA_VARIANT_GDN ? id : "NULL",
                c->variant == LLA_VARIANT_GDN ? "_beta" : "", id, id);
    }
    fprintf(f, "};\n#define DECODE_CASE_COUNT %d\n#define DECODE_STATE_BYTES_MAX %zuu\n\n#endif\n",
            NCASES, max_bytes);
    if (fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
