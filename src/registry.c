/*
 * registry.c - the table of compiled backends, selection by name or LLA_BACKEND, open.
 *
 * The table is static and in priority order; "auto" takes the first backend whose probe
 * succeeds.  Probes are run on demand (no cached global state), so concurrent first use
 * is safe.  An explicit name never falls back silently: an unknown or unusable name is
 * an error that lists what is available.
 */
#include "backend.h"
#include "internal.h"

#include <string.h>
#ifndef LLA_FREESTANDING
#include <stdlib.h>
#endif

static const lla_backend_ops *const backend_table[] = {
#ifdef LLA_HAVE_CUDA
    &lla_cuda_ops,
#endif
#ifdef LLA_HAVE_OPENCL
    &lla_opencl_ops,
#endif
#ifdef LLA_HAVE_OPENMP
    &lla_openmp_ops,
#endif
    &lla_scalar_ops,
};
#define BACKEND_COUNT ((int)(sizeof backend_table / sizeof backend_table[0]))

int lla_backend_count(void) { return BACKEND_COUNT; }

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

/* Case-insensitive compare of name against the first n characters of s. */
static int name_is(const char *name, const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; ++i)
        if (!name[i] || lower((unsigned char)name[i]) != lower((unsigned char)s[i])) return 0;
    return name[n] == '\0';
}

lla_status lla_backend_info_get(int index, lla_backend_info *info) {
    const lla_backend_ops *ops;
    lla_status st;
    if (!info) return lla__set_error(LLA_ERR_ARG, "info is NULL");
    if (index < 0 || index >= BACKEND_COUNT)
        return lla__set_error(LLA_ERR_ARG, "backend index %d out of range [0, %d)", index,
                              BACKEND_COUNT);
    ops = backend_table[index];
    memset(info, 0, sizeof *info);
    info->name = ops->name;
    info->compiled = 1;
    st = ops->probe(info->reason, sizeof info->reason, &info->device_count);
    info->usable = st == LLA_OK;
    return LLA_OK;
}

lla_status lla_backend_device_name(int index, int device, char *buf, size_t len) {
    if (!buf || len == 0) return lla__set_error(LLA_ERR_ARG, "buf is NULL or empty");
    if (index < 0 || index >= BACKEND_COUNT)
        return lla__set_error(LLA_ERR_ARG, "backend index %d out of range", index);
    {
        char why[160];
        int devices = 0;
        if (backend_table[index]->probe(why, sizeof why, &devices) != LLA_OK)
            return lla__set_error(LLA_ERR_BACKEND, "backend '%s' is not usable here: %s",
                                  backend_table[index]->name, why);
        if (device < 0 || device >= devices)
            return lla__set_error(LLA_ERR_ARG, "backend '%s': device %d out of range [0, %d)",
                                  backend_table[index]->name, device, devices);
    }
    if (!backend_table[index]->device_name) {
        lla__snprintf(buf, len, "%s", "host CPU");
        return LLA_OK;
    }
    return backend_table[index]->device_name(device, buf, len);
}

static void list_available(char *buf, size_t len) {
    size_t pos = 0;
    int i;
    buf[0] = '\0';
    for (i = 0; i < BACKEND_COUNT; ++i) {
        char why[160];
        int devices = 0;
        int ok = backend_table[i]->probe(why, sizeof why, &devices) == LLA_OK;
        pos += (size_t)lla__snprintf(buf + pos, pos < len ? len - pos : 0, "%s%s%s",
                                     i ? ", " : "", backend_table[i]->name,
                                     ok ? "" : " (not usable)");
        if (pos >= len) break;
    }
}

/* Picks the first usable backend; why receives the explanation. */
static int auto_index(char *why, size_t len) {
    int i;
    size_t pos = 0;
    for (i = 0; i < BACKEND_COUNT; ++i) {
        char reason[160];
        int devices = 0;
        if (backend_table[i]->probe(reason, sizeof reason, &devices) == LLA_OK &&
            (!backend_table[i]->auto_pick ||
             backend_table[i]->auto_pick(reason, sizeof reason) == LLA_OK)) {
            lla__snprintf(why + pos, pos < len ? len - pos : 0, "%s%s: %s", "chose ",
                          backend_table[i]->name, reason);
            return i;
        }
        pos += (size_t)lla__snprintf(why + pos, pos < len ? len - pos : 0,
                                     "%s not chosen (%s); ", backend_table[i]->name, reason);
        if (pos >= len) pos = len;
    }
    return BACKEND_COUNT - 1; /* scalar always probes OK; not reached */
}

