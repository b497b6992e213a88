"""Bilinear resizing (``align_corners=False``) as explicit taps and as a sparse matrix.

Feature maps come at patch resolution and are upsampled to the render size before
back-projection. Resizing is linear, ``W^T Up(F) = (Up^T W)^T F``, so the engines fold these
taps into the sparse weights instead of ever making an [H, W, C] tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gsbp_ros.raster.sparse import coo_to_csr


def linear_taps(out_size: int, in_size: int, *, device: torch.device | str = "cpu"):
    """1-D taps of bilinear resizing ``in_size -> out_size`` with ``align_corners=False``.

    Follows ATen's ``upsample_bilinear2d``: source coordinate ``(dst + 0.5) * in/out - 0.5``
    clamped at 0, the upper tap clamped to the last sample (edge replication).

    Returns:
        ``(i0 [out], i1 [out], w0 [out], w1 [out])``: output sample ``o`` is
        ``w0[o] * x[i0[o]] + w1[o] * x[i1[o]]`` (int64 indices, float64 weights).
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
