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

/* legs(pt, w, n, pairs, lengths, weights, cos, wc)
 *
 * scanner.features.families._legs: for each pair (a, b) (int64 rows) and each point i, the
 * float32 differences u = p[i + a] - p[i], v = p[i + b] - p[i] (indices mod n), the sums
 * (u0 u0 + u1 u1) + u2 u2 in float32, their square roots, the cosine and the float64 weights. */
static PyObject *legs(PyObject *self, PyObject *args) {
    Py_buffer pb, wb, prb, lb, web, cb, wcb;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*y*ny*w*w*w*w*", &pb, &wb, &n, &prb, &lb, &web, &cb, &wcb)) return NULL;
    PyObject *result = NULL;
    float *ext = NULL;
    double *wext = NULL;
    Py_ssize_t npairs = prb.len / 16, m = npairs * n;
    if (n <= 0 || check_len(&pb, 3 * n, 4, "pt") || check_len(&wb, n, 8, "w") || check_len(&prb, 2 * npairs, 8, "pairs") ||
        check_len(&lb, 2 * m, 4, "lengths") || check_len(&web, 2 * m, 8, "weights") || check_len(&cb, m, 4, "cos") ||
        check_len(&wcb, m, 8, "wc")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "no points");
        goto done;
    }
    const int64_t *pairs = (const int64_t *)prb.buf;
    for (Py_ssize_t t = 0; t < npairs; t++) {
        if (pairs[2 * t] < 1 || pairs[2 * t] >= n || pairs[2 * t + 1] < 1 || pairs[2 * t + 1] >= n) {
            PyErr_SetString(PyExc_ValueError, "shift out of range");
            goto done;
        }
    }
    /* each row twice over, so that point i + a (mod n) is at i + a: straight loops */
    ext = (float *)malloc(sizeof(float) * 6 * (size_t)n);
    wext = (double *)malloc(sizeof(double) * 2 * (size_t)n);
    if (!ext || !wext) {
        PyErr_NoMemory();
        goto done;
    }
    for (int r = 0; r < 3; r++) {
        memcpy(ext + 2 * (size_t)r * n, (const float *)pb.buf + (size_t)r * n, sizeof(float) * (size_t)n);
        memcpy(ext + (2 * (size_t)r + 1) * n, (const float *)pb.buf + (size_t)r * n, sizeof(float) * (size_t)n);
    }
    memcpy(wext, wb.buf, sizeof(double) * (size_t)n);
    memcpy(wext + n, wb.buf, sizeof(double) * (size_t)n);
    const float *p0 = ext, *p1 = ext + 2 * n, *p2 = ext + 4 * n;
    const double *w = wext;
    for (Py_ssize_t t = 0; t < npairs; t++) {
        Py_ssize_t a = (Py_ssize_t)pairs[2 * t], b = (Py_ssize_t)pairs[2 * t + 1], base = t * n;
        float *restrict lu = (float *)lb.buf + base, *restrict lv = (float *)lb.buf + m + base;
        float *restrict cs = (float *)cb.buf + base;
        for (Py_ssize_t i = 0; i < n; i++) {
            float u0 = p0[i + a] - p0[i], u1 = p1[i + a] - p1[i], u2 = p2[i + a] - p2[i];
            float v0 = p0[i + b] - p0[i], v1 = p1[i + b] - p1[i], v2 = p2[i + b] - p2[i];
            float uu = u0 * u0 + u1 * u1;
            uu = uu + u2 * u2;
            float vv = v0 * v0 + v1 * v1;
            vv = vv + v2 * v2;
            float uv = u0 * v0 + u1 * v1;
            uv = uv + u2 * v2;
            float denom = sqrtf(uu * vv);
            lu[i] = sqrtf(uu);
            lv[i] = sqrtf(vv);
            cs[i] = uv / (denom > 0 ? denom : 1.0f);
        }
        double *restrict wu = (double *)web.buf + base, *restrict wv = (double *)web.buf + m + base;
        double *restrict wc = (double *)wcb.buf + base;
        for (Py_ssize_t i = 0; i < n; i++) {
            double x = w[i + a] * w[i], y = w[i + b] * w[i];
            wu[i] = x;
            wv[i] = y;
            wc[i] = (x * y) / w[i];
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    free(ext);
    free(wext);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&prb);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&web);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&wcb);
    return result;
}

/* bins(values, a, scale, fine, weights, counts) -> bool
 *
 * scanner.features.families._cdf's fine histogram: counts[clip(int((v - a) * scale), 0,
 * fine - 1)] += weight, in input order, with ``(v - a) * scale`` in float32 (a and scale are
 * float32, as numpy takes a Python float with a float32 array). False when a scaled value is
 * NaN or outside int32's range (counts then unspecified): the numpy code takes those. */
static PyObject *bins(PyObject *self, PyObject *args) {
    Py_buffer vb, wb, cb;
    float a, scale;
    Py_ssize_t fine;
    if (!PyArg_ParseTuple(args, "y*ffny*w*", &vb, &a, &scale, &fine, &wb, &cb)) return NULL;
    PyObject *result = NULL;
    int32_t *idx = NULL;
    Py_ssize_t n = vb.len / 4;
    if (fine <= 0 || fine > (1 << 24) || check_len(&vb, n, 4, "values") || check_len(&wb, n, 8, "weights") ||
        check_len(&cb, fine, 8, "counts")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "no bins");
        goto done;
    }
    const float *v = (const float *)vb.buf;
    const double *wt = (const double *)wb.buf;
    double *counts = (double *)cb.buf;
    idx = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!idx) {
        PyErr_NoMemory();
        goto done;
    }
    /* the bins first (a loop the compiler vectorises), then the sums: truncating the value
     * clamped to [0, fine - 1] is clip(trunc(value), 0, fine - 1) */
    const float top = (float)(fine - 1);
    int bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        float s = (v[i] - a) * scale;
        bad |= !(s > -2147483648.0f && s < 2147483648.0f);
        float c = s >= 0.0f ? s : 0.0f;
        c = c <= top ? c : top;
        idx[i] = (int32_t)c;
    }
    result = bad ? Py_False : Py_True;
    if (!bad) {
        memset(counts, 0, sizeof(double) * (size_t)fine);
        for (Py_ssize_t i = 0; i < n; i++) counts[idx[i]] += wt[i];
    }
    Py_INCREF(result);
done:
    free(idx);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&cb);
    return result;
}

static PyMethodDef methods[] = {
    {"density", density, METH_VARARGS, "density_weights before the mean (see scanner/kernels.py)"},
    {"legs", legs, METH_VARARGS, "the legs, cosines and weights of _legs (see scanner/kernels.py)"},
    {"bins", bins, METH_VARARGS, "_cdf's weighted fine histogram (see scanner/kernels.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "scanner._kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
