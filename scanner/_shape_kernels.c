/* Compiled kernels for the classifier's shape features (scanner/classify/shape.py; when they
 * are used: scanner/kernels.py).
 *
 * As scanner/_kernels.c: each kernel repeats, element by element, the numpy code it stands in
 * for, the same float64 / float32 operations in the same order, built with -ffp-contract=off
 * -fno-fast-math (setup.py), so the results are the same bits (tests/unit/
 * test_shape_kernels.py), but for hull_volume, which stands in for Qhull (see it). Plain
 * CPython C API and the buffer protocol; the Python side allocates the arrays and checks dtypes
 * and shapes, the kernels check buffer sizes; the arithmetic runs without the GIL.
 *
 * numpy's ``np.einsum("ij,ij->i", a, b)`` over rows of three float64 sums the products as
 * ``(a0 b0 + a2 b2) + (a1 b1 + 0)`` (numpy 2.4 on x86-64, measured): its inner loop loads
 * the row into vector registers (zero-filled beyond the third lane), multiplies, adds the zero
 * accumulator and reduces the lanes pairwise (dot_einsum). Another numpy or another SIMD path
 * may sum otherwise (an AVX2 horizontal add, NEON's fused multiply-add): scanner/kernels.py
 * compares dot_rows with np.einsum on probe rows at import and runs the numpy code where they
 * differ. ``_dot3`` and the ``sum(axis=1)`` of three columns add left to right. */
#include "_kernels_common.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* np.einsum("ij,ij->i") of one row of three (see the top of this file) */
static inline double dot_einsum(double a0, double a1, double a2, double b0, double b1, double b2) {
    double p0 = a0 * b0, p1 = a1 * b1, p2 = a2 * b2;
    return (p0 + p2) + (p1 + 0.0);
}

/* shape._dot3: left to right */
static inline double dot_ltr(double a0, double a1, double a2, double b0, double b1, double b2) {
    return (a0 * b0 + a1 * b1) + a2 * b2;
}

/* np.maximum(x, lo) for a float64 x: NaN propagates */
static inline double maximum(double x, double lo) { return (x >= lo || isnan(x)) ? x : lo; }

/* face_values(tri, areas, normals, volume, e1, e2, keep) -> reach
 *
 * shape._face_values of (n, 3, 3) float64 tri: areas, unit normals (zero-area: the cross
 * product itself, as numpy's division by 1), the volume terms a . (b x c), and the largest
 * |coordinate| of the first edges (NaN when any is NaN, as numpy's max); the edges are
 * written when keep is true (their buffers are then (n, 3) float64). */
static PyObject *face_values(PyObject *self, PyObject *args) {
    Py_buffer tb, ab, nb, vb, e1b, e2b;
    int keep;
    if (!PyArg_ParseTuple(args, "y*w*w*w*w*w*p", &tb, &ab, &nb, &vb, &e1b, &e2b, &keep)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = tb.len / 72;
    if (check_len(&tb, 9 * n, 8, "tri") || check_len(&ab, n, 8, "areas") || check_len(&nb, 3 * n, 8, "normals") ||
        check_len(&vb, n, 8, "volume") || (keep && (check_len(&e1b, 3 * n, 8, "e1") || check_len(&e2b, 3 * n, 8, "e2"))))
        goto done;
    const double *tri = (const double *)tb.buf;
    double *areas = (double *)ab.buf, *normals = (double *)nb.buf, *volume = (double *)vb.buf;
    double *o1 = (double *)e1b.buf, *o2 = (double *)e2b.buf;
    double reach = 0.0;
    int nan = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *a = tri + 9 * i, *b = a + 3, *c = a + 6;
        double u0 = b[0] - a[0], u1 = b[1] - a[1], u2 = b[2] - a[2];
        double v0 = c[0] - a[0], v1 = c[1] - a[1], v2 = c[2] - a[2];
        double c0 = u1 * v2 - u2 * v1, c1 = u2 * v0 - u0 * v2, c2 = u0 * v1 - u1 * v0;
        double da = sqrt((c0 * c0 + c1 * c1) + c2 * c2);
        areas[i] = 0.5 * da;
        double den = da > 0 ? da : 1.0;
        normals[3 * i] = c0 / den;
        normals[3 * i + 1] = c1 / den;
        normals[3 * i + 2] = c2 / den;
        double x0 = b[1] * c[2] - b[2] * c[1], x1 = b[2] * c[0] - b[0] * c[2], x2 = b[0] * c[1] - b[1] * c[0];
        volume[i] = dot_einsum(a[0], a[1], a[2], x0, x1, x2);
        double m0 = fabs(u0), m1 = fabs(u1), m2 = fabs(u2);
        if (isnan(m0) || isnan(m1) || isnan(m2)) nan = 1;
        if (m0 > reach) reach = m0;
        if (m1 > reach) reach = m1;
        if (m2 > reach) reach = m2;
        if (keep) {
            o1[3 * i] = u0, o1[3 * i + 1] = u1, o1[3 * i + 2] = u2;
            o2[3 * i] = v0, o2[3 * i + 1] = v1, o2[3 * i + 2] = v2;
        }
    }
    Py_END_ALLOW_THREADS;
    result = PyFloat_FromDouble(nan ? NAN : reach);
done:
    PyBuffer_Release(&tb);
    PyBuffer_Release(&ab);
    PyBuffer_Release(&nb);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&e1b);
    PyBuffer_Release(&e2b);
    return result;
}

