/*
 * replay_main.c - runs a fuzz target over files, as a cmocka suite (the gcc build).
 *
 * Usage: fuzz_replay_<target> DIR...   One cmocka test per directory: every regular file
 * in it (in name order) goes through LLVMFuzzerTestOneInput.  A violated property fails
 * the test and names the input.  An empty or missing directory fails too: a replay that
 * ran nothing proves nothing.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fuzz.h"

static const char *current_input = "(none)";

void fuzz_fail(const char *file, int line, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_error("fuzz property violated on input %s: %s (last error: %s)\n", current_input, msg,
                lla_last_error());
    _fail(file, line);
    abort(); /* not reached: _fail jumps out of the test */
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    unsigned char *data = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        data = (unsigned char *)malloc((size_t)n + 1);
        if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
            free(data);
            data = NULL;
        }
        *size = (size_t)n;
    }
    fclose(f);
    return data;
}

static void replay_directory(void **state) {
    const char *dir = (const char *)*state;
    DIR *d = opendir(dir);
    struct dirent *entry;
    char **names = NULL;
    size_t count = 0, cap = 0, i, replayed = 0;
    if (!d) fail_msg("cannot open corpus directory %s", dir);
    while ((entry = readdir(d)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 64;
            names = (char **)realloc(names, cap * sizeof *names);
            assert_non_null(names);
        }
        names[count] = (char *)malloc(strlen(dir) + strlen(entry->d_name) + 2);
        assert_non_null(names[count]);
        sprintf(names[count], "%s/%s", dir, entry->d_name);
        ++count;
    }
    closedir(d);
    qsort(names, count, sizeof *names, by_name);
    for (i = 0; i < count; ++i) {
        struct stat info;
        unsigned char *data;
        size_t size = 0;
        if (stat(names[i], &info) != 0 || !S_ISREG(info.st_mode)) continue;
        data = read_file(names[i], &size);
        if (!data) fail_msg("cannot read %s", names[i]);
        current_input = names[i];
        LLVMFuzzerTestOneInput(data, size);
        current_input = "(none)";
        free(data);
        ++replayed;
    }
    for (i = 0; i < count; ++i) free(names[i]);
    free(names);
    print_message("replayed %zu inputs from %s\n", replayed, dir);
    if (replayed == 0) fail_msg("no inputs in %s", dir);
}

int main(int argc, char **argv) {
    struct CMUnitTest *tests;
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    int i, rc;
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR...\n", argv[0]);
        return 2;
    }
    tests = (struct CMUnitTest *)calloc((size_t)(argc - 1), sizeof *tests);
    if (!tests) return 1;
    for (i = 1; i < argc; ++i) {
        const char *base = strrchr(argv[i], '/');
        const char *parent_end = base;
        /* test name: "<parent>/<dir>", e.g. corpus/fuzz_problem */
        while (parent_end && parent_end > argv[i] && parent_end[-1] != '/') --parent_end;
        tests[i - 1].name = parent_end ? parent_end : argv[i];
        tests[i - 1].test_func = replay_directory;
        tests[i - 1].initial_state = argv[i];
    }
    rc = _cmocka_run_group_tests(name, tests, (size_t)(argc - 1), NULL, NULL);
    free(tests);
    return rc;
}
