/*
 * opencl.c - the opencl backend: host side (C99).  Kernels: kernels.cl (forward, decode)
 * and backward.cl, embedded at build time as one byte array, lla_opencl_kernels_source
 * (embed_cl.py).  docs/backends-opencl.md describes the whole backend.
 *
 * Devices.  Every device of every platform, numbered flat in platform order; "opencl"
 * opens the first GPU or accelerator (else device 0), "opencl:N" the flat device N,
 * "opencl:P.D" device D of platform P.  One context, one in-order queue and one program
 * (built at open, with its build log in the error on failure) per backend handle.
 *
 * Memory (LLA_MEMORY_DEVICE).  lla_malloc creates a cl_mem and returns a pointer-sized
 * handle: an address in a private, never dereferenced range (starting at
 * FAKE_BASE, 4 KiB aligned, a 4 KiB gap after every allocation).  The handle table maps
 * any address inside an allocation back to (cl_mem, byte offset), so tensor and state
 * pointers may point anywhere inside an allocation (element-aligned).  The addresses are
 * non-canonical on 64-bit hosts: a device pointer passed to host code faults at once.
 * Each tensor's whole addressed range is checked against its allocation before a launch.
 *
 * Calls.  forward, backward and decode_step enqueue their kernels and return (the queue
 * is in order); lla_download and lla_synchronize wait.  Checks that need device data (state
 * positions) read it back first, so a rejected call changes nothing.
 */
#define CL_TARGET_OPENCL_VERSION 120
#if defined(__APPLE__)
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

#include "backend.h"
#include "check.h"
#include "internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "opencl_kernels.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

/* ------------------------------------------------------------------ errors */

static const char *cl_error_name(cl_int err) {
    switch (err) {
    case CL_SUCCESS: return "CL_SUCCESS";
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
    case CL_DEVICE_NOT_AVAILABLE: return "CL_DEVICE_NOT_AVAILABLE";
    case CL_COMPILER_NOT_AVAILABLE: return "CL_COMPILER_NOT_AVAILABLE";
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
    case CL_INVALID_PLATFORM: return "CL_INVALID_PLATFORM";
    case CL_INVALID_DEVICE: return "CL_INVALID_DEVICE";
    case CL_INVALID_CONTEXT: return "CL_INVALID_CONTEXT";
    case CL_INVALID_COMMAND_QUEUE: return "CL_INVALID_COMMAND_QUEUE";
    case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT";
    case CL_INVALID_BUILD_OPTIONS: return "CL_INVALID_BUILD_OPTIONS";
    case CL_INVALID_PROGRAM_EXECUTABLE: return "CL_INVALID_PROGRAM_EXECUTABLE";
    case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME";
    case CL_INVALID_KERNEL: return "CL_INVALID_KERNEL";
    case CL_INVALID_ARG_INDEX: return "CL_INVALID_ARG_INDEX";
    case CL_INVALID_ARG_VALUE: return "CL_INVALID_ARG_VALUE";
    case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE";
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
    case CL_INVALID_WORK_ITEM_SIZE: return "CL_INVALID_WORK_ITEM_SIZE";
    case CL_INVALID_GLOBAL_WORK_SIZE: return "CL_INVALID_GLOBAL_WORK_SIZE";
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
    case CL_INVALID_OPERATION: return "CL_INVALID_OPERATION";
    case CL_INVALID_EVENT_WAIT_LIST: return "CL_INVALID_EVENT_WAIT_LIST";
    case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST:
        return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST";
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR: no OpenCL driver (ICD) is installed";
    default: return "unknown OpenCL error";
    }
}

/* Records "opencl: <what> failed: <code> (<name>)" and returns status. */
static lla_status cl_fail(lla_status status, const char *what, cl_int err) {
    return lla__set_error(status, "opencl: %s failed: error %d (%s)", what, (int)err,
                          cl_error_name(err));
}

/* Status for an error from enqueueing or waiting: resources vs everything else. */
static lla_status cl_status_of(cl_int err) {
    return err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY
               ? LLA_ERR_NOMEM
               : LLA_ERR_DEVICE;
}

/* ------------------------------------------------------------------ discovery */

typedef struct device_list {
    cl_uint nplatforms;
    cl_platform_id platforms[MAX_PLATFORMS];
    cl_uint ndevices[MAX_PLATFORMS];         /* devices of each platform (capped) */
    cl_device_id devices[MAX_PLATFORMS][MAX_DEVICES];
    int total;
} device_list;

/* Lists every device of every platform; CL_SUCCESS or the platform query's error. */
static cl_int list_devices(device_list *dl) {
    cl_int err;
    cl_uint p;
    memset(dl, 0, sizeof *dl);
    err = clGetPlatformIDs(MAX_PLATFORMS, dl->platforms, &dl->nplatforms);
    if (err != CL_SUCCESS) {
        dl->nplatforms = 0;
        return err;
    }
    if (dl->nplatforms > MAX_PLATFORMS) dl->nplatforms = MAX_PLATFORMS;
    for (p = 0; p < dl->nplatforms; ++p) {
        cl_uint n = 0;
        err = clGetDeviceIDs(dl->platforms[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, dl->devices[p], &n);
        if (err != CL_SUCCESS) n = 0; /* CL_DEVICE_NOT_FOUND: a platform without devices */
        if (n > MAX_DEVICES) n = MAX_DEVICES;
        dl->ndevices[p] = n;
        dl->total += (int)n;
    }
    return CL_SUCCESS;
}

/* Flat index -> (platform, device); 0 if out of range. */
static int flat_to_pd(const device_list *dl, int flat, cl_uint *p_out, cl_uint *d_out) {
    cl_uint p;
    if (flat < 0) return 0;
    for (p = 0; p < dl->nplatforms; ++p) {
        if ((cl_uint)flat < dl->ndevices[p]) {
            *p_out = p;
            *d_out = (cl_uint)flat;
            return 1;
        }
        flat -= (int)dl->ndevices[p];
    }
    return 0;
}

static void platform_string(cl_platform_id p, cl_platform_info what, char *buf, size_t len) {
    buf[0] = '\0';
    if (clGetPlatformInfo(p, what, len, buf, NULL) != CL_SUCCESS) lla__snprintf(buf, len, "?");
    buf[len - 1] = '\0';
}

static void device_string(cl_device_id d, cl_device_info what, char *buf, size_t len) {
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, len, buf, NULL) != CL_SUCCESS) lla__snprintf(buf, len, "?");
    buf[len - 1] = '\0';
}

static const char *device_type_name(cl_device_id d) {
    cl_device_type t = 0;
    if (clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL) != CL_SUCCESS) return "?";
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    return "other";
}

static lla_status opencl_probe(char *why, size_t len, int *device_count) {
    device_list dl;
    cl_int err = list_devices(&dl);
    char name[128];
    if (device_count) *device_count = dl.total;
    if (err != CL_SUCCESS) {
        if (why && len)
            lla__snprintf(why, len, "no OpenCL platform: clGetPlatformIDs returned %d (%s)",
                          (int)err, cl_error_name(err));
        return LLA_ERR_DEVICE;
    }
    if (dl.total == 0) {
        if (why && len)
            lla__snprintf(why, len, "%u OpenCL platform(s) but no device", (unsigned)dl.nplatforms);
        return LLA_ERR_DEVICE;
    }
    if (why && len) {
        cl_uint p = 0, d = 0;
        flat_to_pd(&dl, 0, &p, &d);
        device_string(dl.devices[p][d], CL_DEVICE_NAME, name, sizeof name);
        lla__snprintf(why, len, "%d OpenCL device(s) on %u platform(s); device 0.0: %s",
                      dl.total, (unsigned)dl.nplatforms, name);
    }
    return LLA_OK;
}

/* "auto" takes OpenCL only for a GPU or accelerator: on CPU-only drivers such as PoCL
 * the openmp backend is the faster CPU path (docs/benchmarks.md), and auto must not
 * push callers into device memory for no gain.  "opencl" by name still opens them. */
