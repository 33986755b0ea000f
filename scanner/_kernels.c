/* Compiled kernels for the descriptor's hot path (scanner/kernels.py says when they are used).
 *
 * Each kernel repeats, element by element, the numpy code it stands in for: the same float32
 * or float64 operations in the same order, so the results are the same bits (tests/unit/
 * test_kernels.py compares them on every input kind). Built with -ffp-contract=off
 * -fno-fast-math (setup.py): a fused multiply-add rounds once where numpy rounds twice.
 *
 * Plain CPython C API and the buffer protocol (no numpy headers): the Python side allocates
 * every array and checks dtypes and shapes; the kernels check buffer sizes. The arithmetic runs
 * without the GIL, as numpy's loops do, so that scanner.parallel's helper thread is not stopped
 * while the other thread samples (measured: two threads running the legs kernel 0.93x one
 * thread's speed while it held the GIL, 1.73x since). */
#include "_kernels_common.h"

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
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (int r = 0; r < 3 && !bad; r++) {
        const double *p = pts + (size_t)r * n;
        double *f = frac + (size_t)r * n;
        int64_t *c = flat + (size_t)r * n;
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
        int64_t mn = c[0], mx = c[0];
        for (Py_ssize_t i = 1; i < n; i++) {
            if (c[i] < mn) mn = c[i];
            if (c[i] > mx) mx = c[i];
        }
        lo[r] = mn;
        hi[r] = mx;
    }
    Py_END_ALLOW_THREADS;
    if (bad) {
        result = Py_False;
        Py_INCREF(result);
        goto done;
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
    Py_BEGIN_ALLOW_THREADS;
    /* flat cell of each point (row 0 of ``flat`` reused) */
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t c0 = flat[i] - (lo[0] - 2), c1 = flat[n + i] - (lo[1] - 2), c2 = flat[2 * n + i] - (lo[2] - 2);
        flat[i] = c0 * steps[0] + c1 * steps[1] + c2;
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
    Py_END_ALLOW_THREADS;
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
    Py_BEGIN_ALLOW_THREADS;
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
    Py_END_ALLOW_THREADS;
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

/* counts[idx[i]] += wt[i] in input order (np.bincount's sums), counts zeroed first */
static void weighted_counts(const int32_t *idx, const double *wt, Py_ssize_t n, double *counts, Py_ssize_t fine) {
    memset(counts, 0, sizeof(double) * (size_t)fine);
    for (Py_ssize_t i = 0; i < n; i++) counts[idx[i]] += wt[i];
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
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n; i++) {
        float s = (v[i] - a) * scale;
        bad |= !(s > -2147483648.0f && s < 2147483648.0f);
        float c = s >= 0.0f ? s : 0.0f;
        c = c <= top ? c : top;
        idx[i] = (int32_t)c;
    }
    if (!bad) weighted_counts(idx, wt, n, counts, fine);
    Py_END_ALLOW_THREADS;
    result = bad ? Py_False : Py_True;
    Py_INCREF(result);
done:
    free(idx);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&cb);
    return result;
}

/* cos_bins(cos, steps, top, fine, a, scale, weights, counts) -> bool
 *
 * A3's fine histogram from the cosines, without an arccos: counts[top - #{j : steps[j] <= c}]
 * += weight, in input order, for each cosine c (float32), as np.searchsorted and np.bincount
 * count them (scanner.features.families.A3). ``steps`` (float32, ascending, in [-1, 1]) are
 * where the bin of the correctly rounded angle drops by one (families._angle_steps); ``top`` is
 * the bin of c = -1 and ``fine`` the number of bins (counts' length); ``a`` and ``scale`` map an
 * angle to its bin. A cosine beyond +-1 counts as +-1. The count of steps below c is guessed
 * from an approximate angle (Abramowitz and Stegun 4.4.45, within 7e-5 of the angle, in
 * float32: a bin is 0.01 wide) and then moved to the steps themselves, so it is exact whatever
 * the guess. False when a cosine is NaN (counts then unspecified): the numpy code takes those. */
