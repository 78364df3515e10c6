/* golden.h - reader for the ground-truth vectors in ../shared/golden (format in its README). */
#ifndef LLA_TEST_GOLDEN_H
#define LLA_TEST_GOLDEN_H

#include <stdint.h>

#include "lla.h"

typedef struct golden_tensor {
    char name[32];
    int rank;
    int64_t shape[6];
    int64_t count;
    double *data; /* row-major */
} golden_tensor;

typedef struct golden_case {
    char name[128];
    lla_variant variant;
    lla_hierarchy hierarchy;
    int64_t B, T, H, K, V, NL;
    int ntensors;
    golden_tensor tensors[24];
} golden_case;

/* Directory of the golden files: $LLA_GOLDEN_DIR, else $LLA_GOLDEN_DEFAULT (set by meson
 * test), else ../shared/golden. */
const char *golden_dir(void);
/* Lists the *.txt files of dir, sorted; returns how many (<= max), names malloc'ed. */
int golden_list(const char *dir, char **names, int max);
/* Parses one file; NULL with a message on stderr on any format error. */
golden_case *golden_load(const char *path);
void golden_free(golden_case *c);
/* Tensor by name, or NULL. */
const golden_tensor *golden_get(const golden_case *c, const char *name);

#endif