static lla_status opencl_auto_pick(char *why, size_t len) {
    device_list dl;
    int i;
    if (list_devices(&dl) != CL_SUCCESS) {
        if (why && len) lla__snprintf(why, len, "no OpenCL platform");
        return LLA_ERR_DEVICE;
    }
    for (i = 0; i < dl.total; ++i) {
        cl_uint p = 0, d = 0;
        cl_device_type t = 0;
        flat_to_pd(&dl, i, &p, &d);
        if (clGetDeviceInfo(dl.devices[p][d], CL_DEVICE_TYPE, sizeof t, &t, NULL) == CL_SUCCESS &&
            (t & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)))
            return LLA_OK;
    }
    if (why && len)
        lla__snprintf(why, len, "only CPU OpenCL devices (%d); the CPU backends serve them "
                      "better, select 'opencl' by name to use it", dl.total);
    return LLA_ERR_UNSUPPORTED;
}

static lla_status opencl_device_name(int device, char *buf, size_t len) {
    device_list dl;
    cl_uint p, d;
    char dev[128], plat[96], ver[64];
    cl_uint units = 0;
    if (list_devices(&dl) != CL_SUCCESS || !flat_to_pd(&dl, device, &p, &d))
        return lla__set_error(LLA_ERR_ARG, "opencl: no device %d (%d found)", device, dl.total);
    device_string(dl.devices[p][d], CL_DEVICE_NAME, dev, sizeof dev);
    device_string(dl.devices[p][d], CL_DEVICE_VERSION, ver, sizeof ver);
    platform_string(dl.platforms[p], CL_PLATFORM_NAME, plat, sizeof plat);
    clGetDeviceInfo(dl.devices[p][d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    lla__snprintf(buf, len, "opencl:%u.%u %s [%s, %s, %s, %u compute units]", (unsigned)p,
                  (unsigned)d, dev, plat, device_type_name(dl.devices[p][d]), ver,
                  (unsigned)units);
    return LLA_OK;
}

/* ------------------------------------------------------------------ the handle */

typedef struct allocation {
    uintptr_t base; /* the handle lla_malloc returned */
    size_t bytes;
    cl_mem mem;
} allocation;

typedef struct opencl_impl {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel k_forward, k_decode, k_positions, k_backward, k_group_sum;
    size_t forward_wg_max, decode_wg_max; /* CL_KERNEL_WORK_GROUP_SIZE */
    cl_ulong local_mem;                   /* device local memory, bytes */
    cl_ulong forward_static_local;        /* CL_KERNEL_LOCAL_MEM_SIZE of lla_forward */
    cl_uint compute_units;
    cl_ulong max_alloc;
    allocation *allocs; /* sorted by base (bases only grow) */
    size_t nallocs, cap;
    uintptr_t next_base;
} opencl_impl;

/* Device handles: a private address range nothing on the host uses. */
#if UINTPTR_MAX > 0xffffffffu
#define FAKE_BASE ((uintptr_t)0x4000000000000000ull)
#define FAKE_END ((uintptr_t)0x7000000000000000ull)
#else
#define FAKE_BASE ((uintptr_t)0xc0000000u)
#define FAKE_END ((uintptr_t)0xfff00000u)
#endif
#define FAKE_ALIGN ((uintptr_t)4096)

static opencl_impl *impl_of(lla_backend *self) { return (opencl_impl *)self->impl; }

/* Parses "N" or "P.D"; 1 on success. */
static int parse_device_spec(const char *s, long *first, long *second, int *dotted) {
    long a = 0, b = 0;
    if (*s < '0' || *s > '9') return 0;
    while (*s >= '0' && *s <= '9') {
        if (a > 1000000) return 0;
        a = a * 10 + (*s++ - '0');
    }
    *dotted = 0;
    if (*s == '.') {
        ++s;
        if (*s < '0' || *s > '9') return 0;
        while (*s >= '0' && *s <= '9') {
            if (b > 1000000) return 0;
            b = b * 10 + (*s++ - '0');
        }
        *dotted = 1;
    }
    if (*s) return 0;
    *first = a;
    *second = b;
    return 1;
}

static void release_impl(opencl_impl *im) {
    size_t i;
    if (!im) return;
    for (i = 0; i < im->nallocs; ++i) clReleaseMemObject(im->allocs[i].mem);
    free(im->allocs);
    if (im->k_forward) clReleaseKernel(im->k_forward);
    if (im->k_decode) clReleaseKernel(im->k_decode);
    if (im->k_positions) clReleaseKernel(im->k_positions);
    if (im->k_backward) clReleaseKernel(im->k_backward);
    if (im->k_group_sum) clReleaseKernel(im->k_group_sum);
    if (im->program) clReleaseProgram(im->program);
    if (im->queue) clReleaseCommandQueue(im->queue);
    if (im->context) clReleaseContext(im->context);
    free(im);
}

/* Builds the embedded kernels; on failure the error carries the start of the build log
 * (the whole log goes to the lla log sink). */
static lla_status build_program(opencl_impl *im, const char *devname) {
    const char *src = lla_opencl_kernels_source;
    char options[512];
    const char *extra = getenv("LLA_OPENCL_BUILD_OPTIONS"); /* debugging aid */
    cl_int err;
    lla__snprintf(options, sizeof options, "-cl-std=CL1.2%s%s", extra ? " " : "",
                  extra ? extra : "");
    im->program = clCreateProgramWithSource(im->context, 1, &src, NULL, &err);
    if (err != CL_SUCCESS) return cl_fail(LLA_ERR_DEVICE, "clCreateProgramWithSource", err);
    err = clBuildProgram(im->program, 1, &im->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        size_t log_len = 0, i;
        char *log = NULL, excerpt[300];
        clGetProgramBuildInfo(im->program, im->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_len);
        if (log_len > 0) log = (char *)malloc(log_len + 1);
        if (log && clGetProgramBuildInfo(im->program, im->device, CL_PROGRAM_BUILD_LOG, log_len,
                                         log, NULL) == CL_SUCCESS) {
            log[log_len] = '\0';
            for (i = 0; i < log_len; i += 400) {
                char piece[401];
                size_t n = log_len - i < 400 ? log_len - i : 400;
                memcpy(piece, log + i, n);
                piece[n] = '\0';
                lla__log("opencl build log (%s): %s", devname, piece);
            }
            /* one line: newlines and tabs become spaces */
            for (i = 0; i + 1 < sizeof excerpt && log[i]; ++i)
                excerpt[i] = (log[i] == '\n' || log[i] == '\r' || log[i] == '\t') ? ' ' : log[i];
            excerpt[i] = '\0';
        } else {
            lla__snprintf(excerpt, sizeof excerpt, "(no build log available)");
        }
        free(log);
        return lla__set_error(LLA_ERR_DEVICE,
                              "opencl: building the kernels for %s failed: error %d (%s); "
                              "build log: %s",
                              devname, (int)err, cl_error_name(err), excerpt);
    }
    return LLA_OK;
}

static lla_status make_kernel(opencl_impl *im, const char *name, cl_kernel *out) {
    cl_int err;
    *out = clCreateKernel(im->program, name, &err);
    if (err != CL_SUCCESS)
        return lla__set_error(LLA_ERR_DEVICE, "opencl: clCreateKernel(%s) failed: error %d (%s)",
                              name, (int)err, cl_error_name(err));
    return LLA_OK;
}

static lla_status opencl_open(lla_backend *self, int device, const char *spec) {
    device_list dl;
    cl_uint p = 0, d = 0;
    cl_int err = list_devices(&dl);
    opencl_impl *im;
    lla_status st;
    char devname[128], platname[96];
    cl_context_properties props[3];
    (void)device; /* the registry's number is the flat index; spec carries it too */
    if (err != CL_SUCCESS)
        return lla__set_error(LLA_ERR_DEVICE, "opencl: no OpenCL platform: clGetPlatformIDs "
                              "returned %d (%s)", (int)err, cl_error_name(err));
    if (dl.total == 0)
        return lla__set_error(LLA_ERR_DEVICE, "opencl: %u platform(s) but no OpenCL device",
                              (unsigned)dl.nplatforms);
    if (spec) {
        long a, b;
        int dotted;
        if (!parse_device_spec(spec, &a, &b, &dotted))
            return lla__set_error(LLA_ERR_BACKEND, "opencl: bad device '%s' (expected N or P.D)",
                                  spec);
        if (dotted) {
            if (a >= (long)dl.nplatforms)
                return lla__set_error(LLA_ERR_BACKEND,
                                      "opencl: device '%s': no platform %ld (%u platform(s))",
                                      spec, a, (unsigned)dl.nplatforms);
            if (b >= (long)dl.ndevices[a])
                return lla__set_error(LLA_ERR_BACKEND,
                                      "opencl: device '%s': platform %ld has %u device(s)", spec,
                                      a, (unsigned)dl.ndevices[a]);
            p = (cl_uint)a;
            d = (cl_uint)b;
        } else if (a > INT_MAX || !flat_to_pd(&dl, (int)a, &p, &d)) {
            return lla__set_error(LLA_ERR_BACKEND, "opencl: device %ld does not exist (%d found)",
                                  a, dl.total);
        }
    } else { /* default: the first GPU or accelerator, else device 0 */
        int f, found = 0;
        for (f = 0; f < dl.total && !found; ++f) {
            cl_uint fp = 0, fd = 0;
            cl_device_type t = 0;
            flat_to_pd(&dl, f, &fp, &fd);
            clGetDeviceInfo(dl.devices[fp][fd], CL_DEVICE_TYPE, sizeof t, &t, NULL);
            if (t & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) {
                p = fp;
                d = fd;
                found = 1;
            }
        }
        if (!found) flat_to_pd(&dl, 0, &p, &d);
    }

    im = (opencl_impl *)calloc(1, sizeof *im);
    if (!im) return lla__set_error(LLA_ERR_NOMEM, "opencl: cannot allocate the backend state");
    im->platform = dl.platforms[p];
    im->device = dl.devices[p][d];
    im->next_base = FAKE_BASE;
    device_string(im->device, CL_DEVICE_NAME, devname, sizeof devname);
    platform_string(im->platform, CL_PLATFORM_NAME, platname, sizeof platname);

    props[0] = CL_CONTEXT_PLATFORM;
    props[1] = (cl_context_properties)im->platform;
    props[2] = 0;
    im->context = clCreateContext(props, 1, &im->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        st = cl_fail(LLA_ERR_DEVICE, "clCreateContext", err);
        goto fail;
    }
    im->queue = clCreateCommandQueue(im->context, im->device, 0, &err);
    if (err != CL_SUCCESS) {
        st = cl_fail(LLA_ERR_DEVICE, "clCreateCommandQueue", err);
        goto fail;
    }
    if ((st = build_program(im, devname)) != LLA_OK) goto fail;
    if ((st = make_kernel(im, "lla_forward", &im->k_forward)) != LLA_OK ||
        (st = make_kernel(im, "lla_decode", &im->k_decode)) != LLA_OK ||
        (st = make_kernel(im, "lla_positions", &im->k_positions)) != LLA_OK ||
        (st = make_kernel(im, "lla_backward", &im->k_backward)) != LLA_OK ||
        (st = make_kernel(im, "lla_backward_group_sum", &im->k_group_sum)) != LLA_OK)
        goto fail;
    if ((err = clGetKernelWorkGroupInfo(im->k_forward, im->device, CL_KERNEL_WORK_GROUP_SIZE,
                                        sizeof im->forward_wg_max, &im->forward_wg_max, NULL)) !=
            CL_SUCCESS ||
        (err = clGetKernelWorkGroupInfo(im->k_decode, im->device, CL_KERNEL_WORK_GROUP_SIZE,
                                        sizeof im->decode_wg_max, &im->decode_wg_max, NULL)) !=
            CL_SUCCESS ||
        (err = clGetKernelWorkGroupInfo(im->k_forward, im->device, CL_KERNEL_LOCAL_MEM_SIZE,
                                        sizeof im->forward_static_local,
                                        &im->forward_static_local, NULL)) != CL_SUCCESS ||
        (err = clGetDeviceInfo(im->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof im->local_mem,
                               &im->local_mem, NULL)) != CL_SUCCESS ||
        (err = clGetDeviceInfo(im->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof im->compute_units,
                               &im->compute_units, NULL)) != CL_SUCCESS ||
        (err = clGetDeviceInfo(im->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof im->max_alloc,
                               &im->max_alloc, NULL)) != CL_SUCCESS) {
        st = cl_fail(LLA_ERR_DEVICE, "querying device limits", err);
        goto fail;
    }
    if (im->compute_units == 0) im->compute_units = 1;
    lla__snprintf(self->description, sizeof self->description,
                  "opencl:%u.%u %s (%s, %s), %u compute units, %llu KiB local memory, f32",
                  (unsigned)p, (unsigned)d, devname, platname, device_type_name(im->device),
                  (unsigned)im->compute_units, (unsigned long long)(im->local_mem / 1024));
    self->impl = im;
    return LLA_OK;
fail:
    release_impl(im);
    return st;
}

static void opencl_close(lla_backend *self) {
    opencl_impl *im = impl_of(self);
    if (!im) return;
    if (im->queue) clFinish(im->queue);
    release_impl(im);
    self->impl = NULL;
}

/* ------------------------------------------------------------------ memory */

/* The allocation holding [p, p + bytes), or NULL (with an error recorded). */
static allocation *find_allocation(opencl_impl *im, const void *ptr, size_t bytes,
                                   const char *what) {
    uintptr_t p = (uintptr_t)ptr;
    size_t lo = 0, hi = im->nallocs;
    while (lo < hi) { /* last allocation with base <= p */
        size_t mid = lo + (hi - lo) / 2;
        if (im->allocs[mid].base <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0) {
        allocation *a = &im->allocs[lo - 1];
        size_t off = (size_t)(p - a->base);
        if (p >= a->base && off < a->bytes + (bytes == 0 ? 1 : 0) && bytes <= a->bytes - off)
            return a;
        if (p >= a->base && off < a->bytes) {
            lla__set_error(LLA_ERR_ARG,
                           "opencl: %s: %zu bytes at offset %zu run past the end of their "
                           "%zu-byte allocation",
                           what, bytes, off, a->bytes);
            return NULL;
        }
    }
    lla__set_error(LLA_ERR_ARG,
                   "opencl: %s is not device memory from lla_malloc on this backend handle",
                   what);
    return NULL;
}

static lla_status opencl_mem_alloc(lla_backend *self, size_t bytes, void **ptr) {
    opencl_impl *im = impl_of(self);
    uintptr_t span;
    cl_int err;
    cl_mem mem;
    if (bytes > (size_t)(FAKE_END - FAKE_BASE) / 2)
        return lla__set_error(LLA_ERR_NOMEM, "opencl: lla_malloc of %zu bytes is too large", bytes);
    if ((cl_ulong)bytes > im->max_alloc)
        return lla__set_error(LLA_ERR_NOMEM,
                              "opencl: lla_malloc of %zu bytes exceeds the device's largest "
                              "allocation (CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu)",
                              bytes, (unsigned long long)im->max_alloc);
    span = ((uintptr_t)bytes + FAKE_ALIGN - 1) / FAKE_ALIGN * FAKE_ALIGN + FAKE_ALIGN;
    if (FAKE_END - im->next_base < span)
        return lla__set_error(LLA_ERR_NOMEM, "opencl: device handle address range exhausted");
    if (im->nallocs == im->cap) {
        size_t cap = im->cap ? im->cap * 2 : 16;
        allocation *grown;
        if (cap > SIZE_MAX / sizeof *grown)
            return lla__set_error(LLA_ERR_NOMEM, "opencl: allocation table overflows");
        grown = (allocation *)realloc(im->allocs, cap * sizeof *grown);
        if (!grown) return lla__set_error(LLA_ERR_NOMEM, "opencl: cannot grow the allocation table");
        im->allocs = grown;
        im->cap = cap;
    }
    mem = clCreateBuffer(im->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return lla__set_error(err == CL_INVALID_BUFFER_SIZE ? LLA_ERR_NOMEM : cl_status_of(err),
                              "opencl: clCreateBuffer(%zu bytes) failed: error %d (%s)", bytes,
                              (int)err, cl_error_name(err));
    im->allocs[im->nallocs].base = im->next_base;
    im->allocs[im->nallocs].bytes = bytes;
    im->allocs[im->nallocs].mem = mem;
    ++im->nallocs;
    *ptr = (void *)im->next_base;
    im->next_base += span;
    return LLA_OK;
}

static lla_status opencl_mem_free(lla_backend *self, void *ptr) {
    opencl_impl *im = impl_of(self);
    allocation *a = find_allocation(im, ptr, 0, "lla_free pointer");
    size_t i;
    if (!a) return LLA_ERR_ARG;
    if (a->base != (uintptr_t)ptr)
        return lla__set_error(LLA_ERR_ARG, "opencl: lla_free of a pointer inside an allocation "
                              "(offset %zu), not its start", (size_t)((uintptr_t)ptr - a->base));
    clReleaseMemObject(a->mem); /* deferred by OpenCL until queued work is done */
    i = (size_t)(a - im->allocs);
    memmove(a, a + 1, (im->nallocs - i - 1) * sizeof *a);
    --im->nallocs;
    return LLA_OK;
}

static lla_status opencl_mem_upload(lla_backend *self, void *dst, const void *src, size_t bytes) {
    opencl_impl *im = impl_of(self);
    allocation *a;
    cl_int err;
    if (bytes == 0) return LLA_OK;
    if (!(a = find_allocation(im, dst, bytes, "lla_upload destination"))) return LLA_ERR_ARG;
    err = clEnqueueWriteBuffer(im->queue, a->mem, CL_TRUE, (size_t)((uintptr_t)dst - a->base),
                               bytes, src, 0, NULL, NULL);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "clEnqueueWriteBuffer", err);
    return LLA_OK;
}

static lla_status opencl_mem_download(lla_backend *self, void *dst, const void *src,
                                      size_t bytes) {
    opencl_impl *im = impl_of(self);
    allocation *a;
    cl_int err;
    if (bytes == 0) return LLA_OK;
    if (!(a = find_allocation(im, src, bytes, "lla_download source"))) return LLA_ERR_ARG;
    err = clEnqueueReadBuffer(im->queue, a->mem, CL_TRUE, (size_t)((uintptr_t)src - a->base),
                              bytes, dst, 0, NULL, NULL);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "clEnqueueReadBuffer", err);
    return LLA_OK;
}

static lla_status opencl_mem_zero(lla_backend *self, void *dst, size_t bytes) {
    opencl_impl *im = impl_of(self);
    allocation *a;
    const cl_uchar zero = 0;
    cl_int err;
    if (bytes == 0) return LLA_OK;
    if (!(a = find_allocation(im, dst, bytes, "lla_memset_zero destination"))) return LLA_ERR_ARG;
    err = clEnqueueFillBuffer(im->queue, a->mem, &zero, 1, (size_t)((uintptr_t)dst - a->base),
                              bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "clEnqueueFillBuffer", err);
    return LLA_OK;
}

static lla_status opencl_synchronize(lla_backend *self) {
    cl_int err = clFinish(impl_of(self)->queue);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "clFinish", err);
    return LLA_OK;
}

/* ------------------------------------------------------------------ kernel arguments */

/* A tensor as the kernels see it: buffer, element offset, element strides. */
typedef struct dev_tensor {
    cl_mem mem;
    cl_long offset;
    cl_long4 strides;
} dev_tensor;

/* Resolves a float32 [n0, n1, n2, n3] view and checks that every element it addresses
 * lies inside its allocation. */
static lla_status resolve_tensor(opencl_impl *im, const char *name, const lla_tensor *x,
                                 int64_t n0, int64_t n1, int64_t n2, int64_t n3,
                                 dev_tensor *out) {
    const int64_t n[4] = {n0, n1, n2, n3};
    int64_t lo = 0, hi = 0, start, elems;
    allocation *a;
    size_t byte_off;
    char label[48];
    int i;
    lla__snprintf(label, sizeof label, "tensor %s", name);
    if (!(a = find_allocation(im, x->data, 1, label))) return LLA_ERR_ARG;
    byte_off = (size_t)((uintptr_t)x->data - a->base);
    if (byte_off % sizeof(float) != 0)
        return lla__set_error(LLA_ERR_ARG, "opencl: tensor %s is not 4-byte aligned in its "
                              "allocation (offset %zu)", name, byte_off);
    for (i = 0; i < 4; ++i) {
        int64_t s = x->strides[i], mag, reach;
        if (n[i] <= 1) continue; /* a dimension of extent 1 never moves */
        if (s == INT64_MIN || !lla__mul_ok(n[i] - 1, s < 0 ? -s : s, &mag))
            return lla__set_error(LLA_ERR_SHAPE, "opencl: tensor %s: stride %lld overflows",
                                  name, (long long)s);
        if (s < 0) {
            if (!lla__add_ok(-lo, mag, &reach)) goto overflow;
            lo = -reach;
        } else if (!lla__add_ok(hi, mag, &hi)) {
            goto overflow;
        }
    }
    start = (int64_t)(byte_off / sizeof(float));
    elems = (int64_t)(a->bytes / sizeof(float));
    if (start + lo < 0 || hi >= elems - start)
        return lla__set_error(LLA_ERR_ARG,
                              "opencl: tensor %s addresses elements [%lld, %lld] relative to its "
                              "start, outside its allocation ([%lld, %lld))",
                              name, (long long)lo, (long long)hi, (long long)-start,
                              (long long)(elems - start));
    out->mem = a->mem;
    out->offset = (cl_long)start;
    for (i = 0; i < 4; ++i) out->strides.s[i] = (cl_long)x->strides[i];
    return LLA_OK;
overflow:
    return lla__set_error(LLA_ERR_SHAPE, "opencl: tensor %s spans too many elements", name);
}

/* A state block: its buffer and the byte offset of its memory. */
static lla_status resolve_state(opencl_impl *im, const char *name, const lla_state *s,
                                const lla_problem *p, cl_mem *mem, size_t *byte_off) {
    size_t need;
    allocation *a;
    lla_status st;
    if ((st = lla_state_bytes(p, LLA_DTYPE_F32, &need)) != LLA_OK) return st;
    if (!(a = find_allocation(im, s->memory, need, name))) return LLA_ERR_ARG;
    *mem = a->mem;
    *byte_off = (size_t)((uintptr_t)s->memory - a->base);
    return LLA_OK;
}

/* Reads the positions of a state and checks that every sequence can consume its tokens
 * (len_of: per-sequence token count) within the state's levels. */
static lla_status check_capacity(opencl_impl *im, cl_mem mem, size_t byte_off,
                                 const lla_problem *p, int use_offsets, int64_t count) {
    cl_long chunk[128];
    int64_t b0, i;
    for (b0 = 0; b0 < p->batch; b0 += 128) {
        int64_t n = p->batch - b0 < 128 ? p->batch - b0 : 128;
        cl_int err = clEnqueueReadBuffer(im->queue, mem, CL_TRUE,
                                         byte_off + (size_t)b0 * sizeof(cl_long),
                                         (size_t)n * sizeof(cl_long), chunk, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return cl_fail(cl_status_of(err), "reading the state positions", err);
        for (i = 0; i < n; ++i) {
            int64_t b = b0 + i, pos = (int64_t)chunk[i], end;
            int64_t len = use_offsets && p->seq_offsets ? p->seq_offsets[b + 1] - p->seq_offsets[b]
                                                        : count;
            if (pos < 0)
                return lla__set_error(LLA_ERR_STATE,
                                      "state position of sequence %lld is negative (%lld)",
                                      (long long)b, (long long)pos);
            if (!lla__add_ok(pos, len, &end))
                return lla__set_error(LLA_ERR_STATE, "state position overflows");
            if (lla_num_levels(end) > p->levels)
                return lla__set_error(LLA_ERR_STATE,
                                      "sequence %lld would reach position %lld, which needs %lld "
                                      "levels; the state has %lld",
                                      (long long)b, (long long)end, (long long)lla_num_levels(end),
                                      (long long)p->levels);
        }
    }
    return LLA_OK;
}

/* Sets kernel arguments in order; the first failure wins. */
typedef struct arg_setter {
    cl_kernel kernel;
    cl_uint index;
    cl_int err;
} arg_setter;

static void arg(arg_setter *a, size_t size, const void *value) {
    if (a->err == CL_SUCCESS) a->err = clSetKernelArg(a->kernel, a->index, size, value);
    ++a->index;
}
static void arg_tensor(arg_setter *a, const dev_tensor *t) {
    arg(a, sizeof t->mem, &t->mem);
    arg(a, sizeof t->offset, &t->offset);
    arg(a, sizeof t->strides, &t->strides);
}
static void arg_int(arg_setter *a, int v) {
    cl_int x = (cl_int)v;
    arg(a, sizeof x, &x);
}
static void arg_long(arg_setter *a, int64_t v) {
    cl_long x = (cl_long)v;
    arg(a, sizeof x, &x);
}
static void arg_mem(arg_setter *a, cl_mem m) { arg(a, sizeof m, &m); }

/* What lla_forward and lla_backward share: the input tensors as buffers, the workspace
 * (its head holds the sequence offsets) and the initial state. */
typedef struct call_inputs {
    dev_tensor q, k, v, g, lambda, beta; /* beta: g's buffer for Mamba-2 (never read) */
    cl_mem ws_mem, init_mem;             /* init_mem: NULL without an initial state    */
    size_t ws_off, init_off;
} call_inputs;

/* Resolves the inputs, the workspace (need bytes) and the initial state, checks the
 * state's capacity, then uploads the sequence offsets to the workspace's head. */
static lla_status resolve_inputs(opencl_impl *im, const lla_problem *p, const lla_inputs *x,
                                 const lla_state *initial, void *workspace, size_t need,
                                 size_t workspace_bytes, const char *op, call_inputs *ci) {
    const int64_t bt = p->seq_offsets ? 1 : p->batch, T = p->seqlen;
    allocation *wa;
    lla_status st;
    cl_int err;
    memset(ci, 0, sizeof *ci);
    if ((st = resolve_tensor(im, "q", &x->q, bt, T, p->qk_heads, p->dk, &ci->q)) != LLA_OK ||
        (st = resolve_tensor(im, "k", &x->k, bt, T, p->qk_heads, p->dk, &ci->k)) != LLA_OK ||
        (st = resolve_tensor(im, "v", &x->v, bt, T, p->heads, p->dv, &ci->v)) != LLA_OK ||
        (st = resolve_tensor(im, "g", &x->g, bt, T, p->heads, 1, &ci->g)) != LLA_OK ||
        (st = resolve_tensor(im, "lambda", &x->lambda, bt, T, p->heads, p->levels,
                             &ci->lambda)) != LLA_OK)
        return st;
    if (p->variant != LLA_VARIANT_GDN)
        ci->beta = ci->g;
    else if ((st = resolve_tensor(im, "beta", &x->beta, bt, T, p->heads, 1, &ci->beta)) != LLA_OK)
        return st;
    if (need > workspace_bytes)
        return lla__set_error(LLA_ERR_WORKSPACE, "opencl: %s workspace too small", op);
    if (!(wa = find_allocation(im, workspace, need, "workspace"))) return LLA_ERR_ARG;
    ci->ws_mem = wa->mem;
    ci->ws_off = (size_t)((uintptr_t)workspace - wa->base);
    if (initial) {
        if ((st = resolve_state(im, "initial state", initial, p, &ci->init_mem,
                                &ci->init_off)) != LLA_OK ||
            (st = check_capacity(im, ci->init_mem, ci->init_off, p, 1, p->seqlen)) != LLA_OK)
            return st;
    }
    if (p->seq_offsets) {
        err = clEnqueueWriteBuffer(im->queue, ci->ws_mem, CL_TRUE, ci->ws_off,
                                   (size_t)(p->batch + 1) * sizeof(cl_long), p->seq_offsets, 0,
                                   NULL, NULL);
        if (err != CL_SUCCESS)
            return cl_fail(cl_status_of(err), "uploading the sequence offsets", err);
    }
    return LLA_OK;
}

/* Kernel arguments in the order lla_forward and lla_backward both start with: the six
 * input tensors (then the caller's tensors), ... */
static void arg_inputs(arg_setter *a, const call_inputs *ci) {
    arg_tensor(a, &ci->q);
    arg_tensor(a, &ci->k);
    arg_tensor(a, &ci->v);
    arg_tensor(a, &ci->g);
    arg_tensor(a, &ci->lambda);
    arg_tensor(a, &ci->beta);
}

/* ... the sequence offsets and the initial state's positions and values, ... */
static void arg_offsets_initial(arg_setter *a, const call_inputs *ci, const lla_problem *p) {
    const size_t values_off = lla_state_values_offset(p->batch);
    const cl_mem init = ci->init_mem ? ci->init_mem : ci->ws_mem;
    arg_mem(a, ci->ws_mem);
    arg_long(a, (int64_t)(ci->ws_off / sizeof(cl_long)));
    arg_int(a, p->seq_offsets != NULL);
    arg_mem(a, init);
    arg_long(a, (int64_t)(ci->init_off / sizeof(cl_long)));
    arg_mem(a, init);
    arg_long(a, (int64_t)((ci->init_off + values_off) / sizeof(float)));
    arg_int(a, ci->init_mem != NULL);
}

/* ... the values of an optional state (the workspace's buffer stands in when absent), ... */
static void arg_state_values(arg_setter *a, const call_inputs *ci, const lla_problem *p,
                             cl_mem mem, size_t off) {
    arg_mem(a, mem ? mem : ci->ws_mem);
    arg_long(a, (int64_t)((off + lla_state_values_offset(p->batch)) / sizeof(float)));
    arg_int(a, mem != NULL);
}

/* ... and the problem's shape. */
static void arg_shape(arg_setter *a, const lla_problem *p, int C) {
    arg_int(a, (int)p->variant);
    arg_int(a, (int)p->hierarchy);
    arg_int(a, (int)p->levels);
    arg_int(a, (int)p->heads);
    arg_int(a, (int)(p->heads / p->qk_heads));
    arg_int(a, (int)p->dk);
    arg_int(a, (int)p->dv);
    arg_int(a, C);
}

/* Writes the positions of a result state: the source state's (when has_src) plus the
 * tokens of each sequence (varlen: from the offsets at the workspace's head). */
static lla_status launch_positions(opencl_impl *im, cl_mem dst, size_t dst_off, cl_mem src,
                                   size_t src_off, int has_src, const call_inputs *ci,
                                   int varlen, int64_t tokens, int64_t batch) {
    arg_setter a;
    size_t global = (size_t)batch, local = 1;
    cl_int err;
    a.kernel = im->k_positions;
    a.index = 0;
    a.err = CL_SUCCESS;
    arg_mem(&a, dst);
    arg_long(&a, (int64_t)(dst_off / sizeof(cl_long)));
    arg_mem(&a, has_src ? src : dst);
    arg_long(&a, (int64_t)(src_off / sizeof(cl_long)));
    arg_int(&a, has_src);
    arg_mem(&a, ci->ws_mem);
    arg_long(&a, (int64_t)(ci->ws_off / sizeof(cl_long)));
    arg_int(&a, varlen);
    arg_long(&a, tokens);
    arg_long(&a, batch);
    if (a.err != CL_SUCCESS) return cl_fail(LLA_ERR_DEVICE, "clSetKernelArg(lla_positions)", a.err);
    err = clEnqueueNDRangeKernel(im->queue, im->k_positions, 1, NULL, &global, &local, 0, NULL,
                                 NULL);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "launching lla_positions", err);
    return LLA_OK;
}

/* ------------------------------------------------------------------ launch plans */

typedef struct forward_plan {
    int C;           /* chunk length used (a power of two)                          */
    int nwi;         /* work-items per work-group (the local size)                  */
    int gvec;        /* float16 column vectors per work-group (<= nwi items busy)     */
    int nvb;         /* work-groups per (sequence, head)                            */
    size_t local_bytes;
} forward_plan;

/* Work-items per group of lla_forward, each owning 16 value columns (a float16).  One
 * fixed size: PoCL compiles a kernel once per local size (seconds for this one), and
 * 4 x 16 = 64 value columns per group is the models' head size (fewer columns leave
 * work-items idle, more use several groups). */
#define FORWARD_WORK_ITEMS 4
#define COLUMNS_PER_ITEM 16
/* Work-items per group of lla_decode (one value column each). */
#define DECODE_WORK_ITEMS 32

static int64_t round_up8(int64_t n) { return (n + 7) / 8 * 8; }
static int64_t round_up16(int64_t n) { return (n + 15) / 16 * 16; }



/* Local arena of lla_forward, in floats (mirror of the carve-up in kernels.cl). */
static int arena_floats(const lla_problem *p, int64_t C, int64_t nwi, int64_t *out) {
    int64_t ck, cc, cv, cl, n;
    int gdn = p->variant == LLA_VARIANT_GDN;
    if (!lla__mul_ok(C, round_up8(p->dk), &ck) || !lla__mul_ok(C, C, &cc) ||
        !lla__mul_ok(C, COLUMNS_PER_ITEM * nwi, &cv) || !lla__mul_ok(C, p->levels, &cl) ||
        !lla__mul_ok(ck, gdn ? 6 : 5, &n) || !lla__add_ok(n, cc * (gdn ? 3 : 1), &n) ||
        !lla__add_ok(n, cv * (gdn ? 3 : 2), &n) || !lla__add_ok(n, 5 * C, &n) ||
        !lla__add_ok(n, 2 * cl + 1, &n))
        return 0;
    *out = n;
    return 1;
}

/* Chooses the chunk and the work-group shape for p on this device, or explains why the
 * problem does not fit.  Work-group sizes come from the kernel's limit
 * (CL_KERNEL_WORK_GROUP_SIZE) and the chunk from the device's local memory: the chunk is
 * a performance parameter only (every chunk gives the same result up to rounding). */
static lla_status plan_forward(opencl_impl *im, const lla_problem *p, forward_plan *plan) {
    int64_t want = lla__chunk(p), C = 0, floats = 0, groups, vecs, gvec;
    size_t nwi, budget;
    if (p->dk > INT_MAX / 1024 || p->dv > INT_MAX / 1024 || p->heads > INT_MAX ||
        p->heads / p->qk_heads > INT_MAX)
        return lla__set_error(LLA_ERR_UNSUPPORTED, "opencl: dk, dv or heads exceed the kernels' "
                              "int range");
    budget = im->local_mem > im->forward_static_local
                 ? (size_t)(im->local_mem - im->forward_static_local)
                 : 0;
    vecs = round_up16(p->dv) / COLUMNS_PER_ITEM; /* column vectors per (sequence, head) */
    nwi = FORWARD_WORK_ITEMS;
    if (nwi > im->forward_wg_max) nwi = im->forward_wg_max;
    if (nwi == 0) nwi = 1;
    gvec = vecs < (int64_t)nwi ? vecs : (int64_t)nwi;
    /* Fewer work-groups than compute units leave units idle: split the columns. */
    groups = p->batch * p->heads;
    while (gvec > 1 && groups * ((vecs + gvec - 1) / gvec) < (int64_t)im->compute_units)
        gvec = (gvec + 1) / 2;
    for (C = want; C >= 1; C /= 2)
        if (arena_floats(p, C, (int64_t)nwi, &floats) &&
            (uint64_t)floats <= (uint64_t)(budget / sizeof(float)))
            break;
    if (C < 1)
        return lla__set_error(LLA_ERR_UNSUPPORTED,
                              "opencl: dk = %lld is too large for the device's %llu bytes of "
                              "local memory (needs more even with chunk 1)",
                              (long long)p->dk, (unsigned long long)im->local_mem);
    plan->C = (int)C;
    plan->nwi = (int)nwi;
    plan->gvec = (int)gvec;
    plan->nvb = (int)((vecs + gvec - 1) / gvec);
    plan->local_bytes = (size_t)floats * sizeof(float);
    return LLA_OK;
}

typedef struct backward_plan backward_plan;
static lla_status backward_layout(const lla_problem *p, backward_plan *out);

/* The decode kernel needs no local memory: only the int ranges of its indices. */
static lla_status check_decode_shape(const lla_problem *p) {
    if (p->dk > INT_MAX / 2 || p->dv > INT_MAX / 2 || p->heads > INT_MAX)
        return lla__set_error(LLA_ERR_UNSUPPORTED, "opencl: dk, dv or heads exceed the kernels' "
                              "int range");
    return LLA_OK;
}

static lla_status opencl_supports(lla_backend *self, const lla_problem *p, lla_dtype dtype,
                                  lla_op op) {
    forward_plan plan;
    if (dtype != LLA_DTYPE_F32)
        return lla__set_error(LLA_ERR_DTYPE, "opencl: only float32 tensors are supported, not %s",
                              lla_dtype_name(dtype));
    if (op == LLA_OP_BACKWARD) return backward_layout(p, NULL);
    if (op == LLA_OP_DECODE) return check_decode_shape(p);
    return plan_forward(impl_of(self), p, &plan);
}

/* ------------------------------------------------------------------ forward */

/* Workspace: the packed offsets (batch + 1 int64, padded to 64 bytes), then the carried
 * state [B][H][levels][dk][dv rounded up to 16] float. */
static int forward_layout(const lla_problem *p, size_t *offsets_bytes, size_t *total) {
    int64_t n;
    size_t state;
    *offsets_bytes = lla__round_up64((size_t)(p->batch + 1) * sizeof(cl_long));
    if (!lla__mul_ok(p->batch, p->heads, &n) || !lla__mul_ok(n, p->levels, &n) ||
        !lla__mul_ok(n, p->dk, &n) || !lla__mul_ok(n, round_up16(p->dv), &n) ||
        !lla__size_mul_ok((size_t)n, sizeof(float), &state) ||
        !lla__size_add_ok(state, *offsets_bytes, total))
        return 0;
    return 1;
}

static lla_status opencl_forward_workspace(lla_backend *self, const lla_problem *p,
                                           lla_dtype dtype, size_t *bytes) {
    size_t off;
    (void)self;
    (void)dtype;
    if (!forward_layout(p, &off, bytes))
        return lla__set_error(LLA_ERR_SHAPE, "opencl: forward workspace size overflows");
    return LLA_OK;
}

static lla_status opencl_forward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                                 lla_tensor o, const lla_state *initial, lla_state *final,
                                 void *workspace, size_t workspace_bytes) {
    opencl_impl *im = impl_of(self);
    const int64_t bt = p->seq_offsets ? 1 : p->batch;
    call_inputs ci;
    dev_tensor to;
    cl_mem fin_mem = NULL;
    size_t fin_off = 0, offsets_bytes, need;
    forward_plan plan;
    arg_setter a;
    lla_status st;
    cl_int err;
    size_t global, local;

    if ((st = plan_forward(im, p, &plan)) != LLA_OK) return st;
    if (!forward_layout(p, &offsets_bytes, &need))
        return lla__set_error(LLA_ERR_WORKSPACE, "opencl: forward workspace too small");
    if ((st = resolve_inputs(im, p, x, initial, workspace, need, workspace_bytes, "forward",
                             &ci)) != LLA_OK ||
        (st = resolve_tensor(im, "o", &o, bt, p->seqlen, p->heads, p->dv, &to)) != LLA_OK)
        return st;
    if (final &&
        (st = resolve_state(im, "final state", final, p, &fin_mem, &fin_off)) != LLA_OK)
        return st;

    a.kernel = im->k_forward;
    a.index = 0;
    a.err = CL_SUCCESS;
    arg_inputs(&a, &ci);
    arg_tensor(&a, &to);
    arg_offsets_initial(&a, &ci, p);
    arg_state_values(&a, &ci, p, fin_mem, fin_off);
    arg_mem(&a, ci.ws_mem);
    arg_long(&a, (int64_t)((ci.ws_off + offsets_bytes) / sizeof(float)));
    arg_shape(&a, p, plan.C);
    arg_int(&a, plan.nvb);
    arg_int(&a, plan.gvec);
    arg_long(&a, p->seqlen);
    {
        cl_float scale = (cl_float)p->scale;
        arg(&a, sizeof scale, &scale);
    }
    arg(&a, plan.local_bytes, NULL);
    if (a.err != CL_SUCCESS) return cl_fail(LLA_ERR_DEVICE, "clSetKernelArg(lla_forward)", a.err);
    local = (size_t)plan.nwi;
    global = (size_t)(p->batch * p->heads) * (size_t)plan.nvb * local;
    err = clEnqueueNDRangeKernel(im->queue, im->k_forward, 1, NULL, &global, &local, 0, NULL,
                                 NULL);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "launching lla_forward", err);

    if (final && (st = launch_positions(im, fin_mem, fin_off, ci.init_mem, ci.init_off,
                                        initial != NULL, &ci, p->seq_offsets != NULL,
                                        p->seqlen, p->batch)) != LLA_OK)
        return st;
    err = clFlush(im->queue);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "clFlush", err);
    return LLA_OK;
}

