/* Compiled kernels for the patch codes (scanner/features/patches.py; scanner/kernels.py says
 * when they are used).
 *
 * One chunk of triangles in two passes around numpy's transcendentals: ``geometry`` repeats
 * the float32 arithmetic of ``_chunk_codes`` up to the ratios and the fold's two legs; numpy
 * then takes their log2 and arctan2 (its SIMD log2/atan2 are not glibc's: they stay numpy's);
 * ``codes`` repeats the quantisation, the hashes, the fold sides and the triangle hash. Every
 * float operation is numpy's, element by element, in the same order and precision (float32
 * where the coordinates are float32, as numpy computes them), built without FMA contraction or
 * fast-math (setup.py), so the codes are the same bits (tests/unit/test_patch_kernels.py).
 *
 * Plain CPython C API and the buffer protocol (no numpy headers): the Python side allocates
 * every array and checks dtypes; the kernels check buffer sizes and vertex ids. The arithmetic
 * runs without the GIL, as numpy's loops do. */
#include "_kernels_common.h"

/* np.maximum(a, c) for a constant c (never NaN): a NaN a stays NaN */
static inline float npmax(float a, float c) { return a < c ? c : a; }
/* np.minimum and np.maximum of two values where only finite results matter: a NaN or an
 * infinity in either gives a NaN (x - x), which the codes kernel leaves to the numpy code, as
 * it does numpy's NaN or infinity (log2 of either is not finite); finite values are exact
 * (+0 added). Written so that the compiler vectorises them (plain selects). */
static inline float poison(float a, float b) { return (a - a) + (b - b); }
static inline float npmin2(float a, float b) { return (b < a ? b : a) + poison(a, b); }
static inline float npmax2(float a, float b) { return (a < b ? b : a) + poison(a, b); }

/* the far corner across edge k of chunk triangle i: nb is the whole (3, F) array (int32 or int64) */
static inline int64_t far_id(const void *nb, int wide, Py_ssize_t at) {
    return wide ? ((const int64_t *)nb)[at] : (int64_t)((const int32_t *)nb)[at];
}

#define BLOCK 256

/* geometry(x, y, z, faces, nb, nb_wide, lo, n, ratios, up, out, perim, area) -> bool
 *
 * For triangles lo .. lo + n of float32 vertex columns x, y, z (V each), faces (F, 3) int64
 * and nb (3, F) (int64 when nb_wide, else int32): ratios (12, n) float32 - rows 3j + k: edge
 * k's side / perimeter, min(du, dv), max(du, dv), do, each np.maximum'd with float32(1e-12)
 * (``_q``'s floor); up and out (3, n) float32 (arctan2's arguments, before the
 * np.where on ``has``); perim, area (n,) float32. False when a vertex id is out of range (the
 * numpy code then raises its own error). */
