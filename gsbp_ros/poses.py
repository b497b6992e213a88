"""Rigid and similarity transforms of camera poses, and rotation <-> quaternion conversions.

Quaternions are w x y z (the COLMAP / 3DGS order). All functions work in float64 numpy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import Tensor

from gsbp_ros.errors import CameraError

# OpenGL camera axes (y up, z backward) <-> OpenCV (y down, z forward); its own inverse.
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def quat_to_rotmat(q: Any) -> np.ndarray:
    """[3, 3] rotation from a w x y z quaternion (normalised here)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_quat(R: Any) -> np.ndarray:
    """[4] unit w x y z quaternion (w >= 0) of the rotation nearest to ``R`` [3, 3]."""
    R = nearest_rotation(np.asarray(R, dtype=np.float64))
    # Shepperd: pivot on the largest of w, x, y, z for accuracy
    tr = np.trace(R)
    diag = [tr, R[0, 0], R[1, 1], R[2, 2]]
    k = int(np.argmax(diag))
    if k == 0:
        s = 2.0 * math.sqrt(1.0 + tr)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif k == 1:
        s = 2.0 * math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif k == 2:
        s = 2.0 * math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def nearest_rotation(R: np.ndarray) -> np.ndarray:
    """The rotation closest to ``R`` [3, 3] in the Frobenius norm."""
    U, _, Vt = np.linalg.svd(R)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def rigid_inverse(T: np.ndarray) -> np.ndarray:
    """Inverse of a [4, 4] rigid transform [R | t] without a general matrix inverse."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def as_similarity(transform: Any, *, what: str = "world_transform") -> tuple[np.ndarray, float]:
    """Check a [4, 4] (or [3, 4]) similarity ``[s R | t]`` and return it as [4, 4] and s.

    Raises CameraError for anything that is not a finite, orientation-preserving rotation
    times a uniform positive scale plus a translation.
    """
    if isinstance(transform, Tensor):
        transform = transform.detach().cpu().double().numpy()
    try:
        T = np.asarray(transform, dtype=np.float64)
    except (TypeError, ValueError):
        raise CameraError(f"{what} must be a 4x4 matrix of numbers") from None
    if T.shape == (3, 4):
        T = np.vstack([T, [0.0, 0.0, 0.0, 1.0]])
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise CameraError(f"{what} must be a finite 4x4 matrix, got shape {list(T.shape)}")
    if not np.allclose(T[3], [0, 0, 0, 1]):
        raise CameraError(f"{what}'s last row must be [0, 0, 0, 1]")
    det = np.linalg.det(T[:3, :3])
    if not det > 0:
        raise CameraError(f"{what} must keep orientation (positive determinant)")
    scale = det ** (1.0 / 3.0)
    R = T[:3, :3] / scale
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5):
        raise CameraError(f"{what} is not a similarity (rotation x uniform scale)")
    return T, float(scale)


def transform_pose(cam_to_world: np.ndarray, T: np.ndarray, scale: float) -> np.ndarray:
    """Camera-to-world [4, 4] moved by the similarity ``T`` (``x_new = T @ x_old``).

    The scale is divided out of the rotation, as gsplat's ``transform_cameras`` does: the
    camera frame stays orthonormal and only distances scale, so intrinsics are unchanged.
    """
    c2w = T @ cam_to_world
    c2w[:3, :3] = nearest_rotation(c2w[:3, :3] / scale)
    return c2w