/* ------------------------------------------------------------------ decode */

static lla_status opencl_decode_step(lla_backend *self, const lla_problem *p, lla_state *state,
                                     const lla_inputs *x, lla_tensor o) {
    opencl_impl *im = impl_of(self);
    const int gdn = p->variant == LLA_VARIANT_GDN;
    dev_tensor tq, tk, tv, tg, tl, tb, to;
    cl_mem smem;
    size_t soff, global, local;
    const size_t values_off = lla_state_values_offset(p->batch);
    int nvb;
    arg_setter a;
    lla_status st;
    cl_int err;

    if ((st = check_decode_shape(p)) != LLA_OK) return st;
    if ((st = resolve_tensor(im, "q", &x->q, p->batch, 1, p->qk_heads, p->dk, &tq)) != LLA_OK ||
        (st = resolve_tensor(im, "k", &x->k, p->batch, 1, p->qk_heads, p->dk, &tk)) != LLA_OK ||
        (st = resolve_tensor(im, "v", &x->v, p->batch, 1, p->heads, p->dv, &tv)) != LLA_OK ||
        (st = resolve_tensor(im, "g", &x->g, p->batch, 1, p->heads, 1, &tg)) != LLA_OK ||
        (st = resolve_tensor(im, "lambda", &x->lambda, p->batch, 1, p->heads, p->levels, &tl)) !=
            LLA_OK ||
        (st = resolve_tensor(im, "o", &o, p->batch, 1, p->heads, p->dv, &to)) != LLA_OK)
        return st;
    if (gdn) {
        if ((st = resolve_tensor(im, "beta", &x->beta, p->batch, 1, p->heads, 1, &tb)) != LLA_OK)
            return st;
    } else {
        tb = tg;
    }
    if ((st = resolve_state(im, "decode state", state, p, &smem, &soff)) != LLA_OK) return st;
    if ((st = check_capacity(im, smem, soff, p, 0, 1)) != LLA_OK) return st;

    /* one value column per work-item; a fixed local size (one PoCL compile) */
    local = DECODE_WORK_ITEMS;
    if (local > im->decode_wg_max) local = im->decode_wg_max;
    if (local == 0) local = 1;
    nvb = (int)(((size_t)p->dv + local - 1) / local);

    a.kernel = im->k_decode;
    a.index = 0;
    a.err = CL_SUCCESS;
    arg_tensor(&a, &tq);
    arg_tensor(&a, &tk);
    arg_tensor(&a, &tv);
    arg_tensor(&a, &tg);
    arg_tensor(&a, &tl);
    arg_tensor(&a, &tb);
    arg_tensor(&a, &to);
    arg_mem(&a, smem);
    arg_long(&a, (int64_t)(soff / sizeof(cl_long)));
    arg_mem(&a, smem);
    arg_long(&a, (int64_t)((soff + values_off) / sizeof(float)));
    arg_int(&a, (int)p->variant);
    arg_int(&a, (int)p->hierarchy);
    arg_int(&a, (int)p->levels);
    arg_int(&a, (int)p->heads);
    arg_int(&a, (int)(p->heads / p->qk_heads));
    arg_int(&a, (int)p->dk);
    arg_int(&a, (int)p->dv);
    arg_int(&a, (int)local);
    arg_int(&a, nvb);
    {
        cl_float scale = (cl_float)p->scale;
        arg(&a, sizeof scale, &scale);
    }
    if (a.err != CL_SUCCESS) return cl_fail(LLA_ERR_DEVICE, "clSetKernelArg(lla_decode)", a.err);
    global = (size_t)(p->batch * p->heads) * (size_t)nvb * local;
    err = clEnqueueNDRangeKernel(im->queue, im->k_decode, 1, NULL, &global, &local, 0, NULL, NULL);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "launching lla_decode", err);

    a.kernel = im->k_positions;
    a.index = 0;
    arg_mem(&a, smem);
    arg_long(&a, (int64_t)(soff / sizeof(cl_long)));
    arg_mem(&a, smem);
    arg_long(&a, (int64_t)(soff / sizeof(cl_long)));
    arg_int(&a, 1);
    arg_mem(&a, smem);
    arg_long(&a, 0);
    arg_int(&a, 0);
    arg_long(&a, 1);
    arg_long(&a, p->batch);
    if (a.err != CL_SUCCESS) return cl_fail(LLA_ERR_DEVICE, "clSetKernelArg(lla_positions)", a.err);
    global = (size_t)p->batch;
    local = 1;
    err = clEnqueueNDRangeKernel(im->queue, im->k_positions, 1, NULL, &global, &local, 0, NULL,
                                 NULL);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "launching lla_positions", err);
    err = clFlush(im->queue);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "clFlush", err);
    return LLA_OK;
}

