"""The CUDA engine: gsplat's own kernels list the pairs, the weights stay explicit and sparse.

Built on gsplat's building blocks, once per view and for all channels together:

1. ``fully_fused_projection`` (opacity-aware radii, ``calc_compensations`` in antialiased
   mode), ``isect_tiles`` and ``isect_offset_encode``: gsplat's tile binning, depth sorted;
2. ``rasterize_to_indices_in_range``: gsplat's forward compositing loop, which returns the
   (Gaussian, pixel) pairs that contribute, pixel by pixel and front to back within a pixel,
   with gsplat's alpha threshold and exclusive ``T <= 1e-4`` stop;
3. :func:`pixel_major_weights`: each pair's ``alpha * T`` (the same float32 alpha
   expression; T from the pixel's earlier pairs), giving a :class:`SparseViewWeights` whose
   back-projection folds the bilinear upsampling into ``W^T`` (cuSPARSE products, no
   [H, W, C] tensor, one pass for all channels).

The whole depth range is rasterized in one call per row band: splitting it into depth
batches would lose the per-pixel stop flag between calls (the kernel only sees T, so a pixel
that stopped at ``T * (1 - alpha) <= 1e-4`` would take further, fainter Gaussians in the
next batch). Memory stays bounded by splitting a large view into row bands instead: pixels
outside the band get ``T = 0``, which stops them at their first Gaussian. gsplat counts one
call's pairs in int32 (``at::cumsum`` of int32 counts in ``rasterize_to_indices_3dgs``), so a
band is also kept small enough that an upper bound on its pairs (each pixel takes at most
its tile's list) stays below 2**31: past that the kernel would write out of bounds.

Agreement with the other engines: the pair list is gsplat's (its kernels use ``__expf``), so
a pair whose alpha sits within an ulp of 1/255 or whose T sits within an ulp of 1e-4 may be
kept here and dropped by the CPU engines or the reverse; everything else equals them to
float32 rounding.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math

import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import GsbpError
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.raster.projection import MAX_ALPHA
from gsbp_ros.raster.weights import SparseViewWeights
from gsbp_ros.scene import GaussianScene

log = logging.getLogger(__name__)

DEFAULT_BAND_PIXELS = 1 << 22
"""Pixels rasterized per call (4 Mpx: one call for views up to 2048x2048)."""
MAX_PAIRS_PER_CALL = (1 << 31) - 1
"""gsplat's ``rasterize_to_indices_in_range`` counts a call's pairs in int32."""


class EngineUnavailableError(GsbpError):
    """The requested raster engine cannot run here (no CUDA device, gsplat missing)."""


@functools.cache
def gsplat_status() -> str:
    """'' when a CUDA device is present and gsplat's CUDA kernels load, else why not.

    The first call may JIT-compile gsplat's extension (minutes) when no prebuilt one exists.
    Cached: a failed compile raises out of the import, which Python does not cache, so every
    call would start the compile again. The reason of a failed build is logged once.
    """
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import gsplat  # noqa: F401
        from gsplat.cuda._backend import _C
    except Exception as exc:
        reason = f"gsplat's CUDA kernels failed to load: {type(exc).__name__}: {exc}"
        log.warning("%s (see gsplat's build log above; engine 'torch' still runs)", reason)
        return reason
    if _C is None:
        reason = "gsplat's CUDA extension is not built (gsplat.cuda._backend._C is None)"
        log.warning(reason)
        return reason
    return ""


def gsplat_available() -> bool:
    """True when a CUDA device is present and gsplat's CUDA kernels load."""
    return not gsplat_status()


def pixel_major_weights(
    gaussian_ids: Tensor,
    pixel_ids: Tensor,
    *,
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    width: int,
    start_transmittance: Tensor | None = None,
) -> Tensor:
    """``alpha * T`` of pairs listed pixel by pixel, front to back within a pixel.

    Args:
        gaussian_ids: [P] int Gaussian of each pair.
        pixel_ids: [P] int pixel ``y * width + x``, non-decreasing.
        means2d: [N, 2] projected centres. conics: [N, 3]. opacities: [N] (effective).
        width: image width.
        start_transmittance: [H*W] T of each pixel before its first listed pair (1 if None).

    Returns:
        [P] float32 weights. Alpha is gsplat's float32 expression; T is the product of
        ``1 - alpha`` over the pixel's earlier pairs (float64 log-sum, as the torch engine).
    """
    g = gaussian_ids.to(torch.int64)
    pix = pixel_ids.to(torch.int64)
    x = (pix % width).to(torch.float32)
    y = torch.div(pix, width, rounding_mode="floor").to(torch.float32)
    dx = means2d[g, 0] - (x + 0.5)
    dy = means2d[g, 1] - (y + 0.5)
    c = conics[g]
    sigma = 0.5 * (c[:, 0] * dx * dx + c[:, 2] * dy * dy) + c[:, 1] * dx * dy
    alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), MAX_ALPHA).double()
    log_t = torch.log1p(-alpha)
    before = torch.cumsum(log_t, 0) - log_t  # inclusive sum minus own term
    seg_start = torch.ones_like(pix, dtype=torch.bool)
    seg_start[1:] = pix[1:] != pix[:-1]
    idx = torch.arange(pix.numel(), device=pix.device)
    first = torch.cummax(torch.where(seg_start, idx, torch.zeros_like(idx)), 0).values
    t_before = torch.exp(before - before[first])
    if start_transmittance is not None:
        t_before = t_before * start_transmittance[pix].double()
    return (alpha * t_before).to(torch.float32)


