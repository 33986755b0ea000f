/* What the compiled kernels (scanner/_kernels.c, _patch_kernels.c, _shape_kernels.c) share:
 * the precision guard, the buffer-size check and the project's splitmix64 (scanner/mesh.py's
 * _splitmix). Included once by each; every function is static. */
#ifndef MESHSCAN_KERNELS_COMMON_H
#define MESHSCAN_KERNELS_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* float and double operations must round in their own precision, as numpy's loops do: where
 * the compiler evaluates in extended precision (x87, FLT_EVAL_METHOD 2) the extensions are not
 * built (setup.py declares them optional) and the numpy code runs */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "meshscan's kernels need FLT_EVAL_METHOD 0 (float and double arithmetic in their own precision)"
#endif

/* 0, or -1 with a ValueError when the buffer does not hold ``items`` of ``itemsize`` bytes */
static int check_len(Py_buffer *b, Py_ssize_t items, Py_ssize_t itemsize, const char *name) {
    if (b->len != items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, b->len, items * itemsize);
        return -1;
    }
    return 0;
}

static inline uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

#endif
