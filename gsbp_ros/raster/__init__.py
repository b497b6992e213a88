"""Per-view compositing weights ``w_k(p) = alpha_k(p) T_k(p)`` of a Gaussian splat scene.

Three engines return the same :class:`ViewWeights` interface, with the same exact weights
(gsplat's classic or antialiased rules; tested against the brute-force reference):

- ``"numba"``: compiled CPU loops over row bands, bounded memory, accumulation in place
  (:mod:`gsbp_ros.raster.numba_engine`); the CPU default;
- ``"gsplat"``: gsplat's CUDA kernels list the pairs, sparse products on the GPU
  (:mod:`gsbp_ros.raster.gsplat_engine`); the CUDA default;
- ``"torch"``: plain PyTorch on any device, the readable reference twin of the others
  (:mod:`gsbp_ros.raster.torch_engine`), and the fallback where neither loads.

``"auto"`` picks gsplat for a scene on a CUDA device (torch when gsplat's kernels do not
load) and numba on the CPU (torch when numba does not import), warning once about a fallback.
The paper's own method (autograd through a rasterizer) lives in
:mod:`gsbp_ros.raster.paper_baseline`, for ``gsbp bench`` only.
"""

from __future__ import annotations

import functools
import logging

import torch

from gsbp_ros.camera import Camera
from gsbp_ros.raster.gsplat_engine import (
    EngineUnavailableError,
    compute_gsplat_weights,
    gsplat_available,
    gsplat_status,
)
from gsbp_ros.raster.numba_engine import (
    DEFAULT_PAIR_BUDGET,
    NumbaViewWeights,
    compute_numba_weights,
    numba_available,
    numba_status,
)
from gsbp_ros.raster.options import (
    DEFAULT_RASTER_OPTIONS,
    RASTERIZE_MODES,
    RasterOptions,
    RasterOptionsError,
)
from gsbp_ros.raster.projection import Projected, project_gaussians
from gsbp_ros.raster.render import render_rgb
from gsbp_ros.raster.sh import eval_sh, sh_colors
from gsbp_ros.raster.torch_engine import DEFAULT_MAX_PAIRS, compute_sparse_weights
from gsbp_ros.raster.weights import SparseViewWeights, ViewWeights
from gsbp_ros.scene import GaussianScene

ENGINES = ("auto", "torch", "numba", "gsplat")

__all__ = [
    "DEFAULT_RASTER_OPTIONS",
    "ENGINES",
    "RASTERIZE_MODES",
    "EngineUnavailableError",
    "NumbaViewWeights",
    "Projected",
    "RasterOptions",
    "RasterOptionsError",
    "SparseViewWeights",
    "ViewWeights",
    "compute_view_weights",
    "engine_report",
    "eval_sh",
    "project_gaussians",
    "render_rgb",
    "resolve_engine",
    "sh_colors",
]

_log = logging.getLogger(__name__)


def resolve_engine(engine: str, scene: GaussianScene | torch.device) -> str:
    """The concrete engine ("torch", "numba" or "gsplat") that ``engine`` means for a scene
    (or a device).

    An explicitly requested engine that cannot run raises :class:`EngineUnavailableError`;
    ``"auto"`` falls back to torch with one warning naming what is missing.
    """
    if engine not in ENGINES:
        raise EngineUnavailableError(
            f"raster engine must be one of {', '.join(ENGINES)}, got {engine!r}"
        )
    device = scene if isinstance(scene, torch.device) else scene.device
    cuda = device.type == "cuda"
    if engine == "numba":
        if cuda:
            raise EngineUnavailableError(
                "the numba engine runs on the CPU; the scene is on CUDA (use 'gsplat' or 'torch')"
            )
        if not numba_available():
            raise EngineUnavailableError(f"the numba engine cannot run: {numba_status()}")
    if engine != "auto":
        return engine
    if cuda:
        if gsplat_available():
            return "gsplat"
        _warn_fallback("gsplat", gsplat_status())
        return "torch"
    if numba_available():
        return "numba"
    _warn_fallback("numba", numba_status())
    return "torch"


@functools.cache
def _warn_fallback(engine: str, reason: str) -> None:
    """Once per process and reason: ``resolve_engine`` runs for every view."""
    _log.warning("raster engine %r is unavailable (%s): using the torch engine", engine, reason)


def engine_report(engine: str, device: torch.device | str) -> str:
    """One line for logs: which engine runs on ``device`` and why."""
    from gsbp_ros.raster.numba_engine import engine_threads

    device = torch.device(device)
    chosen = resolve_engine(engine, device)
    if chosen == "numba":
        return f"numba (compiled CPU engine, {engine_threads()} threads)"
    if chosen == "gsplat":
        return f"gsplat (CUDA kernels on {device})"
    why = ""
    if engine == "auto":
        missing = "gsplat" if device.type == "cuda" else "numba"
        reason = gsplat_status() if device.type == "cuda" else numba_status()
        why = f"; {missing} unavailable: {reason}"
    return f"torch (plain PyTorch on {device}{why})"


def compute_view_weights(
    scene: GaussianScene,
    camera: Camera,
    *,
    engine: str = "auto",
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
    max_pairs: int | None = None,
    chunk_size: int | None = None,
) -> ViewWeights:
    """The compositing weights of one view.

    Args:
        scene: the splats; the engine runs on their device.
        camera: the view (moved to the scene's device).
        engine: "auto", "numba", "gsplat" or "torch".
        options: raster settings (near/far planes, eps2d, classic or antialiased).
        max_pairs: memory bound: candidate (Gaussian, pixel) pairs held at once (numba:
            per group of row bands, default 16M; torch: per depth chunk, default 2M).
        chunk_size: torch engine only: at most this many Gaussians per depth chunk.

    Returns:
        a :class:`ViewWeights`.
    """
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    chosen = resolve_engine(engine, scene)
    if chosen == "gsplat":
        return compute_gsplat_weights(scene, camera.to_device(scene.device), options=options)
    if chosen == "numba":
        return compute_numba_weights(
            scene, camera, options=options, pair_budget=max_pairs or DEFAULT_PAIR_BUDGET
        )
    return compute_sparse_weights(
        scene,
        camera.to_device(scene.device),
        options=options,
        chunk_size=chunk_size,
        max_pairs=max_pairs or DEFAULT_MAX_PAIRS,
    )