static const char *env_backend(void) {
#ifdef LLA_FREESTANDING
    return NULL;
#else
    return getenv("LLA_BACKEND");
#endif
}

/*
 * Resolves a spec "name[:device]" (from `source`: the argument, LLA_BACKEND or the
 * default) to a table index and device: the name must be compiled in and its probe
 * must succeed, and the device must exist.  "P.D" device suffixes are OpenCL's
 * platform.device form and are passed through to that backend's open.  why receives
 * the reason for the choice.  Errors list the available backends.
 */
static lla_status resolve_spec(const char *spec, const char *source, int *index_out,
                               int *device_out, const char **dev_spec_out, char *why,
                               size_t why_len) {
    const char *colon = strchr(spec, ':');
    size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
    int index = -1, device = 0, devices = 0, i, dotted = 0;
    char reason[160], avail[256];
    if (colon) {
        const char *c = colon + 1;
        if (!*c)
            return lla__set_error(LLA_ERR_BACKEND, "backend '%s' (from %s): empty device after ':'",
                                  spec, source);
        if (*c < '0' || *c > '9')
            return lla__set_error(LLA_ERR_BACKEND,
                                  "backend '%s' (from %s): bad device '%s' (expected a number)",
                                  spec, source, colon + 1);
        while (*c >= '0' && *c <= '9' && device <= 100000) device = device * 10 + (*c++ - '0');
        if (*c == '.' && c[1] >= '0' && c[1] <= '9') { /* OpenCL "P.D" */
            dotted = 1;
            for (++c; *c >= '0' && *c <= '9'; ++c) {}
        }
        if (*c)
            return lla__set_error(LLA_ERR_BACKEND,
                                  "backend '%s' (from %s): bad device '%s' (expected a number, "
                                  "or P.D for opencl)", spec, source, colon + 1);
    }
    if (name_is("auto", spec, name_len)) {
        if (colon)
            return lla__set_error(LLA_ERR_BACKEND,
                                  "backend '%s' (from %s): 'auto' takes no device; name a "
                                  "backend to pick a device", spec, source);
        *index_out = auto_index(why, why_len);
        *device_out = 0;
        *dev_spec_out = NULL;
        return LLA_OK;
    }
    for (i = 0; i < BACKEND_COUNT; ++i)
        if (name_is(backend_table[i]->name, spec, name_len)) index = i;
    if (index < 0) {
        list_available(avail, sizeof avail);
        return lla__set_error(LLA_ERR_BACKEND, "unknown backend '%s' (from %s); available: %s",
                              spec, source, avail);
    }
    if (backend_table[index]->probe(reason, sizeof reason, &devices) != LLA_OK) {
        list_available(avail, sizeof avail);
        return lla__set_error(LLA_ERR_BACKEND,
                              "backend '%s' (from %s) is not usable here: %s; available: %s",
                              backend_table[index]->name, source, reason, avail);
    }
    if (dotted && strcmp(backend_table[index]->name, "opencl") != 0)
        return lla__set_error(LLA_ERR_BACKEND,
                              "backend '%s' (from %s): device '%s' uses the OpenCL P.D form; "
                              "%s takes a device number 0..%d",
                              spec, source, colon + 1, backend_table[index]->name, devices - 1);
    if (colon && !dotted && device >= devices)
        return lla__set_error(LLA_ERR_BACKEND,
                              "backend '%s' (from %s): device %d does not exist (%d found: 0..%d)",
                              spec, source, device, devices, devices - 1);
    lla__snprintf(why, why_len, "%s selects %s explicitly (%s)", source,
                  backend_table[index]->name, reason);
    *index_out = index;
    *device_out = device;
    *dev_spec_out = colon ? colon + 1 : NULL;
    return LLA_OK;
}

/* The spec lla_backend_open(NULL) uses, and where it comes from. */
static const char *default_spec(const char **source) {
    const char *env = env_backend();
    if (env && env[0]) {
        *source = "LLA_BACKEND";
        return env;
    }
    *source = "default";
    return "auto";
}

