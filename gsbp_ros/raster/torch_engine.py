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

import warnings
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import FeatureError
from gsbp_ros.raster.projection import (
    ALPHA_THRESHOLD,
    MAX_ALPHA,
    TRANSMITTANCE_STOP,
    Projected,
    depth_order,
    project_gaussians,
)
from gsbp_ros.scene import GaussianScene

DEFAULT_MAX_PAIRS = 1 << 21
"""Candidate (gaussian, pixel) pairs per chunk, counted by bounding box: about 100 bytes
each at the peak, so ~200 MB of scratch memory at most."""


class ViewWeights(ABC):
    """The compositing weights ``w_k(p)`` of one view, behind one interface for all engines.

    ``render``, ``backproject``, ``weight_sum`` and ``alpha`` are all linear in ``w``; see
    ``docs/architecture.md`` for the contract. Results live on ``device`` (the scene's);
    inputs on another device are moved there.
    """

    width: int
    height: int
    num_gaussians: int
    device: torch.device

    @abstractmethod
    def render(self, values: Tensor) -> Tensor:
        """[N, C] per-Gaussian values -> [H, W, C] ``sum_k w_k(p) v_k`` (no background)."""

    @abstractmethod
    def backproject(self, features: Tensor) -> Tensor:
        """[H', W', C] feature map -> [N, C] ``sum_p w_k(p) Up(F)(p)``.

        ``Up`` is bilinear resizing to H x W with ``align_corners=False`` (the semantics of
        ``torch.nn.functional.interpolate``), the identity when the sizes already match.
        """

    @abstractmethod
    def weight_sum(self) -> Tensor:
        """[N] ``sum_p w_k(p)``: how much of each Gaussian this view sees (0 = unseen)."""

    @abstractmethod
    def alpha(self) -> Tensor:
        """[H, W] accumulated opacity ``sum_k w_k(p)``."""

    def _check_values(self, values: Tensor) -> None:
        if values.ndim != 2 or values.shape[0] != self.num_gaussians:
            raise ValueError(
                f"values must have shape [N={self.num_gaussians}, C], got {list(values.shape)}"
            )

    def _check_features(self, features: Tensor) -> None:
        if features.ndim != 3 or min(features.shape) == 0:
            raise FeatureError(
                f"feature map must have shape [H', W', C] with no empty dimension, "
                f"got {list(features.shape)}"
            )
        if not torch.is_floating_point(features):
            raise FeatureError(f"feature map must be floating point, got {features.dtype}")


