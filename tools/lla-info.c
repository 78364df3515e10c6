/*
 * lla-info - what this build of lla can do here: version, backends compiled in and
 * usable, their devices, which backend LLA_BACKEND / auto picks and why, and what the
 * chosen backend supports.
 *
 * Exit status: 0, or 1 when the selected backend (LLA_BACKEND or auto) cannot be opened.
 */
#include <stdio.h>
#include <string.h>

#include "lla.h"

/* What the backend answers for a small representative problem of each kind. */
static void print_support(lla_backend *b) {
    static const struct { lla_variant v; lla_hierarchy h; const char *name; } kinds[] = {
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_WEAK, "mamba2 weak"},
        {LLA_VARIANT_MAMBA2, LLA_HIERARCHY_STRONG, "mamba2 strong"},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_WEAK, "gdn weak"},
        {LLA_VARIANT_GDN, LLA_HIERARCHY_STRONG, "gdn strong"},
    };
    static const lla_dtype dtypes[] = {LLA_DTYPE_F32, LLA_DTYPE_F64, LLA_DTYPE_BF16, LLA_DTYPE_F16};
    static const struct { lla_op op; const char *name; } ops[] = {
        {LLA_OP_FORWARD, "forward"}, {LLA_OP_DECODE, "decode"}, {LLA_OP_BACKWARD, "backward"}};
    size_t k, d, o;
    printf("  %-14s", "support");
    for (d = 0; d < sizeof dtypes / sizeof dtypes[0]; ++d)
        printf(" %-26s", lla_dtype_name(dtypes[d]));
    printf("\n");
    for (k = 0; k < sizeof kinds / sizeof kinds[0]; ++k) {
        lla_problem p;
        lla_problem_init(&p, kinds[k].v, kinds[k].h, 2, 100, 4, 2, 16, 8);
        printf("  %-14s", kinds[k].name);
        for (d = 0; d < sizeof dtypes / sizeof dtypes[0]; ++d) {
            char cell[64] = "";
            for (o = 0; o < sizeof ops / sizeof ops[0]; ++o) {
                if (lla_backend_supports(b, &p, dtypes[d], ops[o].op) == LLA_OK) {
                    if (cell[0]) strcat(cell, ",");
                    strcat(cell, ops[o].name);
                }
            }
            printf(" %-26s", cell[0] ? cell : "-");
        }
        printf("\n");
    }
}

int main(int argc, char **argv) {
    int n = lla_backend_count(), i, d;
    char buf[1024];
    lla_backend *b = NULL;
    lla_status st;
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: lla-info   (no arguments; honours LLA_BACKEND and LLA_LOG)\n");
        return 2;
    }
    printf("lla %s (backend table API %d)\n\n", lla_version_string(), LLA_API_VERSION);
    printf("backends compiled in, best first:\n");
    for (i = 0; i < n; ++i) {
        lla_backend_info info;
        if (lla_backend_info_get(i, &info) != LLA_OK) {
            printf("  #%d: %s\n", i, lla_last_error());
            continue;
        }
        printf("  %-8s %-10s %s\n", info.name, info.usable ? "usable" : "not usable", info.reason);
        for (d = 0; info.usable && d < info.device_count; ++d) {
            if (lla_backend_device_name(i, d, buf, sizeof buf) == LLA_OK)
                printf("           device %s:%d  %s\n", info.name, d, buf);
            else
                printf("           device %s:%d  (name unavailable: %s)\n", info.name, d,
                       lla_last_error());
        }
    }
    printf("\nselection: ");
    st = lla_backend_auto_choice(buf, sizeof buf);
    printf("%s\n", buf);
    if (st != LLA_OK) {
        printf("error: %s: %s\n", lla_status_str(st), lla_last_error());
        return 1;
    }
    st = lla_backend_open(NULL, &b);
    if (st != LLA_OK) {
        printf("error: cannot open the selected backend: %s: %s\n", lla_status_str(st),
               lla_last_error());
        return 1;
    }
    printf("opened:    %s: %s\n", lla_backend_name(b), lla_backend_description(b));
    printf("memory:    %s\n",
           lla_backend_memory_kind(b) == LLA_MEMORY_HOST ? "host pointers" : "device pointers (lla_malloc)");
    printf("\nwhat %s runs (B=2 T=100 H=4 G=2 K=16 V=8):\n", lla_backend_name(b));
    print_support(b);
    lla_backend_close(b);
    return 0;
}