/* ------------------------------------------------------------------ backward */

/* The backward's workspace, in bytes from its start: the packed offsets, then one slice
 * per (sequence, head) (the scalar backend's buffers in float: checkpoints, re-run states,
 * dE, chunk buffers), then the dq and dk partials per value head [bt][T][H][K]. */
struct backward_plan {
    int64_t C, spacing, n_ckpt;
    int64_t slice;          /* floats per (sequence, head) */
    size_t offsets_bytes, slices_at, pq_at, pk_at, total;
};

static lla_status backward_layout(const lla_problem *p, backward_plan *out) {
    backward_plan w;
    int64_t longest, max_chunks, s, state, chunk_part, t, n, bt;
    size_t bytes;
    lla_status st = lla__check_problem(p, &longest);
    if (st != LLA_OK) return st;
    if ((st = check_decode_shape(p)) != LLA_OK) return st;
    w.C = lla__chunk(p);
    max_chunks = (longest + w.C - 1) / w.C + 1; /* + 1: an unaligned initial position */
    s = 1;
    while (s * s < max_chunks) ++s;
    w.spacing = s;
    w.n_ckpt = (max_chunks + s - 1) / s;
    /* per pair: (n_ckpt + S) states + C*(11K + 3V + 2NL + 5) + (C+2)*K + 2V */
    if (!lla__mul_ok(p->levels * p->dk, p->dv, &state) ||
        !lla__mul_ok(w.n_ckpt + w.spacing, state, &n) ||
        !lla__mul_ok(11 * p->dk + 3 * p->dv + 2 * p->levels + 5, w.C, &chunk_part) ||
        !lla__mul_ok(w.C + 2, p->dk, &t) || !lla__add_ok(n, chunk_part, &n) ||
        !lla__add_ok(n, t + 2 * p->dv, &n))
        goto overflow;
    w.slice = (n + 15) / 16 * 16;
    w.offsets_bytes = lla__round_up64((size_t)(p->batch + 1) * sizeof(cl_long));
    w.slices_at = w.offsets_bytes;
    bt = p->seq_offsets ? 1 : p->batch;
    if (!lla__mul_ok(p->batch * p->heads, w.slice, &n) ||
        !lla__size_mul_ok((size_t)n, sizeof(float), &bytes) ||
        !lla__size_add_ok(w.slices_at, bytes, &w.pq_at) || !lla__mul_ok(bt, p->seqlen, &n) ||
        !lla__mul_ok(n, p->heads, &n) || !lla__mul_ok(n, p->dk, &n) ||
        !lla__size_mul_ok((size_t)n, sizeof(float), &bytes) ||
        !lla__size_add_ok(w.pq_at, lla__round_up64(bytes), &w.pk_at) ||
        !lla__size_add_ok(w.pk_at, bytes, &w.total))
        goto overflow;
    if (out) *out = w;
    return LLA_OK;
overflow:
    return lla__set_error(LLA_ERR_SHAPE, "opencl: backward workspace size overflows");
}

