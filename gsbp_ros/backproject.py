"""Gradient-weighted feature back-projection (Joseph et al., SIGGRAPH Asia 2025, Eq. 4-5).

    expected:     f_k = Σ_views Σ_p w_k(p) F(p) / Σ_views Σ_p w_k(p)
    accumulated:  f_k = Σ_views Σ_p w_k(p) F(p)

with w_k(p) = α_k(p)·T_k(p). Views are streamed: memory is one view's sparse weights plus the
[N, C] accumulators. One set of weights per view serves every feature source of that view.
The sum over views shards across ``torch.distributed`` ranks (each takes every
``world_size``-th view; the accumulators are all-reduced at the end).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gsbp_ros.camera import Camera
from gsbp_ros.errors import CameraError, FeatureError
from gsbp_ros.field import FeatureField
from gsbp_ros.raster.options import DEFAULT_RASTER_OPTIONS, RasterOptions
from gsbp_ros.scene import GaussianScene

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, float | None], None]
MODES = ("expected", "accumulated")


@dataclass
class Accumulators:
    """Running Σ w F [N, C] and Σ w [N] per source (the only state that grows with N).

    The [N, C] sums are float32 and the engines add each view into them in place: at a
    million Gaussians and 384 channels one such array is 1.5 GB, so neither a per-view
    product nor a float64 copy can be afforded. float32 sums of up to a few hundred views
    stay within ~1e-6 relative of float64 sums (docs/benchmarks.md); the [N] weight sums,
    cheap, stay float64.
    """

    num_gaussians: int
    device: torch.device
    sums: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)
    views: dict[str, int] = field(default_factory=dict)
    # Σ_v (Σ_p w_k(p)) c_v and Σ_v Σ_p w_k(p) over every view: where the cameras that saw a
    # Gaussian stood, which orients its surface normal outward (region approach directions).
    viewer_sum: Tensor | None = None
    viewer_weight: Tensor | None = None

    def add_viewer(self, center: Tensor, weight_sum: Tensor) -> None:
        """center: [3] camera position of one view; weight_sum: [N] Σ_p w of that view."""
        if self.viewer_sum is None:
            self.viewer_sum = torch.zeros(
                self.num_gaussians, 3, dtype=torch.float64, device=self.device
            )
            self.viewer_weight = torch.zeros(
                self.num_gaussians, dtype=torch.float64, device=self.device
            )
        seen = (weight_sum > 0).nonzero().flatten()  # only the rows this view touched
        w = weight_sum[seen].to(torch.float64)
        c = center.to(self.device, torch.float64)
        self.viewer_sum.index_add_(0, seen, w[:, None] * c[None])
        self.viewer_weight.index_add_(0, seen, w)

    def viewpoints(self) -> Tensor | None:
        """[N, 3] float32 weight-averaged position of the cameras that saw each Gaussian
        (zeros where no view saw it)."""
        if self.viewer_sum is None:
            return None
        out = torch.zeros_like(self.viewer_sum)
        seen = self.viewer_weight > 0
        out[seen] = self.viewer_sum[seen] / self.viewer_weight[seen, None]
        return out.to(torch.float32)

    def sums_for(self, name: str, channels: int) -> Tensor:
        """The [N, C] float32 accumulator of a source (created at its first map)."""
        if name not in self.sums:
            self.sums[name] = torch.zeros(
                self.num_gaussians, channels, dtype=torch.float32, device=self.device
            )
            self.weights[name] = torch.zeros(
                self.num_gaussians, dtype=torch.float64, device=self.device
            )
            self.views[name] = 0
        elif self.sums[name].shape[1] != channels:
            raise FeatureError(
                f"source {name!r}: feature maps differ in channels "
                f"({self.sums[name].shape[1]} before, {channels} now)"
            )
        return self.sums[name]

    def add_weights(self, name: str, weight_sum: Tensor) -> None:
        """weight_sum: [N] Σ_p w of one view whose map of ``name`` was back-projected."""
        self.weights[name] += weight_sum.to(self.device, torch.float64)
        self.views[name] += 1

    def add(self, name: str, weighted: Tensor, weight_sum: Tensor) -> None:
        """weighted: [N, C] Σ_p w F of one view; weight_sum: [N] Σ_p w of that view."""
        self.sums_for(name, weighted.shape[1]).add_(weighted.to(torch.float32))
        self.add_weights(name, weight_sum)

    def all_reduce(self, names: Sequence[str]) -> None:
        """Sum the accumulators over a torch.distributed group (same source order on all ranks)."""
        import torch.distributed as dist

        for name in names:
            dist.all_reduce(self.sums[name])
            dist.all_reduce(self.weights[name])
            views = torch.tensor([self.views[name]], dtype=torch.float64, device=self.device)
            dist.all_reduce(views)
            self.views[name] = int(views.item())
        if self.viewer_sum is None:  # a rank without views still joins the reduction
            self.add_viewer(torch.zeros(3), torch.zeros(self.num_gaussians))
        dist.all_reduce(self.viewer_sum)
        dist.all_reduce(self.viewer_weight)


def finalize(
    sums: Tensor,
    weights: Tensor,
    *,
    mode: str = "expected",
    normalize: bool = False,
    in_place: bool = False,
) -> Tensor:
    """Turn Σ w F into per-Gaussian features.

    Args:
        sums: [N, C] Σ w F.
        weights: [N] Σ w (0 = never seen).
        mode: "expected" divides by Σ w where it is positive; "accumulated" does not.
        normalize: L2-normalise each row (rows that are all zero stay zero). With it, both
            modes give the same features (paper, Sec. 3.1).
        in_place: overwrite a float32 ``sums`` instead of allocating the result (the
            streaming back-projection's accumulator is as large as the field itself).
    Returns:
        [N, C] float32.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out = sums if in_place and sums.dtype == torch.float32 else sums.to(torch.float32).clone()
    if mode == "expected":
        w = weights.to(torch.float64)
        # Unseen rows hold zeros: dividing them by 1 keeps them zero.
        scale = torch.where(w > 0, 1.0 / w.clamp_min(1e-300), torch.ones_like(w))
        if sums.dtype == torch.float64 and not in_place:
            out = (sums * scale[:, None]).to(torch.float32)
        else:
            out.mul_(scale.to(torch.float32)[:, None])
    if normalize:
        norm = out.norm(dim=1, keepdim=True)
        out.div_(torch.where(norm > 0, norm, torch.ones_like(norm)))
    return out


def backproject(
    scene: GaussianScene,
    cameras: Sequence[Camera],
    sources: Mapping[str, object],
    *,
    mode: str = "expected",
    normalize: bool = False,
    device: str | torch.device = "cpu",
    engine: str = "auto",
    options: RasterOptions = DEFAULT_RASTER_OPTIONS,
    max_pairs: int | None = None,
    render_scale: float = 1.0,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    progress: ProgressFn | None = None,
    rank: int = 0,
    world_size: int = 1,
    meta: Mapping[str, object] | None = None,
) -> FeatureField:
    """Back-project every source's 2D features onto the Gaussians.

    Args:
        scene: N Gaussians.
        cameras: views to stream; each source is asked for its map of each view.
        sources: name -> FeatureSource (``view_features(camera, rgb) -> [H', W', C] | None``,
            ``needs_rgb``, optional ``cache_key()``).
        mode: "expected" or "accumulated".
        normalize: L2-normalise the per-Gaussian features.
        device: where the weights and accumulators live.
        engine: raster engine ("auto", "numba", "gsplat", "torch").
        options: raster settings the scene was trained with (planes, eps2d, mode).
        max_pairs: memory bound of the engine per view (see ``compute_view_weights``).
        render_scale: renders at ``render_scale`` (> 0) times each camera's resolution.
        background: RGB in 0..1 behind the renders given to sources with ``needs_rgb``.
        progress: called as ``progress(views_done, views_total, eta_seconds)``.
        rank, world_size: shard the views over a torch.distributed group.
        meta: extra JSON-serialisable entries for ``FeatureField.meta``.
    Returns:
        FeatureField with ``features[name] [N, C]`` and ``weights[name] [N]``, full length N.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not sources:
        raise FeatureError("no feature sources to back-project")
    if not cameras:
        raise FeatureError("no cameras to back-project from")
    if not render_scale > 0:
        raise CameraError(f"render_scale must be positive, got {render_scale}")
    device = torch.device(device)
    scene_dev = scene.to(device)
    my_views = list(cameras)[rank::world_size]
    acc = Accumulators(scene.num_gaussians, device)
    missing: dict[str, list[str]] = {name: [] for name in sources}
    bg = torch.tensor(background, dtype=torch.float32, device=device)
    t0 = time.monotonic()
    for i, cam in enumerate(my_views):
        view = cam.scaled(render_scale) if render_scale != 1.0 else cam
        for name in _add_view(
            acc,
            scene_dev,
            view,
            sources,
            engine=engine,
            options=options,
            max_pairs=max_pairs,
            background=bg,
        ):
            missing[name].append(cam.name)
        if progress is not None:
            done = i + 1
            elapsed = time.monotonic() - t0
            eta = elapsed / done * (len(my_views) - done)
            progress(done, len(my_views), eta)
    for name, names in missing.items():
        if names:
            log.warning(
                "source %r has no feature map for %d of %d views (skipped), e.g. %s",
                name,
                len(names),
                len(my_views),
                names[0],
            )
    if world_size > 1:
        _share_channel_counts(acc, list(sources), device)
    # Checked before the all-reduce, which needs every source's accumulator; after
    # _share_channel_counts the set of empty sources is the same on every rank.
    empty = [name for name in sources if name not in acc.sums]
    if empty:
        raise FeatureError(f"source(s) {', '.join(empty)} had no feature map for any view")
    if world_size > 1:
        acc.all_reduce(list(sources))
    features = {
        n: finalize(acc.sums[n], acc.weights[n], mode=mode, normalize=normalize, in_place=True)
        for n in sources
    }
    weight_out = {n: acc.weights[n].to(torch.float32) for n in sources}
    field_meta: dict[str, dict] = {}
    for name, source in sources.items():
        key = source.cache_key() if hasattr(source, "cache_key") else {}
        field_meta[name] = {
            **{k: str(v) for k, v in key.items()},
            "views": str(acc.views[name]),
            "mode": mode,
            "normalize": str(normalize),
            **options.cache_key(),
        }
    return FeatureField(
        features={n: t.cpu() for n, t in features.items()},
        weights={n: t.cpu() for n, t in weight_out.items()},
        meta={"sources": field_meta, **(dict(meta) if meta else {})},
        viewpoints=None if (vp := acc.viewpoints()) is None else vp.cpu(),
    )


def _add_view(
    acc: Accumulators,
    scene: GaussianScene,
    view: Camera,
    sources: Mapping[str, object],
    *,
    engine: str,
    options: RasterOptions,
    max_pairs: int | None,
    background: Tensor,
) -> list[str]:
    """Back-project every source's map of one view into ``acc``.

    One set of weights (and one RGB render if any source needs it) serves all sources, and
    all their maps go to the engine together (one pass over the view's pairs). A function of
    its own so that the view's weights are freed before the next view's are computed.
    Returns the sources that had no map for this view.
    """
    from gsbp_ros.raster import compute_view_weights, render_rgb

    weights = compute_view_weights(
        scene, view.to_device(acc.device), engine=engine, options=options, max_pairs=max_pairs
    )
    rgb = None
    if any(getattr(s, "needs_rgb", False) for s in sources.values()):
        rgb = render_rgb(scene, view, weights=weights, background=background)
    missing, names, maps = [], [], []
    for name, source in sources.items():
        fmap = source.view_features(view, rgb)
        if fmap is None:
            missing.append(name)
            continue
        names.append(name)
        maps.append(_check_feature_map(fmap, name, view.name).to(acc.device))
    sums = [acc.sums_for(name, fmap.shape[2]) for name, fmap in zip(names, maps)]
    weights.backproject_into(maps, sums)
    wsum = weights.weight_sum()
    acc.add_viewer(view.center, wsum)
    for name in names:
        acc.add_weights(name, wsum)
    return missing


def _share_channel_counts(acc: Accumulators, names: list[str], device: torch.device) -> None:
    """A rank that saw no map of a source still needs a zero accumulator of the right width."""
    import torch.distributed as dist

    widths = torch.tensor(
        [acc.sums[n].shape[1] if n in acc.sums else 0 for n in names], device=device
    )
    dist.all_reduce(widths, op=dist.ReduceOp.MAX)
    for name, width in zip(names, widths.tolist()):
        if name not in acc.sums and width > 0:
            acc.add(
                name,
                torch.zeros(acc.num_gaussians, width, device=device),
                torch.zeros(acc.num_gaussians, device=device),
            )
            acc.views[name] = 0


def _check_feature_map(fmap: Tensor | np.ndarray, source: str, view: str) -> Tensor:
    fmap = torch.as_tensor(fmap)
    if fmap.ndim != 3:
        raise FeatureError(
            f"source {source!r}, view {view!r}: feature map must be [H, W, C], "
            f"got shape {list(fmap.shape)}"
        )
    if min(fmap.shape) == 0:
        raise FeatureError(
            f"source {source!r}, view {view!r}: empty feature map {list(fmap.shape)}"
        )
    if not torch.is_floating_point(fmap):
        fmap = fmap.to(torch.float32)
    if not torch.isfinite(fmap).all():
        raise FeatureError(f"source {source!r}, view {view!r}: feature map contains NaN or Inf")
    return fmap.to(torch.float32)


class NpyFeatureMaps:
    """Precomputed feature maps: one ``<image stem>.npy`` ([H', W', C] float) per view."""

    needs_rgb = False

    def __init__(self, folder: str | Path, *, name: str = "default") -> None:
        self.folder = Path(folder)
        self.name = name
        if not self.folder.is_dir():
            raise FeatureError(f"feature folder {self.folder} does not exist")
        self._files = {p.stem: p for p in self.folder.glob("*.npy")}
        if not self._files:
            raise FeatureError(f"feature folder {self.folder} holds no .npy feature maps")
        self.dim: int | None = None

    def cache_key(self) -> dict[str, str]:
        return {"source": "npy", "folder": str(self.folder.resolve())}

    def view_features(self, camera: Camera, rgb: Tensor | None) -> Tensor | None:
        path = self._files.get(camera.stem)
        if path is None:
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty file
            raise FeatureError(f"cannot read feature map {path}: {exc}") from exc
        if arr.ndim != 3:
            raise FeatureError(f"feature map {path} must be [H, W, C], got shape {list(arr.shape)}")
        if self.dim is None:
            self.dim = int(arr.shape[2])
        elif arr.shape[2] != self.dim:
            raise FeatureError(
                f"feature maps differ in channels: {path.name} has {arr.shape[2]}, "
                f"earlier maps have {self.dim}"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise FeatureError(f"feature map {path} must be float, got {arr.dtype}")
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    def unused(self, cameras: Sequence[Camera]) -> list[str]:
        """Feature files that match no camera (likely a naming mistake worth a warning)."""
        stems = {c.stem for c in cameras}
        return sorted(s for s in self._files if s not in stems)
