/* golden.c - strict parser of the golden text format (see golden.h). */
#define _POSIX_C_SOURCE 200809L
#include "golden.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *golden_dir(void) {
    const char *env = getenv("LLA_GOLDEN_DIR");
    if (env && env[0]) return env;
    env = getenv("LLA_GOLDEN_DEFAULT"); /* set by meson to <source>/../shared/golden */
    return env && env[0] ? env : "../shared/golden";
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int golden_list(const char *dir, char **names, int max) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return 0;
    while ((e = readdir(d)) != NULL && n < max) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".txt") == 0) {
            names[n] = (char *)malloc(len + 1);
            if (!names[n]) break;
            memcpy(names[n], e->d_name, len + 1);
            ++n;
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    return n;
}

void golden_free(golden_case *c) {
    int i;
    if (!c) return;
    for (i = 0; i < c->ntensors; ++i) free(c->tensors[i].data);
    free(c);
}

const golden_tensor *golden_get(const golden_case *c, const char *name) {
    int i;
    for (i = 0; i < c->ntensors; ++i)
        if (strcmp(c->tensors[i].name, name) == 0) return &c->tensors[i];
    return NULL;
}

static golden_case *fail(FILE *f, golden_case *c, const char *path, const char *what) {
    fprintf(stderr, "golden: %s: %s\n", path, what);
    if (f) fclose(f);
    golden_free(c);
    return NULL;
}

golden_case *golden_load(const char *path) {
    FILE *f = fopen(path, "r");
    golden_case *c;
    char word[64];
    int version = 0, have_dims = 0;
    if (!f) return fail(NULL, NULL, path, "cannot open");
    c = (golden_case *)calloc(1, sizeof *c);
    if (!c) return fail(f, NULL, path, "out of memory");
    if (fscanf(f, "%63s %d", word, &version) != 2 || strcmp(word, "loglinear-golden") != 0 ||
        version != 1)
        return fail(f, c, path, "bad header (want 'loglinear-golden 1')");
    while (fscanf(f, "%63s", word) == 1) {
        if (word[0] == '#') { /* comment: skip the rest of the line */
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n') {}
        } else if (strcmp(word, "name") == 0) {
            if (fscanf(f, "%127s", c->name) != 1) return fail(f, c, path, "bad name");
        } else if (strcmp(word, "variant") == 0) {
            if (fscanf(f, "%63s", word) != 1) return fail(f, c, path, "bad variant");
            if (strcmp(word, "mamba2") == 0) c->variant = LLA_VARIANT_MAMBA2;
            else if (strcmp(word, "gdn") == 0) c->variant = LLA_VARIANT_GDN;
            else return fail(f, c, path, "unknown variant");
        } else if (strcmp(word, "htype") == 0) {
            if (fscanf(f, "%63s", word) != 1) return fail(f, c, path, "bad htype");
            if (strcmp(word, "weak") == 0) c->hierarchy = LLA_HIERARCHY_WEAK;
            else if (strcmp(word, "strong") == 0) c->hierarchy = LLA_HIERARCHY_STRONG;
            else return fail(f, c, path, "unknown htype");
        } else if (strcmp(word, "dims") == 0) {
            long long B, T, H, K, V, NL;
            if (fscanf(f, " B %lld T %lld H %lld K %lld V %lld NL %lld", &B, &T, &H, &K, &V,
                       &NL) != 6)
                return fail(f, c, path, "bad dims line");
            c->B = B; c->T = T; c->H = H; c->K = K; c->V = V; c->NL = NL;
            have_dims = 1;
        } else if (strcmp(word, "tensor") == 0) {
            golden_tensor *t;
            int i;
            int64_t j;
            if (c->ntensors >= (int)(sizeof c->tensors / sizeof c->tensors[0]))
                return fail(f, c, path, "too many tensors");
            t = &c->tensors[c->ntensors];
            if (fscanf(f, "%31s %d", t->name, &t->rank) != 2 || t->rank < 1 || t->rank > 6)
                return fail(f, c, path, "bad tensor header");
            t->count = 1;
            for (i = 0; i < t->rank; ++i) {
                long long d;
                if (fscanf(f, "%lld", &d) != 1 || d < 1 || d > (1 << 24))
                    return fail(f, c, path, "bad tensor shape");
                t->shape[i] = d;
                t->count *= d;
                if (t->count > (1 << 26)) return fail(f, c, path, "tensor too large");
            }
            t->data = (double *)malloc((size_t)t->count * sizeof(double));
            if (!t->data) return fail(f, c, path, "out of memory");
            ++c->ntensors;
            for (j = 0; j < t->count; ++j)
                if (fscanf(f, "%lf", &t->data[j]) != 1)
                    return fail(f, c, path, "tensor data ends early");
        } else {
            return fail(f, c, path, "unknown keyword");
        }
    }
    fclose(f);
    if (!have_dims) return fail(NULL, c, path, "no dims line");
    return c;
}
