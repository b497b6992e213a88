"""Result types shared by the query code, the CLI and the ROS layer.

Plain numpy arrays so that the ROS conversions and file writers need no torch.
All geometry is in the scene's world frame (the node applies the scene-to-frame transform).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RegionSummary:
    """Geometry of a set of Gaussians.

    Attributes:
        centroid: [3] mean of the selected Gaussian centres.
        aabb_min, aabb_max: [3] axis-aligned box corners.
        obb_center: [3] centre of the PCA-oriented box.
        obb_axes: [3, 3] rows are the box axes (unit, right-handed), largest variance first.
        obb_extent: [3] full side lengths along ``obb_axes``.
        principal_axis: [3] first PCA axis (unit).
        approach: [3] unit approach direction for a gripper (points from the gripper toward
            the surface, i.e. minus the outward normal), or None when not computed.
        num_trimmed: Gaussians left out as outliers (floaters) before measuring.
    """

    centroid: np.ndarray
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    obb_center: np.ndarray
    obb_axes: np.ndarray
    obb_extent: np.ndarray
    principal_axis: np.ndarray
    approach: np.ndarray | None = None
    num_trimmed: int = 0


@dataclass
class Selection:
    """Gaussians selected by a query.

    Attributes:
        name: what was asked for (prompt, label name).
        indices: [M] int64 indices into the scene, ascending.
        scores: [M] float32 score of each selected Gaussian (similarity or vote share).
        summary: geometry of the selection, None when it is empty.
    """

    name: str
    indices: np.ndarray
    scores: np.ndarray
    summary: RegionSummary | None = None
    info: dict[str, float | str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.indices.size == 0


@dataclass
class Labelling:
    """A label for every Gaussian (affordance transfer, lifted masks).

    Attributes:
        label_names: L names; label -1 means background / unlabelled.
        labels: [N] int64 in [-1, L).
        confidence: [N] float32 in [0, 1] (vote share or normalised lifted weight).
        regions: one Selection per label name that has at least one Gaussian (in label order).
    """

    label_names: list[str]
    labels: np.ndarray
    confidence: np.ndarray
    regions: list[Selection] = field(default_factory=list)


#: Ranking terms of a grasp, each in [0, 1] (:mod:`gsbp_ros.grasps`).
GRASP_TERMS = ("antipodality", "in_region", "clearance", "region_score")


@dataclass
class GraspSet:
    """Ranked parallel-jaw grasps on one region, best first, in the scene's frame.

    Grasp frame (:mod:`gsbp_ros.gripper`): origin between the fingertips, +z approach (toward
    the object), +y closing direction, +x = y x z.

    Attributes:
        name: the region's name.
        positions: [G, 3] grasp frame origins.
        rotations: [G, 3, 3] grasp frame axes as columns (x, y, z).
        widths: [G] opening to approach with: the object's width across the closing segment
            plus the gripper's clearance on both sides (never above its max_opening).
        scores: [G] weighted sum of the terms, in [0, 1].
        terms: name (:data:`GRASP_TERMS`) -> [G] value of that ranking term.
        contacts: [G] scene index of the Gaussian each grasp was sampled at.
        message: one line: how many grasps from how many candidates, or why there is none.
        stats: candidate counts by outcome (candidates, feasible, too_wide, collision,
            not_antipodal).
    """

    name: str
    positions: np.ndarray
    rotations: np.ndarray
    widths: np.ndarray
    scores: np.ndarray
    terms: dict[str, np.ndarray] = field(default_factory=dict)
    contacts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    message: str = ""
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def empty(self) -> bool:
        return len(self) == 0

    def poses(self) -> np.ndarray:
        """[G, 4, 4] grasp frame -> scene transforms."""
        out = np.tile(np.eye(4), (len(self), 1, 1))
        out[:, :3, :3] = self.rotations
        out[:, :3, 3] = self.positions
        return out

    def quaternions_xyzw(self) -> np.ndarray:
        """[G, 4] unit quaternions (x, y, z, w), w >= 0, of the rotations."""
        from gsbp_ros.regions import rotmat_to_quat

        if self.empty:
            return np.zeros((0, 4))
        return rotmat_to_quat(self.rotations)[:, [1, 2, 3, 0]]

    def to_json(self) -> list[dict]:
        """``[{"position", "quaternion_xyzw", "width", "score", "region", "terms"}]``, best
        first (plain floats)."""
        quats = self.quaternions_xyzw()
        return [
            {
                "position": [float(v) for v in self.positions[i]],
                "quaternion_xyzw": [float(v) for v in quats[i]],
                "width": float(self.widths[i]),
                "score": float(self.scores[i]),
                "region": self.name,
                "terms": {k: float(v[i]) for k, v in self.terms.items()},
            }
            for i in range(len(self))
        ]