/* round_about(tri, normals, curved, (cx, cy, cz), (ax, ay, az), out) -> None
 *
 * shape._round_about: curved faces whose normal is across the axis and along the radial
 * direction from it (bool buffers: one byte per face, 0 or 1). */
static PyObject *round_about(PyObject *self, PyObject *args) {
    Py_buffer tb, nb, cb, ob;
    double cx, cy, cz, ax, ay, az;
    if (!PyArg_ParseTuple(args, "y*y*y*(ddd)(ddd)w*", &tb, &nb, &cb, &cx, &cy, &cz, &ax, &ay, &az, &ob)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = tb.len / 72;
    if (check_len(&tb, 9 * n, 8, "tri") || check_len(&nb, 3 * n, 8, "normals") || check_len(&cb, n, 1, "curved") ||
        check_len(&ob, n, 1, "out"))
        goto done;
    const double *tri = (const double *)tb.buf, *normals = (const double *)nb.buf;
    const unsigned char *curved = (const unsigned char *)cb.buf;
    unsigned char *out = (unsigned char *)ob.buf;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *a = tri + 9 * i, *b = a + 3, *c = a + 6, *nr = normals + 3 * i;
        double r0 = (a[0] + b[0] + c[0]) / 3.0 - cx;
        double r1 = (a[1] + b[1] + c[1]) / 3.0 - cy;
        double r2 = (a[2] + b[2] + c[2]) / 3.0 - cz;
        double d = dot_ltr(r0, r1, r2, ax, ay, az);
        double q0 = r0 - d * ax, q1 = r1 - d * ay, q2 = r2 - d * az;
        double norm = maximum(sqrt((q0 * q0 + q1 * q1) + q2 * q2), 1e-12);
        q0 /= norm, q1 /= norm, q2 /= norm;
        out[i] = (curved[i] != 0) & (fabs(dot_ltr(nr[0], nr[1], nr[2], ax, ay, az)) < 0.2) &
                 (fabs(dot_einsum(nr[0], nr[1], nr[2], q0, q1, q2)) > 0.9);
    }
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&tb);
    PyBuffer_Release(&nb);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&ob);
    return result;
}

/* line_clear(tri, (cx, cy, cz), tiny, (d0, d1, d2)) -> bool
 *
 * shape._line_clear over every triangle of (n, 3, 3) float64 tri (the cast blocks made on the
 * fly: e1, e2 from the first corner, t = centroid - that corner, q = t x e1): True when the
 * line from the centroid along d misses them all. */
static PyObject *line_clear(PyObject *self, PyObject *args) {
    Py_buffer tb;
    double cx, cy, cz, tiny, d0, d1, d2;
    if (!PyArg_ParseTuple(args, "y*(ddd)d(ddd)", &tb, &cx, &cy, &cz, &tiny, &d0, &d1, &d2)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = tb.len / 72;
    if (check_len(&tb, 9 * n, 8, "tri")) goto done;
    const double *tri = (const double *)tb.buf;
    const double tol = 1e-9, top = 1 + 1e-9;
    int hit = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n && !hit; i++) {
        const double *a = tri + 9 * i, *b = a + 3, *c = a + 6;
        double e10 = b[0] - a[0], e11 = b[1] - a[1], e12 = b[2] - a[2];
        double e20 = c[0] - a[0], e21 = c[1] - a[1], e22 = c[2] - a[2];
        double t0 = cx - a[0], t1 = cy - a[1], t2 = cz - a[2];
        double p0 = d1 * e22 - d2 * e21, p1 = d2 * e20 - d0 * e22, p2 = d0 * e21 - d1 * e20;
        double det = dot_einsum(e10, e11, e12, p0, p1, p2);
        int ok = fabs(det) > tiny;
        double inv = ok ? 1.0 / det : 0.0;
        double u = dot_einsum(t0, t1, t2, p0, p1, p2) * inv;
        double q0 = t1 * e12 - t2 * e11, q1 = t2 * e10 - t0 * e12, q2 = t0 * e11 - t1 * e10;
        double v = dot_ltr(q0, q1, q2, d0, d1, d2) * inv;
        hit = ok & (u >= -tol) & (v >= -tol) & (u + v <= top);
    }
    Py_END_ALLOW_THREADS;
    result = PyBool_FromLong(!hit);
done:
    PyBuffer_Release(&tb);
    return result;
}

/* extreme(points, directions, out) -> bool
 *
 * shape._extreme_points of (n, 3) float64 points and the (k, 3) float32 first half of the
 * directions: out (2k int64) the first point with the largest float32 product along each
 * direction (d0 p0 + d1 p1) + d2 p2, then the first with the smallest. False (out
 * unspecified) when a coordinate is not finite or a product is NaN: the numpy code then
 * applies argmax's NaN rule. */