static PyObject *cos_bins(PyObject *self, PyObject *args) {
    Py_buffer vb, sb, wb, cb;
    Py_ssize_t top, fine;
    double a, scale;
    if (!PyArg_ParseTuple(args, "y*y*nnddy*w*", &vb, &sb, &top, &fine, &a, &scale, &wb, &cb)) return NULL;
    PyObject *result = NULL;
    int32_t *idx = NULL;
    Py_ssize_t n = vb.len / 4, m = sb.len / 4;
    if (top < m || top >= fine || fine > (1 << 24) || check_len(&vb, n, 4, "cos") ||
        check_len(&sb, m, 4, "steps") || check_len(&wb, n, 8, "weights") || check_len(&cb, fine, 8, "counts")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "no bins");
        goto done;
    }
    const float *v = (const float *)vb.buf, *steps = (const float *)sb.buf;
    const double *wt = (const double *)wb.buf;
    double *counts = (double *)cb.buf;
    idx = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!idx) {
        PyErr_NoMemory();
        goto done;
    }
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    const float pi = 3.14159265f, fa = (float)a, fscale = (float)scale, ftop = (float)top;
    const int32_t itop = (int32_t)top, im = (int32_t)m;
    for (Py_ssize_t i = 0; i < n; i++) { /* the guess (float32, a loop the compiler vectorises) */
        float c = v[i];
        bad |= c != c;
        float x = c >= -1.0f ? c : -1.0f;
        x = x <= 1.0f ? x : 1.0f;
        float t = fabsf(x);
        float r = sqrtf(1.0f - t) * (1.5707288f + t * (-0.2121144f + t * (0.0742610f + t * -0.0187293f)));
        float e = ((x >= 0.0f ? r : pi - r) - fa) * fscale; /* the angle's bin, roughly */
        e = e >= 0.0f ? e : 0.0f;
        e = e <= ftop ? e : ftop;
        int32_t k = itop - (int32_t)e;
        idx[i] = k <= im ? k : im;
    }
    if (!bad) {
        for (Py_ssize_t i = 0; i < n; i++) { /* exact: move the guess to the steps' count */
            float c = v[i];
            Py_ssize_t k = idx[i];
            while (k > 0 && steps[k - 1] > c) k--;
            while (k < m && steps[k] <= c) k++;
            idx[i] = (int32_t)(top - k);
        }
        weighted_counts(idx, wt, n, counts, fine);
    }
    Py_END_ALLOW_THREADS;
    result = bad ? Py_False : Py_True;
    Py_INCREF(result);
done:
    free(idx);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&cb);
    return result;
}

/* unsigned 64-bit keys sorted ascending: least significant byte first, eight stable counting
 * passes (a byte every key shares is skipped); ``tmp`` as long as ``keys``. */
static void radix_sort64(uint64_t *keys, uint64_t *tmp, Py_ssize_t n) {
    size_t count[256];
    for (int pass = 0; pass < 8; pass++) {
        int shift = 8 * pass;
        memset(count, 0, sizeof(count));
        for (Py_ssize_t i = 0; i < n; i++) count[(keys[i] >> shift) & 255]++;
        if (n == 0 || count[(keys[0] >> shift) & 255] == (size_t)n) continue;
        size_t at = 0;
        for (int d = 0; d < 256; d++) {
            size_t c = count[d];
            count[d] = at;
            at += c;
        }
        for (Py_ssize_t i = 0; i < n; i++) tmp[count[(keys[i] >> shift) & 255]++] = keys[i];
        memcpy(keys, tmp, sizeof(uint64_t) * (size_t)n);
    }
}

/* unsigned 64-bit keys sorted ascending. Hashed keys spread evenly: a counting pass on their
 * top bits (about two keys a bucket) puts each in its bucket, an insertion sort orders each
 * bucket; a crowded bucket (keys not spread: not the sampler's) takes the radix sort. */
static void sort64(uint64_t *keys, uint64_t *tmp, Py_ssize_t n) {
    if (n < 2) return;
    int bits = 1;
    while (bits < 16 && ((Py_ssize_t)1 << (bits + 1)) < n) bits++; /* about two keys a bucket */
    size_t nb = (size_t)1 << bits;
    size_t *start = (size_t *)calloc(nb + 1, sizeof(size_t));
    if (!start) {
        radix_sort64(keys, tmp, n);
        return;
    }
    int sh = 64 - bits;
    for (Py_ssize_t i = 0; i < n; i++) start[(keys[i] >> sh) + 1]++;
    size_t crowded = 0;
    for (size_t b = 0; b < nb; b++) {
        if (start[b + 1] > crowded) crowded = start[b + 1];
        start[b + 1] += start[b];
    }
    if (crowded > 32) {
        free(start);
        radix_sort64(keys, tmp, n);
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++) tmp[start[keys[i] >> sh]++] = keys[i]; /* start[b] -> end of b */
    size_t lo = 0;
    for (size_t b = 0; b < nb; b++) {
        size_t hi = start[b];
        for (size_t i = lo + 1; i < hi; i++) {
            uint64_t k = tmp[i];
            size_t j = i;
            while (j > lo && tmp[j - 1] > k) {
                tmp[j] = tmp[j - 1];
                j--;
            }
            tmp[j] = k;
        }
        lo = hi;
    }
    memcpy(keys, tmp, sizeof(uint64_t) * (size_t)n);
    free(start);
}