static lla_status opencl_backward_workspace(lla_backend *self, const lla_problem *p,
                                            lla_dtype dtype, size_t *bytes) {
    backward_plan w;
    lla_status st;
    (void)self;
    (void)dtype;
    if ((st = backward_layout(p, &w)) != LLA_OK) return st;
    *bytes = w.total;
    return LLA_OK;
}

static lla_status opencl_backward(lla_backend *self, const lla_problem *p, const lla_inputs *x,
                                  lla_tensor d_o, const lla_state *initial,
                                  const lla_state *d_final, const lla_grads *grads,
                                  lla_state *d_initial, void *workspace, size_t workspace_bytes) {
    opencl_impl *im = impl_of(self);
    const int64_t bt = p->seq_offsets ? 1 : p->batch, T = p->seqlen;
    call_inputs ci;
    dev_tensor tdo, tdq, tdk, tdv, tdg, tdl, tdb;
    cl_mem dfin_mem = NULL, dini_mem = NULL;
    size_t dfin_off = 0, dini_off = 0, global, local = 1;
    backward_plan w;
    arg_setter a;
    lla_status st;
    cl_int err;

    if ((st = backward_layout(p, &w)) != LLA_OK) return st;
    if ((st = resolve_inputs(im, p, x, initial, workspace, w.total, workspace_bytes, "backward",
                             &ci)) != LLA_OK ||
        (st = resolve_tensor(im, "d_o", &d_o, bt, T, p->heads, p->dv, &tdo)) != LLA_OK ||
        (st = resolve_tensor(im, "dq", &grads->dq, bt, T, p->qk_heads, p->dk, &tdq)) != LLA_OK ||
        (st = resolve_tensor(im, "dk", &grads->dk, bt, T, p->qk_heads, p->dk, &tdk)) != LLA_OK ||
        (st = resolve_tensor(im, "dv", &grads->dv, bt, T, p->heads, p->dv, &tdv)) != LLA_OK ||
        (st = resolve_tensor(im, "dg", &grads->dg, bt, T, p->heads, 1, &tdg)) != LLA_OK ||
        (st = resolve_tensor(im, "dlambda", &grads->dlambda, bt, T, p->heads, p->levels, &tdl)) !=
            LLA_OK)
        return st;
    if (p->variant != LLA_VARIANT_GDN)
        tdb = tdg; /* unused by Mamba-2: any valid buffer (never written) */
    else if ((st = resolve_tensor(im, "dbeta", &grads->dbeta, bt, T, p->heads, 1, &tdb)) !=
             LLA_OK)
        return st;
    if (d_final &&
        (st = resolve_state(im, "d_final state", d_final, p, &dfin_mem, &dfin_off)) != LLA_OK)
        return st;
    if (d_initial &&
        (st = resolve_state(im, "d_initial state", d_initial, p, &dini_mem, &dini_off)) != LLA_OK)
        return st;

    a.kernel = im->k_backward;
    a.index = 0;
    a.err = CL_SUCCESS;
    arg_inputs(&a, &ci);
    arg_tensor(&a, &tdo);
    arg_tensor(&a, &tdv);
    arg_tensor(&a, &tdg);
    arg_tensor(&a, &tdl);
    arg_tensor(&a, &tdb);
    arg_offsets_initial(&a, &ci, p);
    arg_state_values(&a, &ci, p, dfin_mem, dfin_off);
    arg_state_values(&a, &ci, p, dini_mem, dini_off);
    arg_mem(&a, ci.ws_mem);
    arg_long(&a, (int64_t)((ci.ws_off + w.slices_at) / sizeof(float)));
    arg_long(&a, w.slice);
    arg_long(&a, w.n_ckpt);
    arg_long(&a, w.spacing);
    arg_mem(&a, ci.ws_mem);
    arg_long(&a, (int64_t)((ci.ws_off + w.pq_at) / sizeof(float)));
    arg_mem(&a, ci.ws_mem);
    arg_long(&a, (int64_t)((ci.ws_off + w.pk_at) / sizeof(float)));
    arg_shape(&a, p, (int)w.C);
    arg_long(&a, p->batch);
    arg_long(&a, p->seqlen);
    {
        cl_float scale = (cl_float)p->scale;
        arg(&a, sizeof scale, &scale);
    }
    if (a.err != CL_SUCCESS) return cl_fail(LLA_ERR_DEVICE, "clSetKernelArg(lla_backward)", a.err);
    global = (size_t)(p->batch * p->heads);
    err = clEnqueueNDRangeKernel(im->queue, im->k_backward, 1, NULL, &global, &local, 0, NULL,
                                 NULL);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "launching lla_backward", err);

    a.kernel = im->k_group_sum;
    a.index = 0;
    arg_mem(&a, ci.ws_mem);
    arg_long(&a, (int64_t)((ci.ws_off + w.pq_at) / sizeof(float)));
    arg_mem(&a, ci.ws_mem);
    arg_long(&a, (int64_t)((ci.ws_off + w.pk_at) / sizeof(float)));
    arg_tensor(&a, &tdq);
    arg_tensor(&a, &tdk);
    arg_long(&a, bt);
    arg_long(&a, p->seqlen);
    arg_int(&a, (int)p->heads);
    arg_int(&a, (int)p->qk_heads);
    arg_int(&a, (int)p->dk);
    if (a.err != CL_SUCCESS)
        return cl_fail(LLA_ERR_DEVICE, "clSetKernelArg(lla_backward_group_sum)", a.err);
    global = (size_t)(bt * p->seqlen * p->qk_heads);
    err = clEnqueueNDRangeKernel(im->queue, im->k_group_sum, 1, NULL, &global, &local, 0, NULL,
                                 NULL);
    if (err != CL_SUCCESS)
        return cl_fail(cl_status_of(err), "launching lla_backward_group_sum", err);

    /* d_initial's positions = the initial state's (no tokens added) */
    if (d_initial && (st = launch_positions(im, dini_mem, dini_off, ci.init_mem, ci.init_off, 1,
                                            &ci, 0, 0, p->batch)) != LLA_OK)
        return st;
    err = clFlush(im->queue);
    if (err != CL_SUCCESS) return cl_fail(cl_status_of(err), "clFlush", err);
    return LLA_OK;
}

const lla_backend_ops lla_opencl_ops = {
    "opencl",
    LLA_API_VERSION,
    opencl_probe,
    opencl_device_name,
    opencl_open,
    opencl_close,
    opencl_supports,
    opencl_forward_workspace,
    opencl_forward,
    opencl_backward_workspace,
    opencl_backward,
    opencl_decode_step,
    LLA_MEMORY_DEVICE,
    opencl_mem_alloc,
    opencl_mem_free,
    opencl_mem_upload,
    opencl_mem_download,
    opencl_mem_zero,
    opencl_synchronize,
    NULL, /* set_threads */
    opencl_auto_pick,
};