static PyObject *extreme(PyObject *self, PyObject *args) {
    Py_buffer pb, db, ob;
    if (!PyArg_ParseTuple(args, "y*y*w*", &pb, &db, &ob)) return NULL;
    PyObject *result = NULL;
    float *xs = NULL;
    Py_ssize_t n = pb.len / 24, k = db.len / 12;
    if (check_len(&pb, 3 * n, 8, "points") || check_len(&db, 3 * k, 4, "directions") ||
        check_len(&ob, 2 * k, 8, "out"))
        goto done;
    if (n < 1 || n > 0x7fffffff || k > 64) {
        PyErr_SetString(PyExc_ValueError, "no points or too many directions");
        goto done;
    }
    const double *pts = (const double *)pb.buf;
    const float *d = (const float *)db.buf;
    int64_t *out = (int64_t *)ob.buf;
    xs = (float *)malloc(sizeof(float) * 4 * (size_t)n);
    if (!xs) {
        PyErr_NoMemory();
        goto done;
    }
    float *ys = xs + n, *zs = ys + n, *s = zs + n;
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS;
    /* the float32 points as three rows (finite: else numpy's), then per direction its
     * products, their largest and smallest value (exact whatever the order: no NaN), and the
     * first point with each (-0 == +0, as argmax's comparisons have it) */
    int finite = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        float x = (float)pts[3 * i], y = (float)pts[3 * i + 1], z = (float)pts[3 * i + 2];
        xs[i] = x, ys[i] = y, zs[i] = z;
        finite &= isfinite(x) & isfinite(y) & isfinite(z);
    }
    ok = finite;
    for (Py_ssize_t j = 0; j < k && ok; j++) {
        float d0 = d[3 * j], d1 = d[3 * j + 1], d2 = d[3 * j + 2];
        for (Py_ssize_t i = 0; i < n; i++) {
            float t = d0 * xs[i];
            t += d1 * ys[i];
            t += d2 * zs[i];
            s[i] = t;
        }
        /* per lane of four: the largest and smallest product and the first point with it (a
         * later one replaces it only when strictly further), then the first over the lanes */
        float top = -INFINITY, bottom = INFINITY;
        Py_ssize_t top_at = 0, bottom_at = 0, i = 0;
        int nan = 0;
#if defined(__SSE2__)
        if (n >= 4) {
            __m128 vh = _mm_loadu_ps(s), vl = vh, vn = _mm_cmpunord_ps(vh, vh);
            __m128i ih = _mm_setr_epi32(0, 1, 2, 3), il = ih, at = ih, four = _mm_set1_epi32(4);
            for (i = 4; i + 4 <= n; i += 4) {
                __m128 t = _mm_loadu_ps(s + i);
                at = _mm_add_epi32(at, four);
                vn = _mm_or_ps(vn, _mm_cmpunord_ps(t, t));
                __m128 gt = _mm_cmpgt_ps(t, vh), lt = _mm_cmplt_ps(t, vl);
                vh = _mm_or_ps(_mm_and_ps(gt, t), _mm_andnot_ps(gt, vh));
                vl = _mm_or_ps(_mm_and_ps(lt, t), _mm_andnot_ps(lt, vl));
                ih = _mm_or_si128(_mm_and_si128(_mm_castps_si128(gt), at), _mm_andnot_si128(_mm_castps_si128(gt), ih));
                il = _mm_or_si128(_mm_and_si128(_mm_castps_si128(lt), at), _mm_andnot_si128(_mm_castps_si128(lt), il));
            }
            float h[4], l[4];
            int32_t hx[4], lx[4];
            _mm_storeu_ps(h, vh), _mm_storeu_ps(l, vl);
            _mm_storeu_si128((__m128i *)hx, ih), _mm_storeu_si128((__m128i *)lx, il);
            nan = _mm_movemask_ps(vn) != 0;
            top = h[0], top_at = hx[0], bottom = l[0], bottom_at = lx[0];
            for (int lane = 1; lane < 4; lane++) {
                if (h[lane] > top || (h[lane] == top && hx[lane] < top_at)) top = h[lane], top_at = hx[lane];
                if (l[lane] < bottom || (l[lane] == bottom && lx[lane] < bottom_at)) bottom = l[lane], bottom_at = lx[lane];
            }
        }
#endif
        for (; i < n; i++) { /* the rest, in order: later points replace only when strictly further */
            float t = s[i];
            nan |= t != t;
            if (i == 0 || t > top) top = t, top_at = i;
            if (i == 0 || t < bottom) bottom = t, bottom_at = i;
        }
        if (nan) {
            ok = 0;
            break;
        }
        out[j] = top_at;
        out[k + j] = bottom_at;
    }
    Py_END_ALLOW_THREADS;
    result = PyBool_FromLong(ok);
done:
    PyBuffer_Release(&pb);
    PyBuffer_Release(&db);
    PyBuffer_Release(&ob);
    free(xs);
    return result;
}

/* edge_cosines(normals, faces, first, second, out) -> None
 *
 * shape._edge_stats up to the arccos: |clip(n[f1] . n[f2], -1, 1)| (NaN stays NaN, as
 * np.clip), f = place % max(faces, 1) (the face of an edge of the concatenation), first and
 * second int64. */
static PyObject *edge_cosines(PyObject *self, PyObject *args) {
    Py_buffer nb, fb, sb, ob;
    Py_ssize_t faces;
    if (!PyArg_ParseTuple(args, "y*ny*y*w*", &nb, &faces, &fb, &sb, &ob)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t nf = nb.len / 24, m = fb.len / 8;
    if (check_len(&nb, 3 * nf, 8, "normals") || check_len(&fb, m, 8, "first") || check_len(&sb, m, 8, "second") ||
        check_len(&ob, m, 8, "out"))
        goto done;
    const double *nr = (const double *)nb.buf;
    const int64_t *first = (const int64_t *)fb.buf, *second = (const int64_t *)sb.buf;
    double *out = (double *)ob.buf;
    int64_t F = faces > 1 ? (int64_t)faces : 1;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (first[i] < 0 || second[i] < 0) {
            bad = 1;
            break;
        }
        int64_t f1 = first[i] % F, f2 = second[i] % F;
        if (f1 >= nf || f2 >= nf) {
            bad = 1;
            break;
        }
        const double *a = nr + 3 * f1, *b = nr + 3 * f2;
        double dot = dot_einsum(a[0], a[1], a[2], b[0], b[1], b[2]);
        double c = isnan(dot) ? dot : (dot < -1.0 ? -1.0 : (dot > 1.0 ? 1.0 : dot));
        out[i] = fabs(c);
    }
    Py_END_ALLOW_THREADS;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "an edge's place is out of range");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&nb);
    PyBuffer_Release(&fb);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&ob);
    return result;
}

/* bounds(corners, lo, hi) -> bool
 *
 * shape._bounds of (N, 3) float32 corners: the per-axis minimum and maximum, widened to
 * float64. False (lo, hi unspecified) when a coordinate is not finite or a bound is zero (the
 * sign of a zero bound is numpy's loops' choice): the numpy code then decides. */
static PyObject *bounds(PyObject *self, PyObject *args) {
    Py_buffer cb, lb, hb;
    if (!PyArg_ParseTuple(args, "y*w*w*", &cb, &lb, &hb)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = cb.len / 12;
    if (check_len(&cb, 3 * n, 4, "corners") || check_len(&lb, 3, 8, "lo") || check_len(&hb, 3, 8, "hi")) goto done;
    const float *c = (const float *)cb.buf;
    double *lo = (double *)lb.buf, *hi = (double *)hb.buf;
    int ok = n > 0;
    Py_BEGIN_ALLOW_THREADS;
    if (ok) {
        float l0 = c[0], l1 = c[1], l2 = c[2], h0 = c[0], h1 = c[1], h2 = c[2];
        int finite = 1;
        Py_ssize_t i = 0;
#if defined(__SSE2__)
        /* four corners (twelve floats, three vectors) at a time: vector k's lane j holds axis
         * (4k + j) % 3; a minimum or maximum is exact in any order (no NaN: checked, x - x is
         * NaN for an infinite or NaN x) */
        if (n >= 4) {
            __m128 lo_v[3], hi_v[3], bad = _mm_setzero_ps();
            for (int k = 0; k < 3; k++) lo_v[k] = hi_v[k] = _mm_loadu_ps(c + 4 * k);
            for (; i + 4 <= n; i += 4)
                for (int k = 0; k < 3; k++) {
                    __m128 x = _mm_loadu_ps(c + 3 * i + 4 * k);
                    __m128 z = _mm_sub_ps(x, x);
                    bad = _mm_or_ps(bad, _mm_cmpunord_ps(z, z));
                    lo_v[k] = _mm_min_ps(lo_v[k], x);
                    hi_v[k] = _mm_max_ps(hi_v[k], x);
                }
            float lanes_lo[12], lanes_hi[12];
            for (int k = 0; k < 3; k++) _mm_storeu_ps(lanes_lo + 4 * k, lo_v[k]), _mm_storeu_ps(lanes_hi + 4 * k, hi_v[k]);
            finite = _mm_movemask_ps(bad) == 0;
            for (int q = 0; q < 12; q += 3) {
                l0 = lanes_lo[q] < l0 ? lanes_lo[q] : l0, h0 = lanes_hi[q] > h0 ? lanes_hi[q] : h0;
                l1 = lanes_lo[q + 1] < l1 ? lanes_lo[q + 1] : l1, h1 = lanes_hi[q + 1] > h1 ? lanes_hi[q + 1] : h1;
                l2 = lanes_lo[q + 2] < l2 ? lanes_lo[q + 2] : l2, h2 = lanes_hi[q + 2] > h2 ? lanes_hi[q + 2] : h2;
            }
        }
#endif
        for (; i < n; i++) {
            float x = c[3 * i], y = c[3 * i + 1], z = c[3 * i + 2];
            finite &= isfinite(x) & isfinite(y) & isfinite(z);
            l0 = x < l0 ? x : l0, h0 = x > h0 ? x : h0;
            l1 = y < l1 ? y : l1, h1 = y > h1 ? y : h1;
            l2 = z < l2 ? z : l2, h2 = z > h2 ? z : h2;
        }
        ok = finite && l0 != 0 && l1 != 0 && l2 != 0 && h0 != 0 && h1 != 0 && h2 != 0;
        lo[0] = l0, lo[1] = l1, lo[2] = l2, hi[0] = h0, hi[1] = h1, hi[2] = h2;
    }
    Py_END_ALLOW_THREADS;
    result = PyBool_FromLong(ok);
done:
    PyBuffer_Release(&cb);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&hb);
    return result;
}

