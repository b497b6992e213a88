"""Frames and poses: quaternions, the scene-to-frame similarity, geometry_msgs points and poses.

:class:`SceneToFrame` maps the scene's world frame to the node's ``frame_id``
(``p_frame = s * R @ p_scene + t``) for points, directions, rotations and poses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3

from gsbp_ros.nodes.errors import MessageError


def quaternion_to_matrix(xyzw: Sequence[float]) -> np.ndarray:
    """[3, 3] rotation of a quaternion (x, y, z, w); need not be unit length (not zero)."""
    q = np.asarray(xyzw, dtype=np.float64).reshape(4)
    n = float(np.linalg.norm(q))
    if not np.isfinite(q).all() or n < 1e-12:
        raise MessageError(f"quaternion {q.tolist()} is zero or not finite")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion of a [3, 3] rotation matrix (w >= 0)."""
    m = np.asarray(m, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


@dataclass(frozen=True)
class SceneToFrame:
    """Similarity transform scene world -> ``frame_id``: ``p_f = scale * R @ p_s + t``.

    Attributes:
        scale: positive uniform scale.
        rotation: [3, 3] rotation matrix R.
        translation: [3] translation t.
    """

    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @classmethod
    def from_params(
        cls, translation: Sequence[float], rotation_xyzw: Sequence[float], scale: float
    ) -> SceneToFrame:
        t = np.asarray(translation, dtype=np.float64)
        if t.shape != (3,) or not np.isfinite(t).all():
            raise MessageError(f"scene_to_frame.translation must be 3 finite numbers, got {t}")
        if len(rotation_xyzw) != 4:
            raise MessageError(
                f"scene_to_frame.rotation must be a quaternion [x, y, z, w], got {rotation_xyzw}"
            )
        if not (np.isfinite(scale) and scale > 0):
            raise MessageError(f"scene_to_frame.scale must be positive, got {scale}")
        return cls(float(scale), quaternion_to_matrix(rotation_xyzw), t)

    @property
    def is_identity(self) -> bool:
        return (
            self.scale == 1.0
            and np.array_equal(self.rotation, np.eye(3))
            and not np.any(self.translation)
        )

    def points(self, p: np.ndarray) -> np.ndarray:
        """[..., 3] scene points -> frame points (float64)."""
        p = np.asarray(p, dtype=np.float64)
        return self.scale * p @ self.rotation.T + self.translation

    def inverse_points(self, p: np.ndarray) -> np.ndarray:
        """[..., 3] frame points -> scene points (float64)."""
        p = np.asarray(p, dtype=np.float64)
        return (p - self.translation) @ self.rotation / self.scale

    def vectors(self, v: np.ndarray) -> np.ndarray:
        """[..., 3] scene directions -> frame directions (rotation only; lengths kept)."""
        return np.asarray(v, dtype=np.float64) @ self.rotation.T

    def lengths(self, x: np.ndarray | float) -> np.ndarray:
        """Scene lengths -> frame lengths."""
        return np.asarray(x, dtype=np.float64) * self.scale

    def rotation_to_frame(self, r_scene: np.ndarray) -> np.ndarray:
        """[3, 3] orientation (columns = axes) in the scene -> in the frame."""
        return self.rotation @ np.asarray(r_scene, dtype=np.float64)

    def rotation_to_scene(self, r_frame: np.ndarray) -> np.ndarray:
        return self.rotation.T @ np.asarray(r_frame, dtype=np.float64)


def to_point(p: Sequence[float]) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def to_vector3(v: Sequence[float]) -> Vector3:
    return Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def points_to_numpy(points: Sequence[Point]) -> np.ndarray:
    """geometry_msgs/Point[] -> [P, 3] float64."""
    arr = np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(arr).all():
        raise MessageError("points contain NaN or Inf")
    return arr


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """[4, 4] transform of a geometry_msgs/Pose (child -> parent)."""
    o = pose.orientation
    m = np.eye(4)
    m[:3, :3] = quaternion_to_matrix([o.x, o.y, o.z, o.w])
    m[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    if not np.isfinite(m).all():
        raise MessageError("pose contains NaN or Inf")
    return m


def matrix_to_pose(m: np.ndarray) -> Pose:
    q = matrix_to_quaternion(m[:3, :3])
    return Pose(
        position=to_point(m[:3, 3]),
        orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )
