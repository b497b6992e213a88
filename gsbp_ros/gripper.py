"""A parallel-jaw gripper as three boxes (two fingers and a palm) in the grasp frame.

Grasp frame (the convention of every grasp pose this package outputs):

- origin: the midpoint between the two fingertips;
- +z: the approach direction, from the gripper toward the object (fingers point along +z);
- +y: the closing direction, from one finger to the other;
- +x = y x z: across the fingers' width.

The fingers occupy z in [-finger_length, 0], their inner faces at y = +-width/2 for an
opening ``width``; the palm spans z in [-finger_length - palm_depth, -finger_length] and the
full opening (y in +-(max_opening/2 + finger_thickness)); fingers and palm are
``finger_width`` wide along x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from gsbp_ros.errors import QueryError


class GripperError(QueryError):
    """Gripper parameters that describe no gripper (zero, negative, NaN, too wide)."""


@dataclass(frozen=True)
class ParallelJawGripper:
    """Gripper dimensions, in the units of the geometry it is used with (scene units in the
    core; the node converts its parameters, given in ``frame_id`` units).

    Attributes:
        max_opening: largest distance between the fingers' inner faces.
        finger_length: fingertip to palm, along the approach.
        finger_width: finger size across the closing direction (grasp x).
        finger_thickness: finger size along the closing direction (grasp y).
        palm_depth: palm size along the approach, behind the fingers.
        clearance: free space kept between each finger and the object while the gripper
            approaches open (the opening is the object's width plus twice this).
        approach_distance: how far behind the palm the approach is checked for clearance.
    """

    max_opening: float = 0.08
    finger_length: float = 0.05
    finger_width: float = 0.02
    finger_thickness: float = 0.01
    palm_depth: float = 0.04
    clearance: float = 0.005
    approach_distance: float = 0.05

    def validated(self) -> ParallelJawGripper:
        """Itself, or :class:`GripperError` naming the first bad dimension."""
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise GripperError(f"gripper {f.name} must be a positive number, got {v!r}")
        if 2 * self.clearance >= self.max_opening:
            raise GripperError(
                f"gripper clearance {self.clearance} leaves no room in max_opening "
                f"{self.max_opening} (twice the clearance must be smaller)"
            )
        return self

    def scaled(self, factor: float) -> ParallelJawGripper:
        """Every length times ``factor`` (a change of units)."""
        if not (math.isfinite(factor) and factor > 0):
            raise GripperError(f"scale factor must be positive, got {factor}")
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self)})

    @property
    def palm_half_width(self) -> float:
        """Half the palm's size along the closing direction (y)."""
        return self.max_opening / 2 + self.finger_thickness

    @property
    def span(self) -> float:
        """Outer size of the open gripper along the closing direction."""
        return self.max_opening + 2 * self.finger_thickness

    def check_fits(self, scene_diagonal: float) -> None:
        """:class:`GripperError` when the open gripper is wider than the whole scene (usually
        a gripper in millimetres for a scene in metres, or a scene_to_frame scale mix-up)."""
        if self.span > scene_diagonal:
            raise GripperError(
                f"the open gripper ({self.span:.4g} across) is wider than the whole scene "
                f"(bounding-box diagonal {scene_diagonal:.4g}): check the gripper's units"
            )

    def boxes(self, width: float) -> np.ndarray:
        """[3, 2, 3] (centre, half extents) of the fingers at opening ``width`` (-y finger,
        +y finger) and the palm, in the grasp frame."""
        t, fl, fw = self.finger_thickness, self.finger_length, self.finger_width
        half_y = width / 2 + t / 2
        finger = [fw / 2, t / 2, fl / 2]
        return np.array(
            [
                [[0.0, -half_y, -fl / 2], finger],
                [[0.0, half_y, -fl / 2], finger],
                [
                    [0.0, 0.0, -fl - self.palm_depth / 2],
                    [fw / 2, self.palm_half_width, self.palm_depth / 2],
                ],
            ]
        )


def box_corners(center: np.ndarray, half: np.ndarray) -> np.ndarray:
    """[8, 3] corners of an axis-aligned box; corner i has sign bit k of i on axis k."""
    signs = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)]) * 2.0 - 1.0
    return np.asarray(center) + signs * np.asarray(half)


#: Corner index pairs of a box's 12 edges (corners as in :func:`box_corners`).
BOX_EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, i | (1 << k)) for i in range(8) for k in range(3) if not i & (1 << k)
)


#: Corner indices of a box's 6 faces (x-, x+, y-, y+, z-, z+), each in order around the face.
BOX_FACES: tuple[tuple[int, int, int, int], ...] = (
    (0, 2, 6, 4),
    (1, 3, 7, 5),
    (0, 4, 5, 1),
    (2, 6, 7, 3),
    (0, 1, 3, 2),
    (4, 5, 7, 6),
)


def gripper_corners(gripper: ParallelJawGripper, width: float, pose: np.ndarray) -> np.ndarray:
    """[3, 8, 3] world corners of the fingers (-y, +y) and the palm (:func:`box_corners`).

    Args:
        width: opening. pose: [4, 4] grasp frame -> world.
    """
    pose = np.asarray(pose, dtype=np.float64)
    return np.stack(
        [box_corners(c, h) @ pose[:3, :3].T + pose[:3, 3] for c, h in gripper.boxes(width)]
    )