/* frame(vertices, (ox, oy, oz), (cx, cy, cz), axes, along, proj, rel_sq, ext) -> bool
 *
 * The points of shape_features in the principal frame: each (n, 3) float32 vertex widened,
 * less the box centre o, less the centroid c (rel); along[k] = _dot3(rel, axes[k]) ((3, n)
 * float64) and proj its transpose ((n, 3)); rel_sq the row sums of rel**2, left to right;
 * ext[k] = max - min of along[k]. False (outputs unspecified) when a value is NaN: the numpy
 * code then decides. */
static PyObject *frame(PyObject *self, PyObject *args) {
    Py_buffer vb, ab, alb, pb, rb, eb;
    double ox, oy, oz, cx, cy, cz;
    if (!PyArg_ParseTuple(args, "y*(ddd)(ddd)y*w*w*w*w*", &vb, &ox, &oy, &oz, &cx, &cy, &cz, &ab, &alb, &pb, &rb, &eb))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = vb.len / 12;
    if (check_len(&vb, 3 * n, 4, "vertices") || check_len(&ab, 9, 8, "axes") || check_len(&alb, 3 * n, 8, "along") ||
        check_len(&pb, 3 * n, 8, "proj") || check_len(&rb, n, 8, "rel_sq") || check_len(&eb, 3, 8, "ext"))
        goto done;
    const float *v = (const float *)vb.buf;
    const double *a = (const double *)ab.buf;
    double *along = (double *)alb.buf, *proj = (double *)pb.buf, *rel_sq = (double *)rb.buf, *ext = (double *)eb.buf;
    int ok = n > 0;
    Py_BEGIN_ALLOW_THREADS;
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (Py_ssize_t i = 0; i < n; i++) {
        double r0 = ((double)v[3 * i] - ox) - cx;
        double r1 = ((double)v[3 * i + 1] - oy) - cy;
        double r2 = ((double)v[3 * i + 2] - oz) - cz;
        rel_sq[i] = (r0 * r0 + r1 * r1) + r2 * r2;
        for (int k = 0; k < 3; k++) {
            double t = dot_ltr(r0, r1, r2, a[3 * k], a[3 * k + 1], a[3 * k + 2]);
            along[k * n + i] = t, proj[3 * i + k] = t;
            if (isnan(t)) ok = 0;
            lo[k] = t < lo[k] ? t : lo[k];
            hi[k] = t > hi[k] ? t : hi[k];
        }
    }
    for (int k = 0; k < 3; k++) ext[k] = hi[k] - lo[k];
    Py_END_ALLOW_THREADS;
    result = PyBool_FromLong(ok);
done:
    PyBuffer_Release(&vb);
    PyBuffer_Release(&ab);
    PyBuffer_Release(&alb);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&eb);
    return result;
}

/* profile_steps(along, rel_sq, bins) -> float or None
 *
 * shape._profile_steps: the outer radius sqrt(max(rel_sq - along**2, 0)) binned along the
 * long axis (bins bins, the top per bin), (max - min) / max of the bins reached. None when a
 * value is NaN or not finite where numpy's integer conversion would be undefined: the numpy
 * code then decides. */
static PyObject *profile_steps(PyObject *self, PyObject *args) {
    Py_buffer ab, rb;
    int nbins;
    if (!PyArg_ParseTuple(args, "y*y*i", &ab, &rb, &nbins)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ab.len / 8;
    if (check_len(&ab, n, 8, "along") || check_len(&rb, n, 8, "rel_sq")) goto done;
    if (n < 1 || nbins < 1 || nbins > 1024) {
        PyErr_SetString(PyExc_ValueError, "no points or a bin count out of range");
        goto done;
    }
    const double *along = (const double *)ab.buf, *rel_sq = (const double *)rb.buf;
    int ok = 1, flat = 0;
    double value = 0.0, top[1024];
    Py_BEGIN_ALLOW_THREADS;
    double lo = along[0], hi = along[0];
    for (Py_ssize_t i = 0; i < n; i++) {
        double t = along[i];
        if (isnan(t) || isnan(rel_sq[i])) ok = 0;
        lo = t < lo ? t : lo, hi = t > hi ? t : hi;
    }
    if (ok && hi - lo <= 1e-12) flat = 1;
    if (ok && !flat) {
        double span = hi - lo;
        for (int b = 0; b < nbins; b++) top[b] = -1.0;
        for (Py_ssize_t i = 0; i < n && ok; i++) {
            double x = rel_sq[i] - along[i] * along[i];
            double radial = sqrt(x >= 0.0 ? x : 0.0);
            double scaled = (along[i] - lo) / span * nbins;
            if (!(scaled >= 0.0 && scaled < 4611686018427387904.0)) {
                ok = 0;
                break;
            }
            int64_t b = (int64_t)scaled;
            if (b > nbins - 1) b = nbins - 1;
            if (radial > top[b]) top[b] = radial;
        }
        if (ok) {
            double most = -INFINITY, least = INFINITY;
            for (int b = 0; b < nbins; b++) {
                if (top[b] >= 0) {
                    most = top[b] > most ? top[b] : most;
                    least = top[b] < least ? top[b] : least;
                }
            }
            value = most > 1e-12 ? (most - least) / most : 0.0;
        }
    }
    Py_END_ALLOW_THREADS;
    if (!ok) {
        result = Py_None;
        Py_INCREF(result);
    } else
        result = PyFloat_FromDouble(value);
done:
    PyBuffer_Release(&ab);
    PyBuffer_Release(&rb);
    return result;
}

/* curved_faces(soft, first, second, faces, out) -> None
 *
 * The end of shape._edge_stats: out[place % max(faces, 1)] = True for both places of every
 * soft edge (bool buffers, one byte each; out zeroed here). */
static PyObject *curved_faces(PyObject *self, PyObject *args) {
    Py_buffer sb, fb, gb, ob;
    Py_ssize_t faces;
    if (!PyArg_ParseTuple(args, "y*y*y*nw*", &sb, &fb, &gb, &faces, &ob)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t m = sb.len, nf = ob.len;
    if (check_len(&fb, m, 8, "first") || check_len(&gb, m, 8, "second") || check_len(&ob, faces, 1, "out")) goto done;
    const unsigned char *soft = (const unsigned char *)sb.buf;
    const int64_t *first = (const int64_t *)fb.buf, *second = (const int64_t *)gb.buf;
    unsigned char *out = (unsigned char *)ob.buf;
    int64_t F = faces > 1 ? (int64_t)faces : 1;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    memset(out, 0, (size_t)nf);
    for (Py_ssize_t i = 0; i < m; i++) {
        if (!soft[i]) continue;
        if (first[i] < 0 || second[i] < 0) {
            bad = 1;
            break;
        }
        int64_t f1 = first[i] % F, f2 = second[i] % F;
        if (f1 >= nf || f2 >= nf) {
            bad = 1;
            break;
        }
        out[f1] = 1;
        out[f2] = 1;
    }
    Py_END_ALLOW_THREADS;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "an edge's place is out of range");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&sb);
    PyBuffer_Release(&fb);
    PyBuffer_Release(&gb);
    PyBuffer_Release(&ob);
    return result;
}