/* sort(keys): uint64 keys sorted in place by sort64 (for the tests: both of its routes) */
static PyObject *sort(PyObject *self, PyObject *args) {
    Py_buffer kb;
    if (!PyArg_ParseTuple(args, "w*", &kb)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = kb.len / 8;
    uint64_t *tmp = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (!tmp) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    sort64((uint64_t *)kb.buf, tmp, n);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    free(tmp);
    PyBuffer_Release(&kb);
    return result;
}

/* points(tk, counts, frame, n_points, r2x, r2y, out) -> int
 *
 * The end of scanner.features.sampling.sample_surface, after the stratified counts: the
 * sampled triangles' seeds ``tk`` (uint64) and point counts (int64, all > 0), their corner
 * and edges ``frame`` ((9, C) float32) -> the points in canonical order, (3, n_points)
 * float32 rows of ``out``; returns how many were written (fewer when the counts sum to less).
 * As the numpy code: point keys splitmix(tk + golden * (within + 1)), sorted with the index
 * in the low bits (the keys are then distinct: any sort gives the same order), the first
 * n_points kept, R2 coordinates frac(unit(splitmix(tk ^ shift)) + within * r2) in float64,
 * sqrt, float32 weights, and (corner + w1 edge1) + w2 edge2 in float32. */
static PyObject *points(PyObject *self, PyObject *args) {
    Py_buffer tb, cb, fb, ob;
    Py_ssize_t n_points;
    double r2x, r2y;
    if (!PyArg_ParseTuple(args, "y*y*y*nddw*", &tb, &cb, &fb, &n_points, &r2x, &r2y, &ob)) return NULL;
    PyObject *result = NULL;
    uint64_t *keys = NULL, *tmp = NULL;
    int64_t *tri = NULL, *start = NULL;
    Py_ssize_t nc = tb.len / 8;
    if (n_points < 0 || check_len(&tb, nc, 8, "tk") || check_len(&cb, nc, 8, "counts") ||
        check_len(&fb, 9 * nc, 4, "frame") || check_len(&ob, 3 * n_points, 4, "out")) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "n_points < 0");
        goto done;
    }
    const uint64_t *tk = (const uint64_t *)tb.buf;
    const int64_t *counts = (const int64_t *)cb.buf;
    const float *frame = (const float *)fb.buf;
    float *out = (float *)ob.buf;
    int64_t total = 0;
    for (Py_ssize_t t = 0; t < nc; t++) {
        if (counts[t] < 0 || counts[t] > ((int64_t)1 << 40)) {
            PyErr_SetString(PyExc_ValueError, "a point count out of range");
            goto done;
        }
        total += counts[t];
    }
    if (total > ((int64_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "too many points");
        goto done;
    }
    Py_ssize_t L = (Py_ssize_t)total;
    keys = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(L ? L : 1));
    tmp = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(L ? L : 1));
    tri = (int64_t *)malloc(sizeof(int64_t) * (size_t)(L ? L : 1));
    start = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nc ? nc : 1));
    if (!keys || !tmp || !tri || !start) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t m = L < n_points ? L : n_points;
    Py_BEGIN_ALLOW_THREADS;
    /* shift = max(1, (L - 1).bit_length()): the index's bits */
    int shift = 1;
    while (shift < 64 && ((uint64_t)1 << shift) < (uint64_t)L) shift++;
    uint64_t low = ((uint64_t)1 << shift) - 1;
    Py_ssize_t j = 0;
    for (Py_ssize_t t = 0; t < nc; t++) {
        start[t] = j;
        for (int64_t w = 0; w < counts[t]; w++, j++) {
            uint64_t step = 0x9E3779B97F4A7C15ull * ((uint64_t)w + 1);
            keys[j] = (splitmix(tk[t] + step) & ~low) | (uint64_t)j;
            tri[j] = t;
        }
    }
    sort64(keys, tmp, L);
    const double to_unit = 1.0 / 9007199254740992.0; /* 2^-53 */
    for (Py_ssize_t k = 0; k < m; k++) {
        Py_ssize_t at = (Py_ssize_t)(keys[k] & low);
        int64_t t = tri[at];
        double within = (double)(at - start[t]); /* the point's rank in its triangle */
        double u1 = (double)(splitmix(tk[t] ^ 0xA0761D6478BD642Full) >> 11) * to_unit + within * r2x;
        double u2 = (double)(splitmix(tk[t] ^ 0xE7037ED1A0B428DBull) >> 11) * to_unit + within * r2y;
        u1 -= floor(u1);
        u2 -= floor(u2);
        double r1 = sqrt(u1), r2 = u2;
        float w1 = (float)(r1 * (1 - r2)), w2 = (float)(r1 * r2);
        for (int c = 0; c < 3; c++) {
            float v = frame[(size_t)c * nc + t] + w1 * frame[(size_t)(3 + c) * nc + t];
            out[(size_t)c * n_points + k] = v + w2 * frame[(size_t)(6 + c) * nc + t];
        }
    }
    Py_END_ALLOW_THREADS;
    result = PyLong_FromSsize_t(m);
