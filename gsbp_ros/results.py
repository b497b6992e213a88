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
    """

    centroid: np.ndarray
    aabb_min: np.ndarray
    aabb_max: np.ndarray
    obb_center: np.ndarray
    obb_axes: np.ndarray
    obb_extent: np.ndarray
    principal_axis: np.ndarray
    approach: np.ndarray | None = None


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