lla_status lla_backend_auto_choice(char *buf, size_t len) {
    const char *source, *spec = default_spec(&source), *dev_spec;
    char why[512];
    int index, device;
    lla_status st;
    if (!buf || len == 0) return lla__set_error(LLA_ERR_ARG, "buf is NULL or empty");
    st = resolve_spec(spec, source, &index, &device, &dev_spec, why, sizeof why);
    if (st != LLA_OK) {
        lla__snprintf(buf, len, "LLA_BACKEND=%s cannot be used: %s", spec, lla_last_error());
        return st;
    }
    if (name_is("auto", spec, strlen(spec)))
        lla__snprintf(buf, len, "%s: %s", source[0] == 'L' ? "LLA_BACKEND=auto" : "no LLA_BACKEND",
                      why);
    else
        lla__snprintf(buf, len, "LLA_BACKEND=%s: %s", spec, why);
    return LLA_OK;
}

/* One slot per backend in the freestanding build (no heap); hosted builds allocate. */
#ifdef LLA_FREESTANDING
static lla_backend static_slots[BACKEND_COUNT];
static int static_used[BACKEND_COUNT];
#endif

static void merge_ops(lla_backend *b, const lla_backend_ops *own) {
#define TAKE(field) if (own->field) b->ops.field = own->field
    b->ops = lla_scalar_ops;
    b->ops.name = own->name;
    b->ops.api_version = own->api_version;
    b->ops.probe = own->probe;
    b->ops.device_name = own->device_name;
    b->ops.open = own->open;
    b->ops.close = own->close;
    b->ops.memory_kind = own->memory_kind;
    TAKE(supports);
    TAKE(forward_workspace);
    TAKE(forward);
    TAKE(backward_workspace);
    TAKE(backward);
    TAKE(decode_step);
    TAKE(mem_alloc);
    TAKE(mem_free);
    TAKE(mem_upload);
    TAKE(mem_download);
    TAKE(mem_zero);
    TAKE(synchronize);
    TAKE(set_threads);
#undef TAKE
    if (own != &lla_scalar_ops) {
        if (!own->forward) lla__log("%s: forward not implemented, using scalar", own->name);
        if (!own->backward) lla__log("%s: backward not implemented, using scalar", own->name);
        if (!own->decode_step) lla__log("%s: decode_step not implemented, using scalar", own->name);
    }
}

lla_status lla_backend_open(const char *spec, lla_backend **out) {
    const char *dev_spec = NULL, *source = "argument";
    int index = -1, device = 0;
    lla_backend *b;
    lla_status st;
    char why[512];

    if (!out) return lla__set_error(LLA_ERR_ARG, "out is NULL");
    if (!spec || !spec[0]) spec = default_spec(&source);
    st = resolve_spec(spec, source, &index, &device, &dev_spec, why, sizeof why);
    if (st != LLA_OK) return st;
    lla__log("backend: %s", why);
    if (backend_table[index]->api_version != LLA_API_VERSION)
        return lla__set_error(LLA_ERR_BACKEND, "backend '%s' has API version %d, library %d",
                              backend_table[index]->name, backend_table[index]->api_version,
                              LLA_API_VERSION);
#ifdef LLA_FREESTANDING
    if (static_used[index])
        return lla__set_error(LLA_ERR_NOMEM, "backend '%s' is already open (one handle per backend without a heap)",
                              backend_table[index]->name);
    b = &static_slots[index];
    static_used[index] = 1;
#else
    b = (lla_backend *)calloc(1, sizeof *b);
    if (!b) return lla__set_error(LLA_ERR_NOMEM, "cannot allocate the backend handle");
#endif
    memset(b, 0, sizeof *b);
    b->own = backend_table[index];
    merge_ops(b, b->own);
    b->device = device;
    lla__snprintf(b->description, sizeof b->description, "%s", b->own->name);
    if (b->ops.open) {
        st = b->ops.open(b, device, dev_spec);
        if (st != LLA_OK) {
#ifdef LLA_FREESTANDING
            static_used[index] = 0;
#else
            free(b);
#endif
            return st;
        }
    }
    lla__log("opened backend %s (%s)", b->own->name, b->description);
    lla__clear_error();
    *out = b;
    return LLA_OK;
}

void lla_backend_close(lla_backend *b) {
    if (!b) return;
    if (b->ops.close) b->ops.close(b);
#ifdef LLA_FREESTANDING
    {
        int i;
        for (i = 0; i < BACKEND_COUNT; ++i)
            if (b == &static_slots[i]) static_used[i] = 0;
    }
#else
    free(b);
#endif
}

const char *lla_backend_name(const lla_backend *b) { return b ? b->own->name : "(null)"; }
const char *lla_backend_description(const lla_backend *b) {
    return b ? b->description : "(null)";
}
lla_memory_kind lla_backend_memory_kind(const lla_backend *b) {
    return b ? b->ops.memory_kind : LLA_MEMORY_HOST;
}
