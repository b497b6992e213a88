"""Robustness sweep: per-object 3D IoU as the label maps degrade.

One axis at a time (plus a few combinations), each level run with several seeds:

- ``drop``: fraction of the input views whose label map is missing;
- ``flip``: fraction of connected segments per view given a wrong label;
- ``noise``: fraction of pixels set to a random value (salt and pepper);
- ``boundary``: masks eroded (k < 0) or dilated (k > 0) by |k| pixels;
- ``scale``: views rendered (and label maps resampled) at this fraction of the resolution.

For every run the four ways to finish the lifting (expected or accumulated mode, with or
without L2 normalisation) are scored: 3D IoU per object against the per-Gaussian ground
truth, and 2D mIoU (paper Eq. 7) of the rendered masks on held-out views against their clean
label maps. The per-view weights are computed once per view and render scale.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gsbp_ros.errors import GsbpError
from gsbp_ros.evaluation import corruption
from gsbp_ros.evaluation.labelled import LabelledScene
from gsbp_ros.evaluation.lifting import (
    LabelMapFiles,
    WeightBank,
    label_masks_2d,
    lift,
    select_label,
)
from gsbp_ros.evaluation.metrics import class_mean_iou, iou
from gsbp_ros.raster.options import RasterOptions

#: (mode, normalize) ways to finish the lifting, in report order.
FINISHES: list[tuple[str, bool]] = [
    ("expected", False),
    ("accumulated", False),
    ("expected", True),
    ("accumulated", True),
]

AXES = ("drop", "flip", "noise", "boundary", "scale")
#: A combination holding this key (value 1) lifts with ``unlabelled="ignore"``: the gaps an
#: erosion leaves do not vote for the background (see gsbp_ros.features.labels).
UNLABELLED_IGNORED = "ignore_unlabelled"


@dataclass
class SweepConfig:
    """Levels of each axis (an empty list skips the axis), seeds and the view split."""

    drop: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.5, 0.7])
    flip: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4])
    noise: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.4, 0.6])
    boundary: list[int] = field(default_factory=lambda: [-4, -2, -1, 0, 1, 2, 4])
    scale: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])
    #: each combination is a dict of axis -> level, e.g. {"drop": 0.3, "flip": 0.2}
    combined: list[dict[str, float]] = field(
        default_factory=lambda: [
            {"drop": 0.3, "flip": 0.2},
            {"drop": 0.3, "noise": 0.2},
            {"drop": 0.3, "boundary": -2},
            {"drop": 0.3, "boundary": -2, UNLABELLED_IGNORED: 1.0},
            {"drop": 0.3, "boundary": 2},
            {"drop": 0.3, "flip": 0.2, "noise": 0.2, "boundary": 2},
        ]
    )
    seeds: int = 5
    seed: int = 0
    holdout: int = 8
    engine: str = "auto"
    #: also lift the clean maps at each scale < 1 with antialiased rasterization
    antialiased_scales: bool = True

    def check(self) -> None:
        """One-line errors for ranges the sweep cannot run."""
        if self.seeds < 1:
            raise GsbpError(f"seeds must be at least 1, got {self.seeds}")
        if not any(getattr(self, a) for a in AXES) and not self.combined:
            raise GsbpError("the sweep is empty: every axis has an empty list of levels")
        for axis in ("drop", "flip", "noise"):
            for v in getattr(self, axis):
                hi = 1.0 if axis != "drop" else 0.95
                if not 0.0 <= v <= hi:
                    raise GsbpError(f"{axis} levels must lie in [0, {hi:g}], got {v}")
        for v in self.boundary:
            if int(v) != v or abs(v) > 64:
                raise GsbpError(f"boundary levels are whole pixels in -64..64, got {v}")
        for v in self.scale:
            if not 0.0 < v <= 1.0:
                raise GsbpError(f"scale levels must lie in (0, 1], got {v}")
        for combo in self.combined:
            unknown = set(combo) - {*AXES, UNLABELLED_IGNORED}
            if unknown or not combo:
                raise GsbpError(f"a combination names unknown axes {sorted(unknown)}")

    def conditions(self) -> list[tuple[str, dict[str, float]]]:
        """(group, {axis: level}) for every run, axis groups first, then combinations."""
        out = [(axis, {axis: v}) for axis in AXES for v in getattr(self, axis)]
        out += [("combined", dict(c)) for c in self.combined]
        return out


@dataclass
class RunResult:
    """Scores of one condition and seed, for each (mode, normalize) finish."""

    group: str
    condition: dict[str, float]
    seed: int
    views: int
    iou3d: dict[str, dict[str, float]]  # finish label -> object -> IoU
    miou2d: dict[str, float]  # finish label -> 2D mIoU on held-out views (NaN if none)
    same_3d: bool  # every finish selected exactly the Gaussians the first one did


def finish_label(mode: str, normalize: bool) -> str:
    return f"{mode}{' + L2' if normalize else ''}"


def corrupt_maps(
    maps: dict[str, np.ndarray],
    condition: dict[str, float],
    num_labels: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Apply a condition's corruptions: drop views, then per view boundary, flip, noise."""
    keep = corruption.drop_views(sorted(maps), condition.get("drop", 0.0), rng)
    out = {}
    for stem in keep:
        a = maps[stem]
        k = int(condition.get("boundary", 0))
        if k < 0:
            a = corruption.erode(a, -k)
        elif k > 0:
            a = corruption.dilate(a, k)
        if condition.get("flip", 0.0) > 0:
            a = corruption.flip_segments(a, condition["flip"], num_labels, rng)
        if condition.get("noise", 0.0) > 0:
            a = corruption.salt_and_pepper(a, condition["noise"], num_labels, rng)
        out[stem] = a
    return out