def row_bands(
    row_pairs: list[int], *, rows_per_band: int, tile_size: int, max_pairs: int
) -> list[tuple[int, int]]:
    """``[lo, hi)`` row ranges covering the view, each rasterized by one call.

    Args:
        row_pairs: [H] upper bound on the pairs of each pixel row.
        rows_per_band: at most this many rows per band (rounded down to whole tile rows when
            it spans at least one, so that no tile is rasterized by two bands).
        tile_size: gsplat's tile size.
        max_pairs: a band's bound stays at most this (a single row may exceed it alone).

    Returns:
        consecutive bands from row 0 to H.
    """
    if rows_per_band >= tile_size:
        rows_per_band -= rows_per_band % tile_size
    rows_per_band = max(1, rows_per_band)
    prefix = [0]
    for n in row_pairs:
        prefix.append(prefix[-1] + int(n))
    bands, lo, height = [], 0, len(row_pairs)
    while lo < height:
        fits = bisect.bisect_right(prefix, prefix[lo] + max_pairs) - 1
        hi = max(lo + 1, min(height, lo + rows_per_band, fits))
        bands.append((lo, hi))
        lo = hi
    return bands


@torch.no_grad()
def compute_gsplat_weights(
    scene: GaussianScene,
    camera: Camera,
    *,
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
    tile_size: int = 16,
    band_pixels: int = DEFAULT_BAND_PIXELS,
) -> SparseViewWeights:
    """The compositing weights of one view from gsplat's CUDA kernels (see module docstring).

    Args:
        scene: the splats, on a CUDA device.
        camera: the view.
        options: raster settings (gsplat's own arguments of the same names).
        tile_size: gsplat's tile size.
        band_pixels: at most this many pixels per rasterization call (memory bound; bands
            also stay under gsplat's int32 pair count, see the module docstring).

    Returns:
        :class:`SparseViewWeights` on the scene's device.
    """
    if scene.device.type != "cuda":
        raise EngineUnavailableError(
            f"the gsplat engine needs the scene on a CUDA device, it is on {scene.device}; "
            "move it with scene.to('cuda') or use engine='torch'"
        )
    if not gsplat_available():
        raise EngineUnavailableError(f"the gsplat engine cannot run: {gsplat_status()}")
    from gsplat import (
        fully_fused_projection,
        isect_offset_encode,
        isect_tiles,
        rasterize_to_indices_in_range,
    )

    device = scene.device
    width, height = int(camera.width), int(camera.height)
    means = scene.means.detach().float().contiguous()
    quats = scene.quats.detach().float().contiguous()
    scales = torch.exp(scene.log_scales.detach().float()).contiguous()
    opacities = torch.sigmoid(scene.logit_opacities.detach().float()).contiguous()
    viewmat = camera.world_to_cam.to(device=device, dtype=torch.float32)[None]
    K = camera.K.to(device=device, dtype=torch.float32)[None]
    radii, means2d, depths, conics, comp = fully_fused_projection(
        means,
        None,
        quats,
        scales,
        viewmat,
        K,
        width,
        height,
        eps2d=options.eps2d,
        near_plane=options.near_plane,
        far_plane=options.far_plane,
        packed=False,
        calc_compensations=options.rasterize_mode == "antialiased",
        opacities=opacities,
    )
    opac = opacities[None]
    if comp is not None:
        opac = opac * comp
    tile_w = math.ceil(width / tile_size)
    tile_h = math.ceil(height / tile_size)
    _, isect_ids, flatten_ids = isect_tiles(
        means2d, radii, depths, tile_size, tile_w, tile_h, packed=False, n_images=1
    )
    offsets = isect_offset_encode(isect_ids, 1, tile_w, tile_h)
    n_isects = int(flatten_ids.numel())
    bounds = torch.cat(
        [offsets.flatten().long(), torch.tensor([n_isects], device=device, dtype=torch.int64)]
    )
    per_tile = (bounds[1:] - bounds[:-1]).reshape(tile_h, tile_w)
    longest = int(per_tile.max()) if n_isects else 0
    num_batches = -(-longest // (tile_size * tile_size))
    # A pixel takes at most its tile's whole list: a bound on each row's pairs.
    tile_cols = (width - torch.arange(tile_w, device=device) * tile_size).clamp_max(tile_size)
    row_pairs = (per_tile * tile_cols).sum(dim=1).repeat_interleave(tile_size)[:height]
    bands = row_bands(
        row_pairs.tolist(),
        rows_per_band=max(1, min(height, band_pixels // max(width, 1))),
        tile_size=tile_size,
        max_pairs=MAX_PAIRS_PER_CALL,
    )
    gs, ps, ws = [], [], []
    for lo, hi in bands:
        trans = torch.zeros(1, height, width, device=device, dtype=torch.float32)
        trans[:, lo:hi] = 1.0
        g, pix, _ = rasterize_to_indices_in_range(
            0,
            num_batches,
            trans,
            means2d,
            conics,
            opac,
            width,
            height,
            tile_size,
            offsets,
            flatten_ids,
        )
        w = pixel_major_weights(
            g, pix, means2d=means2d[0], conics=conics[0], opacities=opac[0], width=width
        )
        gs.append(g.to(torch.int64))
        ps.append(pix.to(torch.int64))
        ws.append(w)
    return SparseViewWeights(
        torch.cat(gs),
        torch.cat(ps),
        torch.cat(ws),
        width=width,
        height=height,
        num_gaussians=scene.num_gaussians,
    )
