"""Bounds on one request, so that no request can hold the engine for long or exhaust memory.

The node fills :class:`RequestLimits` from its parameters (``max_points`` ...); the CLI uses
the defaults. Every refusal is a :class:`gsbp_ros.errors.QueryError` whose message names the
limit (and the parameter that sets it), e.g. ``"100000 points > max_points (1000)"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gsbp_ros.errors import QueryError


@dataclass(frozen=True)
class RequestLimits:
    """Per-request bounds (0 = no bound for the counts)."""

    max_points: int = 1000  # point prompts (positive + negative) per request
    max_prompts: int = 32  # text prompts (positive + negative) per request
    max_prompt_chars: int = 200  # characters of one text prompt
    max_labels: int = 32  # affordance labels per TransferAffordance request
    max_request_pixels: int = 8_000_000  # pixels of all images and masks of one request
    max_k: int = 64  # neighbours of the kNN vote
    point_margin: float = 0.5  # a point prompt farther than this from every Gaussian is refused


def _over(what: str, value: int, name: str, bound: int) -> None:
    if bound > 0 and value > bound:
        raise QueryError(f"{value} {what} > {name} ({bound})")


def check_prompts(positive: Sequence[str], negative: Sequence[str], lim: RequestLimits) -> None:
    _over("prompts", len(positive) + len(negative), "max_prompts", lim.max_prompts)
    for i, p in enumerate([*positive, *negative]):
        _over(f"characters in prompt {i}", len(p), "max_prompt_chars", lim.max_prompt_chars)


def check_points(count: int, lim: RequestLimits) -> None:
    _over("points", count, "max_points", lim.max_points)


def check_labels(labels: Sequence[str], lim: RequestLimits) -> None:
    """Count, and no name twice (the second would never get a region of its own)."""
    _over("labels", len(labels), "max_labels", lim.max_labels)
    seen: dict[str, int] = {}
    for i, name in enumerate(labels):
        if name in seen:
            raise QueryError(f"duplicate label {name!r} (labels[{seen[name]}] and labels[{i}])")
        seen[name] = i


def check_k(k: int, lim: RequestLimits) -> None:
    _over("neighbours k", int(k), "max_k", lim.max_k)


def check_pixels(shapes: Sequence[tuple[int, ...]], lim: RequestLimits) -> None:
    """``shapes``: (height, width, ...) of every image and mask of the request."""
    total = sum(int(s[0]) * int(s[1]) for s in shapes if len(s) >= 2)
    _over("image pixels", total, "max_request_pixels", lim.max_request_pixels)


def check_near_scene(
    points: np.ndarray, distances: np.ndarray, margin: float, *, unit: str = ""
) -> None:
    """Refuse point prompts whose nearest Gaussian is farther than ``margin``.

    Args:
        points: [P, 3] the prompts (for the message). distances: [P] to the nearest Gaussian.
    """
    if margin <= 0 or distances.size == 0:
        return
    worst = int(np.argmax(distances))
    if distances[worst] > margin:
        p = ", ".join(f"{v:.3g}" for v in points[worst])
        raise QueryError(
            f"point ({p}) is {distances[worst]:.3g}{unit} from the nearest Gaussian "
            f"> point_margin ({margin:g}{unit})"
        )
