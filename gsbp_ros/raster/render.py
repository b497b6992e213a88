"""RGB rendering of a scene through a view's compositing weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.raster.sh import sh_colors
from gsbp_ros.raster.weights import ViewWeights
from gsbp_ros.scene import GaussianScene


def gaussian_colors(scene: GaussianScene, camera: Camera) -> Tensor:
    """[N, 3] view-dependent colours: SH along (mean - camera centre), +0.5, clamped at 0.

    The same colours gsplat's ``rasterization(..., sh_degree=deg)`` rasterizes.
    """
    center = camera.center.to(device=scene.device, dtype=scene.means.dtype)
    return sh_colors(scene.sh.detach(), scene.means.detach() - center)


@torch.no_grad()
def render_rgb(
    scene: GaussianScene,
    camera: Camera,
    *,
    weights: ViewWeights | None = None,
    background: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
    engine: str = "auto",
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
) -> Tensor:
    """Render the scene's colours in one view.

    Args:
        scene: the splats.
        camera: the view.
        weights: this view's weights if already computed (else computed here with
            ``engine`` and ``options``, see :func:`compute_view_weights`).
        background: RGB in 0..1 seen where the splats are transparent.
        engine: raster engine (only used when ``weights`` is None).
        options: raster settings (only used when ``weights`` is None).

    Returns:
        [H, W, 3] float32 in [0, 1] on the scene's device (clamped: SH colours may
        overshoot 1, image models expect 0..1).
    """
    if weights is None:
        from gsbp_ros.raster import compute_view_weights

        weights = compute_view_weights(scene, camera, engine=engine, options=options)
    if (weights.width, weights.height) != (camera.width, camera.height):
        raise ValueError(
            f"weights are for a {weights.width}x{weights.height} view, "
            f"camera {camera.name!r} is {camera.width}x{camera.height}"
        )
    colors = gaussian_colors(scene, camera).float()
    image = weights.render(colors)
    bg = torch.as_tensor(background, dtype=torch.float32, device=image.device).reshape(-1)
    if bg.numel() != 3:
        raise ValueError(f"background must be 3 values (RGB), got {bg.numel()}")
    image = image + bg * (1.0 - weights.alpha().to(image.device)[..., None])
    return image.clamp(0.0, 1.0)
