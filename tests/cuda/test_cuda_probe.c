/* test_cuda_probe.c - the cuda backend's probe and open agree, with or without a GPU.
 * Runs everywhere (no skip): on a machine without a CUDA device it checks that the
 * backend is compiled, reported unusable with a "no CUDA device" reason, and that opening
 * it fails with LLA_ERR_BACKEND and that reason; with a device, that it opens, reports
 * device memory, and refuses a device index that does not exist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lla.h"

static int cuda_index(void) {
    int i;
    for (i = 0; i < lla_backend_count(); ++i) {
        lla_backend_info info;
        if (lla_backend_info_get(i, &info) == LLA_OK && strcmp(info.name, "cuda") == 0) return i;
    }
    return -1;
}

static void probe_and_open_agree(void **state) {
    lla_backend_info info;
    lla_backend *b = NULL;
    lla_status st;
    int idx = cuda_index();
    (void)state;
    assert_true(idx >= 0); /* this test is only built with the cuda backend */
    assert_int_equal(lla_backend_info_get(idx, &info), LLA_OK);
    assert_true(info.compiled);
    print_message("cuda usable=%d devices=%d: %s\n", info.usable, info.device_count, info.reason);
    st = lla_backend_open("cuda", &b);
    if (!info.usable) {
        assert_int_equal(st, LLA_ERR_BACKEND);
        assert_non_null(strstr(info.reason, "CUDA device"));
        assert_non_null(strstr(lla_last_error(), info.reason));
        print_message("open refused: %s\n", lla_last_error());
        return;
    }
    assert_int_equal(st, LLA_OK);
    assert_int_equal(lla_backend_memory_kind(b), LLA_MEMORY_DEVICE);
    print_message("opened: %s\n", lla_backend_description(b));
    lla_backend_close(b);
    assert_int_equal(lla_backend_open("CUDA:0", &b), LLA_OK);
    lla_backend_close(b);
    assert_int_equal(lla_backend_open("cuda:4096", &b), LLA_ERR_BACKEND);
    print_message("cuda:4096 refused: %s\n", lla_last_error());
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(probe_and_open_agree),
    };
    return cmocka_run_group_tests_name("cuda_probe", tests, NULL, NULL);
}