done:
    free(keys);
    free(tmp);
    free(tri);
    free(start);
    PyBuffer_Release(&tb);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&fb);
    PyBuffer_Release(&ob);
    return result;
}

/* float32 -> int64 as numpy casts it, for 0 <= v < 2^63; -1 for anything else (NaN, infinite,
 * negative or too large: the caller then leaves the surface to numpy) */
static inline int64_t to_int64(float v) {
    if (!(v >= 0.0f && v < 9223372036854775808.0f)) return -1;
    return (int64_t)v;
}

/* seeds(rows, centroid, scale, corner_keys, order, intrinsic) -> bool
 *
 * scanner.features.sampling.intrinsic_keys up to the seeds (one block of F <= _CHUNK
 * triangles): ``rows`` the centred corners as (corner, coordinate, triangle) float32, ``centroid``
 * three float32, ``scale`` float32, ``corner_keys`` (F, 3) uint64 -> ``order`` (3, F) int64 (the
 * corner of each rank) and ``intrinsic`` (F) uint64. _measures: the float32 length of the edge
 * opposite each corner and the corner's distance to the centroid, ((x x + y y) + z z), sqrt,
 * times scale, truncated (high bits << 24 | low 24 bits clipped); _order_corners' ranks from
 * the three pairwise comparisons; the three chained splitmix of the measures in rank order.
 * False when a measure is not a finite float32 below 2^63 (numpy's cast of those is left to
 * numpy). */
