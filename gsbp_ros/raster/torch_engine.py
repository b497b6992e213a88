"""Pure-torch sparse compositing weights for one view (any device).

The rasterizer's output for one view is linear in the per-Gaussian values:
``render(v)(p) = sum_k w_k(p) v_k`` with ``w_k(p) = alpha_k(p) T_k(p)``. This engine lists the
non-zero ``w_k(p)`` as (gaussian, pixel, weight) triples, so that rendering, back-projection
(``W^T F``), weight sums and alpha are all sparse products with the same matrix:

1. project (:func:`project_gaussians`) and sort the valid Gaussians front to back (ties by
   index, as gsplat's stable tile sort);
2. for each Gaussian list the pixels inside the ellipse ``sigma <= ln(255 o)`` (exactly
   the pixels whose alpha can reach 1/255; row by row, slightly widened against rounding),
   compute alpha with gsplat's float32 expression and drop ``sigma < 0`` and
   ``alpha < 1/255``;
3. sort the pairs by pixel (stable, so front to back within a pixel) and get each pair's
   transmittance from a segmented cumulative sum of ``log(1 - alpha)`` (float64);
4. apply the stop rule: gsplat stops a pixel *before* the Gaussian that would bring T to
   ``<= 1e-4``; T after a pair decreases monotonically along a pixel, so the rule is simply
   "keep pairs whose T after them is > 1e-4", plus a per-pixel ``done`` flag once it fired.

Gaussians are processed in depth-sorted chunks (at most ``chunk_size`` Gaussians and about
``max_pairs`` candidate pairs each) carrying per-pixel T and ``done`` between chunks, so the
memory stays bounded whatever the scene size. Results do not depend on the chunking (up to
float64 rounding of the log-transmittance sums).

Equal depths are ordered by Gaussian index, as in gsplat (its tile sort is a stable radix
sort over intersections emitted in index order).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.raster.projection import (
    ALPHA_THRESHOLD,
    MAX_ALPHA,
    TRANSMITTANCE_STOP,
    Projected,
    depth_order,
    project_gaussians,
)
from gsbp_ros.raster.weights import SparseViewWeights, ViewWeights
from gsbp_ros.scene import GaussianScene

DEFAULT_MAX_PAIRS = 1 << 21
"""Candidate (gaussian, pixel) pairs per chunk, counted by bounding box: about 100 bytes
each at the peak, so ~200 MB of scratch memory at most."""


__all__ = ["DEFAULT_MAX_PAIRS", "SparseViewWeights", "ViewWeights", "compute_sparse_weights"]


def ellipse_radius2(proj: Projected, ids: Tensor) -> Tensor:
    """Squared Mahalanobis radius inside which alpha can reach 1/255, with a safety margin.

    ``alpha = o exp(-d^2 / 2) >= 1/255`` iff ``d^2 <= 2 ln(255 o)``. The margin keeps float
    rounding at the boundary from losing a pixel whose alpha rounds up to the threshold;
    alpha itself is tested exactly afterwards.
    """
    e = proj.extents()[ids].double()
    # 1%: float32 sigma of a very elongated Gaussian (cancellation in the cross term) can be
    # off by ~1e-3 relative; the extra candidates cost about 1% more work.
    return e * e * 1.01 + 1e-2


def row_ranges(proj: Projected, ids: Tensor, e2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Inclusive pixel rows ``y0..y1`` of each ellipse, and its bounding-box pixel count."""
    cov = proj.covars2d[ids].double()
    rx = torch.sqrt(e2 * cov[:, 0])
    ry = torch.sqrt(e2 * cov[:, 2])
    mx, my = proj.means2d[ids, 0].double(), proj.means2d[ids, 1].double()
    w, h = proj.width, proj.height
    # Pixel y has its centre at y + 0.5. Clamp in float so that far off-screen boxes cannot
    # overflow int64.
    x0 = torch.ceil(mx - rx - 0.5).clamp(0, w).to(torch.int64)
    x1 = torch.floor(mx + rx - 0.5).clamp(-1, w - 1).to(torch.int64)
    y0 = torch.ceil(my - ry - 0.5).clamp(0, h).to(torch.int64)
    y1 = torch.floor(my + ry - 0.5).clamp(-1, h - 1).to(torch.int64)
    box = (x1 - x0 + 1).clamp_min(0) * (y1 - y0 + 1).clamp_min(0)
    return y0, y1, box


