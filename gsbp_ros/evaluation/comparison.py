"""Back-projection and distillation side by side: same scene, same views, same label maps,
same query rule; 3D IoU per object, 2D mIoU of the rendered masks (paper Eq. 7) on the input
views and on held-out views, wall time and peak memory of each method, in one run.

Each method is timed from the splats and label maps to per-Gaussian features, including its
own per-view weights: back-projection streams the views through
:func:`gsbp_ros.backproject.backproject` (one view's weights alive at a time); the
distillation solvers keep every view's weights, because they revisit the views many times.
A real distillation run rasterizes at every iteration instead; the report states what that
would add, from the measured time per view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from gsbp_ros.errors import GsbpError
from gsbp_ros.evaluation.distill import distill_adam, distill_cg
from gsbp_ros.evaluation.labelled import LabelledScene
from gsbp_ros.evaluation.lifting import LabelMapFiles, WeightBank, select_label
from gsbp_ros.evaluation.memory import Measure
from gsbp_ros.evaluation.metrics import iou
from gsbp_ros.evaluation.robustness import condition_rng, corrupt_maps, miou_2d

BACKPROJECTION = "back-projection (expected)"


@dataclass
class ComparisonConfig:
    """What to compare: input conditions, solver budgets, the view split."""

    #: label-map conditions (see robustness.corrupt_maps); {} is the clean input
    conditions: list[dict[str, float]] = field(
        default_factory=lambda: [{}, {"drop": 0.3, "flip": 0.2}]
    )
    #: Adam is scored after each of these many iterations (one run up to the largest)
    iterations: list[int] = field(default_factory=lambda: [1000, 7000, 30000])
    lr: float = 1e-3
    cg_iterations: int = 200
    seed: int = 0
    holdout: int = 8
    engine: str = "auto"

    def check(self) -> None:
        if not self.iterations or min(self.iterations) < 1 or self.cg_iterations < 1:
            raise GsbpError("distillation needs at least one iteration")
        if not self.lr > 0:
            raise GsbpError(f"the learning rate must be positive, got {self.lr}")
        if not self.conditions:
            raise GsbpError("no input condition to compare on")


@dataclass
class MethodResult:
    """One method on one input condition. Times include the method's per-view weights."""

    method: str
    condition: dict[str, float]
    iou3d: dict[str, float]
    miou2d_input: float
    miou2d_heldout: float
    seconds: float
    cpu_seconds: float
    weights_seconds: float  # NaN for back-projection (interleaved with its views)
    weights_cpu_seconds: float
    peak_bytes: int | None
    views: int
    detail: str = ""

    @property
    def mean3d(self) -> float:
        return float(np.mean(list(self.iou3d.values())))