static PyObject *seeds(PyObject *self, PyObject *args) {
    Py_buffer rb, kb, ob, ib;
    float cx, cy, cz, scale;
    if (!PyArg_ParseTuple(args, "y*ffffy*w*w*", &rb, &cx, &cy, &cz, &scale, &kb, &ob, &ib)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ib.len / 8;
    if (check_len(&rb, 9 * n, 4, "rows") || check_len(&kb, 3 * n, 8, "corner_keys") ||
        check_len(&ob, 3 * n, 8, "order") || check_len(&ib, n, 8, "intrinsic"))
        goto done;
    const float *t = (const float *)rb.buf; /* t[(corner * 3 + coordinate) * n + i] */
    const uint64_t *ck = (const uint64_t *)kb.buf;
    int64_t *order = (int64_t *)ob.buf;
    uint64_t *intrinsic = (uint64_t *)ib.buf;
    const float cen[3] = {cx, cy, cz};
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        int64_t m[3];
        for (int k = 0; k < 3; k++) {
            int a = (k + 2) % 3, b = (k + 1) % 3;
            float e0 = t[(a * 3 + 0) * n + i] - t[(b * 3 + 0) * n + i];
            float e1 = t[(a * 3 + 1) * n + i] - t[(b * 3 + 1) * n + i];
            float e2 = t[(a * 3 + 2) * n + i] - t[(b * 3 + 2) * n + i];
            float r0 = t[(k * 3 + 0) * n + i] - cen[0];
            float r1 = t[(k * 3 + 1) * n + i] - cen[1];
            float r2 = t[(k * 3 + 2) * n + i] - cen[2];
            float ee = e0 * e0 + e1 * e1;
            ee = ee + e2 * e2;
            float rr = r0 * r0 + r1 * r1;
            rr = rr + r2 * r2;
            int64_t opposite = to_int64(sqrtf(ee) * scale), reach = to_int64(sqrtf(rr) * scale);
            if (opposite < 0 || reach < 0) {
                bad = 1;
                break;
            }
            if (reach > (1 << 24) - 1) reach = (1 << 24) - 1;
            m[k] = (int64_t)((uint64_t)opposite << 24) | reach;
        }
        if (bad) break;
        const uint64_t *c = ck + 3 * i;
        int64_t f01 = (m[0] > m[1]) | ((m[0] == m[1]) & (c[0] < c[1]));
        int64_t f02 = (m[0] > m[2]) | ((m[0] == m[2]) & (c[0] < c[2]));
        int64_t f12 = (m[1] > m[2]) | ((m[1] == m[2]) & (c[1] < c[2]));
        int64_t rank1 = 1 + f01 - f12, rank2 = f02 + f12;
        uint64_t canon[3];
        for (int r = 0; r < 3; r++) {
            int64_t corner = (int64_t)(rank1 == r) + 2 * (int64_t)(rank2 == r);
            order[r * n + i] = corner;
            canon[r] = (uint64_t)m[corner];
        }
        intrinsic[i] = splitmix(splitmix(splitmix(canon[0] ^ 20211ull) + canon[1]) + canon[2]);
    }
    Py_END_ALLOW_THREADS;
    result = bad ? Py_False : Py_True;
    Py_INCREF(result);
done:
    PyBuffer_Release(&rb);
    PyBuffer_Release(&kb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&ib);
    return result;
}

/* wall_bounds(corners, lo, hi) -> bool
 *
 * scanner.mesh.shared_walls' first pass: the least and greatest centre of (F, 3, 3) float32
 * triangles, per coordinate, into three float64 each. A centre is _centres' ((a + b) + c) /
 * 3.0 of the corners in float64. False when a centre is not finite (numpy decides then). */
static PyObject *wall_bounds(PyObject *self, PyObject *args) {
    Py_buffer cb, lb, hb;
    if (!PyArg_ParseTuple(args, "y*w*w*", &cb, &lb, &hb)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = cb.len / 36;
    if (check_len(&cb, 9 * n, 4, "corners") || check_len(&lb, 3, 8, "lo") || check_len(&hb, 3, 8, "hi")) goto done;
    const float *t = (const float *)cb.buf; /* t[i * 9 + corner * 3 + coordinate] */
    double *lo = (double *)lb.buf, *hi = (double *)hb.buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (int k = 0; k < 3; k++) {
        lo[k] = INFINITY;
        hi[k] = -INFINITY;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const float *c = t + 9 * i;
        for (int k = 0; k < 3; k++) {
            double centre = ((double)c[k] + (double)c[3 + k] + (double)c[6 + k]) / 3.0;
            if (!isfinite(centre)) bad = 1;
            if (centre < lo[k]) lo[k] = centre;
            if (centre > hi[k]) hi[k] = centre;
        }
    }
    Py_END_ALLOW_THREADS;
    result = bad ? Py_False : Py_True;
    Py_INCREF(result);
done:
    PyBuffer_Release(&cb);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&hb);
    return result;
}

static inline double numpy_sign(double v) { return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0); }

/* the int64 numpy's astype gives an integral double (v from nearbyint), as uint64 bits; 0 and
 * *bad set when it is not finite or not below 2^63 in magnitude (numpy's cast of those is
 * left to numpy) */
static inline uint64_t rounded_bits(double v, int *bad) {
    /* below 2^51 in magnitude: v + 1.5 2^52 lies where doubles are the integers, so the
     * addition rounds v to the nearest, ties to even (np.round), and the subtraction is exact;
     * several times faster than nearbyint's call, which saves and restores the FP state */
    const double shift = 6755399441055744.0;
    double r = fabs(v) < 2251799813685248.0 ? (v + shift) - shift : nearbyint(v);
    if (!(r > -9223372036854775808.0 && r < 9223372036854775808.0)) {
        *bad = 1;
        return 0;
    }
    return (uint64_t)(int64_t)r;
}