static PyObject *geometry(PyObject *self, PyObject *args) {
    Py_buffer xb, yb, zb, fb, nbb, rb, ub, ob, pb, ab;
    int wide;
    Py_ssize_t lo, n;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*pnnw*w*w*w*w*", &xb, &yb, &zb, &fb, &nbb, &wide, &lo, &n, &rb, &ub, &ob,
                          &pb, &ab))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t nv = xb.len / 4, nf = fb.len / 24;
    if (check_len(&yb, nv, 4, "y") || check_len(&zb, nv, 4, "z") || check_len(&fb, nf, 24, "faces") ||
        check_len(&nbb, 3 * nf, wide ? 8 : 4, "nb") || check_len(&rb, 12 * n, 4, "ratios") ||
        check_len(&ub, 3 * n, 4, "up") || check_len(&ob, 3 * n, 4, "out") || check_len(&pb, n, 4, "perim") ||
        check_len(&ab, n, 4, "area"))
        goto done;
    if (lo < 0 || n < 0 || lo + n > nf) {
        PyErr_SetString(PyExc_ValueError, "chunk out of range");
        goto done;
    }
    const float *X = (const float *)xb.buf, *Y = (const float *)yb.buf, *Z = (const float *)zb.buf;
    const int64_t *faces = (const int64_t *)fb.buf;
    const void *nb = nbb.buf;
    float *ratios = (float *)rb.buf, *UP = (float *)ub.buf, *OUT = (float *)ob.buf;
    float *PERIM = (float *)pb.buf, *AREA = (float *)ab.buf;
    const float floor12 = (float)1e-12, tiny = 0.0f; /* 1e-12 and 1e-300 as numpy casts them to float32 */
    int bad = 0;
    /* one block of triangles at a time, row by row (about 46 kB on the stack) */
    float C[3][3][BLOCK], D[3][3][BLOCK], E[3][3][BLOCK], S[3][BLOCK], N[3][BLOCK], P[BLOCK], R[6][BLOCK];
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t b0 = 0; b0 < n && !bad; b0 += BLOCK) {
        Py_ssize_t m = n - b0 < BLOCK ? n - b0 : BLOCK;
        /* the gathers first (corners and far corners, coordinate-major), then the arithmetic
         * on whole rows, which the compiler vectorises (IEEE operations: the same bits) */
        for (Py_ssize_t i = 0; i < m && !bad; i++) {
            const int64_t *f = faces + 3 * (lo + b0 + i);
            for (int k = 0; k < 3; k++) {
                int64_t v = f[k];
                int64_t far = far_id(nb, wide, (Py_ssize_t)k * nf + lo + b0 + i);
                if (far < 0) far = 0;
                if (v < 0 || v >= nv || far >= nv) {
                    bad = 1;
                    break;
                }
                C[0][k][i] = X[v], C[1][k][i] = Y[v], C[2][k][i] = Z[v];
                D[0][k][i] = X[far], D[1][k][i] = Y[far], D[2][k][i] = Z[far];
            }
        }
        if (bad) break;
        float *restrict area = AREA + b0, *restrict per = PERIM + b0;
        for (Py_ssize_t i = 0; i < m; i++) {
            float ex0 = C[0][1][i] - C[0][0][i], ey0 = C[1][1][i] - C[1][0][i], ez0 = C[2][1][i] - C[2][0][i];
            float ex1 = C[0][2][i] - C[0][1][i], ey1 = C[1][2][i] - C[1][1][i], ez1 = C[2][2][i] - C[2][1][i];
            float ex2 = C[0][0][i] - C[0][2][i], ey2 = C[1][0][i] - C[1][2][i], ez2 = C[2][0][i] - C[2][2][i];
            float s0 = sqrtf(ex0 * ex0 + ey0 * ey0 + ez0 * ez0);
            float s1 = sqrtf(ex1 * ex1 + ey1 * ey1 + ez1 * ez1);
            float s2 = sqrtf(ex2 * ex2 + ey2 * ey2 + ez2 * ez2);
            float perim = s0 + s1 + s2;
            float ax = ex0, ay = ey0, az = ez0, bx = -ex2, by = -ey2, bz = -ez2;
            float nx = ay * bz - az * by, ny = az * bx - ax * bz, nz = ax * by - ay * bx;
            float dbl = sqrtf(nx * nx + ny * ny + nz * nz);
            area[i] = 0.5f * dbl;
            per[i] = perim;
            float inv = 1.0f / npmax(dbl, tiny);
            N[0][i] = nx * inv, N[1][i] = ny * inv, N[2][i] = nz * inv;
            P[i] = perim;
            E[0][0][i] = ex0, E[1][0][i] = ey0, E[2][0][i] = ez0, S[0][i] = s0;
            E[0][1][i] = ex1, E[1][1][i] = ey1, E[2][1][i] = ez1, S[1][i] = s1;
            E[0][2][i] = ex2, E[1][2][i] = ey2, E[2][2][i] = ez2, S[2][i] = s2;
        }
        for (int k = 0; k < 3; k++) {
            int k1 = k == 2 ? 0 : k + 1, k2 = k == 0 ? 2 : k - 1;
            /* into rows on the stack, copied out after: no run-time alias checks in the loop */
            float *r0 = R[0], *r1 = R[1], *r2 = R[2], *r3 = R[3], *up = R[4], *out = R[5];
            for (Py_ssize_t i = 0; i < m; i++) {
                float perim = P[i], side = S[k][i];
                float dx = D[0][k][i], dy = D[1][k][i], dz = D[2][k][i];
                float ux = C[0][k][i], uy = C[1][k][i], uz = C[2][k][i];
                float vx = C[0][k1][i], vy = C[1][k1][i], vz = C[2][k1][i];
                float ox = C[0][k2][i], oy = C[1][k2][i], oz = C[2][k2][i];
                float pux = dx - ux, puy = dy - uy, puz = dz - uz;
                float du = sqrtf(pux * pux + puy * puy + puz * puz) / perim;
                float pvx = dx - vx, pvy = dy - vy, pvz = dz - vz;
                float dv = sqrtf(pvx * pvx + pvy * pvy + pvz * pvz) / perim;
                float pox = dx - ox, poy = dy - oy, poz = dz - oz;
                float dd = sqrtf(pox * pox + poy * poy + poz * poz) / perim;
                float inv_side = 1.0f / npmax(side, tiny);
                float tx = E[0][k][i] * inv_side, ty = E[1][k][i] * inv_side, tz = E[2][k][i] * inv_side;
                float along = pux * tx + puy * ty + puz * tz;
                float hx = pux - along * tx, hy = puy - along * ty, hz = puz - along * tz;
                float qx = ux - ox, qy = uy - oy, qz = uz - oz;
                along = qx * tx + qy * ty + qz * tz;
                float wx = qx - along * tx, wy = qy - along * ty, wz = qz - along * tz;
                up[i] = hx * N[0][i] + hy * N[1][i] + hz * N[2][i];
                out[i] = (hx * wx + hy * wy + hz * wz) / npmax(sqrtf(wx * wx + wy * wy + wz * wz), tiny);
                r0[i] = npmax(side / perim, floor12);
                r1[i] = npmax(npmin2(du, dv), floor12);
                r2[i] = npmax(npmax2(du, dv), floor12);
                r3[i] = npmax(dd, floor12);
            }
            for (int j = 0; j < 4; j++) memcpy(ratios + (j * 3 + k) * n + b0, R[j], sizeof(float) * m);
            memcpy(UP + k * n + b0, R[4], sizeof(float) * m);
            memcpy(OUT + k * n + b0, R[5], sizeof(float) * m);
        }
    }
    Py_END_ALLOW_THREADS;
    result = bad ? Py_False : Py_True;
    Py_INCREF(result);