def compare(
    data: LabelledScene,
    config: ComparisonConfig,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[MethodResult]:
    """Back-projection, Adam distillation (at each iteration checkpoint) and the
    least-squares optimum, on each input condition."""
    from gsbp_ros.backproject import backproject

    config.check()
    say = progress or (lambda msg: None)
    train, test = data.split(config.holdout)
    clean = {c.stem: data.label_maps[c.stem] for c in train if c.stem in data.label_maps}
    if not clean:
        raise GsbpError("no input view has a label map")
    device = data.scene.device
    eval_bank = WeightBank(data.scene, engine=config.engine)  # scoring only, not timed
    results: list[MethodResult] = []
    nan = float("nan")
    with LabelMapFiles(data.names) as files:
        for cond in config.conditions:
            maps = corrupt_maps(clean, cond, len(data.names), condition_rng(config.seed, cond))
            source = files.source(maps)
            views = [c for c in train if c.stem in maps]
            ctx = _Context(data, source, cond, views, test, eval_bank)
            if not results:
                _warm_up(data, views[:1], source, config)
            what = describe_condition(cond)

            say(f"{what}: back-projection over {len(views)} views")
            with Measure(device) as m:
                field_ = backproject(
                    data.scene,
                    views,
                    {"labels": source},
                    mode="expected",
                    device=device,
                    engine=config.engine,
                )
            seen = field_.weights["labels"].to(device) > 0
            timing = (m.seconds, m.cpu_seconds, nan, nan)
            results.append(
                ctx.score(BACKPROJECTION, field_.features["labels"], seen, timing, m.peak_bytes)
            )
            del field_

            its = sorted(set(config.iterations))
            say(f"{what}: distillation, Adam, up to {its[-1]} iterations")
            snaps, m, w_times = _adam(data, views, source, config, its)
            for it, (feats, wall, cpu) in snaps.items():
                name = f"distillation: Adam, {it} it."
                detail = f"lr {config.lr:g}, one view per iteration"
                results.append(
                    ctx.score(name, feats, seen, (wall, cpu, *w_times), m.peak_bytes, detail)
                )
            say(f"{what}: least squares by conjugate gradients")
            feats, m, w_times, detail = _cg(data, views, source, config)
            timing = (m.seconds, m.cpu_seconds, *w_times)
            results.append(
                ctx.score("least-squares optimum (CG)", feats, seen, timing, m.peak_bytes, detail)
            )
    return results


def _warm_up(data: LabelledScene, views: Sequence, source, config: ComparisonConfig) -> None:
    """Run each method once on one view, untimed, so that lazily initialised kernels and
    thread pools are not billed to whichever method happens to be timed first."""
    from gsbp_ros.backproject import backproject

    device = data.scene.device
    backproject(data.scene, views, {"labels": source}, device=device, engine=config.engine)
    weights, targets = _weights_and_targets(data, views, source, config)
    distill_adam(weights, targets, iterations=2)
    distill_cg(weights, targets, iterations=2)


@dataclass
class _Context:
    """What scoring one method's features needs: the input condition and the views."""

    data: LabelledScene
    source: object
    condition: dict[str, float]
    views: list
    test: list
    bank: WeightBank

    def score(self, method, feats, seen, timing, peak, detail: str = "") -> MethodResult:
        data, source = self.data, self.source
        feats = feats.to(data.scene.device)
        wall, cpu, w_wall, w_cpu = timing
        return MethodResult(
            method=method,
            condition=dict(self.condition),
            iou3d={
                n: iou(select_label(source, feats, seen, n), data.truth == i)
                for i, n in enumerate(data.names)
            },
            miou2d_input=miou_2d(data, source, feats, self.bank, self.views),
            miou2d_heldout=miou_2d(data, source, feats, self.bank, self.test),
            seconds=wall,
            cpu_seconds=cpu,
            weights_seconds=w_wall,
            weights_cpu_seconds=w_cpu,
            peak_bytes=peak,
            views=len(self.views),
            detail=detail,
        )


def _weights_and_targets(data: LabelledScene, views: Sequence, source, config):
    """Every view's weights and its code map at the render size (what the solvers keep)."""
    from gsbp_ros.raster import compute_view_weights

    device = data.scene.device
    weights = [
        compute_view_weights(data.scene, c.to_device(device), engine=config.engine) for c in views
    ]
    targets = [torch.as_tensor(source.view_features(c, None)).float() for c in views]
    return weights, targets


def _adam(data: LabelledScene, views: Sequence, source, config: ComparisonConfig, its):
    """One Adam run up to ``max(its)``; features and (wall, CPU) time at each checkpoint."""
    snaps: dict[int, tuple[torch.Tensor, float, float]] = {}
    with Measure(data.scene.device) as m:
        weights, targets = _weights_and_targets(data, views, source, config)
        w_times = m.elapsed()

        def keep(it: int, feats: torch.Tensor) -> None:
            snaps[it] = (feats, *m.elapsed())

        distill_adam(
            weights,
            targets,
            iterations=its[-1],
            lr=config.lr,
            seed=config.seed,
            checkpoints=its,
            on_checkpoint=keep,
        )
        del weights, targets
    return snaps, m, w_times


def _cg(data: LabelledScene, views: Sequence, source, config: ComparisonConfig):
    """The least-squares optimum, timed from scratch (weights included)."""
    with Measure(data.scene.device) as m:
        weights, targets = _weights_and_targets(data, views, source, config)
        w_times = m.elapsed()
        feats, its, rel = distill_cg(weights, targets, iterations=config.cg_iterations)
        del weights, targets
    return feats, m, w_times, f"{its} CG iterations, relative residual {rel:.1e}"


def describe_condition(cond: dict[str, float]) -> str:
    """Words for a condition, e.g. "30% views dropped, 20% segments flipped"."""
    if not cond:
        return "clean label maps"
    parts = []
    for axis, v in cond.items():
        if axis == "drop":
            parts.append(f"{100 * v:.0f}% views dropped")
        elif axis == "flip":
            parts.append(f"{100 * v:.0f}% segments flipped")
        elif axis == "noise":
            parts.append(f"{100 * v:.0f}% pixels salt-and-pepper")
        elif axis == "boundary":
            parts.append(f"{'dilated' if v > 0 else 'eroded'} {abs(int(v))} px")
        elif axis == "scale":
            parts.append(f"rendered at {v:g}x")
        elif axis == "ignore_unlabelled" and v:
            parts.append("unlabelled pixels ignored")
    return ", ".join(parts)