def _chunk_bounds(
    pair_counts: Tensor, chunk_size: int | None, max_pairs: int
) -> list[tuple[int, int]]:
    """Split the depth-ordered Gaussians into [start, end) runs under both limits."""
    m = int(pair_counts.numel())
    if m == 0:
        return []
    csum = torch.cumsum(pair_counts, 0).cpu()
    limit = m if chunk_size is None else max(1, int(chunk_size))
    bounds, start = [], 0
    while start < m:
        before = int(csum[start - 1]) if start > 0 else 0
        by_pairs = int(torch.searchsorted(csum, before + max_pairs, right=True))
        end = max(start + 1, min(start + limit, by_pairs))
        bounds.append((start, end))
        start = end
    return bounds


def _expand(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For ``counts [R]``: ``(owner [sum], offset [sum])``, item j of run r is (r, j)."""
    total = int(counts.sum())
    owner = torch.repeat_interleave(
        torch.arange(counts.numel(), device=counts.device), counts, output_size=total
    )
    first = torch.cumsum(counts, 0) - counts
    return owner, torch.arange(total, device=counts.device) - first[owner]


def _candidate_pairs(
    proj: Projected, ids: Tensor, e2: Tensor, y0: Tensor, y1: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(gaussian, pixel) pairs inside each (margin-widened) ellipse, and their alphas.

    Two-level expansion: Gaussians -> pixel rows -> the row's span of the ellipse. Pairs come
    out grouped by Gaussian, in the order of ``ids``.

    Returns:
        ``(gaussian [P], pixel [P] (int32 when they fit), alpha [P] float32)``, before the alpha
        threshold (alpha is 0 where sigma < 0, which gsplat skips).
    """
    width = proj.width
    row_owner, row_off = _expand((y1 - y0 + 1).clamp_min(0))
    g = ids[row_owner]
    y = y0[row_owner] + row_off
    mx, my = proj.means2d[g, 0], proj.means2d[g, 1]
    con = proj.conics[g]
    # Same float32 expression as gsplat's kernel (delta = mean - pixel centre).
    dy = my - (y.to(torch.float32) + 0.5)
    # Ellipse span of this row (float64): a dx^2 + 2 b dx dy + c dy^2 <= e2 with dx = mx - px.
    a, b, c = (con[:, k].double() for k in range(3))
    dyd = dy.double()
    disc = a * e2[row_owner] - dyd * dyd * (a * c - b * b)
    a_safe = a.clamp_min(1e-30)
    half = torch.sqrt(disc.clamp_min(0.0)) / a_safe
    ctr = mx.double() + b * dyd / a_safe
    xs0 = torch.ceil(ctr - half - 0.5 - 1e-3).clamp(0, width).to(torch.int64)
    xs1 = torch.floor(ctr + half - 0.5 + 1e-3).clamp(-1, width - 1).to(torch.int64)
    span = torch.where(disc >= 0, (xs1 - xs0 + 1).clamp_min(0), torch.zeros_like(xs0))

    pair_owner, pair_off = _expand(span)
    # One gather per dtype instead of one per attribute, into [k, P] so that each
    # attribute is a contiguous row (strided columns slow every elementwise op below);
    # int32 halves the memory traffic when indices fit.
    small = proj.width * proj.height < 2**31 and proj.num_gaussians < 2**31
    ints = torch.stack([xs0, y * width, g])
    ints = torch.index_select(ints.to(torch.int32) if small else ints, 1, pair_owner)
    rows = torch.stack([mx, dy, con[:, 0], con[:, 1], con[:, 2], proj.opacities[g]])
    mx, dy, ca, cb, cc, opac = torch.index_select(rows, 1, pair_owner).unbind(0)
    x = ints[0] + pair_off.to(ints.dtype)
    pix = ints[1] + x
    # gsplat's float32 expression, operation for operation.
    dx = mx - (x.to(torch.float32) + 0.5)
    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    alpha = torch.clamp_max(opac * torch.exp(-sigma), MAX_ALPHA)
    alpha = torch.where(sigma >= 0, alpha, torch.zeros_like(alpha))
    return ints[2], pix, alpha


@torch.no_grad()
def compute_sparse_weights(
    scene: GaussianScene,
    camera: Camera,
    *,
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
    chunk_size: int | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> SparseViewWeights:
    """Sparse ``w_k(p) = alpha_k(p) T_k(p)`` of one view, exactly as gsplat composites.

    Args:
        scene: the splats (their device decides where this runs).
        camera: the view.
        options: raster settings (near/far planes, eps2d, classic or antialiased).
        chunk_size: at most this many Gaussians per chunk (None: limited by pairs only).
        max_pairs: at most about this many candidate pairs per chunk, counted by bounding
            box (a single larger Gaussian still forms its own chunk).

    Returns:
        :class:`SparseViewWeights`.
    """
    proj = project_gaussians(scene, camera, options=options)
    return sparse_weights_from_projection(proj, chunk_size=chunk_size, max_pairs=max_pairs)


@torch.no_grad()
def sparse_weights_from_projection(
    proj: Projected, *, chunk_size: int | None = None, max_pairs: int = DEFAULT_MAX_PAIRS
) -> SparseViewWeights:
    """The chunked sparse compositing of :func:`compute_sparse_weights` on a projection."""
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    device = proj.means2d.device
    width, height = proj.width, proj.height
    n_pix = width * height
    order = depth_order(proj)
    e2 = ellipse_radius2(proj, order)
    y0, y1, box = row_ranges(proj, order, e2)
    nonempty = box > 0
    order, e2, y0, y1, box = (t[nonempty] for t in (order, e2, y0, y1, box))

    trans = torch.ones(n_pix, device=device, dtype=torch.float64)  # T before the next chunk
    done = torch.zeros(n_pix, device=device, dtype=torch.bool)
    out_g, out_p, out_w = [], [], []
    bounds = _chunk_bounds(box, chunk_size, max_pairs)
    for i, (start, end) in enumerate(bounds):
        sl = slice(start, end)
        g, pix, alpha = _candidate_pairs(proj, order[sl], e2[sl], y0[sl], y1[sl])
        keep = ((alpha >= ALPHA_THRESHOLD) & ~done[pix]).nonzero().flatten()
        if keep.numel() == 0:
            continue
        # Pairs were emitted front to back, so a stable sort by pixel keeps depth order.
        pix, perm = torch.sort(pix[keep], stable=True)
        src = keep[perm]
        g, alpha = g[src], alpha[src].double()
        pix = pix.to(torch.int64)
        log_t = torch.log1p(-alpha)
        csum = torch.cumsum(log_t, 0)  # inclusive
        seg_start = torch.ones_like(pix, dtype=torch.bool)
        seg_start[1:] = pix[1:] != pix[:-1]
        idx = torch.arange(pix.numel(), device=device)
        first = torch.cummax(torch.where(seg_start, idx, torch.zeros_like(idx)), 0).values
        # T before each pair: the pixel's T entering this chunk times the product of
        # (1 - alpha) of the pixel's earlier pairs in this chunk.
        t_before = trans[pix] * torch.exp(csum - log_t - (csum - log_t)[first])
        t_after = t_before * (1.0 - alpha)
        # T only decreases along a pixel's run, so "stop before the first pair that brings
        # T to <= 1e-4" is "keep pairs whose T after them is > 1e-4".
        ok = t_after > TRANSMITTANCE_STOP
        if i + 1 < len(bounds):  # carry T and the stop flags to the next chunk
            done[pix[~ok]] = True
            trans.scatter_reduce_(0, pix, torch.where(ok, t_after, 1.0), reduce="amin")
        sel = ok.nonzero().flatten()
        out_g.append(g[sel])
        out_p.append(pix[sel])
        out_w.append((alpha[sel] * t_before[sel]).to(torch.float32))

    if len(out_g) > 1:
        g_all, p_all, w_all = torch.cat(out_g), torch.cat(out_p), torch.cat(out_w)
        g_all = g_all.to(torch.int64)
        # Chunks are in depth order: a stable sort by pixel gives pixel-major, front to back.
        p_all, perm = torch.sort(p_all, stable=True)
        g_all, w_all = g_all[perm], w_all[perm]
    elif out_g:
        g_all, p_all, w_all = out_g[0].to(torch.int64), out_p[0], out_w[0]
    else:
        g_all = torch.zeros(0, dtype=torch.int64, device=device)
        p_all = torch.zeros(0, dtype=torch.int64, device=device)
        w_all = torch.zeros(0, dtype=torch.float32, device=device)
    return SparseViewWeights(
        g_all, p_all, w_all, width=width, height=height, num_gaussians=proj.num_gaussians
    )