/* wall_keys(corners, mid0, mid1, mid2, half, normal_steps, offset_steps, ok, sign, packed) -> bool
 *
 * scanner.mesh._plane_keys of (F, 3, 3) float32 triangles, element by element as the numpy
 * code: in float64 the edges from the first corner, their cross product (np.cross's
 * products), its length ((x x + y y) + z z, sqrt), the unit normal where the length is above
 * zero (else the cross product as it is), the centre's offset from ``mid`` along it over
 * ``half``, the orienting sign (of the first component above 1e-6 in magnitude, else of the
 * first; zero counts as +1), and the four chained splitmix of the rounded, oriented normal x
 * ``normal_steps`` and offset x ``offset_steps`` (np.round: to nearest, ties to even). Out: ``ok`` (F) bool, ``sign``
 * (F) float64, ``packed`` (F) uint64. False when a value is not finite or a rounded value is
 * not below 2^63 (numpy decides then). */
static PyObject *wall_keys(PyObject *self, PyObject *args) {
    Py_buffer cb, ob, sb, pb;
    double mid[3], half, normal_steps, offset_steps;
    if (!PyArg_ParseTuple(args, "y*ddddddw*w*w*", &cb, &mid[0], &mid[1], &mid[2], &half, &normal_steps, &offset_steps,
                          &ob, &sb, &pb))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = cb.len / 36;
    if (check_len(&cb, 9 * n, 4, "corners") || check_len(&ob, n, 1, "ok") || check_len(&sb, n, 8, "sign") ||
        check_len(&pb, n, 8, "packed"))
        goto done;
    const float *t = (const float *)cb.buf;
    uint8_t *ok = (uint8_t *)ob.buf;
    double *sign = (double *)sb.buf;
    uint64_t *packed = (uint64_t *)pb.buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        const float *c = t + 9 * i;
        double p0 = c[0], p1 = c[1], p2 = c[2], q0 = c[3], q1 = c[4], q2 = c[5], r0 = c[6], r1 = c[7], r2 = c[8];
        double a0 = q0 - p0, a1 = q1 - p1, a2 = q2 - p2;
        double b0 = r0 - p0, b1 = r1 - p1, b2 = r2 - p2;
        double n0 = a1 * b2 - a2 * b1, n1 = a2 * b0 - a0 * b2, n2 = a0 * b1 - a1 * b0;
        double length = sqrt(n0 * n0 + n1 * n1 + n2 * n2);
        int has = length > 0.0;
        if (has) {
            n0 = n0 / length;
            n1 = n1 / length;
            n2 = n2 / length;
        }
        double c0 = (p0 + q0 + r0) / 3.0 - mid[0], c1 = (p1 + q1 + r1) / 3.0 - mid[1], c2 = (p2 + q2 + r2) / 3.0 - mid[2];
        double offset = (c0 * n0 + c1 * n1 + c2 * n2) / half;
        double s = fabs(n0) > 1e-6 ? numpy_sign(n0)
                   : fabs(n1) > 1e-6 ? numpy_sign(n1)
                   : fabs(n2) > 1e-6 ? numpy_sign(n2)
                                     : numpy_sign(n0);
        if (s == 0.0) s = 1.0;
        if (!isfinite(length) || !isfinite(offset)) bad = 1;
        uint64_t key = splitmix(rounded_bits(n0 * s * normal_steps, &bad));
        key = splitmix(key + rounded_bits(n1 * s * normal_steps, &bad));
        key = splitmix(key + rounded_bits(n2 * s * normal_steps, &bad));
        key = splitmix(key + rounded_bits(offset * s * offset_steps, &bad));
        ok[i] = (uint8_t)has;
        sign[i] = s;
        packed[i] = key;
    }
    Py_END_ALLOW_THREADS;
    result = bad ? Py_False : Py_True;
    Py_INCREF(result);
done:
    PyBuffer_Release(&cb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&pb);
    return result;
}

/* moments(tri, double_input, offset, has_offset, w, sums) -> None
 *
 * scanner.features.sampling._weighted_sums: for F triangles' nine corner coordinates x (float32
 * or float64 (F, 3, 3) rows; float32 ones less ``offset`` in float32 first, as numpy subtracts
 * a float32 offset, then widened) and float64 weights w, the 54 running sums, triangle after
 * triangle in input order: x_j w (j < 9), then (x_i w) x_j for i <= j in row order. ``sums``
 * (54 float64) is added to, so a caller may carry them; the numpy code is a cumulative sum,
 * whose order is this one by definition, so any machine gives these bits (BLAS's product
 * summed in whatever order its kernels for the CPU chose). */