/* dot_rows(a, b, out) -> None
 *
 * DOT_EINSUM of each row of three of (n, 3) float64 a and b: scanner/kernels.py compares it
 * with np.einsum("ij,ij->i") on probe rows before the kernels are used (another numpy, or
 * another CPU's SIMD code, may sum in another order: then the numpy code runs). */
static PyObject *dot_rows(PyObject *self, PyObject *args) {
    Py_buffer ab, bb, ob;
    if (!PyArg_ParseTuple(args, "y*y*w*", &ab, &bb, &ob)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ab.len / 24;
    if (check_len(&ab, 3 * n, 8, "a") || check_len(&bb, 3 * n, 8, "b") || check_len(&ob, n, 8, "out")) goto done;
    const double *a = (const double *)ab.buf, *b = (const double *)bb.buf;
    double *out = (double *)ob.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = dot_einsum(a[3 * i], a[3 * i + 1], a[3 * i + 2], b[3 * i], b[3 * i + 1], b[3 * i + 2]);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&ab);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&ob);
    return result;
}

/* hull_volume(points) -> the volume of the convex hull of (n, 3) float64 points, or -1.0 to
 * decline (the caller then runs Qhull, which decides flat, degenerate and non-finite input)
 *
 * Not numpy's bits: this stands in for Qhull (scipy.spatial), whose set-up costs 50-200 us a
 * call on the classifier's 4-128 points, most of it allocation and option handling that a small
 * hull does not need. An incremental hull: a tetrahedron of far-apart points, then each point
 * in input order added when it lies more than EPS_HULL x the largest |coordinate| beyond a face
 * (faces it sees removed, their horizon joined to it). A point that close to a face adds at
 * most that height times the face's area, so the volume is Qhull's up to rounding (tested to
 * 1e-12 relative in tests/unit/test_shape_kernels.py). Declines rather than guess: more than
 * HULL_MAX_POINTS points, non-finite ones, a flat or thin first tetrahedron, a horizon
 * that is not one loop, a new face without a normal, or a finished hull that is not a closed
 * surface with F = 2V - 4. */
#define HULL_MAX_POINTS 256
#define EPS_HULL (64.0 * DBL_EPSILON)
/* a first tetrahedron thinner than this share of the largest |coordinate| is left to Qhull:
 * on sheets 1e-8 thick Qhull's merging of nearly coplanar facets and this hull's exact faces
 * part at 1e-8 relative (measured), where a thicker solid keeps them within 1e-13 */
#define HULL_FLAT 1e-6

typedef struct {
    int v[3];
    double n[3], off;
    int alive;
} hull_face;

/* the face's unit normal and offset from its corners; 0 when it has no normal */
static int hull_plane(const double *p, hull_face *f) {
    const double *a = p + 3 * f->v[0], *b = p + 3 * f->v[1], *c = p + 3 * f->v[2];
    double e1[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]}, e2[3] = {c[0] - a[0], c[1] - a[1], c[2] - a[2]};
    double nx = e1[1] * e2[2] - e1[2] * e2[1], ny = e1[2] * e2[0] - e1[0] * e2[2], nz = e1[0] * e2[1] - e1[1] * e2[0];
    double len = sqrt(nx * nx + ny * ny + nz * nz);
    if (!(len > 0.0)) return 0;
    f->n[0] = nx / len, f->n[1] = ny / len, f->n[2] = nz / len;
    f->off = f->n[0] * a[0] + f->n[1] * a[1] + f->n[2] * a[2];
    return 1;
}

