"""Segmentation scores: IoU of boolean masks (3D selections or 2D images) and the per-class
mean that the LERF-Mask / 3D-OVS protocols report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def iou(selected: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks of one shape (1.0 when both are empty)."""
    selected, truth = np.asarray(selected, bool), np.asarray(truth, bool)
    if selected.shape != truth.shape:
        raise ValueError(f"masks differ in shape: {list(selected.shape)} vs {list(truth.shape)}")
    union = np.logical_or(selected, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(selected, truth).sum() / union)


def class_mean_iou(scores: Iterable[tuple[str, float]]) -> tuple[float, dict[str, float]]:
    """Mean over classes of each class's mean IoU over the views it was scored in.

    This is Gaussian Grouping's LERF-Mask protocol (``script/eval_lerf_mask.py``): a class
    seen in three views weighs as much as one seen in one.

    Args:
        scores: (class name, IoU) pairs, one per view and class.

    Returns:
        (mIoU, {class: mean IoU}); mIoU is NaN when there are no scores.
    """
    per: dict[str, list[float]] = {}
    for name, value in scores:
        per.setdefault(name, []).append(float(value))
    means = {k: float(np.mean(v)) for k, v in per.items()}
    return (float(np.mean(list(means.values()))) if means else float("nan")), means


def mean_of(values: Mapping[str, float]) -> float:
    """Plain mean of a name -> score table (NaN when empty)."""
    return float(np.mean(list(values.values()))) if values else float("nan")
