"""Brute-force per-pixel compositing: the oracle the fast engines are tested against.

A Python loop over pixels; at each pixel alpha of every valid Gaussian (no bounding boxes,
no tiles, no pair lists), then a Python loop compositing them front to back, following
gsplat's ``rasterize_to_pixels_3dgs_fwd_kernel`` step by step with float32 transmittance as
there. Only the projection (:func:`project_gaussians`) is shared with the engines. Tiny
scenes only: ``O(H * W * N)`` work, ``H * W`` Python iterations and more.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.raster.projection import (
    ALPHA_THRESHOLD,
    MAX_ALPHA,
    TRANSMITTANCE_STOP,
    Projected,
    project_gaussians,
)
from gsbp_ros.scene import GaussianScene


@torch.no_grad()
def reference_weights(
    scene: GaussianScene,
    camera: Camera,
    *,
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
    project: Callable[..., Projected] = project_gaussians,
) -> Tensor:
    """Dense compositing weights by brute force.

    Args:
        scene, camera, options: as the engines take them.
        project: the projection to start from (each engine is compared from its own:
            ``project_gaussians`` or ``project_gaussians_numba`` agree to float32 rounding
            only, which can move an alpha across 1/255).

    Returns:
        [H*W, N] float32 on the CPU: entry (p, k) is ``alpha_k(p) T_k(p)`` for pixel
        ``p = y * W + x``.
    """
    proj = project(scene.to("cpu"), camera.to_device("cpu"), options=options)
    n, width, height = proj.num_gaussians, proj.width, proj.height
    ids = proj.valid.nonzero().flatten().tolist()
    # Python's sort is stable: equal depths keep index order, like gsplat's radix sort.
    depths = proj.depths.tolist()
    ids.sort(key=lambda k: depths[k])
    order = np.asarray(ids, dtype=np.int64)
    means = proj.means2d.numpy()[order]
    conics = proj.conics.numpy()[order]
    opac = proj.opacities.numpy()[order]
    f32 = np.float32
    out = np.zeros((height * width, n), dtype=np.float32)
    for y in range(height):
        for x in range(width):
            # alpha of every Gaussian at this pixel centre (float32, gsplat's expression)
            dx = means[:, 0] - f32(x + 0.5)
            dy = means[:, 1] - f32(y + 0.5)
            sigma = (
                f32(0.5) * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy)
                + conics[:, 1] * dx * dy
            )
            alpha = np.minimum(f32(MAX_ALPHA), opac * np.exp(-sigma))
            # then composite one Gaussian at a time, front to back
            t = f32(1.0)
            for j in range(order.size):
                if sigma[j] < 0 or alpha[j] < f32(ALPHA_THRESHOLD):
                    continue
                next_t = t * (f32(1.0) - alpha[j])
                if next_t <= f32(TRANSMITTANCE_STOP):  # exclusive: this one is not added
                    break
                out[y * width + x, order[j]] = alpha[j] * t
                t = next_t
    return torch.from_numpy(out)