static PyObject *moments(PyObject *self, PyObject *args) {
    Py_buffer tb, wb, sb;
    int double_input, has_offset;
    float off[3];
    if (!PyArg_ParseTuple(args, "y*p(fff)py*w*", &tb, &double_input, &off[0], &off[1], &off[2], &has_offset, &wb,
                          &sb))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = wb.len / 8;
    if (check_len(&tb, 9 * n, double_input ? 8 : 4, "tri") || check_len(&wb, n, 8, "w") ||
        check_len(&sb, 54, 8, "sums"))
        goto done;
    const float *t32 = (const float *)tb.buf;
    const double *t64 = (const double *)tb.buf;
    const double *w = (const double *)wb.buf;
    double *sums = (double *)sb.buf;
    Py_BEGIN_ALLOW_THREADS;
    /* Block by block: the block's coordinates and weighted coordinates first, then each sum
     * runs over the block's triangles in order while it stays in a register (each sum still
     * adds its terms triangle after triangle: blocks change which sums are interleaved, not
     * the order of any one). Measured against one pass of 54 sums held in memory: 120 -> 72 us
     * on a small file (3,000 triangles). */
    enum { BLOCK = 128 };
    double x[BLOCK][17], xw[BLOCK][9]; /* x padded: row a reads x[a .. a + 8] */
    double *first = sums, *g = sums + 9;
    for (Py_ssize_t start = 0; start < n; start += BLOCK) {
        Py_ssize_t m = n - start < BLOCK ? n - start : BLOCK;
        for (Py_ssize_t t = 0; t < m; t++) {
            Py_ssize_t i = start + t;
            for (int k = 0; k < 9; k++) {
                if (double_input)
                    x[t][k] = t64[9 * i + k];
                else
                    x[t][k] = has_offset ? (double)(t32[9 * i + k] - off[k % 3]) : (double)t32[9 * i + k];
                xw[t][k] = x[t][k] * w[i];
            }
            for (int k = 9; k < 17; k++) x[t][k] = 0.0;
        }
        double f[9];
        memcpy(f, first, sizeof f);
        for (Py_ssize_t t = 0; t < m; t++)
            for (int k = 0; k < 9; k++) f[k] += xw[t][k];
        memcpy(first, f, sizeof f);
        double *row = g;
        for (int a = 0; a < 9; a++) {
            double r[9] = {0};
            int len = 9 - a;
            memcpy(r, row, len * sizeof(double));
            for (Py_ssize_t t = 0; t < m; t++) {
                double p = xw[t][a];
                for (int b = 0; b < 9; b++) r[b] += p * x[t][a + b];
            }
            memcpy(row, r, len * sizeof(double));
            row += len;
        }
    }
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&tb);
    PyBuffer_Release(&wb);
    PyBuffer_Release(&sb);
    return result;
}

static PyMethodDef methods[] = {
    {"density", density, METH_VARARGS, "density_weights before the mean (see scanner/kernels.py)"},
    {"legs", legs, METH_VARARGS, "the legs, cosines and weights of _legs (see scanner/kernels.py)"},
    {"bins", bins, METH_VARARGS, "_cdf's weighted fine histogram (see scanner/kernels.py)"},
    {"cos_bins", cos_bins, METH_VARARGS, "A3's fine histogram from the cosines (see scanner/kernels.py)"},
    {"points", points, METH_VARARGS, "the sampler's points after the counts (see scanner/kernels.py)"},
    {"seeds", seeds, METH_VARARGS, "the sampler's triangle seeds and corner order (see scanner/kernels.py)"},
    {"wall_bounds", wall_bounds, METH_VARARGS, "shared_walls' least and greatest centre (see scanner/mesh.py)"},
    {"wall_keys", wall_keys, METH_VARARGS, "shared_walls' oriented plane keys (see scanner/mesh.py)"},
    {"moments", moments, METH_VARARGS, "the surface moments' running sums (see scanner/features/sampling.py)"},
    {"sort", sort, METH_VARARGS, "uint64 keys sorted in place (the points' sort, for tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "scanner._kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
