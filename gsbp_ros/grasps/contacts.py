"""Contact Gaussians sampled on a region, with closing axes and approach directions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gsbp_ros.grasps.options import MIN_REGION_GAUSSIANS, GraspError, GraspOptions
from gsbp_ros.grasps.solids import CollisionModel
from gsbp_ros.regions import canonical_sign


@dataclass
class Contacts:
    """Sampled contact Gaussians with their closing axes and approach bases.

    Candidate ``c * K + k`` (K approaches) approaches contact c along
    ``z = cos(theta0 + 2 pi k / K) a + sin(...) b`` with closing axis y.

    Attributes:
        slot: [C] model index of each contact. points: [C, 3].
        y, a, b: [C, 3] closing axis and an orthonormal basis of the plane around it
            (b = y x a). theta0: [C] angle of the first approach.
        score: [C] region score of the contact over the region's best, in [0, 1].
    """

    slot: np.ndarray
    points: np.ndarray
    y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta0: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.slot.size)

    def subset(self, rows: slice) -> Contacts:
        return Contacts(
            *(getattr(self, f)[rows] for f in ("slot", "points", "y", "a", "b", "theta0", "score"))
        )

    def approach_axes(self, num_approaches: int) -> tuple[np.ndarray, np.ndarray]:
        """([C, K, 3] x axes, [C, K, 3] z axes) of every candidate."""
        th = self.theta0[:, None] + 2 * np.pi * np.arange(num_approaches)[None] / num_approaches
        cs, sn = np.cos(th)[..., None], np.sin(th)[..., None]
        z = cs * self.a[:, None] + sn * self.b[:, None]
        x = -sn * self.a[:, None] + cs * self.b[:, None]
        return x, z


def sample_contacts(
    model: CollisionModel,
    region_indices: np.ndarray,
    region_scores: np.ndarray | None = None,
    *,
    view_points: np.ndarray | None = None,
    options: GraspOptions | None = None,
) -> Contacts:
    """Draw the contacts of a region (see the module docstring, steps 1-2).

    Args:
        region_indices: [M] scene indices. region_scores: [M] >= 0 (None = all 1).
        view_points: [N, 3] where the cameras that saw each scene Gaussian stood (rows equal
            to the Gaussian's mean, or zeros, = unknown).
    """
    options = options or GraspOptions()
    idx = np.asarray(region_indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise GraspError("the region is empty: nothing to grasp")
    if idx.min() < 0 or idx.max() >= model.slot.size:
        raise GraspError(f"region indices must lie in [0, {model.slot.size})")
    scores = np.ones(idx.size) if region_scores is None else np.asarray(region_scores, float)
    if scores.shape != idx.shape or not np.isfinite(scores).all() or (scores < 0).any():
        raise GraspError(f"region scores must be [{idx.size}] finite non-negative numbers")
    slots = model.slot[idx]
    solid = slots >= 0
    if int(solid.sum()) < MIN_REGION_GAUSSIANS:
        raise GraspError(
            f"the region has {int(solid.sum())} Gaussians with opacity >= "
            f"{model.opacity_threshold:g} (of {idx.size}); a grasp needs at least "
            f"{MIN_REGION_GAUSSIANS}"
        )
    slots, scores = slots[solid], scores[solid]
    best = float(scores.max())
    rel = scores / best if best > 0 else np.ones_like(scores)
    rng = np.random.default_rng(options.seed)
    p = model.opacity[slots] * (rel + 1e-3) + 1e-12
    count = min(options.num_contacts, slots.size)
    pick = rng.choice(slots.size, size=count, replace=False, p=p / p.sum())
    slot = slots[pick]
    points = model.means[slot]
    y = np.array([canonical_sign(v) for v in model.normals[slot]])
    # The first approach comes from the contact's cameras (projected off the normal); where
    # unknown, from an arbitrary perpendicular at a seeded angle.
    helper = np.eye(3)[np.argmin(np.abs(y), axis=1)]
    a = _unit(np.cross(y, helper))
    theta0 = rng.uniform(0.0, 2 * np.pi / options.num_approaches, size=count)
    if view_points is not None:
        vp = np.asarray(view_points, dtype=np.float64)[model.index[slot]]
        toward = vp - points
        off = toward - (toward * y).sum(axis=1, keepdims=True) * y
        norm_t = np.linalg.norm(toward, axis=1)
        known = np.linalg.norm(off, axis=1) > 0.1 * np.maximum(norm_t, 1e-300)
        a = np.where(known[:, None], -_unit(off), a)
        theta0 = np.where(known, 0.0, theta0)
    b = np.cross(y, a)
    return Contacts(slot=slot, points=points, y=y, a=a, b=b, theta0=theta0, score=rel[pick])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)