def is_random(condition: dict[str, float]) -> bool:
    """Whether a condition draws random numbers (else one seed says everything)."""
    return any(condition.get(axis, 0.0) > 0 for axis in ("drop", "flip", "noise"))


def condition_rng(seed: int, condition: dict[str, float]) -> np.random.Generator:
    """A generator that depends only on the seed and the condition (not on sweep order)."""
    key = zlib.crc32(json.dumps(condition, sort_keys=True).encode())
    return np.random.default_rng([int(seed), key])


def score_field(
    data: LabelledScene,
    source,
    sums: torch.Tensor,
    weight: torch.Tensor,
    bank: WeightBank,
    test_views: Sequence,
) -> tuple[dict[str, dict[str, float]], dict[str, float], bool]:
    """3D IoU per object and held-out 2D mIoU for each (mode, normalize) finish, and whether
    all finishes selected the same Gaussians for every object."""
    from gsbp_ros.backproject import finalize

    seen = weight > 0
    iou3d, miou2d = {}, {}
    first: list[np.ndarray] | None = None
    same = True
    for mode, normalize in FINISHES:
        feats = finalize(sums, weight, mode=mode, normalize=normalize)
        label = finish_label(mode, normalize)
        masks = [select_label(source, feats, seen, name) for name in data.names]
        if first is None:
            first = masks
        else:
            same &= all(np.array_equal(a, b) for a, b in zip(first, masks))
        iou3d[label] = {
            name: iou(mask, data.truth == i)
            for i, (name, mask) in enumerate(zip(data.names, masks))
        }
        miou2d[label] = miou_2d(data, source, feats, bank, test_views)
    return iou3d, miou2d, same


def miou_2d(data: LabelledScene, source, feats: torch.Tensor, bank, views) -> float:
    """2D mIoU over views against their clean label maps: per object present in a view's
    map, the IoU of its Eq. 7 mask; mean per object over views, then over objects (NaN when
    there are no views)."""
    from gsbp_ros.features.labels import resize_nearest

    scores = []
    for cam in views:
        w = bank.get(cam, 1.0)
        gt = data.label_maps[cam.stem]
        if gt.shape != (w.height, w.width):
            gt = resize_nearest(gt, w.height, w.width)
        present = [n for i, n in enumerate(data.names) if (gt == i + 1).any()]
        for name, pred in label_masks_2d(w, source, feats, present).items():
            scores.append((name, iou(pred, gt == data.names.index(name) + 1)))
    return class_mean_iou(scores)[0]


