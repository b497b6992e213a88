"""Compiled loops of the CPU engine (numba, ``nogil``: the engine runs them on a thread pool).

Imported only by :mod:`gsbp_ros.raster.numba_engine` once numba is known to import. Every
kernel is a plain loop over arrays; the float32 expressions of alpha and transmittance are
gsplat's, operation for operation (``rasterize_to_pixels_3dgs_fwd_kernel``), so the weights
equal the brute-force reference in :mod:`gsbp_ros.raster.reference` up to the last bit of
``exp``.

Layout conventions (the engine builds these arrays):

- Gaussians are given in depth order (front to back, ties by index) as :data:`Splats`,
  parallel arrays ``gid [M] int32`` (scene index), ``y0, y1 [M] int32`` (inclusive pixel rows of the
  margin-widened alpha ellipse), ``mx, my [M] float32`` (projected centre), ``ca, cb, cc
  [M] float32`` (conic), ``opac [M] float32`` and ``e2 [M] float64`` (squared Mahalanobis
  radius of the ellipse, with its safety margin).
- A view's pairs live in one buffer split into segments ``(start, count)``, one per row band;
  inside a band they are grouped by Gaussian in depth order (W^T's natural order).
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

Splats = namedtuple("Splats", ["gid", "y0", "y1", "mx", "my", "ca", "cb", "cc", "opac", "e2"])
"""The depth-ordered Gaussians of a view as the band kernels read them (see the module
docstring): one array per field, index j = the j-th Gaussian front to back."""

Taps = namedtuple("Taps", ["y0", "y1", "wy0", "wy1", "x0", "x1", "wx0", "wx1", "in_w"])
"""Separable bilinear taps of an ``in_h x in_w`` map resized to the view: output row y reads
source rows ``y0[y]``, ``y1[y]`` with weights ``wy0[y]``, ``wy1[y]`` (int32 / float64 [H]),
likewise for columns ([W]); source sample ``s = row * in_w + col``."""

_F0 = np.float32(0.0)
_F05 = np.float32(0.5)
_F1 = np.float32(1.0)
_MAX_ALPHA = np.float32(0.999)
_ALPHA_THRESHOLD = np.float32(1.0 / 255.0)
_T_STOP = np.float32(1e-4)


@njit(nogil=True, cache=True, inline="always")
def _row_span(mx, dy, ca, cb, cc, e2, width):
    """Inclusive columns ``(x0, x1)`` of the ellipse on a pixel row; ``x1 < x0`` if empty.

    The same float64 expression as the torch engine's ``_candidate_pairs``: the ellipse
    ``a dx^2 + 2 b dx dy + c dy^2 <= e2`` solved for dx, widened by 1e-3 px against rounding.
    """
    a = np.float64(ca)
    b = np.float64(cb)
    c = np.float64(cc)
    dyd = np.float64(dy)
    disc = a * e2 - dyd * dyd * (a * c - b * b)
    if disc < 0.0:
        return 0, -1
    a_safe = max(a, 1e-30)
    half = math.sqrt(disc) / a_safe
    ctr = np.float64(mx) + b * dyd / a_safe
    lo = min(max(np.ceil(ctr - half - 0.5 - 1e-3), 0.0), np.float64(width))
    hi = min(max(np.floor(ctr + half - 0.5 + 1e-3), -1.0), np.float64(width - 1))
    return int(lo), int(hi)


@njit(nogil=True, cache=True)
def row_candidates(s, width, height):
    """[height] int64: candidate (Gaussian, pixel) pairs on each pixel row of ``s`` (Splats).

    An exact upper bound of the pairs the band kernel can keep on that row, so that a band's
    output fits in the slot sized by these counts.
    """
    counts = np.zeros(height, dtype=np.int64)
    for i in range(s.y0.shape[0]):
        for y in range(max(s.y0[i], 0), min(s.y1[i], height - 1) + 1):
            dy = s.my[i] - (np.float32(y) + _F05)
            x0, x1 = _row_span(s.mx[i], dy, s.ca[i], s.cb[i], s.cc[i], s.e2[i], width)
            if x1 >= x0:
                counts[y] += x1 - x0 + 1
    return counts


@njit(nogil=True, cache=True)
def band_pairs(row_lo, row_hi, s, width, trans, done, out_g, out_p, out_w, start):
    """Composite the rows ``row_lo <= y < row_hi`` of ``s`` (Splats) front to back; write the
    kept pairs.

    ``trans [H*W] float32`` (1 on entry) and ``done [H*W] bool`` (False on entry) hold each
    pixel's transmittance and stop flag; only this band's pixels are touched, so bands can
    run concurrently. Pairs go to ``out_*[start:start + count]``; returns ``count``.
    """
    k = start
    for i in range(s.gid.shape[0]):
        if s.y1[i] < row_lo or s.y0[i] >= row_hi:
            continue
        g = s.gid[i]
        gx = s.mx[i]
        gy = s.my[i]
        a = s.ca[i]
        b = s.cb[i]
        c = s.cc[i]
        o = s.opac[i]
        for y in range(max(s.y0[i], row_lo), min(s.y1[i], row_hi - 1) + 1):
            dy = gy - (np.float32(y) + _F05)
            x0, x1 = _row_span(gx, dy, a, b, c, s.e2[i], width)
            base = y * width
            for x in range(x0, x1 + 1):
                pix = base + x
                if done[pix]:
                    continue
                dx = gx - (np.float32(x) + _F05)
                sigma = _F05 * (a * dx * dx + c * dy * dy) + b * dx * dy
                alpha = min(_MAX_ALPHA, o * np.float32(math.exp(-sigma)))
                if sigma < _F0 or alpha < _ALPHA_THRESHOLD:
                    continue
                t = trans[pix]
                next_t = t * (_F1 - alpha)
                if next_t <= _T_STOP:  # exclusive: gsplat stops before this Gaussian
                    done[pix] = True
                    continue
                out_g[k] = g
                out_p[k] = pix
                out_w[k] = alpha * t
                trans[pix] = next_t
                k += 1
    return k - start


@njit(nogil=True, cache=True)
def fold_band(g, p, w, start, count, width, taps, scratch, touched, out_g, out_s, out_v, out_start):
    """Fold bilinear upsampling into one band's weights: ``(W^T Up)`` entries of the band.

    For each run of pairs of one Gaussian, spread every weight over the 4 taps of its pixel
    (source sample ``s = row * in_w + col``), summing in the float64 ``scratch`` (zeros on
    entry and on return; one per concurrent call), then emit one entry per touched sample.
    Returns the number of entries written at ``out_*[out_start:]``.
    """
    k = out_start
    end = start + count
    i = start
    while i < end:
        gi = g[i]
        n_touched = 0
        while i < end and g[i] == gi:
            pix = p[i]
            y = pix // width
            x = pix - y * width
            wi = np.float64(w[i])
            for r in range(2):
                if r == 0:
                    sr = taps.y0[y]
                    fr = taps.wy0[y]
                else:
                    sr = taps.y1[y]
                    fr = taps.wy1[y]
                if fr == 0.0:
                    continue
                for q in range(2):
                    if q == 0:
                        sc = taps.x0[x]
                        fc = taps.wx0[x]
                    else:
                        sc = taps.x1[x]
                        fc = taps.wx1[x]
                    if fc == 0.0:
                        continue
                    s = sr * taps.in_w + sc
                    if scratch[s] == 0.0:
                        touched[n_touched] = s
                        n_touched += 1
                    scratch[s] += wi * fr * fc
            i += 1
        for j in range(n_touched):
            s = touched[j]
            out_g[k] = gi
            out_s[k] = s
            out_v[k] = np.float32(scratch[s])
            scratch[s] = 0.0
            k += 1
    return k - out_start


@njit(nogil=True, cache=True)
def weight_sums(g, w, starts, counts, out):
    """``out[g] += w`` over the segments (float64 ``out``)."""
    for b in range(starts.shape[0]):
        for k in range(starts[b], starts[b] + counts[b]):
            out[g[k]] += w[k]


@njit(nogil=True, cache=True)
def render_segment(g, p, w, start, count, values, out):
    """``out[p, :] += w * values[g, :]`` over one band (bands own disjoint pixels)."""
    channels = values.shape[1]
    for k in range(start, start + count):
        gi = g[k]
        pix = p[k]
        wk = w[k]
        for c in range(channels):
            out[pix, c] += wk * values[gi, c]


@njit(nogil=True, cache=True)
def alpha_segment(p, w, start, count, out):
    """``out[p] += w`` over one band."""
    for k in range(start, start + count):
        out[p[k]] += w[k]


@njit(nogil=True, cache=True)
def segments_to_csr(eg, es, ev, starts, counts, n_rows, crow, col, val):
    """Counting sort of segmented entries ``(row, col, value)`` into CSR arrays.

    ``crow [n_rows + 1]`` (int32 or int64, zeros on entry) gets the row offsets; ``col`` and
    ``val`` (length = number of entries) the entries grouped by row, each row's entries in
    their input order (duplicates kept: products with them are still exact).
    """
    for b in range(starts.shape[0]):
        for k in range(starts[b], starts[b] + counts[b]):
            crow[eg[k] + 1] += 1
    for r in range(n_rows):
        crow[r + 1] += crow[r]
    cursor = crow[:-1].copy()
    for b in range(starts.shape[0]):
        for k in range(starts[b], starts[b] + counts[b]):
            r = eg[k]
            i = cursor[r]
            col[i] = es[k]
            val[i] = ev[k]
            cursor[r] = i + 1


_F1_255 = np.float32(1.0 / 255.0)
_F03 = np.float32(0.3)
_F2 = np.float32(2.0)
_F333 = np.float32(3.33)


@njit(nogil=True, cache=True)
def project(
    means,
    quats,
    log_scales,
    logits,
    view,
    intr,
    width,
    height,
    near,
    far,
    eps2d,
    antialiased,
    lo,
    hi,
    means2d,
    conics,
    covars2d,
    depths,
    opacities,
    radii,
    valid,
):
    """EWA projection of Gaussians ``lo <= i < hi`` into one view, float32 throughout.

    The arithmetic of :func:`gsbp_ros.raster.projection.project_gaussians` (gsplat 1.5.3's
    ``ProjectionEWA3DGSFused.cu`` rules: clamped Jacobian, eps2d low-pass, opacity-aware
    box, antialiasing compensation), written per Gaussian. ``view [4, 4]``, ``intr`` =
    ``(fx, fy, cx, cy)``; outputs as the fields of ``Projected``.
    """
    fx = intr[0]
    fy = intr[1]
    cx = intr[2]
    cy = intr[3]
    wf = np.float32(width)
    hf = np.float32(height)
    tan_fovx = _F05 * wf / fx
    tan_fovy = _F05 * hf / fy
    lim_x_pos = (wf - cx) / fx + _F03 * tan_fovx
    lim_x_neg = cx / fx + _F03 * tan_fovx
    lim_y_pos = (hf - cy) / fy + _F03 * tan_fovy
    lim_y_neg = cy / fy + _F03 * tan_fovy
    rot = np.empty((3, 3), dtype=np.float32)
    m = np.empty((3, 3), dtype=np.float32)
    cov = np.empty((3, 3), dtype=np.float32)
    covc = np.empty((3, 3), dtype=np.float32)
    tmp = np.empty((3, 3), dtype=np.float32)
    for i in range(lo, hi):
        # camera-space mean
        x = view[0, 0] * means[i, 0] + view[0, 1] * means[i, 1] + view[0, 2] * means[i, 2]
        y = view[1, 0] * means[i, 0] + view[1, 1] * means[i, 1] + view[1, 2] * means[i, 2]
        z = view[2, 0] * means[i, 0] + view[2, 1] * means[i, 1] + view[2, 2] * means[i, 2]
        x += view[0, 3]
        y += view[1, 3]
        z += view[2, 3]
        depths[i] = z
        in_depth = z >= near and z <= far
        zs = z if in_depth else _F1
        # world covariance R S S^T R^T from the normalised quaternion (w, x, y, z)
        qw = quats[i, 0]
        qx = quats[i, 1]
        qy = quats[i, 2]
        qz = quats[i, 3]
        qn = np.float32(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz))
        qw /= qn
        qx /= qn
        qy /= qn
        qz /= qn
        rot[0, 0] = _F1 - _F2 * (qy * qy + qz * qz)
        rot[0, 1] = _F2 * (qx * qy - qw * qz)
        rot[0, 2] = _F2 * (qx * qz + qw * qy)
        rot[1, 0] = _F2 * (qx * qy + qw * qz)
        rot[1, 1] = _F1 - _F2 * (qx * qx + qz * qz)
        rot[1, 2] = _F2 * (qy * qz - qw * qx)
        rot[2, 0] = _F2 * (qx * qz - qw * qy)
        rot[2, 1] = _F2 * (qy * qz + qw * qx)
        rot[2, 2] = _F1 - _F2 * (qx * qx + qy * qy)
        for r in range(3):
            for c in range(3):
                m[r, c] = rot[r, c] * np.float32(math.exp(log_scales[i, c]))
        for r in range(3):
            for c in range(3):
                cov[r, c] = m[r, 0] * m[c, 0] + m[r, 1] * m[c, 1] + m[r, 2] * m[c, 2]
        # camera-space covariance V cov V^T
        for r in range(3):
            for c in range(3):
                tmp[r, c] = view[r, 0] * cov[0, c] + view[r, 1] * cov[1, c] + view[r, 2] * cov[2, c]
        for r in range(3):
            for c in range(3):
                covc[r, c] = (
                    tmp[r, 0] * view[c, 0] + tmp[r, 1] * view[c, 1] + tmp[r, 2] * view[c, 2]
                )
        rz = _F1 / zs
        tx = zs * min(lim_x_pos, max(-lim_x_neg, x * rz))
        ty = zs * min(lim_y_pos, max(-lim_y_neg, y * rz))
        j00 = fx * rz
        j02 = -fx * tx * rz * rz
        j11 = fy * rz
        j12 = -fy * ty * rz * rz
        # cov2d = J covc J^T with J = [[j00, 0, j02], [0, j11, j12]]
        a0 = j00 * covc[0, 0] + j02 * covc[2, 0]
        a1 = j00 * covc[0, 1] + j02 * covc[2, 1]
        a2 = j00 * covc[0, 2] + j02 * covc[2, 2]
        b0 = j11 * covc[1, 0] + j12 * covc[2, 0]
        b1 = j11 * covc[1, 1] + j12 * covc[2, 1]
        b2 = j11 * covc[1, 2] + j12 * covc[2, 2]
        c00 = a0 * j00 + a2 * j02
        c01 = a1 * j11 + a2 * j12
        c10 = b0 * j00 + b2 * j02
        c11 = b1 * j11 + b2 * j12
        mx = fx * x * rz + cx
        my = fy * y * rz + cy
        means2d[i, 0] = mx
        means2d[i, 1] = my
        det_orig = c00 * c11 - c01 * c10
        cxx = c00 + eps2d
        cyy = c11 + eps2d
        cxy = _F05 * (c01 + c10)
        det = cxx * cyy - c01 * c10
        ok_det = det > _F0
        safe_det = det if ok_det else _F1
        conics[i, 0] = cyy / safe_det
        conics[i, 1] = -cxy / safe_det
        conics[i, 2] = cxx / safe_det
        covars2d[i, 0] = cxx
        covars2d[i, 1] = cxy
        covars2d[i, 2] = cyy
        o = _F1 / (_F1 + np.float32(math.exp(-logits[i])))
        if antialiased:
            o = o * np.float32(math.sqrt(max(det_orig / safe_det, _F0)))
        opacities[i] = o
        ratio = np.float32(math.log(max(o, np.float32(1e-30)) / _F1_255))
        extend = min(_F333, np.float32(math.sqrt(_F2 * max(ratio, _F0))))
        rx = np.float32(math.ceil(extend * np.float32(math.sqrt(max(cxx, _F0)))))
        ry = np.float32(math.ceil(extend * np.float32(math.sqrt(max(cyy, _F0)))))
        inside = mx + rx > _F0 and mx - rx < wf and my + ry > _F0 and my - ry < hf
        ok = (
            in_depth
            and ok_det
            and o >= _F1_255
            and (rx > _F0 or ry > _F0)
            and inside
            and math.isfinite(mx)
            and math.isfinite(my)
        )
        valid[i] = ok
        radii[i, 0] = np.int32(rx) if ok else 0
        radii[i, 1] = np.int32(ry) if ok else 0


_F1E30 = np.float32(1e-30)


@njit(nogil=True, cache=True)
def prepare(order, means2d, conics, covars2d, opacities, width, height, s):
    """Gather the depth-ordered Gaussians whose alpha ellipse touches the image.

    For each ``order[j]``: the squared Mahalanobis radius where alpha can reach 1/255, with
    the engines' safety margin (``e^2 * 1.01 + 0.01``), and the inclusive pixel rows of that
    ellipse's bounding box. Gaussians whose box misses the image are dropped. Writes the
    first entries of ``s`` (Splats, as long as ``order``); returns how many were kept.
    """
    k = 0
    wf = np.float64(width)
    hf = np.float64(height)
    for j in range(order.shape[0]):
        i = order[j]
        o = opacities[i]
        ratio = np.float32(math.log(max(o, _F1E30) / _F1_255))
        ext = np.float64(np.float32(math.sqrt(_F2 * max(ratio, _F0))))
        r2 = ext * ext * 1.01 + 1e-2
        rx = math.sqrt(r2 * np.float64(covars2d[i, 0]))
        ry = math.sqrt(r2 * np.float64(covars2d[i, 2]))
        gx = np.float64(means2d[i, 0])
        gy = np.float64(means2d[i, 1])
        bx0 = min(max(np.ceil(gx - rx - 0.5), 0.0), wf)
        bx1 = min(max(np.floor(gx + rx - 0.5), -1.0), wf - 1.0)
        by0 = min(max(np.ceil(gy - ry - 0.5), 0.0), hf)
        by1 = min(max(np.floor(gy + ry - 0.5), -1.0), hf - 1.0)
        if bx1 < bx0 or by1 < by0:
            continue
        s.gid[k] = i
        s.y0[k] = int(by0)
        s.y1[k] = int(by1)
        s.mx[k] = means2d[i, 0]
        s.my[k] = means2d[i, 1]
        s.ca[k] = conics[i, 0]
        s.cb[k] = conics[i, 1]
        s.cc[k] = conics[i, 2]
        s.opac[k] = o
        s.e2[k] = r2
        k += 1
    return k


@njit(nogil=True, cache=True)
def depth_order(valid, depths):
    """[M] int32 indices of the valid Gaussians, front to back, ties in index order.

    A stable LSD radix sort on the float32 bit patterns (order-preserving for depths >= 0,
    which every valid Gaussian has: ``z >= near_plane >= 0``); stable, so equal depths keep
    index order as gsplat's radix sort over index-ordered intersections does.
    """
    n = 0
    for i in range(valid.shape[0]):
        if valid[i]:
            n += 1
    keys = np.empty(n, np.uint32)
    idx = np.empty(n, np.int32)
    k = 0
    for i in range(valid.shape[0]):
        if valid[i]:
            keys[k] = np.float32(depths[i] + _F0).view(np.uint32)  # -0.0 + 0.0 = +0.0
            idx[k] = i
            k += 1
    keys2 = np.empty_like(keys)
    idx2 = np.empty_like(idx)
    count = np.zeros(256, np.int64)
    for shift in range(0, 32, 8):
        count[:] = 0
        for j in range(n):
            count[(keys[j] >> shift) & 255] += 1
        total = 0
        for b in range(256):
            c = count[b]
            count[b] = total
            total += c
        for j in range(n):
            b = (keys[j] >> shift) & 255
            p = count[b]
            keys2[p] = keys[j]
            idx2[p] = idx[j]
            count[b] = p + 1
        keys, keys2 = keys2, keys
        idx, idx2 = idx2, idx
    return idx