done:
    PyBuffer_Release(&xb);
    PyBuffer_Release(&yb);
    PyBuffer_Release(&zb);
    PyBuffer_Release(&fb);
    PyBuffer_Release(&nbb);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&ub);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&ab);
    return result;
}

/* rint(x).astype(int64) for a finite x well inside int64 (the caller checks) */
static inline int64_t q_of(float x) { return (int64_t)rintf(x); }

#define NO_NEIGHBOUR (1 << 20)

/* codes(logs, atan, area, nb, nb_wide, lo, angle_step, ring, fold) -> bool
 *
 * logs (12, n) float32: np.log2 of geometry's ratios (rows 0-11); atan (3, n) float32:
 * np.arctan2(up, out); area (n,) float32; nb as geometry's. Writes the ring and fold codes
 * (n,) uint64 of the triangles with area > 0 (the others are dropped by patch_codes: their
 * codes are left unspecified). False when one of those triangles has a log or an angle that
 * is not finite (huge coordinates): the numpy code then decides, with its casts. */
static PyObject *codes(PyObject *self, PyObject *args) {
    Py_buffer lb, tb, ab, nbb, rb, fb;
    int wide;
    Py_ssize_t lo;
    double angle_step;
    if (!PyArg_ParseTuple(args, "y*y*y*y*pndw*w*", &lb, &tb, &ab, &nbb, &wide, &lo, &angle_step, &rb, &fb))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ab.len / 4, nf = nbb.len / (wide ? 24 : 12);
    if (check_len(&lb, 12 * n, 4, "logs") || check_len(&tb, 3 * n, 4, "atan") ||
        check_len(&nbb, 3 * nf, wide ? 8 : 4, "nb") || check_len(&rb, n, 8, "ring") || check_len(&fb, n, 8, "fold"))
        goto done;
    if (lo < 0 || lo + n > nf) {
        PyErr_SetString(PyExc_ValueError, "chunk out of range");
        goto done;
    }
    const float *L = (const float *)lb.buf, *T = (const float *)tb.buf, *A = (const float *)ab.buf;
    const void *nb = nbb.buf;
    uint64_t *RING = (uint64_t *)rb.buf, *FOLD = (uint64_t *)fb.buf;
    const float step = 1.0f / 256.0f; /* STEP as numpy casts it to float32 (exactly) */
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!(A[i] > 0.0f)) continue; /* dropped by patch_codes */
        int64_t q[4][3], angle[3], raw[3];
        int has[3];
        for (int k = 0; k < 3; k++) {
            has[k] = far_id(nb, wide, (Py_ssize_t)k * nf + lo + i) >= 0;
            for (int j = 0; j < 4; j++) {
                float x = L[(j * 3 + k) * n + i] / step;
                if (!(fabsf(x) < 1e18f)) bad = 1;
                q[j][k] = bad ? 0 : q_of(x);
            }
            float theta = has[k] ? T[k * n + i] : 0.0f;
            if (!(fabsf(theta) < 1e6f)) bad = 1;
            if (bad) break;
            angle[k] = (int64_t)rint((double)fabsf(theta) / angle_step);
            raw[k] = angle[k] > 0 ? (theta > 0.0f ? 1 : (theta < 0.0f ? -1 : 0)) : 0;
            if (!has[k]) q[1][k] = q[2][k] = q[3][k] = angle[k] = NO_NEIGHBOUR;
        }
        if (bad) break;
        uint64_t ring_e[3], fold_e[3];
        for (int k = 0; k < 3; k++) {
            uint64_t h = 0x9E3779B97F4A7C15ull + 1;
            for (int j = 0; j < 4; j++) h = splitmix(h ^ (uint64_t)q[j][k]);
            ring_e[k] = h;
            h = 0x9E3779B97F4A7C15ull + 2;
            h = splitmix(h ^ (uint64_t)q[0][k]);
            fold_e[k] = splitmix(h ^ (uint64_t)angle[k]);
        }
        /* _fold_sides */
        int64_t total = 0;
        for (int k = 0; k < 3; k++) total += raw[k] * (angle[k] == NO_NEIGHBOUR ? 0 : angle[k]);
        total = (total > 0) - (total < 0);
        uint64_t f0 = raw[0] != 0 ? ring_e[0] : UINT64_MAX, f1 = raw[1] != 0 ? ring_e[1] : UINT64_MAX;
        uint64_t f2 = raw[2] != 0 ? ring_e[2] : UINT64_MAX;
        int second = f1 < f0, third = f2 < (f0 < f1 ? f0 : f1);
        int64_t tie = third ? raw[2] : (second ? raw[1] : raw[0]);
        int64_t norm = total != 0 ? total : (tie != 0 ? tie : 1);
        for (int kind = 0; kind < 2; kind++) {
            const uint64_t *e = kind ? fold_e : ring_e;
            uint64_t x[3];
            for (int k = 0; k < 3; k++) x[k] = splitmix(e[k] ^ (uint64_t)(raw[k] * norm + 2));
            uint64_t a = x[0] < x[1] ? x[0] : x[1], b = x[0] < x[1] ? x[1] : x[0];
            uint64_t low = a < x[2] ? a : x[2], c = a < x[2] ? x[2] : a;
            uint64_t mid = b < c ? b : c, top = b < c ? c : b;
            uint64_t h = 0x9E3779B97F4A7C15ull;
            h = splitmix(h ^ low);
            h = splitmix(h ^ mid);
            h = splitmix(h ^ top);
            h = (h & ~(uint64_t)1) | (uint64_t)kind;
            (kind ? FOLD : RING)[i] = h;
        }
    }
    Py_END_ALLOW_THREADS;
    result = bad ? Py_False : Py_True;
    Py_INCREF(result);
done:
    PyBuffer_Release(&lb);
    PyBuffer_Release(&tb);
    PyBuffer_Release(&ab);
    PyBuffer_Release(&nbb);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&fb);
    return result;
}

static PyMethodDef methods[] = {
    {"geometry", geometry, METH_VARARGS, "the patch codes' float32 ratios and fold legs (see scanner/kernels.py)"},
    {"codes", codes, METH_VARARGS, "the patch codes' quantisation and hashes (see scanner/kernels.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "scanner._patch_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__patch_kernels(void) { return PyModule_Create(&module); }