def run_sweep(
    data: LabelledScene,
    config: SweepConfig,
    *,
    progress: Callable[[int, int, float | None], None] | None = None,
) -> list[RunResult]:
    """Run every condition with ``config.seeds`` seeds (``seed``, ``seed + 1``, ...); a
    condition without randomness (nothing dropped, flipped or noised) runs once."""
    config.check()
    train, test = data.split(config.holdout)
    clean = {c.stem: data.label_maps[c.stem] for c in train if c.stem in data.label_maps}
    if not clean:
        raise GsbpError("no input view has a label map")
    bank = WeightBank(data.scene, engine=config.engine)
    runs = [
        (g, c, config.seed + s)
        for g, c in config.conditions()
        for s in range(config.seeds if is_random(c) else 1)
    ]
    # group runs by render scale so that each scale's weights are built once, then freed
    runs.sort(key=lambda r: -r[1].get("scale", 1.0))
    results: list[RunResult] = []
    t0 = time.monotonic()
    with LabelMapFiles(data.names) as files:
        for i, (group, cond, seed) in enumerate(runs):
            scale = cond.get("scale", 1.0)
            if i and runs[i - 1][1].get("scale", 1.0) not in (scale, 1.0):
                bank.drop(runs[i - 1][1]["scale"])
            maps = corrupt_maps(clean, cond, len(data.names), condition_rng(seed, cond))
            ignored = bool(cond.get(UNLABELLED_IGNORED, 0.0))
            source = files.source(maps, unlabelled="ignore" if ignored else "background")
            sums, weight, used = lift(bank, train, source, scale=scale)
            iou3d, miou2d, same = score_field(data, source, sums, weight, bank, test)
            results.append(RunResult(group, cond, seed, used, iou3d, miou2d, same))
            if progress is not None:
                elapsed = time.monotonic() - t0
                progress(i + 1, len(runs), elapsed / (i + 1) * (len(runs) - i - 1))
        if config.antialiased_scales:
            results += _antialiased_scales(data, config, train, test, clean, bank, files)
    return results


def _antialiased_scales(data, config, train, test, clean, bank, files) -> list[RunResult]:
    """The clean maps lifted at each scale < 1 with antialiased rasterization (opacity
    compensation for footprints the low-pass widens); scored like every run."""
    aa = WeightBank(
        data.scene, engine=config.engine, options=RasterOptions(rasterize_mode="antialiased")
    )
    source = files.source(clean)
    out = []
    for scale in sorted({s for s in config.scale if s < 1.0}, reverse=True):
        sums, weight, used = lift(aa, train, source, scale=scale)
        aa.drop(scale)
        iou3d, miou2d, same = score_field(data, source, sums, weight, bank, test)
        out.append(
            RunResult("scale_antialiased", {"scale": scale}, config.seed, used, iou3d, miou2d, same)
        )
    return out


def footprint_px(scene, cameras: Sequence) -> float:
    """Median over views and visible Gaussians of the projected footprint's larger standard
    deviation in pixels, without the rasterizer's low-pass term."""
    from gsbp_ros.raster import project_gaussians

    sigmas = []
    for cam in cameras:
        p = project_gaussians(scene, cam.to_device(scene.device), options=RasterOptions(eps2d=0.0))
        cov = p.covars2d[p.valid].double()
        a, b, c = cov[:, 0], cov[:, 1], cov[:, 2]
        largest = (a + c) / 2 + torch.sqrt(((a - c) / 2) ** 2 + b * b)
        sigmas.append(largest.clamp_min(0).sqrt().cpu())
    return float(torch.cat(sigmas).median()) if sigmas else float("nan")


def summarize(results: Sequence[RunResult], names: Sequence[str]) -> list[dict]:
    """One row per (group, condition): per-object 3D IoU (expected mode) averaged over seeds,
    mean and worst-seed mean IoU, whether all finishes gave identical 3D selections, and
    the 2D mIoU of each finish averaged over seeds."""
    rows: dict[tuple[str, str], dict] = {}
    base = finish_label(*FINISHES[0])
    for r in results:
        key = (r.group, json.dumps(r.condition, sort_keys=True))
        rows.setdefault(key, {"group": r.group, "condition": r.condition, "runs": []})
        rows[key]["runs"].append(r)
    out = []
    for row in rows.values():
        runs = row["runs"]
        per_object = {n: float(np.mean([r.iou3d[base][n] for r in runs])) for n in names}
        seed_means = [float(np.mean([r.iou3d[base][n] for n in names])) for r in runs]
        same = all(r.same_3d for r in runs)
        out.append(
            {
                "group": row["group"],
                "condition": row["condition"],
                "seeds": len(runs),
                "views": float(np.mean([r.views for r in runs])),
                "iou3d": per_object,
                "mean3d": float(np.mean(seed_means)),
                "worst3d": float(np.min(seed_means)),
                "worst_object3d": float(np.min([min(r.iou3d[base].values()) for r in runs])),
                "finishes_agree_3d": same,
                "miou2d": {
                    finish_label(*f): float(np.mean([r.miou2d[finish_label(*f)] for r in runs]))
                    for f in FINISHES
                },
            }
        )
    return out