static inline double hull_dist(const hull_face *f, const double *q) {
    return f->n[0] * q[0] + f->n[1] * q[1] + f->n[2] * q[2] - f->off;
}

static double hull_volume_of(const double *p, int n, hull_face *faces, int cap, unsigned char *edge, int *next) {
    double big = 0.0;
    for (int i = 0; i < 3 * n; i++) {
        if (!isfinite(p[i])) return -1.0;
        big = fmax(big, fabs(p[i]));
    }
    if (!(big > 0.0)) return -1.0;
    double eps = EPS_HULL * big, flat = HULL_FLAT * big;
    /* the first tetrahedron: the farthest pair of the six axis extremes, the point farthest
     * from their line, the point farthest from their plane */
    int ext[6] = {0, 0, 0, 0, 0, 0};
    for (int i = 1; i < n; i++)
        for (int k = 0; k < 3; k++) {
            if (p[3 * i + k] < p[3 * ext[2 * k] + k]) ext[2 * k] = i;
            if (p[3 * i + k] > p[3 * ext[2 * k + 1] + k]) ext[2 * k + 1] = i;
        }
    int i0 = 0, i1 = 0;
    double best = -1.0;
    for (int a = 0; a < 6; a++)
        for (int b = a + 1; b < 6; b++) {
            const double *x = p + 3 * ext[a], *y = p + 3 * ext[b];
            double d = (x[0] - y[0]) * (x[0] - y[0]) + (x[1] - y[1]) * (x[1] - y[1]) + (x[2] - y[2]) * (x[2] - y[2]);
            if (d > best) best = d, i0 = ext[a], i1 = ext[b];
        }
    if (!(sqrt(best) > flat)) return -1.0;
    const double *a0 = p + 3 * i0, *a1 = p + 3 * i1;
    double u[3] = {a1[0] - a0[0], a1[1] - a0[1], a1[2] - a0[2]};
    double ulen = sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2]);
    int i2 = -1;
    best = flat;
    for (int i = 0; i < n; i++) {
        const double *q = p + 3 * i;
        double w[3] = {q[0] - a0[0], q[1] - a0[1], q[2] - a0[2]};
        double cx = u[1] * w[2] - u[2] * w[1], cy = u[2] * w[0] - u[0] * w[2], cz = u[0] * w[1] - u[1] * w[0];
        double d = sqrt(cx * cx + cy * cy + cz * cz) / ulen;
        if (d > best) best = d, i2 = i;
    }
    if (i2 < 0) return -1.0;
    hull_face base = {{i0, i1, i2}, {0, 0, 0}, 0, 1};
    if (!hull_plane(p, &base)) return -1.0;
    int i3 = -1;
    best = flat;
    for (int i = 0; i < n; i++) {
        double d = fabs(hull_dist(&base, p + 3 * i));
        if (d > best) best = d, i3 = i;
    }
    if (i3 < 0) return -1.0;
    const int first[4] = {i0, i1, i2, i3};
    double o[3];
    for (int k = 0; k < 3; k++) o[k] = (p[3 * i0 + k] + p[3 * i1 + k] + p[3 * i2 + k] + p[3 * i3 + k]) / 4.0;
    int count = 0;
    for (int f = 0; f < 4; f++) {
        hull_face *h = &faces[count++];
        int m = 0;
        for (int g = 0; g < 4; g++)
            if (g != f) h->v[m++] = first[g];
        h->alive = 1;
        if (!hull_plane(p, h)) return -1.0;
        if (hull_dist(h, o) > 0.0) { /* outward: the interior point below every face */
            int t = h->v[1];
            h->v[1] = h->v[2], h->v[2] = t;
            if (!hull_plane(p, h)) return -1.0;
        }
        if (!(hull_dist(h, o) < 0.0)) return -1.0;
    }
    for (int i = 0; i < n; i++) {
        if (i == i0 || i == i1 || i == i2 || i == i3) continue;
        const double *q = p + 3 * i;
        int seen = 0;
        for (int f = 0; f < count; f++)
            if (faces[f].alive && hull_dist(&faces[f], q) > eps) {
                faces[f].alive = 2; /* seen from q */
                seen++;
                for (int e = 0; e < 3; e++) edge[faces[f].v[e] * n + faces[f].v[(e + 1) % 3]] = 1;
            }
        if (!seen) continue; /* inside, or within eps of the hull */
        /* the horizon: edges of seen faces whose reverse is on a face q does not see */
        int horizon = 0, start = -1, ok = 1;
        for (int f = 0; f < count && ok; f++)
            if (faces[f].alive == 2)
                for (int e = 0; e < 3; e++) {
                    int a = faces[f].v[e], b = faces[f].v[(e + 1) % 3];
                    if (edge[b * n + a]) continue;
                    if (next[a] >= 0) ok = 0; /* two horizon edges leave one vertex: not one loop */
                    next[a] = b, start = a, horizon++;
                }
        int steps = 0;
        if (ok && start >= 0)
            for (int at = start; steps <= horizon; steps++) {
                at = next[at];
                if (at < 0 || at == start) break;
            }
        ok = ok && start >= 0 && steps + 1 == horizon;
        /* one loop: q's faces over it replace the seen ones */
        int free_at = 0;
        for (int f = 0; f < count; f++)
            if (faces[f].alive == 2) {
                for (int e = 0; e < 3; e++) edge[faces[f].v[e] * n + faces[f].v[(e + 1) % 3]] = 0;
                faces[f].alive = 0;
            }
        if (ok) {
            int at = start;
            for (int h = 0; h < horizon; h++) {
                while (free_at < count && faces[free_at].alive) free_at++;
                if (free_at == count) {
                    if (count == cap) {
                        ok = 0;
                        break;
                    }
                    count++;
                }
                hull_face *nf = &faces[free_at];
                nf->v[0] = at, nf->v[1] = next[at], nf->v[2] = i, nf->alive = 1;
                if (!hull_plane(p, nf) || !(hull_dist(nf, o) < 0.0)) {
                    ok = 0;
                    break;
                }
                at = next[at];
            }
        }
        for (int f = 0; f < count; f++) /* next[] back to -1 for the next point */
            for (int e = 0; e < 3; e++) next[faces[f].v[e]] = -1;
        for (int k = 0; k < 4; k++) next[first[k]] = -1;
        next[i] = -1;
        if (!ok) return -1.0;
    }
    /* a closed surface: every edge once each way, F = 2V - 4 */
    int nf = 0, nv = 0;
    for (int f = 0; f < count; f++)
        if (faces[f].alive) {
            nf++;
            for (int e = 0; e < 3; e++) {
                unsigned char *slot = &edge[faces[f].v[e] * n + faces[f].v[(e + 1) % 3]];
                if (*slot) return -1.0;
                *slot = 1;
                if (next[faces[f].v[e]] < 0) next[faces[f].v[e]] = 0, nv++;
            }
        }
    double volume = 0.0;
    for (int f = 0; f < count; f++)
        if (faces[f].alive) {
            for (int e = 0; e < 3; e++)
                if (!edge[faces[f].v[(e + 1) % 3] * n + faces[f].v[e]]) return -1.0;
            const double *a = p + 3 * faces[f].v[0], *b = p + 3 * faces[f].v[1], *c = p + 3 * faces[f].v[2];
            double x[3] = {a[0] - o[0], a[1] - o[1], a[2] - o[2]}, y[3] = {b[0] - o[0], b[1] - o[1], b[2] - o[2]},
                   z[3] = {c[0] - o[0], c[1] - o[1], c[2] - o[2]};
            volume += x[0] * (y[1] * z[2] - y[2] * z[1]) + x[1] * (y[2] * z[0] - y[0] * z[2]) +
                      x[2] * (y[0] * z[1] - y[1] * z[0]);
        }
    if (nf != 2 * nv - 4 || !(volume > 0.0)) return -1.0;
    return volume / 6.0;
}