def linear_taps(out_size: int, in_size: int, *, device: torch.device | str = "cpu"):
    """1-D taps of bilinear resizing ``in_size -> out_size`` with ``align_corners=False``.

    Follows ATen's ``upsample_bilinear2d``: source coordinate ``(dst + 0.5) * in/out - 0.5``
    clamped at 0, the upper tap clamped to the last sample (edge replication).

    Returns:
        ``(i0 [out], i1 [out], w0 [out], w1 [out])``: output sample ``o`` is
        ``w0[o] * x[i0[o]] + w1[o] * x[i1[o]]``.
    """
    scale = in_size / out_size
    dst = torch.arange(out_size, device=device, dtype=torch.float64)
    src = ((dst + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = src.floor().to(torch.int64).clamp_max(in_size - 1)
    i1 = (i0 + 1).clamp_max(in_size - 1)
    w1 = src - i0
    return i0, i1, 1.0 - w1, w1


def bilinear_pixel_taps(
    height: int, width: int, in_height: int, in_width: int, *, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """Taps of bilinear resizing an ``in_height x in_width`` map to ``height x width``.

    Returns:
        ``(src [H*W, 4] int64, weight [H*W, 4] float64)``: output pixel ``p = y*W + x`` is
        ``sum_t weight[p, t] * F_flat[src[p, t]]`` with ``F_flat`` the row-major source map.
    """
    y0, y1, wy0, wy1 = linear_taps(height, in_height, device=device)
    x0, x1, wx0, wx1 = linear_taps(width, in_width, device=device)
    ys = torch.stack([y0, y0, y1, y1], dim=-1)[:, None, :]  # [H, 1, 4]
    xs = torch.stack([x0, x1, x0, x1], dim=-1)[None, :, :]  # [1, W, 4]
    wy = torch.stack([wy0, wy0, wy1, wy1], dim=-1)[:, None, :]
    wx = torch.stack([wx0, wx1, wx0, wx1], dim=-1)[None, :, :]
    src = (ys * in_width + xs).reshape(height * width, 4)
    weight = (wy * wx).reshape(height * width, 4)
    return src, weight


def coo_to_csr(
    rows: Tensor, cols: Tensor, values: Tensor, size: tuple[int, int], *, coalesce: bool = True
) -> Tensor:
    """CSR matrix from (row, col, value) triples; duplicates are summed (in float64).

    With ``coalesce=False`` the triples must already be unique; they only get sorted.
    Rows and columns come out sorted, which every sparse backend accepts.
    """
    n_rows, n_cols = size
    key = rows.to(torch.int64) * n_cols + cols.to(torch.int64)
    if coalesce:
        key, inverse = torch.unique(key, sorted=True, return_inverse=True)
        values = torch.zeros(key.numel(), device=key.device, dtype=torch.float64).index_add_(
            0, inverse, values.double()
        )
    else:
        key, perm = torch.sort(key)
        values = values[perm]
    r = torch.div(key, n_cols, rounding_mode="floor")
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=key.device)
    crow[1:] = torch.cumsum(torch.bincount(r, minlength=n_rows), 0)
    return _csr(crow, key - r * n_cols, values.to(torch.float32), size)


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        # "Sparse CSR tensor support is in beta": the operations used here are stable.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def bilinear_matrix(
    height: int, width: int, in_height: int, in_width: int, *, device: torch.device | str
) -> Tensor:
    """[H*W, H'*W'] CSR matrix of bilinear resizing (``align_corners=False``).

    ``(U @ F.reshape(H'*W', C)).reshape(H, W, C) == interpolate(F)`` up to float rounding.
    """
    src, tap_w = bilinear_pixel_taps(height, width, in_height, in_width, device=device)
    rows = torch.arange(height * width, device=device).repeat_interleave(4)
    keep = tap_w.reshape(-1) != 0  # edge taps and exact sample hits carry zero weight
    return coo_to_csr(
        rows[keep],
        src.reshape(-1)[keep],
        tap_w.reshape(-1)[keep],
        (height * width, in_height * in_width),
    )


class SparseViewWeights(ViewWeights):
    """Explicit sparse weights of one view.

    Attributes:
        gaussian_ids: [P] int64 Gaussian index of each non-zero weight.
        pixel_ids: [P] int64 pixel index ``y * width + x``.
        weights: [P] float32 ``alpha * T``.
        Pairs are ordered by pixel, then front to back.

    ``render`` and ``backproject`` are sparse-dense products with CSR matrices built on
    first use and cached: the pixel-major ``W [H*W, N]``, the Gaussian-major ``W^T``, and
    ``W^T Up`` per feature-map size (the bilinear upsampling folded in, so no [H, W, C]
    tensor is ever made).
    """

    def __init__(
        self,
        gaussian_ids: Tensor,
        pixel_ids: Tensor,
        weights: Tensor,
        *,
        width: int,
        height: int,
        num_gaussians: int,
    ) -> None:
        self.gaussian_ids = gaussian_ids
        self.pixel_ids = pixel_ids
        self.weights = weights
        self.width = int(width)
        self.height = int(height)
        self.num_gaussians = int(num_gaussians)
        self._pixel_major: Tensor | None = None
        self._folded: dict[tuple[int, int], Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def nnz(self) -> int:
        return int(self.weights.numel())

    def to_dense(self) -> Tensor:
        """[H*W, N] float32 dense weight matrix (tests and tiny scenes only)."""
        dense = torch.zeros(
            self.height * self.width, self.num_gaussians, device=self.device, dtype=torch.float32
        )
        dense.index_put_((self.pixel_ids, self.gaussian_ids), self.weights, accumulate=True)
        return dense

    # -- the ViewWeights interface --------------------------------------------------------
    def render(self, values: Tensor) -> Tensor:
        self._check_values(values)
        if self._pixel_major is None:
            self._pixel_major = coo_to_csr(
                self.pixel_ids,
                self.gaussian_ids,
                self.weights,
                (self.height * self.width, self.num_gaussians),
                coalesce=False,
            )
        out = _spmm(self._pixel_major, values.to(self.device))
        return out.reshape(self.height, self.width, -1)

    def backproject(self, features: Tensor) -> Tensor:
        self._check_features(features)
        in_h, in_w, c = features.shape
        flat = features.to(self.device).reshape(in_h * in_w, c)
        return _spmm(self.folded_matrix(in_h, in_w), flat)

    def weight_sum(self) -> Tensor:
        out = torch.zeros(self.num_gaussians, device=self.device, dtype=torch.float32)
        return out.index_add_(0, self.gaussian_ids, self.weights)

    def alpha(self) -> Tensor:
        out = torch.zeros(self.height * self.width, device=self.device, dtype=torch.float32)
        return out.index_add_(0, self.pixel_ids, self.weights).reshape(self.height, self.width)

    # -- back-projection matrices -----------------------------------------------------------
    def folded_matrix(self, in_height: int, in_width: int) -> Tensor:
        """[N, H'*W'] CSR matrix ``W^T Up``: back-projection of an H' x W' map in one product.

        Cached per size: every feature map of this view at that size reuses it.
        """
        key = (int(in_height), int(in_width))
        if key == (self.height, self.width):
            return self._gaussian_major()
        if key not in self._folded:
            self._folded[key] = self._fold(*key)
        return self._folded[key]

    def _gaussian_major(self) -> Tensor:
        """[N, H*W] CSR ``W^T``."""
        full = (self.height, self.width)
        if full not in self._folded:
            self._folded[full] = coo_to_csr(
                self.gaussian_ids,
                self.pixel_ids,
                self.weights,
                (self.num_gaussians, self.height * self.width),
                coalesce=False,
            )
        return self._folded[full]

    def _fold(self, in_h: int, in_w: int) -> Tensor:
        """``W^T @ U`` as a sparse-sparse product (about 5x faster than coalescing by sort)."""
        up = bilinear_matrix(self.height, self.width, in_h, in_w, device=self.device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return (self._gaussian_major() @ up).to_sparse_csr()
        except (RuntimeError, NotImplementedError):
            # A backend without sparse @ sparse: the plain construction gives the same matrix.
            return self.fold_by_coalescing(in_h, in_w)

    def fold_by_coalescing(self, in_h: int, in_w: int) -> Tensor:
        """Reference construction of ``W^T Up``: spread every weight over the 4 bilinear
        taps of its pixel and sum duplicates (several pixels of one Gaussian reading the
        same source sample)."""
        src, tap_w = bilinear_pixel_taps(self.height, self.width, in_h, in_w, device=self.device)
        rows = self.gaussian_ids[:, None].expand(-1, 4).reshape(-1)
        cols = src[self.pixel_ids].reshape(-1)
        vals = (self.weights[:, None].double() * tap_w[self.pixel_ids]).reshape(-1)
        keep = vals != 0
        return coo_to_csr(rows[keep], cols[keep], vals[keep], (self.num_gaussians, in_h * in_w))


def _spmm(mat: Tensor, dense: Tensor) -> Tensor:
    """CSR ``mat`` (float32) times a dense matrix, in float64 if ``dense`` is float64."""
    if dense.dtype == torch.float64:
        return mat.to(torch.float64) @ dense
    if not torch.is_floating_point(dense):
        raise ValueError(f"expected floating point values, got {dense.dtype}")
    return mat @ dense.to(torch.float32).contiguous()


def _ellipse_radius2(proj: Projected, ids: Tensor) -> Tensor:
    """Squared Mahalanobis radius inside which alpha can reach 1/255, with a safety margin.

    ``alpha = o exp(-d^2 / 2) >= 1/255`` iff ``d^2 <= 2 ln(255 o)``. The margin keeps float
    rounding at the boundary from losing a pixel whose alpha rounds up to the threshold;
    alpha itself is tested exactly afterwards.
    """
    e = proj.extents()[ids].double()
    # 1%: float32 sigma of a very elongated Gaussian (cancellation in the cross term) can be
    # off by ~1e-3 relative; the extra candidates cost about 1% more work.
    return e * e * 1.01 + 1e-2


def _row_ranges(proj: Projected, ids: Tensor, e2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
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
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    rasterize_mode: str = "classic",
    chunk_size: int | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> SparseViewWeights:
    """Sparse ``w_k(p) = alpha_k(p) T_k(p)`` of one view, exactly as gsplat composites.

    Args:
        scene: the splats (their device decides where this runs).
        camera: the view.
        near_plane, far_plane, eps2d, rasterize_mode: as :func:`project_gaussians`.
        chunk_size: at most this many Gaussians per chunk (None: limited by pairs only).
        max_pairs: at most about this many candidate pairs per chunk, counted by bounding
            box (a single larger Gaussian still forms its own chunk).

    Returns:
        :class:`SparseViewWeights`.
    """
    proj = project_gaussians(
        scene,
        camera,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        rasterize_mode=rasterize_mode,
    )
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
    e2 = _ellipse_radius2(proj, order)
    y0, y1, box = _row_ranges(proj, order, e2)
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
