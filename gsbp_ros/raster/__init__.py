"""Per-view compositing weights ``w_k(p) = alpha_k(p) T_k(p)`` of a Gaussian splat scene.

Two engines return the same :class:`ViewWeights` interface:

- ``"torch"``: explicit sparse weights in pure PyTorch (CPU or CUDA), see
  :mod:`gsbp_ros.raster.torch_engine`;
- ``"gsplat"``: gsplat's CUDA rasterizer, back-projection as the gradient of
  ``(render(X) * F).sum()`` w.r.t. ``X`` (the paper's trick), see
  :mod:`gsbp_ros.raster.gsplat_engine`.

``"auto"`` picks gsplat when the scene lives on a CUDA device and gsplat's kernels load,
else torch.
"""

from __future__ import annotations

import functools
import logging

from gsbp_ros.camera import Camera
from gsbp_ros.raster.gsplat_engine import (
    EngineUnavailableError,
    GsplatViewWeights,
    gsplat_available,
)
from gsbp_ros.raster.projection import Projected, project_gaussians
from gsbp_ros.raster.render import render_rgb
from gsbp_ros.raster.sh import eval_sh, sh_colors
from gsbp_ros.raster.torch_engine import (
    DEFAULT_MAX_PAIRS,
    SparseViewWeights,
    ViewWeights,
    compute_sparse_weights,
)
from gsbp_ros.scene import GaussianScene

ENGINES = ("auto", "torch", "gsplat")

__all__ = [
    "ENGINES",
    "EngineUnavailableError",
    "GsplatViewWeights",
    "Projected",
    "SparseViewWeights",
    "ViewWeights",
    "compute_view_weights",
    "eval_sh",
    "project_gaussians",
    "render_rgb",
    "resolve_engine",
    "sh_colors",
]

_log = logging.getLogger(__name__)


def resolve_engine(engine: str, scene: GaussianScene) -> str:
    """The concrete engine ("torch" or "gsplat") that ``engine`` means for this scene."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    if scene.device.type == "cuda":
        if gsplat_available():
            return "gsplat"
        _warn_no_gsplat()
    return "torch"


@functools.cache
def _warn_no_gsplat() -> None:
    """Once per process: ``resolve_engine`` runs for every view."""
    _log.warning("scene is on CUDA but gsplat's kernels do not load: using the torch engine")


def compute_view_weights(
    scene: GaussianScene,
    camera: Camera,
    *,
    engine: str = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    rasterize_mode: str = "classic",
    chunk_size: int | None = None,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    channel_chunk: int = 32,
) -> ViewWeights:
    """The compositing weights of one view.

    Args:
        scene: the splats; the engine runs on their device.
        camera: the view (moved to the scene's device).
        engine: "auto", "torch" or "gsplat".
        near_plane: cull Gaussians with camera-space depth below this.
        far_plane: cull Gaussians with depth above this.
        eps2d: low-pass term added to each projected covariance's diagonal.
        rasterize_mode: "classic", or "antialiased" for checkpoints trained with the
            opacity compensation.
        chunk_size: torch engine: Gaussians per chunk (None: bounded by ``max_pairs`` only).
        max_pairs: torch engine: candidate (gaussian, pixel) pairs per chunk (memory bound).
        channel_chunk: gsplat engine: feature channels per rasterization pass.

    Returns:
        a :class:`ViewWeights` (``SparseViewWeights`` or ``GsplatViewWeights``).
    """
    options = {
        "near_plane": near_plane,
        "far_plane": far_plane,
        "eps2d": eps2d,
        "rasterize_mode": rasterize_mode,
    }
    if resolve_engine(engine, scene) == "gsplat":
        return GsplatViewWeights(scene, camera, channel_chunk=channel_chunk, **options)
    return compute_sparse_weights(
        scene, camera, chunk_size=chunk_size, max_pairs=max_pairs, **options
    )