static PyObject *hull_volume(PyObject *self, PyObject *args) {
    Py_buffer pb;
    if (!PyArg_ParseTuple(args, "y*", &pb)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = pb.len / 24;
    if (check_len(&pb, 3 * n, 8, "points")) goto done;
    double volume = -1.0;
    if (n >= 4 && n <= HULL_MAX_POINTS) {
        int cap = 4 * (int)n + 16;
        hull_face *faces = (hull_face *)malloc(sizeof(hull_face) * (size_t)cap);
        unsigned char *edge = (unsigned char *)calloc((size_t)(n * n), 1);
        int *next = (int *)malloc(sizeof(int) * (size_t)n);
        if (!faces || !edge || !next) {
            free(faces), free(edge), free(next);
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) next[i] = -1;
        volume = hull_volume_of((const double *)pb.buf, (int)n, faces, cap, edge, next);
        free(faces), free(edge), free(next);
    }
    result = PyFloat_FromDouble(volume);
done:
    PyBuffer_Release(&pb);
    return result;
}

static PyMethodDef methods[] = {
    {"dot_rows", dot_rows, METH_VARARGS, "np.einsum('ij,ij->i') of rows of three, as the kernels sum them"},
    {"bounds", bounds, METH_VARARGS, "shape._bounds of finite corners (see scanner/kernels.py)"},
    {"frame", frame, METH_VARARGS, "shape_features' points in the principal frame (see scanner/kernels.py)"},
    {"profile_steps", profile_steps, METH_VARARGS, "shape._profile_steps (see scanner/kernels.py)"},
    {"curved_faces", curved_faces, METH_VARARGS, "the end of shape._edge_stats (see scanner/kernels.py)"},
    {"face_values", face_values, METH_VARARGS, "shape._face_values (see scanner/kernels.py)"},
    {"round_about", round_about, METH_VARARGS, "shape._round_about (see scanner/kernels.py)"},
    {"line_clear", line_clear, METH_VARARGS, "shape._line_clear over every triangle (see scanner/kernels.py)"},
    {"extreme", extreme, METH_VARARGS, "shape._extreme_points of finite points (see scanner/kernels.py)"},
    {"hull_volume", hull_volume, METH_VARARGS, "convex hull volume of up to 256 points, -1 to decline (see above)"},
    {"edge_cosines", edge_cosines, METH_VARARGS, "shape._edge_stats up to the arccos (see scanner/kernels.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "scanner._shape_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__shape_kernels(void) { return PyModule_Create(&module); }
