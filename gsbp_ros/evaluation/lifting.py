"""Label lifting for evaluation runs: the package's own label-map source and query rule,
applied with per-view weights computed once and reused.

The weights ``w_k(p)`` of a view depend on the splats and the camera, not on the labels, so a
sweep over many corrupted copies of the label maps needs them once per view (and render
scale). The codes come from :class:`~gsbp_ros.features.LabelMapSource` reading real files
(whatever encoding it implements), and selections follow the rule of
:meth:`gsbp_ros.engine.GsbpEngine.segment_text` for label prompts: the named label's code
against every other label's (test_eval_lifting.py holds both equal to the engine and to
:func:`gsbp_ros.backproject.backproject`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.scene import GaussianScene


class WeightBank:
    """Per-view weights, computed on first use and kept: ``get(camera, scale)``.

    Args:
        scene: the splats (their device is where the weights live).
        engine: raster engine ("auto", "numba", "gsplat", "torch").
        options: raster settings, e.g. ``RasterOptions(rasterize_mode="antialiased")``.
    """

    def __init__(
        self,
        scene: GaussianScene,
        *,
        engine: str = "auto",
        options: RasterOptions = DEFAULT_RASTER_OPTIONS,
    ) -> None:
        self.scene = scene
        self.engine = engine
        self.options = options
        self._weights: dict[tuple[str, float], object] = {}

    def get(self, camera: Camera, scale: float = 1.0):
        """The :class:`~gsbp_ros.raster.ViewWeights` of ``camera`` rendered at ``scale``."""
        from gsbp_ros.raster import compute_view_weights

        key = (camera.name, float(scale))
        if key not in self._weights:
            view = camera.scaled(scale) if scale != 1.0 else camera
            self._weights[key] = compute_view_weights(
                self.scene,
                view.to_device(self.scene.device),
                engine=self.engine,
                options=self.options,
            )
        return self._weights[key]

    def drop(self, scale: float) -> None:
        """Forget the weights of one render scale (memory)."""
        for key in [k for k in self._weights if k[1] == float(scale)]:
            del self._weights[key]


class LabelMapFiles:
    """Writes label maps held in memory to a scratch folder and opens them with the
    package's :class:`~gsbp_ros.features.LabelMapSource`. Use as a context manager."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._root = Path(tempfile.mkdtemp(prefix="gsbp-eval-"))
        self._count = 0

    def __enter__(self) -> LabelMapFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self._root, ignore_errors=True)

    def source(self, maps: Mapping[str, np.ndarray], *, unlabelled: str = "background"):
        """A LabelMapSource over ``maps`` (stem -> [H, W] ids); replaces the previous one.
        ``unlabelled``: what value 0 votes for (background or ignore)."""
        from gsbp_ros.features import LabelMapSource

        folder = self._root / str(self._count)
        self._count += 1
        shutil.rmtree(self._root / str(self._count - 2), ignore_errors=True)
        folder.mkdir()
        for stem, labels in maps.items():
            np.save(folder / f"{stem}.npy", np.ascontiguousarray(labels, dtype=np.int64))
        return LabelMapSource(folder, self.names, unlabelled=unlabelled)


def lift(
    bank: WeightBank, cameras: Sequence[Camera], source, *, scale: float = 1.0
) -> tuple[Tensor, Tensor, int]:
    """Σ_views W^T F and Σ_views Σ_p w of the views that have a map.

    Args:
        bank: weights of the views.
        cameras: views to lift from (a view without a label map is skipped).
        source: a feature source (``view_features(camera) -> [H', W', D] | None``).
        scale: render scale (the source is asked for the scaled camera's map).

    Returns:
        sums: [N, D] float64. weight: [N] float64. views: how many views contributed.
    """
    n = bank.scene.num_gaussians
    sums: Tensor | None = None
    weight = torch.zeros(n, dtype=torch.float64, device=bank.scene.device)
    used = 0
    for cam in cameras:
        view = cam.scaled(scale) if scale != 1.0 else cam
        fmap = source.view_features(view, None)
        if fmap is None:
            continue
        w = bank.get(cam, scale)
        part = w.backproject(torch.as_tensor(fmap, dtype=torch.float32).to(weight.device))
        sums = part.double() if sums is None else sums + part.double()
        weight += w.weight_sum().double()
        used += 1
    if sums is None:
        sums = torch.zeros(n, getattr(source, "dim", 1), dtype=torch.float64, device=weight.device)
    return sums, weight, used


def label_queries(source, name: str) -> tuple[Tensor, Tensor]:
    """([1, D] positive, [Q, D] negative) codes of a label prompt: the engine's rule for
    label prompts without explicit negatives (every other label is a negative, and so is the
    background that unlabelled pixels voted for, where the source has one)."""
    from gsbp_ros.query import label_query_codes

    names = list(source.label_names)
    table = getattr(source, "codes", None)
    pos = label_query_codes(names, [name], code_table=table)
    others = [n for n in names if n != name]
    neg = (
        label_query_codes(names, others, code_table=table)
        if others
        else torch.zeros(0, pos.shape[1])
    )
    background = getattr(source, "background_code", None)
    if background is not None:
        neg = torch.cat([neg, background[None].to(neg)])
    return pos, neg


def select_label(source, features: Tensor, seen: Tensor, name: str) -> np.ndarray:
    """[N] bool: the Gaussians a label prompt selects (:func:`similarity_segment`)."""
    from gsbp_ros.query import similarity_segment

    pos, neg = label_queries(source, name)
    mask, _ = similarity_segment(features, pos.to(features), neg.to(features), seen=seen)
    return mask.cpu().numpy()


def label_masks_2d(
    weights, source, features: Tensor, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """[H, W] bool 2D mask of each label prompt in one view (paper Eq. 7: the per-Gaussian
    features rendered once, the 3D rule applied per pixel, pixels with alpha < 0.5 never
    selected)."""
    from gsbp_ros.overlay import mask_2d

    rendered = weights.render(features.float().to(weights.device))
    alpha = weights.alpha()
    out = {}
    for name in names:
        pos, neg = label_queries(source, name)
        mask = mask_2d(rendered, pos.to(rendered), neg.to(rendered), 0.0, alpha)
        out[name] = mask.cpu().numpy()
    return out
