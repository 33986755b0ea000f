/* Compiled kernels for the descriptor's hot path (scanner/kernels.py says when they are used).
 *
 * Each kernel repeats, element by element, the numpy code it stands in for: the same float32
 * or float64 operations in the same order, so the results are the same bits (tests/unit/
 * test_kernels.py compares them on every input kind). Built with -ffp-contract=off
 * -fno-fast-math (setup.py): a fused multiply-add rounds once where numpy rounds twice.
 *
 * Plain CPython C API and the buffer protocol (no numpy headers): the Python side allocates
 * every array and checks dtypes and shapes; the kernels check buffer sizes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int check_len(Py_buffer *b, Py_ssize_t items, Py_ssize_t itemsize, const char *name) {
    if (b->len != items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, b->len, items * itemsize);
        return -1;
    }
    return 0;
}

/* density(pts, n, inv_cell, reach, out) -> bool
 *
 * scanner.features.sampling.density_weights up to the division by the mean: out[i] =
 * 1 / max(density_i, 1e-12) for (3, n) float64 points. False (out unspecified) when a
 * coordinate is NaN or the grid would be huge: the numpy code then decides what happens. */
static PyObject *density(PyObject *self, PyObject *args) {
    Py_buffer pb, ob;
    Py_ssize_t n;
    double inv_cell, reach;
    if (!PyArg_ParseTuple(args, "y*nddw*", &pb, &n, &inv_cell, &reach, &ob)) return NULL;
    PyObject *result = NULL;
    double *frac = NULL, *grid = NULL, *tmp = NULL, *share = NULL, *minus = NULL;
    int64_t *flat = NULL;
    if (n <= 0 || check_len(&pb, 3 * n, 8, "pts") || check_len(&ob, n, 8, "out")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "no points");
        goto done;
    }
    if (!(reach >= 0.0 && inv_cell > 0.0 && reach * inv_cell < 1073741824.0)) {
        result = Py_False; /* a reach of 2^30 cells or more (not the scanner's 38): numpy's */
        Py_INCREF(result);
        goto done;
    }
    const double *pts = (const double *)pb.buf;
    double *out = (double *)ob.buf;
    frac = (double *)malloc(sizeof(double) * 3 * (size_t)n);
    flat = (int64_t *)malloc(sizeof(int64_t) * 3 * (size_t)n);
    if (!frac || !flat) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t lo[3], hi[3];
    for (int r = 0; r < 3; r++) {
        const double *p = pts + (size_t)r * n;
        double *f = frac + (size_t)r * n;
        int64_t *c = flat + (size_t)r * n;
        int bad = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            double x = p[i];
            bad |= x != x;
            double q = x > -reach ? (x < reach ? x : reach) : -reach; /* np.clip (a NaN is refused below) */
            q *= inv_cell;
            /* floor(q), exactly, as |q| < 2^30: truncate, one down where that rounded up; a zero
             * keeps its sign (floor(-0.0) is -0.0, and q - floor(q) is then +0.0, as numpy's) */
            int32_t t = (int32_t)q;
            double base = (double)t;
            int below = base > q;
            base -= below;
            if (q == 0.0) base = q;
            f[i] = q - base;
            c[i] = (int64_t)t - below;
        }
        if (bad) {
            result = Py_False;
            Py_INCREF(result);
            goto done;
        }
        int64_t mn = c[0], mx = c[0];
        for (Py_ssize_t i = 1; i < n; i++) {
            if (c[i] < mn) mn = c[i];
            if (c[i] > mx) mx = c[i];
        }
        lo[r] = mn;
        hi[r] = mx;
    }
    int64_t dims[3], steps[3];
    for (int r = 0; r < 3; r++) dims[r] = (hi[r] - (lo[r] - 2)) + 4; /* cells -= min - 2; max + 4 */
    steps[0] = dims[1] * dims[2];
    steps[1] = dims[2];
    steps[2] = 1;
    if ((double)dims[0] * (double)dims[1] * (double)dims[2] > 1e9) {
        result = Py_False; /* a grid of more than 1e9 cells (the scanner's is at most 82^3): numpy's */
        Py_INCREF(result);
        goto done;
    }
    int64_t cells = dims[0] * dims[1] * dims[2];
    /* flat cell of each point (row 0 of ``flat`` reused) */
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t c0 = flat[i] - (lo[0] - 2), c1 = flat[n + i] - (lo[1] - 2), c2 = flat[2 * n + i] - (lo[2] - 2);
        flat[i] = c0 * steps[0] + c1 * steps[1] + c2;
    }
    int64_t corner[8];
    for (int dx = 0; dx < 2; dx++)
        for (int dy = 0; dy < 2; dy++)
            for (int dz = 0; dz < 2; dz++) corner[dx * 4 + dy * 2 + dz] = dx * steps[0] + dy * steps[1] + dz;
    grid = (double *)calloc((size_t)cells, sizeof(double));
    tmp = (double *)malloc(sizeof(double) * (size_t)cells);
    share = (double *)malloc(sizeof(double) * 8 * (size_t)n);
    minus = (double *)malloc(sizeof(double) * 3 * (size_t)n);
    if (!grid || !tmp || !share || !minus) {
        PyErr_NoMemory();
        goto done;
    }
    /* share[dx, dy, dz] = (x[dx] * y[dy]) * z[dz] with x = (1 - f, f), as numpy's (8, N) array:
     * the 1 - f rows first, then one product loop per corner */
    for (Py_ssize_t i = 0; i < 3 * n; i++) minus[i] = 1.0 - frac[i];
    for (int k = 0; k < 8; k++) {
        const double *x = (k >> 2 ? frac : minus), *y = ((k >> 1) & 1 ? frac : minus) + n;
        const double *z = (k & 1 ? frac : minus) + 2 * (size_t)n;
        double *restrict s = share + (size_t)k * n;
        for (Py_ssize_t i = 0; i < n; i++) s[i] = (x[i] * y[i]) * z[i];
    }
    /* np.bincount(ids.reshape(-1), weights=share.reshape(-1)): corner by corner, point by point */
    for (int k = 0; k < 8; k++) {
        const double *s = share + (size_t)k * n;
        double *g = grid + corner[k];
        for (Py_ssize_t i = 0; i < n; i++) g[flat[i]] += s[i];
    }
    /* _blur_flat, axis 0, then 1, then 2: out = g + g; out[step:] += g[:-step]; out[:-step] +=
     * g[step:] - per cell ((g + g) + left) + right, without the terms past either end */
    for (int r = 0; r < 3; r++) {
        int64_t step = steps[r] < cells ? steps[r] : cells;
        const double *restrict g = grid;
        double *restrict o = tmp;
        for (int64_t i = 0; i < step; i++) o[i] = g[i] + g[i];
        for (int64_t i = step; i < cells; i++) o[i] = (g[i] + g[i]) + g[i - step];
        for (int64_t i = 0; i < cells - step; i++) o[i] += g[i + step];
        double *swap = grid;
        grid = tmp;
        tmp = swap;
    }
    /* (grid.take(ids) * share).sum(axis=0): row by row (corner 0 first), then 1 / max(d, 1e-12) */
    for (Py_ssize_t i = 0; i < n; i++) out[i] = grid[flat[i]] * share[i];
    for (int k = 1; k < 8; k++) {
        const double *s = share + (size_t)k * n;
        const double *g = grid + corner[k];
        for (Py_ssize_t i = 0; i < n; i++) out[i] += g[flat[i]] * s[i];
    }
    for (Py_ssize_t i = 0; i < n; i++) out[i] = 1.0 / (out[i] < 1e-12 ? 1e-12 : out[i]);
    result = Py_True;
    Py_INCREF(result);
done:
    free(frac);
    free(flat);
    free(grid);
    free(tmp);
    free(share);
    free(minus);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&ob);
    return result;
}

static PyMethodDef methods[] = {
    {"density", density, METH_VARARGS, "density_weights before the mean (see scanner/kernels.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "scanner._kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
